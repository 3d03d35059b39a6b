//! What a refusal from Zoom means, decided from what Zoom answered: the grant type asked for,
//! the HTTP status and the parsed body. Zoom has answered the same situation in several forms
//! over the years (api.md section 7), so this is a table, not a string compare, and it is pure.

use serde::Deserialize;

/// The grant a token request asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    AccountCredentials,
}

impl GrantType {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::AccountCredentials => "account_credentials",
        }
    }
}

/// Zoom's error body, in any of its shapes: the OAuth one (`{"reason", "error"}`), the REST one
/// (`{"code", "message"}`) and the one its web endpoints use (`{"errorCode", "errorMessage"}`).
/// Every field is optional: Zoom has sent each of them alone.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default, alias = "errorCode")]
    pub code: Option<u32>,
    #[serde(default, alias = "errorMessage")]
    pub message: Option<String>,
}

impl ErrorBody {
    /// None when the body is not a JSON object (an HTML error page from a proxy, say): such an
    /// answer says nothing about the grant and must not be read as a verdict on it.
    pub fn parse(body: &[u8]) -> Option<ErrorBody> {
        serde_json::from_slice(body).ok()
    }

    /// Zoom's words, whichever field carried them.
    pub fn text(&self) -> Option<&str> {
        fn words(t: &Option<String>) -> Option<&str> {
            t.as_deref().filter(|t| !t.trim().is_empty())
        }
        words(&self.reason).or(words(&self.message))
    }
}

/// What a refusal means for whoever has to act on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// The grant presented is dead: a revoked, rotated-out or expired refresh token, a used or
    /// expired authorization code, an account ID the app does not belong to. Only a new
    /// authorization (or, for Server-to-Server, fixing the account) helps.
    GrantRejected,
    /// The client ID or client secret is wrong, missing, or names no app.
    ClientRejected,
    /// The app itself is disabled at Zoom (4717): nothing the connection holds will work.
    AppDisabled,
    /// An API call's access token was not accepted (expired, revoked, malformed).
    AccessTokenRejected,
    /// An API call's access token lacks a scope the call needs (4711).
    ScopeMissing,
    /// The request was refused for what it asked, not for the grant it carried.
    Request(RequestProblem),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestProblem {
    /// 4705 / `unsupported_grant_type`: e.g. an OAuth app asked for account_credentials.
    UnsupportedGrantType,
    /// 4709: the redirect URL is not registered for the app (or differs from the authorize step).
    RedirectUriMismatch,
    /// A required parameter is missing: a bug on our side.
    MissingParameter,
    /// Anything else, including bodies we cannot read.
    Other,
}

impl Rejection {
    /// A fixed metric label.
    pub fn label(self) -> &'static str {
        match self {
            Rejection::GrantRejected => "invalid_grant",
            Rejection::ClientRejected => "invalid_client",
            Rejection::AppDisabled => "app_disabled",
            Rejection::AccessTokenRejected => "invalid_token",
            Rejection::ScopeMissing => "missing_scope",
            Rejection::Request(_) => "rejected",
        }
    }
}

fn mentions(text: Option<&str>, needle: &str) -> bool {
    text.is_some_and(|t| t.to_ascii_lowercase().contains(needle))
}

/// Zoom's numeric codes, where they decide the matter on their own (Zoom's "OAuth error
/// messages" table, developers.zoom.us/docs/integrations/oauth-error-messages/).
fn by_code(code: u32, grant: Option<GrantType>, text: Option<&str>) -> Option<Rejection> {
    Some(match code {
        // "Invalid client." / "Invalid client secret." / "Client ID does not match ...".
        4702 | 4704 => Rejection::ClientRejected,
        // 4706 is both "Client ID or client secret is missing." and "Missing grant type.".
        4706 if mentions(text, "grant type") => {
            Rejection::Request(RequestProblem::MissingParameter)
        }
        4706 => Rejection::ClientRejected,
        4705 => Rejection::Request(RequestProblem::UnsupportedGrantType),
        4709 => Rejection::Request(RequestProblem::RedirectUriMismatch),
        4717 => Rejection::AppDisabled,
        // On /oauth/token 4711 is "Refresh token invalid." (its scopes no longer match the
        // app's); on the REST API it is "Invalid access token, does not contain scopes".
        4711 if grant.is_some() => Rejection::GrantRejected,
        4711 => Rejection::ScopeMissing,
        // Code expired, invalid code, token owner gone, grant not found, disabled by an
        // admin, out of tolerance, revoked by a newer authorization.
        4733 | 4734 | 4735 | 4737 | 4738 | 4740 | 4741 => Rejection::GrantRejected,
        // On the REST API: "Invalid access token." (124) and 4700's "Token cannot be empty".
        124 | 4700 if grant.is_none() => Rejection::AccessTokenRejected,
        _ => return None,
    })
}

/// Classifies a refusal of `POST /oauth/token`. Pure; the table tests below are built from
/// answers Zoom has really given.
pub fn classify_token_error(grant: GrantType, status: u16, body: Option<&ErrorBody>) -> Rejection {
    let Some(body) = body else {
        return Rejection::Request(RequestProblem::Other);
    };
    if !matches!(status, 400 | 401) {
        return Rejection::Request(RequestProblem::Other);
    }
    let text = body.text();
    if let Some(found) = body.code.and_then(|c| by_code(c, Some(grant), text)) {
        return found;
    }
    let error = body.error.as_deref().unwrap_or_default();
    // Only invalid_client, or a 401 whose words are about the client, is the client's fault:
    // Zoom has answered dead refresh tokens with a bare 401 too.
    let about_client = mentions(text, "client_id")
        || mentions(text, "client id")
        || mentions(text, "client secret")
        || mentions(text, "client_secret")
        || mentions(text, "invalid client");
    if error == "invalid_client" || (status == 401 && about_client) {
        return Rejection::ClientRejected;
    }
    if error == "unsupported_grant_type" {
        return Rejection::Request(RequestProblem::UnsupportedGrantType);
    }
    if mentions(text, "redirect") {
        return Rejection::Request(RequestProblem::RedirectUriMismatch);
    }
    if error == "invalid_grant" {
        return Rejection::GrantRejected;
    }
    if mentions(text, "missing") {
        return Rejection::Request(RequestProblem::MissingParameter);
    }
    let about_the_grant = match grant {
        GrantType::RefreshToken => text.is_none() || mentions(text, "token"),
        GrantType::AuthorizationCode => text.is_none() || mentions(text, "code"),
        GrantType::AccountCredentials => text.is_none() || mentions(text, "account"),
    };
    match error {
        "invalid_request" | "" if about_the_grant => Rejection::GrantRejected,
        _ => Rejection::Request(RequestProblem::Other),
    }
}

/// Classifies a refusal of a REST call (`GET /v2/users/me`): Zoom's `{"code", "message"}`.
pub fn classify_api_error(status: u16, body: Option<&ErrorBody>) -> Rejection {
    if let Some(found) = body
        .and_then(|b| b.code.map(|c| (c, b.text())))
        .and_then(|(c, text)| by_code(c, None, text))
    {
        return found;
    }
    if status == 401 {
        Rejection::AccessTokenRejected
    } else {
        Rejection::Request(RequestProblem::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use GrantType::*;
    use Rejection::*;
    use RequestProblem::*;

    fn body(json: &str) -> Option<ErrorBody> {
        ErrorBody::parse(json.as_bytes())
    }

    /// (grant, status, body, expected, where the answer comes from)
    const TOKEN_ANSWERS: &[(GrantType, u16, &str, Rejection, &str)] = &[
        // Dead refresh tokens, in every form Zoom has used.
        (RefreshToken, 400, r#"{"reason":"Invalid Token!","error":"invalid_grant"}"#, GrantRejected,
            "raycast/extensions#10896 (2024): a rotated-out refresh token"),
        (RefreshToken, 400, r#"{"error":"invalid_grant"}"#, GrantRejected,
            "raycast/extensions#10525 (2024): no reason at all"),
        (RefreshToken, 401, r#"{"reason":"Invalid Token!","error":"invalid_grant"}"#, GrantRejected,
            "tl-its-umich-edu/remote-office-hours-queue#363: Zoom answered 401 before 2022, 400 after"),
        (RefreshToken, 401, r#"{"error":"invalid_grant"}"#, GrantRejected,
            "the same, without a reason"),
        (RefreshToken, 400, r#"{"reason":"Invalid Token!","error":"invalid_request"}"#, GrantRejected,
            "calcom/cal.diy#729 (2021): a refresh token already rotated by a concurrent request"),
        (RefreshToken, 401, r#"{"error":"invalid_request"}"#, GrantRejected,
            "api.md section 7: 401 invalid_request without a reason"),
        (RefreshToken, 401, r#"{}"#, GrantRejected,
            "api.md section 7: no reason (and here no error either) on a 401 is still the token"),
        (RefreshToken, 400, r#"{"reason":"Refresh token invalid.","code":4711}"#, GrantRejected,
            "Zoom's OAuth error messages table: 4711, token scopes no longer match the app's"),
        (RefreshToken, 400, r#"{"reason":"The token has been revoked.","code":4741}"#, GrantRejected,
            "Zoom's table: 4741, a newer authorization replaced this grant"),
        (RefreshToken, 400, r#"{"reason":"The owner of the token does not exist.","code":4735}"#, GrantRejected,
            "Zoom's table: 4735"),
        // The client's fault, and only then.
        (RefreshToken, 401, r#"{"reason":"Invalid client_id or client_secret","error":"invalid_client"}"#, ClientRejected,
            "Zoom's answer to a wrong secret (zoom-sim models it; devforum threads quote it)"),
        (RefreshToken, 401, r#"{"reason":"Invalid client_id or client_secret"}"#, ClientRejected,
            "api.md section 7: a 401 whose reason says the client ID or secret is invalid"),
        (RefreshToken, 400, r#"{"reason":"Invalid client secret.","code":4704}"#, ClientRejected,
            "Zoom's table: 4702/4704"),
        (AuthorizationCode, 400, r#"{"status":false,"errorCode":4702,"errorMessage":"Invalid client_id: abc"}"#, ClientRejected,
            "Zoom's web endpoints answer errorCode/errorMessage (quoted in alexxvives/Academo docs)"),
        (RefreshToken, 400, r#"{"reason":"Client ID or client secret is missing.","code":4706}"#, ClientRejected,
            "Zoom's table: 4706 (credentials missing)"),
        (AccountCredentials, 400, r#"{"reason":"Missing grant type.","code":4706}"#, Request(MissingParameter),
            "Zoom's table: 4706 (grant type missing)"),
        (RefreshToken, 400, r#"{"reason":"The app has been disabled","code":4717}"#, AppDisabled,
            "Zoom's table: 4717"),
        // Authorization codes.
        (AuthorizationCode, 400, r#"{"reason":"Invalid authorization code mk1Cq8Pap6_PatCmZLwQxKCZOUJsBwojQ","error":"invalid_request"}"#, GrantRejected,
            "devforum.zoom.us/t/12302: a used code, echoed whole"),
        (AuthorizationCode, 400, r#"{"reason":"Invalid authorization code abcd…","error":"invalid_grant"}"#, GrantRejected,
            "zoom-sim's redacted form"),
        (AuthorizationCode, 400, r#"{"reason":"Code is expired","code":4733}"#, GrantRejected,
            "Zoom's table: 4733"),
        (AuthorizationCode, 400, r#"{"reason":"Redirect URI mismatch.","error":"invalid_request","code":4709}"#, Request(RedirectUriMismatch),
            "Zoom's table: 4709"),
        (AuthorizationCode, 400, r#"{"reason":"Invalid redirect: https://x/cb","error":"invalid_request"}"#, Request(RedirectUriMismatch),
            "the same without a code"),
        (AuthorizationCode, 400, r#"{"reason":"Missing parameter: code_verifier","error":"invalid_request"}"#, Request(MissingParameter),
            "zoom-sim; a bug on our side, not the user's"),
        // Grant types and Server-to-Server.
        (AccountCredentials, 400, r#"{"reason":"unsupported grant type","error":"unsupported_grant_type"}"#, Request(UnsupportedGrantType),
            "developers.zoom.us/blog/s2s-token-generation-troubleshoot: an OAuth app's credentials used for S2S"),
        (AccountCredentials, 400, r#"{"reason":"Grant type is not supported from token endpoint.","code":4705}"#, Request(UnsupportedGrantType),
            "Zoom's table: 4705"),
        (AccountCredentials, 400, r#"{"reason":"Invalid account_id","error":"invalid_request"}"#, GrantRejected,
            "zoom-sim: an account the app does not belong to"),
        // Not verdicts on anything.
        (RefreshToken, 400, "<html>bad gateway</html>", Request(Other),
            "a proxy's page: the grant may be fine"),
        (RefreshToken, 403, r#"{"error":"invalid_grant"}"#, Request(Other),
            "outside the 400/401 Zoom uses for OAuth errors"),
        (RefreshToken, 400, r#"{"reason":"Exception message","code":4700}"#, Request(Other),
            "Zoom's table: 4700 on the token endpoint is a catch-all"),
        (RefreshToken, 400, r#"{"reason":"something odd","error":"invalid_request"}"#, Request(Other),
            "invalid_request about something other than the token"),
    ];

    #[test]
    fn token_endpoint_answers_are_classified() {
        for (grant, status, raw, want, source) in TOKEN_ANSWERS {
            let got = classify_token_error(*grant, *status, body(raw).as_ref());
            assert_eq!(got, *want, "{} {status} {raw} ({source})", grant.as_str());
        }
    }

    #[test]
    fn api_answers_are_classified() {
        let table: &[(u16, &str, Rejection, &str)] = &[
            (
                401,
                r#"{"code":124,"message":"Invalid access token."}"#,
                AccessTokenRejected,
                "api.md section 7",
            ),
            (
                401,
                r#"{"code":124,"message":"Access token is expired."}"#,
                AccessTokenRejected,
                "api.md section 7",
            ),
            (
                400,
                r#"{"code":4711,"message":"Invalid access token, does not contain scopes:[user:read:user, user:read:user:admin]."}"#,
                ScopeMissing,
                "devforum.zoom.us/t/108207: the 4711 wording",
            ),
            (
                401,
                r#"{"code":4700,"message":"Token cannot be empty."}"#,
                AccessTokenRejected,
                "Zoom's table: 4700",
            ),
            (
                400,
                r#"{"code":4717,"message":"The app has been disabled"}"#,
                AppDisabled,
                "Zoom's table: 4717",
            ),
            (401, "", AccessTokenRejected, "a bare 401"),
            (
                404,
                r#"{"code":1001,"message":"User does not exist"}"#,
                Request(Other),
                "not about the token",
            ),
        ];
        for (status, raw, want, source) in table {
            let got = classify_api_error(*status, body(raw).as_ref());
            assert_eq!(got, *want, "{status} {raw} ({source})");
        }
    }

    #[test]
    fn bodies_of_any_shape_parse() {
        assert_eq!(body("[1]"), None);
        assert_eq!(body("not json"), None);
        let b =
            body(r#"{"errorCode":4709,"errorMessage":"Redirect URI mismatch.","status":false}"#)
                .expect("object");
        assert_eq!(
            (b.code, b.text()),
            (Some(4709), Some("Redirect URI mismatch."))
        );
        let b = body(r#"{"reason":"  ","message":"words"}"#).expect("object");
        assert_eq!(
            b.text(),
            Some("words"),
            "a blank reason gives way to the message"
        );
        assert_eq!(body("{}").expect("object").text(), None);
    }
}
