use super::*;

const T0: Millis = 1_700_000_000_000;
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const REDIRECT: &str = "https://client.example/cb";

fn app(kind: AppKind, client_id: &str) -> App {
    App {
        kind,
        name: format!("{client_id} app"),
        client_id: client_id.to_owned(),
        client_secret: format!("{client_id}-secret"),
        secret_token: "st".to_owned(),
        account_id: format!("{client_id}-acct"),
        user_id: format!("{client_id}-user"),
        email: "u@example.com".to_owned(),
        first_name: "Sim".to_owned(),
        last_name: "User".to_owned(),
        scopes: vec![
            "meeting:read:meeting".to_owned(),
            "user:read:user".to_owned(),
        ],
        event_url: None,
        verification_token: "vt".to_owned(),
        api_url: None,
        previous_client_secret: None,
        previous_secret_token: None,
        redirect_urls: Vec::new(),
        allow_list: Vec::new(),
        deauthorization_url: None,
        disabled: false,
    }
}

fn auth(client_id: &str) -> ClientAuth {
    ClientAuth {
        client_id: client_id.to_owned(),
        client_secret: format!("{client_id}-secret"),
    }
}

fn sim(consent: ConsentMode) -> Sim {
    let mut sim = Sim::new(Settings {
        consent,
        ..Settings::default()
    });
    sim.register_app(app(AppKind::Oauth, "web"))
        .expect("register web");
    sim.register_app(app(AppKind::Oauth, "other"))
        .expect("register other");
    sim.register_app(app(AppKind::S2s, "s2s"))
        .expect("register s2s");
    sim
}

fn authorize_req(client_id: &str, pkce: Option<(&str, &str)>) -> AuthorizeRequest {
    AuthorizeRequest {
        client_id: Some(client_id.to_owned()),
        response_type: Some("code".to_owned()),
        redirect_uri: Some(REDIRECT.to_owned()),
        state: Some("xyz".to_owned()),
        code_challenge: pkce.map(|(c, _)| c.to_owned()),
        code_challenge_method: pkce.map(|(_, m)| m.to_owned()),
        login_hint: None,
    }
}

fn query_param(url: &str, name: &str) -> Option<String> {
    let url = url::Url::parse(url).expect("redirect is a URL");
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Authorizes (approve mode) and returns the code.
fn code_for(sim: &mut Sim, client_id: &str, pkce: Option<(&str, &str)>, now: Millis) -> String {
    match sim
        .authorize(&authorize_req(client_id, pkce), now)
        .expect("authorize")
    {
        AuthorizeOutcome::Redirect(url) => {
            assert_eq!(query_param(&url, "state").as_deref(), Some("xyz"));
            query_param(&url, "code").expect("code in redirect")
        }
        other => panic!("expected a redirect, got {other:?}"),
    }
}

fn code_params(code: &str, verifier: Option<&str>) -> TokenParams {
    TokenParams {
        grant_type: Some("authorization_code".to_owned()),
        code: Some(code.to_owned()),
        redirect_uri: Some(REDIRECT.to_owned()),
        code_verifier: verifier.map(str::to_owned),
        ..TokenParams::default()
    }
}

fn refresh_params(token: &str) -> TokenParams {
    TokenParams {
        grant_type: Some("refresh_token".to_owned()),
        refresh_token: Some(token.to_owned()),
        ..TokenParams::default()
    }
}

#[test]
fn s256_matches_rfc7636_appendix_b() {
    assert_eq!(
        s256_challenge(VERIFIER),
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    );
}

#[test]
fn code_is_single_use() {
    let mut sim = sim(ConsentMode::Approve);
    let code = code_for(&mut sim, "web", None, T0);
    let first = sim
        .token(Some(&auth("web")), &code_params(&code, None), T0)
        .expect("first exchange");
    assert!(first.refresh_token.is_some());
    let second = sim
        .token(Some(&auth("web")), &code_params(&code, None), T0)
        .expect_err("second exchange");
    assert_eq!((second.status, second.error), (400, "invalid_grant"));
    assert!(
        second.reason.starts_with("Invalid authorization code"),
        "{}",
        second.reason
    );
    assert!(
        !second.reason.contains(&code),
        "the code must not be echoed"
    );
    let stats = sim.stats(Some("web"), T0).expect("stats");
    assert_eq!(stats.counters.authorization_code_grants, 1);
    assert_eq!(stats.counters.token_requests, 2);
    assert_eq!(stats.counters.failed_token_requests, 1);
}

#[test]
fn code_expires_after_five_minutes() {
    let mut sim = sim(ConsentMode::Approve);
    let code = code_for(&mut sim, "web", None, T0);
    let err = sim
        .token(
            Some(&auth("web")),
            &code_params(&code, None),
            T0 + CODE_LIFETIME_MS,
        )
        .expect_err("expired");
    assert_eq!(err.error, "invalid_grant");
    let code = code_for(&mut sim, "web", None, T0);
    sim.token(
        Some(&auth("web")),
        &code_params(&code, None),
        T0 + CODE_LIFETIME_MS - 1,
    )
    .expect("just in time");
}

#[test]
fn code_is_bound_to_client_and_redirect_uri() {
    let mut sim = sim(ConsentMode::Approve);
    let code = code_for(&mut sim, "web", None, T0);
    // Another client cannot use it, and its attempt does not burn the code.
    let err = sim
        .token(Some(&auth("other")), &code_params(&code, None), T0)
        .expect_err("other client");
    assert_eq!(err.error, "invalid_grant");
    let mut params = code_params(&code, None);
    params.redirect_uri = Some("https://client.example/elsewhere".to_owned());
    let err = sim
        .token(Some(&auth("web")), &params, T0)
        .expect_err("redirect mismatch");
    assert_eq!(err.error, "invalid_grant");
    assert!(err.reason.contains("redirect_uri"), "{}", err.reason);
    // The failed attempt by the rightful client consumed it.
    sim.token(Some(&auth("web")), &code_params(&code, None), T0)
        .expect_err("burned");
}

#[test]
fn pkce_s256_is_checked() {
    let mut sim = sim(ConsentMode::Approve);
    let challenge = s256_challenge(VERIFIER);
    let code = code_for(&mut sim, "web", Some((&challenge, "S256")), T0);
    let missing = sim
        .token(Some(&auth("web")), &code_params(&code, None), T0)
        .expect_err("missing verifier");
    assert_eq!(missing.error, "invalid_request");
    let wrong = "x".repeat(43);
    let err = sim
        .token(Some(&auth("web")), &code_params(&code, Some(&wrong)), T0)
        .expect_err("wrong verifier");
    assert_eq!(err.error, "invalid_grant");

    let code = code_for(&mut sim, "web", Some((&challenge, "S256")), T0);
    sim.token(Some(&auth("web")), &code_params(&code, Some(VERIFIER)), T0)
        .expect("right verifier");
}

#[test]
fn pkce_plain_and_bad_methods() {
    let mut sim = sim(ConsentMode::Approve);
    let code = code_for(&mut sim, "web", Some((VERIFIER, "plain")), T0);
    sim.token(Some(&auth("web")), &code_params(&code, Some(VERIFIER)), T0)
        .expect("plain verifier");

    let outcome = sim
        .authorize(&authorize_req("web", Some((VERIFIER, "S512"))), T0)
        .expect("redirects");
    let AuthorizeOutcome::Redirect(url) = outcome else {
        panic!("expected redirect")
    };
    assert_eq!(
        query_param(&url, "error").as_deref(),
        Some("invalid_request")
    );
    assert_eq!(query_param(&url, "code"), None);
}

#[test]
fn refresh_rotates_and_detects_reuse() {
    let mut sim = sim(ConsentMode::Approve);
    let code = code_for(&mut sim, "web", None, T0);
    let first = sim
        .token(Some(&auth("web")), &code_params(&code, None), T0)
        .expect("exchange");
    let r1 = first.refresh_token.clone().expect("refresh token");

    let second = sim
        .token(Some(&auth("web")), &refresh_params(&r1), T0 + 1000)
        .expect("refresh");
    let r2 = second.refresh_token.clone().expect("rotated refresh token");
    assert_ne!(r1, r2);
    assert_ne!(first.access_token, second.access_token);
    // The previous access token is dead, the new one works.
    assert_eq!(
        sim.users_me(Some(&first.access_token), T0 + 1000),
        Err(ApiError::invalid_access_token())
    );
    assert_eq!(
        sim.users_me(Some(&second.access_token), T0 + 1000)
            .expect("new token")
            .user
            .user_id,
        "web-user"
    );

    let reuse = sim
        .token(Some(&auth("web")), &refresh_params(&r1), T0 + 2000)
        .expect_err("reuse");
    assert_eq!(
        reuse,
        OAuthError::invalid_refresh_token(RefreshRejection::InvalidGrant400)
    );
    let stats = sim.stats(Some("web"), T0 + 2000).expect("stats");
    assert_eq!(stats.counters.refreshes, 1);
    assert_eq!(stats.counters.reused_refresh_tokens, 1);
    assert_eq!(stats.active_grants, 1);

    // The rotated token still works (reuse does not kill the grant).
    sim.token(Some(&auth("web")), &refresh_params(&r2), T0 + 3000)
        .expect("current refresh token");
    // Another app presenting the token gets nothing.
    let err = sim
        .token(Some(&auth("other")), &refresh_params(&r2), T0)
        .expect_err("other app");
    assert_eq!(err.error, "invalid_grant");
}

#[test]
fn access_token_expiry_uses_the_given_clock() {
    let mut sim = sim(ConsentMode::Approve);
    sim.settings_mut().token_lifetime_secs = 30;
    let code = code_for(&mut sim, "web", None, T0);
    let issued = sim
        .token(Some(&auth("web")), &code_params(&code, None), T0)
        .expect("exchange");
    assert_eq!(issued.expires_in, 30);
    assert!(sim
        .users_me(Some(&issued.access_token), T0 + 29_999)
        .is_ok());
    assert_eq!(
        sim.users_me(Some(&issued.access_token), T0 + 30_000),
        Err(ApiError::expired_access_token())
    );
    assert_eq!(
        sim.users_me(Some("nonsense"), T0),
        Err(ApiError::invalid_access_token())
    );
    assert_eq!(
        sim.users_me(None, T0),
        Err(ApiError::invalid_access_token())
    );
}

#[test]
fn refresh_token_expiry() {
    let mut sim = sim(ConsentMode::Approve);
    sim.settings_mut().refresh_token_lifetime_secs = 60;
    let code = code_for(&mut sim, "web", None, T0);
    let issued = sim
        .token(Some(&auth("web")), &code_params(&code, None), T0)
        .expect("exchange");
    let refresh = issued.refresh_token.expect("refresh");
    let err = sim
        .token(Some(&auth("web")), &refresh_params(&refresh), T0 + 60_000)
        .expect_err("expired refresh");
    assert_eq!(
        err,
        OAuthError::invalid_refresh_token(RefreshRejection::InvalidGrant400)
    );
}

#[test]
fn account_credentials_for_s2s_only() {
    let mut sim = sim(ConsentMode::Approve);
    let params = |acct: &str| TokenParams {
        grant_type: Some("account_credentials".to_owned()),
        account_id: Some(acct.to_owned()),
        ..TokenParams::default()
    };
    let issued = sim
        .token(Some(&auth("s2s")), &params("s2s-acct"), T0)
        .expect("s2s token");
    assert_eq!(issued.refresh_token, None);
    let again = sim
        .token(Some(&auth("s2s")), &params("s2s-acct"), T0)
        .expect("second s2s token");
    // Both tokens stay valid: Zoom allows several live S2S tokens.
    assert!(sim.users_me(Some(&issued.access_token), T0).is_ok());
    assert_eq!(
        sim.users_me(Some(&again.access_token), T0)
            .expect("s2s user")
            .user
            .user_id,
        "s2s-user"
    );

    let wrong = sim
        .token(Some(&auth("s2s")), &params("nope"), T0)
        .expect_err("wrong account");
    assert_eq!(
        (wrong.error, wrong.reason.as_str()),
        ("invalid_request", "Invalid account_id")
    );
    let oauth_app = sim
        .token(Some(&auth("web")), &params("web-acct"), T0)
        .expect_err("oauth app");
    assert_eq!(oauth_app, OAuthError::unsupported_grant_type());
    let s2s_code = sim
        .token(Some(&auth("s2s")), &code_params("c", None), T0)
        .expect_err("s2s code grant");
    assert_eq!(s2s_code, OAuthError::unsupported_grant_type());
    assert_eq!(
        sim.stats(Some("s2s"), T0)
            .expect("stats")
            .counters
            .account_credentials_grants,
        2
    );
}

#[test]
fn client_authentication_and_grant_type() {
    let mut sim = sim(ConsentMode::Approve);
    let bad = ClientAuth {
        client_id: "web".to_owned(),
        client_secret: "wrong".to_owned(),
    };
    assert_eq!(
        sim.token(Some(&bad), &refresh_params("r"), T0),
        Err(OAuthError::invalid_client())
    );
    assert_eq!(
        sim.token(None, &refresh_params("r"), T0),
        Err(OAuthError::invalid_client())
    );
    let none = sim
        .token(Some(&auth("web")), &TokenParams::default(), T0)
        .expect_err("no grant type");
    assert_eq!(none.error, "invalid_request");
    let p = TokenParams {
        grant_type: Some("password".to_owned()),
        ..TokenParams::default()
    };
    assert_eq!(
        sim.token(Some(&auth("web")), &p, T0),
        Err(OAuthError::unsupported_grant_type())
    );
    assert_eq!(
        sim.stats(None, T0)
            .expect("totals")
            .counters
            .failed_token_requests,
        4
    );
}

#[test]
fn revoke_kills_access_and_refresh() {
    let mut sim = sim(ConsentMode::Approve);
    let code = code_for(&mut sim, "web", None, T0);
    let issued = sim
        .token(Some(&auth("web")), &code_params(&code, None), T0)
        .expect("exchange");
    let refresh = issued.refresh_token.clone().expect("refresh");
    assert_eq!(
        sim.revoke(Some(&auth("other")), Some(&issued.access_token), T0),
        Err(OAuthError::invalid_request("Invalid Token"))
    );
    assert_eq!(
        sim.revoke(Some(&auth("web")), Some(&issued.access_token), T0),
        Ok(RevokeOutcome::Revoked {
            deauthorized: Some(app(AppKind::Oauth, "web").own_user())
        })
    );
    assert_eq!(
        sim.users_me(Some(&issued.access_token), T0),
        Err(ApiError::invalid_access_token())
    );
    assert_eq!(
        sim.token(Some(&auth("web")), &refresh_params(&refresh), T0),
        Err(OAuthError::invalid_refresh_token(
            RefreshRejection::InvalidGrant400
        ))
    );
    assert_eq!(
        sim.revoke(Some(&auth("web")), Some("unknown"), T0),
        Ok(RevokeOutcome::UnknownToken)
    );
    let stats = sim.stats(Some("web"), T0).expect("stats");
    assert_eq!((stats.counters.revokes, stats.active_grants), (2, 0));
    assert_eq!(stats.counters.deauthorizations, 1);
    // A revoked refresh token is invalid, but not "reused".
    assert_eq!(stats.counters.reused_refresh_tokens, 0);
}

#[test]
fn consent_modes() {
    let mut sim = sim(ConsentMode::Deny);
    let AuthorizeOutcome::Redirect(url) = sim
        .authorize(&authorize_req("web", None), T0)
        .expect("deny")
    else {
        panic!("expected redirect")
    };
    assert_eq!(query_param(&url, "error").as_deref(), Some("access_denied"));
    assert_eq!(query_param(&url, "state").as_deref(), Some("xyz"));
    assert_eq!(query_param(&url, "code"), None);

    sim.settings_mut().consent = ConsentMode::Page;
    let AuthorizeOutcome::ConsentPage { request_id, .. } = sim
        .authorize(&authorize_req("web", None), T0)
        .expect("page")
    else {
        panic!("expected consent page")
    };
    let url = sim.decide(&request_id, true, T0 + 1000).expect("approve");
    let code = query_param(&url, "code").expect("code");
    assert!(
        sim.decide(&request_id, true, T0 + 1000).is_err(),
        "pending request is single use"
    );
    sim.token(Some(&auth("web")), &code_params(&code, None), T0 + 2000)
        .expect("exchange");
}

#[test]
fn authorize_page_errors() {
    let mut sim = sim(ConsentMode::Approve);
    assert!(sim.authorize(&authorize_req("nobody", None), T0).is_err());
    assert!(sim.authorize(&authorize_req("s2s", None), T0).is_err());
    for bad in [
        "/relative",
        "ftp://x.example/",
        "https://x.example/#frag",
        "not a url",
    ] {
        let mut req = authorize_req("web", None);
        req.redirect_uri = Some(bad.to_owned());
        assert!(sim.authorize(&req, T0).is_err(), "{bad}");
    }
    let mut req = authorize_req("web", None);
    req.response_type = Some("token".to_owned());
    let AuthorizeOutcome::Redirect(url) = sim.authorize(&req, T0).expect("redirect") else {
        panic!("redirect")
    };
    assert_eq!(
        query_param(&url, "error").as_deref(),
        Some("unsupported_response_type")
    );
}

#[test]
fn redirect_keeps_existing_query() {
    let mut sim = sim(ConsentMode::Approve);
    let mut req = authorize_req("web", None);
    req.redirect_uri = Some("https://client.example/cb?tenant=a".to_owned());
    let AuthorizeOutcome::Redirect(url) = sim.authorize(&req, T0).expect("redirect") else {
        panic!("redirect")
    };
    assert_eq!(query_param(&url, "tenant").as_deref(), Some("a"));
    assert!(query_param(&url, "code").is_some());
}

#[test]
fn deauthorize_revokes_all_grants_of_the_app() {
    let mut sim = sim(ConsentMode::Approve);
    for _ in 0..2 {
        let code = code_for(&mut sim, "web", None, T0);
        sim.token(Some(&auth("web")), &code_params(&code, None), T0)
            .expect("exchange");
    }
    let code = code_for(&mut sim, "other", None, T0);
    sim.token(Some(&auth("other")), &code_params(&code, None), T0)
        .expect("exchange other");
    let (_, revoked, users) = sim.deauthorize("web", None).expect("known app");
    assert_eq!(revoked, 2);
    assert_eq!(users, vec![app(AppKind::Oauth, "web").own_user()]);
    assert_eq!(sim.stats(Some("web"), T0).expect("stats").active_grants, 0);
    assert_eq!(
        sim.stats(Some("other"), T0).expect("stats").active_grants,
        1
    );
    assert!(sim.deauthorize("nobody", None).is_none());
}

#[test]
fn a_rotated_client_secret_works_until_its_grace_period_ends() {
    let mut sim = sim(ConsentMode::Approve);
    let params = TokenParams {
        grant_type: Some("account_credentials".to_owned()),
        account_id: Some("s2s-acct".to_owned()),
        ..TokenParams::default()
    };
    let (new, until) = sim
        .rotate_secret(
            "s2s",
            AppSecret::ClientSecret,
            Some("fresh".to_owned()),
            60_000,
            T0,
        )
        .expect("known app");
    assert_eq!((new.as_str(), until), ("fresh", Some(T0 + 60_000)));
    let old = auth("s2s");
    let fresh = ClientAuth {
        client_id: "s2s".to_owned(),
        client_secret: "fresh".to_owned(),
    };
    assert!(sim.token(Some(&old), &params, T0 + 59_999).is_ok());
    assert!(sim.token(Some(&fresh), &params, T0 + 59_999).is_ok());
    assert_eq!(
        sim.token(Some(&old), &params, T0 + 60_000),
        Err(OAuthError::invalid_client())
    );
    assert!(sim.token(Some(&fresh), &params, T0 + 60_000).is_ok());
    // No grace: the old secret dies at once.
    sim.rotate_secret("s2s", AppSecret::ClientSecret, None, 0, T0)
        .expect("known app");
    assert!(sim.token(Some(&fresh), &params, T0).is_err());
    assert!(sim
        .rotate_secret("nope", AppSecret::ClientSecret, None, 0, T0)
        .is_none());
}

#[test]
fn authorizing_again_supersedes_the_earlier_grant_within_the_tolerance() {
    for (tolerance, first_survives) in [(1, false), (2, true), (0, true)] {
        let mut sim = sim(ConsentMode::Approve);
        sim.settings_mut().grant_tolerance = tolerance;
        let mut grants = Vec::new();
        for t in [T0, T0 + 1000] {
            let code = code_for(&mut sim, "web", None, t);
            grants.push(
                sim.token(Some(&auth("web")), &code_params(&code, None), t)
                    .expect("exchange"),
            );
        }
        let first = grants[0].refresh_token.clone().expect("refresh token");
        let refreshed = sim.token(Some(&auth("web")), &refresh_params(&first), T0 + 2000);
        assert_eq!(refreshed.is_ok(), first_survives, "tolerance {tolerance}");
        assert!(
            sim.users_me(Some(&grants[1].access_token), T0 + 2000)
                .is_ok(),
            "the newest grant always works"
        );
        let stats = sim.stats(Some("web"), T0 + 2000).expect("stats");
        assert_eq!(
            stats.counters.superseded_grants,
            u64::from(!first_survives),
            "tolerance {tolerance}"
        );
        assert_eq!(stats.counters.reused_refresh_tokens, 0, "not a reuse");
    }
}

#[test]
fn revoke_deauthorizes_only_user_grants_and_only_when_switched_on() {
    let mut sim = sim(ConsentMode::Approve);
    let s2s = TokenParams {
        grant_type: Some("account_credentials".to_owned()),
        account_id: Some("s2s-acct".to_owned()),
        ..TokenParams::default()
    };
    let issued = sim.token(Some(&auth("s2s")), &s2s, T0).expect("s2s token");
    assert_eq!(
        sim.revoke(Some(&auth("s2s")), Some(&issued.access_token), T0),
        Ok(RevokeOutcome::Revoked { deauthorized: None })
    );
    sim.settings_mut().revoke_sends_deauthorization = false;
    let code = code_for(&mut sim, "web", None, T0);
    let issued = sim
        .token(Some(&auth("web")), &code_params(&code, None), T0)
        .expect("exchange");
    assert_eq!(
        sim.revoke(Some(&auth("web")), issued.refresh_token.as_deref(), T0),
        Ok(RevokeOutcome::Revoked { deauthorized: None })
    );
    assert_eq!(
        sim.stats(None, T0)
            .expect("stats")
            .counters
            .deauthorizations,
        0
    );
}

#[test]
fn allow_list_entries_admit_their_origin_and_paths_below() {
    for (entry, uri, admitted) in [
        (
            "https://app.example",
            "https://app.example/oauth/cb?x=1",
            true,
        ),
        ("https://app.example/", "https://app.example/", true),
        ("https://app.example", "https://APP.example/cb", true),
        ("https://app.example:443", "https://app.example/cb", true),
        ("https://app.example", "http://app.example/cb", false),
        ("https://app.example", "https://app.example:8443/cb", false),
        ("https://app.example", "https://evil.app.example/cb", false),
        ("https://app.example", "https://app.example.evil/cb", false),
        (
            "https://app.example/oauth",
            "https://app.example/oauth",
            true,
        ),
        (
            "https://app.example/oauth/",
            "https://app.example/oauth/cb",
            true,
        ),
        (
            "https://app.example/oauth",
            "https://app.example/oauth/cb/x?t=1",
            true,
        ),
        (
            "https://app.example/oauth",
            "https://app.example/oauthx",
            false,
        ),
        (
            "https://app.example/oauth",
            "https://app.example/other",
            false,
        ),
        (
            "https://app.example/oauth/cb",
            "https://app.example/OAUTH/cb",
            false,
        ),
        (
            "https://app.example/cb?tenant=a",
            "https://app.example/cb?tenant=a",
            true,
        ),
        (
            "https://app.example/cb?tenant=a",
            "https://app.example/cb?tenant=b",
            false,
        ),
        (
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8080/oauth/redirect/zoom",
            true,
        ),
        (
            "http://127.0.0.1:8080",
            "http://127.0.0.1:9090/oauth/redirect/zoom",
            false,
        ),
        ("not a url", "https://app.example/", false),
    ] {
        assert_eq!(allow_list_admits(entry, uri), admitted, "{entry} vs {uri}");
    }
}

#[test]
fn redirect_urls_and_the_allow_list_together() {
    let mut app = app(AppKind::Oauth, "web");
    assert!(app.accepts_redirect("https://anything.example/"));
    app.allow_list = vec!["https://app.example/oauth".to_owned()];
    assert!(app.accepts_redirect("https://app.example/oauth/cb"));
    assert!(!app.accepts_redirect("https://anything.example/"));
    app.redirect_urls = vec!["https://other.example/cb".to_owned()];
    assert!(app.accepts_redirect("https://other.example/cb"));
    assert!(!app.accepts_redirect("https://other.example/cb/deeper"));
    assert!(app.accepts_redirect("https://app.example/oauth/x"));
}

#[test]
fn refresh_expiry_models_sliding_and_absolute() {
    const DAY: Millis = 24 * 3600 * 1000;
    let n = 10 * 24 * 3600;
    use RefreshTokenExpiry::{Absolute, Sliding};
    assert_eq!(
        next_refresh_expiry(Sliding, n, T0, T0 + 7 * DAY),
        T0 + 17 * DAY
    );
    assert_eq!(
        next_refresh_expiry(Absolute, n, T0, T0 + 7 * DAY),
        T0 + 10 * DAY
    );
    assert_eq!(next_refresh_expiry(Absolute, n, T0, T0), T0 + 10 * DAY);

    for (model, alive_after_three_refreshes) in [(Sliding, true), (Absolute, false)] {
        let mut sim = sim(ConsentMode::Approve);
        sim.settings_mut().refresh_token_lifetime_secs = n;
        sim.settings_mut().refresh_token_expiry = model;
        let code = code_for(&mut sim, "web", None, T0);
        let mut refresh = sim
            .token(Some(&auth("web")), &code_params(&code, None), T0)
            .expect("exchange")
            .refresh_token
            .expect("refresh");
        // Refreshed every 4 days: 4, 8 work either way; at 12 the absolute grant is past 10.
        for day in [4, 8] {
            refresh = sim
                .token(
                    Some(&auth("web")),
                    &refresh_params(&refresh),
                    T0 + day * DAY,
                )
                .unwrap_or_else(|e| panic!("{model:?} day {day}: {e:?}"))
                .refresh_token
                .expect("refresh");
        }
        let third = sim.token(Some(&auth("web")), &refresh_params(&refresh), T0 + 12 * DAY);
        assert_eq!(
            third.is_ok(),
            alive_after_three_refreshes,
            "{model:?}: {third:?}"
        );
    }
}

fn user(id: &str, email: &str) -> User {
    User {
        user_id: id.to_owned(),
        email: email.to_owned(),
        first_name: "F".to_owned(),
        last_name: "L".to_owned(),
        account_id: "acct-2".to_owned(),
    }
}

#[test]
fn users_are_unique_bounded_and_oauth_only() {
    let mut sim = sim(ConsentMode::Approve);
    let own = app(AppKind::Oauth, "web").own_user();
    assert_eq!(
        sim.add_user("web", user(&own.user_id, "new@example.com")),
        Err(UserError::Duplicate(format!("user_id {:?}", own.user_id)))
    );
    assert!(matches!(
        sim.add_user("web", user("u2", "U@EXAMPLE.com")),
        Err(UserError::Duplicate(_))
    ));
    assert_eq!(
        sim.add_user("s2s", user("u2", "u2@example.com")),
        Err(UserError::NotAnOauthApp)
    );
    assert_eq!(
        sim.add_user("nobody", user("u2", "u2@example.com")),
        Err(UserError::UnknownApp)
    );
    for i in 0..MAX_USERS_PER_APP {
        sim.add_user("web", user(&format!("u{i}"), &format!("u{i}@example.com")))
            .expect("room");
    }
    assert_eq!(
        sim.add_user("web", user("one-more", "one-more@example.com")),
        Err(UserError::Full)
    );
    assert_eq!(sim.users("web").expect("app").len(), MAX_USERS_PER_APP + 1);
    assert_eq!(
        sim.find_user("web", "U7@example.COM")
            .expect("by email")
            .user_id,
        "u7"
    );
}

#[test]
fn each_user_has_their_own_grant_and_identity() {
    let mut sim = sim(ConsentMode::Approve);
    sim.settings_mut().grant_tolerance = 1;
    sim.add_user("web", user("u2", "two@example.com"))
        .expect("add");
    let own = app(AppKind::Oauth, "web").own_user();

    let exchange = |sim: &mut Sim, hint: Option<&str>| {
        let mut req = authorize_req("web", None);
        req.login_hint = hint.map(str::to_owned);
        let AuthorizeOutcome::Redirect(url) = sim.authorize(&req, T0).expect("authorize") else {
            panic!("redirect")
        };
        let code = query_param(&url, "code").expect("code");
        sim.token(Some(&auth("web")), &code_params(&code, None), T0)
            .expect("exchange")
    };
    let first = exchange(&mut sim, None);
    let second = exchange(&mut sim, Some("two@example.com"));
    // One grant per user and app: the second user's grant does not supersede the first's.
    let me = sim
        .users_me(Some(&first.access_token), T0)
        .expect("own user");
    assert_eq!(
        (me.user.user_id.as_str(), me.account_id()),
        (own.user_id.as_str(), "web-acct")
    );
    let two = sim
        .users_me(Some(&second.access_token), T0)
        .expect("second user");
    assert_eq!((two.user_id(), two.account_id()), ("u2", "acct-2"));
    assert_eq!(two.user.email, "two@example.com");

    // The consenting user is sticky; authorizing again as u2 supersedes u2's grant only.
    sim.set_consenting_user("web", Some("u2"))
        .expect("known user");
    let third = exchange(&mut sim, None);
    assert_eq!(
        sim.users_me(Some(&third.access_token), T0)
            .expect("u2")
            .user_id(),
        "u2"
    );
    assert!(sim.users_me(Some(&second.access_token), T0).is_err());
    assert!(sim.users_me(Some(&first.access_token), T0).is_ok());

    let mut req = authorize_req("web", None);
    req.login_hint = Some("stranger@example.com".to_owned());
    let err = sim.authorize(&req, T0).expect_err("unknown login_hint");
    assert!(err.0.contains("stranger@example.com"), "{err:?}");
    assert!(sim.set_consenting_user("web", Some("nobody")).is_err());

    // Deauthorizing one user leaves the other's grant alone.
    let (_, revoked, users) = sim.deauthorize("web", Some("u2")).expect("app");
    assert_eq!((revoked, users[0].account_id.as_str()), (1, "acct-2"));
    assert!(sim.users_me(Some(&first.access_token), T0).is_ok());
    let (_, revoked, users) = sim.deauthorize("web", None).expect("app");
    assert_eq!((revoked, users), (1, vec![own]));
}
