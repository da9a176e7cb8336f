//! `tidings task create|update|get`: long tasks on a running hub (`POST /tasks`,
//! `POST /tasks/{id}`, `GET /tasks/{id}`), for scripts and batch jobs.

use std::process::ExitCode;

use anyhow::Context as _;

use super::publish::{report, request};

/// Arguments of `tidings task`.
#[derive(Debug, clap::Args)]
pub struct TaskArgs {
    #[command(subcommand)]
    action: Action,
    /// The hub's base URL
    #[arg(
        long,
        global = true,
        env = "TIDINGS_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    url: String,
    /// Token or publish key, sent as `Authorization: Bearer`
    #[arg(long, global = true, env = "TIDINGS_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Create a task reporting to a user and/or a topic; prints it (with its `taskId`).
    #[command(group(clap::ArgGroup::new("target").required(true).multiple(true).args(["user", "topic"])))]
    Create {
        /// The user whose connections get its progress
        #[arg(long)]
        user: Option<String>,
        /// The topic whose subscribers get its progress
        #[arg(long)]
        topic: Option<String>,
        /// A first message
        #[arg(long)]
        message: Option<String>,
        /// How long to keep it once finished (`90s`, `2h`)
        #[arg(long)]
        ttl: Option<String>,
    },
    /// Report progress, a status, a message or a result.
    Update {
        /// The task's id
        id: String,
        /// 0 to 100, never less than before
        #[arg(long)]
        progress: Option<u8>,
        /// pending, running, completed or failed
        #[arg(long)]
        status: Option<String>,
        /// A message
        #[arg(long)]
        message: Option<String>,
        /// The result, as JSON
        #[arg(long)]
        result: Option<String>,
    },
    /// Print a task's state.
    Get {
        /// The task's id
        id: String,
    },
}

/// Runs `tidings task`.
pub fn run(args: TaskArgs) -> anyhow::Result<ExitCode> {
    let base = args.url.trim_end_matches('/');
    let (method, url, body, what) = match args.action {
        Action::Create {
            user,
            topic,
            message,
            ttl,
        } => {
            let mut body = serde_json::Map::new();
            for (k, v) in [
                ("user", user),
                ("topic", topic),
                ("message", message),
                ("ttl", ttl),
            ] {
                if let Some(v) = v {
                    body.insert(k.into(), v.into());
                }
            }
            (
                http::Method::POST,
                format!("{base}/tasks"),
                Some(body),
                "task create",
            )
        }
        Action::Update {
            id,
            progress,
            status,
            message,
            result,
        } => {
            let mut body = serde_json::Map::new();
            if let Some(p) = progress {
                body.insert("progress".into(), p.into());
            }
            if let Some(s) = status {
                body.insert("status".into(), s.into());
            }
            if let Some(m) = message {
                body.insert("message".into(), m.into());
            }
            if let Some(r) = result {
                let value: serde_json::Value =
                    serde_json::from_str(&r).context("--result must be JSON")?;
                body.insert("result".into(), value);
            }
            (
                http::Method::POST,
                format!("{base}/tasks/{id}"),
                Some(body),
                "task update",
            )
        }
        Action::Get { id } => (
            http::Method::GET,
            format!("{base}/tasks/{id}"),
            None,
            "task get",
        ),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (status, reply) = runtime.block_on(request(
        method,
        &url,
        args.token.as_deref(),
        body.map(serde_json::Value::Object),
    ))?;
    Ok(report(what, status, reply))
}
