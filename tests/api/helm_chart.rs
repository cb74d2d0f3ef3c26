//! The Helm chart (`helm/onwapp`), rendered by the real helm and checked the way Kubernetes
//! would take it: every object valid against the Kubernetes schemas (`kubernetes-validate
//! --strict`), and the StatefulSet's pods booted as three real nodes on loopback with exactly
//! the environment, arguments, probes and `preStop` command it gives them. Two things differ
//! from a cluster, and only because three pods share one machine here: each node binds a
//! loopback address of its own (`BIND_ADDRESS`; a pod has its own network namespace) and keeps
//! its data in a directory of its own (`DATA_DIR`; a pod mounts its own volume at `/data`).
//! The pods' DNS names map to those addresses in `/etc/hosts`.

use std::{
    collections::BTreeMap,
    path::Path,
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use base64::Engine as _;
use serde_json::Value;

use crate::{
    cluster::services,
    deploy_tools::{HostNames, chart_dir, find, objects, render, run, tool},
    helpers::{GLOBAL_KEY, eventually, test_redis_url},
    process::free_port,
};

fn validate(kubernetes_validate: &Path, yaml: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rendered.yaml");
    // The Prometheus Operator's kinds are not Kubernetes' own: checked by the tests below.
    let core: Vec<&str> = yaml
        .split("\n---")
        .filter(|doc| {
            !doc.contains("apiVersion: monitoring.coreos.com/")
                && doc.lines().any(|l| l.starts_with("kind:"))
        })
        .collect();
    std::fs::write(&file, core.join("\n---")).unwrap();
    // The oldest Kubernetes the chart accepts (Chart.yaml's kubeVersion) and the newest known.
    for version in ["1.27.0", "1.37.0"] {
        let out = run(Command::new(kubernetes_validate)
            .args(["--strict", "--no-warn", "-k", version])
            .arg(&file));
        assert!(!out.contains("ERROR"), "{version}: {out}");
    }
}

fn production_values(db: &str, port: u16) -> Vec<String> {
    vec![
        format!("database.url={db}"),
        format!("redis.url={}", test_redis_url()),
        format!("auth.globalApiKey={GLOBAL_KEY}"),
        format!("containerPort={port}"),
        "metrics.serviceMonitor.enabled=true".into(),
        "metrics.prometheusRule.enabled=true".into(),
        "metrics.dashboards.enabled=true".into(),
        "otel.endpoint=http://otel-collector.monitoring:4318".into(),
    ]
}

fn container(sts: &Value) -> &Value {
    &sts["spec"]["template"]["spec"]["containers"][0]
}

fn env_names(c: &Value) -> Vec<String> {
    c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_chart_renders_valid_objects_with_default_and_production_values() {
    let (Some(helm), Some(kv)) = (tool("helm"), tool("kubernetes-validate")) else {
        return;
    };
    run(Command::new(&helm).arg("lint").arg(chart_dir()));

    // Defaults: one node on SQLite (a cluster needs Postgres), still a valid install.
    let yaml = render(&helm, "onwapp", "default", &[]);
    validate(&kv, &yaml);
    let objs = objects(&yaml);
    let sts = find(&objs, "StatefulSet", "onwapp");
    assert_eq!(sts["spec"]["replicas"], 1);
    let names = env_names(container(sts));
    assert!(!names.contains(&"CLUSTER_PEERS".to_string()), "{names:?}");
    assert!(!names.contains(&"DATABASE_URL".to_string()), "{names:?}");

    // Production-like: a database, Redis, a key, monitoring and traces.
    let yaml = render(
        &helm,
        "gw",
        "prod",
        &production_values("postgres://u:p@db:5432/onwapp", 3000),
    );
    validate(&kv, &yaml);
    let objs = objects(&yaml);
    let sts = find(&objs, "StatefulSet", "gw-onwapp");
    let spec = &sts["spec"];
    assert_eq!(spec["replicas"], 3);
    assert_eq!(spec["podManagementPolicy"], "Parallel");
    assert_eq!(spec["serviceName"], "gw-onwapp-peers");
    assert_eq!(spec["volumeClaimTemplates"][0]["metadata"]["name"], "data");
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["automountServiceAccountToken"], false);
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    let c = container(sts);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/health/live");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/health/ready");
    let pre_stop: Vec<&str> = c["lifecycle"]["preStop"]["exec"]["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(&pre_stop[..2], ["/usr/local/bin/onwapp", "drain"]);
    let drain_secs: u64 = pre_stop[3].parse().unwrap();
    let shutdown_secs: u64 = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "SHUTDOWN_TIMEOUT_SECONDS")
        .and_then(|e| e["value"].as_str()?.parse().ok())
        .unwrap();
    assert!(
        grace >= drain_secs + shutdown_secs + 10,
        "grace {grace} s for a {drain_secs} s drain and a {shutdown_secs} s shutdown"
    );
    let names = env_names(c);
    for var in [
        "DATABASE_URL",
        "REDIS_URL",
        "GLOBAL_API_KEY",
        "CLUSTER_SECRET",
        "CLUSTER_PEERS",
        "NODE_ID_FROM_HOSTNAME",
        "NODE_ADVERTISE_URL",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ] {
        assert!(names.contains(&var.to_string()), "{var} missing: {names:?}");
    }
    let peers = find(&objs, "Service", "gw-onwapp-peers");
    assert_eq!(peers["spec"]["clusterIP"], "None");
    assert_eq!(peers["spec"]["publishNotReadyAddresses"], true);
    let pdb = find(&objs, "PodDisruptionBudget", "gw-onwapp");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    // Secrets: the key given, the cluster secret generated (48 characters).
    let secret = find(&objs, "Secret", "gw-onwapp");
    let data = |k: &str| {
        let b = secret["data"][k].as_str().unwrap_or_else(|| panic!("{k}"));
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b).unwrap()).unwrap()
    };
    assert_eq!(data("global-api-key"), GLOBAL_KEY);
    assert_eq!(data("cluster-secret").len(), 48);
    assert!(data("database-url").starts_with("postgres://"));

    // Monitoring: the rule file as is, every dashboard as a sidecar ConfigMap.
    let rule = find(&objs, "PrometheusRule", "gw-onwapp");
    let alerts: Value = serde_yaml::from_str(
        &std::fs::read_to_string(chart_dir().join("files/alerts.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(rule["spec"], alerts);
    // The monitor scrapes every node through the peers Service's port named http.
    let monitor = find(&objs, "ServiceMonitor", "gw-onwapp");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http");
    assert!(monitor["spec"]["endpoints"][0]["authorization"].is_null());
    // A metrics token from a Secret: the node requires it, the monitor sends it.
    let mut with_token = production_values("postgres://u:p@db:5432/onwapp", 3000);
    with_token.push("metrics.tokenSecret.name=scrape".into());
    let yaml = render(&helm, "gw", "prod", &with_token);
    validate(&kv, &yaml);
    let objs_t = objects(&yaml);
    let c = container(find(&objs_t, "StatefulSet", "gw-onwapp"));
    let token_env = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "METRICS_TOKEN")
        .expect("METRICS_TOKEN");
    assert_eq!(
        token_env["valueFrom"]["secretKeyRef"],
        serde_json::json!({"name": "scrape", "key": "metrics-token"})
    );
    let auth =
        &find(&objs_t, "ServiceMonitor", "gw-onwapp")["spec"]["endpoints"][0]["authorization"];
    assert_eq!(auth["type"], "Bearer");
    assert_eq!(auth["credentials"]["name"], "scrape");
    // TLS between nodes from a cert-manager Secret: https:// members, the files mounted.
    let mut with_tls = production_values("postgres://u:p@db:5432/onwapp", 3000);
    with_tls.push("cluster.tls.existingSecret=peer-tls".into());
    let yaml = render(&helm, "gw", "prod", &with_tls);
    validate(&kv, &yaml);
    let objs_tls = objects(&yaml);
    let sts_tls = find(&objs_tls, "StatefulSet", "gw-onwapp");
    let var = |k: &str| -> String {
        container(sts_tls)["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == k)
            .and_then(|e| e["value"].as_str())
            .unwrap_or_else(|| panic!("{k} missing"))
            .to_string()
    };
    assert!(var("NODE_ADVERTISE_URL").starts_with("https://"));
    let peers = var("CLUSTER_PEERS");
    assert!(peers.split(',').all(|p| p.contains("=https://")), "{peers}");
    assert_eq!(var("CLUSTER_TLS_CA"), "/etc/onwapp/cluster-tls/ca.crt");
    assert_eq!(var("CLUSTER_TLS_CLIENT_AUTH"), "true");
    let volumes = &sts_tls["spec"]["template"]["spec"]["volumes"];
    assert!(
        volumes
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["secret"]["secretName"] == "peer-tls"),
        "{volumes}"
    );
    let wanted = monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap();
    let selected: Vec<&Value> = objs
        .iter()
        .filter(|o| {
            o["kind"] == "Service"
                && wanted
                    .iter()
                    .all(|(k, v)| o["metadata"]["labels"][k.as_str()] == *v)
        })
        .collect();
    assert_eq!(selected.len(), 1, "{selected:?}");
    assert_eq!(selected[0]["metadata"]["name"], "gw-onwapp-peers");
    assert!(
        selected[0]["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "http")
    );
    let boards: Vec<&Value> = objs
        .iter()
        .filter(|o| o["kind"] == "ConfigMap" && o["metadata"]["labels"]["grafana_dashboard"] == "1")
        .collect();
    assert_eq!(boards.len(), 5);
    for b in boards {
        for json in b["data"].as_object().unwrap().values() {
            let d: Value = serde_json::from_str(json.as_str().unwrap()).unwrap();
            assert_eq!(d["templating"]["list"][0]["name"], "datasource");
            assert!(json.as_str().unwrap().contains("${datasource}"));
        }
    }
}

#[test]
fn values_that_would_break_a_cluster_are_refused_at_render_time() {
    let Some(helm) = tool("helm") else {
        return;
    };
    let db = "database.url=postgres://u:p@db:5432/onwapp".to_string();
    for (extra, says) in [
        ("replicaCount=2", "below cluster.voters"),
        ("cluster.voters=4", "odd number"),
        ("terminationGracePeriodSeconds=30", "killed mid-drain"),
    ] {
        let out = Command::new(&helm)
            .arg("template")
            .arg("x")
            .arg(chart_dir())
            .args(["--set", &db, "--set", extra])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{extra} rendered");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{extra}: {err}");
    }
    // Scaling up changes nothing the running pods see.
    let three = objects(&render(&helm, "x", "ns", std::slice::from_ref(&db)));
    let five = objects(&render(&helm, "x", "ns", &[db, "replicaCount=5".into()]));
    let env = |objs: &[Value]| {
        let mut e = container(find(objs, "StatefulSet", "x-onwapp"))["env"].clone();
        for v in e.as_array_mut().unwrap() {
            v.as_object_mut().unwrap().remove("valueFrom");
        }
        e
    };
    assert_eq!(env(&three), env(&five));
}

/// The environment Kubernetes gives pod `pod`: field references (the pod's name and namespace)
/// and secret keys resolved, `$(VAR)` references to earlier variables expanded.
fn pod_env(c: &Value, pod: &str, ns: &str, objs: &[Value]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    for e in c["env"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap().to_string();
        let value = if let Some(v) = e["value"].as_str() {
            let known: BTreeMap<&str, &str> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            expand(v, &known)
        } else if let Some(f) = e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            match f {
                "metadata.name" => pod.to_string(),
                "metadata.namespace" => ns.to_string(),
                other => panic!("field {other} not known here"),
            }
        } else if let Some(s) = e["valueFrom"]["secretKeyRef"].as_object() {
            let secret = find(objs, "Secret", s["name"].as_str().unwrap());
            let b64 = secret["data"][s["key"].as_str().unwrap()]
                .as_str()
                .unwrap_or_else(|| panic!("secret key {s:?}"));
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap(),
            )
            .unwrap()
        } else {
            panic!("env {e} not understood");
        };
        env.push((name, value));
    }
    env
}

/// Kubernetes' `$(VAR)` expansion (`$$` is a literal `$`).
fn expand(v: &str, known: &BTreeMap<&str, &str>) -> String {
    let mut out = String::new();
    let mut rest = v;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
            && let Some(val) = known.get(&inner[..end])
        {
            out.push_str(val);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

struct Pod {
    child: Child,
    ip: String,
    env: Vec<(String, String)>,
    _data: tempfile::TempDir,
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `argv` (the image's binary replaced by the one under test) with `env` only.
fn command(argv: &[&str], env: &[(String, String)]) -> Command {
    let bin = env!("CARGO_BIN_EXE_onwapp");
    let program = match argv[0] {
        "/usr/local/bin/onwapp" => bin,
        other => panic!("the chart runs {other}, not the image's binary"),
    };
    let mut cmd = Command::new(program);
    cmd.args(&argv[1..])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

async fn probe(ip: &str, port: u16, path: &str) -> Option<(u16, Value)> {
    let r = reqwest::Client::new()
        .get(format!("http://{ip}:{port}{path}"))
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .ok()?;
    let code = r.status().as_u16();
    Some((code, r.json().await.unwrap_or(Value::Null)))
}

async fn cluster_status(ip: &str, port: u16) -> Value {
    reqwest::Client::new()
        .get(format!("http://{ip}:{port}/admin/cluster"))
        .header("Authorization", GLOBAL_KEY)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn shards_of(st: &Value, id: u64) -> u64 {
    st["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == id)
        .and_then(|n| n["shards"].as_u64())
        .unwrap_or(0)
}

/// The StatefulSet's pod `pod` as the kubelet would start it, on `ip` with a data directory
/// of its own.
fn start_pod(c: &Value, pod: &str, ip: &str, ns: &str, objs: &[Value]) -> Pod {
    let data = tempfile::tempdir().unwrap();
    let mut env = pod_env(c, pod, ns, objs);
    for (k, v) in [
        ("BIND_ADDRESS", ip.to_string()),
        ("DATA_DIR", data.path().display().to_string()),
    ] {
        env.retain(|(name, _)| name != k);
        env.push((k.to_string(), v));
    }
    let mut argv = vec!["/usr/local/bin/onwapp"];
    argv.extend(
        c["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap()),
    );
    let mut cmd = command(&argv, &env);
    match std::env::var("PROCESS_TEST_LOGS").ok() {
        Some(level) => cmd.env("LOG_LEVEL", level).env("LOG_FORMAT", "console"),
        None => cmd.stdout(Stdio::null()).stderr(Stdio::null()),
    };
    Pod {
        child: cmd.spawn().expect("spawn onwapp"),
        ip: ip.to_string(),
        env,
        _data: data,
    }
}

/// The pod's termination grace period.
fn grace_of(sts: &Value) -> u64 {
    sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap()
}

/// SIGTERM, as the kubelet sends after `preStop`: the node must exit cleanly within `grace`.
async fn terminate(mut p: Pod, grace: Duration) {
    crate::process::send_signal(p.child.id(), "TERM");
    let deadline = std::time::Instant::now() + grace;
    loop {
        if let Some(status) = p.child.try_wait().unwrap() {
            assert!(
                status.success(),
                "{} exited with {status} after SIGTERM",
                p.ip
            );
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} still running {grace:?} after SIGTERM",
            p.ip
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the container's `preStop` command in pod `p` (its environment): the drain's answer.
fn pre_stop(c: &Value, p: &Pod) -> Value {
    let argv: Vec<&str> = c["lifecycle"]["preStop"]["exec"]["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let out = command(&argv, &p.env)
        .output()
        .expect("run the preStop command");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "preStop failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap()
}

async fn wait_ready(p: &Pod, port: u16, live: &str, ready: &str) {
    let up = eventually(Duration::from_secs(30), || async {
        matches!(probe(&p.ip, port, live).await, Some((200, _)))
    })
    .await;
    assert!(up, "{} never answered its liveness probe", p.ip);
    let turned = eventually(Duration::from_secs(60), || async {
        matches!(probe(&p.ip, port, ready).await, Some((200, _)))
    })
    .await;
    assert!(
        turned,
        "{} never turned ready: {:?}",
        p.ip,
        probe(&p.ip, port, ready).await
    );
}

/// Every shard placed, none moving, and each of `ids` serving some.
async fn settled_on(ip: &str, port: u16, ids: &[u64]) -> bool {
    eventually(Duration::from_secs(60), || async {
        let st = cluster_status(ip, port).await;
        st["unassigned"] == 0
            && st["movesInFlight"] == 0
            && ids.iter().all(|id| shards_of(&st, *id) > 0)
    })
    .await
}

/// Clients asking every ready node about `names` until stopped, as a client behind the
/// Service would: a 503 is retried, a second apart, for at most ten seconds. What failed even
/// so.
fn clients(
    port: u16,
    ips: Arc<Mutex<Vec<String>>>,
    names: Vec<String>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(usize, Vec<String>)> {
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        let (mut done, mut failed) = (0, Vec::new());
        let mut i = 0usize;
        while !stop.load(Ordering::SeqCst) {
            let ip = {
                let ips = ips.lock().unwrap();
                ips[i % ips.len()].clone()
            };
            let name = &names[i % names.len()];
            i += 1;
            let mut last = String::new();
            let mut ok = false;
            // Up to ten tries a second apart: longer than a lease's lifetime (7 s).
            for _ in 0..10 {
                match http
                    .get(format!("http://{ip}:{port}/{name}/status"))
                    .header("Authorization", GLOBAL_KEY)
                    .timeout(Duration::from_secs(20))
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => {
                        ok = true;
                        break;
                    }
                    Ok(r) if r.status() == 503 => {
                        last = format!("503 from {ip}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Ok(r) => {
                        last = format!(
                            "{} from {ip}: {}",
                            r.status(),
                            r.text().await.unwrap_or_default()
                        );
                        break;
                    }
                    Err(e) => {
                        last = format!("{ip}: {e}");
                        break;
                    }
                }
            }
            done += 1;
            if !ok {
                failed.push(format!("{name}: {last}"));
            }
            // Within the chart's default rate limit (200 requests/s per client address, shared
            // through Redis): three clients at most ~40/s each.
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        (done, failed)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rendered_statefulset_boots_a_cluster_that_scales_and_drains_through_pre_stop() {
    let Some(helm) = tool("helm") else {
        return;
    };
    let Some(pg) = services().await else {
        return;
    };
    let port = free_port();
    let ns = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let yaml = render(&helm, "ow", &ns, &production_values(&pg.url, port));
    let objs = objects(&yaml);
    let sts = find(&objs, "StatefulSet", "ow-onwapp");
    assert_eq!(sts["spec"]["replicas"], 3);
    let c = container(sts);
    let domain = format!("ow-onwapp-peers.{ns}.svc.cluster.local");
    // 127.x.y.1..4: loopback addresses no other test uses; the fourth for the scale-up.
    let (x, y) = (
        rand::random::<u8>() % 200 + 20,
        rand::random::<u8>() % 250 + 1,
    );
    let pods: Vec<(String, String)> = (0..4)
        .map(|i| (format!("ow-onwapp-{i}"), format!("127.{x}.{y}.{}", i + 1)))
        .collect();
    let Some(_hosts) = HostNames::map(
        &pods
            .iter()
            .map(|(pod, ip)| (format!("{pod}.{domain}"), ip.clone()))
            .collect::<Vec<_>>(),
    ) else {
        return;
    };
    let mut running: Vec<Pod> = pods[..3]
        .iter()
        .map(|(pod, ip)| start_pod(c, pod, ip, &ns, &objs))
        .collect();

    // The probes the kubelet would run: liveness at once, readiness when the cluster formed.
    let live = c["livenessProbe"]["httpGet"]["path"].as_str().unwrap();
    let ready = c["readinessProbe"]["httpGet"]["path"].as_str().unwrap();
    for p in &running {
        wait_ready(p, port, live, ready).await;
    }
    // Node ids follow the ordinals; every shard has an owner among the three.
    let st = cluster_status(&running[0].ip, port).await;
    let mut ids: Vec<u64> = st["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_u64().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, [1, 2, 3], "{st}");
    for (i, p) in running.iter().enumerate() {
        let (_, body) = probe(&p.ip, port, ready).await.unwrap();
        assert_eq!(body["nodeId"], i as u64 + 1, "{body}");
    }
    assert!(
        settled_on(&running[0].ip, port, &[1, 2, 3]).await,
        "{}",
        cluster_status(&running[0].ip, port).await
    );

    // Clients through the ready nodes for the rest of the test.
    let names: Vec<String> = (0..12).map(|i| format!("k8s-{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        let r = reqwest::Client::new()
            .post(format!("http://{}:{port}/sessions", running[i % 3].ip))
            .header("Authorization", GLOBAL_KEY)
            .json(&serde_json::json!({ "session": name }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let ips = Arc::new(Mutex::new(
        running.iter().map(|p| p.ip.clone()).collect::<Vec<_>>(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..3)
        .map(|_| clients(port, ips.clone(), names.clone(), stop.clone()))
        .collect();

    // Scale up to four: the pods that run keep their environment (no restart), the new one
    // joins as a learner, turns ready, and the leader gives it shards.
    let mut sets = production_values(&pg.url, port);
    sets.push("replicaCount=4".into());
    let objs4 = objects(&render(&helm, "ow", &ns, &sets));
    let sts4 = find(&objs4, "StatefulSet", "ow-onwapp");
    assert_eq!(sts4["spec"]["replicas"], 4);
    let c4 = container(sts4);
    assert_eq!(
        pod_env(c4, "ow-onwapp-0", &ns, &objs4)
            .into_iter()
            .filter(|(k, _)| !k.ends_with("SECRET") && k != "GLOBAL_API_KEY")
            .collect::<Vec<_>>(),
        pod_env(c, "ow-onwapp-0", &ns, &objs)
            .into_iter()
            .filter(|(k, _)| !k.ends_with("SECRET") && k != "GLOBAL_API_KEY")
            .collect::<Vec<_>>(),
        "scaling changes a running pod's environment (it would restart)"
    );
    let fourth = start_pod(c4, &pods[3].0, &pods[3].1, &ns, &objs);
    wait_ready(&fourth, port, live, ready).await;
    ips.lock().unwrap().push(fourth.ip.clone());
    assert!(
        settled_on(&running[0].ip, port, &[1, 2, 3, 4]).await,
        "{}",
        cluster_status(&running[0].ip, port).await
    );

    // Scale back down as Kubernetes does: the terminating pod leaves the Service's endpoints,
    // the kubelet runs its preStop (its shards go to the others), then sends SIGTERM, and the
    // node finishes what is in flight and exits within the grace period.
    ips.lock().unwrap().retain(|ip| *ip != fourth.ip);
    let answer = pre_stop(c4, &fourth);
    assert_eq!(answer["done"], true, "{answer}");
    terminate(fourth, Duration::from_secs(grace_of(sts4))).await;
    let moved = eventually(Duration::from_secs(10), || async {
        let st = cluster_status(&running[0].ip, port).await;
        shards_of(&st, 4) == 0 && (1..=3).map(|id| shards_of(&st, id)).sum::<u64>() == 1024
    })
    .await;
    assert!(moved, "{}", cluster_status(&running[0].ip, port).await);
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    let mut asked = 0;
    for l in load {
        let (done, failed) = l.await.unwrap();
        asked += done;
        assert!(
            failed.is_empty(),
            "{} of {done} failed: {failed:?}",
            failed.len()
        );
    }
    assert!(asked > 30, "only {asked} requests while scaling");

    // The preStop hook of the last of the three: every shard moves to the other two, and the
    // node stops being ready (but stays alive: the kubelet stops it, not the probe).
    let last = running.pop().unwrap();
    let before = shards_of(&cluster_status(&last.ip, port).await, 3);
    assert!(before > 0);
    let answer = pre_stop(c, &last);
    assert_eq!(answer["done"], true, "{answer}");
    assert_eq!(answer["shardsBefore"], before, "{answer}");
    let moved = eventually(Duration::from_secs(10), || async {
        let st = cluster_status(&running[0].ip, port).await;
        shards_of(&st, 3) == 0 && shards_of(&st, 1) + shards_of(&st, 2) == 1024
    })
    .await;
    assert!(moved, "{}", cluster_status(&running[0].ip, port).await);
    let (code, body) = probe(&last.ip, port, ready).await.unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body["reasons"].to_string().contains("draining"), "{body}");
    assert_eq!(probe(&last.ip, port, live).await.map(|r| r.0), Some(200));
}

#[test]
fn kubernetes_variable_references_expand_like_the_kubelet() {
    let known: BTreeMap<&str, &str> = [("POD_NAME", "ow-onwapp-1"), ("NS", "prod")].into();
    assert_eq!(
        expand("http://$(POD_NAME).peers.$(NS).svc:3000", &known),
        "http://ow-onwapp-1.peers.prod.svc:3000"
    );
    assert_eq!(
        expand("$$(POD_NAME) $(UNKNOWN)", &known),
        "$(POD_NAME) $(UNKNOWN)"
    );
}
