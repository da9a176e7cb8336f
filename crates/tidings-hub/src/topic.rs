//! Topics, subscription patterns and user ids: validation and matching.
//!
//! Pure functions and data, no I/O. [`Pattern::matches`] runs for every (event, subscription)
//! pair the hub considers, so it never allocates: a pattern is parsed once into segments that
//! are compared against the topic's `/`-separated pieces as the topic is walked.
//!
//! The rules (also in `docs/API.md`):
//! - a **topic** is 1 to 256 bytes without control characters (bytes below 0x20 and 0x7f), made
//!   of non-empty segments separated by `/`. A published topic is concrete: it contains no `*`
//!   at all, so that every topic can also be written as a literal pattern;
//! - a **pattern** may use `*` as a whole segment (exactly one segment) and `**` as the whole
//!   last segment (one or more further segments). `**` alone matches every topic;
//! - a **user id** is 1 to 256 bytes without control characters.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// The longest topic, pattern or user id, in bytes.
pub const MAX_LEN: usize = 256;

/// What a [`TopicError`] is about, so its message names the right thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// A concrete topic, as published.
    Topic,
    /// A subscription or permission pattern.
    Pattern,
    /// A user id.
    User,
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Subject::Topic => "topic",
            Subject::Pattern => "pattern",
            Subject::User => "user id",
        })
    }
}

/// Why a topic, pattern or user id was refused. Values are quoted with `{:?}` so control
/// characters show escaped; the length check runs first, so a quoted value is at most
/// [`MAX_LEN`] bytes.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TopicError {
    /// The value is the empty string.
    #[error("{what} is empty; it needs 1 to 256 bytes")]
    Empty { what: Subject },
    /// The value is longer than [`MAX_LEN`] bytes.
    #[error("{what} is {len} bytes long; the limit is 256 bytes")]
    TooLong { what: Subject, len: usize },
    /// The value contains a byte below 0x20 or 0x7f.
    #[error(
        "{what} {value:?} contains a control character; only printable characters are allowed"
    )]
    ControlChar { what: Subject, value: String },
    /// Leading, trailing or doubled `/`.
    #[error(
        "{what} {value:?} has an empty segment; segments are separated by single `/` \
         and there is no leading or trailing `/`"
    )]
    EmptySegment { what: Subject, value: String },
    /// A `*` in a concrete (published) topic.
    #[error(
        "topic {value:?} contains `*`; a published topic must be concrete \
         (wildcards are for subscription patterns)"
    )]
    Wildcard { value: String },
    /// A published topic starting with `$`: those are the hub's own (`$sys/…`, `$tasks`).
    #[error("topic {value:?} starts with `$`, which is reserved for the hub's system topics")]
    Reserved { value: String },
    /// `*` or `**` inside a segment, or `**` before the last segment.
    #[error(
        "pattern {value:?} has a misplaced wildcard: `*` must be a whole segment, \
         and `**` only the whole last segment"
    )]
    MisplacedWildcard { value: String },
}

/// Checks the rules shared by topics, patterns and user ids: length and control characters.
fn check_common(s: &str, what: Subject) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty { what });
    }
    if s.len() > MAX_LEN {
        return Err(TopicError::TooLong { what, len: s.len() });
    }
    // In UTF-8 every byte of a multi-byte character is >= 0x80, so a byte scan finds exactly
    // the ASCII control characters.
    if s.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(TopicError::ControlChar {
            what,
            value: s.to_owned(),
        });
    }
    Ok(())
}

/// Checks a concrete topic, as given to publish.
pub fn validate_topic(s: &str) -> Result<(), TopicError> {
    check_common(s, Subject::Topic)?;
    if s.split('/').any(str::is_empty) {
        return Err(TopicError::EmptySegment {
            what: Subject::Topic,
            value: s.to_owned(),
        });
    }
    if s.contains('*') {
        return Err(TopicError::Wildcard {
            value: s.to_owned(),
        });
    }
    if is_system(s) {
        return Err(TopicError::Reserved {
            value: s.to_owned(),
        });
    }
    Ok(())
}

/// Whether a topic or pattern is one of the hub's system topics (`$sys/…`, `$tasks`): never
/// published to by clients, and never matched by a pattern that starts with a wildcard (`**`
/// and `*/…` do not reach them; only a pattern that names them does).
pub fn is_system(s: &str) -> bool {
    s.starts_with('$')
}

/// Checks a user id.
pub fn validate_user(s: &str) -> Result<(), TopicError> {
    check_common(s, Subject::User)
}

/// One parsed segment of a pattern. Literal segments are byte ranges into the pattern's text,
/// so a pattern is two allocations however many segments it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Segment {
    Literal {
        start: u16,
        end: u16,
    },
    /// `*`: any one segment.
    Any,
}

#[derive(Debug)]
struct Inner {
    text: Box<str>,
    /// The segments before a trailing `**` (all of them when there is none).
    segments: Box<[Segment]>,
    /// The pattern ends in `**`: one or more further segments.
    rest: bool,
    /// No wildcard at all: matching is string equality.
    literal: bool,
}

/// A parsed subscription or permission pattern.
///
/// Cloning is a reference-count increment. Equality, ordering and hashing are those of the
/// pattern's text.
#[derive(Clone)]
pub struct Pattern(Arc<Inner>);

impl Pattern {
    /// Parses and validates a pattern.
    pub fn parse(s: &str) -> Result<Self, TopicError> {
        check_common(s, Subject::Pattern)?;
        let pieces = s.split('/').count();
        let mut segments = Vec::with_capacity(pieces);
        let mut rest = false;
        let mut start = 0usize;
        for (i, piece) in s.split('/').enumerate() {
            let end = start + piece.len();
            match piece {
                "" => {
                    return Err(TopicError::EmptySegment {
                        what: Subject::Pattern,
                        value: s.to_owned(),
                    })
                }
                "*" => segments.push(Segment::Any),
                "**" if i + 1 == pieces => rest = true,
                _ if piece.contains('*') => {
                    return Err(TopicError::MisplacedWildcard {
                        value: s.to_owned(),
                    })
                }
                // Both fit in u16: `check_common` bounds the text to MAX_LEN bytes.
                _ => segments.push(Segment::Literal {
                    start: start as u16,
                    end: end as u16,
                }),
            }
            start = end + 1;
        }
        let literal = !rest
            && segments
                .iter()
                .all(|s| matches!(s, Segment::Literal { .. }));
        Ok(Pattern(Arc::new(Inner {
            text: s.into(),
            segments: segments.into_boxed_slice(),
            rest,
            literal,
        })))
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0.text
    }

    /// True when the pattern has no wildcard, so it matches exactly the topic equal to its text.
    pub fn is_literal(&self) -> bool {
        self.0.literal
    }

    fn literal(&self, start: u16, end: u16) -> &str {
        &self.0.text[usize::from(start)..usize::from(end)]
    }

    /// Whether the pattern matches `topic`, which the caller has validated with
    /// [`validate_topic`]. Never allocates.
    ///
    /// This runs for every (event, subscription) pair the fan-out considers, so it scans the
    /// topic's bytes once, comparing literal segments in place, instead of splitting it.
    pub fn matches(&self, topic: &str) -> bool {
        let inner = &*self.0;
        if inner.literal {
            return inner.text.as_ref() == topic;
        }
        if is_system(topic) && !matches!(inner.segments.first(), Some(Segment::Literal { .. })) {
            return false;
        }
        let (topic, text) = (topic.as_bytes(), inner.text.as_bytes());
        let n = topic.len();
        // Start of the next topic segment; n + 1 once the last one is consumed.
        let mut pos = 0;
        for seg in inner.segments.iter() {
            if pos > n {
                return false;
            }
            let end = match *seg {
                Segment::Literal { start, end } => {
                    let lit = &text[usize::from(start)..usize::from(end)];
                    let end = pos + lit.len();
                    if end > n || &topic[pos..end] != lit || (end < n && topic[end] != b'/') {
                        return false;
                    }
                    end
                }
                Segment::Any => topic[pos..]
                    .iter()
                    .position(|&b| b == b'/')
                    .map_or(n, |i| pos + i),
            };
            pos = end + 1;
        }
        if inner.rest {
            pos <= n
        } else {
            pos == n + 1
        }
    }

    /// Walks segments against the pattern's: each pattern segment consumes one, and a trailing
    /// `**` needs at least one more. The general form of [`Pattern::matches`], for user targets.
    fn matches_segments<'t>(&self, mut topic: impl Iterator<Item = &'t str>) -> bool {
        for seg in self.0.segments.iter() {
            let Some(piece) = topic.next() else {
                return false;
            };
            if let Segment::Literal { start, end } = *seg {
                if self.literal(start, end) != piece {
                    return false;
                }
            }
        }
        let more = topic.next().is_some();
        more == self.0.rest
    }

    /// Whether the pattern allows the user target `user`, which stands for the topic
    /// `users/{user}`.
    ///
    /// A user id may itself contain `/` (an OIDC `sub` is often a URL), so beyond plain topic
    /// matching, a pattern whose first segment matches `users` and whose second and last
    /// segment is `*` allows every user: `users/*` means "any user", as DESIGN.md promises.
    pub fn matches_user(&self, user: &str) -> bool {
        let inner = &*self.0;
        let users_then_any = !inner.rest
            && inner.segments.len() == 2
            && inner.segments[1] == Segment::Any
            && match inner.segments[0] {
                Segment::Any => true,
                Segment::Literal { start, end } => self.literal(start, end) == "users",
            };
        if users_then_any {
            return true;
        }
        if self.is_literal() {
            return self.as_str().strip_prefix("users/") == Some(user);
        }
        self.matches_segments(std::iter::once("users").chain(user.split('/')))
    }

    /// True when every topic that `other` matches, `self` matches too: subscribing to `other`
    /// is allowed by a grant of `self`.
    ///
    /// Exact for unbounded topics. It ignores the 256-byte limit, which can only make it
    /// answer `false` where a bounded check would find `true`, never the reverse.
    pub fn covers(&self, other: &Pattern) -> bool {
        let (a, b) = (&*self.0, &*other.0);
        // Lengths (in segments) of the topics each matches: exactly n, or n+1 and more.
        let lengths_ok = match (a.rest, b.rest) {
            (false, false) => a.segments.len() == b.segments.len(),
            (false, true) => false,
            (true, false) => b.segments.len() > a.segments.len(),
            (true, true) => b.segments.len() >= a.segments.len(),
        };
        if !lengths_ok {
            return false;
        }
        // Where `self` has a literal, `other` must have the same literal: a `*` in `other`
        // matches infinitely many segments, and (lengths_ok) `other` has a segment there.
        a.segments
            .iter()
            .zip(b.segments.iter())
            .all(|(sa, sb)| match (*sa, *sb) {
                (Segment::Any, _) => true,
                (Segment::Literal { .. }, Segment::Any) => false,
                (
                    Segment::Literal { start: s1, end: e1 },
                    Segment::Literal { start: s2, end: e2 },
                ) => self.literal(s1, e1) == other.literal(s2, e2),
            })
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Pattern").field(&self.as_str()).finish()
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Pattern {
    type Err = TopicError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Pattern::parse(s)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Pattern {}

impl std::hash::Hash for Pattern {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialOrd for Pattern {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pattern {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl serde::Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Pattern::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
