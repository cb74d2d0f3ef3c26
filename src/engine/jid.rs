//! Recipients as the API takes them: a JID, or a phone number with country code.

use whatsapp_rust::Jid;

/// Servers a JID may name as it is.
const SERVERS: &[&str] = &[
    "@g.us",
    "@s.whatsapp.net",
    "@newsletter",
    "@lid",
    "@broadcast",
];

/// The digits of a phone number written with its country code (`+55 (11) 99999-9999`,
/// `5511999999999`): 7 to 15 digits, not starting with 0. Spaces, dashes, dots and brackets
/// are ignored. The one rule for every field that takes a phone number.
pub fn phone_digits(raw: &str) -> Option<String> {
    let digits: String = raw
        .trim()
        .trim_start_matches('+')
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.'))
        .collect();
    let ok = (7..=15).contains(&digits.len())
        && !digits.starts_with('0')
        && digits.bytes().all(|b| b.is_ascii_digit());
    ok.then_some(digits)
}

/// `5511999999999`, `+55 11 99999-9999` or a full JID → the JID to send to.
/// The error names what is wrong, for a 400 that names the field.
pub fn parse_recipient(raw: &str) -> Result<Jid, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err("is required".into());
    }
    if SERVERS.iter().any(|s| raw.ends_with(s)) {
        return raw
            .parse::<Jid>()
            .map_err(|_| format!("{raw:?} is not a valid JID"));
    }
    let Some(digits) = phone_digits(raw) else {
        return Err(format!(
            "{raw:?} is neither a phone number with country code (7-15 digits) nor a JID"
        ));
    };
    format!("{digits}@s.whatsapp.net")
        .parse::<Jid>()
        .map_err(|_| format!("{raw:?} is not a valid phone number"))
}

#[cfg(test)]
mod tests {
    use super::parse_recipient;

    #[test]
    fn phones_and_jids() {
        assert_eq!(
            parse_recipient("5511999999999").unwrap().to_string(),
            "5511999999999@s.whatsapp.net"
        );
        assert_eq!(
            parse_recipient("+55 (11) 99999-9999").unwrap().to_string(),
            "5511999999999@s.whatsapp.net"
        );
        assert_eq!(
            parse_recipient("123456789@g.us").unwrap().to_string(),
            "123456789@g.us"
        );
        for bad in ["", "abc", "0011999", "12", "5511999999999999999", "x@c.us"] {
            assert!(parse_recipient(bad).is_err(), "{bad}");
        }
    }
}
