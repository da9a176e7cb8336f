//! Unit and property tests of topic validation and pattern matching.

use super::*;
use proptest::prelude::*;

fn p(s: &str) -> Pattern {
    Pattern::parse(s).unwrap()
}

#[test]
fn topics_of_printable_text_with_segments_are_valid() {
    for t in [
        "orders",
        "orders/42",
        "a b/ç/日本",
        "users/alice",
        "~!@#$%^&()",
    ] {
        assert_eq!(validate_topic(t), Ok(()), "{t}");
    }
    assert_eq!(validate_topic(&"x".repeat(256)), Ok(()));
}

#[test]
fn topic_rules_are_enforced_with_typed_errors() {
    use Subject::Topic;
    assert_eq!(validate_topic(""), Err(TopicError::Empty { what: Topic }));
    assert_eq!(
        validate_topic(&"x".repeat(257)),
        Err(TopicError::TooLong {
            what: Topic,
            len: 257
        })
    );
    for t in ["a\nb", "a\tb", "\0", "a\u{7f}"] {
        assert_eq!(
            validate_topic(t),
            Err(TopicError::ControlChar {
                what: Topic,
                value: t.into()
            })
        );
    }
    for t in ["/a", "a/", "a//b", "/"] {
        assert_eq!(
            validate_topic(t),
            Err(TopicError::EmptySegment {
                what: Topic,
                value: t.into()
            })
        );
    }
    for t in ["*", "a/**", "orders/*/x", "ord*"] {
        assert_eq!(
            validate_topic(t),
            Err(TopicError::Wildcard { value: t.into() })
        );
    }
}

#[test]
fn error_messages_name_the_value_and_escape_control_characters() {
    let msg = validate_topic("a\nb").unwrap_err().to_string();
    assert!(msg.contains(r#""a\nb""#), "{msg}");
    let msg = Pattern::parse("ord*").unwrap_err().to_string();
    assert!(
        msg.contains("\"ord*\"") && msg.contains("whole segment"),
        "{msg}"
    );
    let msg = validate_user("").unwrap_err().to_string();
    assert!(msg.starts_with("user id is empty"), "{msg}");
}

#[test]
fn user_ids_allow_any_printable_text_up_to_256_bytes() {
    for u in ["alice", "a/b", "https://id.example/u/1", "*", "Zoë 42"] {
        assert_eq!(validate_user(u), Ok(()), "{u}");
    }
    assert!(validate_user("").is_err());
    assert!(validate_user(&"u".repeat(257)).is_err());
    assert!(validate_user("a\rb").is_err());
}

#[test]
fn wildcards_must_be_whole_segments_and_double_star_last() {
    for ok in ["*", "**", "a/*", "*/b", "a/*/c", "a/**", "*/**", "*/*"] {
        assert!(Pattern::parse(ok).is_ok(), "{ok}");
    }
    for bad in ["ord*", "a**", "a/**/b", "**/a", "***", "a/*b", "** "] {
        assert_eq!(
            Pattern::parse(bad),
            Err(TopicError::MisplacedWildcard { value: bad.into() }),
            "{bad}"
        );
    }
    assert!(matches!(
        Pattern::parse("a//*"),
        Err(TopicError::EmptySegment { .. })
    ));
    assert!(matches!(Pattern::parse(""), Err(TopicError::Empty { .. })));
}

#[test]
fn star_matches_exactly_one_segment() {
    let pat = p("orders/*");
    assert!(pat.matches("orders/42"));
    assert!(!pat.matches("orders"));
    assert!(!pat.matches("orders/42/items"));
    assert!(!pat.matches("order/42"));
    assert!(p("*/x").matches("a/x"));
    assert!(!p("*/x").matches("a/y"));
}

#[test]
fn double_star_matches_one_or_more_further_segments() {
    let pat = p("tenant/7/**");
    assert!(pat.matches("tenant/7/a"));
    assert!(pat.matches("tenant/7/a/b"));
    assert!(!pat.matches("tenant/7"));
    assert!(!pat.matches("tenant/70/a"));
    assert!(p("**").matches("anything/at/all"));
    assert!(p("**").matches("broadcast"));
}

#[test]
fn literal_patterns_match_only_their_own_text() {
    let pat = p("orders/42");
    assert!(pat.is_literal());
    assert!(pat.matches("orders/42"));
    assert!(!pat.matches("orders/420"));
    assert!(!p("orders/*").is_literal());
    assert!(!p("orders/**").is_literal());
}

#[test]
fn users_star_allows_every_user_even_with_slashes() {
    for u in ["alice", "a/b", "https://id.example/u/1"] {
        assert!(p("users/*").matches_user(u), "{u}");
        assert!(p("users/**").matches_user(u), "{u}");
        assert!(p("**").matches_user(u), "{u}");
    }
    assert!(p("users/alice").matches_user("alice"));
    assert!(!p("users/alice").matches_user("bob"));
    assert!(p("users/a/b").matches_user("a/b"));
    assert!(!p("users").matches_user("alice"));
    assert!(!p("orders/*").matches_user("alice"));
    assert!(!p("users/*/x").matches_user("alice"));
    assert!(!p("broadcast").matches_user("alice"));
}

#[test]
fn covers_examples() {
    assert!(p("**").covers(&p("orders/*")));
    assert!(p("orders/*").covers(&p("orders/42")));
    assert!(p("orders/**").covers(&p("orders/*")));
    assert!(p("orders/**").covers(&p("orders/*/items/**")));
    assert!(p("*/x").covers(&p("a/x")));
    assert!(!p("orders/*").covers(&p("orders/**")));
    assert!(!p("orders/42").covers(&p("orders/*")));
    assert!(!p("orders/**").covers(&p("orders")));
    assert!(!p("a/b/**").covers(&p("a/**")));
    assert!(!p("a/*").covers(&p("b/*")));
}

#[test]
fn equality_and_hash_follow_the_text() {
    use std::collections::HashSet;
    let set: HashSet<Pattern> = [p("a/*"), p("a/*"), p("a/**")].into_iter().collect();
    assert_eq!(set.len(), 2);
    assert_eq!(format!("{:?}", p("a/*")), r#"Pattern("a/*")"#);
}

#[test]
fn patterns_serialize_as_strings_and_reject_invalid_ones() {
    let pat: Pattern = serde_json::from_str(r#""news/**""#).unwrap();
    assert_eq!(pat, p("news/**"));
    assert_eq!(serde_json::to_string(&pat).unwrap(), r#""news/**""#);
    assert!(serde_json::from_str::<Pattern>(r#""ord*""#).is_err());
}

/// The obvious recursive definition, to check the iterative matcher against.
fn reference_match(pat: &[&str], topic: &[&str]) -> bool {
    match (pat.split_first(), topic.split_first()) {
        (Some((&"**", [])), _) => !topic.is_empty(),
        (Some((&"*", prest)), Some((_, trest))) => reference_match(prest, trest),
        (Some((lit, prest)), Some((t, trest))) => lit == t && reference_match(prest, trest),
        (None, None) => true,
        _ => false,
    }
}

/// Patterns over the alphabet {a, b, *} with up to 3 segments and an optional `**`.
fn small_patterns() -> Vec<Pattern> {
    let mut by_len: Vec<Vec<Vec<&str>>> = vec![vec![vec![]]];
    for n in 1..=3 {
        let longer = by_len[n - 1]
            .iter()
            .flat_map(|v| ["a", "b", "*"].map(|s| [&v[..], &[s]].concat()));
        by_len.push(longer.collect());
    }
    let mut out = Vec::new();
    for segs in by_len.into_iter().flatten() {
        if !segs.is_empty() {
            out.push(p(&segs.join("/")));
        }
        out.push(p(&[&segs[..], &["**"]].concat().join("/")));
    }
    out
}

/// Every topic over {a, b, c} of 1 to 5 segments: enough to find a witness for any pair of
/// small patterns where one does not cover the other (`c` never appears in a pattern).
fn small_topics() -> Vec<String> {
    let mut out: Vec<String> = vec![];
    let mut last: Vec<String> = vec![String::new()];
    for _ in 0..5 {
        last = last
            .iter()
            .flat_map(|t| {
                ["a", "b", "c"].map(|s| {
                    if t.is_empty() {
                        s.into()
                    } else {
                        format!("{t}/{s}")
                    }
                })
            })
            .collect();
        out.extend(last.iter().cloned());
    }
    out
}

#[test]
fn covers_is_exactly_topic_set_inclusion_for_small_patterns() {
    let patterns = small_patterns();
    assert_eq!(patterns.len(), 79);
    let topics = small_topics();
    let matched: Vec<Vec<bool>> = patterns
        .iter()
        .map(|pat| topics.iter().map(|t| pat.matches(t)).collect())
        .collect();
    for (i, a) in patterns.iter().enumerate() {
        for (j, b) in patterns.iter().enumerate() {
            let included = matched[j]
                .iter()
                .zip(&matched[i])
                .all(|(&mb, &ma)| !mb || ma);
            assert_eq!(a.covers(b), included, "{a} covers {b}");
        }
    }
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_string()),
        Just("b".to_string()),
        Just("*".to_string()),
        "[a-c é日]{1,3}",
    ]
}

fn pattern_text() -> impl Strategy<Value = String> {
    (prop::collection::vec(segment(), 0..5), any::<bool>()).prop_filter_map(
        "empty pattern",
        |(mut segs, rest)| {
            if rest {
                segs.push("**".into());
            }
            (!segs.is_empty()).then(|| segs.join("/"))
        },
    )
}

/// Topics over segments that equal, extend or prefix the patterns' literals.
fn topic_text() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        Just("a".to_string()),
        Just("b".to_string()),
        Just("c".to_string()),
        Just("ab".to_string()),
        "[a-c é日]{1,3}",
    ];
    prop::collection::vec(segment, 1..7).prop_map(|segs| segs.join("/"))
}

proptest! {
    #[test]
    fn covering_pattern_matches_whatever_the_covered_one_matches(
        a in pattern_text(), b in pattern_text(), topics in prop::collection::vec(topic_text(), 1..20)
    ) {
        let (a, b) = (p(&a), p(&b));
        if a.covers(&b) {
            for t in &topics {
                prop_assert!(!b.matches(t) || a.matches(t), "{a} covers {b} but not {t}");
            }
        }
    }

    #[test]
    fn matcher_agrees_with_the_recursive_definition(pat in pattern_text(), topic in topic_text()) {
        let segs: Vec<&str> = pat.split('/').collect();
        let tsegs: Vec<&str> = topic.split('/').collect();
        prop_assert_eq!(p(&pat).matches(&topic), reference_match(&segs, &tsegs));
    }

    #[test]
    fn parse_then_display_round_trips(text in pattern_text()) {
        let pat = p(&text);
        prop_assert_eq!(pat.to_string(), text.clone());
        prop_assert_eq!(text.parse::<Pattern>().unwrap(), pat);
    }

    #[test]
    fn every_pattern_covers_itself(text in pattern_text()) {
        let pat = p(&text);
        prop_assert!(pat.covers(&pat));
    }

    #[test]
    fn validation_never_panics_on_arbitrary_text(s in "\\PC{0,40}|[\\x00-\\x7f]{0,10}") {
        let _ = validate_topic(&s);
        let _ = validate_user(&s);
        let _ = Pattern::parse(&s);
    }
}

#[test]
fn system_topics_are_reserved_and_only_matched_by_name() {
    assert!(matches!(
        validate_topic("$sys/stats"),
        Err(TopicError::Reserved { .. })
    ));
    assert!(matches!(
        validate_topic("$tasks"),
        Err(TopicError::Reserved { .. })
    ));
    for wild in ["**", "*", "*/stats", "*/**"] {
        let p = Pattern::parse(wild).expect("a pattern");
        assert!(
            !p.matches("$sys/stats"),
            "{wild} must not reach a system topic"
        );
        assert!(!p.matches("$tasks"), "{wild} must not reach a system topic");
    }
    assert!(Pattern::parse("$sys/**").unwrap().matches("$sys/stats"));
    assert!(Pattern::parse("$tasks").unwrap().matches("$tasks"));
    assert!(
        Pattern::parse("**").unwrap().matches("a/$b"),
        "only a leading `$` is reserved"
    );
}
