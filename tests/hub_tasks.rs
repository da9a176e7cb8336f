//! Progress of long tasks (`POST /tasks`, `POST /tasks/{id}`, `GET /tasks/{id}`,
//! `GET /tasks?user=`) and presence (`GET /presence/{user}`), through the real hub: every rule,
//! the late-join snapshot, resume, permissions, retention, and durability across `kill -9`.

mod support;

use std::time::{Duration, Instant};

use support::{events_path, json, Hub, Req, SseStream, Token, Value, PUBLISH_KEY, WAIT};

async fn post(hub: &Hub, path: &str, body: &Value) -> support::Response {
    hub.send(Req::post(path).bearer(PUBLISH_KEY).json(body))
        .await
}

async fn create(hub: &Hub, body: &Value) -> Value {
    let reply = post(hub, "/tasks", body).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    reply.json()
}

async fn update(hub: &Hub, id: &str, body: &Value) -> support::Response {
    post(hub, &format!("/tasks/{id}"), body).await
}

fn task_id(v: &Value) -> String {
    v["taskId"].as_str().expect("taskId").to_owned()
}

async fn next_progress(stream: &mut SseStream) -> (String, Value) {
    let e = stream.next_event(WAIT).await;
    assert_eq!(e.event, "progress", "{e:?}");
    (
        e.id.clone(),
        serde_json::from_str(&e.data).expect("JSON data"),
    )
}

#[tokio::test]
async fn a_task_reports_progress_to_its_topic_by_the_rules() {
    let hub = Hub::standard(&[]);
    let mut s = hub.subscribe(Req::get(&events_path(&["jobs/*"]))).await;
    let task = create(&hub, &json!({"topic": "jobs/1", "message": "queued"})).await;
    let id = task_id(&task);
    assert_eq!(
        (task["status"].as_str(), task["progress"].as_u64()),
        (Some("pending"), Some(0))
    );
    let (first_id, first) = next_progress(&mut s).await;
    assert_eq!(
        first,
        json!({"taskId": id, "progress": 0, "status": "pending", "message": "queued"})
    );
    assert!(
        !first_id.is_empty(),
        "a progress event has an id like any event"
    );

    let r = update(&hub, &id, &json!({"progress": 40, "message": "half way"})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (_, d) = next_progress(&mut s).await;
    assert_eq!(
        (d["progress"].as_u64(), d["status"].as_str()),
        (Some(40), Some("running"))
    );

    // The rules.
    let back = update(&hub, &id, &json!({"progress": 39})).await;
    assert_eq!(
        back.status,
        400,
        "progress never goes back: {}",
        back.text()
    );
    assert_eq!(
        update(&hub, &id, &json!({"progress": 101})).await.status,
        400
    );
    assert_eq!(
        update(&hub, &id, &json!({"progress": "50"})).await.status,
        400
    );
    assert_eq!(
        update(&hub, &id, &json!({"status": "pending"}))
            .await
            .status,
        400,
        "running cannot go back to pending"
    );
    assert_eq!(
        update(&hub, &id, &json!({"status": "paused"})).await.status,
        400
    );
    assert_eq!(
        update(&hub, &id, &json!({"progress": 50, "colour": 1}))
            .await
            .status,
        400,
        "unknown fields"
    );
    assert_eq!(
        update(&hub, "t_nope", &json!({"progress": 1})).await.status,
        404
    );

    let done = update(
        &hub,
        &id,
        &json!({"status": "completed", "result": {"url": "/files/1"}}),
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.text());
    let (_, d) = next_progress(&mut s).await;
    assert_eq!(
        d,
        json!({"taskId": id, "progress": 100, "status": "completed", "message": "half way", "result": {"url": "/files/1"}})
    );
    let again = update(&hub, &id, &json!({"progress": 100})).await;
    assert_eq!(again.status, 409, "{}", again.text());

    let got = hub
        .send(Req::get(&format!("/tasks/{id}")).bearer(PUBLISH_KEY))
        .await
        .ok_json();
    assert_eq!(
        (got["status"].as_str(), got["progress"].as_u64()),
        (Some("completed"), Some(100))
    );
    assert_eq!(got["result"], json!({"url": "/files/1"}));

    // A task needs somewhere to report; creation is validated.
    assert_eq!(post(&hub, "/tasks", &json!({})).await.status, 400);
    assert_eq!(
        post(&hub, "/tasks", &json!({"topic": "a/*"})).await.status,
        400
    );
    assert_eq!(post(&hub, "/tasks", &json!("nope")).await.status, 400);
    assert_eq!(
        post(&hub, "/tasks", &json!({"topic": "$tasks"}))
            .await
            .status,
        400
    );
}

#[tokio::test]
async fn a_late_subscriber_first_gets_the_state_of_each_live_task_it_may_see() {
    let hub = Hub::standard(&[]);
    let a = task_id(&create(&hub, &json!({"topic": "jobs/a"})).await);
    let b = task_id(&create(&hub, &json!({"topic": "jobs/b"})).await);
    let other = task_id(&create(&hub, &json!({"topic": "elsewhere"})).await);
    let finished = task_id(&create(&hub, &json!({"topic": "jobs/c"})).await);
    update(&hub, &a, &json!({"progress": 30})).await.ok_json();
    update(&hub, &a, &json!({"progress": 60})).await.ok_json();
    update(
        &hub,
        &finished,
        &json!({"status": "failed", "message": "no"}),
    )
    .await
    .ok_json();
    let _ = other;

    let mut s = hub.subscribe(Req::get(&events_path(&["jobs/*"]))).await;
    let mut seen = Vec::new();
    for _ in 0..2 {
        let e = s.next_event(WAIT).await;
        assert_eq!(e.event, "progress");
        assert_eq!(
            e.id, "",
            "a snapshot does not move the client's position: {e:?}"
        );
        seen.push(serde_json::from_str::<Value>(&e.data).unwrap());
    }
    // In the order of their latest update: `b` (created) before `a` (updated since).
    assert_eq!(seen[0]["taskId"], b.as_str(), "{seen:?}");
    assert_eq!(seen[1]["taskId"], a.as_str(), "{seen:?}");
    assert_eq!(seen[1]["progress"], 60, "the newest state, once");
    // Then live events, nothing else (no finished task, no task it may not see).
    hub.publish(&json!({"topic": "jobs/x", "data": "live"}))
        .await;
    assert_eq!(s.next_event(WAIT).await.data, "\"live\"");
}

#[tokio::test]
async fn a_resume_replays_progress_and_snapshots_only_what_the_replay_does_not_cover() {
    let hub = Hub::standard(&[]);
    let early = task_id(&create(&hub, &json!({"topic": "jobs/early"})).await);
    let mut s = hub.subscribe(Req::get(&events_path(&["jobs/*"]))).await;
    let (pos, _) = next_progress(&mut s).await; // its snapshot has no id; skip to the live ones
    let _ = pos;
    let late = task_id(&create(&hub, &json!({"topic": "jobs/late"})).await);
    let (late_created, _) = next_progress(&mut s).await;
    drop(s);
    update(&hub, &late, &json!({"progress": 10}))
        .await
        .ok_json();
    let mut resumed = hub
        .subscribe(Req::get(&events_path(&["jobs/*"])).header("Last-Event-ID", &late_created))
        .await;
    // `early` was last updated before the resume position: its state comes as a snapshot.
    let e = resumed.next_event(WAIT).await;
    assert_eq!((e.event.as_str(), e.id.as_str()), ("progress", ""), "{e:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&e.data).unwrap()["taskId"],
        early.as_str()
    );
    // `late` changed after it: the replay brings that update, with its id.
    let (id, d) = next_progress(&mut resumed).await;
    assert!(!id.is_empty());
    assert_eq!(
        (d["taskId"].as_str(), d["progress"].as_u64()),
        (Some(late.as_str()), Some(10))
    );
}

#[tokio::test]
async fn task_permissions_follow_the_targets() {
    // No public topics: reading a task takes a permission of one's own.
    let hub = Hub::start(&[
        "--jwt-secret",
        support::SECRET,
        "--publish-key",
        PUBLISH_KEY,
    ]);
    let worker = Token::new()
        .sub("worker")
        .publish(&["jobs/*", "users/*"])
        .sign();
    let outsider = Token::new()
        .sub("mallory")
        .subscribe(&["public/*"])
        .publish(&["public/*"])
        .sign();
    let alice = Token::new().sub("alice").subscribe(&["public/*"]).sign();

    let created = hub
        .send(
            Req::post("/tasks")
                .bearer(&worker)
                .json(&json!({"user": "alice", "topic": "jobs/9"})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let id = task_id(&created.json());
    let denied = hub
        .send(
            Req::post("/tasks")
                .bearer(&outsider)
                .json(&json!({"topic": "jobs/9"})),
        )
        .await;
    assert_eq!(
        denied.status, 403,
        "creating needs publish permission on every target"
    );
    let denied = hub
        .send(
            Req::post(&format!("/tasks/{id}"))
                .bearer(&outsider)
                .json(&json!({"progress": 5})),
        )
        .await;
    assert_eq!(denied.status, 403, "updating too");
    assert_eq!(
        hub.send(Req::post("/tasks").json(&json!({"topic": "jobs/1"})))
            .await
            .status,
        401,
        "no credentials"
    );

    // Reading: its user, a subscriber of its topic, an admin; nobody else learns it exists.
    let get = |token: &str| Req::get(&format!("/tasks/{id}")).bearer(token);
    assert_eq!(hub.send(get(&alice)).await.status, 200, "its user");
    assert_eq!(hub.send(get(&outsider)).await.status, 404);
    assert_eq!(hub.send(get(PUBLISH_KEY)).await.status, 200, "admin");
    let list = hub
        .send(Req::get("/tasks?user=alice").bearer(&alice))
        .await
        .ok_json();
    assert_eq!(list["tasks"][0]["taskId"], id.as_str());
    assert_eq!(
        hub.send(Req::get("/tasks?user=alice").bearer(&outsider))
            .await
            .status,
        403
    );

    // A user-only task reaches that user and no `**` subscriber.
    let t = hub
        .send(
            Req::post("/tasks")
                .bearer(&worker)
                .json(&json!({"user": "alice"})),
        )
        .await;
    assert_eq!(t.status, 201);
    let private = task_id(&t.json());
    let spy = Token::new().sub("spy").subscribe(&["**"]).sign();
    let mut spy_stream = hub
        .subscribe(Req::get("/events?topic=**").bearer(&spy))
        .await;
    let mut alice_stream = hub.subscribe(Req::get("/events").bearer(&alice)).await;
    let e = alice_stream.next_event(WAIT).await;
    assert_eq!(e.event, "progress", "alice gets her task's state: {e:?}");
    hub.publish(&json!({"topic": "public/x", "data": "sentinel"}))
        .await;
    // The spy may see the first task (its topic matches `**`), never alice's user-only one.
    let (before, _) = spy_stream
        .events_until(WAIT, |e| e.data == "\"sentinel\"")
        .await;
    for e in before {
        assert!(
            !e.data.contains(&private),
            "a user-only task leaked to `**`: {e:?}"
        );
        assert!(e.data.contains(&id), "{e:?}");
    }
    // `$tasks` is the hub's own: no one subscribes to it.
    let refused = hub
        .refused(Req::get("/events?topic=$tasks").bearer(PUBLISH_KEY))
        .await;
    assert_eq!(refused.status, 403);
}

#[tokio::test]
async fn finished_tasks_are_dropped_after_their_retention() {
    let hub = Hub::standard(&["--task-retention", "1s"]);
    let id = task_id(&create(&hub, &json!({"topic": "jobs/r"})).await);
    let kept = task_id(&create(&hub, &json!({"topic": "jobs/k", "ttl": 3600})).await);
    update(&hub, &id, &json!({"status": "completed"}))
        .await
        .ok_json();
    update(&hub, &kept, &json!({"status": "completed"}))
        .await
        .ok_json();
    let deadline = Instant::now() + WAIT;
    loop {
        let status = hub
            .send(Req::get(&format!("/tasks/{id}")).bearer(PUBLISH_KEY))
            .await
            .status;
        if status == 404 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a finished task outlived --task-retention"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        hub.send(Req::get(&format!("/tasks/{kept}")).bearer(PUBLISH_KEY))
            .await
            .status,
        200,
        "a task's own ttl wins"
    );
}

#[tokio::test]
async fn live_tasks_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--publish-key", PUBLISH_KEY, "--public-topic", "**"];
    let mut hub = Hub::start_on_disk_binary(dir.path(), &args);
    let id = task_id(&create(&hub, &json!({"topic": "jobs/d", "message": "start"})).await);
    update(&hub, &id, &json!({"progress": 70})).await.ok_json();
    hub.kill9();
    let hub = Hub::start_on_disk_binary(dir.path(), &args);
    let got = hub
        .send(Req::get(&format!("/tasks/{id}")).bearer(PUBLISH_KEY))
        .await
        .ok_json();
    assert_eq!(
        (got["progress"].as_u64(), got["status"].as_str()),
        (Some(70), Some("running"))
    );
    assert_eq!(
        update(&hub, &id, &json!({"progress": 60})).await.status,
        400,
        "the recovered state still rules"
    );
    let mut s = hub.subscribe(Req::get(&events_path(&["jobs/*"]))).await;
    let e = s.next_event(WAIT).await;
    assert_eq!(
        serde_json::from_str::<Value>(&e.data).unwrap()["progress"],
        70,
        "late join after a restart"
    );
    update(&hub, &id, &json!({"status": "completed"}))
        .await
        .ok_json();
}

#[tokio::test]
async fn presence_tells_whether_a_user_is_online() {
    let hub = Hub::standard(&[]);
    let bob = Token::new().sub("bob").subscribe(&["x"]).sign();
    let eve = Token::new().sub("eve").subscribe(&["x"]).sign();
    let offline = hub
        .send(Req::get("/presence/bob").bearer(&bob))
        .await
        .ok_json();
    assert_eq!(offline["online"], false);
    assert_eq!(offline["connections"], 0);
    let s1 = hub.subscribe(Req::get("/events").bearer(&bob)).await;
    let s2 = hub.subscribe(Req::get("/events").bearer(&bob)).await;
    let online = hub
        .send(Req::get("/presence/bob").bearer(PUBLISH_KEY))
        .await
        .ok_json();
    assert_eq!(
        (online["online"].as_bool(), online["connections"].as_u64()),
        (Some(true), Some(2))
    );
    assert!(online["since"].as_u64().is_some(), "{online}");
    assert_eq!(
        hub.send(Req::get("/presence/bob").bearer(&eve))
            .await
            .status,
        403,
        "only bob or an admin"
    );
    drop((s1, s2));
    let deadline = Instant::now() + WAIT;
    while hub
        .send(Req::get("/presence/bob").bearer(&bob))
        .await
        .ok_json()["online"]
        != false
    {
        assert!(Instant::now() < deadline, "bob never went offline");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_command_line_creates_updates_and_reads_a_task() {
    let hub = Hub::standard(&[]);
    let url = format!("http://{}", hub.addr());
    let run = |args: &[&str]| {
        let out = std::process::Command::new(support::hub::BINARY)
            .arg("task")
            .args(args)
            .args(["--url", &url, "--token", PUBLISH_KEY])
            .output()
            .expect("tidings task runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = run(&["create", "--topic", "jobs/cli", "--message", "hi"]);
    assert!(ok, "{err}");
    let id = task_id(&serde_json::from_str(&out).expect("JSON"));
    let (ok, _, err) = run(&["update", &id, "--progress", "50"]);
    assert!(ok, "{err}");
    let (ok, _, err) = run(&["update", &id, "--progress", "10"]);
    assert!(!ok, "backwards progress fails");
    assert!(err.contains("never goes back"), "{err}");
    let (ok, _, err) = run(&[
        "update",
        &id,
        "--status",
        "completed",
        "--result",
        "{\"n\":1}",
    ]);
    assert!(ok, "{err}");
    let (ok, out, _) = run(&["get", &id]);
    assert!(ok);
    let got: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(
        (got["status"].as_str(), got["result"]["n"].as_u64()),
        (Some("completed"), Some(1))
    );
}
