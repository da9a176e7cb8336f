//! Typed JSON events, and a stream restarted and then closed from another task:
//! `cargo run -p tidings-client --example typed -- URL`.

use std::time::Duration;

use serde::Deserialize;
use tidings_client::{EventStream, SseItem};

/// What a `progress` event of the Tidings hub carries.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Progress {
    task_id: String,
    progress: u8,
    status: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:8080/events?topic=tasks/*".into());
    let mut stream = EventStream::builder(url)
        .read_timeout(Duration::from_secs(45))
        .max_attempts(20)
        .build()?;

    // Another task holds the handle: here it restarts after 10 s and closes after 20 s.
    let handle = stream.handle();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(10)).await;
        handle.restart();
        tokio::time::sleep(Duration::from_secs(10)).await;
        handle.close();
    });

    while let Some(item) = stream.next().await {
        match item {
            SseItem::Event(event) if event.event == "progress" => match event.json::<Progress>() {
                Ok(p) => println!("task {}: {}% ({})", p.task_id, p.progress, p.status),
                Err(err) => eprintln!("malformed progress event {}: {err}", event.id),
            },
            SseItem::Reconnecting { delay, attempt } => {
                eprintln!("reconnecting in {delay:?} (attempt {attempt})");
            }
            SseItem::Closed(reason) => eprintln!("closed: {reason:?}"),
            _ => {}
        }
    }
    Ok(())
}
