//! `tidings token`: mint an HS256 token with the hub's secret.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::anyhow;
use tidings_hub::auth::{mint_hs256, MintError, TokenSpec};

/// Arguments of `tidings token`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example: tidings token --sub alice --subscribe 'orders/*' --ttl 1h")]
pub struct TokenArgs {
    /// The HS256 secret: the hub's --jwt-secret.
    #[arg(long, env = "TIDINGS_JWT_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// The hub's TOML configuration file; its `jwt_secret` is used when --secret and
    /// TIDINGS_JWT_SECRET are not given.
    #[arg(long, env = "TIDINGS_CONFIG", value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// The user id (`sub`): the token's streams also receive that user's events.
    #[arg(long, value_name = "ID")]
    pub sub: Option<String>,
    /// A pattern the token may subscribe within (`orders/*`, `tenant/7/**`); repeatable.
    #[arg(long, value_name = "PATTERN")]
    pub subscribe: Vec<String>,
    /// A pattern the token may publish to; users are `users/ID`, broadcast is `broadcast`,
    /// `**` is everything; repeatable.
    #[arg(long, value_name = "PATTERN")]
    pub publish: Vec<String>,
    /// The token may call admin endpoints (`GET /clients`).
    #[arg(long)]
    pub admin: bool,
    /// How long the token lives: seconds (`90`, `0.5`) or `500ms`, `30s`, `5m`, `1h`, `7d`.
    #[arg(long, value_name = "DURATION", default_value = "1h",
          value_parser = tidings_hub::units::parse_duration)]
    pub ttl: Duration,
}

/// Runs `tidings token`: prints one token and a newline.
pub fn run(args: TokenArgs) -> anyhow::Result<ExitCode> {
    let secret = match (args.secret, &args.config) {
        (Some(secret), _) => secret,
        (None, Some(path)) => secret_from_config(path)?,
        (None, None) => {
            return Err(anyhow!(
                "no secret: pass --secret, set TIDINGS_JWT_SECRET, or --config with jwt_secret"
            ))
        }
    };
    let spec = TokenSpec {
        sub: args.sub,
        subscribe: args.subscribe,
        publish: args.publish,
        admin: args.admin,
        ttl: args.ttl,
    };
    let token = mint_hs256(&secret, &spec).map_err(|e| match e {
        MintError::EmptySecret => {
            anyhow!("the secret is empty: pass --secret or set TIDINGS_JWT_SECRET")
        }
        MintError::InvalidSub(e) => anyhow!("--sub: {e}"),
        MintError::InvalidPattern { field, source } => anyhow!("--{field}: {source}"),
        MintError::ZeroTtl => anyhow!("--ttl must be more than zero"),
        MintError::TtlTooLong => anyhow!("--ttl reaches past the year 9999"),
        e => anyhow!(e),
    })?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

/// The `jwt_secret` of a `tidings serve` configuration file, read as `serve` reads it.
fn secret_from_config(path: &std::path::Path) -> anyhow::Result<String> {
    let mut loader = tidings_hub::config::Loader::new();
    loader.file(path)?;
    loader.config().hub.jwt_secret.clone().ok_or_else(|| {
        anyhow!(
            "--config {} has no jwt_secret: pass --secret or set TIDINGS_JWT_SECRET",
            path.display()
        )
    })
}
