//! A long job with a progress bar, end to end: the backend starts a fake job and reports its
//! progress through the hub library; the page shows it live with the JavaScript client the hub
//! serves. Reload the page mid-job: it shows the current state at once (the late-join
//! snapshot). Kill the process mid-job and start it again on the same `--data-dir`: the task is
//! still there (it lives in the durable history), the job picks up where it was, and the page,
//! reconnecting by itself, carries on to the end.
//!
//! ```sh
//! cargo run --example progress -- --listen 127.0.0.1:3000 --data-dir /tmp/progress-demo
//! # open http://127.0.0.1:3000 and press "Start a job"
//! ```
//!
//! `clients/js/e2e/progress.test.mjs` drives it in headless Chromium.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::response::{Html, IntoResponse};
use axum::routing::{get, post};
use axum::Json;
use tidings_hub::history::{DiskOptions, DiskStore, Durability, Retention};
use tidings_hub::tasks::{NewTask, TaskUpdate};
use tidings_hub::{Hub, HubConfig};

/// The topic every job reports to (public: anyone may watch the demo).
const TOPIC: &str = "jobs/demo";
/// How far a job moves per step, and how often it steps.
const STEP: u8 = 5;
const EVERY: Duration = Duration::from_millis(300);

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>Tidings: a long job</title>
<style>
  body { font: 16px system-ui, sans-serif; max-width: 36rem; margin: 3rem auto; }
  #track { background: #eee; border-radius: 4px; height: 1.5rem; overflow: hidden; }
  #bar { background: #2a7ae2; height: 100%; width: 0; transition: width .2s; }
  button { font-size: 1rem; padding: .4rem 1rem; margin: 1rem 0; }
</style>
<h1>A long job</h1>
<button id="start">Start a job</button>
<div id="track"><div id="bar"></div></div>
<p><span id="progress">-</span> · <span id="status">no job yet</span> · <span id="message"></span></p>
<p>Connection: <span id="connection">connecting</span></p>
<script type="module">
  import { Tidings } from "/client/tidings.js";
  const $ = (id) => document.getElementById(id);
  let current = null;
  const show = (t) => {
    if (current && t.taskId !== current && t.status !== "pending") return;
    current = t.taskId;
    $("bar").style.width = t.progress + "%";
    $("progress").textContent = t.progress + "%";
    $("status").textContent = t.status;
    $("message").textContent = t.message ?? "";
    document.body.dataset.task = t.taskId;
    document.body.dataset.status = t.status;
    document.body.dataset.progress = String(t.progress);
  };
  const hub = new Tidings({ url: location.origin, topics: ["jobs/demo"], retry: 250 });
  hub.on("progress", (e) => show(e.data));
  hub.on("state", (s) => { $("connection").textContent = s; document.body.dataset.connection = s; });
  $("start").onclick = async () => {
    const res = await fetch("/jobs", { method: "POST" });
    const task = await res.json();
    current = task.taskId;
    show(task);
  };
</script>
"#;

fn flags() -> (SocketAddr, std::path::PathBuf) {
    let mut listen: SocketAddr = ([127, 0, 0, 1], 3000).into();
    let mut dir = std::path::PathBuf::from("progress-data");
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_default();
        match flag.as_str() {
            "--listen" => listen = value.parse().expect("--listen ADDR"),
            "--data-dir" => dir = value.into(),
            other => panic!("unknown flag {other}; use --listen ADDR --data-dir DIR"),
        }
    }
    (listen, dir)
}

/// Runs a job from where its task is to the end.
async fn run_job(hub: Hub, id: String) {
    loop {
        tokio::time::sleep(EVERY).await;
        let Some(task) = hub.task(&id) else { return };
        if task.status.is_finished() {
            return;
        }
        let next = task.progress.saturating_add(STEP).min(100);
        let update = if next >= 100 {
            TaskUpdate::completed(Some(
                serde_json::json!({"file": format!("/exports/{id}.csv")}),
            ))
            .with_message("done")
        } else {
            TaskUpdate::progress(next).with_message(format!("step {}", next / STEP))
        };
        if hub.update_task(&id, update).await.is_err() {
            return;
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (listen, dir) = flags();
    let mut config = HubConfig::default();
    config.public_topics = vec!["jobs/**".into()];
    config.jwt_secret = Some(format!("{:032x}", rand::random::<u128>()));
    let store = Arc::new(DiskStore::open(DiskOptions {
        dir,
        durability: Durability::Sync,
        retention: Retention::of(&config),
    })?);
    let hub = Hub::with_history(config, Arc::clone(&store) as _)?;
    // Jobs that were running when the process stopped carry on from their last progress.
    for task in hub.tasks() {
        if !task.status.is_finished() {
            tokio::spawn(run_job(hub.clone(), task.task_id));
        }
    }
    let jobs = hub.clone();
    let app = axum::Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route(
            "/jobs",
            post(move || {
                let hub = jobs.clone();
                async move {
                    match hub
                        .create_task(NewTask::for_topic(TOPIC).message("queued"))
                        .await
                    {
                        Ok(task) => {
                            tokio::spawn(run_job(hub.clone(), task.task_id.clone()));
                            Json(task).into_response()
                        }
                        Err(e) => (axum::http::StatusCode::SERVICE_UNAVAILABLE, e.to_string())
                            .into_response(),
                    }
                }
            }),
        )
        .merge(tidings_hub::router(hub.clone()));
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!(
        "progress demo listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    store.close();
    Ok(())
}
