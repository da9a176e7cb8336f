//! `--reuse-port`: several hub processes share one listening port.

mod support;

use support::free_port;
use support::http::Req;
use support::hub::Hub;

/// Open socket descriptors of a process: a request over the shared port may reach either
/// process, so each one's streams are counted from outside.
fn sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the hub's descriptors")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

#[tokio::test]
async fn hubs_with_reuse_port_share_one_port_and_split_the_streams() {
    let listen = format!("127.0.0.1:{}", free_port());
    let args = [
        "--memory",
        "--dev",
        "--reuse-port",
        "--listen",
        listen.as_str(),
    ];
    let a = Hub::launch_binary(&args, &[]);
    let b = Hub::launch_binary(&args, &[]);
    assert_eq!(a.addr(), b.addr(), "both listen on the same port");

    let (before_a, before_b) = (sockets(a.pid()), sockets(b.pid()));
    let mut streams = Vec::new();
    for _ in 0..40 {
        streams.push(a.subscribe(Req::get("/events?topic=t")).await);
    }
    let on_a = sockets(a.pid()) - before_a;
    let on_b = sockets(b.pid()) - before_b;
    // (The count may include a socket the runtime opened meanwhile, never fewer.)
    assert!(
        on_a + on_b >= 40,
        "every stream is held by one of the two: {on_a} + {on_b}"
    );
    assert!(
        on_a > 0 && on_b > 0,
        "the kernel spread them: {on_a} and {on_b}"
    );
}

#[test]
fn without_reuse_port_a_second_hub_cannot_take_the_port() {
    let listen = format!("127.0.0.1:{}", free_port());
    let _a = Hub::launch_binary(&["--memory", "--dev", "--listen", listen.as_str()], &[]);
    let out = support::hub::serve_until_exit(
        &["--memory", "--dev", "--listen", listen.as_str()],
        &[],
        std::time::Duration::from_secs(10),
    );
    assert!(out.status.is_some_and(|s| !s.success()), "{out:?}");
    assert!(out.stderr.contains("--listen"), "{}", out.stderr);
}
