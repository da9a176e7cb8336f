//! `tidings bench` (which runs the tidings-bench binary built beside `tidings`) takes each mode
//! end to end against the real hub (`tidings serve --memory --dev`), with tiny numbers:
//! seconds, not minutes. These check that the modes work and report what they promise, never
//! how fast anything is.

mod support;

use std::process::Command;

use support::{Hub, Value};

const BINARY: &str = env!("CARGO_BIN_EXE_tidings");

fn bench(hub: &Hub, args: &[&str]) -> (Value, String) {
    let output = Command::new(BINARY)
        .arg("bench")
        .args(args)
        .args(["--url", &format!("http://{}", hub.addr())])
        .args([
            "--hub-pid",
            &hub.pid().to_string(),
            "--timeout",
            "60s",
            "--quiet",
        ])
        .output()
        .expect("run tidings bench");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "bench {args:?} failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let last = stdout.lines().last().expect("a JSON line");
    let report = serde_json::from_str(last).unwrap_or_else(|e| panic!("not JSON ({e}): {last}"));
    (report, stdout)
}

#[test]
fn idle_holds_every_subscription_and_reports_memory_per_connection() {
    let hub = Hub::start(&["--dev"]);
    let (report, summary) = bench(&hub, &["idle", "-n", "40", "--hold", "500ms"]);
    assert_eq!(report["mode"], "idle");
    assert_eq!(report["held"], 40, "{report}");
    assert!(report["hub_bytes_per_connection"].is_number(), "{report}");
    assert!(
        report["generator_rss_bytes"]
            .as_u64()
            .is_some_and(|b| b > 0),
        "{report}"
    );
    assert!(summary.contains("per connection"), "{summary}");
}

#[test]
fn fanout_delivers_every_event_to_every_subscriber_once() {
    let hub = Hub::start(&["--dev"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let plot = dir.path().join("fanout.svg");
    let plot_arg = plot.to_str().expect("utf-8 path");
    let (report, _) = bench(
        &hub,
        &["fanout", "-n", "20", "-k", "50", "--plot", plot_arg],
    );
    assert_eq!(report["connected"], 20, "{report}");
    assert_eq!(report["deliveries"], 1000, "{report}");
    assert_eq!(
        (&report["lost"], &report["duplicated"]),
        (&Value::from(0), &Value::from(0)),
        "{report}"
    );
    assert!(report["latency_us"]["p99"].is_number(), "{report}");
    assert!(report["hub_cpu_per_delivery_us"].is_number(), "{report}");
    let svg = std::fs::read_to_string(&plot).expect("the plot was written");
    assert!(
        svg.starts_with("<svg"),
        "not an SVG: {}",
        &svg[..svg.len().min(80)]
    );
}

#[test]
fn fanout_at_a_fixed_rate_sends_on_schedule_and_loses_nothing() {
    let hub = Hub::start(&["--dev"]);
    let (report, _) = bench(&hub, &["fanout", "-n", "10", "-k", "10", "--rate", "50"]);
    assert_eq!(report["deliveries"], 100, "{report}");
    assert_eq!(report["lost"], 0, "{report}");
    // Ten events at 50/s are 9 intervals of 20 ms apart on the schedule; the run is timed from
    // the first publish actually sent, which can leave a little after its slot, so allow one
    // interval of slack (unpaced, ten publishes take a millisecond or two).
    assert!(
        report["duration_s"].as_f64().is_some_and(|s| s >= 0.16),
        "{report}"
    );
}

#[test]
fn receive_times_come_from_the_kernel_or_from_the_read_as_asked() {
    let hub = Hub::start(&["--dev"]);
    for (args, mode, pause) in [
        (&["--read-pause", "1ms"][..], "kernel", 1000),
        (&["--receive-time", "read"][..], "read", 0),
    ] {
        let mut all = vec!["fanout", "-n", "5", "-k", "20", "--rate", "100"];
        all.extend_from_slice(args);
        let (report, _) = bench(&hub, &all);
        assert_eq!(report["deliveries"], 100, "{report}");
        assert_eq!(report["receive_time"], mode, "{report}");
        assert_eq!(report["read_pause_us"], pause, "{report}");
        // Receive after send, and far less than the run: the clocks line up.
        let p50 = report["latency_us"]["p50"].as_f64().expect("p50");
        assert!(p50 > 0.0 && p50 < 1_000_000.0, "{report}");
    }
}

#[test]
fn a_read_pause_with_read_times_is_refused() {
    let output = Command::new(BINARY)
        .args([
            "bench",
            "fanout",
            "--receive-time",
            "read",
            "--read-pause",
            "1ms",
        ])
        .output()
        .expect("run tidings bench");
    assert!(!output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--read-pause needs --receive-time kernel"),
        "{stderr}"
    );
}

#[test]
fn a_plot_that_is_not_an_svg_file_is_refused_before_the_run() {
    for name in ["latency.png", "latency"] {
        let output = Command::new(BINARY)
            .args([
                "bench",
                "fanout",
                "--url",
                "http://127.0.0.1:9",
                "--plot",
                name,
            ])
            .output()
            .expect("run tidings bench");
        assert_eq!(output.status.code(), Some(2), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("give the file a .svg name"), "{stderr}");
        assert!(
            !stderr.contains("connecting"),
            "refused before connecting: {stderr}"
        );
    }
}

#[test]
fn publish_acknowledges_every_event_from_concurrent_publishers() {
    let hub = Hub::start(&["--dev"]);
    let (report, _) = bench(&hub, &["publish", "-c", "3", "-k", "150"]);
    assert_eq!(report["acked"], 150, "{report}");
    assert_eq!(report["publish_failed"], 0, "{report}");
    assert!(report["ack_us"]["p50"].is_number(), "{report}");
    assert!(
        report["publishes_per_s"].as_f64().is_some_and(|r| r > 0.0),
        "{report}"
    );
}

#[test]
fn an_unreachable_hub_is_an_error_not_a_hang() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let output = Command::new(BINARY)
        .args([
            "bench",
            "fanout",
            "-n",
            "3",
            "-k",
            "1",
            "--quiet",
            "--timeout",
            "30s",
        ])
        .args(["--url", &format!("http://{addr}")])
        .output()
        .expect("run tidings bench");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no subscription could start"), "{stderr}");
}
