//! Every option reachable from every layer, layers in order, and a printed configuration that
//! loads back to itself.

use std::path::Path;

use super::{Layer, LoadError, Loader, ServeConfig};
use crate::config::{Arity, OPTIONS};

fn file(text: &str) -> Loader {
    let mut loader = Loader::new();
    loader
        .toml(text, Path::new("test.toml"))
        .expect("a valid file");
    loader
}

/// The file line that gives `example` to the option.
fn toml_line(key: &str, arity: Arity, example: &str) -> String {
    match arity {
        Arity::Switch => format!("{key} = {example}\n"),
        Arity::One => format!("{key} = \"{example}\"\n"),
        Arity::Many => format!("{key} = [\"{example}\"]\n"),
    }
}

#[test]
fn every_option_is_reachable_from_the_file_the_environment_and_a_flag() {
    let defaults = ServeConfig::default();
    for option in OPTIONS {
        let mut direct = ServeConfig::default();
        option.clear(&mut direct);
        option
            .set(&mut direct, option.example)
            .unwrap_or_else(|e| panic!("{}: its example is refused: {e}", option.name));
        let expected = option.get(&direct);
        assert_ne!(
            expected,
            option.get(&defaults),
            "{}: the example must differ from the default",
            option.name
        );
        let from_file = file(&toml_line(&option.key(), option.arity, option.example));
        assert_eq!(
            option.get(&from_file.config),
            expected,
            "{} in the file",
            option.name
        );
        let mut from_env = Loader::new();
        from_env
            .env([(option.env(), option.example.to_owned())])
            .expect("a valid variable");
        assert_eq!(option.get(&from_env.config), expected, "{}", option.env());
        let mut from_flag = Loader::new();
        from_flag
            .value(Layer::Flags, option.name, option.example)
            .expect("a valid flag");
        assert_eq!(option.get(&from_flag.config), expected, "--{}", option.name);
    }
}

#[test]
fn flags_win_over_the_environment_which_wins_over_the_file() {
    let mut loader =
        file("retry = \"1s\"\nheartbeat = 20\ncors_origin = [\"https://a\", \"https://b\"]\n");
    loader
        .env([
            ("TIDINGS_RETRY".to_owned(), "2s".to_owned()),
            ("TIDINGS_CORS_ORIGIN".to_owned(), "https://c".to_owned()),
            ("TIDINGS_LOG".to_owned(), "debug".to_owned()),
        ])
        .expect("valid");
    loader
        .value(Layer::Flags, "retry", "2500ms")
        .expect("valid");
    let config = loader.finish().expect("valid");
    assert_eq!(config.hub.retry.as_millis(), 2500);
    assert_eq!(config.hub.heartbeat.as_secs(), 20, "only the file set it");
    assert_eq!(
        config.hub.cors_origins,
        ["https://c"],
        "a list is replaced, not merged"
    );
}

#[test]
fn a_repeated_flag_adds_to_the_list() {
    let mut loader = Loader::new();
    for topic in ["a/*", "b/**"] {
        loader
            .value(Layer::Flags, "public-topic", topic)
            .expect("valid");
    }
    assert_eq!(loader.config.hub.public_topics, ["a/*", "b/**"]);
}

#[test]
fn a_printed_configuration_loads_back_to_itself() {
    let mut loader = Loader::new();
    for option in OPTIONS {
        loader
            .value(Layer::Flags, option.name, option.example)
            .expect("valid");
    }
    let printed = loader.config.to_toml(true);
    let again = file(&printed);
    assert_eq!(again.config.to_toml(true), printed);
    let defaults = ServeConfig::default().to_toml(true);
    assert_eq!(file(&defaults).config.to_toml(true), defaults);
}

#[test]
fn secrets_are_not_printed_unless_asked() {
    let mut loader = Loader::new();
    loader
        .value(Layer::Flags, "jwt-secret", "a-secret-that-must-not-leak")
        .expect("valid");
    assert!(!loader.config.to_toml(false).contains("must-not-leak"));
    assert!(loader.config.to_toml(true).contains("must-not-leak"));
}

#[test]
fn bad_input_names_the_option_and_where_it_came_from() {
    let err = Loader::new()
        .toml("queue_bytes = \"abc\"\n", Path::new("/etc/t.toml"))
        .expect_err("not a size");
    assert!(
        matches!(
            err,
            LoadError::Value {
                option: "queue-bytes",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("/etc/t.toml"), "{err}");
    let err = Loader::new()
        .toml("queue-bytes = 5\n", Path::new("t.toml"))
        .expect_err("keys use underscores");
    assert!(matches!(err, LoadError::Unknown { .. }), "{err}");
    let err = Loader::new()
        .toml("nonsense = 1\n", Path::new("t.toml"))
        .expect_err("unknown");
    assert!(err.to_string().contains("nonsense"), "{err}");
    let err = Loader::new()
        .env([("TIDINGS_HEARTBEAT".to_owned(), "soon".to_owned())])
        .expect_err("not a duration");
    assert!(err.to_string().contains("TIDINGS_HEARTBEAT"), "{err}");
    let err = Loader::new()
        .toml("heartbeat = { a = 1 }\n", Path::new("t.toml"))
        .expect_err("a table");
    assert!(matches!(err, LoadError::File { .. }), "{err}");
    let mut zero = Loader::new();
    zero.value(Layer::Flags, "max-topics", "0")
        .expect("a number");
    let err = zero.finish().expect_err("zero topics");
    assert!(err.to_string().contains("--max-topics"), "{err}");
}

#[test]
fn the_public_key_file_is_read_at_the_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.pem");
    let mut loader = Loader::new();
    loader
        .value(
            Layer::Flags,
            "jwt-public-key",
            missing.to_str().expect("utf-8"),
        )
        .expect("a path");
    let err = loader.finish().expect_err("no such file");
    assert!(err.to_string().contains("--jwt-public-key"), "{err}");
}

#[test]
fn switches_read_like_the_command_line() {
    for (text, expected) in [
        ("true", true),
        ("yes", true),
        ("1", true),
        ("off", false),
        ("0", false),
    ] {
        let mut loader = Loader::new();
        loader.value(Layer::Env, "dev", text).expect("a switch");
        assert_eq!(loader.config.hub.dev, expected, "{text}");
    }
    assert!(Loader::new().value(Layer::Env, "dev", "maybe").is_err());
}
