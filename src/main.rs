//! The `tidings` binary: thin glue from the command line to the workspace's crates.
//!
//! Layout: one module per subcommand under [`cmd`]; each owns its clap `Args` struct and a
//! `run` function. Nothing here holds logic that a library could hold instead.

mod cmd;
mod limits;

use clap::{Parser, Subcommand};

/// Tidings: a fast, durable Server-Sent Events hub.
#[derive(Debug, Parser)]
#[command(name = "tidings", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the hub.
    Serve(Box<cmd::serve::ServeArgs>),
    /// Load-test an SSE hub: idle memory, fan-out throughput and latency, lost events.
    Bench(Box<cmd::bench::BenchArgs>),
    /// Publish one event to a running hub.
    Publish(cmd::publish::PublishArgs),
    /// Create, update or read a long task on a running hub.
    Task(cmd::task::TaskArgs),
    /// Parse an event stream (a file or stdin) and print one JSON object per line.
    Parse(cmd::parse::ParseArgs),
    /// Mint a token (HS256) with the hub's secret and print it.
    Token(cmd::token::TokenArgs),
    /// Subscribe to an event stream and print each event; reconnects like a browser.
    Tail(cmd::tail::TailArgs),
}

fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(err),
    };
    let result = match cli.command {
        Command::Serve(options) => cmd::serve::run(*options),
        Command::Bench(args) => cmd::bench::run(*args),
        Command::Publish(args) => cmd::publish::run(args),
        Command::Task(args) => cmd::task::run(args),
        Command::Parse(args) => cmd::parse::run(args),
        Command::Token(args) => cmd::token::run(args),
        Command::Tail(args) => cmd::tail::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("tidings: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Help and version print as usual; a usage mistake is one line on stderr and exit code 2.
fn usage_error(err: clap::Error) -> std::process::ExitCode {
    use clap::error::ErrorKind;
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = err.print();
            return std::process::ExitCode::SUCCESS;
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = err.print();
            return std::process::ExitCode::from(2);
        }
        _ => {}
    }
    let text = err.render().to_string();
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid arguments");
    let first = first.trim_start_matches("error: ");
    eprintln!("tidings: {first} (see --help)");
    std::process::ExitCode::from(2)
}
