//! Prints every item of an event stream: `cargo run -p tidings-client --example print -- URL`.

use tidings_client::{EventStream, SseItem};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:8080/events?topic=demo".into());
    let mut stream = EventStream::builder(url).build()?;
    while let Some(item) = stream.next().await {
        match item {
            SseItem::Event(event) => println!("{} [{}] {}", event.event, event.id, event.data),
            SseItem::Reset(reset) => println!("reset ({}): reload your state", reset.reason),
            SseItem::Comment(text) => println!(": {text}"),
            other => eprintln!("{other:?}"),
        }
    }
    Ok(())
}
