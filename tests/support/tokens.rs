//! Tokens for the tests: legitimate ones minted like an application backend would, and the
//! hostile ones an attacker would try.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// The HS256 secret every test hub that checks tokens is started with (`--jwt-secret`).
pub const SECRET: &str = "tidings-test-secret-4f9a1c0e7b2d4a6f8e3c5b7d9a1f3e5c";

/// The key pairs of the hub library's tests, shared rather than duplicated.
pub const RSA_PRIVATE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/crates/tidings-hub/tests/fixtures/rsa_private.pem"
);
pub const RSA_PUBLIC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/crates/tidings-hub/tests/fixtures/rsa_public.pem"
);
pub const EC_PRIVATE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/crates/tidings-hub/tests/fixtures/ec_private.pem"
);
pub const EC_PUBLIC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/crates/tidings-hub/tests/fixtures/ec_public.pem"
);

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The claims of one token, built like `Token::new().sub("alice").subscribe(&["orders/*"])`.
/// Expires in an hour unless told otherwise.
#[derive(Debug, Clone)]
pub struct Token {
    sub: Option<String>,
    exp: i64,
    subscribe: Vec<String>,
    publish: Vec<String>,
    admin: bool,
}

impl Default for Token {
    fn default() -> Self {
        Token::new()
    }
}

impl Token {
    /// No subject, no permissions, valid for an hour.
    pub fn new() -> Token {
        Token {
            sub: None,
            exp: now() + 3600,
            subscribe: Vec::new(),
            publish: Vec::new(),
            admin: false,
        }
    }

    /// Sets the subject (the user id).
    pub fn sub(mut self, user: &str) -> Token {
        self.sub = Some(user.to_owned());
        self
    }

    /// Sets the `tidings.subscribe` patterns.
    pub fn subscribe(mut self, patterns: &[&str]) -> Token {
        self.subscribe = patterns.iter().map(|p| (*p).to_owned()).collect();
        self
    }

    /// Sets the `tidings.publish` patterns.
    pub fn publish(mut self, patterns: &[&str]) -> Token {
        self.publish = patterns.iter().map(|p| (*p).to_owned()).collect();
        self
    }

    /// Sets `tidings.admin: true`.
    pub fn admin(mut self) -> Token {
        self.admin = true;
        self
    }

    /// Expires `secs` seconds from now (negative: already expired).
    pub fn expires_in(mut self, secs: i64) -> Token {
        self.exp = now() + secs;
        self
    }

    /// The claims as JSON.
    pub fn claims(&self) -> Value {
        let mut claims = json!({
            "exp": self.exp,
            "tidings": {"subscribe": self.subscribe, "publish": self.publish, "admin": self.admin},
        });
        if let Some(sub) = &self.sub {
            claims["sub"] = json!(sub);
        }
        claims
    }

    /// HS256 with the test [`SECRET`].
    pub fn sign(&self) -> String {
        hs256(&self.claims(), SECRET.as_bytes())
    }

    /// RS256 with the test RSA private key.
    pub fn sign_rs256(&self) -> String {
        let pem = std::fs::read(RSA_PRIVATE).expect("read the RSA private key fixture");
        let key = EncodingKey::from_rsa_pem(&pem).expect("RSA private key fixture");
        encode(&Header::new(Algorithm::RS256), &self.claims(), &key).expect("sign RS256")
    }

    /// ES256 with the test EC P-256 private key.
    pub fn sign_es256(&self) -> String {
        let pem = std::fs::read(EC_PRIVATE).expect("read the EC private key fixture");
        let key = EncodingKey::from_ec_pem(&pem).expect("EC private key fixture");
        encode(&Header::new(Algorithm::ES256), &self.claims(), &key).expect("sign ES256")
    }
}

/// HS256 over arbitrary claims with an arbitrary secret.
pub fn hs256(claims: &Value, secret: &[u8]) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("sign HS256")
}

/// An unsigned token: header `{"alg":"none"}` and an empty signature.
pub fn alg_none(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.")
}

/// Algorithm confusion: HS256 whose secret is the hub's public key file, which a naive verifier
/// that takes the algorithm from the token would accept.
pub fn hs256_keyed_with(public_key_file: &str, claims: &Value) -> String {
    let pem = std::fs::read(public_key_file).expect("read a public key fixture");
    hs256(claims, &pem)
}

/// Tokens that must all be refused with 401 by a hub started with `--jwt-secret SECRET`,
/// each named for the failure message. Their claims would otherwise allow `**`.
pub fn hostile_tokens() -> Vec<(&'static str, String)> {
    let good = Token::new()
        .sub("mallory")
        .subscribe(&["**"])
        .publish(&["**"])
        .admin();
    let claims = good.claims();
    let with = |path: &[&str], value: Value| {
        let mut claims = claims.clone();
        let mut slot = &mut claims;
        for key in path {
            slot = &mut slot[*key];
        }
        *slot = value;
        hs256(&claims, SECRET.as_bytes())
    };
    let signed = good.sign();
    let (head, rest) = signed.split_once('.').expect("a JWT has dots");
    let (payload, _) = rest.split_once('.').expect("a JWT has two dots");
    vec![
        ("expired", good.clone().expires_in(-3600).sign()),
        (
            "wrong secret",
            hs256(&claims, b"not-the-secret-not-the-secret-000"),
        ),
        ("alg none", alg_none(&claims)),
        ("HS512 with the right secret", {
            let key = EncodingKey::from_secret(SECRET.as_bytes());
            encode(&Header::new(Algorithm::HS512), &claims, &key).expect("sign HS512")
        }),
        ("signature stripped", format!("{head}.{payload}.")),
        (
            "signature of another token",
            format!("{head}.{payload}.{}", {
                let other = Token::new().sign();
                other.rsplit('.').next().unwrap_or_default().to_owned()
            }),
        ),
        ("payload swapped under a valid signature", {
            let evil = URL_SAFE_NO_PAD.encode(
                json!({"exp": now() + 3600, "sub": "root",
                "tidings": {"subscribe": ["**"], "publish": ["**"], "admin": true}})
                .to_string(),
            );
            let sig = signed.rsplit('.').next().unwrap_or_default();
            format!("{head}.{evil}.{sig}")
        }),
        ("garbage", "garbage".to_owned()),
        ("three garbage segments", "a.b.c".to_owned()),
        ("not base64", "@@@.###.$$$".to_owned()),
        (
            "tidings claim is a string",
            with(&["tidings"], json!("all")),
        ),
        (
            "subscribe is a string",
            with(&["tidings", "subscribe"], json!("**")),
        ),
        (
            "publish is a number",
            with(&["tidings", "publish"], json!(7)),
        ),
        (
            "admin is a string",
            with(&["tidings", "admin"], json!("true")),
        ),
        ("sub is a number", with(&["sub"], json!(42))),
        ("exp is a string", with(&["exp"], json!("tomorrow"))),
    ]
}
