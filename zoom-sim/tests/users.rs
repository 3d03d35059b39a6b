//! Several Zoom users per app: registering them, choosing who consents (`login_hint`, the
//! app's consenting user), and grants, users/me, meetings and deauthorization per user.

mod common;

use serde_json::{json, Value};

use common::{
    app, authorize, exchange_code, get_json, http, json_of, location_param, post_json, Receiver,
    Validation,
};
use zoom_sim::server::{start, RunningServer, ServeOptions};
use zoom_sim::state::{ConsentMode, Settings};

const REDIRECT: &str = "https://client.example/cb";

async fn sim(event_url: &str, consent: ConsentMode) -> RunningServer {
    let spec = format!("kind=oauth,client_id=multi,client_secret=msecret,secret_token=mtoken,account_id=ACC1,user_id=OWNER,email=owner@example.com,event_url={event_url}");
    let s2s = app("kind=s2s,client_id=s2s,client_secret=s,account_id=ACC9");
    start(ServeOptions {
        settings: Settings {
            consent,
            grant_tolerance: 1,
            ..Settings::default()
        },
        apps: vec![app(&spec), s2s],
        ..ServeOptions::default()
    })
    .await
    .expect("server starts")
}

/// Authorizes `multi` (approve mode), with a login_hint if given, and returns the access token.
async fn access_token(base: &str, login_hint: Option<&str>) -> String {
    let hint: Vec<(&str, &str)> = login_hint.map(|h| ("login_hint", h)).into_iter().collect();
    let resp = authorize(base, "multi", REDIRECT, &hint).await;
    assert_eq!(resp.status(), 302, "login_hint {login_hint:?}");
    let code = location_param(&resp, "code").expect("code");
    let (status, body) = exchange_code(base, ("multi", "msecret"), &code, REDIRECT).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().expect("token").to_owned()
}

#[tokio::test]
async fn users_are_registered_listed_and_refused_with_zoom_shaped_errors() {
    let srv = sim("http://127.0.0.1:9/unused", ConsentMode::Approve).await;
    let base = srv.base_url();
    let (status, user) = post_json(
        &base,
        "/sim/apps/multi/users",
        json!({"user_id": "U2", "email": "two@example.com", "first_name": "Two", "last_name": "Second", "account_id": "ACC2"}),
    )
    .await;
    assert_eq!(status, 201, "{user}");
    assert_eq!(
        user,
        json!({"user_id": "U2", "email": "two@example.com", "first_name": "Two", "last_name": "Second", "account_id": "ACC2"})
    );
    // Everything optional: stable, derived defaults in the app's account.
    let (status, derived) = post_json(&base, "/sim/apps/multi/users", json!({})).await;
    assert_eq!(status, 201, "{derived}");
    assert_eq!(derived["account_id"], "ACC1");
    assert!(derived["email"]
        .as_str()
        .expect("email")
        .ends_with("@example.com"));
    assert_eq!(derived["user_id"].as_str().map(str::len), Some(22));

    let (status, listed) = get_json(&base, "/sim/apps/multi/users", None).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = listed["users"]
        .as_array()
        .expect("users")
        .iter()
        .filter_map(|u| u["user_id"].as_str())
        .collect();
    assert_eq!(ids[..2], ["OWNER", "U2"]);
    assert_eq!(ids.len(), 3);

    for (path, body, want) in [
        ("/sim/apps/multi/users", json!({"email": "nope"}), 400),
        ("/sim/apps/multi/users", json!({"colour": "red"}), 400),
        ("/sim/apps/multi/users", json!({"user_id": "me"}), 400),
        (
            "/sim/apps/multi/users",
            json!({"first_name": "a\u{7}b"}),
            400,
        ),
        ("/sim/apps/multi/users", json!({"user_id": ["x"]}), 400),
        ("/sim/apps/s2s/users", json!({}), 400),
        ("/sim/apps/nobody/users", json!({}), 404),
        (
            "/sim/apps/multi/users",
            json!({"email": "TWO@example.com"}),
            409,
        ),
        ("/sim/apps/multi/users", json!({"user_id": "OWNER"}), 409),
        (
            "/sim/apps/multi/consenting-user",
            json!({"user": "ghost"}),
            404,
        ),
        ("/sim/apps/multi/consenting-user", json!({"who": "U2"}), 400),
    ] {
        let (status, answer) = post_json(&base, path, body.clone()).await;
        assert_eq!(status, want, "{path} {body}: {answer}");
        let code = if want == 400 { 300 } else { want };
        assert_eq!(answer["code"], code, "{path} {body}: {answer}");
    }
    let resp = http()
        .post(format!("{base}/sim/apps/multi/users"))
        .body("not json")
        .send()
        .await
        .expect("request");
    assert_eq!(json_of(resp).await.1["code"], 300);
    assert_eq!(get_json(&base, "/sim/apps/nobody/users", None).await.0, 404);
}

#[tokio::test]
async fn each_user_authorizes_for_themselves() {
    let receiver = Receiver::start("mtoken", Validation::Correct).await;
    let srv = sim(&receiver.url(), ConsentMode::Approve).await;
    let base = srv.base_url();
    let (status, _) = post_json(
        &base,
        "/sim/apps/multi/users",
        json!({"user_id": "U2", "email": "two@example.com", "first_name": "Two", "account_id": "ACC2"}),
    )
    .await;
    assert_eq!(status, 201);

    let owner = access_token(&base, None).await;
    let two = access_token(&base, Some("Two@Example.com")).await;
    let (_, me) = get_json(&base, "/v2/users/me", Some(&owner)).await;
    assert_eq!(
        (&me["id"], &me["account_id"]),
        (&json!("OWNER"), &json!("ACC1"))
    );
    let (status, me) = get_json(&base, "/v2/users/me", Some(&two)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(
        (
            &me["id"],
            &me["email"],
            &me["first_name"],
            &me["account_id"]
        ),
        (
            &json!("U2"),
            &json!("two@example.com"),
            &json!("Two"),
            &json!("ACC2")
        )
    );
    // users/{id}: by id or email for oneself; another user of the same app is not readable.
    assert_eq!(
        get_json(&base, "/v2/users/two@example.com", Some(&two))
            .await
            .0,
        200
    );
    let (status, body) = get_json(&base, "/v2/users/OWNER", Some(&two)).await;
    assert_eq!((status, &body["code"]), (404, &json!(1001)));

    // Meetings belong to their host.
    let resp = http()
        .post(format!("{base}/v2/users/me/meetings"))
        .bearer_auth(&two)
        .json(&json!({"topic": "two's"}))
        .send()
        .await
        .expect("create");
    let (status, meeting) = json_of(resp).await;
    assert_eq!(
        (status, &meeting["host_email"]),
        (201, &json!("two@example.com"))
    );
    let (_, mine) = get_json(&base, "/v2/users/me/meetings", Some(&owner)).await;
    assert_eq!(mine["total_records"], 0);
    let path = format!("/v2/meetings/{}", meeting["id"]);
    assert_eq!(get_json(&base, &path, Some(&owner)).await.0, 404);
    assert_eq!(get_json(&base, &path, Some(&two)).await.0, 200);

    // One grant per user and app: the second user's consent superseded nobody; a new one
    // of U2 (now the app's consenting user) supersedes U2's earlier grant only.
    let (status, chosen) = post_json(
        &base,
        "/sim/apps/multi/consenting-user",
        json!({"user": "U2"}),
    )
    .await;
    assert_eq!((status, &chosen["user"]["user_id"]), (200, &json!("U2")));
    let two_again = access_token(&base, None).await;
    assert_eq!(get_json(&base, "/v2/users/me", Some(&two)).await.0, 401);
    assert_eq!(
        get_json(&base, "/v2/users/me", Some(&two_again)).await.1["id"],
        "U2"
    );
    assert_eq!(get_json(&base, "/v2/users/me", Some(&owner)).await.0, 200);
    let (_, back) = post_json(&base, "/sim/apps/multi/consenting-user", json!({})).await;
    assert_eq!(back["user"]["user_id"], "OWNER");

    // U2 removes the app: only U2's grant goes, and the event names U2 and its account.
    let (status, answer) = post_json(
        &base,
        "/sim/deauthorize",
        json!({"client_id": "multi", "user_id": "U2"}),
    )
    .await;
    assert_eq!(
        (status, &answer["revoked_grants"]),
        (200, &json!(1)),
        "{answer}"
    );
    assert_eq!(
        get_json(&base, "/v2/users/me", Some(&two_again)).await.0,
        401
    );
    assert_eq!(get_json(&base, "/v2/users/me", Some(&owner)).await.0, 200);
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    let payload = &received[0].json()["payload"];
    assert_eq!(
        (&payload["user_id"], &payload["account_id"]),
        (&json!("U2"), &json!("ACC2"))
    );

    // Without a user: every user holding a grant gets their event.
    access_token(&base, Some("U2")).await;
    let (_, answer) = post_json(&base, "/sim/deauthorize", json!({"client_id": "multi"})).await;
    assert_eq!(answer["revoked_grants"], 2, "{answer}");
    assert_eq!(answer["webhooks"].as_array().map(Vec::len), Some(2));
    let users: Vec<Value> = receiver.received()[1..]
        .iter()
        .map(|r| r.json()["payload"]["user_id"].clone())
        .collect();
    assert_eq!(users, vec![json!("OWNER"), json!("U2")]);
}

#[tokio::test]
async fn the_consent_page_names_the_user_and_an_unknown_login_hint_is_refused() {
    let srv = sim("http://127.0.0.1:9/unused", ConsentMode::Page).await;
    let base = srv.base_url();
    post_json(
        &base,
        "/sim/apps/multi/users",
        json!({"user_id": "U2", "email": "two@example.com"}),
    )
    .await;
    let page = |hint: &'static str| {
        let base = base.clone();
        async move {
            let resp = authorize(&base, "multi", REDIRECT, &[("login_hint", hint)]).await;
            (resp.status().as_u16(), resp.text().await.expect("page"))
        }
    };
    let (status, html) = page("U2").await;
    assert_eq!(status, 200);
    assert!(
        html.contains("Signed in as <code>two@example.com</code>"),
        "{html}"
    );
    let (status, html) = page("ghost@example.com").await;
    assert_eq!(status, 400);
    assert!(
        html.contains("ghost@example.com") && html.contains("login_hint"),
        "{html}"
    );
}
