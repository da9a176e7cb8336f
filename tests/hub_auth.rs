//! Who may see and send what: isolation between users and topics, publish permissions per
//! target, publish keys, admin-only presence, and hostile tokens.

mod support;

use support::tokens::{hostile_tokens, hs256_keyed_with, EC_PUBLIC, RSA_PUBLIC};
use support::{events_path, json, q, Hub, Req, Token, Value, PUBLISH_KEY, SECRET, WAIT};

fn hub() -> Hub {
    Hub::start(&["--jwt-secret", SECRET, "--publish-key", PUBLISH_KEY])
}

#[tokio::test]
async fn user_a_never_receives_events_addressed_to_user_b() {
    let hub = hub();
    let alice = Token::new().sub("alice").subscribe(&["shared"]).sign();
    let bob = Token::new().sub("bob").sign();
    let mut alice_stream = hub
        .subscribe(Req::get("/events?topic=shared").bearer(&alice))
        .await;
    let mut bob_stream = hub.subscribe(Req::get("/events").bearer(&bob)).await;

    hub.post_ok("/notify/bob", &json!({"text": "notify bob"}))
        .await;
    hub.publish(&json!({"user": "bob", "text": "user bob"}))
        .await;
    hub.publish(&json!({"users": ["bob", "carol"], "text": "users bob carol"}))
        .await;
    // A user id that only looks like alice's must not reach her either.
    hub.post_ok("/notify/alice2", &json!({"text": "alice2"}))
        .await;
    hub.post_ok("/notify/Alice", &json!({"text": "Alice"}))
        .await;
    hub.post_ok("/notify/alice", &json!({"text": "sentinel"}))
        .await;

    alice_stream.expect_next_data("sentinel").await;
    for want in ["notify bob", "user bob", "users bob carol"] {
        assert_eq!(bob_stream.next_event(WAIT).await.data, want);
    }
}

#[tokio::test]
async fn a_client_never_receives_events_for_topics_its_token_does_not_allow() {
    let hub = hub();
    let token = Token::new().sub("alice").subscribe(&["orders/*"]).sign();
    let mut stream = hub
        .subscribe(Req::get("/events?topic=orders/*").bearer(&token))
        .await;
    for topic in [
        "secret",
        "orders",
        "orders/1/items",
        "users/alice",
        "broadcast",
    ] {
        hub.publish(&json!({"topic": topic, "text": topic})).await;
    }
    hub.publish(&json!({"topic": "orders/2", "text": "sentinel"}))
        .await;
    stream.expect_next_data("sentinel").await;
}

#[tokio::test]
async fn subscribing_wider_than_the_token_allows_is_forbidden() {
    let hub = hub();
    let orders = Token::new().sub("alice").subscribe(&["orders/*"]).sign();
    for pattern in ["orders/**", "**", "orders/*/x", "orders", "other", "*"] {
        hub.refused(Req::get(&events_path(&[pattern])).bearer(&orders))
            .await
            .expect_error(403, "forbidden");
    }
    // One forbidden pattern among allowed ones refuses the whole stream.
    hub.refused(Req::get(&events_path(&["orders/1", "secret"])).bearer(&orders))
        .await
        .expect_error(403, "forbidden");
    // Narrower is fine.
    hub.subscribe(Req::get(&events_path(&["orders/1", "orders/*"])).bearer(&orders))
        .await;

    let tenant = Token::new().subscribe(&["tenant/7/**"]).sign();
    for pattern in [
        "tenant/7/a",
        "tenant/7/a/*",
        "tenant/7/a/b/**",
        "tenant/7/**",
    ] {
        hub.subscribe(Req::get(&events_path(&[pattern])).bearer(&tenant))
            .await;
    }
    for pattern in ["tenant/7", "tenant/*/a", "tenant/**", "tenant/8/a"] {
        hub.refused(Req::get(&events_path(&[pattern])).bearer(&tenant))
            .await
            .expect_error(403, "forbidden");
    }
}

/// The status of `POST path` with this token and body.
async fn publish_status(hub: &Hub, token: &str, path: &str, body: Value) -> u16 {
    let reply = hub.send(Req::post(path).bearer(token).json(&body)).await;
    match reply.status {
        200 => {}
        403 => {
            reply.expect_error(403, "forbidden");
        }
        other => panic!("POST {path} {body}: unexpected {other}: {}", reply.text()),
    }
    reply.status
}

#[tokio::test]
async fn public_topics_are_open_to_token_holders_too() {
    let hub = Hub::start(&["--jwt-secret", SECRET, "--public-topic", "news"]);
    let token = Token::new().sub("alice").sign();
    hub.subscribe(Req::get("/events?topic=news").bearer(&token))
        .await;
    hub.refused(Req::get("/events?topic=secret").bearer(&token))
        .await
        .expect_error(403, "forbidden");
}

#[tokio::test]
async fn publish_users_wildcard_may_notify_any_user_but_no_topic() {
    let hub = hub();
    let token = Token::new().publish(&["users/*"]).sign();
    let text = json!({"text": "x"});
    assert_eq!(
        publish_status(&hub, &token, "/notify/alice", text.clone()).await,
        200
    );
    assert_eq!(
        publish_status(
            &hub,
            &token,
            "/publish",
            json!({"user": "bob", "text": "x"})
        )
        .await,
        200
    );
    let users = json!({"users": ["a", "b"], "text": "x"});
    assert_eq!(publish_status(&hub, &token, "/publish", users).await, 200);
    for topic in ["news", "users", "users/alice/x"] {
        let body = json!({"topic": topic, "text": "x"});
        assert_eq!(
            publish_status(&hub, &token, "/publish", body).await,
            403,
            "topic {topic}"
        );
    }
    assert_eq!(publish_status(&hub, &token, "/broadcast", text).await, 403);
}

#[tokio::test]
async fn publish_patterns_are_checked_per_target() {
    let hub = hub();
    let token = Token::new().publish(&["orders/*", "users/alice"]).sign();
    let ok = [
        json!({"topic": "orders/1", "text": "x"}),
        json!({"topics": ["orders/1", "orders/2"], "text": "x"}),
        json!({"topic": "orders/1", "user": "alice", "text": "x"}),
    ];
    for body in ok {
        assert_eq!(
            publish_status(&hub, &token, "/publish", body.clone()).await,
            200,
            "{body}"
        );
    }
    let forbidden = [
        json!({"topic": "orders/1/x", "text": "x"}),
        json!({"topics": ["orders/1", "secret"], "text": "x"}),
        json!({"topic": "orders/1", "user": "bob", "text": "x"}),
        json!({"users": ["alice", "bob"], "text": "x"}),
    ];
    for body in forbidden {
        assert_eq!(
            publish_status(&hub, &token, "/publish", body.clone()).await,
            403,
            "{body}"
        );
    }
    assert_eq!(
        publish_status(&hub, &token, "/notify/bob", json!({"text": "x"})).await,
        403
    );
    assert_eq!(
        publish_status(&hub, &token, "/notify/alice", json!({"text": "x"})).await,
        200
    );
}

#[tokio::test]
async fn a_publish_refused_for_one_target_reaches_no_target() {
    let hub = hub();
    let reader = Token::new().subscribe(&["**"]).sign();
    let mut stream = hub
        .subscribe(Req::get("/events?topic=**").bearer(&reader))
        .await;
    let token = Token::new().publish(&["orders/*"]).sign();
    let body = json!({"topics": ["orders/1", "secret"], "text": "must not arrive"});
    assert_eq!(publish_status(&hub, &token, "/publish", body).await, 403);
    let batch =
        json!([{"topic": "orders/1", "text": "must not arrive"}, {"topic": "secret", "text": "x"}]);
    assert_eq!(publish_status(&hub, &token, "/publish", batch).await, 403);
    hub.publish(&json!({"topic": "orders/1", "text": "sentinel"}))
        .await;
    stream.expect_next_data("sentinel").await;
}

#[tokio::test]
async fn broadcast_needs_the_broadcast_permission() {
    let hub = hub();
    let text = json!({"text": "x"});
    let broadcaster = Token::new().publish(&["broadcast"]).sign();
    assert_eq!(
        publish_status(&hub, &broadcaster, "/broadcast", text.clone()).await,
        200
    );
    let topic = json!({"topic": "news", "text": "x"});
    assert_eq!(
        publish_status(&hub, &broadcaster, "/publish", topic).await,
        403
    );
    let everything = Token::new().publish(&["**"]).sign();
    assert_eq!(
        publish_status(&hub, &everything, "/broadcast", text.clone()).await,
        200
    );
    let topics_only = Token::new().publish(&["news/*"]).sign();
    assert_eq!(
        publish_status(&hub, &topics_only, "/broadcast", text).await,
        403
    );
}

#[tokio::test]
async fn the_publish_key_may_publish_anything_and_call_admin_endpoints() {
    let hub = hub();
    hub.publish(&json!({"topic": "any/topic", "user": "anyone", "text": "x"}))
        .await;
    hub.post_ok("/notify/anyone", &json!({"text": "x"})).await;
    hub.post_ok("/broadcast", &json!({"text": "x"})).await;
    hub.send(Req::get("/clients").bearer(PUBLISH_KEY))
        .await
        .expect_status(200);
    for wrong in [
        "test-publish-key-7c1f",
        "test-publish-key-7c1",
        "",
        "TEST-PUBLISH-KEY-7C1E",
    ] {
        let body = json!({"topic": "t", "text": "x"});
        let reply = hub
            .send(Req::post("/publish").bearer(wrong).json(&body))
            .await;
        reply.expect_error(401, "unauthorized");
    }
}

#[tokio::test]
async fn publishing_without_credentials_is_unauthorized() {
    let hub = Hub::start(&["--jwt-secret", SECRET, "--public-topic", "**"]);
    let text = json!({"text": "x"});
    let topic = json!({"topic": "t", "text": "x"});
    for (path, body) in [
        ("/publish", &topic),
        ("/notify/alice", &text),
        ("/broadcast", &text),
    ] {
        hub.send(Req::post(path).json(body))
            .await
            .expect_error(401, "unauthorized");
    }
    // A subscribe token is not a publish permission.
    let reader = Token::new().sub("alice").subscribe(&["**"]).sign();
    let reply = hub
        .send(Req::post("/publish").bearer(&reader).json(&topic))
        .await;
    reply.expect_error(403, "forbidden");
}

#[tokio::test]
async fn clients_is_for_admins_only() {
    let hub = hub();
    hub.send(Req::get("/clients"))
        .await
        .expect_error(401, "unauthorized");
    let user = Token::new()
        .sub("alice")
        .subscribe(&["**"])
        .publish(&["**"])
        .sign();
    hub.send(Req::get("/clients").bearer(&user))
        .await
        .expect_error(403, "forbidden");
    let path = "/clients?user=alice";
    hub.send(Req::get(path).bearer(&user))
        .await
        .expect_error(403, "forbidden");
    let admin = Token::new().sub("root").admin().sign();
    hub.send(Req::get("/clients").bearer(&admin))
        .await
        .expect_status(200);
    hub.send(Req::get(path).bearer(&admin))
        .await
        .expect_status(200);
}

#[tokio::test]
async fn hostile_tokens_are_refused_and_the_hub_keeps_serving_others() {
    let hub = hub();
    let honest = Token::new().sub("alice").subscribe(&["t"]).sign();
    let mut stream = hub
        .subscribe(Req::get("/events?topic=t").bearer(&honest))
        .await;
    let mut accepted = Vec::new();
    for (name, token) in hostile_tokens() {
        let cookie = format!("tidings_token={token}");
        let streams = [
            ("header", Req::get("/events?topic=t").bearer(&token)),
            (
                "query",
                Req::get(&format!("/events?topic=t&access_token={}", q(&token))),
            ),
            (
                "cookie",
                Req::get("/events?topic=t").header("Cookie", &cookie),
            ),
        ];
        for (how, req) in streams {
            match hub.open(req).await {
                Ok(_) => accepted.push(format!("{name}: subscribe ({how}) accepted")),
                Err(reply) if reply.status == 401 => {
                    reply.expect_error(401, "unauthorized");
                }
                Err(reply) => accepted.push(format!("{name}: subscribe ({how}) {}", reply.status)),
            }
        }
        let body = json!({"topic": "t", "text": name});
        let calls = [
            ("publish", Req::post("/publish").bearer(&token).json(&body)),
            ("clients", Req::get("/clients").bearer(&token)),
        ];
        for (what, req) in calls {
            let reply = hub.send(req).await;
            if reply.status == 401 {
                reply.expect_error(401, "unauthorized");
            } else {
                accepted.push(format!("{name}: {what} answered {}", reply.status));
            }
        }
    }
    assert!(
        accepted.is_empty(),
        "hostile tokens not refused with 401:\n{}",
        accepted.join("\n")
    );
    // Nothing any of them tried was published, and the honest stream still works.
    hub.publish(&json!({"topic": "t", "text": "sentinel"}))
        .await;
    stream.expect_next_data("sentinel").await;
}

#[tokio::test]
async fn an_rs256_hub_accepts_its_key_and_refuses_algorithm_confusion() {
    let hub = Hub::start(&["--jwt-public-key", RSA_PUBLIC, "--publish-key", PUBLISH_KEY]);
    let token = Token::new().sub("alice").subscribe(&["t"]);
    // The legitimate token works, so the refusals below are about the algorithm.
    hub.subscribe(Req::get("/events?topic=t").bearer(&token.sign_rs256()))
        .await;
    let confused = hs256_keyed_with(RSA_PUBLIC, &token.claims());
    let refused = [
        ("HS256 keyed with the public key", confused),
        ("HS256 with the default secret", token.sign()),
        ("ES256 from another key", token.sign_es256()),
        ("alg none", support::tokens::alg_none(&token.claims())),
    ];
    for (name, bad) in refused {
        let reply = hub.refused(Req::get("/events?topic=t").bearer(&bad)).await;
        assert_eq!(reply.status, 401, "{name}: {}", reply.text());
        reply.expect_error(401, "unauthorized");
    }
}

#[tokio::test]
async fn an_es256_hub_accepts_its_key_and_refuses_algorithm_confusion() {
    let hub = Hub::start(&["--jwt-public-key", EC_PUBLIC, "--publish-key", PUBLISH_KEY]);
    let token = Token::new().sub("alice").subscribe(&["t"]);
    hub.subscribe(Req::get("/events?topic=t").bearer(&token.sign_es256()))
        .await;
    let refused = [
        (
            "HS256 keyed with the public key",
            hs256_keyed_with(EC_PUBLIC, &token.claims()),
        ),
        ("RS256 from another key", token.sign_rs256()),
    ];
    for (name, bad) in refused {
        let reply = hub.refused(Req::get("/events?topic=t").bearer(&bad)).await;
        assert_eq!(reply.status, 401, "{name}: {}", reply.text());
        reply.expect_error(401, "unauthorized");
    }
}

#[tokio::test]
async fn the_first_credential_found_decides_header_then_query_then_cookie() {
    let hub = hub();
    let good = Token::new().subscribe(&["t"]).sign();
    let bad = "garbage";
    // A bad header is not rescued by a good query token or cookie.
    let path = format!("/events?topic=t&access_token={}", q(&good));
    let cookie = format!("tidings_token={good}");
    let reply = hub
        .refused(Req::get(&path).bearer(bad).header("Cookie", &cookie))
        .await;
    reply.expect_error(401, "unauthorized");
    // A good header wins over a bad query token.
    let path = format!("/events?topic=t&access_token={bad}");
    hub.subscribe(Req::get(&path).bearer(&good)).await;
    // A good query token wins over a bad cookie.
    let path = format!("/events?topic=t&access_token={}", q(&good));
    hub.subscribe(Req::get(&path).header("Cookie", "tidings_token=garbage"))
        .await;
}
