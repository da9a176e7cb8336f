//! The progress bar on stderr: one line redrawn in place on a terminal, a plain status line
//! every few seconds otherwise (logs of `scripts/bench-compare`), nothing with `--quiet`.

use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

const WIDTH: usize = 28;

/// A rate-limited status line.
#[derive(Debug)]
pub struct Bar {
    enabled: bool,
    terminal: bool,
    started: Instant,
    last_draw: Option<Instant>,
    drawn: bool,
}

impl Bar {
    pub fn new(quiet: bool) -> Bar {
        Bar {
            enabled: !quiet,
            terminal: std::io::stderr().is_terminal(),
            started: Instant::now(),
            last_draw: None,
            drawn: false,
        }
    }

    /// Shows `phase`, `done` of `total`, and a detail; redrawn at most 5 times a second on a
    /// terminal, every 5 seconds elsewhere.
    pub fn show(&mut self, phase: &str, done: u64, total: u64, detail: &str) {
        if !self.enabled {
            return;
        }
        let every = if self.terminal {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(5)
        };
        if self.last_draw.is_some_and(|at| at.elapsed() < every) {
            return;
        }
        self.last_draw = Some(Instant::now());
        let filled = if total == 0 {
            0
        } else {
            (done.min(total) as usize * WIDTH) / total as usize
        };
        let line = format!(
            "{phase:>10} [{}{}] {done}/{total} {detail} ({:.0}s)",
            "#".repeat(filled),
            "-".repeat(WIDTH - filled),
            self.started.elapsed().as_secs_f64()
        );
        let mut err = std::io::stderr().lock();
        let _ = if self.terminal {
            write!(err, "\r\x1b[2K{line}")
        } else {
            writeln!(err, "bench: {line}")
        };
        let _ = err.flush();
        self.drawn = true;
    }

    /// Forces the next [`show`](Self::show) to draw (at a phase change).
    pub fn next_phase(&mut self) {
        self.last_draw = None;
    }

    /// Removes the line before the summary is printed.
    pub fn clear(&mut self) {
        if self.enabled && self.terminal && self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
        self.drawn = false;
    }
}
