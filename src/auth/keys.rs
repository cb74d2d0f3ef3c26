//! Key generation, hashing and the persisted global key.

use std::{io::Write, path::Path};

use rand::RngCore;
use sha2::{Digest, Sha256};

/// 32 random bytes as 64 lowercase hex characters (OnWapp's format).
pub fn generate_key() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// Hex SHA-256 of a key: what the database indexes.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The file under the data directory that keeps a generated global key.
pub const GLOBAL_KEY_FILE: &str = "global_api_key";

/// The generated key kept in `data_dir`, if there is one.
pub fn kept_global_key(data_dir: &Path) -> Option<String> {
    let kept = std::fs::read_to_string(data_dir.join(GLOBAL_KEY_FILE)).ok()?;
    Some(kept.trim().to_string()).filter(|k| !k.is_empty())
}

/// Returns the configured key, or the one kept in `data_dir`, or a new one written there
/// (readable by the owner only). The flag tells whether a key was generated now.
pub fn ensure_global_key(
    configured: Option<&str>,
    data_dir: &Path,
) -> std::io::Result<(String, bool)> {
    if let Some(k) = configured {
        return Ok((k.to_string(), false));
    }
    if let Some(k) = kept_global_key(data_dir) {
        return Ok((k, false));
    }
    let path = data_dir.join(GLOBAL_KEY_FILE);
    std::fs::create_dir_all(data_dir)?;
    let key = generate_key();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&path)?;
    f.write_all(key.as_bytes())?;
    f.write_all(b"\n")?;
    Ok((key, true))
}

/// The shell command that prints the generated global key.
pub fn keys_file_hint(data_dir: &Path) -> String {
    format!("cat {}", data_dir.join(GLOBAL_KEY_FILE).display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_is_kept_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (k1, new1) = ensure_global_key(None, dir.path()).unwrap();
        let (k2, new2) = ensure_global_key(None, dir.path()).unwrap();
        assert!(new1 && !new2);
        assert_eq!(k1, k2);
        assert_eq!(k1.len(), 64);
        let (k3, new3) = ensure_global_key(Some("configured-key-123"), dir.path()).unwrap();
        assert_eq!((k3.as_str(), new3), ("configured-key-123", false));
    }

    #[test]
    fn keys_differ_and_hash_is_hex() {
        assert_ne!(generate_key(), generate_key());
        assert_eq!(hash_key("a").len(), 64);
    }
}
