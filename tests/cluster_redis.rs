//! The cluster suite (`tests/cluster/suite.rs`) on Redis.

#[path = "cluster/faults.rs"]
mod faults;
#[path = "cluster/suite.rs"]
mod suite;
mod support;

use support::redis::Redis;

#[tokio::test]
async fn every_subscriber_on_every_node_gets_every_event_once_in_log_order() {
    suite::every_subscriber_on_every_node_gets_every_event_once_in_log_order::<Redis>().await;
}

#[tokio::test]
async fn a_last_event_id_from_one_node_resumes_on_every_node() {
    suite::a_last_event_id_from_one_node_resumes_on_every_node::<Redis>().await;
}

#[tokio::test]
async fn unknown_and_trimmed_ids_are_reset_never_skipped() {
    suite::unknown_and_trimmed_ids_are_reset_never_skipped::<Redis>().await;
}

#[tokio::test]
async fn reconnects_to_random_nodes_while_publishing_at_full_rate_lose_nothing() {
    suite::reconnects_to_random_nodes_while_publishing_at_full_rate_lose_nothing::<Redis>().await;
}

#[tokio::test]
async fn a_node_killed_mid_stream_loses_no_acknowledged_event() {
    faults::a_node_killed_mid_stream_loses_no_acknowledged_event::<Redis>().await;
}

#[tokio::test]
async fn redis_killed_mid_publish_loses_nothing_acknowledged_and_retries_do_not_duplicate() {
    faults::redis_killed_mid_publish_loses_nothing_acknowledged_and_retries_do_not_duplicate::<Redis>().await;
}

#[tokio::test]
async fn redis_restarted_empty_sends_one_reset_then_new_events() {
    faults::redis_restarted_empty_sends_one_reset_then_new_events::<Redis>().await;
}

#[tokio::test]
async fn a_broker_outage_refuses_publishes_fast_keeps_streams_and_recovers() {
    faults::a_broker_outage_refuses_publishes_fast_keeps_streams_and_recovers::<Redis>().await;
}

#[tokio::test]
async fn a_node_paused_for_30s_catches_up_in_order() {
    faults::a_node_paused_for_30s_catches_up_in_order::<Redis>().await;
}

#[tokio::test]
async fn the_per_user_limit_holds_across_three_nodes() {
    suite::the_per_user_limit_holds_across_three_nodes::<Redis>().await;
}

#[tokio::test]
async fn counts_broadcast_and_notify_span_the_nodes() {
    suite::counts_broadcast_and_notify_span_the_nodes::<Redis>().await;
}

#[tokio::test]
async fn a_draining_node_sends_its_clients_to_the_others_without_loss() {
    suite::a_draining_node_sends_its_clients_to_the_others_without_loss::<Redis>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_or_cut_broker_link_is_survived() {
    faults::a_stalled_or_cut_broker_link_is_survived::<Redis>().await;
}

#[tokio::test]
async fn tasks_span_the_nodes_also_one_started_later() {
    suite::tasks_span_the_nodes_also_one_started_later::<Redis>().await;
}

#[tokio::test]
async fn a_batch_larger_than_one_tail_read_is_answered_whole_and_in_order() {
    suite::a_batch_larger_than_one_tail_read_is_answered_whole_and_in_order::<Redis>().await;
}

use support::{json, serve_until_exit, Req, WAIT};

#[tokio::test]
async fn redis_that_does_not_persist_every_write_is_refused() {
    let lax = Redis::start_with(&["--appendonly", "no"]);
    let url = lax.url();
    let out = serve_until_exit(
        &["--listen", "127.0.0.1:0", "--cluster", &url, "--dev"],
        &[],
        WAIT,
    );
    assert!(
        out.status.is_some_and(|s| !s.success()),
        "must refuse to start: {out:?}"
    );
    assert!(
        out.stderr.contains("appendonly"),
        "names the setting: {}",
        out.stderr
    );

    let everysec = Redis::start_with(&["--appendonly", "yes", "--appendfsync", "everysec"]);
    let url = everysec.url();
    let out = serve_until_exit(
        &["--listen", "127.0.0.1:0", "--cluster", &url, "--dev"],
        &[],
        WAIT,
    );
    assert!(
        out.status.is_some_and(|s| !s.success()),
        "sync needs always: {out:?}"
    );
    assert!(
        out.stderr.contains("appendfsync"),
        "names the setting: {}",
        out.stderr
    );
    // `--durability interval` accepts everysec.
    let hub = support::redis::node(&url, &["--durability", "interval"]);
    hub.publish(&json!({"topic": "t", "data": 1})).await;
}

#[tokio::test]
async fn rediss_speaks_tls_to_redis_trusting_the_given_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("redis.pem"), dir.path().join("redis.key"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (Debian package openssl)");
    assert!(made.status.success());
    let redis = Redis::start_tls(&cert, &key);
    let url = redis.url();
    assert!(url.starts_with("rediss://"));
    // Without the CA the node refuses the unknown certificate.
    let out = serve_until_exit(
        &["--listen", "127.0.0.1:0", "--cluster", &url, "--dev"],
        &[],
        WAIT,
    );
    assert!(out.status.is_some_and(|s| !s.success()), "{out:?}");
    assert!(out.stderr.contains("certificate"), "{}", out.stderr);
    // With it, a working cluster.
    let ca = cert.to_str().unwrap();
    let a = support::redis::node(&url, &["--cluster-ca", ca]);
    let b = support::redis::node(&url, &["--cluster-ca", ca]);
    let mut s = b.subscribe(Req::get("/events?topic=tls")).await;
    let id = a
        .publish(&json!({"topic": "tls", "data": "over rediss"}))
        .await;
    let e = s.next_event(WAIT).await;
    assert_eq!(
        (e.id.as_str(), e.data.as_str()),
        (id.as_str(), "\"over rediss\"")
    );
}

#[test]
fn a_bad_cluster_configuration_is_refused_at_start_with_a_clear_error() {
    let unreachable = format!("redis://127.0.0.1:{}/0", support::free_port());
    for (args, needle) in [
        (vec!["--cluster", "http://127.0.0.1:1"], "redis://"),
        (
            vec!["--cluster", "redis://127.0.0.1:1/0", "--memory"],
            "--memory and --cluster",
        ),
        (vec!["--cluster", &unreachable], "cannot reach Redis"),
        (vec!["--cluster", "nats://127.0.0.1:1"], "cannot reach NATS"),
        (
            vec!["--cluster", &unreachable, "--cluster-prefix", "a prefix"],
            "--cluster-prefix",
        ),
    ] {
        let mut full = vec!["--listen", "127.0.0.1:0", "--dev"];
        full.extend(args.iter().copied());
        let out = serve_until_exit(&full, &[], WAIT);
        assert!(
            out.status.is_some_and(|s| !s.success()),
            "{args:?}: {out:?}"
        );
        assert!(out.stderr.contains(needle), "{args:?}: {}", out.stderr);
    }
}

#[tokio::test]
async fn concurrent_publishes_each_keep_their_ids_batches_and_keys() {
    suite::concurrent_publishes_each_keep_their_ids_batches_and_keys::<Redis>().await;
}
