//! App specs (`--app k=v,...`, `POST /sim/apps`, the config file) and the config file.
//!
//! One [`AppSpec`] type serves all three entry points so that defaults and
//! validation are the same everywhere.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::delivery::RetryTimestamp;
use crate::ratelimit::RateLimitSettings;
use crate::state::{
    App, AppKind, CodeRejection, ConsentMode, RefreshRejection, RefreshTokenExpiry, User,
};
use crate::tokens;

/// An app as described by a user; every field optional until [`AppSpec::into_app`].
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AppSpec {
    pub kind: Option<String>,
    pub name: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub secret_token: Option<String>,
    pub account_id: Option<String>,
    pub user_id: Option<String>,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// Space- (or `+`-) separated, as in Zoom's token answers.
    pub scopes: Option<String>,
    pub event_url: Option<String>,
    /// The legacy webhook verification token [default: derived from the client_id].
    pub verification_token: Option<String>,
    /// Regional API base URL for token answers, e.g. `https://api-eu.zoom.us`.
    pub api_url: Option<String>,
    /// Registered redirect URLs, space- (or `+`-) separated; unset means any URL is accepted.
    pub redirect_urls: Option<String>,
    /// The OAuth allow list: base URLs or URLs, space- (or `+`-) separated.
    pub allow_list: Option<String>,
    /// Where `app_deauthorized` goes [default: event_url].
    pub deauthorization_url: Option<String>,
}

/// The `k=v` keys accepted by `--app`, in the order the help text lists them.
pub const APP_SPEC_KEYS: &[&str] = &[
    "kind",
    "client_id",
    "client_secret",
    "secret_token",
    "account_id",
    "user_id",
    "email",
    "event_url",
    "name",
    "scopes",
    "first_name",
    "last_name",
    "verification_token",
    "api_url",
    "redirect_urls",
    "allow_list",
    "deauthorization_url",
];

/// The result of turning a spec into an app; says whether a secret was made up.
#[derive(Clone, Debug)]
pub struct BuiltApp {
    pub app: App,
    /// No `secret_token` was given, so webhooks are signed with a random one.
    pub generated_secret_token: bool,
}

impl AppSpec {
    /// Parses `kind=oauth,client_id=ID,...`. Values cannot contain commas.
    pub fn parse_cli(spec: &str) -> Result<AppSpec, String> {
        let mut out = AppSpec::default();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("app spec item {part:?} is not key=value"))?;
            let (key, value) = (key.trim(), value.trim().to_owned());
            let slot = match key {
                "kind" => &mut out.kind,
                "name" => &mut out.name,
                "client_id" => &mut out.client_id,
                "client_secret" => &mut out.client_secret,
                "secret_token" => &mut out.secret_token,
                "account_id" => &mut out.account_id,
                "user_id" => &mut out.user_id,
                "email" => &mut out.email,
                "first_name" => &mut out.first_name,
                "last_name" => &mut out.last_name,
                "scopes" => &mut out.scopes,
                "event_url" => &mut out.event_url,
                "verification_token" => &mut out.verification_token,
                "api_url" => &mut out.api_url,
                "redirect_urls" => &mut out.redirect_urls,
                "allow_list" => &mut out.allow_list,
                "deauthorization_url" => &mut out.deauthorization_url,
                other => {
                    return Err(format!(
                        "unknown app spec key {other:?} (known: {})",
                        APP_SPEC_KEYS.join(", ")
                    ));
                }
            };
            if slot.replace(value).is_some() {
                return Err(format!("app spec key {key:?} given twice"));
            }
        }
        Ok(out)
    }

    /// Validates and fills in defaults. client_id and client_secret are always
    /// required; an S2S app also needs account_id, since that is the credential
    /// its token requests are checked against. Everything else is derived from
    /// the client_id (stable across restarts) or, for secret_token, random.
    pub fn into_app(self) -> Result<BuiltApp, String> {
        let kind: AppKind = match self.kind.as_deref().filter(|k| !k.is_empty()) {
            None => AppKind::Oauth,
            Some(k) => k.parse()?,
        };
        let client_id = required(self.client_id, "client_id")?;
        let client_secret = required(self.client_secret, "client_secret")?;
        let account_id = match (kind, present(self.account_id)) {
            (_, Some(id)) => id,
            (AppKind::Oauth, None) => derive_id("account", &client_id),
            (AppKind::S2s, None) => {
                return Err(
                    "an s2s app needs account_id (its token requests are checked against it)"
                        .to_owned(),
                )
            }
        };
        let user_id = present(self.user_id).unwrap_or_else(|| derive_id("user", &client_id));
        let email = match present(self.email) {
            Some(email) if !email.contains('@') => {
                return Err(format!("email {email:?} is not an email address"))
            }
            Some(email) => email,
            None => format!(
                "user-{}@example.com",
                &hex::encode(Sha256::digest(format!("email:{client_id}")))[..10]
            ),
        };
        let event_url = http_url("event_url", present(self.event_url))?;
        let api_url =
            http_url("api_url", present(self.api_url))?.map(|u| u.trim_end_matches('/').to_owned());
        let verification_token = match present(self.verification_token) {
            // Sent as a header value: visible ASCII only.
            Some(v) if !v.bytes().all(|b| b.is_ascii_graphic()) => {
                return Err("verification_token must be printable ASCII without spaces".to_owned())
            }
            Some(v) => v,
            None => derive_id("verification", &client_id),
        };
        let redirect_urls = url_list("redirect_urls", self.redirect_urls)?;
        let allow_list = url_list("allow_list", self.allow_list)?;
        let deauthorization_url =
            http_url("deauthorization_url", present(self.deauthorization_url))?;
        let scopes: Vec<String> = match present(self.scopes) {
            Some(s) => parse_scopes(&s)?,
            None => default_scopes(kind),
        };
        let generated_secret_token = self.secret_token.as_deref().is_none_or(str::is_empty);
        let secret_token = present(self.secret_token).unwrap_or_else(|| tokens::random_b64(16));
        Ok(BuiltApp {
            app: App {
                kind,
                name: present(self.name).unwrap_or_else(|| format!("zoom-sim app {client_id}")),
                client_id,
                client_secret,
                secret_token,
                account_id,
                user_id,
                email,
                first_name: present(self.first_name).unwrap_or_else(|| "Sim".to_owned()),
                last_name: present(self.last_name).unwrap_or_else(|| "User".to_owned()),
                scopes,
                event_url,
                verification_token,
                api_url,
                previous_client_secret: None,
                previous_secret_token: None,
                redirect_urls,
                allow_list,
                deauthorization_url,
                disabled: false,
            },
            generated_secret_token,
        })
    }
}

/// Splits a space- (or `+`-) separated list.
fn split_list(s: &str) -> impl Iterator<Item = &str> {
    s.split([' ', '+']).filter(|item| !item.is_empty())
}

/// A list of redirect-URI-shaped URLs (absolute http(s), a host, no fragment).
fn url_list(name: &str, raw: Option<String>) -> Result<Vec<String>, String> {
    let urls: Vec<String> = present(raw)
        .map(|s| split_list(&s).map(str::to_owned).collect())
        .unwrap_or_default();
    for url in &urls {
        crate::state::validate_redirect_uri(url).map_err(|e| format!("{name}: {url:?}: {e}"))?;
    }
    Ok(urls)
}

/// Scopes, space- (or `+`-) separated; at most 100 of printable ASCII.
pub fn parse_scopes(raw: &str) -> Result<Vec<String>, String> {
    let scopes: Vec<String> = split_list(raw).map(str::to_owned).collect();
    if scopes.len() > 100
        || scopes
            .iter()
            .any(|s| s.len() > 128 || !s.bytes().all(|b| b.is_ascii_graphic()))
    {
        return Err("scopes must be at most 100 names of printable ASCII".to_owned());
    }
    Ok(scopes)
}

/// A Zoom user to register for an app (`POST /sim/apps/{client_id}/users`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    pub user_id: Option<String>,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// [default: the app's account]
    pub account_id: Option<String>,
}

impl UserSpec {
    /// Validates and fills in defaults, derived from the app's client_id and `n` (the user's
    /// place among the app's registered users, from 1), so they are stable across runs.
    pub fn into_user(self, app: &App, n: usize) -> Result<User, String> {
        let field = |value: Option<String>, name: &str| -> Result<Option<String>, String> {
            match present(value) {
                Some(v) if v.len() > 256 || v.chars().any(char::is_control) => {
                    Err(format!("{name} must be at most 256 printable characters"))
                }
                other => Ok(other),
            }
        };
        let seed = format!("{}:{n}", app.client_id);
        let user_id = field(self.user_id, "user_id")?.unwrap_or_else(|| derive_id("user", &seed));
        if user_id.eq_ignore_ascii_case("me") || user_id.contains('/') {
            return Err(format!(
                "user_id {user_id:?} cannot name a user in a URL path"
            ));
        }
        let email = match field(self.email, "email")? {
            Some(email) if !email.contains('@') => {
                return Err(format!("email {email:?} is not an email address"))
            }
            Some(email) => email,
            None => format!(
                "user-{}@example.com",
                &hex::encode(Sha256::digest(format!("email:{seed}")))[..10]
            ),
        };
        Ok(User {
            user_id,
            email,
            first_name: field(self.first_name, "first_name")?.unwrap_or_else(|| "Sim".to_owned()),
            last_name: field(self.last_name, "last_name")?.unwrap_or_else(|| format!("User {n}")),
            account_id: field(self.account_id, "account_id")?
                .unwrap_or_else(|| app.account_id.clone()),
        })
    }
}

/// An optional absolute http(s) URL.
fn http_url(name: &str, raw: Option<String>) -> Result<Option<String>, String> {
    let Some(raw) = raw else { return Ok(None) };
    let url =
        url::Url::parse(&raw).map_err(|e| format!("{name} {raw:?} is not an absolute URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{name} {raw:?} must be http or https"));
    }
    Ok(Some(raw))
}

fn present(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

fn required(value: Option<String>, name: &str) -> Result<String, String> {
    present(value).ok_or_else(|| format!("app spec needs {name}"))
}

/// Granular scopes like the ones Zoom returns for apps created since 2024.
fn default_scopes(kind: AppKind) -> Vec<String> {
    let scopes: &[&str] = match kind {
        AppKind::Oauth => &["meeting:read:meeting", "user:read:user"],
        AppKind::S2s => &["meeting:read:meeting:admin", "user:read:user:admin"],
    };
    scopes.iter().map(|s| (*s).to_owned()).collect()
}

/// A stable, Zoom-looking id (22 base64url characters, like Zoom user ids) derived from the client_id.
pub fn derive_id(purpose: &str, client_id: &str) -> String {
    let digest = Sha256::digest(format!("zoom-sim:{purpose}:{client_id}"));
    URL_SAFE_NO_PAD.encode(&digest[..16])
}

/// The `--config FILE` format (JSON). Flags given on the command line win.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub public_url: Option<String>,
    pub token_lifetime_secs: Option<u64>,
    pub refresh_token_lifetime_secs: Option<u64>,
    pub consent: Option<ConsentMode>,
    pub refresh_rejection: Option<RefreshRejection>,
    pub code_rejection: Option<CodeRejection>,
    pub grant_tolerance: Option<u32>,
    pub refresh_token_expiry: Option<RefreshTokenExpiry>,
    pub revoke_sends_deauthorization: Option<bool>,
    #[serde(default)]
    pub apps: Vec<AppSpec>,
    pub webhook_timeout_ms: Option<u64>,
    pub webhook_retries: Option<bool>,
    pub retry_timestamp: Option<RetryTimestamp>,
    pub duplicate_rate: Option<f64>,
    pub webhook_request_id_header: Option<bool>,
    pub legacy_authorization_header: Option<bool>,
    pub max_pending_webhooks: Option<usize>,
    pub rate_limit: Option<RateLimitSettings>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
        serde_json::from_str(&text)
            .map_err(|e| format!("config file {} is not valid: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_cli_spec() {
        let spec = AppSpec::parse_cli(
            "kind=oauth,client_id=abc,client_secret=s3,secret_token=t,account_id=A,user_id=U,email=e@x.example,event_url=http://127.0.0.1:9/zoom/event",
        )
        .expect("parses");
        let built = spec.into_app().expect("valid");
        let app = built.app;
        assert_eq!(
            (app.kind, app.client_id.as_str(), app.account_id.as_str()),
            (AppKind::Oauth, "abc", "A")
        );
        assert_eq!(
            app.event_url.as_deref(),
            Some("http://127.0.0.1:9/zoom/event")
        );
        assert!(!built.generated_secret_token);
    }

    #[test]
    fn derives_defaults() {
        let built = AppSpec::parse_cli("client_id=abc,client_secret=s")
            .expect("parses")
            .into_app()
            .expect("valid");
        assert_eq!(built.app.kind, AppKind::Oauth);
        assert_eq!(built.app.user_id, derive_id("user", "abc"));
        assert_eq!(built.app.user_id.len(), 22);
        assert!(built.app.email.ends_with("@example.com"));
        assert!(built.generated_secret_token);
        assert_eq!(
            built.app.scope_string(),
            "meeting:read:meeting user:read:user"
        );
        // Stable across runs.
        let again = AppSpec::parse_cli("client_id=abc,client_secret=s")
            .expect("parses")
            .into_app()
            .expect("valid");
        assert_eq!(
            (again.app.user_id, again.app.email),
            (built.app.user_id, built.app.email)
        );
    }

    #[test]
    fn rejects_bad_specs() {
        for (spec, needle) in [
            ("client_id=a", "client_secret"),
            ("client_secret=s", "client_id"),
            ("kind=s2s,client_id=a,client_secret=s", "account_id"),
            ("kind=jwt,client_id=a,client_secret=s", "kind"),
            ("client_id=a,client_secret=s,colour=red", "unknown"),
            ("client_id=a,client_id=b,client_secret=s", "twice"),
            (
                "client_id=a,client_secret=s,event_url=/relative",
                "event_url",
            ),
            ("client_id=a,client_secret=s,email=nope", "email"),
            ("client_id=a,client_secret=s,api_url=ftp://x", "api_url"),
            (
                "client_id=a,client_secret=s,verification_token=a\u{1}b",
                "verification_token",
            ),
            ("client_id", "key=value"),
        ] {
            let err = AppSpec::parse_cli(spec)
                .and_then(AppSpec::into_app)
                .expect_err(spec);
            assert!(err.contains(needle), "{spec}: {err}");
        }
    }

    #[test]
    fn json_spec_rejects_unknown_fields() {
        let err = serde_json::from_str::<AppSpec>(
            r#"{"client_id":"a","client_secret":"s","secret":"x"}"#,
        )
        .expect_err("unknown");
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn redirect_urls_are_registered_and_checked() {
        let app = AppSpec::parse_cli(
            "client_id=a,client_secret=s,redirect_urls=https://x.example/cb+http://127.0.0.1:8080/cb",
        )
        .and_then(AppSpec::into_app)
        .expect("valid")
        .app;
        assert_eq!(
            app.redirect_urls,
            vec!["https://x.example/cb", "http://127.0.0.1:8080/cb"]
        );
        assert!(app.accepts_redirect("https://x.example/cb"));
        assert!(!app.accepts_redirect("https://x.example/cb/"));
        let any = AppSpec::parse_cli("client_id=a,client_secret=s")
            .and_then(AppSpec::into_app)
            .expect("valid")
            .app;
        assert!(any.redirect_urls.is_empty() && any.accepts_redirect("https://anything.example/"));
        let err = AppSpec::parse_cli("client_id=a,client_secret=s,redirect_urls=/relative")
            .and_then(AppSpec::into_app)
            .expect_err("relative");
        assert!(err.contains("redirect_urls"), "{err}");
    }

    #[test]
    fn config_file_names_the_dialects() {
        let file: FileConfig = serde_json::from_str(
            r#"{"refresh_rejection":"no_reason_401","code_rejection":"echoed"}"#,
        )
        .expect("valid");
        assert_eq!(file.refresh_rejection, Some(RefreshRejection::NoReason401));
        assert_eq!(file.code_rejection, Some(CodeRejection::Echoed));
        assert!(serde_json::from_str::<FileConfig>(r#"{"refresh_rejection":"teapot"}"#).is_err());
    }

    #[test]
    fn scopes_accept_spaces_and_plus() {
        let app = AppSpec::parse_cli("client_id=a,client_secret=s,scopes=a:b+c:d")
            .and_then(AppSpec::into_app)
            .expect("valid")
            .app;
        assert_eq!(app.scopes, vec!["a:b", "c:d"]);
    }
}
