//! The `tidings-bench` binary: [`tidings_bench::run`] behind its flags (`tidings bench` runs
//! this binary).

use clap::Parser;

/// Load-test an SSE hub: idle memory, fan-out throughput and latency, lost events.
#[derive(Debug, Parser)]
#[command(name = "tidings bench", version)]
struct Cli {
    #[command(flatten)]
    args: tidings_bench::BenchArgs,
}

fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return std::process::ExitCode::from(if err.use_stderr() { 2 } else { 0 });
        }
    };
    match tidings_bench::run(cli.args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("tidings bench: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
