//! Keys that just failed: a client that repeats a wrong key (a misconfigured integration, a
//! script) is answered 401 from memory for [`RecentMisses::TTL`] instead of a database lookup
//! per request. Keys are held by their SHA-256 hash only.
//!
//! A key that becomes valid is forgotten at once on the node that creates its session; another
//! node of a cluster may answer 401 for it for at most the TTL, which is why the TTL is short.
//! Bounded memory: at most [`RecentMisses::MAX_KEYS`] hashes; when full, expired ones are
//! dropped, and if none has expired the table starts over (memory wins over the saved lookups).

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

#[derive(Default)]
pub struct RecentMisses {
    table: Mutex<HashMap<String, Instant>>,
    /// Bumped whenever a key becomes valid: a miss looked up before that is not remembered.
    generation: std::sync::atomic::AtomicU64,
}

impl RecentMisses {
    pub const TTL: Duration = Duration::from_secs(2);
    pub const MAX_KEYS: usize = 10_000;

    /// Did the key with this hash fail within the TTL?
    pub fn contains(&self, hash: &str) -> bool {
        let table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        table.get(hash).is_some_and(|at| at.elapsed() < Self::TTL)
    }

    /// Where keys stand now; pass it to [`RecentMisses::insert`] after the lookup.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Remembers that the key with this hash failed, unless a key became valid since
    /// `generation` was read (the lookup may predate it).
    pub fn insert(&self, hash: String, generation: u64) {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if self.generation() != generation {
            return;
        }
        if table.len() >= Self::MAX_KEYS && !table.contains_key(&hash) {
            table.retain(|_, at| at.elapsed() < Self::TTL);
            if table.len() >= Self::MAX_KEYS {
                table.clear();
            }
        }
        table.insert(hash, Instant::now());
    }

    /// Forgets the hash of a key that is now valid.
    pub fn remove(&self, hash: &str) {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        table.remove(hash);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_miss_is_remembered_until_forgotten() {
        let m = RecentMisses::default();
        assert!(!m.contains("a"));
        m.insert("a".into(), m.generation());
        assert!(m.contains("a") && !m.contains("b"));
        m.remove("a");
        assert!(!m.contains("a"));
    }

    #[test]
    fn a_miss_looked_up_before_a_key_became_valid_is_not_kept() {
        let m = RecentMisses::default();
        let before = m.generation();
        m.remove("k");
        m.insert("k".into(), before);
        assert!(!m.contains("k"));
    }

    #[test]
    fn the_table_never_grows_past_its_bound() {
        let m = RecentMisses::default();
        for i in 0..RecentMisses::MAX_KEYS + 500 {
            m.insert(i.to_string(), m.generation());
        }
        assert!(m.table.lock().unwrap().len() <= RecentMisses::MAX_KEYS);
    }
}
