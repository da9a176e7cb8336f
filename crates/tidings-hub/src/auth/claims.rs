//! The token claim format: `sub`, `exp` and `tidings: {subscribe, publish, admin}`.
//!
//! Claims are read from a JSON value by hand rather than by a serde derive, so that a claim of
//! the wrong shape gets a message naming the claim, and no message quotes a claim's value
//! except a pattern or user id, which the topic rules bound to 256 bytes.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Map, Value};

use super::AuthError;
use crate::topic::{validate_user, Pattern, TopicError};

/// The claims of a verified token, checked.
#[derive(Debug)]
pub(super) struct Claims {
    pub(super) sub: Option<Arc<str>>,
    pub(super) exp: u64,
    pub(super) subscribe: Vec<Pattern>,
    pub(super) publish: Vec<Pattern>,
    pub(super) admin: bool,
}

fn bad(msg: impl Into<String>) -> AuthError {
    AuthError::BadClaims(msg.into())
}

/// Checks the shape of verified claims. `null` counts as absent; unknown top-level claims are
/// ignored (they belong to whoever issued the token), unknown keys inside `tidings` are refused
/// (a misspelt permission should fail loudly, not grant nothing silently).
pub(super) fn parse(claims: Value) -> Result<Claims, AuthError> {
    let Value::Object(mut claims) = claims else {
        return Err(bad("the claims must be a JSON object"));
    };
    let exp = match claims.get("exp") {
        Some(v) => v.as_u64().ok_or_else(|| {
            bad("the `exp` claim must be a whole number of seconds since the Unix epoch")
        })?,
        None => return Err(bad("the `exp` claim is required")),
    };
    let sub = match claims.remove("sub") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            validate_user(&s).map_err(|e| bad(format!("the `sub` claim: {e}")))?;
            Some(Arc::from(s))
        }
        Some(_) => return Err(bad("the `sub` claim must be a string (a user id)")),
    };
    let mut out = Claims {
        sub,
        exp,
        subscribe: Vec::new(),
        publish: Vec::new(),
        admin: false,
    };
    let tidings = match claims.remove("tidings") {
        None | Some(Value::Null) => return Ok(out),
        Some(Value::Object(map)) => map,
        Some(_) => {
            return Err(bad(
                "the `tidings` claim must be an object: \
                 {\"subscribe\": [patterns], \"publish\": [patterns], \"admin\": bool}",
            ))
        }
    };
    for (key, value) in tidings {
        match key.as_str() {
            "subscribe" => out.subscribe = patterns("subscribe", value)?,
            "publish" => out.publish = patterns("publish", value)?,
            "admin" => {
                out.admin = match value {
                    Value::Null => false,
                    Value::Bool(b) => b,
                    _ => return Err(bad("`tidings.admin` must be true or false")),
                }
            }
            other => {
                let shown: String = other.chars().take(32).collect();
                return Err(bad(format!(
                    "unknown key {shown:?} in the `tidings` claim \
                     (known: subscribe, publish, admin)"
                )));
            }
        }
    }
    Ok(out)
}

fn patterns(field: &str, value: Value) -> Result<Vec<Pattern>, AuthError> {
    let items = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        _ => {
            return Err(bad(format!(
                "`tidings.{field}` must be an array of pattern strings"
            )))
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let s = item
                .as_str()
                .ok_or_else(|| bad(format!("`tidings.{field}[{i}]` must be a string")))?;
            Pattern::parse(s).map_err(|e| bad(format!("`tidings.{field}[{i}]`: {e}")))
        })
        .collect()
}

/// What [`mint_hs256`] puts in a token.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    /// The user id (`sub`).
    pub sub: Option<String>,
    /// Patterns the token may subscribe within.
    pub subscribe: Vec<String>,
    /// Patterns the token may publish to (`users/{id}` for users, `broadcast`).
    pub publish: Vec<String>,
    /// May call admin endpoints.
    pub admin: bool,
    /// Time to live; `exp` is now plus this, rounded up to a whole second.
    pub ttl: Duration,
}

/// Why [`mint_hs256`] refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MintError {
    #[error("the secret is empty; use the hub's --jwt-secret")]
    EmptySecret,
    #[error("sub: {0}")]
    InvalidSub(TopicError),
    #[error("{field}: {source}")]
    InvalidPattern {
        field: &'static str,
        source: TopicError,
    },
    #[error("the time to live must be more than zero")]
    ZeroTtl,
    #[error("the time to live reaches past the year 9999")]
    TtlTooLong,
    #[error("signing the token failed: {0}")]
    Sign(String),
}

/// The latest `exp` minted: 9999-12-31T23:59:59Z, far inside what every JWT library reads.
const MAX_EXP: u64 = 253_402_300_799;

/// Mints an HS256 token for `spec`, signed with `secret`, after checking every pattern and the
/// user id with the same rules the hub applies when it reads the token back.
pub fn mint_hs256(secret: &str, spec: &TokenSpec) -> Result<String, MintError> {
    if secret.is_empty() {
        return Err(MintError::EmptySecret);
    }
    if spec.ttl.is_zero() {
        return Err(MintError::ZeroTtl);
    }
    if let Some(sub) = &spec.sub {
        validate_user(sub).map_err(MintError::InvalidSub)?;
    }
    for (field, list) in [("subscribe", &spec.subscribe), ("publish", &spec.publish)] {
        for p in list {
            Pattern::parse(p).map_err(|source| MintError::InvalidPattern { field, source })?;
        }
    }
    let now = jsonwebtoken::get_current_timestamp();
    let ttl_secs = spec.ttl.as_secs() + u64::from(spec.ttl.subsec_nanos() > 0);
    let exp = now
        .checked_add(ttl_secs)
        .filter(|&e| e <= MAX_EXP)
        .ok_or(MintError::TtlTooLong)?;
    let mut claims = Map::new();
    if let Some(sub) = &spec.sub {
        claims.insert("sub".into(), json!(sub));
    }
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(exp));
    claims.insert(
        "tidings".into(),
        json!({"subscribe": spec.subscribe, "publish": spec.publish, "admin": spec.admin}),
    );
    super::install_crypto_provider();
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| MintError::Sign(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{AuthConfig, Authenticator};

    const SECRET: &str = "a-test-secret-that-is-long-enough-0123456789";

    fn authenticator() -> Authenticator {
        let cfg = AuthConfig {
            jwt_secret: Some(SECRET.into()),
            ..Default::default()
        };
        Authenticator::new(cfg).unwrap()
    }

    fn spec() -> TokenSpec {
        TokenSpec {
            sub: Some("alice".into()),
            subscribe: vec!["orders/*".into()],
            publish: vec!["users/*".into()],
            admin: true,
            ttl: Duration::from_secs(3600),
        }
    }

    /// The claims as signed, checked with the secret.
    fn raw_claims(token: &str) -> Value {
        let key = jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes());
        let validation = jsonwebtoken::Validation::new(Algorithm::HS256);
        jsonwebtoken::decode::<Value>(token, &key, &validation)
            .unwrap()
            .claims
    }

    fn lifetime(claims: &Value) -> u64 {
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap()
    }

    #[test]
    fn minted_tokens_carry_the_spec_and_the_hub_accepts_them() {
        let token = mint_hs256(SECRET, &spec()).unwrap();
        let claims = raw_claims(&token);
        assert_eq!(claims["sub"], "alice");
        assert_eq!(
            claims["tidings"],
            json!({"subscribe": ["orders/*"], "publish": ["users/*"], "admin": true})
        );
        assert_eq!(lifetime(&claims), 3600);
        let p = authenticator().authenticate(Some(&token)).unwrap();
        assert_eq!(p.sub.as_deref(), Some("alice"));
        assert_eq!(p.exp, claims["exp"].as_u64());
        assert_eq!(p.subscribe, vec![Pattern::parse("orders/*").unwrap()]);
        assert_eq!(p.publish, vec![Pattern::parse("users/*").unwrap()]);
        assert!(p.admin);
    }

    #[test]
    fn sub_second_ttls_round_up_to_a_whole_second() {
        let spec = TokenSpec {
            ttl: Duration::from_millis(500),
            sub: None,
            ..spec()
        };
        let claims = raw_claims(&mint_hs256(SECRET, &spec).unwrap());
        assert_eq!(lifetime(&claims), 1);
        assert!(claims.get("sub").is_none());
    }

    #[test]
    fn minting_checks_patterns_user_secret_and_ttl() {
        let bad_pattern = TokenSpec {
            subscribe: vec!["ord*".into()],
            ..spec()
        };
        assert!(matches!(
            mint_hs256(SECRET, &bad_pattern),
            Err(MintError::InvalidPattern {
                field: "subscribe",
                ..
            })
        ));
        let bad_sub = TokenSpec {
            sub: Some("a\nb".into()),
            ..spec()
        };
        assert!(matches!(
            mint_hs256(SECRET, &bad_sub),
            Err(MintError::InvalidSub(_))
        ));
        assert_eq!(mint_hs256("", &spec()), Err(MintError::EmptySecret));
        let zero = TokenSpec {
            ttl: Duration::ZERO,
            ..spec()
        };
        assert_eq!(mint_hs256(SECRET, &zero), Err(MintError::ZeroTtl));
        let forever = TokenSpec {
            ttl: Duration::from_secs(u64::MAX),
            ..spec()
        };
        assert_eq!(mint_hs256(SECRET, &forever), Err(MintError::TtlTooLong));
    }
}
