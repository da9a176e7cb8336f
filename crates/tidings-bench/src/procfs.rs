//! What the bench reads about processes from `/proc`: CPU time and memory, for the hub under
//! test (given its PIDs, children included, so `--hub-pid <nginx master>` covers its workers)
//! and for the generator itself.

use std::fs;

use anyhow::Context as _;

/// `/proc/<pid>/stat` counts CPU time in USER_HZ ticks, which Linux fixes at 100 for
/// user space whatever the kernel's internal tick rate.
pub const TICKS_PER_SECOND: f64 = 100.0;

/// CPU time and memory of a set of processes at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    /// User plus system CPU time, in ticks.
    pub cpu_ticks: u64,
    /// Resident set size, summed (pages shared between the processes count once per process).
    pub rss_bytes: u64,
    /// Proportional set size, summed: shared pages split between their users, so a
    /// multi-process hub (nginx) is not counted twice. Zero where the kernel lacks it.
    pub pss_bytes: u64,
}

impl Sample {
    /// Seconds of CPU time between `earlier` and `self`.
    pub fn cpu_seconds_since(&self, earlier: &Sample) -> f64 {
        self.cpu_ticks.saturating_sub(earlier.cpu_ticks) as f64 / TICKS_PER_SECOND
    }
}

/// The given processes and, recursively, their children.
pub fn with_children(pids: &[u32]) -> Vec<u32> {
    let mut all: Vec<u32> = Vec::new();
    let mut queue: Vec<u32> = pids.to_vec();
    while let Some(pid) = queue.pop() {
        if all.contains(&pid) {
            continue;
        }
        all.push(pid);
        let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let path = task.path().join("children");
            if let Ok(children) = fs::read_to_string(path) {
                queue.extend(
                    children
                        .split_whitespace()
                        .filter_map(|c| c.parse::<u32>().ok()),
                );
            }
        }
    }
    all
}

/// Samples each process of `pids` and adds them up.
pub fn sample(pids: &[u32]) -> anyhow::Result<Sample> {
    let mut total = Sample::default();
    for pid in pids {
        let one = sample_one(&pid.to_string())
            .with_context(|| format!("reading /proc/{pid} (is the hub running?)"))?;
        total.cpu_ticks += one.cpu_ticks;
        total.rss_bytes += one.rss_bytes;
        total.pss_bytes += one.pss_bytes;
    }
    Ok(total)
}

/// Samples the calling process.
pub fn sample_self() -> Sample {
    sample_one("self").unwrap_or_default()
}

fn sample_one(pid: &str) -> anyhow::Result<Sample> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let cpu_ticks = cpu_ticks(&stat).context("unexpected /proc/<pid>/stat format")?;
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_bytes = kib_field(&status, "VmRSS:").unwrap_or(0) * 1024;
    let pss_bytes = fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|rollup| kib_field(&rollup, "Pss:"))
        .unwrap_or(0)
        * 1024;
    Ok(Sample {
        cpu_ticks,
        rss_bytes,
        pss_bytes,
    })
}

/// utime + stime: fields 14 and 15 of `stat`, counted after the command name, which is in
/// parentheses and may itself hold spaces.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|line| line.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_skip_a_command_name_with_spaces_and_parens() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 1 0 3 0 0";
        assert_eq!(cpu_ticks(stat), Some(12));
    }

    #[test]
    fn the_current_process_can_be_sampled() {
        let me = sample_self();
        assert!(me.rss_bytes > 0);
        let pid = std::process::id();
        assert!(with_children(&[pid]).contains(&pid));
    }
}
