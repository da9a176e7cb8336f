//! The fault-injecting proxy of the test support: what it promises the broker tests.

mod support;

use std::time::Duration;

use support::proxy::{FaultProxy, Flow};
use support::WAIT;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An echo server on a loopback port.
async fn echo() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

async fn round_trip(s: &mut TcpStream, text: &[u8]) -> Vec<u8> {
    s.write_all(text).await.unwrap();
    let mut got = vec![0u8; text.len()];
    tokio::time::timeout(WAIT, s.read_exact(&mut got))
        .await
        .expect("an echo")
        .unwrap();
    got
}

#[tokio::test]
async fn bytes_pass_stalled_bytes_are_held_not_lost_and_slow_ones_arrive() {
    let proxy = FaultProxy::start(echo().await).await;
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(round_trip(&mut s, b"ping").await, b"ping");
    proxy.set(Flow::Stall);
    s.write_all(b"held").await.unwrap();
    let mut got = [0u8; 4];
    let early = tokio::time::timeout(Duration::from_millis(200), s.read_exact(&mut got)).await;
    assert!(early.is_err(), "nothing passes while stalled");
    proxy.set(Flow::Pass);
    tokio::time::timeout(WAIT, s.read_exact(&mut got))
        .await
        .expect("released")
        .unwrap();
    assert_eq!(&got, b"held");
    proxy.set(Flow::Slow(Duration::from_millis(20)));
    assert_eq!(round_trip(&mut s, b"slow").await, b"slow");
}

#[tokio::test]
async fn a_cut_closes_open_connections_and_new_ones_still_work() {
    let proxy = FaultProxy::start(echo().await).await;
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(round_trip(&mut s, b"a").await, b"a");
    proxy.cut();
    let mut buf = [0u8; 8];
    let n = tokio::time::timeout(WAIT, s.read(&mut buf))
        .await
        .expect("closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "the connection was cut");
    let mut again = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(round_trip(&mut again, b"b").await, b"b");
}

#[tokio::test]
async fn refused_connections_close_at_once_until_allowed_again() {
    let proxy = FaultProxy::start(echo().await).await;
    proxy.refuse(true);
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    let mut buf = [0u8; 8];
    let n = tokio::time::timeout(WAIT, s.read(&mut buf))
        .await
        .expect("closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
    proxy.refuse(false);
    let mut ok = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(round_trip(&mut ok, b"c").await, b"c");
}
