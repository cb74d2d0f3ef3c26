//! GCRA in Redis: one Lua script, the clock is Redis's own so every node agrees.

use std::time::Duration;

use redis::{
    Client, IntoConnectionInfo, Script,
    aio::{ConnectionManager, ConnectionManagerConfig},
};
use tokio::sync::OnceCell;

use super::{Decision, Quota};

/// KEYS[1]: the client's key. ARGV[1]: emission interval (µs). ARGV[2]: burst.
/// Returns {allowed (0|1), microseconds until the next request would be allowed}.
const GCRA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if now < allow_at then
  return {0, allow_at - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, 0}
"#;

#[derive(Debug, thiserror::Error)]
pub enum RedisLimitError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis: timed out")]
    Timeout,
}

pub struct RedisLimiter {
    client: Client,
    conn: OnceCell<ConnectionManager>,
    script: Script,
    interval_us: u64,
    burst: u32,
    prefix: String,
}

const TIMEOUT: Duration = Duration::from_millis(250);

impl RedisLimiter {
    pub fn new(url: &str, prefix: &str, quota: Quota) -> anyhow::Result<Self> {
        Ok(RedisLimiter {
            // Requests of many tasks share one multiplexed connection: without TCP_NODELAY
            // (redis-rs leaves it off) the second of two quick writes waits for a delayed ACK.
            client: Client::open(
                url.into_connection_info()?
                    .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true)),
            )?,
            conn: OnceCell::new(),
            script: Script::new(GCRA),
            interval_us: (quota.emission_interval().as_micros() as u64).max(1),
            burst: quota.burst.max(1),
            prefix: format!("{prefix}:rl:"),
        })
    }

    async fn conn(&self) -> Result<ConnectionManager, RedisLimitError> {
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        self.conn
            .get_or_try_init(|| ConnectionManager::new_with_config(self.client.clone(), cfg))
            .await
            .cloned()
            .map_err(Into::into)
    }

    pub async fn check(&self, key: &str) -> Result<Decision, RedisLimitError> {
        let mut conn = self.conn().await?;
        let mut invocation = self.script.key(format!("{}{key}", self.prefix));
        invocation.arg(self.interval_us).arg(self.burst);
        let fut = invocation.invoke_async::<(i64, i64)>(&mut conn);
        let (allowed, wait_us) = tokio::time::timeout(TIMEOUT, fut)
            .await
            .map_err(|_| RedisLimitError::Timeout)??;
        Ok(if allowed == 1 {
            Decision::Allow
        } else {
            Decision::Deny {
                retry_after: Duration::from_micros(wait_us.max(0) as u64),
            }
        })
    }

    pub async fn ping(&self) -> Result<(), RedisLimitError> {
        let mut conn = self.conn().await?;
        let cmd = redis::cmd("PING");
        let fut = cmd.query_async::<String>(&mut conn);
        tokio::time::timeout(TIMEOUT, fut)
            .await
            .map_err(|_| RedisLimitError::Timeout)??;
        Ok(())
    }
}
