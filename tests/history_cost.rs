//! What one publish costs on disk: linear in the event's size, whatever its targets (issue:
//! hardening). Before, every exact-topic index entry held a copy of the whole record, which
//! lists every topic: 3,000 topics on a 36 KB body wrote ~90 MB.

mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use support::{json, Hub, Req, PUBLISH_KEY, WAIT};

/// Bytes the hub process has written so far (`wchar` of `/proc/PID/io`: every byte passed to
/// write calls, files and sockets alike; file sizes would hide a preallocated journal).
fn written(hub: &Hub) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{}/io", hub.pid())).expect("read /proc/PID/io");
    io.lines()
        .find_map(|l| l.strip_prefix("wchar:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("wchar in /proc/PID/io")
}

/// Bytes of every file below `dir`.
#[allow(dead_code)]
fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).expect("read the data directory") {
        let entry = entry.expect("a directory entry");
        let meta = entry.metadata().expect("metadata");
        total += if meta.is_dir() {
            dir_bytes(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

/// Publishes one event with `topics` distinct 200-byte topics and a text body filling the rest
/// of `--max-event-bytes`; returns (event bytes as counted, bytes the hub wrote for it).
async fn publish_wide(hub: &Hub, topics: usize, max_event: usize) -> (u64, u64) {
    let topics: Vec<String> = (0..topics).map(|i| format!("wide/{i:0>195}")).collect();
    let names: usize = topics.iter().map(String::len).sum();
    // Leave room for the frame's `id:` and `data:` lines.
    let text = "x".repeat(max_event - names - 64);
    let before = written(hub);
    hub.send(
        Req::post("/publish")
            .bearer(PUBLISH_KEY)
            .json(&json!({"topics": topics, "text": text})),
    )
    .await
    .expect_status(200);
    let after = written(hub);
    ((names + text.len()) as u64, after.saturating_sub(before))
}

#[tokio::test]
async fn the_largest_event_with_the_most_targets_writes_a_small_multiple_of_its_size() {
    let data = tempfile::tempdir().expect("a temp dir");
    let dir = data.path().join("history");
    let dir_s = dir.to_str().expect("UTF-8");
    let hub = Hub::start_on_disk(
        &dir,
        &["--publish-key", PUBLISH_KEY, "--max-event-bytes", "512KiB"],
    );
    // Defaults: 64 targets, 512 KiB.
    let (size, grew) = publish_wide(&hub, 64, 512 << 10).await;
    assert!(
        grew >= size && grew <= 3 * size,
        "one {size}-byte event made the hub write {grew} bytes to {dir_s}"
    );
    drop(hub);

    // Far past the default bound, the cost stays linear: 3,000 topics.
    let data2 = tempfile::tempdir().expect("a temp dir");
    let dir2 = data2.path().join("history");
    let hub = Hub::start_on_disk(
        &dir2,
        &[
            "--publish-key",
            PUBLISH_KEY,
            "--max-targets",
            "3000",
            "--max-event-bytes",
            "1MiB",
            "--max-body-bytes",
            "2MiB",
            "--public-topic",
            "**",
        ],
    );
    let marker = hub.publish(&json!({"topic": "marker", "text": "m"})).await;
    let (size, grew) = publish_wide(&hub, 3000, 1 << 20).await;
    assert!(
        grew <= 3 * size,
        "one {size}-byte event grew the store by {grew} bytes"
    );
    // And it replays: a subscriber of one of those topics resumes to it.
    let mut s = hub
        .subscribe(Req::get(&format!(
            "/events?topic=wide/{:0>195}&last_event_id={marker}",
            2999
        )))
        .await;
    let first = s.next_event(WAIT).await;
    assert!(first.data.starts_with("xxx"), "{first:?}");
}

#[tokio::test]
async fn the_data_directory_is_private_to_the_hubs_user() {
    // The umask is set by `serve` (a library must not change its process's umask).
    let data = tempfile::tempdir().expect("a temp dir");
    let dir = data.path().join("history");
    let hub = Hub::start_on_disk_binary(&dir, &["--publish-key", PUBLISH_KEY]);
    hub.publish(&json!({"topic": "t", "text": "private"})).await;
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "data dir mode {mode:o}");
    fn check(dir: &Path) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            let mode = meta.permissions().mode() & 0o777;
            if meta.is_dir() {
                assert_eq!(mode & 0o077, 0, "{} is {mode:o}", entry.path().display());
                check(&entry.path());
            } else {
                assert_eq!(mode & 0o077, 0, "{} is {mode:o}", entry.path().display());
            }
        }
    }
    check(&dir);
    drop(hub);
    // An existing directory open to others: the hub warns at start.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let hub = Hub::start_on_disk_binary(&dir, &["--publish-key", PUBLISH_KEY]);
    hub.send(Req::get("/healthz")).await.expect_status(200);
    let log = hub.stderr();
    assert!(log.contains("open to other users"), "{log}");
}
