//! Unit tests of credentials: every way a token is refused, each key type accepted, and the
//! permission checks. Keys come from `tests/fixtures` (test-only keys).

use super::*;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};

const SECRET: &str = "a-test-secret-that-is-long-enough-0123456789";
const RSA_PRIVATE: &[u8] = include_bytes!("../../tests/fixtures/rsa_private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("../../tests/fixtures/rsa_public.pem");
const RSA_PUBLIC_PKCS1: &[u8] = include_bytes!("../../tests/fixtures/rsa_public_pkcs1.pem");
const RSA_1024_PUBLIC: &[u8] = include_bytes!("../../tests/fixtures/rsa1024_public.pem");
const EC_PRIVATE: &[u8] = include_bytes!("../../tests/fixtures/ec_private.pem");
const EC_PUBLIC: &[u8] = include_bytes!("../../tests/fixtures/ec_public.pem");
const EC_P384_PUBLIC: &[u8] = include_bytes!("../../tests/fixtures/ec_p384_public.pem");
const EC_CERT: &[u8] = include_bytes!("../../tests/fixtures/ec_cert.pem");

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn pat(s: &str) -> Pattern {
    Pattern::parse(s).unwrap()
}

fn claims() -> Value {
    json!({
        "sub": "alice",
        "exp": now() + 3600,
        "tidings": {"subscribe": ["orders/*"], "publish": ["orders/**"], "admin": false}
    })
}

fn hs(alg: Algorithm, claims: &Value) -> String {
    install_crypto_provider();
    encode(
        &Header::new(alg),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn rs(alg: Algorithm, claims: &Value) -> String {
    install_crypto_provider();
    encode(
        &Header::new(alg),
        claims,
        &EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
    )
    .unwrap()
}

fn es(claims: &Value) -> String {
    install_crypto_provider();
    let key = EncodingKey::from_ec_pem(EC_PRIVATE).unwrap();
    encode(&Header::new(Algorithm::ES256), claims, &key).unwrap()
}

fn config(f: impl FnOnce(&mut AuthConfig)) -> AuthConfig {
    let mut cfg = AuthConfig::default();
    f(&mut cfg);
    cfg
}

fn with(f: impl FnOnce(&mut AuthConfig)) -> Authenticator {
    Authenticator::new(config(f)).unwrap()
}

fn secret_only() -> Authenticator {
    with(|c| c.jwt_secret = Some(SECRET.into()))
}

fn rsa_only() -> Authenticator {
    with(|c| c.jwt_public_key_pem = Some(RSA_PUBLIC.to_vec()))
}

fn ec_only() -> Authenticator {
    with(|c| c.jwt_public_key_pem = Some(EC_PUBLIC.to_vec()))
}

/// Authenticates and checks that the refusal does not quote the token.
fn refuse(auth: &Authenticator, token: &str) -> AuthError {
    let err = auth.authenticate(Some(token)).unwrap_err();
    let msg = err.to_string();
    for part in token.split('.').filter(|p| p.len() > 8) {
        assert!(!msg.contains(part), "message quotes the token: {msg}");
    }
    err
}

/// Replaces the claims part of a signed token, keeping its header and signature.
fn swap_claims(token: &str, other: &str) -> String {
    let t: Vec<&str> = token.split('.').collect();
    let o: Vec<&str> = other.split('.').collect();
    format!("{}.{}.{}", t[0], o[1], t[2])
}

#[test]
fn hs256_token_becomes_a_token_principal_with_its_claims() {
    let exp = now() + 3600;
    let mut c = claims();
    c["exp"] = json!(exp);
    let p = secret_only()
        .authenticate(Some(&hs(Algorithm::HS256, &c)))
        .unwrap();
    assert_eq!(p.kind, PrincipalKind::Token);
    assert_eq!(p.sub.as_deref(), Some("alice"));
    assert_eq!(p.exp, Some(exp));
    assert_eq!(p.subscribe, vec![pat("orders/*")]);
    assert_eq!(p.publish, vec![pat("orders/**")]);
    assert!(!p.admin && !p.is_anonymous());
}

#[test]
fn only_hs256_is_accepted_with_the_secret() {
    // The contract names HS256; other HMAC variants would only widen what a token may be.
    for alg in [Algorithm::HS384, Algorithm::HS512] {
        assert!(
            matches!(
                secret_only().authenticate(Some(&hs(alg, &claims()))),
                Err(AuthError::UnsupportedAlgorithm(_))
            ),
            "{alg:?}"
        );
    }
}

#[test]
fn rs256_is_accepted_with_an_rsa_public_key_in_spki_or_pkcs1_pem() {
    let token = rs(Algorithm::RS256, &claims());
    let p = rsa_only().authenticate(Some(&token)).unwrap();
    assert_eq!(p.sub.as_deref(), Some("alice"));
    let pkcs1 = with(|c| c.jwt_public_key_pem = Some(RSA_PUBLIC_PKCS1.to_vec()));
    assert!(pkcs1.authenticate(Some(&token)).is_ok());
}

#[test]
fn es256_is_accepted_with_a_p256_public_key() {
    let p = ec_only().authenticate(Some(&es(&claims()))).unwrap();
    assert_eq!(p.publish, vec![pat("orders/**")]);
}

#[test]
fn no_credentials_is_anonymous_with_only_public_topics() {
    let auth = with(|c| {
        c.jwt_secret = Some(SECRET.into());
        c.public_topics = vec![pat("news/**")];
    });
    let p = auth.authenticate(None).unwrap();
    assert!(p.is_anonymous());
    assert!(p.may_subscribe(&pat("news/sport")));
    assert!(p.may_subscribe(&pat("news/sport/**")));
    assert!(!p.may_subscribe(&pat("news")));
    assert!(!p.may_subscribe(&pat("**")));
    assert!(!p.may_publish_topic("news/x") && !p.may_broadcast() && !p.admin);
}

#[test]
fn an_empty_bearer_value_is_missing_credentials() {
    assert_eq!(
        secret_only().authenticate(Some("")).unwrap_err(),
        AuthError::Missing
    );
}

#[test]
fn garbage_is_malformed() {
    let auth = secret_only();
    let valid = hs(Algorithm::HS256, &claims());
    let long = "a".repeat(MAX_TOKEN_LEN + 1);
    for token in [
        "abc",
        "a.b",
        "a.b.c.d",
        "!!!.x.y",
        "eyJ.e30.x",
        &valid[1..],
        &long,
    ] {
        assert_eq!(refuse(&auth, token), AuthError::Malformed, "{token}");
    }
}

#[test]
fn an_expired_token_is_refused_without_leeway() {
    let mut c = claims();
    c["exp"] = json!(now() - 2);
    assert_eq!(
        refuse(&secret_only(), &hs(Algorithm::HS256, &c)),
        AuthError::Expired
    );
    assert_eq!(
        refuse(&rsa_only(), &rs(Algorithm::RS256, &c)),
        AuthError::Expired
    );
}

#[test]
fn a_token_before_its_nbf_is_refused() {
    let mut c = claims();
    c["nbf"] = json!(now() + 3600);
    assert_eq!(
        refuse(&secret_only(), &hs(Algorithm::HS256, &c)),
        AuthError::NotYetValid
    );
}

#[test]
fn tampered_claims_fail_the_signature_for_every_algorithm() {
    let mut admin = claims();
    admin["tidings"]["admin"] = json!(true);
    let cases = [
        (
            secret_only(),
            hs(Algorithm::HS256, &claims()),
            hs(Algorithm::HS256, &admin),
        ),
        (
            rsa_only(),
            rs(Algorithm::RS256, &claims()),
            rs(Algorithm::RS256, &admin),
        ),
        (ec_only(), es(&claims()), es(&admin)),
    ];
    for (auth, token, other) in cases {
        assert!(auth.authenticate(Some(&token)).is_ok());
        assert_eq!(
            refuse(&auth, &swap_claims(&token, &other)),
            AuthError::BadSignature
        );
    }
}

#[test]
fn a_token_signed_with_another_secret_is_a_bad_signature() {
    let auth = with(|c| c.jwt_secret = Some("another-secret".into()));
    assert_eq!(
        refuse(&auth, &hs(Algorithm::HS256, &claims())),
        AuthError::BadSignature
    );
}

#[test]
fn alg_none_is_refused_with_any_key() {
    let valid = hs(Algorithm::HS256, &claims());
    let payload = valid.split('.').nth(1).unwrap();
    // base64url of {"alg":"none","typ":"JWT"}
    let header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
    assert_eq!(
        base64url_decode(header.as_bytes()).unwrap(),
        br#"{"alg":"none","typ":"JWT"}"#
    );
    for auth in [secret_only(), rsa_only(), ec_only()] {
        for token in [
            format!("{header}.{payload}."),
            format!("{header}.{payload}.c2ln"),
        ] {
            assert_eq!(
                refuse(&auth, &token),
                AuthError::UnsupportedAlgorithm("none".into())
            );
        }
    }
}

#[test]
fn hmac_token_keyed_with_the_public_key_is_refused_when_only_a_public_key_is_set() {
    install_crypto_provider();
    for pem in [RSA_PUBLIC, EC_PUBLIC] {
        let token = encode(
            &Header::new(Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(pem),
        )
        .unwrap();
        let auth = with(|c| c.jwt_public_key_pem = Some(pem.to_vec()));
        assert_eq!(
            refuse(&auth, &token),
            AuthError::UnsupportedAlgorithm("HS256".into())
        );
    }
}

#[test]
fn public_key_algorithms_are_refused_when_only_a_secret_is_set() {
    let auth = secret_only();
    let rs256 = rs(Algorithm::RS256, &claims());
    assert_eq!(
        refuse(&auth, &rs256),
        AuthError::UnsupportedAlgorithm("RS256".into())
    );
    assert_eq!(
        refuse(&auth, &es(&claims())),
        AuthError::UnsupportedAlgorithm("ES256".into())
    );
}

#[test]
fn a_public_key_verifies_only_its_own_algorithm() {
    let rs384 = rs(Algorithm::RS384, &claims());
    assert_eq!(
        refuse(&rsa_only(), &rs384),
        AuthError::UnsupportedAlgorithm("RS384".into())
    );
    let ps256 = rs(Algorithm::PS256, &claims());
    assert_eq!(
        refuse(&rsa_only(), &ps256),
        AuthError::UnsupportedAlgorithm("PS256".into())
    );
    let es256 = es(&claims());
    assert_eq!(
        refuse(&rsa_only(), &es256),
        AuthError::UnsupportedAlgorithm("ES256".into())
    );
    let rs256 = rs(Algorithm::RS256, &claims());
    assert_eq!(
        refuse(&ec_only(), &rs256),
        AuthError::UnsupportedAlgorithm("RS256".into())
    );
}

#[test]
fn with_secret_and_public_key_the_header_alg_picks_the_key() {
    let auth = with(|c| {
        c.jwt_secret = Some(SECRET.into());
        c.jwt_public_key_pem = Some(RSA_PUBLIC.to_vec());
    });
    assert!(auth
        .authenticate(Some(&hs(Algorithm::HS256, &claims())))
        .is_ok());
    assert!(auth
        .authenticate(Some(&rs(Algorithm::RS256, &claims())))
        .is_ok());
    // HS256 keyed with the RSA public key is still checked against the secret.
    install_crypto_provider();
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(RSA_PUBLIC),
    )
    .unwrap();
    assert_eq!(refuse(&auth, &confused), AuthError::BadSignature);
    assert!(matches!(
        refuse(&auth, &es(&claims())),
        AuthError::UnsupportedAlgorithm(_)
    ));
}

#[test]
fn unknown_algorithm_names_are_cut_short_in_the_error() {
    // base64url of {"alg":"XX0123456789abcdefghij"}
    let header = "eyJhbGciOiJYWDAxMjM0NTY3ODlhYmNkZWZnaGlqIn0";
    let err = refuse(&secret_only(), &format!("{header}.e30.c2ln"));
    assert_eq!(
        err,
        AuthError::UnsupportedAlgorithm("XX0123456789abcd".into())
    );
}

#[test]
fn claims_of_the_wrong_shape_are_refused_with_the_claim_named() {
    let auth = secret_only();
    let exp = now() + 3600;
    let cases = [
        (
            json!({"exp": exp, "tidings": {"subscribe": "orders/*"}}),
            "tidings.subscribe",
        ),
        (
            json!({"exp": exp, "tidings": {"publish": {"a": 1}}}),
            "tidings.publish",
        ),
        (
            json!({"exp": exp, "tidings": {"subscribe": ["a", 7]}}),
            "tidings.subscribe[1]",
        ),
        (
            json!({"exp": exp, "tidings": {"admin": "true"}}),
            "tidings.admin",
        ),
        (json!({"exp": exp, "tidings": ["admin"]}), "`tidings`"),
        (
            json!({"exp": exp, "tidings": {"subcribe": ["a"]}}),
            "subcribe",
        ),
        (
            json!({"exp": exp, "tidings": {"publish": ["ord*"]}}),
            "tidings.publish[0]",
        ),
        (json!({"exp": exp, "sub": 42}), "`sub`"),
        (json!({"exp": exp, "sub": ""}), "`sub`"),
        (json!({"exp": exp.to_string()}), "`exp`"),
        (json!({"exp": exp as f64 + 0.5}), "`exp`"),
        (json!({"sub": "alice"}), "`exp`"),
        (json!({"exp": exp, "aud": "other-service"}), "`aud`"),
    ];
    for (claims, named) in cases {
        let err = refuse(&auth, &hs(Algorithm::HS256, &claims));
        let AuthError::BadClaims(msg) = &err else {
            panic!("{claims}: {err:?}")
        };
        assert!(msg.contains(named), "{claims}: {msg}");
    }
}

#[test]
fn a_token_without_the_tidings_claim_has_no_rights_but_public_topics() {
    let auth = with(|c| {
        c.jwt_secret = Some(SECRET.into());
        c.public_topics = vec![pat("news/**")];
    });
    let p = auth
        .authenticate(Some(&hs(Algorithm::HS256, &json!({"exp": now() + 60}))))
        .unwrap();
    assert_eq!(p.sub, None);
    assert_eq!(p.subscribe, vec![pat("news/**")]);
    assert!(p.publish.is_empty() && !p.admin);
    // Null fields count as absent.
    let nulls =
        json!({"exp": now() + 60, "sub": null, "tidings": {"subscribe": null, "admin": null}});
    assert!(auth
        .authenticate(Some(&hs(Algorithm::HS256, &nulls)))
        .is_ok());
}

#[test]
fn tokens_also_get_the_public_topics() {
    let auth = with(|c| {
        c.jwt_secret = Some(SECRET.into());
        c.public_topics = vec![pat("news/**")];
    });
    let p = auth
        .authenticate(Some(&hs(Algorithm::HS256, &claims())))
        .unwrap();
    assert!(p.may_subscribe(&pat("news/x")) && p.may_subscribe(&pat("orders/1")));
}

#[test]
fn a_jwt_with_no_key_configured_is_refused_as_such() {
    let auth = with(|c| c.publish_keys = vec!["server-key".into()]);
    assert_eq!(
        refuse(&auth, &hs(Algorithm::HS256, &claims())),
        AuthError::NoKeyConfigured
    );
}

#[test]
fn a_publish_key_publishes_everything_and_is_admin() {
    let auth = with(|c| {
        c.jwt_secret = Some(SECRET.into());
        c.publish_keys = vec!["key-one".into(), "key-two".into()];
        c.public_topics = vec![pat("news/**")];
    });
    for key in ["key-one", "key-two"] {
        let p = auth.authenticate(Some(key)).unwrap();
        assert_eq!(p.kind, PrincipalKind::PublishKey);
        assert!(p.admin && p.may_broadcast() && p.may_publish_topic("any/topic"));
        assert!(p.may_notify_user("alice") && p.may_notify_user("a/b"));
        assert!(p.may_subscribe(&pat("news/x")) && !p.may_subscribe(&pat("orders/1")));
        assert_eq!((p.sub, p.exp), (None, None));
    }
    for near in [
        "key-on",
        "key-onee",
        "KEY-ONE",
        "key-one ",
        "key-twokey-two",
    ] {
        assert_eq!(
            auth.authenticate(Some(near)).unwrap_err(),
            AuthError::Malformed,
            "{near}"
        );
    }
}

#[test]
fn constant_time_compare_is_plain_equality() {
    assert!(ct_eq(b"abc", b"abc"));
    for other in [&b"abd"[..], b"ab", b"abcabc", b"", b"ABC"] {
        assert!(!ct_eq(b"abc", other), "{other:?}");
    }
    assert!(!ct_eq(b"", b""));
}

#[test]
fn dev_mode_lets_anonymous_requests_do_everything_but_still_checks_tokens() {
    let auth = with(|c| {
        c.dev = true;
        c.jwt_secret = Some(SECRET.into());
    });
    let p = auth.authenticate(None).unwrap();
    assert_eq!(p.kind, PrincipalKind::Dev);
    assert!(!p.is_anonymous() && p.admin && p.may_broadcast());
    assert!(p.may_subscribe(&pat("**")) && p.may_publish_topic("a/b") && p.may_notify_user("u"));
    let mut c = claims();
    c["exp"] = json!(now() - 2);
    assert_eq!(refuse(&auth, &hs(Algorithm::HS256, &c)), AuthError::Expired);
}

#[test]
fn bad_configurations_are_refused_naming_the_option() {
    use AuthConfigError as E;
    let pem = |pem: &[u8]| config(|c| c.jwt_public_key_pem = Some(pem.to_vec()));
    let cases = [
        (
            config(|c| c.jwt_secret = Some(String::new())),
            E::EmptySecret,
        ),
        (
            config(|c| c.publish_keys = vec![String::new()]),
            E::EmptyPublishKey,
        ),
        (pem(RSA_PRIVATE), E::PrivateKey),
        (pem(EC_PRIVATE), E::PrivateKey),
        (pem(EC_CERT), E::Certificate),
        (pem(EC_P384_PUBLIC), E::UnsupportedCurve),
        (pem(RSA_1024_PUBLIC), E::WeakRsaKey { bits: 1024 }),
    ];
    for (cfg, want) in cases {
        let err = Authenticator::new(cfg).unwrap_err();
        assert_eq!(err, want);
        let msg = err.to_string();
        assert!(
            msg.contains("--jwt-") || msg.contains("--publish-key"),
            "{msg}"
        );
    }
    for garbage in [
        &b"not a key"[..],
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    ] {
        let err = Authenticator::new(pem(garbage)).unwrap_err();
        assert!(matches!(err, E::InvalidPublicKey(_)), "{err:?}");
    }
}

#[test]
fn debug_output_redacts_secrets() {
    let cfg = AuthConfig {
        jwt_secret: Some(SECRET.into()),
        publish_keys: vec!["server-key".into()],
        ..Default::default()
    };
    let shown = format!("{cfg:?} {:?}", Authenticator::new(cfg.clone()).unwrap());
    assert!(
        !shown.contains(SECRET) && !shown.contains("server-key"),
        "{shown}"
    );
}

#[test]
fn authenticator_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Authenticator>();
    check::<Principal>();
}

#[test]
fn base64url_decodes_every_tail_length_and_rejects_other_alphabets() {
    assert_eq!(base64url_decode(b"").unwrap(), b"");
    assert_eq!(base64url_decode(b"YQ").unwrap(), b"a");
    assert_eq!(base64url_decode(b"YWI").unwrap(), b"ab");
    assert_eq!(base64url_decode(b"YWJj").unwrap(), b"abc");
    assert_eq!(base64url_decode(b"-_8").unwrap(), [0xfb, 0xff]);
    for bad in [&b"Y"[..], b"YQ==", b"+/8", b"YW J"] {
        assert_eq!(base64url_decode(bad), None, "{bad:?}");
    }
}
