//! What the deployment tests share: the outside tools they run (helm, kubernetes-validate,
//! promtool, prometheus), the chart rendered by helm, and host names mapped to loopback
//! addresses in `/etc/hosts`.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Command,
    sync::Mutex,
};

use serde_json::Value;

use crate::helpers::unavailable;

/// The repository's root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn chart_dir() -> PathBuf {
    repo().join("helm/onwapp")
}

/// `name` on the PATH, or `None` (a skip, or a failure with `ONWAPP_TEST_REQUIRE_SERVICES=1`:
/// `.ci/run` installs every tool).
pub fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    match found {
        Some(p) => Some(p),
        None => unavailable(name, "not found on PATH"),
    }
}

/// Runs `cmd`; its stdout, or a panic with everything it printed.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `helm template <release> helm/onwapp -n <namespace> --set ...`: the rendered YAML.
pub fn render(helm: &Path, release: &str, namespace: &str, sets: &[String]) -> String {
    let mut cmd = Command::new(helm);
    cmd.arg("template")
        .arg(release)
        .arg(chart_dir())
        .args(["--namespace", namespace]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    run(&mut cmd)
}

/// Every object of a YAML stream, as JSON values.
pub fn objects(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .filter_map(|doc| {
            let v: Value = serde::Deserialize::deserialize(doc).expect("rendered YAML parses");
            (!v.is_null()).then_some(v)
        })
        .collect()
}

/// The object of `kind` named `name`.
pub fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

/// One edit of `/etc/hosts` at a time in this process.
static HOSTS: Mutex<()> = Mutex::new(());
const HOSTS_FILE: &str = "/etc/hosts";

/// Names mapped to addresses in `/etc/hosts` while this value lives (the lines are removed
/// when it drops). Pods have a network namespace and a DNS name each; on one machine, each
/// node gets a loopback address of its own and its name maps there.
pub struct HostNames {
    marker: String,
}

impl HostNames {
    /// Maps each `(name, address)`; `None` when `/etc/hosts` cannot be written (not root).
    pub fn map(entries: &[(String, String)]) -> Option<HostNames> {
        let marker = format!("# onwapp-test {}", uuid::Uuid::new_v4().simple());
        let _one = HOSTS.lock().unwrap_or_else(|p| p.into_inner());
        let mut f = match std::fs::OpenOptions::new().append(true).open(HOSTS_FILE) {
            Ok(f) => f,
            Err(e) => return unavailable("a writable /etc/hosts", e),
        };
        let mut lines = String::new();
        for (name, addr) in entries {
            lines.push_str(&format!("{addr} {name} {marker}\n"));
        }
        f.write_all(lines.as_bytes()).expect("append to /etc/hosts");
        Some(HostNames { marker })
    }
}

impl Drop for HostNames {
    fn drop(&mut self) {
        let _one = HOSTS.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok(text) = std::fs::read_to_string(HOSTS_FILE) {
            let kept: String = text
                .lines()
                .filter(|l| !l.ends_with(&self.marker))
                .map(|l| format!("{l}\n"))
                .collect();
            // In place: /etc/hosts may be a bind mount that a rename would not replace.
            let _ = std::fs::write(HOSTS_FILE, kept);
        }
    }
}
