//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz), and the replay of their corpus
//! in the ordinary test suite, so CI runs every saved input on stable Rust.
//!
//! Each function takes arbitrary bytes and must never panic, hang or allocate without bound;
//! what it returns is not the point. Built with the `fuzzing` feature (and in tests).

use crate::auth::{AuthConfig, Authenticator};
use crate::topic::Pattern;

/// The native path's request-head parser (`GET /events` straight on the socket).
pub fn request_head(data: &[u8]) {
    let _ = crate::native::parse_head_for_fuzzing(data);
}

/// The body of `POST /publish` (one event or a batch), then `POST /broadcast`'s, then the
/// same validation a publish gets before an id is assigned.
pub fn publish_body(data: &[u8]) {
    let limits = crate::publish::PublishLimits {
        max_event_bytes: 512 << 10,
        max_targets: 64,
    };
    if let Ok((events, _)) = crate::body::parse_publish(data) {
        for e in events {
            let _ = e.prepare(&limits);
        }
    }
    if let Ok(e) = crate::body::parse_message(data, crate::Publish::to_everyone()) {
        let _ = e.prepare(&limits);
    }
}

/// Topic patterns, and matching a topic against them: the input is split at its first
/// newline into a pattern and a topic.
pub fn topic_pattern(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (pattern, topic) = text.split_once('\n').unwrap_or((&text, "a/b/c"));
    if let Ok(p) = Pattern::parse(pattern) {
        let _ = p.matches(topic);
        let _ = p.is_literal();
    }
    let _ = crate::topic::validate_topic(topic);
}

/// Bearer values: publish-key comparison, JWT header and claims parsing, signature checks.
pub fn token(data: &[u8]) {
    use std::sync::OnceLock;
    static AUTH: OnceLock<Authenticator> = OnceLock::new();
    let auth = AUTH.get_or_init(|| {
        Authenticator::new(AuthConfig {
            jwt_secret: Some("fuzzing-secret-0123456789abcdef".into()),
            publish_keys: vec!["fuzzing-publish-key-0123".into()],
            ..Default::default()
        })
        .expect("a valid fuzzing configuration")
    });
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = auth.authenticate(Some(text));
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    /// A fuzz target's name and its entry point.
    type Target = (&'static str, fn(&[u8]));

    /// Every saved input of every target runs through its entry point without a panic.
    #[test]
    fn the_fuzz_corpus_replays_cleanly() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        let targets: [Target; 4] = [
            ("request_head", super::request_head),
            ("publish_body", super::publish_body),
            ("topic_pattern", super::topic_pattern),
            ("token", super::token),
        ];
        for (name, run) in targets {
            let dir = root.join(name);
            let entries = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("the corpus of {name} at {}: {e}", dir.display()));
            let mut count = 0;
            for entry in entries {
                let path = entry.expect("a corpus entry").path();
                let data = std::fs::read(&path).expect("a corpus file");
                run(&data);
                count += 1;
            }
            assert!(count > 0, "the corpus of {name} is empty");
        }
    }
}
