//! What the benchmark binaries share: their `--flag value` arguments, a fresh Postgres database
//! (created from `TEST_DATABASE_URL` and dropped at the end), and percentiles.
#![allow(dead_code)] // each benchmark uses a part

/// The value of `--name <n>` on the command line, if given and a number.
pub fn flag(name: &str) -> Option<u64> {
    let v: Vec<String> = std::env::args().collect();
    let i = v.iter().position(|a| a == name)?;
    v.get(i + 1)?.parse().ok()
}

/// A database of its own on the test server; [`FreshPostgres::drop_db`] removes it.
pub struct FreshPostgres {
    pub url: String,
    base: String,
    name: String,
}

impl FreshPostgres {
    /// `None` when no Postgres answers at `TEST_DATABASE_URL` (default the local one).
    pub async fn create() -> Option<FreshPostgres> {
        use sqlx::{Connection, Executor};
        let base = std::env::var("TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let mut c = sqlx::PgConnection::connect(&base).await.ok()?;
        let name = format!("onwapp_t_bench_{}", uuid::Uuid::new_v4().simple());
        c.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .await
            .ok()?;
        let i = base.rfind('/')?;
        Some(FreshPostgres {
            url: format!("{}/{name}", &base[..i]),
            base,
            name,
        })
    }

    pub async fn drop_db(self) {
        use sqlx::{Connection, Executor};
        if let Ok(mut c) = sqlx::PgConnection::connect(&self.base).await {
            let _ = c
                .execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                    self.name
                )))
                .await;
        }
    }
}

/// The `p` quantile (0..=1) of sorted microsecond samples, in milliseconds.
pub fn pct_ms(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let i = ((sorted_us.len() as f64 - 1.0) * p).round() as usize;
    sorted_us[i.min(sorted_us.len() - 1)] as f64 / 1000.0
}

/// CPU time spent, in clock ticks (`/proc`, Linux): by each watched process and by the whole
/// machine. What a request costs where, when a load phase's deltas are divided by its requests.
#[derive(Debug, Default, Clone)]
pub struct Cpu {
    /// Per watched pid, in the order given (0 when unreadable).
    pub procs: Vec<u64>,
    /// This process (the load generator).
    pub me: u64,
    /// Every core's busy time.
    pub machine: u64,
}

impl Cpu {
    pub fn read(pids: &[u32]) -> Cpu {
        Cpu {
            procs: pids.iter().map(|p| proc_ticks(&p.to_string())).collect(),
            me: proc_ticks("self"),
            machine: machine_ticks(),
        }
    }

    /// `later - self`, field by field.
    pub fn until(&self, later: &Cpu) -> Cpu {
        Cpu {
            procs: self
                .procs
                .iter()
                .zip(&later.procs)
                .map(|(a, b)| b.saturating_sub(*a))
                .collect(),
            me: later.me.saturating_sub(self.me),
            machine: later.machine.saturating_sub(self.machine),
        }
    }

    pub fn add(&mut self, other: &Cpu) {
        if self.procs.len() < other.procs.len() {
            self.procs.resize(other.procs.len(), 0);
        }
        for (a, b) in self.procs.iter_mut().zip(&other.procs) {
            *a += b;
        }
        self.me += other.me;
        self.machine += other.machine;
    }
}

/// Microseconds of CPU per request for `ticks` spent over `requests`.
pub fn us_per(ticks: u64, requests: usize) -> f64 {
    // Linux reports /proc times in USER_HZ, 100 on every platform it runs on.
    ticks as f64 * 10_000.0 / requests.max(1) as f64
}

/// utime + stime of `/proc/<pid>/stat`.
fn proc_ticks(pid: &str) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the command name, which may hold spaces: state is the first, utime the 12th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    f.get(10).copied().unwrap_or(0) + f.get(11).copied().unwrap_or(0)
}

/// Busy ticks of all cores: user, nice, system, irq, softirq and steal of `/proc/stat`.
fn machine_ticks() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0;
    };
    let f: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    [0, 1, 2, 5, 6, 7].iter().filter_map(|i| f.get(*i)).sum()
}
