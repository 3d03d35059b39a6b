//! The `ZoomConnection` custom resource: spec, status and the generated CRD.
//!
//! The YAML under `crds/` is generated from these types (`zoom-operator crd`); rules the derive
//! cannot express (which fields go with which auth type) are added in [`crd`].

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::GO_DURATION_PATTERN;

// Limits of the schema, enforced by the CRD where the API server can (1.20 has no CEL) and
// again by `crate::validation`.

/// A DNS-1123 label, as Kubernetes Service names are: the CRD pattern for `ref.name`.
pub const DNS_LABEL_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
pub const DNS_LABEL_MAX: usize = 63;
/// A DNS-1123 subdomain, as Secret names are: the CRD pattern for Secret names.
pub const DNS_SUBDOMAIN_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
pub const DNS_SUBDOMAIN_MAX: usize = 253;
/// `ref.path`: absolute, and nothing that would end the path (query, fragment) or that some
/// servers read as a separator (backslash).
pub const SINK_PATH_PATTERN: &str = r"^/[^?#\\]*$";
pub const SINK_PATH_MAX: usize = 1024;
/// ISO 8601 durations of hours, minutes and (fractional) seconds, as Knative writes them.
pub const ISO_DURATION_PATTERN: &str = r"^PT(\d+H)?(\d+M)?(\d+(\.\d+)?S)?$";
pub const MAX_DELIVERY_RETRY: u32 = 100;
/// A namespaced object named by a flag or a reference: `NAMESPACE/NAME` on the command line.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    pub namespace: String,
    pub name: String,
}

impl ObjectRef {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> ObjectRef {
        ObjectRef {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl std::str::FromStr for ObjectRef {
    type Err = String;

    /// Parses `NAMESPACE/NAME` (as `--ingress` and `--default-app-secret` take it).
    fn from_str(value: &str) -> Result<ObjectRef, String> {
        match value.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(ObjectRef::new(ns, name))
            }
            _ => Err(format!("{value:?} is not NAMESPACE/NAME")),
        }
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

pub const GROUP: &str = "zoom-operator.io";
/// Field manager for everything the controller writes.
pub const MANAGER: &str = "zoom-operator";
/// Annotation whose new value forces a token refresh.
pub const REFRESH_REQUESTED_ANNOTATION: &str = "zoom-operator.io/refresh-requested";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const CONNECTION_LABEL: &str = "zoom-operator.io/connection";
pub const FINALIZER: &str = "zoom-operator.io/revoke";

/// A connection to Zoom: which app, where its credentials live, and where its tokens go.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "zoom-operator.io",
    version = "v1alpha1",
    kind = "ZoomConnection",
    plural = "zoomconnections",
    shortname = "zc",
    namespaced,
    status = "ZoomConnectionStatus",
    printcolumn = r#"{"name":"Auth","type":"string","jsonPath":".spec.authType"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Expires","type":"string","jsonPath":".status.expiresAt"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ZoomConnectionSpec {
    /// Which kind of Zoom app this connection uses.
    pub auth_type: AuthType,

    /// The Secret (in this namespace) holding the app's credentials. Required for PrivateOAuth
    /// and ServerToServer, absent for DefaultOAuth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_ref: Option<CredentialsRef>,

    /// Name of the Secret the operator writes tokens into. Default: `<name>-zoom-token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = DNS_SUBDOMAIN_MAX), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub token_secret_name: Option<String>,

    /// Extra labels and annotations for the token Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_template: Option<SecretTemplate>,

    /// Refresh this long before the access token expires (Go duration, e.g. `10m`).
    #[serde(default = "default_refresh_before")]
    #[schemars(regex(pattern = GO_DURATION_PATTERN))]
    pub refresh_before: String,

    /// Forward verified Zoom events to an in-cluster sink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<EventsSpec>,

    /// Revoke the grant at Zoom when this resource is deleted.
    #[serde(default)]
    pub revoke_on_delete: bool,
}

impl ZoomConnectionSpec {
    /// A spec of `auth_type` with its app in `credentials_ref`, and the defaults for the rest:
    /// the token Secret `<name>-zoom-token`, refresh 10 minutes before expiry, no events.
    pub fn new(auth_type: AuthType, credentials_ref: Option<CredentialsRef>) -> Self {
        ZoomConnectionSpec {
            auth_type,
            credentials_ref,
            token_secret_name: None,
            token_secret_template: None,
            refresh_before: default_refresh_before(),
            events: None,
            revoke_on_delete: false,
        }
    }
}

fn default_refresh_before() -> String {
    "10m".to_owned()
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum AuthType {
    /// The team's own user-managed OAuth app: the operator runs the authorization-code flow.
    PrivateOAuth,
    /// The team's own Server-to-Server app: tokens come from account credentials.
    ServerToServer,
    /// The operator-wide default OAuth app: the team only authorizes.
    DefaultOAuth,
}

impl AuthType {
    /// OAuth types hold a refresh token and need a person to authorize in a browser.
    pub fn is_oauth(self) -> bool {
        matches!(self, AuthType::PrivateOAuth | AuthType::DefaultOAuth)
    }
}

impl std::fmt::Display for AuthType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AuthType::PrivateOAuth => "PrivateOAuth",
            AuthType::ServerToServer => "ServerToServer",
            AuthType::DefaultOAuth => "DefaultOAuth",
        })
    }
}

/// Where an app's credentials live: a Secret and the names of its keys.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsRef {
    /// Name of a Secret in the same namespace.
    #[schemars(length(min = 1, max = DNS_SUBDOMAIN_MAX), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    #[serde(default = "default_client_id_key")]
    pub client_id_key: String,
    #[serde(default = "default_client_secret_key")]
    pub client_secret_key: String,
    /// Optional: the webhook secret token, needed only to receive events.
    #[serde(default = "default_secret_token_key")]
    pub secret_token_key: String,
    /// Required for ServerToServer apps.
    #[serde(default = "default_account_id_key")]
    pub account_id_key: String,
}

impl CredentialsRef {
    /// The key names used when a Secret is referenced without overrides (the default app too).
    pub fn with_name(name: impl Into<String>) -> Self {
        CredentialsRef {
            name: name.into(),
            client_id_key: default_client_id_key(),
            client_secret_key: default_client_secret_key(),
            secret_token_key: default_secret_token_key(),
            account_id_key: default_account_id_key(),
        }
    }
}

fn default_client_id_key() -> String {
    "clientId".to_owned()
}
fn default_client_secret_key() -> String {
    "clientSecret".to_owned()
}
fn default_secret_token_key() -> String {
    "secretToken".to_owned()
}
fn default_account_id_key() -> String {
    "accountId".to_owned()
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct SecretTemplate {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct EventsSpec {
    pub sink: SinkSpec,
    /// How events the sink did not accept are retried (Knative's DeliverySpec vocabulary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliverySpec>,
}

/// Redelivery of events the sink did not accept at once. Defaults: 10 retries, exponential
/// backoff from `PT1S`, `PT2S` per attempt, no dead-letter sink.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliverySpec {
    /// Attempts after the first, per event (0-100). Default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = MAX_DELIVERY_RETRY))]
    pub retry: Option<u32>,
    /// `exponential` (delay, 2x delay, 4x delay, ...) or `linear` (delay, 2x, 3x, ...).
    #[serde(default)]
    pub backoff_policy: BackoffPolicy,
    /// ISO 8601 duration, e.g. `PT1S`. Default `PT1S`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = ISO_DURATION_PATTERN))]
    pub backoff_delay: Option<String>,
    /// ISO 8601 duration per attempt, at most `PT2.5S` (Zoom waits 3 seconds). Default `PT2S`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = ISO_DURATION_PATTERN))]
    pub timeout: Option<String>,
    /// Where an event goes after the last retry; same shape and rules as `sink`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_sink: Option<SinkSpec>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackoffPolicy {
    #[default]
    Exponential,
    Linear,
}

/// Exactly one of `uri` or `ref`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SinkSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub service_ref: Option<SinkRef>,
}

/// A Service in the connection's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SinkRef {
    #[serde(default = "default_sink_kind")]
    pub kind: String,
    /// A Service name (DNS-1123 label) in the connection's namespace.
    #[schemars(length(min = 1, max = DNS_LABEL_MAX), regex(pattern = DNS_LABEL_PATTERN))]
    pub name: String,
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// Absolute path, without query or fragment. Default `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = SINK_PATH_MAX), regex(pattern = SINK_PATH_PATTERN))]
    pub path: Option<String>,
}

impl SinkSpec {
    /// Port `port` of the Service `name` in the connection's namespace, at `path` (default `/`).
    pub fn service(name: &str, port: u16, path: Option<&str>) -> Self {
        SinkSpec {
            uri: None,
            service_ref: Some(SinkRef {
                kind: default_sink_kind(),
                name: name.to_owned(),
                port,
                path: path.map(str::to_owned),
            }),
        }
    }
}

fn default_sink_kind() -> String {
    "Service".to_owned()
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ZoomConnectionStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The OAuth redirect URL to register in the Zoom app.
    #[serde(
        default,
        rename = "redirectURL",
        skip_serializing_if = "Option::is_none"
    )]
    pub redirect_url: Option<String>,
    /// The webhook "Event notification endpoint URL" to register in the Zoom app.
    #[serde(default, rename = "eventURL", skip_serializing_if = "Option::is_none")]
    pub event_url: Option<String>,
    /// Open this to authorize the connection ("Start OAuth Flow").
    #[serde(
        default,
        rename = "authorizeURL",
        skip_serializing_if = "Option::is_none"
    )]
    pub authorize_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_refresh_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_refresh_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_refresh_attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<ZoomAccount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_time: Option<Time>,
    /// Verified events accepted from Zoom and not yet delivered (stored for redelivery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_events: Option<u32>,
}

/// Who authorized the connection, from `GET /v2/users/me`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ZoomAccount {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

impl ZoomConnection {
    /// The token Secret's name: `spec.tokenSecretName`, else `<name>-zoom-token`.
    pub fn token_secret_name(&self) -> String {
        match &self.spec.token_secret_name {
            Some(name) if !name.is_empty() => name.clone(),
            _ => format!(
                "{}-zoom-token",
                self.metadata.name.as_deref().unwrap_or_default()
            ),
        }
    }

    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
    }
}

/// The CRD as applied to clusters: the derived schema plus cross-field rules that a structural
/// schema can express without CEL (kube-apiserver 1.20 does not run CEL), so the API server
/// rejects a PrivateOAuth connection without credentials and a sink with both `uri` and `ref`.
pub fn crd() -> CustomResourceDefinition {
    let mut crd = ZoomConnection::crd();
    for version in &mut crd.spec.versions {
        let Some(spec) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .and_then(|root| root.properties.as_mut())
            .and_then(|p| p.get_mut("spec"))
        else {
            continue;
        };
        spec.one_of = Some(vec![
            JSONSchemaProps {
                properties: Some(BTreeMap::from([(
                    "authType".to_owned(),
                    enum_of(&["PrivateOAuth", "ServerToServer"]),
                )])),
                required: Some(vec!["credentialsRef".to_owned()]),
                ..Default::default()
            },
            JSONSchemaProps {
                properties: Some(BTreeMap::from([(
                    "authType".to_owned(),
                    enum_of(&["DefaultOAuth"]),
                )])),
                not: Some(Box::new(JSONSchemaProps {
                    required: Some(vec!["credentialsRef".to_owned()]),
                    ..Default::default()
                })),
                ..Default::default()
            },
        ]);
        if let Some(sink) = spec
            .properties
            .as_mut()
            .and_then(|p| p.get_mut("events"))
            .and_then(|e| e.properties.as_mut())
            .and_then(|p| p.get_mut("sink"))
        {
            sink.one_of = Some(vec![
                JSONSchemaProps {
                    required: Some(vec!["uri".to_owned()]),
                    ..Default::default()
                },
                JSONSchemaProps {
                    required: Some(vec!["ref".to_owned()]),
                    ..Default::default()
                },
            ]);
        }
    }
    crd
}

fn enum_of(values: &[&str]) -> JSONSchemaProps {
    JSONSchemaProps {
        enum_: Some(
            values
                .iter()
                .map(|v| {
                    k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSON(
                        serde_json::Value::String((*v).to_owned()),
                    )
                })
                .collect(),
        ),
        ..Default::default()
    }
}

/// The CRD as YAML, exactly as committed under `crds/`.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(&crd())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_in_from_minimal_yaml() {
        let zc: ZoomConnection = serde_yaml::from_str(
            r#"
apiVersion: zoom-operator.io/v1alpha1
kind: ZoomConnection
metadata: {name: sales-bot, namespace: team-a}
spec:
  authType: PrivateOAuth
  credentialsRef: {name: zoom-app}
"#,
        )
        .expect("parses");
        assert_eq!(zc.spec.refresh_before, "10m");
        assert!(!zc.spec.revoke_on_delete);
        let creds = zc.spec.credentials_ref.as_ref().expect("credentialsRef");
        assert_eq!(creds, &CredentialsRef::with_name("zoom-app"));
        assert_eq!(zc.token_secret_name(), "sales-bot-zoom-token");
    }

    #[test]
    fn status_uses_the_documented_field_names() {
        let status = ZoomConnectionStatus {
            redirect_url: Some("r".into()),
            event_url: Some("e".into()),
            authorize_url: Some("a".into()),
            ..Default::default()
        };
        let json = serde_json::to_value(&status).expect("serializes");
        assert_eq!(json["redirectURL"], "r");
        assert_eq!(json["eventURL"], "e");
        assert_eq!(json["authorizeURL"], "a");
    }
}
