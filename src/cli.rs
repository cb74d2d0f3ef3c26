//! The binary's commands besides serving: `onwapp drain`, the client Kubernetes runs in a pod's
//! `preStop` hook (the image has no shell and no curl, so the binary is its own client).
//!
//! `onwapp drain [--timeout-seconds N]` asks the node running beside it (same environment:
//! `PORT`, `BIND_ADDRESS`, `GLOBAL_API_KEY` or the key kept under `DATA_DIR`) to hand every shard
//! to the other nodes (`POST /admin/drain`), prints the node's answer and exits 0 when every
//! shard moved. A node that is not running, or a drain that timed out, exits non-zero: the
//! kubelet records the failure and stops the pod anyway.

use std::{net::IpAddr, time::Duration};

use crate::{
    auth::{GLOBAL_KEY_FILE, kept_global_key},
    config::Config,
};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("usage: onwapp [drain [--timeout-seconds N] | -version]: {0}")]
    Usage(String),
    #[error("no global API key: set GLOBAL_API_KEY or keep one in {0}")]
    NoKey(String),
    #[error("the node did not answer: {0}")]
    Unreachable(String),
    #[error("the node answered {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("the drain ended with shards left: {0}")]
    Incomplete(String),
}

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Serve,
    Drain {
        timeout_seconds: u64,
    },
    /// `-version` or `-v` (as OnWapp's flags), `--version`: prints the version and exits.
    Version,
}

impl Command {
    /// Parses the arguments after the program name.
    pub fn parse(args: &[String]) -> Result<Self, CliError> {
        let Some(first) = args.first() else {
            return Ok(Command::Serve);
        };
        match first.as_str() {
            "serve" if args.len() == 1 => Ok(Command::Serve),
            "-version" | "-v" | "--version" | "version" if args.len() == 1 => Ok(Command::Version),
            "drain" => {
                let mut timeout_seconds = 60;
                let mut rest = args[1..].iter();
                while let Some(a) = rest.next() {
                    let value = match a.split_once('=') {
                        Some(("--timeout-seconds", v)) => v.to_string(),
                        None if a == "--timeout-seconds" => {
                            rest.next().cloned().ok_or_else(|| {
                                CliError::Usage("--timeout-seconds needs a value".into())
                            })?
                        }
                        _ => return Err(CliError::Usage(format!("unknown argument {a}"))),
                    };
                    timeout_seconds = match value.parse::<u64>() {
                        Ok(n @ 1..=600) => n,
                        _ => {
                            return Err(CliError::Usage(format!(
                                "--timeout-seconds must be from 1 to 600, not {value}"
                            )));
                        }
                    };
                }
                Ok(Command::Drain { timeout_seconds })
            }
            other => Err(CliError::Usage(format!("unknown command {other}"))),
        }
    }
}

/// Drains the local node; returns its answer (JSON) when every shard moved.
pub async fn drain(config: &Config, timeout_seconds: u64) -> Result<String, CliError> {
    let key = config
        .global_api_key
        .clone()
        .or_else(|| kept_global_key(&config.data_dir))
        .ok_or_else(|| {
            CliError::NoKey(config.data_dir.join(GLOBAL_KEY_FILE).display().to_string())
        })?;
    let host = match config.bind_address {
        IpAddr::V4(a) if a.is_unspecified() => "127.0.0.1".to_string(),
        IpAddr::V6(a) if a.is_unspecified() => "[::1]".to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
        a => a.to_string(),
    };
    let url = format!("http://{host}:{}/admin/drain", config.port);
    // Never through HTTP_PROXY: the node is on this host.
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(timeout_seconds + 10))
        .build()
        .map_err(|e| CliError::Unreachable(e.to_string()))?;
    let resp = client
        .post(&url)
        .header("Authorization", key)
        .json(&serde_json::json!({ "timeoutSeconds": timeout_seconds }))
        .send()
        .await
        .map_err(|e| CliError::Unreachable(format!("{url}: {e}")))?;
    let status = resp.status().as_u16();
    let body = resp
        .text()
        .await
        .map_err(|e| CliError::Unreachable(format!("{url}: {e}")))?;
    if status != 200 {
        return Err(CliError::Refused { status, body });
    }
    let done = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("done").and_then(serde_json::Value::as_bool))
        .unwrap_or(false);
    if done {
        Ok(body)
    } else {
        Err(CliError::Incomplete(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, CliError> {
        Command::parse(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn commands_and_their_arguments() {
        assert_eq!(parse(&[]).unwrap(), Command::Serve);
        assert_eq!(parse(&["serve"]).unwrap(), Command::Serve);
        for v in ["-version", "-v", "--version", "version"] {
            assert_eq!(parse(&[v]).unwrap(), Command::Version, "{v}");
        }
        assert_eq!(
            parse(&["drain"]).unwrap(),
            Command::Drain {
                timeout_seconds: 60
            }
        );
        assert_eq!(
            parse(&["drain", "--timeout-seconds", "90"]).unwrap(),
            Command::Drain {
                timeout_seconds: 90
            }
        );
        assert_eq!(
            parse(&["drain", "--timeout-seconds=5"]).unwrap(),
            Command::Drain { timeout_seconds: 5 }
        );
        for bad in [
            &["drian"][..],
            &["drain", "--timeout-seconds"],
            &["drain", "--timeout-seconds", "0"],
            &["drain", "--timeout-seconds", "601"],
            &["drain", "--force"],
            &["serve", "x"],
            &["-v", "x"],
        ] {
            assert!(matches!(parse(bad), Err(CliError::Usage(_))), "{bad:?}");
        }
    }
}
