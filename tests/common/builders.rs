//! Typed builders for what tests put on the API server and into zoom-sim: ZoomConnections,
//! credentials Secrets, and the Zoom apps both sides must agree on. A builder sends only the
//! fields that were set, as a hand-written manifest would, so the API server's defaults apply.

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};
use kube::Client;
use serde_json::{json, Map, Value};
use zoom_operator::api::ZoomConnection;

/// A ZoomConnection as a test writes it.
#[derive(Clone, Debug)]
pub struct Zc {
    name: String,
    spec: Map<String, Value>,
}

impl Zc {
    fn new(name: &str, auth_type: &str) -> Zc {
        let mut spec = Map::new();
        spec.insert("authType".to_owned(), json!(auth_type));
        Zc {
            name: name.to_owned(),
            spec,
        }
    }

    /// `authType: PrivateOAuth` with the credentials Secret `zoom-app`.
    pub fn private_oauth(name: &str) -> Zc {
        Zc::new(name, "PrivateOAuth").credentials("zoom-app")
    }

    /// `authType: ServerToServer` with the credentials Secret `zoom-app`.
    pub fn s2s(name: &str) -> Zc {
        Zc::new(name, "ServerToServer").credentials("zoom-app")
    }

    /// `authType: DefaultOAuth`: the operator's default app, no credentials of its own.
    pub fn default_oauth(name: &str) -> Zc {
        Zc::new(name, "DefaultOAuth")
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `spec.<key>: value`, for fields without a method of their own.
    pub fn spec(mut self, key: &str, value: Value) -> Zc {
        self.spec.insert(key.to_owned(), value);
        self
    }

    pub fn credentials(self, secret: &str) -> Zc {
        self.spec("credentialsRef", json!({ "name": secret }))
    }

    pub fn refresh_before(self, before: &str) -> Zc {
        self.spec("refreshBefore", json!(before))
    }

    pub fn revoke_on_delete(self) -> Zc {
        self.spec("revokeOnDelete", json!(true))
    }

    pub fn token_secret_labels(self, labels: &[(&str, &str)]) -> Zc {
        let labels: Map<String, Value> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect();
        self.spec("tokenSecretTemplate", json!({ "labels": labels }))
    }

    /// `spec.events.<key>: value`, beside the other `spec.events` fields already set.
    fn events(mut self, key: &str, value: Value) -> Zc {
        self.spec
            .entry("events")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("spec.events is an object")
            .insert(key.to_owned(), value);
        self
    }

    /// `spec.events.sink` as given, e.g. `{"uri": ...}` or `{"ref": {...}}`.
    pub fn sink(self, sink: Value) -> Zc {
        self.events("sink", sink)
    }

    pub fn sink_uri(self, uri: &str) -> Zc {
        self.sink(json!({ "uri": uri }))
    }

    /// A Service sink: `ref: {kind: Service, name, port}`.
    pub fn sink_service(self, name: &str, port: u16) -> Zc {
        self.sink(json!({"ref": {"kind": "Service", "name": name, "port": port}}))
    }

    /// `spec.events.delivery`, e.g. `{"retry": 2, "backoffDelay": "PT1S"}`.
    pub fn delivery(self, delivery: Value) -> Zc {
        self.events("delivery", delivery)
    }

    /// The manifest.
    pub fn value(&self) -> Value {
        json!({
            "apiVersion": "zoom-operator.io/v1alpha1",
            "kind": "ZoomConnection",
            "metadata": {"name": self.name},
            "spec": self.spec,
        })
    }

    /// Server-side apply, returning the API server's code and message if it refuses.
    pub async fn try_apply(
        &self,
        client: &Client,
        ns: &str,
    ) -> Result<ZoomConnection, (u16, String)> {
        let api: Api<ZoomConnection> = Api::namespaced(client.clone(), ns);
        match api
            .patch(
                &self.name,
                &PatchParams::apply("test").force(),
                &Patch::Apply(&self.value()),
            )
            .await
        {
            Ok(zc) => Ok(zc),
            Err(kube::Error::Api(status)) => Err((status.code, status.message)),
            Err(e) => panic!("unexpected error applying {}: {e}", self.name),
        }
    }

    /// Server-side apply; panics if the API server refuses.
    pub async fn apply(&self, client: &Client, ns: &str) -> ZoomConnection {
        self.try_apply(client, ns)
            .await
            .unwrap_or_else(|e| panic!("apply ZoomConnection {}: {e:?}", self.name))
    }
}

/// A Secret of string keys, written by server-side apply (so a second `put` replaces the keys).
#[derive(Clone, Debug)]
pub struct SecretData {
    name: String,
    data: Vec<(String, String)>,
}

impl SecretData {
    pub fn new(name: &str) -> SecretData {
        SecretData {
            name: name.to_owned(),
            data: Vec::new(),
        }
    }

    pub fn key(mut self, key: &str, value: &str) -> SecretData {
        self.data.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn client_id(self, id: &str) -> SecretData {
        self.key("clientId", id)
    }

    pub fn client_secret(self, secret: &str) -> SecretData {
        self.key("clientSecret", secret)
    }

    pub fn secret_token(self, token: &str) -> SecretData {
        self.key("secretToken", token)
    }

    pub fn account_id(self, account: &str) -> SecretData {
        self.key("accountId", account)
    }

    pub async fn put(&self, client: &Client, ns: &str) {
        let api: Api<Secret> = Api::namespaced(client.clone(), ns);
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                ..Default::default()
            },
            data: Some(
                self.data
                    .iter()
                    .map(|(k, v)| (k.clone(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Default::default()
        };
        let mut value = serde_json::to_value(&secret).expect("json");
        value["apiVersion"] = json!("v1");
        value["kind"] = json!("Secret");
        api.patch(
            &self.name,
            &PatchParams::apply("test").force(),
            &Patch::Apply(value),
        )
        .await
        .expect("apply secret");
    }
}

/// A Zoom app as both sides know it: zoom-sim registers it (`--app=...` or `POST /sim/apps`),
/// and a team's credentials Secret holds its keys.
#[derive(Clone, Debug)]
pub struct ZoomApp {
    kind: &'static str,
    pub client_id: String,
    pub client_secret: String,
    pub secret_token: Option<String>,
    pub account_id: Option<String>,
    user_id: Option<String>,
    email: Option<String>,
    scopes: Option<String>,
}

impl ZoomApp {
    /// An OAuth app (PrivateOAuth or DefaultOAuth).
    pub fn oauth(client_id: &str, client_secret: &str) -> ZoomApp {
        ZoomApp {
            kind: "oauth",
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            secret_token: None,
            account_id: None,
            user_id: None,
            email: None,
            scopes: None,
        }
    }

    /// A Server-to-Server app of `account`, with client secret `s2s-secret`.
    pub fn s2s(client_id: &str, account: &str) -> ZoomApp {
        ZoomApp {
            kind: "s2s",
            ..ZoomApp::oauth(client_id, "s2s-secret")
        }
        .account(account)
    }

    pub fn account(mut self, account: &str) -> ZoomApp {
        self.account_id = Some(account.to_owned());
        self
    }

    /// The Zoom user who authorizes (zoom-sim's `user_id` and `email`).
    pub fn user(mut self, user_id: &str, email: &str) -> ZoomApp {
        self.user_id = Some(user_id.to_owned());
        self.email = Some(email.to_owned());
        self
    }

    pub fn secret_token(mut self, token: &str) -> ZoomApp {
        self.secret_token = Some(token.to_owned());
        self
    }

    /// The scopes zoom-sim registers the app with.
    pub fn scopes(mut self, scopes: &str) -> ZoomApp {
        self.scopes = Some(scopes.to_owned());
        self
    }

    fn fields(&self) -> Vec<(&'static str, String)> {
        let optional = [
            ("secret_token", &self.secret_token),
            ("account_id", &self.account_id),
            ("user_id", &self.user_id),
            ("email", &self.email),
            ("scopes", &self.scopes),
        ];
        [
            ("kind", self.kind.to_owned()),
            ("client_id", self.client_id.clone()),
            ("client_secret", self.client_secret.clone()),
        ]
        .into_iter()
        .chain(
            optional
                .into_iter()
                .filter_map(|(k, v)| v.clone().map(|v| (k, v))),
        )
        .collect()
    }

    /// zoom-sim's `--app=kind=...,client_id=...` flag.
    pub fn sim_flag(&self) -> String {
        let fields: Vec<String> = self
            .fields()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("--app={}", fields.join(","))
    }

    /// The body of zoom-sim's `POST /sim/apps`.
    pub fn sim_json(&self) -> Value {
        Value::Object(
            self.fields()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), json!(v)))
                .collect(),
        )
    }

    /// The credentials Secret `name` a team writes for this app: clientId, clientSecret, and
    /// secretToken when the app has one; accountId for Server-to-Server.
    pub fn secret(&self, name: &str) -> SecretData {
        let mut secret = SecretData::new(name)
            .client_id(&self.client_id)
            .client_secret(&self.client_secret);
        if let Some(token) = &self.secret_token {
            secret = secret.secret_token(token);
        }
        match (&self.account_id, self.kind) {
            (Some(account), "s2s") => secret.account_id(account),
            _ => secret,
        }
    }
}
