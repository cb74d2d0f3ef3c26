//! The observation side as operators use it: the alert rules pass promtool's checks and unit
//! tests, each alert has a runbook entry, and a real Prometheus scraping a running three-node
//! cluster evaluates every dashboard query (each parses; the key panels return series). Every
//! metric a dashboard or an alert names is exported by the binary.

use std::{
    collections::BTreeSet,
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::{Value, json};

use crate::{
    cluster::{formed, post, services, three_nodes},
    deploy_tools::{chart_dir, repo, run, tool},
    helpers::eventually,
    process::free_port,
};

fn alert_rules() -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(chart_dir().join("files/alerts.yaml")).unwrap())
        .unwrap()
}

fn alert_names() -> Vec<String> {
    alert_rules()["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().iter())
        .filter_map(|r| r["alert"].as_str().map(str::to_string))
        .collect()
}

/// Every dashboard: (file name, its queries).
fn dashboard_queries() -> Vec<(String, Vec<String>)> {
    let dir = chart_dir().join("files/dashboards");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let d: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let queries = d["panels"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|p| p["targets"].as_array().unwrap().iter())
            .map(|t| t["expr"].as_str().unwrap().to_string())
            .collect();
        out.push((
            path.file_name().unwrap().to_string_lossy().into_owned(),
            queries,
        ));
    }
    out.sort();
    out
}

/// The `onwapp_*` metric names in `text`, histogram suffixes removed.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("onwapp_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        out.insert(base.to_string());
        rest = &tail[end..];
    }
    out
}

#[test]
fn alert_rules_pass_promtool_and_each_alert_has_a_test_and_a_runbook_entry() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let files = chart_dir().join("files");
    run(Command::new(&promtool)
        .args(["check", "rules", "alerts.yaml"])
        .current_dir(&files));
    run(Command::new(&promtool)
        .args(["test", "rules", "alerts_test.yaml"])
        .current_dir(&files));
    let tests = std::fs::read_to_string(files.join("alerts_test.yaml")).unwrap();
    let runbook = std::fs::read_to_string(repo().join("docs/operations.md")).unwrap();
    let names = alert_names();
    for wanted in [
        "OnwappNoRaftLeader",
        "OnwappShardsUnassigned",
        "OnwappSessionFlapping",
        "OnwappDeadLettersGrowing",
        "OnwappRedisFallback",
        "OnwappDatabaseUnreachable",
        "OnwappNodeNotReady",
    ] {
        assert!(names.iter().any(|n| n == wanted), "no alert {wanted}");
    }
    for name in &names {
        assert!(
            tests.contains(&format!("alertname: {name}\n")),
            "{name} has no promtool test"
        );
        assert!(
            runbook.contains(&format!("\n## {name}\n")),
            "{name} has no runbook entry in docs/operations.md"
        );
    }
}

struct Prometheus {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// A real Prometheus scraping `targets` every second (job `onwapp`).
    async fn start(bin: &std::path::Path, targets: &[String]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files: ['{}']\n\
                 scrape_configs:\n  - job_name: onwapp\n    static_configs:\n      - targets: [{}]\n",
                chart_dir().join("files/alerts.yaml").display(),
                targets.join(", ")
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        let p = Prometheus {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let ready = eventually(Duration::from_secs(30), || async {
            reqwest::get(format!("{}/-/ready", p.base))
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await;
        assert!(ready, "prometheus did not start");
        p
    }

    /// `GET /api/v1/query`: the answer's `data.result` (the query must succeed).
    async fn query(&self, q: &str) -> Vec<Value> {
        let url =
            url::Url::parse_with_params(&format!("{}/api/v1/query", self.base), [("query", q)])
                .unwrap();
        let r: Value = reqwest::Client::new()
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["status"], "success", "{q}: {r}");
        r["data"]["result"].as_array().cloned().unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_a_three_node_cluster_and_every_dashboard_query_evaluates() {
    let Some(prometheus) = tool("prometheus") else {
        return;
    };
    let Some(pg) = services().await else {
        return;
    };
    let nodes = three_nodes(&pg.url, None);
    formed(&nodes[0], Duration::from_secs(60)).await;

    // Every metric a dashboard or an alert names is exported (as a family) by every node.
    let exported = reqwest::get(format!("{}/metrics", nodes[0].base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let families: BTreeSet<String> = exported
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    let mut named =
        metric_names(&std::fs::read_to_string(chart_dir().join("files/alerts.yaml")).unwrap());
    for (_, queries) in dashboard_queries() {
        for q in queries {
            named.extend(metric_names(&q));
        }
    }
    let missing: Vec<&String> = named.iter().filter(|n| !families.contains(*n)).collect();
    assert!(missing.is_empty(), "named but not exported: {missing:?}");

    for i in 0..6 {
        let (code, b) = post(
            format!("{}/sessions", nodes[i % 3].base),
            json!({"session": format!("prom-{i}")}),
        )
        .await;
        assert_eq!(code, 201, "{b}");
    }
    let targets: Vec<String> = nodes
        .iter()
        .map(|n| n.base.trim_start_matches("http://").to_string())
        .collect();
    let prom = Prometheus::start(&prometheus, &targets).await;
    let scraped = eventually(Duration::from_secs(30), || async {
        let up = prom.query("sum(up{job=\"onwapp\"})").await;
        up.first().and_then(|s| s["value"][1].as_str()) == Some("3")
    })
    .await;
    assert!(scraped, "prometheus never saw three nodes up");

    // Traffic while Prometheus scrapes, forwarded and not: every session asked through every
    // node, until the rates show it.
    let bases: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();
    let moving = eventually(Duration::from_secs(40), || async {
        for base in &bases {
            for i in 0..6 {
                let _ = crate::cluster::get(format!("{base}/prom-{i}/status")).await;
            }
        }
        let rate = |q: &'static str| {
            let prom = &prom;
            async move {
                prom.query(q)
                    .await
                    .first()
                    .and_then(|s| s["value"][1].as_str()?.parse::<f64>().ok())
                    .unwrap_or(0.0)
            }
        };
        rate("sum(rate(onwapp_cluster_forwards_total{outcome=\"relayed\"}[1m]))").await > 0.0
            && rate("sum(rate(onwapp_http_requests_total{status=\"200\"}[1m]))").await > 0.0
            && rate("sum(rate(onwapp_cluster_member_requests_total{outcome=\"served\"}[1m]))").await
                > 0.0
    })
    .await;
    assert!(
        moving,
        "no forwarding or request rate after 40 s of traffic and scrapes"
    );

    // Every query of every dashboard parses and evaluates.
    let mut evaluated = 0;
    for (_board, queries) in dashboard_queries() {
        for q in &queries {
            prom.query(q).await;
            evaluated += 1;
        }
    }
    assert!(evaluated >= 40, "only {evaluated} queries");

    // The key panels return what a healthy cluster shows.
    let value = |r: &[Value]| -> f64 {
        r.first()
            .and_then(|s| s["value"][1].as_str())
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    // One evaluation can fall on a leader change or a rebalance: the healthy picture within a
    // deadline.
    let healthy = eventually(Duration::from_secs(30), || async {
        let per_node = prom
            .query("max by (node) (onwapp_cluster_node_shards)")
            .await;
        let owned: f64 = per_node
            .iter()
            .filter_map(|s| s["value"][1].as_str()?.parse::<f64>().ok())
            .sum();
        value(
            &prom
                .query("sum(onwapp_cluster_is_leader * onwapp_cluster_lease_valid)")
                .await,
        ) == 1.0
            && value(&prom.query("max(onwapp_cluster_shards_unassigned)").await) == 0.0
            && value(&prom.query("sum(onwapp_cluster_node_ready)").await) == 3.0
            && per_node.len() == 3
            && owned == 1024.0
    })
    .await;
    assert!(
        healthy,
        "prometheus never showed one leader, three ready nodes and 1024 shards placed"
    );
    for q in [
        "sum by (state) (onwapp_sessions)",
        "sum by (event) (rate(onwapp_whatsapp_connection_events_total[5m]))",
        "sum by (outcome) (rate(onwapp_cluster_forwards_total[5m]))",
        "sum by (outcome) (rate(onwapp_webhook_attempts_total[5m]))",
        "max(onwapp_webhook_queue_depth)",
        "sum by (outcome) (rate(onwapp_whatsapp_messages_sent_total[5m]))",
        "min by (instance) (onwapp_database_up)",
        "count(up{job=~\".*onwapp.*\"} == 1)",
    ] {
        assert!(!prom.query(q).await.is_empty(), "{q} returned no series");
    }
    // A healthy cluster fires no alert of its own (one can be pending for a moment: a leader
    // change under load is not yet trouble, which is what the rules' `for` is about).
    let alerts = prom.query("ALERTS{alertstate=\"firing\"}").await;
    assert!(alerts.is_empty(), "{alerts:?}");
}
