//! Failed secret checks by client address: after [`FailedAttempts::LIMIT`] failures in a
//! [`FailedAttempts::WINDOW`], an address is refused (429) without its secret being checked
//! until the window ends, so a secret cannot be guessed at full speed. Only failures count: a
//! member that sends the right secret is never slowed, however much it sends.
//!
//! Bounded memory: at most [`FailedAttempts::MAX_ADDRESSES`] addresses are tracked; when the
//! table is full, windows that ended are dropped, and if none has, the table starts over (an
//! attacker with that many addresses gets a fresh budget, never the memory).

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

#[derive(Default)]
pub struct FailedAttempts {
    table: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl FailedAttempts {
    pub const LIMIT: u32 = 20;
    pub const WINDOW: Duration = Duration::from_secs(10);
    pub const MAX_ADDRESSES: usize = 10_000;

    /// How long `ip` is still refused, if it is.
    pub fn refused(&self, ip: IpAddr) -> Option<Duration> {
        let table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let (since, n) = table.get(&ip)?;
        let left = Self::WINDOW.checked_sub(since.elapsed())?;
        (*n >= Self::LIMIT).then_some(left)
    }

    /// Counts a failed check from `ip`.
    pub fn failed(&self, ip: IpAddr) {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if table.len() >= Self::MAX_ADDRESSES && !table.contains_key(&ip) {
            table.retain(|_, (since, _)| since.elapsed() < Self::WINDOW);
            if table.len() >= Self::MAX_ADDRESSES {
                table.clear();
            }
        }
        let entry = table.entry(ip).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= Self::WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_refused_after_the_limit_and_others_are_not() {
        let f = FailedAttempts::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..FailedAttempts::LIMIT - 1 {
            f.failed(a);
        }
        assert_eq!(f.refused(a), None);
        f.failed(a);
        assert!(f.refused(a).is_some_and(|d| d <= FailedAttempts::WINDOW));
        assert_eq!(f.refused(b), None);
    }

    #[test]
    fn the_table_never_grows_past_its_bound() {
        let f = FailedAttempts::default();
        for i in 0..(FailedAttempts::MAX_ADDRESSES as u32 + 500) {
            f.failed(IpAddr::from(i.to_be_bytes()));
        }
        assert!(f.table.lock().unwrap().len() <= FailedAttempts::MAX_ADDRESSES);
    }
}
