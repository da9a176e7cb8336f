//! The parent's side of the worker processes: spawn them (the same binary, re-executed with
//! the hidden `--worker` flag), send them commands, and gather their reports.
//!
//! Workers exist because one process may hold only so many open files (20,000 here) and
//! because one thread cannot read a million events a second; each holds a share of the
//! subscriptions.

use std::process::Stdio;

use anyhow::{bail, Context as _};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::procfs::Sample;
use super::protocol::{Command, Progress, Report, WorkerResult, WorkerSpec};

/// The running workers and what they last said.
pub struct Pool {
    children: Vec<Child>,
    stdins: Vec<ChildStdin>,
    reports: mpsc::UnboundedReceiver<(usize, Option<Report>)>,
    latest: Vec<Progress>,
    results: Vec<Option<WorkerResult>>,
    counts: Vec<usize>,
}

impl Pool {
    /// Starts one worker per spec.
    pub async fn spawn(specs: Vec<WorkerSpec>) -> anyhow::Result<Pool> {
        let exe =
            std::env::current_exe().context("finding the tidings-bench binary to re-execute")?;
        let (sender, reports) = mpsc::unbounded_channel();
        let mut pool = Pool {
            children: Vec::new(),
            stdins: Vec::new(),
            reports,
            latest: vec![Progress::default(); specs.len()],
            results: vec![None; specs.len()],
            counts: specs.iter().map(|spec| spec.count).collect(),
        };
        for (index, spec) in specs.iter().enumerate() {
            let mut child = tokio::process::Command::new(&exe)
                .arg("--worker")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .context("starting a bench worker")?;
            let mut stdin = child.stdin.take().context("worker stdin")?;
            let stdout = child.stdout.take().context("worker stdout")?;
            let mut line = serde_json::to_vec(spec)?;
            line.push(b'\n');
            stdin.write_all(&line).await?;
            let sender = sender.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    match serde_json::from_str::<Report>(&line) {
                        Ok(report) => {
                            let _ = sender.send((index, Some(report)));
                        }
                        Err(_) => eprintln!("bench worker {index}: {line}"),
                    }
                }
                let _ = sender.send((index, None));
            });
            pool.children.push(child);
            pool.stdins.push(stdin);
        }
        Ok(pool)
    }

    /// The latest counts, summed over the workers.
    pub fn totals(&self) -> Progress {
        let mut total = Progress::default();
        for progress in &self.latest {
            total.connected += progress.connected;
            total.failed += progress.failed;
            total.closed += progress.closed;
            total.received += progress.received;
            total.own = add(total.own, progress.own);
        }
        total
    }

    /// Whether every subscription has either started or failed.
    pub fn all_settled(&self) -> bool {
        self.latest
            .iter()
            .zip(&self.counts)
            .all(|(progress, count)| progress.connected + progress.failed >= *count)
    }

    /// Takes in reports until `until`.
    pub async fn pump(&mut self, until: Instant) -> anyhow::Result<()> {
        while let Ok(report) = tokio::time::timeout_at(until, self.reports.recv()).await {
            let Some((index, report)) = report else {
                if self.results.iter().all(Option::is_some) {
                    return Ok(());
                }
                bail!("the bench workers stopped without a result");
            };
            match report {
                Some(Report::Progress(progress)) => self.latest[index] = progress,
                Some(Report::Result(result)) => {
                    self.latest[index] = result.progress;
                    self.results[index] = Some(*result);
                }
                None if self.results[index].is_none() => {
                    let status = self.children[index].wait().await?;
                    bail!("bench worker {index} stopped without a result ({status})");
                }
                None => {}
            }
        }
        Ok(())
    }

    /// Tells every worker to finish and waits for all results (until `deadline`).
    pub async fn finish(
        &mut self,
        command: &Command,
        deadline: Instant,
    ) -> anyhow::Result<Vec<WorkerResult>> {
        let mut line = serde_json::to_vec(command)?;
        line.push(b'\n');
        for stdin in &mut self.stdins {
            stdin.write_all(&line).await?;
        }
        while self.results.iter().any(Option::is_none) {
            if Instant::now() >= deadline {
                bail!("bench workers did not report in time");
            }
            self.pump(Instant::now() + std::time::Duration::from_millis(100))
                .await?;
        }
        for child in &mut self.children {
            let _ = child.wait().await;
        }
        Ok(self.results.iter_mut().filter_map(Option::take).collect())
    }
}

fn add(a: Sample, b: Sample) -> Sample {
    Sample {
        cpu_ticks: a.cpu_ticks + b.cpu_ticks,
        rss_bytes: a.rss_bytes + b.rss_bytes,
        pss_bytes: a.pss_bytes + b.pss_bytes,
    }
}
