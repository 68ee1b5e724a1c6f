//! Several nodes (`node.urls`): two simulated nodes serving the same chain, the daemon in this
//! process against a private redis-server. One node stops: the daemon fails over and the stream
//! stays exact. One node lags: it is not used while it lags, and is used again once it catches
//! up. Each switch shows in /metrics.
#![allow(clippy::unwrap_used)]

mod common;

use common::{
    assert_exactly_once, frozen_sim, last_published, test_config_nodes, wait_done, wait_until,
    TestRedis,
};
use std::sync::Arc;
use std::time::Duration;
use tron_actors::daemon::DaemonHandle;
use tron_actors::tron::TronClient;

const WAIT: Duration = Duration::from_secs(120);

/// The daemon on `config`, with the node client's metrics on /metrics as `run` serves them.
async fn start(config: &tron_actors::config::Config) -> (DaemonHandle, String) {
    let client = TronClient::new(config.client_config()).unwrap();
    let metrics = client.clone();
    let daemon = DaemonHandle::start_with_metrics(
        config,
        Arc::new(client),
        vec![Arc::new(move || metrics.render_prometheus())],
    )
    .await
    .unwrap();
    let base = format!("http://{}", daemon.ops.as_ref().unwrap().addr);
    (daemon, base)
}

/// One sample of /metrics, by its name and labels as written (`name{url="..."}`).
async fn metric(base: &str, key: &str) -> Option<f64> {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(' ')?.parse().ok())
}

fn active(url: &str) -> String {
    format!("tron_actors_node_active{{url=\"{url}\"}}")
}

/// Requests a simulated node served for block bodies and transaction infos.
fn block_requests(sim: &tron_sim::SimHandle) -> u64 {
    sim.request_counts()
        .into_iter()
        .filter(|(path, _)| {
            [
                "/wallet/getblockbynum",
                "/wallet/gettransactioninfobyblocknum",
                "/wallet/getblockbylimitnext",
            ]
            .contains(&path.as_str())
        })
        .map(|(_, n)| n)
        .sum()
}

async fn wait_metric(base: &str, key: &str, value: f64) {
    wait_until(WAIT, &format!("{key} = {value}"), || async {
        metric(base, key).await == Some(value)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_first_node_stops_the_daemon_fails_over_and_the_stream_stays_exact() {
    let redis = TestRedis::start().await;
    let first = frozen_sim(20, 10).await;
    let second = frozen_sim(20, 10).await;
    let (first_url, second_url) = (first.url(), second.url());
    let head = first.chain().head();
    let config = test_config_nodes(
        &[first_url.clone(), second_url.clone()],
        &redis.url(),
        // The nodes move together here; lag is the other test's business.
        &[("node.check_ms", "100"), ("node.max_lag_blocks", "1000")],
    );
    let (daemon, base) = start(&config).await;
    wait_done(&daemon.store, head, head, WAIT).await;
    for sim in [&first, &second] {
        sim.chain().advance(30);
    }
    wait_done(&daemon.store, head, head + 30, WAIT).await;
    assert_eq!(metric(&base, &active(&first_url)).await, Some(1.0));
    assert_eq!(metric(&base, &active(&second_url)).await, Some(0.0));
    assert_eq!(
        metric(&base, "tron_actors_node_switches_total").await,
        Some(0.0)
    );

    first.shutdown().await.unwrap();
    second.chain().advance(30);
    wait_done(&daemon.store, head, head + 60, WAIT).await;
    wait_metric(&base, &active(&second_url), 1.0).await;
    assert_eq!(metric(&base, &active(&first_url)).await, Some(0.0));
    assert_eq!(
        metric(&base, "tron_actors_node_switches_total").await,
        Some(1.0)
    );
    assert_eq!(
        metric(
            &base,
            &format!("tron_actors_node_fit{{url=\"{first_url}\"}}")
        )
        .await,
        Some(0.0)
    );
    daemon.shutdown().await.unwrap();
    let last = last_published(&redis, head + 60).await;
    assert_exactly_once(&redis, &second, head, last).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_node_is_not_used_while_it_lags_and_is_used_again_once_it_catches_up() {
    let redis = TestRedis::start().await;
    let first = frozen_sim(20, 10).await;
    let second = frozen_sim(20, 10).await;
    let (first_url, second_url) = (first.url(), second.url());
    let head = first.chain().head();
    let config = test_config_nodes(
        &[first_url.clone(), second_url.clone()],
        &redis.url(),
        &[("node.check_ms", "100"), ("node.max_lag_blocks", "5")],
    );
    let (daemon, base) = start(&config).await;
    wait_done(&daemon.store, head, head, WAIT).await;
    wait_metric(
        &base,
        &format!("tron_actors_node_head_block{{url=\"{second_url}\"}}"),
        head as f64,
    )
    .await;

    // The first node stops moving; the second goes 20 blocks ahead.
    let first_served = block_requests(&first);
    second.chain().advance(20);
    wait_done(&daemon.store, head, head + 20, WAIT).await;
    wait_metric(&base, &active(&second_url), 1.0).await;
    assert_eq!(metric(&base, &active(&first_url)).await, Some(0.0));
    assert_eq!(
        metric(&base, "tron_actors_node_switches_total").await,
        Some(1.0)
    );
    // Not one block was asked from the node that has not got it.
    assert_eq!(block_requests(&first), first_served);

    // It catches up: the daemon goes back to it, and takes the next blocks from it.
    first.chain().advance(20);
    wait_metric(&base, &active(&first_url), 1.0).await;
    assert_eq!(
        metric(&base, "tron_actors_node_switches_total").await,
        Some(2.0)
    );
    let second_served = block_requests(&second);
    let first_served = block_requests(&first);
    first.chain().advance(10);
    second.chain().advance(10);
    wait_done(&daemon.store, head, head + 30, WAIT).await;
    daemon.shutdown().await.unwrap();
    assert_eq!(block_requests(&second), second_served);
    assert!(block_requests(&first) >= first_served + 10);
    let last = last_published(&redis, head + 30).await;
    assert_exactly_once(&redis, &first, head, last).await;
}

/// The daemon as `run` in its own process, nodes from the environment: one `Switched node` log
/// line per switch, with the nodes and the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_switch_is_one_info_line_with_its_reason() {
    let redis = TestRedis::start().await;
    let first = frozen_sim(20, 10).await;
    let second = frozen_sim(20, 10).await;
    let (first_url, second_url) = (first.url(), second.url());
    let head = first.chain().head();
    let urls = format!("{first_url},{second_url}");
    let redis_url = redis.url();
    let mut daemon = common::cli::Process::spawn(
        &["run"],
        &[
            ("TRON_ACTORS_NODE__URLS", urls.as_str()),
            ("TRON_ACTORS_NODE__CHECK_MS", "100"),
            ("TRON_ACTORS_NODE__MAX_LAG_BLOCKS", "1000"),
            ("TRON_ACTORS_REDIS__URL", redis_url.as_str()),
            ("TRON_ACTORS_SYNC__POLL_MIN_MS", "50"),
            ("TRON_ACTORS_METRICS__LISTEN", ""),
            ("TRON_ACTORS_LOG__FORMAT", "json"),
        ],
    );
    let store = redis.store();
    wait_done(&store, head, head, WAIT).await;
    first.shutdown().await.unwrap();
    second.chain().advance(10);
    wait_done(&store, head, head + 10, WAIT).await;
    assert!(daemon.terminate().await.success());
    let switches: Vec<serde_json::Value> = daemon
        .stderr()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|json| json["message"] == "Switched node")
        .collect();
    assert_eq!(switches.len(), 1, "{}", daemon.stderr());
    let line = &switches[0];
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["from"], first_url.as_str());
    assert_eq!(line["to"], second_url.as_str());
    assert_eq!(line["from_head"], head);
    assert_eq!(line["reason"], "it does not answer (2 failures in a row)");
    let last = last_published(&redis, head + 10).await;
    assert_exactly_once(&redis, &second, head, last).await;
}
