//! Measures how fast the client turns bytes from a loopback socket into events:
//! `cargo run --release -p tidings-client --features testing --example throughput [EVENTS]`.
//!
//! A scripted server writes EVENTS small events (default 1,000,000) in 64 KiB writes; the
//! client reads them as a consumer would, one `next().await` per item.

use std::time::Instant;

use tidings_client::testing::ScriptServer;
use tidings_client::{EventStream, SseItem};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let events: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let mut wire = Vec::new();
    for i in 0..events {
        wire.extend_from_slice(
            format!("id: {i}\ndata: {{\"seq\":{i},\"pad\":\"abcdefgh\"}}\n\n").as_bytes(),
        );
    }
    let server = ScriptServer::bind().await?;
    let mut stream = EventStream::builder(server.url("/"))
        .max_attempts(1)
        .build()?;
    let bytes = wire.len();
    let serve = tokio::spawn(async move {
        let mut conn = server.accept().await?;
        conn.start_stream().await?;
        for chunk in wire.chunks(64 * 1024) {
            conn.send(chunk).await?;
        }
        conn.close().await
    });

    let mut received = 0usize;
    let mut started = None;
    while let Some(item) = stream.next().await {
        match item {
            SseItem::Open(_) => started = Some(Instant::now()),
            SseItem::Event(_) => received += 1,
            _ => {}
        }
        if received == events {
            break;
        }
    }
    let elapsed = started.map(|s| s.elapsed()).unwrap_or_default();
    serve.await??;
    let secs = elapsed.as_secs_f64();
    println!(
        "{received} events, {:.1} MB in {:.3} s: {:.2} M events/s, {:.0} MB/s",
        bytes as f64 / 1e6,
        secs,
        received as f64 / secs / 1e6,
        bytes as f64 / secs / 1e6
    );
    Ok(())
}
