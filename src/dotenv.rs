//! `.env` in the working directory, read at start as OnWapp's users expect (OnWapp loads it
//! with godotenv): `KEY=value` lines, `export KEY=value`, `#` comments, single or double quoted
//! values (double quotes read `\n`, `\"` and `\\`). A variable set in the environment wins over
//! the file, as with godotenv; nothing is written to the process environment.

use std::{collections::HashMap, path::Path};

/// The variables of a `.env` file; an empty map when there is none.
pub fn read(path: &Path) -> Result<HashMap<String, String>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(parse(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HashMap::new()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// The `KEY=value` pairs of a `.env` text; lines that are not one are skipped.
pub fn parse(text: &str) -> HashMap<String, String> {
    let mut vars = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        let valid_key = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        if !valid_key {
            continue;
        }
        vars.insert(key.to_string(), value_of(value.trim()));
    }
    vars
}

fn value_of(raw: &str) -> String {
    if let Some(rest) = raw.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = rest.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => return out,
                '\\' => match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('r') => out.push('\r'),
                    Some('t') => out.push('\t'),
                    Some(other) => out.push(other),
                    None => {}
                },
                c => out.push(c),
            }
        }
        return out;
    }
    if let Some(rest) = raw.strip_prefix('\'') {
        return rest.split('\'').next().unwrap_or_default().to_string();
    }
    // An unquoted value ends at ` #` (a comment).
    match raw.find(" #") {
        Some(i) => raw[..i].trim_end().to_string(),
        None => raw.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_godotenv_reads() {
        let vars = parse(
            "# a comment\n\
             PORT=8080\n\
             export LOG_LEVEL = debug\n\
             GLOBAL_API_KEY=\"a key with # and \\\"quotes\\\"\"\n\
             MINIO_SECRET_KEY='single # quoted'\n\
             SERVER_URL=https://api.example.com # the public base\n\
             EMPTY=\n\
             not a line\n\
             1BAD=x\n",
        );
        assert_eq!(vars["PORT"], "8080");
        assert_eq!(vars["LOG_LEVEL"], "debug");
        assert_eq!(vars["GLOBAL_API_KEY"], "a key with # and \"quotes\"");
        assert_eq!(vars["MINIO_SECRET_KEY"], "single # quoted");
        assert_eq!(vars["SERVER_URL"], "https://api.example.com");
        assert_eq!(vars["EMPTY"], "");
        assert_eq!(vars.len(), 6);
    }

    #[test]
    fn a_missing_file_is_no_variables() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(&dir.path().join(".env")).unwrap().is_empty());
    }
}
