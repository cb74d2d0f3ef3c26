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
