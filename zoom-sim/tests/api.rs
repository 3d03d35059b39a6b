//! The REST surface beyond users/me, the per-app api_url, and the rate-limit mode.

mod common;

use serde_json::{json, Value};

use common::{app, get_json, http, json_of, ok, post_json, str_of};
use zoom_sim::server::{start, RunningServer, ServeOptions};

async fn sim() -> RunningServer {
    start(ServeOptions {
        apps: vec![
            app("kind=s2s,client_id=s2s,client_secret=sec,account_id=ACC,user_id=OWNER,email=owner@example.com,api_url=https://api-eu.zoom.us/"),
            app("kind=s2s,client_id=other,client_secret=sec,account_id=ACC2"),
        ],
        ..ServeOptions::default()
    })
    .await
    .expect("server starts")
}

async fn token(base: &str, client_id: &str, account: &str) -> Value {
    let (status, body) = json_of(
        http()
            .post(format!("{base}/oauth/token"))
            .basic_auth(client_id, Some("sec"))
            .form(&[
                ("grant_type", "account_credentials"),
                ("account_id", account),
            ])
            .send()
            .await
            .expect("token"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn get(base: &str, path: &str, bearer: &str) -> reqwest::Response {
    http()
        .get(format!("{base}{path}"))
        .bearer_auth(bearer)
        .send()
        .await
        .expect("api request")
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn config(base: &str, body: Value) -> Value {
    ok(post_json(base, "/sim/config", body).await)
}

#[tokio::test]
async fn regional_api_url_per_app() {
    let srv = sim().await;
    let base = srv.base_url();
    assert_eq!(
        token(&base, "s2s", "ACC").await["api_url"],
        "https://api-eu.zoom.us"
    );
    assert_eq!(
        token(&base, "other", "ACC2").await["api_url"],
        base.as_str()
    );
    let apps: Value = ok(get_json(&base, "/sim/apps", None).await);
    let listed = apps["apps"].as_array().expect("apps");
    assert!(
        listed
            .iter()
            .any(|a| a["api_url"] == "https://api-eu.zoom.us"),
        "{apps}"
    );
    assert!(
        listed.iter().all(|a| a.get("verification_token").is_none()),
        "no secrets in the listing: {apps}"
    );
}

#[tokio::test]
async fn users_by_id_and_meetings_list() {
    let srv = sim().await;
    let base = srv.base_url();
    let access = str_of(&token(&base, "s2s", "ACC").await, "access_token");

    for id in ["OWNER", "owner@example.com"] {
        let (status, user) = get_json(&base, &format!("/v2/users/{id}"), Some(&access)).await;
        assert_eq!(
            (status, &user["id"]),
            (200, &json!("OWNER")),
            "{id}: {user}"
        );
    }
    let (status, err) = get_json(&base, "/v2/users/someone-else", Some(&access)).await;
    assert_eq!((status, &err["code"]), (404, &json!(1001)), "{err}");

    for path in [
        "/v2/users/me/meetings",
        "/v2/users/OWNER/meetings?page_size=300",
    ] {
        let (status, list) = get_json(&base, path, Some(&access)).await;
        assert_eq!(status, 200, "{list}");
        assert_eq!(list["meetings"], json!([]));
        assert_eq!(list["total_records"], 0);
        assert!(list["next_page_token"].is_string());
    }
    let (status, err) = get_json(&base, "/v2/users/me/meetings?page_size=0", Some(&access)).await;
    assert_eq!((status, &err["code"]), (400, &json!(300)));
    let (status, err) = get_json(&base, "/v2/users/x/meetings", Some(&access)).await;
    assert_eq!((status, &err["code"]), (404, &json!(1001)));
    let (status, err) = get_json(&base, "/v2/users/OWNER", Some("nope")).await;
    assert_eq!((status, &err["code"]), (401, &json!(124)));

    let stats: Value = ok(get_json(&base, "/sim/stats?client_id=s2s", None).await);
    assert_eq!(stats["api_requests"], 7, "{stats}");
}

#[tokio::test]
async fn rate_limit_mode_answers_like_zoom() {
    let srv = sim().await;
    let base = srv.base_url();
    let access = str_of(&token(&base, "s2s", "ACC").await, "access_token");

    // Off by default: no X-RateLimit headers.
    let resp = get(&base, "/v2/users/me", &access).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-ratelimit-category"), None);

    let cfg = config(
        &base,
        json!({"rate_limit": {"enabled": true, "light": {"rate": 2}}}),
    )
    .await;
    assert_eq!(cfg["rate_limit"]["light"]["rate"], 2, "{cfg}");
    assert_eq!(
        cfg["rate_limit"]["medium"]["rate"], 20,
        "defaults kept: {cfg}"
    );

    let mut remaining = Vec::new();
    for _ in 0..2 {
        let resp = get(&base, "/v2/users/me", &access).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(
            header(&resp, "x-ratelimit-category").as_deref(),
            Some("Light")
        );
        assert_eq!(header(&resp, "x-ratelimit-limit").as_deref(), Some("2"));
        remaining.push(header(&resp, "x-ratelimit-remaining").expect("remaining"));
    }
    assert_eq!(remaining, ["1", "0"]);
    let resp = get(&base, "/v2/users/me", &access).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(header(&resp, "x-ratelimit-type").as_deref(), Some("QPS"));
    assert_eq!(
        header(&resp, "x-ratelimit-category").as_deref(),
        Some("Light")
    );
    assert_eq!(header(&resp, "x-ratelimit-remaining").as_deref(), Some("0"));
    let after: u64 = header(&resp, "retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=2).contains(&after), "{after}");
    let (_, body) = json_of(resp).await;
    assert_eq!(body["code"], 429);
    assert!(body["message"]
        .as_str()
        .is_some_and(|m| m.contains("per-second")));

    // Another category has its own bucket.
    assert_eq!(
        get(&base, "/v2/users/me/meetings", &access).await.status(),
        200
    );
    // Another account has its own bucket.
    let other = str_of(&token(&base, "other", "ACC2").await, "access_token");
    assert_eq!(get(&base, "/v2/users/me", &other).await.status(), 200);

    // Daily limits: Retry-After is the next 00:00 UTC as an ISO date; the clock resets them.
    config(
        &base,
        json!({"rate_limit": {"enabled": true, "light": {"rate": 100, "daily": 1}}}),
    )
    .await;
    let resp = get(&base, "/v2/users/me", &access).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-ratelimit-limit").as_deref(), Some("1"));
    let resp = get(&base, "/v2/users/me", &access).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(
        header(&resp, "x-ratelimit-type").as_deref(),
        Some("Daily-limit")
    );
    let date = header(&resp, "retry-after").expect("Retry-After date");
    assert!(date.ends_with("T00:00:00Z"), "{date}");
    assert!(date.parse::<jiff::Timestamp>().is_ok(), "{date}");
    let (_, body) = json_of(resp).await;
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("daily rate limit (1)")),
        "{body}"
    );

    // The variant without Retry-After.
    config(
        &base,
        json!({"rate_limit": {"enabled": true, "retry_after": false, "light": {"rate": 1, "daily": 1}}}),
    )
    .await;
    assert_eq!(get(&base, "/v2/users/me", &access).await.status(), 200);
    let resp = get(&base, "/v2/users/me", &access).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(header(&resp, "retry-after"), None);
    assert!(header(&resp, "x-ratelimit-type").is_some());

    // A day later (simulated), the daily budget is back. The token must outlive the day.
    config(&base, json!({"token_lifetime_secs": 3 * 86_400})).await;
    let long = str_of(&token(&base, "s2s", "ACC").await, "access_token");
    let (status, _) = post_json(&base, "/sim/clock", json!({"advance_secs": 86_400})).await;
    assert_eq!(status, 200);
    assert_eq!(get(&base, "/v2/users/me", &long).await.status(), 200);

    let stats: Value = ok(get_json(&base, "/sim/stats?client_id=s2s", None).await);
    assert_eq!(stats["rate_limited"], 3, "{stats}");
}

#[tokio::test]
async fn a_rotated_client_secret_keeps_working_for_the_grace_period() {
    let srv = sim().await;
    let base = srv.base_url();
    let (status, rotated) = post_json(
        &base,
        "/sim/apps/s2s/rotate-client-secret",
        json!({"grace_secs": 60}),
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["client_secret"]
        .as_str()
        .expect("new secret")
        .to_owned();
    assert_ne!(new, "sec");

    let try_secret = |secret: String| {
        let base = base.clone();
        async move {
            http()
                .post(format!("{base}/oauth/token"))
                .basic_auth("s2s", Some(secret))
                .form(&[("grant_type", "account_credentials"), ("account_id", "ACC")])
                .send()
                .await
                .expect("token")
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        try_secret("sec".to_owned()).await,
        200,
        "old secret in the grace period"
    );
    assert_eq!(try_secret(new.clone()).await, 200);
    let apps: Value = ok(get_json(&base, "/sim/apps", None).await);
    assert!(apps["apps"]
        .as_array()
        .expect("apps")
        .iter()
        .any(|a| a["previous_client_secret_valid_until_ms"].is_i64()));
    http()
        .post(format!("{base}/sim/clock"))
        .json(&json!({"advance_secs": 61}))
        .send()
        .await
        .expect("clock");
    assert_eq!(try_secret("sec".to_owned()).await, 401, "grace period over");
    assert_eq!(try_secret(new).await, 200);
}

#[tokio::test]
async fn meetings_created_through_the_api_are_listed_fetched_and_deleted() {
    let srv = sim().await;
    let base = srv.base_url();
    let access = str_of(&token(&base, "s2s", "ACC").await, "access_token");
    let create = |body: Value, user: &'static str| {
        let (base, access) = (base.clone(), access.clone());
        async move {
            json_of(
                http()
                    .post(format!("{base}/v2/users/{user}/meetings"))
                    .bearer_auth(access)
                    .json(&body)
                    .send()
                    .await
                    .expect("create"),
            )
            .await
        }
    };
    let (status, first) = create(
        json!({"topic": "Standup", "type": 2, "start_time": "2030-01-02T15:00:00Z", "duration": 15, "settings": {"join_before_host": true}}),
        "me",
    )
    .await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(
        (
            &first["topic"],
            &first["host_id"],
            &first["duration"],
            &first["status"]
        ),
        (
            &json!("Standup"),
            &json!("OWNER"),
            &json!(15),
            &json!("waiting")
        )
    );
    let id = first["id"].as_u64().expect("numeric id");
    assert_eq!(id.to_string().len(), 11, "Zoom-like meeting id");
    assert_eq!(create(json!({}), "OWNER").await.0, 201);

    let (status, page) = get_json(&base, "/v2/users/me/meetings?page_size=1", Some(&access)).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        (&page["total_records"], &page["meetings"][0]["id"]),
        (&json!(2), &json!(id))
    );
    let next = page["next_page_token"].as_str().expect("token").to_owned();
    assert!(!next.is_empty());
    let (_, rest) = json_of(
        get(
            &base,
            &format!("/v2/users/me/meetings?page_size=1&next_page_token={next}"),
            &access,
        )
        .await,
    )
    .await;
    assert_eq!(rest["meetings"].as_array().map(Vec::len), Some(1));
    assert_eq!(rest["next_page_token"], "");

    let (status, got) = get_json(&base, &format!("/v2/meetings/{id}"), Some(&access)).await;
    assert_eq!((status, &got["topic"]), (200, &json!("Standup")));
    let deleted = http()
        .delete(format!("{base}/v2/meetings/{id}"))
        .bearer_auth(&access)
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), 204);
    let (status, err) = get_json(&base, &format!("/v2/meetings/{id}"), Some(&access)).await;
    assert_eq!((status, &err["code"]), (404, &json!(3001)));
    let (status, err) = get_json(&base, "/v2/meetings/not-a-number", Some(&access)).await;
    assert_eq!((status, &err["code"]), (404, &json!(3001)));

    // Another account's token sees none of them.
    let other = str_of(&token(&base, "other", "ACC2").await, "access_token");
    let (_, none) = get_json(&base, "/v2/users/me/meetings", Some(&other)).await;
    assert_eq!(none["total_records"], 0);

    for (body, user, want) in [
        (json!({"type": 4}), "me", 400),
        (json!({"start_time": "soon"}), "me", 400),
        (json!({"topic": 5}), "me", 400),
        (json!({}), "someone-else", 404),
    ] {
        let (status, answer) = create(body.clone(), user).await;
        assert_eq!(status, want, "{body}: {answer}");
    }
}
