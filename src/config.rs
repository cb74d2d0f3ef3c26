//! Configuration from the environment, with OnWapp's variable names.
//!
//! Every variable is validated at start-up; a bad value stops the process with one line naming it.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use ipnet::IpNet;

/// A configuration error: always names the variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid {var}={value:?}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub value: String,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Console,
    Json,
}

/// Which CORS origins are allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    Any,
    List(Vec<String>),
}

#[derive(Clone)]
pub struct Config {
    pub port: u16,
    /// The address to listen on (`BIND_ADDRESS`, default every IPv4 interface).
    pub bind_address: std::net::IpAddr,
    pub data_dir: PathBuf,
    /// `None` means: the default SQLite file under `data_dir`.
    pub database_url: Option<String>,
    /// `None` means: generate one and keep it in `data_dir` (see [`crate::auth::ensure_global_key`]).
    pub global_api_key: Option<String>,
    pub redis_url: Option<String>,
    /// Prefix of every Redis key (several installations may share one Redis).
    pub redis_key_prefix: String,
    pub rate_limit_per_second: u32,
    pub rate_limit_burst: u32,
    pub trusted_proxies: Vec<IpNet>,
    pub allowed_origins: AllowedOrigins,
    pub log_level: String,
    pub log_format: LogFormat,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub db_max_connections: u32,
    /// `ws://...` of a WhatsApp test server (builds with the `wamock` feature only).
    pub whatsapp_server_url: Option<String>,
    /// `BENCH_ACK_BEFORE_STORE=1` (builds with the `wamock` feature only, for the benchmark
    /// that prices the inbound durability hook): received messages are acknowledged before
    /// they are stored, as without the hook. Never in a default build.
    pub bench_ack_before_store: bool,
    /// Largest media file sent (base64 or URL) or kept when received (`MEDIA_MAX_BYTES`).
    pub media_max_bytes: u64,
    /// Lets media URLs reach private, loopback and link-local addresses
    /// (`MEDIA_ALLOW_PRIVATE_URLS`; off by default: the SSRF guard).
    pub media_allow_private_urls: bool,
    /// Media files in an S3-compatible bucket (`MINIO_*`, when `MINIO_ENDPOINT` is set).
    pub s3: Option<crate::media::S3Settings>,
    /// Webhook delivery (`WEBHOOK_*`).
    pub webhooks: crate::webhooks::WebhookSettings,
    /// Events to NATS JetStream (`NATS_ENABLED=true`, `NATS_*`).
    pub nats: Option<crate::webhooks::nats::NatsSettings>,
    /// The node in its cluster (`NODE_*`, `CLUSTER_*`).
    pub cluster: crate::shards::settings::ClusterSettings,
    /// Traces over OTLP (`OTEL_EXPORTER_OTLP_ENDPOINT`); `None`: no traces exported.
    pub otel: Option<crate::observability::otel::OtelSettings>,
    /// `METRICS_ADDR`: `/metrics` is served on this address alone (not on `PORT`).
    pub metrics_addr: Option<SocketAddr>,
    /// `METRICS_TOKEN`: `/metrics` answers only `Authorization: Bearer <token>`.
    pub metrics_token: Option<String>,
    /// `SERVER_URL`: the public base of the URLs we hand out (a stored file's `storageUrl`
    /// when files are served through the API); `None`: those URLs are relative.
    pub server_url: Option<String>,
    /// `ENABLE_SECURITY_HEADERS` (default `true`): `X-Content-Type-Options`, `X-Frame-Options`
    /// and the rest on every answer.
    pub security_headers: bool,
    /// OnWapp variables that are set but have no effect here, with why (logged at start).
    pub without_effect: Vec<(&'static str, &'static str)>,
    /// The `.env` file the configuration was read with, if any (logged at start).
    pub dotenv: Option<PathBuf>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets are never printed.
        f.debug_struct("Config")
            .field("port", &self.port)
            .field("bind_address", &self.bind_address)
            .field("data_dir", &self.data_dir)
            .field("database", &self.database_kind())
            .field(
                "global_api_key",
                &self.global_api_key.as_ref().map(|_| "<set>"),
            )
            .field("redis", &self.redis_url.as_ref().map(|_| "<set>"))
            .field("rate_limit_per_second", &self.rate_limit_per_second)
            .field("rate_limit_burst", &self.rate_limit_burst)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("allowed_origins", &self.allowed_origins)
            .field("log_level", &self.log_level)
            .field("log_format", &self.log_format)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("media_max_bytes", &self.media_max_bytes)
            .field("media_allow_private_urls", &self.media_allow_private_urls)
            .field("s3", &self.s3)
            .field("webhooks", &self.webhooks)
            .field(
                "nats",
                &self
                    .nats
                    .as_ref()
                    .map(|n| (redact_url(&n.url), &n.stream_prefix)),
            )
            .field("cluster", &self.cluster)
            .field("otel", &self.otel)
            .field("metrics_addr", &self.metrics_addr)
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| "<set>"),
            )
            .field("server_url", &self.server_url)
            .field("security_headers", &self.security_headers)
            .finish()
    }
}

/// 140 MiB: a 100 MiB media file sent as base64 inside JSON fits.
pub const DEFAULT_MAX_BODY_BYTES: usize = 140 * 1024 * 1024;

impl Default for Config {
    fn default() -> Self {
        Config {
            port: 3000,
            bind_address: std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            data_dir: PathBuf::from("./data"),
            database_url: None,
            global_api_key: None,
            redis_url: None,
            redis_key_prefix: "onwapp".into(),
            rate_limit_per_second: 200,
            rate_limit_burst: 500,
            trusted_proxies: Vec::new(),
            allowed_origins: AllowedOrigins::Any,
            log_level: "info".into(),
            log_format: LogFormat::Console,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            request_timeout: Duration::from_secs(120),
            shutdown_timeout: Duration::from_secs(10),
            db_max_connections: 16,
            whatsapp_server_url: None,
            bench_ack_before_store: false,
            media_max_bytes: crate::media::DEFAULT_MAX_BYTES,
            media_allow_private_urls: false,
            s3: None,
            webhooks: crate::webhooks::WebhookSettings::default(),
            nats: None,
            cluster: Default::default(),
            otel: None,
            metrics_addr: None,
            metrics_token: None,
            server_url: None,
            security_headers: true,
            without_effect: Vec::new(),
            dotenv: None,
        }
    }
}

/// OnWapp variables with no meaning here, and why.
const WITHOUT_EFFECT: &[(&str, &str)] = &[
    (
        "GIN_MODE",
        "OnWapp's web framework (gin) is not used; LOG_LEVEL sets the detail of logs",
    ),
    (
        "DEBUG_HISTORY_SYNC",
        "history sync is not dumped to ./history_sync_dumps/; LOG_LEVEL=debug logs each sync",
    ),
];

impl Config {
    /// Reads the process environment.
    /// Reads the process environment, then `.env` in the working directory for what the
    /// environment leaves unset (`crate::dotenv`).
    pub fn from_env() -> Result<Self, ConfigError> {
        let path = PathBuf::from(".env");
        let file = crate::dotenv::read(&path).map_err(|reason| ConfigError {
            var: ".env",
            value: path.display().to_string(),
            reason,
        })?;
        let mut c = Self::from_lookup(|k| std::env::var(k).ok().or_else(|| file.get(k).cloned()))?;
        if !file.is_empty() {
            c.dotenv = Some(path);
        }
        Ok(c)
    }

    /// Reads configuration through `get`; empty values count as unset (as in OnWapp).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let mut c = Config::default();
        if let Some(v) = get("PORT") {
            c.port = parse_num("PORT", &v)?;
        }
        if let Some(v) = get("BIND_ADDRESS") {
            c.bind_address = v.parse().map_err(|_| {
                err(
                    "BIND_ADDRESS",
                    &v,
                    "must be an IP address (0.0.0.0: every IPv4 interface, ::: every interface)",
                )
            })?;
        }
        if let Some(v) = get("DATA_DIR") {
            c.data_dir = PathBuf::from(v);
        }
        if let Some(v) = get("DATABASE_URL") {
            if !(v.starts_with("postgres://")
                || v.starts_with("postgresql://")
                || v.starts_with("sqlite:"))
            {
                return Err(err(
                    "DATABASE_URL",
                    &redact_url(&v),
                    "must start with postgres://, postgresql:// or sqlite:",
                ));
            }
            c.database_url = Some(v);
        }
        c.global_api_key = get("GLOBAL_API_KEY");
        if let Some(k) = &c.global_api_key
            && !k.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(err(
                "GLOBAL_API_KEY",
                "<hidden>",
                "must be printable ASCII without spaces",
            ));
        }
        if let Some(v) = get("REDIS_URL") {
            if !(v.starts_with("redis://") || v.starts_with("rediss://")) {
                return Err(err(
                    "REDIS_URL",
                    &redact_url(&v),
                    "must start with redis:// or rediss://",
                ));
            }
            c.redis_url = Some(v);
        }
        if let Some(v) = get("REDIS_KEY_PREFIX") {
            c.redis_key_prefix = v;
        }
        for var in ["RATE_LIMIT_PER_SECOND", "RATE_LIMIT_REQUESTS_PER_SECOND"] {
            if let Some(v) = get(var) {
                c.rate_limit_per_second = parse_positive(var, &v)?;
                break;
            }
        }
        if let Some(v) = get("RATE_LIMIT_BURST") {
            c.rate_limit_burst = parse_positive("RATE_LIMIT_BURST", &v)?;
        }
        if let Some(v) = get("TRUSTED_PROXIES") {
            c.trusted_proxies = parse_proxies(&v)?;
        }
        if let Some(v) = get("ALLOWED_ORIGINS") {
            c.allowed_origins = parse_origins(&v)?;
        }
        if let Some(v) = get("LOG_LEVEL") {
            let l = v.to_ascii_lowercase();
            if !["trace", "debug", "info", "warn", "error"].contains(&l.as_str()) {
                return Err(err(
                    "LOG_LEVEL",
                    &v,
                    "must be one of trace, debug, info, warn, error",
                ));
            }
            c.log_level = l;
        }
        if let Some(v) = get("LOG_FORMAT") {
            c.log_format = match v.to_ascii_lowercase().as_str() {
                "console" => LogFormat::Console,
                "json" => LogFormat::Json,
                _ => return Err(err("LOG_FORMAT", &v, "must be console or json")),
            };
        }
        if let Some(v) = get("MAX_BODY_BYTES") {
            c.max_body_bytes = parse_positive::<usize>("MAX_BODY_BYTES", &v)?;
        }
        if let Some(v) = get("REQUEST_TIMEOUT_SECONDS") {
            c.request_timeout =
                Duration::from_secs(parse_bounded("REQUEST_TIMEOUT_SECONDS", &v, DAY)?);
        }
        if let Some(v) = get("SHUTDOWN_TIMEOUT_SECONDS") {
            c.shutdown_timeout =
                Duration::from_secs(parse_bounded("SHUTDOWN_TIMEOUT_SECONDS", &v, HOUR)?);
        }
        if let Some(v) = get("DATABASE_MAX_CONNECTIONS") {
            c.db_max_connections = parse_positive("DATABASE_MAX_CONNECTIONS", &v)?;
        }
        if let Some(v) = get("WHATSAPP_SERVER_URL") {
            if !cfg!(feature = "wamock") {
                return Err(err(
                    "WHATSAPP_SERVER_URL",
                    &v,
                    "only builds with the `wamock` feature may talk to a test server",
                ));
            }
            if !(v.starts_with("ws://") || v.starts_with("wss://")) {
                return Err(err(
                    "WHATSAPP_SERVER_URL",
                    &v,
                    "must start with ws:// or wss://",
                ));
            }
            c.whatsapp_server_url = Some(v);
        }
        if let Some(v) = get("BENCH_ACK_BEFORE_STORE") {
            if !cfg!(feature = "wamock") {
                return Err(err(
                    "BENCH_ACK_BEFORE_STORE",
                    &v,
                    "only builds with the `wamock` feature may acknowledge before storing",
                ));
            }
            c.bench_ack_before_store = v == "1" || v.eq_ignore_ascii_case("true");
        }
        if let Some(v) = get("MEDIA_MAX_BYTES") {
            c.media_max_bytes = parse_positive("MEDIA_MAX_BYTES", &v)?;
        }
        if let Some(v) = get("MEDIA_ALLOW_PRIVATE_URLS") {
            c.media_allow_private_urls = parse_bool("MEDIA_ALLOW_PRIVATE_URLS", &v)?;
        }
        c.s3 = s3_settings(&get)?;
        if let Some(v) = get("WEBHOOK_ALLOW_PRIVATE_URLS") {
            c.webhooks.allow_private_urls = parse_bool("WEBHOOK_ALLOW_PRIVATE_URLS", &v)?;
        }
        if let Some(v) = get("WEBHOOK_WORKERS") {
            c.webhooks.workers = v
                .parse()
                .map_err(|_| err("WEBHOOK_WORKERS", &v, "must be a whole number"))?;
        }
        if let Some(v) = get("WEBHOOK_TIMEOUT") {
            c.webhooks.timeout = Duration::from_secs(parse_bounded("WEBHOOK_TIMEOUT", &v, HOUR)?);
        }
        if let Some(v) = get("WEBHOOK_MAX_ATTEMPTS") {
            c.webhooks.max_attempts = parse_positive("WEBHOOK_MAX_ATTEMPTS", &v)?;
        }
        if let Some(v) = get("WEBHOOK_BASE_DELAY_MS") {
            c.webhooks.base_delay =
                Duration::from_millis(parse_bounded("WEBHOOK_BASE_DELAY_MS", &v, HOUR * 1000)?);
        }
        if let Some(v) = get("WEBHOOK_MAX_DELAY") {
            c.webhooks.max_delay =
                Duration::from_secs(parse_bounded("WEBHOOK_MAX_DELAY", &v, 7 * DAY)?);
        }
        if let Some(v) = get("WEBHOOK_RETENTION") {
            c.webhooks.retention =
                Duration::from_secs(parse_bounded("WEBHOOK_RETENTION", &v, 3650 * DAY)?);
        }
        if let Some(v) = get("WEBHOOK_POLL_MS") {
            c.webhooks.poll_interval =
                Duration::from_millis(parse_bounded("WEBHOOK_POLL_MS", &v, 60_000)?);
        }
        c.nats = nats_settings(&get)?;
        c.cluster = crate::shards::settings::ClusterSettings::from_lookup(
            &get,
            c.database_kind() == "postgres",
        )?;
        c.otel = crate::observability::otel::settings_from(&get)?;
        if let Some(v) = get("METRICS_ADDR") {
            c.metrics_addr = Some(v.parse().map_err(|_| {
                err(
                    "METRICS_ADDR",
                    &v,
                    "must be an address and port, e.g. 0.0.0.0:9090",
                )
            })?);
        }
        if let Some(v) = get("SERVER_URL") {
            let ok = url::Url::parse(&v)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
            if !ok {
                return Err(err(
                    "SERVER_URL",
                    &v,
                    "must be the public http(s):// URL of this server",
                ));
            }
            c.server_url = Some(v.trim_end_matches('/').to_string());
        }
        if let Some(v) = get("ENABLE_SECURITY_HEADERS") {
            // OnWapp's rule for booleans: only the exact string `true` is true.
            c.security_headers = v == "true";
        }
        c.without_effect = WITHOUT_EFFECT
            .iter()
            .filter(|(var, _)| get(var).is_some())
            .copied()
            .collect();
        if let Some(v) = get("METRICS_TOKEN") {
            if v.len() < 16 || !v.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(err(
                    "METRICS_TOKEN",
                    "<hidden>",
                    "must be at least 16 printable characters without spaces",
                ));
            }
            c.metrics_token = Some(v);
        }
        Ok(c)
    }

    /// The database URL in effect: the configured one or the default SQLite file.
    pub fn effective_database_url(&self) -> String {
        match &self.database_url {
            Some(u) => u.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("onwapp.db").display()
            ),
        }
    }

    pub fn database_kind(&self) -> &'static str {
        match &self.database_url {
            Some(u) if u.starts_with("postgres") => "postgres",
            _ => "sqlite",
        }
    }
}

/// `NATS_*`: JetStream publishing when `NATS_ENABLED` is `true` (OnWapp: only that exact
/// string), with OnWapp's defaults. Durations are Go's (`5s`, `1m30s`, `500ms`).
fn nats_settings(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<Option<crate::webhooks::nats::NatsSettings>, ConfigError> {
    if get("NATS_ENABLED").as_deref() != Some("true") {
        return Ok(None);
    }
    let mut n = crate::webhooks::nats::NatsSettings::default();
    if let Some(v) = get("NATS_URL") {
        let ok = v.split(',').all(|u| {
            let u = u.trim();
            let with_scheme = if u.contains("://") {
                u.to_string()
            } else {
                format!("nats://{u}")
            };
            url::Url::parse(&with_scheme).is_ok_and(|p| {
                matches!(p.scheme(), "nats" | "tls" | "ws" | "wss") && p.host_str().is_some()
            })
        });
        if !ok {
            return Err(err(
                "NATS_URL",
                &redact_url(&v),
                "must be nats://host:port (several separated by commas)",
            ));
        }
        n.url = v;
    }
    if let Some(v) = get("NATS_STREAM_PREFIX") {
        if !v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(err(
                "NATS_STREAM_PREFIX",
                &v,
                "must be letters, digits, '_' and '-' (it names the stream and starts every subject)",
            ));
        }
        n.stream_prefix = v;
    }
    if let Some(v) = get("NATS_MAX_RETRIES") {
        n.max_retries = parse_positive("NATS_MAX_RETRIES", &v)?;
    }
    for (var, slot) in [
        ("NATS_RETRY_DELAY", &mut n.retry_delay),
        ("NATS_ACK_WAIT", &mut n.ack_wait),
        ("NATS_DUPLICATE_WINDOW", &mut n.duplicate_window),
    ] {
        if let Some(v) = get(var) {
            let d = parse_go_duration(&v)
                .filter(|d| !d.is_zero() && *d <= Duration::from_secs(DAY))
                .ok_or_else(|| {
                    err(
                        var,
                        &v,
                        "must be a duration such as 5s, 500ms or 1m30s, at most 24h",
                    )
                })?;
            *slot = d;
        }
    }
    Ok(Some(n))
}

/// A Go duration (`300ms`, `5s`, `1m30s`, `2h`); a bare number is seconds.
pub fn parse_go_duration(v: &str) -> Option<Duration> {
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let mut total = 0f64;
    let mut rest = v;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|&i| i > 0)?;
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * scale;
        rest = &rest[unit_end..];
    }
    (total.is_finite() && total < 1e12).then(|| Duration::from_secs_f64(total))
}

/// `MINIO_*`: an object store when `MINIO_ENDPOINT` is set, with OnWapp's defaults for the
/// rest. (OnWapp also tried `localhost:9000` when it was not set; here an unset endpoint means
/// no object store.)
fn s3_settings(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<Option<crate::media::S3Settings>, ConfigError> {
    let Some(endpoint) = get("MINIO_ENDPOINT") else {
        for var in [
            "MINIO_ACCESS_KEY",
            "MINIO_SECRET_KEY",
            "MINIO_BUCKET",
            "MINIO_PUBLIC_URL",
        ] {
            if get(var).is_some() {
                return Err(err(
                    var,
                    if var == "MINIO_SECRET_KEY" {
                        "<hidden>"
                    } else {
                        "<set>"
                    },
                    "is set but MINIO_ENDPOINT is not: set MINIO_ENDPOINT to the object store's host:port",
                ));
            }
        }
        return Ok(None);
    };
    let mut s = crate::media::S3Settings::with_endpoint(endpoint.clone());
    if let Some(v) = get("MINIO_ACCESS_KEY") {
        s.access_key = v;
    }
    if let Some(v) = get("MINIO_SECRET_KEY") {
        s.secret_key = v;
    }
    if let Some(v) = get("MINIO_BUCKET") {
        // S3's rule for bucket names: 3 to 63 lowercase letters, digits, dots and hyphens.
        let ok = (3..=63).contains(&v.len())
            && v.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
            && v.as_bytes()[0].is_ascii_alphanumeric()
            && v.as_bytes()[v.len() - 1].is_ascii_alphanumeric();
        if !ok {
            return Err(err(
                "MINIO_BUCKET",
                &v,
                "must be 3 to 63 lowercase letters, digits, dots and hyphens",
            ));
        }
        s.bucket = v;
    }
    // OnWapp: only the exact string `true` turns TLS on.
    s.use_ssl = get("MINIO_USE_SSL").is_some_and(|v| v == "true");
    if let Some(v) = get("MINIO_REGION") {
        s.region = v;
    }
    if let Some(v) = get("MINIO_PUBLIC_URL") {
        let url = url::Url::parse(&v)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .ok_or_else(|| err("MINIO_PUBLIC_URL", &v, "must be an http(s):// URL"))?;
        s.public_url = Some(url);
    }
    if let Some(v) = get("MINIO_PRESIGN_EXPIRY") {
        s.presign_expiry = Duration::from_secs(parse_positive("MINIO_PRESIGN_EXPIRY", &v)?);
        if s.presign_expiry > crate::media::s3::MAX_PRESIGN {
            return Err(err(
                "MINIO_PRESIGN_EXPIRY",
                &v,
                "must be at most 604800 seconds (7 days, the longest a presigned URL lives)",
            ));
        }
    }
    s.endpoint_url()
        .map_err(|reason| err("MINIO_ENDPOINT", &endpoint, &reason))?;
    Ok(Some(s))
}

fn err(var: &'static str, value: &str, reason: &str) -> ConfigError {
    ConfigError {
        var,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

fn parse_num<T: std::str::FromStr>(var: &'static str, v: &str) -> Result<T, ConfigError> {
    v.parse::<T>()
        .map_err(|_| err(var, v, "must be a whole number in range"))
}

fn parse_bool(var: &'static str, v: &str) -> Result<bool, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(err(var, v, "must be true or false")),
    }
}

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

/// A whole number from 1 to `max`: durations stay far from what date arithmetic overflows on.
fn parse_bounded(var: &'static str, v: &str, max: u64) -> Result<u64, ConfigError> {
    let n: u64 = parse_positive(var, v)?;
    if n > max {
        return Err(err(var, v, &format!("must be at most {max}")));
    }
    Ok(n)
}

/// `v` with the password of a URL (`scheme://user:password@host`) hidden, for messages.
pub fn redact_url(v: &str) -> String {
    if let Ok(mut u) = url::Url::parse(v)
        && u.password().is_some()
        && u.set_password(Some("***")).is_ok()
    {
        return u.to_string();
    }
    // Not a URL the parser takes: hide whatever sits between `://` and the last `@`.
    match (v.find("://"), v.rfind('@')) {
        (Some(start), Some(at)) if at > start + 3 => {
            format!("{}***{}", &v[..start + 3], &v[at..])
        }
        _ => v.to_string(),
    }
}

fn parse_positive<T: std::str::FromStr + PartialOrd + Default>(
    var: &'static str,
    v: &str,
) -> Result<T, ConfigError> {
    let n: T = parse_num(var, v)?;
    if n <= T::default() {
        return Err(err(var, v, "must be greater than zero"));
    }
    Ok(n)
}

fn parse_proxies(v: &str) -> Result<Vec<IpNet>, ConfigError> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    err(
                        "TRUSTED_PROXIES",
                        s,
                        "must be a comma-separated list of IPs or CIDRs",
                    )
                })
        })
        .collect()
}

fn parse_origins(v: &str) -> Result<AllowedOrigins, ConfigError> {
    if v == "*" {
        return Ok(AllowedOrigins::Any);
    }
    let mut list = Vec::new();
    for o in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if o == "*" {
            return Ok(AllowedOrigins::Any);
        }
        if !(o.starts_with("http://") || o.starts_with("https://"))
            || o.parse::<http::HeaderValue>().is_err()
        {
            return Err(err(
                "ALLOWED_ORIGINS",
                o,
                "must be * or a comma-separated list of http(s) origins",
            ));
        }
        list.push(o.trim_end_matches('/').to_string());
    }
    Ok(AllowedOrigins::List(list))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn onwapp_object_store_variables() {
        assert!(cfg(&[]).unwrap().s3.is_none());
        let c = cfg(&[("MINIO_ENDPOINT", "minio:9000")]).unwrap();
        let s = c.s3.expect("an object store");
        assert_eq!(
            (
                s.access_key.as_str(),
                s.secret_key.as_str(),
                s.bucket.as_str()
            ),
            ("onwapp", "postgres", "onwapp-media"),
            "OnWapp's defaults"
        );
        assert!(!s.use_ssl);
        let c = cfg(&[
            ("MINIO_ENDPOINT", "s3.example.com"),
            ("MINIO_USE_SSL", "true"),
            ("MINIO_BUCKET", "media.prod-1"),
            ("MINIO_PUBLIC_URL", "https://cdn.example.com"),
        ])
        .unwrap();
        let s = c.s3.unwrap();
        assert_eq!(
            s.endpoint_url().unwrap().as_str(),
            "https://s3.example.com/"
        );
        assert_eq!(s.public_url.unwrap().as_str(), "https://cdn.example.com/");
        // Only the exact string `true` turns TLS on, as in OnWapp.
        let c = cfg(&[("MINIO_ENDPOINT", "m:9000"), ("MINIO_USE_SSL", "TRUE")]).unwrap();
        assert!(!c.s3.unwrap().use_ssl);
        for (pairs, var) in [
            (vec![("MINIO_BUCKET", "x")], "MINIO_BUCKET"),
            (
                vec![("MINIO_ENDPOINT", "m:9000"), ("MINIO_BUCKET", "Upper")],
                "MINIO_BUCKET",
            ),
            (
                vec![("MINIO_ENDPOINT", "m:9000"), ("MINIO_PUBLIC_URL", "cdn")],
                "MINIO_PUBLIC_URL",
            ),
            (
                vec![
                    ("MINIO_ENDPOINT", "m:9000"),
                    ("MINIO_PRESIGN_EXPIRY", "604801"),
                ],
                "MINIO_PRESIGN_EXPIRY",
            ),
            (vec![("MINIO_ENDPOINT", "ftp://m")], "MINIO_ENDPOINT"),
        ] {
            assert_eq!(cfg(&pairs).unwrap_err().var, var, "{pairs:?}");
        }
    }

    #[test]
    fn onwapp_nats_variables() {
        assert!(
            cfg(&[("NATS_URL", "nats://n:4222")])
                .unwrap()
                .nats
                .is_none()
        );
        assert!(cfg(&[("NATS_ENABLED", "1")]).unwrap().nats.is_none());
        let n = cfg(&[("NATS_ENABLED", "true")]).unwrap().nats.unwrap();
        assert_eq!(n, crate::webhooks::nats::NatsSettings::default());
        let n = cfg(&[
            ("NATS_ENABLED", "true"),
            ("NATS_URL", "nats://a:4222,nats://b:4222"),
            ("NATS_STREAM_PREFIX", "EVENTS"),
            ("NATS_MAX_RETRIES", "3"),
            ("NATS_RETRY_DELAY", "1m30s"),
            ("NATS_ACK_WAIT", "500ms"),
        ])
        .unwrap()
        .nats
        .unwrap();
        assert_eq!(n.stream_prefix, "EVENTS");
        assert_eq!(n.max_retries, 3);
        assert_eq!(n.retry_delay, Duration::from_secs(90));
        assert_eq!(n.ack_wait, Duration::from_millis(500));
        for (var, value) in [
            ("NATS_STREAM_PREFIX", "A.B"),
            ("NATS_RETRY_DELAY", "soon"),
            ("NATS_ACK_WAIT", "0s"),
            ("NATS_URL", "http://x"),
        ] {
            let e = cfg(&[("NATS_ENABLED", "true"), (var, value)]).unwrap_err();
            assert_eq!(e.var, var);
        }
        assert_eq!(parse_go_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("10"), Some(Duration::from_secs(10)));
        assert_eq!(parse_go_duration("5x"), None);
        assert_eq!(parse_go_duration(""), None);
    }

    #[test]
    fn onwapp_variables_without_effect_and_server_url() {
        let c = cfg(&[
            ("GIN_MODE", "release"),
            ("SERVER_URL", "https://api.example.com/"),
            ("ENABLE_SECURITY_HEADERS", "false"),
        ])
        .unwrap();
        assert_eq!(
            c.without_effect.iter().map(|(v, _)| *v).collect::<Vec<_>>(),
            ["GIN_MODE"]
        );
        assert_eq!(c.server_url.as_deref(), Some("https://api.example.com"));
        assert!(!c.security_headers);
        assert!(cfg(&[]).unwrap().security_headers);
        assert_eq!(cfg(&[("SERVER_URL", "api")]).unwrap_err().var, "SERVER_URL");
    }

    #[test]
    fn defaults() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.port, 3000);
        assert_eq!(c.rate_limit_per_second, 200);
        assert_eq!(c.rate_limit_burst, 500);
        assert_eq!(c.database_kind(), "sqlite");
        assert!(
            c.effective_database_url()
                .starts_with("sqlite://./data/onwapp.db")
        );
        assert_eq!(c.allowed_origins, AllowedOrigins::Any);
    }

    #[test]
    fn both_rate_limit_names_are_accepted() {
        assert_eq!(
            cfg(&[("RATE_LIMIT_PER_SECOND", "7")])
                .unwrap()
                .rate_limit_per_second,
            7
        );
        assert_eq!(
            cfg(&[("RATE_LIMIT_REQUESTS_PER_SECOND", "9")])
                .unwrap()
                .rate_limit_per_second,
            9
        );
    }

    #[test]
    fn a_urls_password_never_appears_in_an_error() {
        for (k, v) in [
            ("DATABASE_URL", "mysql://root:hunter2-secret@db:3306/x"),
            ("REDIS_URL", "http://user:hunter2-secret@cache:6379"),
            ("DATABASE_URL", "my sql://root:hunter2-secret@db"),
        ] {
            let e = cfg(&[(k, v)]).err().unwrap();
            assert!(!e.to_string().contains("hunter2"), "{e}");
            assert!(e.to_string().contains("***"), "{e}");
        }
    }

    #[test]
    fn durations_are_bounded() {
        for (k, v) in [
            ("WEBHOOK_RETENTION", "18446744073709551615"),
            ("WEBHOOK_RETENTION", "9999999999"),
            ("WEBHOOK_MAX_DELAY", "99999999"),
            ("REQUEST_TIMEOUT_SECONDS", "99999999"),
            ("WEBHOOK_POLL_MS", "99999999"),
        ] {
            let e = cfg(&[(k, v)])
                .err()
                .unwrap_or_else(|| panic!("{k}={v} accepted"));
            assert_eq!(e.var, k);
        }
        assert!(cfg(&[("WEBHOOK_RETENTION", "315360000")]).is_ok());
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (k, v) in [
            ("PORT", "http"),
            ("PORT", "70000"),
            ("BIND_ADDRESS", "localhost"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
            ("OTEL_TRACES_EXPORTER", "jaeger"),
            ("RATE_LIMIT_BURST", "0"),
            ("RATE_LIMIT_PER_SECOND", "-1"),
            ("LOG_FORMAT", "xml"),
            ("LOG_LEVEL", "loud"),
            ("TRUSTED_PROXIES", "10.0.0.0/99"),
            ("DATABASE_URL", "mysql://x"),
            ("REDIS_URL", "localhost:6379"),
            ("ALLOWED_ORIGINS", "example.com"),
            ("MEDIA_MAX_BYTES", "0"),
            ("MEDIA_ALLOW_PRIVATE_URLS", "maybe"),
            ("WEBHOOK_ALLOW_PRIVATE_URLS", "maybe"),
            ("METRICS_ADDR", "9090"),
            ("METRICS_TOKEN", "short"),
            ("GLOBAL_API_KEY", "has space"),
        ] {
            let e = cfg(&[(k, v)])
                .err()
                .unwrap_or_else(|| panic!("{k}={v} accepted"));
            assert_eq!(e.var, k);
            assert!(e.to_string().contains(k));
        }
    }

    #[test]
    fn media_settings() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.media_max_bytes, 100 * 1024 * 1024);
        assert!(!c.media_allow_private_urls);
        let c = cfg(&[
            ("MEDIA_MAX_BYTES", "1048576"),
            ("MEDIA_ALLOW_PRIVATE_URLS", "true"),
        ])
        .unwrap();
        assert_eq!(c.media_max_bytes, 1_048_576);
        assert!(c.media_allow_private_urls);
    }

    #[test]
    fn webhook_settings() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.webhooks, crate::webhooks::WebhookSettings::default());
        assert_eq!(c.webhooks.max_attempts, 10);
        assert_eq!(c.webhooks.max_delay, Duration::from_secs(300));
        let c = cfg(&[
            ("WEBHOOK_WORKERS", "0"),
            ("WEBHOOK_TIMEOUT", "3"),
            ("WEBHOOK_MAX_ATTEMPTS", "4"),
            ("WEBHOOK_BASE_DELAY_MS", "50"),
            ("WEBHOOK_MAX_DELAY", "60"),
            ("WEBHOOK_RETENTION", "3600"),
        ])
        .unwrap();
        assert_eq!(c.webhooks.workers, 0);
        assert_eq!(c.webhooks.timeout, Duration::from_secs(3));
        assert_eq!(c.webhooks.max_attempts, 4);
        assert_eq!(c.webhooks.base_delay, Duration::from_millis(50));
        assert_eq!(c.webhooks.max_delay, Duration::from_secs(60));
        assert_eq!(c.webhooks.retention, Duration::from_secs(3600));
        let e = cfg(&[("WEBHOOK_MAX_ATTEMPTS", "0")]).unwrap_err();
        assert_eq!(e.var, "WEBHOOK_MAX_ATTEMPTS");
    }

    #[test]
    fn proxies_and_origins_parse() {
        let c = cfg(&[
            ("TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8,::1"),
            ("ALLOWED_ORIGINS", "https://a.example,http://b.example/"),
        ])
        .unwrap();
        assert_eq!(c.trusted_proxies.len(), 3);
        assert_eq!(
            c.allowed_origins,
            AllowedOrigins::List(vec!["https://a.example".into(), "http://b.example".into()])
        );
    }
}
