//! Credentials: who a request is, and what it may subscribe to and publish.
//!
//! Layout:
//! - this file: [`AuthConfig`] and the [`Authenticator`] built from it once at startup, which
//!   turns a bearer value into a [`Principal`] or an [`AuthError`];
//! - `principal`: the [`Principal`] and its permission checks;
//! - `claims`: the token claim format, read strictly on the way in and written by
//!   [`mint_hs256`] on the way out.
//!
//! A bearer value is, in this order: a static publish key (`--publish-key`, compared in
//! constant time), or a JWT: HS256 with `--jwt-secret`, RS256 with an RSA public
//! key or ES256 with an EC P-256 public key (`--jwt-public-key`). The algorithm named in the
//! token's header picks the key, and a key only ever verifies its own algorithms, so neither
//! `alg: none` nor an HMAC token "signed" with the public key can pass. Expiry is checked with
//! no leeway. A request without credentials is anonymous: it may subscribe to the
//! `--public-topic` patterns, or, in `--dev` mode, do anything.
//!
//! Errors never quote the token: they are answered to clients and may be logged.

mod claims;
mod principal;

use std::fmt;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::topic::Pattern;

pub use claims::{mint_hs256, MintError, TokenSpec};
pub use principal::{Principal, PrincipalKind};

/// The smallest RSA modulus accepted for RS256.
const MIN_RSA_BITS: usize = 2048;

/// Longer bearer values are refused before any decoding work.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// What the hub accepts as credentials. Built from `--jwt-secret`, `--jwt-public-key`,
/// `--publish-key`, `--public-topic` and `--dev`.
#[derive(Clone, Default)]
pub struct AuthConfig {
    /// HMAC secret for HS256 tokens.
    pub jwt_secret: Option<String>,
    /// The contents of a PEM public key file: RSA (for RS256) or EC P-256 (for ES256).
    pub jwt_public_key_pem: Option<Vec<u8>>,
    /// Static keys for server-side publishers.
    pub publish_keys: Vec<String>,
    /// Patterns every client, even anonymous, may subscribe to.
    pub public_topics: Vec<Pattern>,
    /// Anonymous requests may subscribe, publish and call admin endpoints.
    pub dev: bool,
    /// `--jwt-audience`: a token's `aud` must name one of these. Empty: a token with `aud`
    /// is refused (it was minted for some other service).
    pub audience: Vec<String>,
    /// `--jwt-issuer`: a token's `iss` must be one of these. Empty: a token with `iss` is
    /// refused, for the same reason.
    pub issuer: Vec<String>,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secrets stay out of logs: show only whether they are set.
        f.debug_struct("AuthConfig")
            .field(
                "jwt_secret",
                &self.jwt_secret.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "jwt_public_key_pem",
                &self.jwt_public_key_pem.as_ref().map(|_| "<pem>"),
            )
            .field(
                "publish_keys",
                &format_args!("[{} redacted]", self.publish_keys.len()),
            )
            .field("public_topics", &self.public_topics)
            .field("dev", &self.dev)
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .finish()
    }
}

/// A configuration the [`Authenticator`] cannot work with. Messages name the option to fix.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthConfigError {
    #[error("--jwt-secret is empty; use a long random string (32 bytes or more)")]
    EmptySecret,
    #[error("--publish-key is empty; use a long random string (32 bytes or more)")]
    EmptyPublishKey,
    #[error(
        "--jwt-public-key holds a private key; give the public key instead \
         (`openssl pkey -in KEY.pem -pubout`)"
    )]
    PrivateKey,
    #[error(
        "--jwt-public-key holds a certificate; give its public key instead \
         (`openssl x509 -in CERT.pem -pubkey -noout`)"
    )]
    Certificate,
    #[error("--jwt-public-key is not a PEM RSA or EC P-256 public key: {0}")]
    InvalidPublicKey(String),
    #[error("--jwt-public-key is an EC key on a curve other than P-256; ES256 needs P-256")]
    UnsupportedCurve,
    #[error("--jwt-public-key is a {bits}-bit RSA key; RS256 needs at least 2048 bits")]
    WeakRsaKey { bits: usize },
}

/// Why credentials were refused. Every variant is answered with 401.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// No credentials where they are needed (also an empty bearer value).
    #[error(
        "credentials required: send `Authorization: Bearer <token>`, the `access_token` \
         query parameter or the `tidings_token` cookie"
    )]
    Missing,
    #[error(
        "the credentials are neither a configured publish key nor a well-formed JWT \
         (header.claims.signature, base64url, at most 16 KiB)"
    )]
    Malformed,
    #[error("the token has expired; get a fresh one")]
    Expired,
    #[error("the token is not valid yet (its `nbf` claim is in the future)")]
    NotYetValid,
    #[error("the token's signature does not verify with the hub's key")]
    BadSignature,
    /// The header's `alg`, cut to 16 characters. `none`, or an algorithm no configured key
    /// verifies.
    #[error(
        "the token's algorithm {0:?} is not accepted: this hub verifies HS256 \
         with --jwt-secret, and RS256 or ES256 with --jwt-public-key, only when configured"
    )]
    UnsupportedAlgorithm(String),
    #[error("the token's claims are invalid: {0}")]
    BadClaims(String),
    #[error(
        "the credentials are not a configured publish key, and this hub verifies no tokens \
         (it has no --jwt-secret or --jwt-public-key)"
    )]
    NoKeyConfigured,
}

/// A public key with the one algorithm it verifies.
struct PublicKey {
    key: DecodingKey,
    validation: Validation,
}

/// Turns bearer values into principals. Built once; cheap to share (`Send + Sync`).
pub struct Authenticator {
    hmac: Option<(DecodingKey, Validation)>,
    public: Option<PublicKey>,
    publish_keys: Vec<Box<[u8]>>,
    public_topics: Vec<Pattern>,
    dev: bool,
    /// Whether `--jwt-issuer` is set (jsonwebtoken checks a configured issuer; a token with an
    /// `iss` and no configured issuer is refused here).
    checks_issuer: bool,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("hmac", &self.hmac.is_some())
            .field(
                "public_key",
                &self.public.as_ref().map(|p| p.validation.algorithms[0]),
            )
            .field("publish_keys", &self.publish_keys.len())
            .field("public_topics", &self.public_topics)
            .field("dev", &self.dev)
            .finish()
    }
}

/// Selects jsonwebtoken's RustCrypto backend for the process.
///
/// jsonwebtoken 11 picks a backend from its cargo features at first use, and panics on every
/// signature if both `rust_crypto` and `aws_lc_rs` end up enabled (features unify across the
/// dependency graph). Installing ours explicitly keeps that from ever reaching a request. If
/// an embedding application installed a provider first, that one stays.
pub(crate) fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = jsonwebtoken::crypto::CryptoProvider::install_default(
            &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER,
        );
    });
}

/// `aud` and `iss` rules on top of a key's validation: when configured, required and matched;
/// when not, jsonwebtoken already refuses any `aud`, and `iss` is refused after decoding.
fn with_audience_and_issuer(
    mut v: Validation,
    audience: &[String],
    issuer: &[String],
) -> Validation {
    if !audience.is_empty() {
        v.set_audience(audience);
        v.required_spec_claims.insert("aud".to_owned());
    }
    if !issuer.is_empty() {
        v.set_issuer(issuer);
        v.required_spec_claims.insert("iss".to_owned());
    }
    v
}

fn validation(algorithms: Vec<Algorithm>) -> Validation {
    let mut v = Validation::new(algorithms[0]);
    v.algorithms = algorithms;
    v.leeway = 0;
    // Checked only when present; `exp` is required (the default).
    v.validate_nbf = true;
    v
}

impl Authenticator {
    /// Checks the configuration and parses the keys.
    pub fn new(cfg: AuthConfig) -> Result<Self, AuthConfigError> {
        install_crypto_provider();
        let rules = |v| with_audience_and_issuer(v, &cfg.audience, &cfg.issuer);
        let hmac = match cfg.jwt_secret.as_deref() {
            None => None,
            Some("") => return Err(AuthConfigError::EmptySecret),
            Some(secret) => Some((
                DecodingKey::from_secret(secret.as_bytes()),
                rules(validation(vec![Algorithm::HS256])),
            )),
        };
        let public = cfg
            .jwt_public_key_pem
            .as_deref()
            .map(parse_public_key)
            .transpose()?
            .map(|p| PublicKey {
                validation: rules(p.validation),
                key: p.key,
            });
        if cfg.publish_keys.iter().any(String::is_empty) {
            return Err(AuthConfigError::EmptyPublishKey);
        }
        Ok(Authenticator {
            hmac,
            public,
            publish_keys: cfg
                .publish_keys
                .into_iter()
                .map(|k| k.into_bytes().into())
                .collect(),
            public_topics: cfg.public_topics,
            dev: cfg.dev,
            checks_issuer: !cfg.issuer.is_empty(),
        })
    }

    /// Who presents `token`: the raw bearer value, `None` when the request had no credentials.
    ///
    /// `None` never fails: it gives the anonymous principal (or the dev one), whose rights may
    /// be empty; a caller that needs more answers 401 with [`AuthError::Missing`].
    pub fn authenticate(&self, token: Option<&str>) -> Result<Principal, AuthError> {
        let Some(token) = token else {
            return Ok(if self.dev {
                Principal::dev()
            } else {
                Principal::anonymous(self.public_topics.clone())
            });
        };
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if self.is_publish_key(token.as_bytes()) {
            return Ok(Principal::publish_key(self.public_topics.clone()));
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Malformed);
        }
        let alg = header_alg(token)?;
        let (key, validation) = self.key_for(&alg)?;
        let data = jsonwebtoken::decode::<serde_json::Value>(token, key, validation)
            .map_err(|e| map_jwt_error(e.kind(), &alg))?;
        if !self.checks_issuer && data.claims.get("iss").is_some() {
            return Err(AuthError::BadClaims(
                "the token has an `iss` claim, and this hub trusts no issuer (--jwt-issuer); \
                 mint its tokens without `iss` or configure the issuer"
                    .into(),
            ));
        }
        let claims = claims::parse(data.claims)?;
        let mut subscribe = claims.subscribe;
        subscribe.extend(self.public_topics.iter().cloned());
        Ok(Principal {
            sub: claims.sub,
            exp: Some(claims.exp),
            subscribe,
            publish: claims.publish,
            admin: claims.admin,
            kind: PrincipalKind::Token,
        })
    }

    /// Every configured key is compared, each in time independent of its content.
    fn is_publish_key(&self, candidate: &[u8]) -> bool {
        self.publish_keys
            .iter()
            .fold(false, |found, key| found | ct_eq(key, candidate))
    }

    fn key_for(&self, alg: &str) -> Result<(&DecodingKey, &Validation), AuthError> {
        if self.hmac.is_none() && self.public.is_none() {
            return Err(AuthError::NoKeyConfigured);
        }
        let unsupported = || AuthError::UnsupportedAlgorithm(alg.chars().take(16).collect());
        let alg_parsed: Algorithm = alg.parse().map_err(|_| unsupported())?;
        let found = match alg_parsed {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                self.hmac.as_ref().map(|(k, v)| (k, v))
            }
            _ => self.public.as_ref().map(|p| (&p.key, &p.validation)),
        };
        match found {
            Some((key, validation)) if validation.algorithms.contains(&alg_parsed) => {
                Ok((key, validation))
            }
            _ => Err(unsupported()),
        }
    }
}

/// Compares a configured key with a candidate in constant time. Both are hashed first, so the
/// comparison (`subtle`) runs over two equal-length digests: the time taken says nothing about
/// the key's bytes, where the first difference is, or the key's length.
fn ct_eq(key: &[u8], candidate: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    if key.is_empty() {
        return false;
    }
    Sha256::digest(key).ct_eq(&Sha256::digest(candidate)).into()
}

/// Reads the `alg` of a JWT's header without trusting anything else in it, so that an
/// algorithm jsonwebtoken does not even parse (`none`) still gets its own error. A header
/// with `crit` is refused: it names extensions the token says must be understood, and this
/// hub understands none (RFC 7515 §4.1.11).
fn header_alg(token: &str) -> Result<String, AuthError> {
    #[derive(serde::Deserialize)]
    struct Header {
        alg: String,
        crit: Option<serde::de::IgnoredAny>,
    }
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed);
    };
    let json = base64url_decode(header.as_bytes()).ok_or(AuthError::Malformed)?;
    let header: Header = serde_json::from_slice(&json).map_err(|_| AuthError::Malformed)?;
    if header.crit.is_some() {
        return Err(AuthError::BadClaims(
            "the token's header has `crit`: this hub supports no critical header extensions".into(),
        ));
    }
    Ok(header.alg)
}

/// Decodes unpadded base64url (RFC 4648 §5), as JWTs use. `None` on any other byte or on
/// padding.
fn base64url_decode(s: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()
}

fn map_jwt_error(kind: &ErrorKind, alg: &str) -> AuthError {
    match kind {
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::MissingRequiredClaim(claim) => {
            AuthError::BadClaims(format!("the `{claim}` claim is required"))
        }
        ErrorKind::InvalidClaimFormat(claim) => AuthError::BadClaims(format!(
            "the `{claim}` claim must be a whole number of seconds since the Unix epoch"
        )),
        ErrorKind::InvalidAudience => AuthError::BadClaims(
            "the token's `aud` claim is not an audience this hub accepts (--jwt-audience; \
             without it, tokens must not carry `aud`)"
                .into(),
        ),
        ErrorKind::InvalidIssuer => AuthError::BadClaims(
            "the token's `iss` claim is not an issuer this hub trusts (--jwt-issuer)".into(),
        ),
        ErrorKind::InvalidAlgorithm | ErrorKind::UnsupportedAlgorithm => {
            AuthError::UnsupportedAlgorithm(alg.chars().take(16).collect())
        }
        // The keys were checked at startup, so a key error here means a signature that
        // cannot even be read as one.
        ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidRsaKey(_) | ErrorKind::InvalidKeyFormat => {
            AuthError::BadSignature
        }
        _ => AuthError::Malformed,
    }
}

/// Parses `--jwt-public-key`: an RSA key (PKCS#1 or SPKI) verifies RS256 only, an EC P-256
/// key (SPKI) ES256 only. The key is fully decoded here, so a bad file fails at startup rather
/// than as a "bad signature" on every request.
fn parse_public_key(pem: &[u8]) -> Result<PublicKey, AuthConfigError> {
    let text = String::from_utf8_lossy(pem);
    let Some(label) = text
        .split("-----BEGIN ")
        .nth(1)
        .and_then(|rest| rest.split("-----").next())
    else {
        return Err(AuthConfigError::InvalidPublicKey(
            "no PEM block found".into(),
        ));
    };
    if label.contains("PRIVATE KEY") {
        return Err(AuthConfigError::PrivateKey);
    }
    if label.contains("CERTIFICATE") {
        return Err(AuthConfigError::Certificate);
    }
    let provider = &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        let der = key.try_get_as_bytes().map_err(|e| invalid(&e))?;
        let (n, _e) = (provider.key_utils.rsa_pub_components_from_public_key)(der)
            .map_err(|e| invalid(&e))?;
        let bits = n.iter().skip_while(|&&b| b == 0).count() * 8;
        if bits < MIN_RSA_BITS {
            return Err(AuthConfigError::WeakRsaKey { bits });
        }
        return Ok(PublicKey {
            key,
            validation: validation(vec![Algorithm::RS256]),
        });
    }
    match DecodingKey::from_ec_pem(pem) {
        Ok(key) => {
            // An uncompressed SEC1 point: 0x04, then x and y of 32 bytes each on P-256.
            let point = key.try_get_as_bytes().map_err(|e| invalid(&e))?;
            if point.len() != 65 {
                return Err(AuthConfigError::UnsupportedCurve);
            }
            (provider.verifier_factory)(&Algorithm::ES256, &key).map_err(|e| invalid(&e))?;
            Ok(PublicKey {
                key,
                validation: validation(vec![Algorithm::ES256]),
            })
        }
        Err(e) => Err(invalid(&e)),
    }
}

fn invalid(e: &jsonwebtoken::errors::Error) -> AuthConfigError {
    AuthConfigError::InvalidPublicKey(e.to_string())
}

#[cfg(test)]
mod tests;
