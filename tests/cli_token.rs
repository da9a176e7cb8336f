//! `tidings token` as a user runs it: the real binary, its token decoded and checked, and the
//! failures a user can make.

use std::process::{Command, Output};

use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};
use tidings_hub::auth::{AuthConfig, Authenticator};

const SECRET: &str = "cli-token-test-secret-0123456789abcdef";

/// The binary with no secret in its environment unless a test gives one.
fn tidings() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidings"));
    cmd.env_remove("TIDINGS_JWT_SECRET")
        .env_remove("TIDINGS_CONFIG");
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run tidings")
}

/// The one printed token, after checking stdout is exactly it and a newline.
fn printed_token(output: &Output) -> String {
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout.clone()).expect("utf-8 stdout");
    let token = stdout.strip_suffix('\n').expect("ends in a newline");
    assert!(!token.contains('\n') && !token.is_empty(), "{stdout:?}");
    token.to_owned()
}

fn claims(token: &str) -> Value {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    decode::<Value>(
        token,
        &DecodingKey::from_secret(SECRET.as_bytes()),
        &validation,
    )
    .expect("a valid HS256 token")
    .claims
}

/// A failure prints one line on stderr, nothing on stdout, and exits non-zero.
fn one_line_error(output: &Output) -> String {
    assert!(!output.status.success(), "{output:?}");
    assert!(output.stdout.is_empty(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    stderr
}

#[test]
fn prints_one_token_carrying_every_requested_claim() {
    let output = run(tidings().args([
        "token",
        "--secret",
        SECRET,
        "--sub",
        "alice",
        "--subscribe",
        "orders/*",
        "--subscribe",
        "tenant/7/**",
        "--publish",
        "users/*",
        "--admin",
        "--ttl",
        "90",
    ]));
    let c = claims(&printed_token(&output));
    assert_eq!(c["sub"], "alice");
    assert_eq!(
        c["tidings"],
        json!({"subscribe": ["orders/*", "tenant/7/**"], "publish": ["users/*"], "admin": true})
    );
    assert_eq!(c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(), 90);
}

#[test]
fn the_hub_accepts_the_token_with_the_same_secret() {
    let output = run(tidings().args(["token", "--secret", SECRET, "--sub", "bob"]));
    let token = printed_token(&output);
    let auth = Authenticator::new(AuthConfig {
        jwt_secret: Some(SECRET.into()),
        ..Default::default()
    })
    .expect("auth config");
    let principal = auth.authenticate(Some(&token)).expect("accepted");
    assert_eq!(principal.sub.as_deref(), Some("bob"));
    assert!(principal.subscribe.is_empty() && principal.publish.is_empty() && !principal.admin);
}

#[test]
fn the_secret_comes_from_the_environment_and_ttl_defaults_to_an_hour() {
    let output = run(tidings().arg("token").env("TIDINGS_JWT_SECRET", SECRET));
    let c = claims(&printed_token(&output));
    assert_eq!(
        c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(),
        3600
    );
    assert!(c.get("sub").is_none());
    assert_eq!(
        c["tidings"],
        json!({"subscribe": [], "publish": [], "admin": false})
    );
}

#[test]
fn ttl_takes_units_and_rounds_fractions_up_to_a_second() {
    for (ttl, secs) in [
        ("500ms", 1),
        ("30s", 30),
        ("5m", 300),
        ("7d", 604_800),
        ("0.5", 1),
    ] {
        let output = run(tidings().args(["token", "--secret", SECRET, "--ttl", ttl]));
        let c = claims(&printed_token(&output));
        assert_eq!(
            c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(),
            secs,
            "{ttl}"
        );
    }
}

#[test]
fn the_secret_can_come_from_the_hubs_config_file() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("tidings.toml");
    std::fs::write(&file, format!("jwt_secret = \"{SECRET}\"\nheartbeat = 5\n")).unwrap();
    let output = run(tidings()
        .args(["token", "--sub", "carol", "--config"])
        .arg(&file));
    assert_eq!(claims(&printed_token(&output))["sub"], "carol");

    std::fs::write(&file, "heartbeat = 5\n").unwrap();
    let output = run(tidings().args(["token", "--config"]).arg(&file));
    assert!(one_line_error(&output).contains("jwt_secret"));
}

#[test]
fn a_missing_secret_is_a_one_line_error_naming_both_sources() {
    let stderr = one_line_error(&run(tidings().args(["token", "--sub", "alice"])));
    assert!(
        stderr.contains("--secret") && stderr.contains("TIDINGS_JWT_SECRET"),
        "{stderr}"
    );
}

#[test]
fn an_invalid_pattern_is_a_one_line_error_naming_the_flag() {
    let output = run(tidings().args(["token", "--secret", SECRET, "--subscribe", "ord*"]));
    let stderr = one_line_error(&output);
    assert!(
        stderr.contains("--subscribe") && stderr.contains("\"ord*\""),
        "{stderr}"
    );
}

#[test]
fn help_never_shows_the_secret_from_the_environment() {
    let output = run(tidings()
        .args(["token", "--help"])
        .env("TIDINGS_JWT_SECRET", SECRET));
    assert!(output.status.success(), "{output:?}");
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(
        help.contains("TIDINGS_JWT_SECRET") && !help.contains(SECRET),
        "{help}"
    );
}
