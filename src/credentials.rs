//! A Zoom app's credentials, read out of a Kubernetes Secret.
//!
//! Pure: the reconciler fetches the Secret; this module decides whether it is usable and, if
//! not, says exactly which key is missing. Values never reach `Debug` output.

use std::fmt;

use k8s_openapi::api::core::v1::Secret;

use crate::api::{AuthType, CredentialsRef, ObjectRef, ZoomConnection};

/// Client ID, client secret and the optional webhook token and account ID of one Zoom app.
#[derive(Clone, PartialEq, Eq)]
pub struct AppCredentials {
    pub client_id: String,
    pub client_secret: String,
    /// The webhook secret token; absent when the app does not send events here.
    pub secret_token: Option<String>,
    /// Server-to-Server apps only.
    pub account_id: Option<String>,
}

impl fmt::Debug for AppCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppCredentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field(
                "secret_token",
                &self.secret_token.as_ref().map(|_| "<redacted>"),
            )
            .field("account_id", &self.account_id)
            .finish()
    }
}

/// Why a credentials Secret cannot be used; maps to a `CredentialsReady` reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialsProblem {
    SecretNotFound {
        namespace: String,
        name: String,
    },
    MissingKey {
        namespace: String,
        name: String,
        key: String,
        field: &'static str,
    },
    DefaultAppNotConfigured,
    DefaultAppUnavailable(Box<CredentialsProblem>),
}

impl CredentialsProblem {
    pub fn reason(&self) -> &'static str {
        match self {
            CredentialsProblem::SecretNotFound { .. } => "SecretNotFound",
            CredentialsProblem::MissingKey { .. } => "MissingKey",
            CredentialsProblem::DefaultAppNotConfigured
            | CredentialsProblem::DefaultAppUnavailable(_) => "DefaultAppNotConfigured",
        }
    }

    pub fn message(&self) -> String {
        match self {
            CredentialsProblem::SecretNotFound { namespace, name } => format!(
                "Secret {namespace}/{name} does not exist; create it with the Zoom app's client ID and secret or fix spec.credentialsRef.name"
            ),
            CredentialsProblem::MissingKey { namespace, name, key, field } => format!(
                "Secret {namespace}/{name} has no key {key}; add it or set spec.credentialsRef.{field}"
            ),
            CredentialsProblem::DefaultAppNotConfigured => {
                "authType DefaultOAuth needs the operator-wide default app, but the operator was started without --default-app-secret; ask the platform team or use PrivateOAuth".to_owned()
            }
            CredentialsProblem::DefaultAppUnavailable(inner) => format!(
                "The operator-wide default app (--default-app-secret) is not usable: {}; ask the platform team to fix it",
                inner.message()
            ),
        }
    }
}

/// Where a connection's app lives: the Secret named by its own `credentialsRef` (in its
/// namespace), or for DefaultOAuth the operator-wide default app's Secret. Pure; the one
/// resolver that the controller, the OAuth handlers and the webhook index all use.
pub fn app_secret(
    zc: &ZoomConnection,
    default_app: Option<&ObjectRef>,
) -> Result<(ObjectRef, CredentialsRef), CredentialsProblem> {
    let namespace = zc.metadata.namespace.clone().unwrap_or_default();
    match (zc.spec.auth_type, &zc.spec.credentials_ref) {
        (AuthType::DefaultOAuth, _) => {
            let default = default_app.ok_or(CredentialsProblem::DefaultAppNotConfigured)?;
            Ok((
                default.clone(),
                CredentialsRef::with_name(default.name.clone()),
            ))
        }
        (_, Some(reference)) => Ok((
            ObjectRef::new(namespace, reference.name.clone()),
            reference.clone(),
        )),
        // Rejected by the CRD schema; kept as a clear condition for older API servers.
        (_, None) => Err(CredentialsProblem::SecretNotFound {
            namespace,
            name: "(spec.credentialsRef is not set)".to_owned(),
        }),
    }
}

/// A connection's app credentials as read from the API server, with the Secret they come
/// from (as shown in status) and its resourceVersion (to notice changes).
pub struct AppRead {
    pub credentials: Result<AppCredentials, CredentialsProblem>,
    pub secret: String,
    pub version: Option<String>,
}

/// Reads the credentials `zc` uses (see [`app_secret`]).
pub async fn read_app(
    client: &kube::Client,
    zc: &ZoomConnection,
    default_app: Option<&ObjectRef>,
) -> Result<AppRead, kube::Error> {
    let secret = match app_secret(zc, default_app) {
        Ok((secret_ref, _)) => {
            kube::Api::<Secret>::namespaced(client.clone(), &secret_ref.namespace)
                .get_opt(&secret_ref.name)
                .await?
        }
        Err(_) => None,
    };
    Ok(app_from(zc, default_app, secret.as_ref()))
}

/// What `zc`'s app Secret says, given that Secret as read (None: it does not exist). Pure.
pub fn app_from(
    zc: &ZoomConnection,
    default_app: Option<&ObjectRef>,
    secret: Option<&Secret>,
) -> AppRead {
    let (secret_ref, reference) = match app_secret(zc, default_app) {
        Ok(found) => found,
        Err(problem) => {
            return AppRead {
                credentials: Err(problem),
                secret: "(none)".to_owned(),
                version: None,
            }
        }
    };
    let version = secret.and_then(|s| s.metadata.resource_version.clone());
    let auth_type = zc.spec.auth_type;
    let mut credentials = from_secret(&secret_ref.namespace, &reference, auth_type, secret);
    if auth_type == AuthType::DefaultOAuth {
        credentials =
            credentials.map_err(|p| CredentialsProblem::DefaultAppUnavailable(Box::new(p)));
    }
    AppRead {
        credentials,
        secret: secret_ref.to_string(),
        version,
    }
}

/// The value of `key` in `secret`, trimmed; None when absent, empty or not UTF-8. `stringData`
/// only appears on objects not yet round-tripped through the API server, but honouring it
/// keeps unit tests and dry runs honest.
pub fn secret_value(secret: &Secret, key: &str) -> Option<String> {
    let from_data = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .and_then(|v| String::from_utf8(v.0.clone()).ok());
    from_data
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(key))
                .cloned()
        })
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// Reads the app credentials an auth type needs from `secret` (which may not exist).
pub fn from_secret(
    namespace: &str,
    reference: &CredentialsRef,
    auth_type: AuthType,
    secret: Option<&Secret>,
) -> Result<AppCredentials, CredentialsProblem> {
    let secret = secret.ok_or_else(|| CredentialsProblem::SecretNotFound {
        namespace: namespace.to_owned(),
        name: reference.name.clone(),
    })?;
    let value = |key: &str| secret_value(secret, key);
    let required = |key: &str, field: &'static str| {
        value(key).ok_or_else(|| CredentialsProblem::MissingKey {
            namespace: namespace.to_owned(),
            name: reference.name.clone(),
            key: key.to_owned(),
            field,
        })
    };
    let client_id = required(&reference.client_id_key, "clientIdKey")?;
    let client_secret = required(&reference.client_secret_key, "clientSecretKey")?;
    let account_id = match auth_type {
        AuthType::ServerToServer => Some(required(&reference.account_id_key, "accountIdKey")?),
        _ => value(&reference.account_id_key),
    };
    Ok(AppCredentials {
        client_id,
        client_secret,
        secret_token: value(&reference.secret_token_key),
        account_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    fn secret(pairs: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn reads_default_keys() {
        let s = secret(&[
            ("clientId", "id"),
            ("clientSecret", "shh\n"),
            ("secretToken", "tok"),
        ]);
        let creds = from_secret(
            "team-a",
            &CredentialsRef::with_name("zoom-app"),
            AuthType::PrivateOAuth,
            Some(&s),
        )
        .expect("valid");
        assert_eq!(creds.client_id, "id");
        assert_eq!(
            creds.client_secret, "shh",
            "trailing newline from `echo` is trimmed"
        );
        assert_eq!(creds.secret_token.as_deref(), Some("tok"));
        assert_eq!(creds.account_id, None);
    }

    #[test]
    fn problems_name_the_secret_and_key() {
        let reference = CredentialsRef::with_name("zoom-app");
        let missing =
            from_secret("team-a", &reference, AuthType::PrivateOAuth, None).expect_err("missing");
        assert_eq!(missing.reason(), "SecretNotFound");
        assert!(missing.message().contains("team-a/zoom-app"));

        let s = secret(&[("clientId", "id"), ("clientSecret", "  ")]);
        let err =
            from_secret("team-a", &reference, AuthType::PrivateOAuth, Some(&s)).expect_err("empty");
        assert_eq!(err.reason(), "MissingKey");
        assert_eq!(
            err.message(),
            "Secret team-a/zoom-app has no key clientSecret; add it or set spec.credentialsRef.clientSecretKey"
        );

        let s = secret(&[("clientId", "id"), ("clientSecret", "s")]);
        let err =
            from_secret("team-a", &reference, AuthType::ServerToServer, Some(&s)).expect_err("s2s");
        assert!(err.message().contains("no key accountId"));
    }

    #[test]
    fn custom_key_names() {
        let mut reference = CredentialsRef::with_name("zoom-app");
        reference.client_id_key = "ZOOM_CLIENT_ID".into();
        let s = secret(&[
            ("ZOOM_CLIENT_ID", "id"),
            ("clientSecret", "s"),
            ("accountId", "acc"),
        ]);
        let creds =
            from_secret("ns", &reference, AuthType::ServerToServer, Some(&s)).expect("valid");
        assert_eq!(creds.client_id, "id");
        assert_eq!(creds.account_id.as_deref(), Some("acc"));
    }

    #[test]
    fn debug_never_shows_secrets() {
        let s = secret(&[
            ("clientId", "id"),
            ("clientSecret", "hunter2"),
            ("secretToken", "tok-value"),
        ]);
        let creds = from_secret(
            "ns",
            &CredentialsRef::with_name("x"),
            AuthType::PrivateOAuth,
            Some(&s),
        )
        .expect("valid");
        let debug = format!("{creds:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("tok-value"),
            "{debug}"
        );
    }
}
