//! Embedding the hub in an axum application: the hub's routes beside your own, and a handle
//! that publishes from your code.
//!
//! Run: `cargo run -p tidings-hub --example embed`, then
//! `curl -N 'http://127.0.0.1:3000/events?topic=orders/42'` and
//! `curl -X POST http://127.0.0.1:3000/orders/42/pay`.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::post;
use axum::Router;
use tidings_hub::{Hub, HubConfig, Publish};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `dev` lets anonymous clients subscribe on loopback; production sets jwt_secret instead
    // (or loads the `tidings serve` file: `tidings_hub::config::ServeConfig::load`).
    let hub = Hub::new(HubConfig::dev())?;

    let app = Router::new()
        .route("/orders/{id}/pay", post(pay))
        .with_state(hub.clone())
        .merge(tidings_hub::router(hub.clone()));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    // Connect info gives each request its peer address: --max-connections-per-ip needs it.
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    let draining = hub.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = tokio::signal::ctrl_c().await;
            // Streams are told when to come back and closed, so axum's shutdown can finish.
            draining.drain();
            let _ = tokio::time::timeout(Duration::from_secs(10), draining.streams_closed()).await;
        })
        .await?;
    Ok(())
}

/// Your own endpoint: it does its work, then tells every subscriber of the order.
async fn pay(State(hub): State<Hub>, Path(id): Path<u64>) -> Result<String, String> {
    let event = Publish::to_topic(format!("orders/{id}"))
        .event("order.paid")
        .json(&serde_json::json!({ "order": id, "state": "paid" }))
        .map_err(|e| e.to_string())?;
    let published = hub.publish(event).await.map_err(|e| e.to_string())?;
    Ok(format!(
        "event {} queued to {} connection(s)\n",
        published.id, published.delivered
    ))
}
