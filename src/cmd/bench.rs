//! `tidings bench`: runs the `tidings-bench` binary (crates/tidings-bench) with the same
//! arguments, in place of this process. The load generator and what only it needs (plots,
//! histograms, kernel receive timestamps) stay out of the hub's binary.

use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;

/// Everything after `tidings bench`, passed on as it is (`tidings bench --help` lists it).
#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true, disable_version_flag = true)]
pub struct BenchArgs {
    /// Arguments of tidings-bench (see `tidings bench --help`)
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    args: Vec<OsString>,
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let Some(exe) = locate() else {
        bail!(
            "`tidings bench` runs the tidings-bench binary, found neither beside this one nor \
             on PATH; build it with `cargo build --release -p tidings-bench`"
        );
    };
    // Only returns if the binary could not be started.
    let err = std::process::Command::new(&exe).args(args.args).exec();
    bail!("starting {}: {err}", exe.display())
}

/// `tidings-bench` beside this binary (cargo builds both into one directory, an install puts
/// both in one `bin`), else on `PATH`.
fn locate() -> Option<PathBuf> {
    const NAME: &str = "tidings-bench";
    let beside = std::env::current_exe()
        .ok()
        .map(|me| me.with_file_name(NAME))
        .filter(|p| p.is_file());
    beside.or_else(|| {
        std::env::split_paths(&std::env::var_os("PATH")?)
            .map(|dir| dir.join(NAME))
            .find(|p| p.is_file())
    })
}
