//! What an attempt's result means, and when to try again.

use std::time::Duration;

use rand::Rng;

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Retry, after at least this long when the receiver said so (`Retry-After`).
    Retry(Option<Duration>),
    Dead,
}

/// 2xx delivered; 408, 429 and 5xx retried; every other status is final.
pub fn classify(status: u16, retry_after: Option<Duration>) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        408 | 429 | 500..=599 => Verdict::Retry(retry_after),
        _ => Verdict::Dead,
    }
}

/// `Retry-After` as delay-seconds or as an HTTP-date (RFC 9110 10.2.3; a date in the past
/// means "now"). Anything else is ignored and we back off as usual.
pub fn parse_retry_after(value: Option<&str>) -> Option<Duration> {
    retry_after_at(value, chrono::Utc::now())
}

fn retry_after_at(value: Option<&str>, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let v = value?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    // IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") is RFC 2822 with the zone named GMT.
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    Some(
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// Full jitter: a random delay in `[0, min(max, base * 2^(attempt-1))]`, at least 1 ms.
/// `attempt` counts from 1 (the attempt that just failed).
pub fn backoff(attempt: i32, base: Duration, max: Duration) -> Duration {
    let exp = attempt.saturating_sub(1).clamp(0, 30) as u32;
    let ceiling = base.saturating_mul(1u32 << exp).min(max);
    let ms = ceiling.as_millis().max(1) as u64;
    Duration::from_millis(rand::rng().random_range(1..=ms))
}

/// The delay before the next attempt: the receiver's `Retry-After` when it gave one (capped at
/// `max`), else [`backoff`].
pub fn next_delay(attempt: i32, hint: Option<Duration>, base: Duration, max: Duration) -> Duration {
    match hint {
        Some(d) => d.min(max),
        None => backoff(attempt, base, max),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        assert_eq!(classify(204, None), Verdict::Delivered);
        assert_eq!(classify(503, None), Verdict::Retry(None));
        assert_eq!(classify(408, None), Verdict::Retry(None));
        let d = Some(Duration::from_secs(2));
        assert_eq!(classify(429, d), Verdict::Retry(d));
        assert_eq!(classify(410, None), Verdict::Dead);
        assert_eq!(classify(400, None), Verdict::Dead);
        assert_eq!(classify(301, None), Verdict::Dead);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        for attempt in 1..40 {
            let d = backoff(attempt, base, max);
            assert!(d <= max, "{d:?}");
            assert!(d <= base * 2u32.saturating_pow((attempt - 1).min(20) as u32));
        }
        assert_eq!(next_delay(1, Some(Duration::from_secs(99)), base, max), max);
        assert_eq!(parse_retry_after(Some(" 3 ")), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(Some("soon")), None);
    }

    #[test]
    fn retry_after_dates_are_honoured() {
        let now = chrono::DateTime::parse_from_rfc3339("2015-10-21T07:27:30Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let at = |v| retry_after_at(Some(v), now);
        assert_eq!(
            at("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::from_secs(30))
        );
        // Already past: retry at once.
        assert_eq!(at("Wed, 21 Oct 2015 07:00:00 GMT"), Some(Duration::ZERO));
        assert_eq!(at("120"), Some(Duration::from_secs(120)));
        assert_eq!(at("Someday"), None);
    }
}
