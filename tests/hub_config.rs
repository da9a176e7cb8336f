//! Starting the hub: `--dev`, configuration from flags, environment and file (and which
//! wins), invalid configuration, and `serve --help` against the configuration reference.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::hub::BINARY;
use support::{json, serve_until_exit, Hub, Item, Req, WAIT};
use tokio::time::Instant;

/// The first whitespace-separated word of `lines` that looks like a JWT.
fn find_jwt(lines: &[String]) -> Option<String> {
    lines
        .iter()
        .flat_map(|l| l.split(|c: char| c.is_whitespace() || c == '\'' || c == '"'))
        .find_map(|word| {
            let word = word.trim_start_matches("Bearer").trim_start_matches(':');
            let parts: Vec<&str> = word.split('.').collect();
            let b64 = |p: &str| {
                !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            };
            (word.starts_with("eyJ") && parts.len() == 3 && parts.iter().all(|p| b64(p)))
                .then(|| word.to_owned())
        })
}

#[tokio::test]
async fn dev_mode_prints_a_token_and_curl_lines_and_allows_anonymous_use() {
    let hub = Hub::start_binary(&["--dev"]);
    let deadline = Instant::now() + WAIT;
    let lines = loop {
        let lines = hub.stdout_lines();
        let curls = lines.iter().filter(|l| l.contains("curl")).count();
        if curls >= 2 && find_jwt(&lines).is_some() {
            break lines;
        }
        assert!(
            Instant::now() < deadline,
            "--dev printed no token and curl lines:\n{}",
            lines.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let addr = hub.addr().to_string();
    let curls: Vec<&String> = lines.iter().filter(|l| l.contains("curl")).collect();
    assert!(
        curls.iter().any(|l| l.contains("/events")),
        "no subscribe curl: {curls:?}"
    );
    assert!(
        curls.iter().any(|l| l.contains("/publish")),
        "no publish curl: {curls:?}"
    );
    assert!(
        curls.iter().all(|l| l.contains(&addr)),
        "curl lines must name {addr}: {curls:?}"
    );

    // Anonymous subscribe and publish work, and so does the printed token.
    let mut stream = hub.subscribe(Req::get("/events?topic=demo")).await;
    let body = json!({"topic": "demo", "text": "hello"});
    hub.send(Req::post("/publish").json(&body))
        .await
        .expect_status(200);
    assert_eq!(stream.next_event(WAIT).await.data, "hello");
    let token = find_jwt(&lines).expect("a token");
    hub.subscribe(Req::get("/events?topic=demo").bearer(&token))
        .await;
}

#[tokio::test]
async fn dev_mode_refuses_a_non_loopback_listen_address() {
    let exited = serve_until_exit(&["--memory", "--dev", "--listen", "0.0.0.0:0"], &[], WAIT);
    let status = exited.status.expect("`--dev` on 0.0.0.0 kept running");
    assert!(!status.success(), "`--dev` on 0.0.0.0 exited 0");
    let said = format!("{}{}", exited.stdout, exited.stderr).to_ascii_lowercase();
    assert!(
        said.contains("loopback") || said.contains("--dev"),
        "no reason given: {said}"
    );
}

/// Runs a start that must fail and returns what it said, lower-cased with `_` as `-`.
fn failed_start(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut full = vec!["--memory", "--listen", "127.0.0.1:0"];
    full.extend_from_slice(args);
    let exited = serve_until_exit(&full, env, WAIT);
    let status = exited
        .status
        .unwrap_or_else(|| panic!("`serve {}` {env:?} kept running", args.join(" ")));
    assert!(
        !status.success(),
        "`serve {}` {env:?} exited 0",
        args.join(" ")
    );
    format!("{}{}", exited.stdout, exited.stderr)
        .to_ascii_lowercase()
        .replace('_', "-")
}

/// Arguments, environment, and the option the error message must name.
type BadStart<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);

#[tokio::test]
async fn invalid_configuration_fails_at_start_naming_the_option() {
    let dir = tempfile::tempdir().unwrap();
    let bad_file = dir.path().join("bad.toml");
    std::fs::write(&bad_file, "queue_bytes = \"abc\"\n").unwrap();
    let bad_file = bad_file.to_str().unwrap();
    let cases: Vec<BadStart<'_>> = vec![
        (vec!["--queue-bytes", "abc"], vec![], "queue-bytes"),
        (vec!["--heartbeat", "-1"], vec![], "heartbeat"),
        (vec!["--heartbeat=-1"], vec![], "heartbeat"),
        (vec!["--max-connections", "many"], vec![], "max-connections"),
        (
            vec!["--history-max-bytes", "12XB"],
            vec![],
            "history-max-bytes",
        ),
        (
            vec!["--jwt-public-key", "/nonexistent/key.pem"],
            vec![],
            "jwt-public-key",
        ),
        (
            vec!["--config", "/nonexistent/tidings.toml"],
            vec![],
            "config",
        ),
        (vec![], vec![("TIDINGS_QUEUE_BYTES", "abc")], "queue-bytes"),
        (vec![], vec![("TIDINGS_HEARTBEAT", "soon")], "heartbeat"),
        (vec!["--config", bad_file], vec![], "queue-bytes"),
        (vec!["--pin-writers", "maybe"], vec![], "pin-writers"),
    ];
    let mut unnamed = Vec::new();
    for (args, env, option) in cases {
        let said = failed_start(&args, &env);
        if !said.contains(option) {
            unnamed.push(format!(
                "`serve {}` {env:?} does not name {option}: {said}",
                args.join(" ")
            ));
        }
    }
    assert!(unnamed.is_empty(), "{}", unnamed.join("\n"));
}

#[tokio::test]
async fn the_heartbeat_can_be_set_from_the_environment() {
    let hub = Hub::start_with_env(&["--public-topic", "**"], &[("TIDINGS_HEARTBEAT", "0.2")]);
    let mut stream = hub.subscribe(Req::get("/events?topic=t")).await;
    assert_eq!(
        stream.next_item(WAIT).await,
        Item::Comment("heartbeat".into())
    );
}

async fn announced_retry(args: &[&str], env: &[(&str, &str)]) -> u64 {
    let mut full = vec!["--public-topic", "**"];
    full.extend_from_slice(args);
    let hub = Hub::start_with_env(&full, env);
    let mut stream = hub.open(Req::get("/events?topic=t")).await.expect("200");
    stream.expect_preamble().await
}

#[tokio::test]
async fn flags_win_over_the_environment_which_wins_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tidings.toml");
    std::fs::write(&file, "retry = \"1s\"\n").unwrap();
    let file = file.to_str().unwrap();
    assert_eq!(
        announced_retry(&["--config", file], &[]).await,
        1000,
        "file"
    );
    let env = [("TIDINGS_RETRY", "2s")];
    assert_eq!(
        announced_retry(&["--config", file], &env).await,
        2000,
        "env over file"
    );
    let flag = ["--config", file, "--retry", "2500ms"];
    assert_eq!(
        announced_retry(&flag, &env).await,
        2500,
        "flag over env and file"
    );
    // The config file itself may come from the environment.
    let env = [("TIDINGS_CONFIG", file)];
    assert_eq!(announced_retry(&[], &env).await, 1000, "TIDINGS_CONFIG");
}

#[test]
fn serve_help_documents_every_option_of_the_configuration_reference() {
    let reference = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/CONFIG.md"))
        .expect("docs/CONFIG.md");
    let documented: BTreeSet<String> = reference
        .lines()
        .filter(|l| l.starts_with("| `--"))
        .filter_map(|l| l[3..].split([' ', '`']).next().map(str::to_owned))
        .collect();
    assert!(
        documented.len() > 10,
        "found only {documented:?} in docs/CONFIG.md"
    );
    let out = std::process::Command::new(BINARY)
        .args(["serve", "--help"])
        .output()
        .expect("run --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    let in_help: BTreeSet<String> = help
        .split(|c: char| c.is_whitespace() || c == '=')
        // Flags also appear inside prose, as in "(see --data-dir)." or "`--dev`,".
        .map(|w| {
            w.trim_start_matches(|c: char| c != '-')
                .trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
        })
        .filter(|w| {
            w.starts_with("--")
                && w.len() > 2
                && w[2..]
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
        .map(str::to_owned)
        .collect();
    let missing: Vec<&String> = documented.difference(&in_help).collect();
    assert!(
        missing.is_empty(),
        "documented but not in `serve --help`: {missing:?}"
    );
    let undocumented: Vec<&String> = in_help
        .iter()
        .filter(|f| !documented.contains(*f) && *f != "--help" && *f != "--version")
        .collect();
    assert!(
        undocumented.is_empty(),
        "in `serve --help` but not in docs/CONFIG.md: {undocumented:?}"
    );
}

/// `Cpus_allowed_list` of each thread of `pid` named `name`.
fn thread_cpus(pid: u32, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc") {
        let task = task.expect("task").path();
        let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let status = std::fs::read_to_string(task.join("status")).unwrap_or_default();
        if let Some(line) = status.lines().find(|l| l.starts_with("Cpus_allowed_list:")) {
            out.push(line["Cpus_allowed_list:".len()..].trim().to_string());
        }
    }
    out
}

#[tokio::test]
async fn writer_threads_are_pinned_one_per_cpu_unless_told_not_to() {
    for (args, pinned) in [(&[][..], true), (&["--pin-writers", "false"][..], false)] {
        let mut full = vec!["--public-topic", "**"];
        full.extend_from_slice(args);
        let hub = Hub::start_binary(&full);
        // Streams work either way.
        let mut stream = hub.open(Req::get("/events?topic=t")).await.expect("200");
        stream.expect_preamble().await;
        let process = std::fs::read_to_string(format!("/proc/{}/status", hub.pid()))
            .expect("status")
            .lines()
            .find_map(|l| {
                l.strip_prefix("Cpus_allowed_list:")
                    .map(|v| v.trim().to_string())
            })
            .expect("Cpus_allowed_list");
        let writers = thread_cpus(hub.pid(), "tidings-writer");
        assert!(!writers.is_empty(), "no tidings-writer thread");
        if pinned {
            let mut distinct = writers.clone();
            distinct.sort();
            distinct.dedup();
            assert_eq!(
                distinct.len(),
                writers.len(),
                "two writers on one CPU: {writers:?}"
            );
            for cpus in &writers {
                assert!(
                    cpus.parse::<usize>().is_ok(),
                    "a pinned writer runs on exactly one CPU, not {cpus:?}"
                );
            }
        } else {
            assert!(
                writers.iter().all(|cpus| *cpus == process),
                "{writers:?} vs {process}"
            );
        }
    }
}

/// `tidings serve --print-config` with these flags and variables: the line of `key`.
fn printed(args: &[&str], env: &[(&str, &str)], key: &str) -> String {
    let mut cmd = std::process::Command::new(BINARY);
    cmd.args(["serve", "--print-config"]).args(args);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("TIDINGS_")) {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("run serve --print-config");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "serve --print-config {args:?} {env:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find(|l| l.starts_with(&format!("{key} = ")) || l == &format!("# {key} is not set"))
        .unwrap_or_else(|| panic!("no {key} in {stdout}"))
        .to_owned()
}

#[test]
fn every_option_is_reachable_from_a_flag_a_variable_and_the_file_and_is_documented() {
    let reference = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/CONFIG.md"))
        .expect("docs/CONFIG.md");
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("key.pem");
    std::fs::write(&pem, "not checked until the hub starts").unwrap();
    let pem = pem.to_str().unwrap();
    let file = dir.path().join("tidings.toml");
    let mut undocumented = Vec::new();
    for option in tidings_hub::config::OPTIONS {
        let example = if option.name == "jwt-public-key" {
            pem
        } else {
            option.example
        };
        let key = option.key();
        let default = printed(&[], &[], &key);
        let flag = format!("--{}={example}", option.name);
        let by_flag = printed(&[&flag], &[], &key);
        assert_ne!(by_flag, default, "{flag} changes nothing");
        let env = option.env();
        assert_eq!(printed(&[], &[(&env, example)], &key), by_flag, "{env}");
        let line = match option.arity {
            tidings_hub::config::Arity::Switch => format!("{key} = {example}\n"),
            tidings_hub::config::Arity::One => format!("{key} = \"{example}\"\n"),
            tidings_hub::config::Arity::Many => format!("{key} = [\"{example}\"]\n"),
        };
        std::fs::write(&file, line).unwrap();
        let by_file = printed(&["--config", file.to_str().unwrap()], &[], &key);
        assert_eq!(by_file, by_flag, "{key} in the file");
        for name in [
            format!("`--{}", option.name),
            format!("`{env}`"),
            format!("`{key}`"),
        ] {
            if !reference.contains(&name) {
                undocumented.push(name);
            }
        }
    }
    assert!(
        undocumented.is_empty(),
        "not in docs/CONFIG.md: {undocumented:?}"
    );
}
