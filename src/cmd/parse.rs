//! `tidings parse [FILE]`.

use std::process::ExitCode;

/// Arguments of `tidings parse`.
#[derive(Debug, clap::Args)]
pub struct ParseArgs {
    /// The file to read; standard input when absent or `-`.
    pub file: Option<std::path::PathBuf>,
    /// Also print comments as `{"comment": "..."}`.
    #[arg(long)]
    pub comments: bool,
}

/// Runs `tidings parse`.
pub fn run(_args: ParseArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}
