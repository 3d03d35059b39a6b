//! One grant per Zoom user and app (api.md section 7): when one Zoom user authorizes the same
//! app again, for another connection say, Zoom invalidates the earlier grant. The operator
//! cannot prevent that, but it can say so: connections of one app authorized by one Zoom user
//! name each other in their `Authorized` messages, a rejected refresh token names the other
//! authorization as the likely cause, and `revokeOnDelete` warns that revoking uninstalls the
//! app for that user, taking the other connections' grants with it.
//!
//! It matters most for DefaultOAuth, where every tenant uses the platform's one app.

use std::sync::Arc;

use crate::api::{AuthType, ZoomConnection};

use super::Context;

/// Which app a connection uses, as far as its spec says: the default app, or the credentials
/// Secret of its namespace. None for Server-to-Server connections (their tokens are minted,
/// not granted by a user).
fn app_key(zc: &ZoomConnection) -> Option<String> {
    match zc.spec.auth_type {
        AuthType::DefaultOAuth => Some("default".to_owned()),
        AuthType::PrivateOAuth => Some(format!(
            "{}/{}",
            zc.metadata.namespace.as_deref()?,
            zc.spec.credentials_ref.as_ref()?.name
        )),
        AuthType::ServerToServer => None,
    }
}

fn user_id(zc: &ZoomConnection) -> Option<&str> {
    zc.status
        .as_ref()?
        .account
        .as_ref()?
        .user_id
        .as_deref()
        .filter(|u| !u.is_empty())
}

/// The other connections (`namespace/name`, sorted) of `zc`'s app that Zoom user `user`
/// authorized, among `connections`.
pub fn sharing(
    zc: &ZoomConnection,
    user: &str,
    connections: &[Arc<ZoomConnection>],
) -> Vec<String> {
    let Some(app) = app_key(zc) else {
        return Vec::new();
    };
    let mut others: Vec<String> = connections
        .iter()
        .filter(|other| other.metadata.uid != zc.metadata.uid)
        .filter(|other| app_key(other).as_deref() == Some(app.as_str()))
        .filter(|other| user_id(other) == Some(user))
        .map(|other| {
            format!(
                "{}/{}",
                other.metadata.namespace.as_deref().unwrap_or_default(),
                other.metadata.name.as_deref().unwrap_or_default()
            )
        })
        .collect();
    others.sort();
    others.dedup();
    others
}

/// [`sharing`] over the controller's caches.
pub fn sharing_in_cache(ctx: &Context, zc: &ZoomConnection, user: Option<&str>) -> Vec<String> {
    let Some(user) = user.filter(|u| !u.is_empty()) else {
        return Vec::new();
    };
    sharing(zc, user, &ctx.caches.connections())
}

/// Asks each connection in `shared` whose cached `Authorized` message does not yet name `zc`
/// to reconcile, and says whether any such is left. The caller looks again soon while one is:
/// the other's pass may read the cache before this connection's account shows in it, and
/// nothing else would wake it once this connection's own message is settled.
pub fn nudge_unaware(ctx: &Context, zc: &ZoomConnection, shared: &[String]) -> bool {
    if shared.is_empty() {
        return false;
    }
    let me = format!(
        "{}/{}",
        zc.metadata.namespace.as_deref().unwrap_or_default(),
        zc.metadata.name.as_deref().unwrap_or_default()
    );
    let mut unaware = false;
    for other in shared {
        let Some((ns, name)) = other.split_once('/') else {
            continue;
        };
        let names_me = ctx
            .caches
            .connection(ns, name)
            .is_some_and(|o| authorized_message(&o).contains(me.as_str()));
        if !names_me {
            unaware = true;
            let key = kube::runtime::reflector::ObjectRef::new(name).within(ns);
            let _ = ctx.nudges.send(key);
        }
    }
    unaware
}

fn authorized_message(zc: &ZoomConnection) -> &str {
    zc.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Authorized"))
        .map(|c| c.message.as_str())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zc(
        ns: &str,
        name: &str,
        auth: &str,
        secret: Option<&str>,
        user: Option<&str>,
    ) -> Arc<ZoomConnection> {
        let mut spec = serde_json::json!({"authType": auth});
        if let Some(s) = secret {
            spec["credentialsRef"] = serde_json::json!({"name": s});
        }
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "apiVersion": "zoom-operator.io/v1alpha1",
                "kind": "ZoomConnection",
                "metadata": {"namespace": ns, "name": name, "uid": format!("{ns}-{name}")},
                "spec": spec,
                "status": user.map(|u| serde_json::json!({"account": {"userId": u}})),
            }))
            .expect("connection"),
        )
    }

    #[test]
    fn connections_of_one_app_and_one_user_share_a_grant() {
        let all = [
            zc("a", "bot", "DefaultOAuth", None, Some("u1")),
            zc("b", "bot", "DefaultOAuth", None, Some("u1")),
            zc("c", "bot", "DefaultOAuth", None, Some("u2")),
            zc("a", "own", "PrivateOAuth", Some("app"), Some("u1")),
            zc("a", "own2", "PrivateOAuth", Some("app"), Some("u1")),
            zc("b", "own", "PrivateOAuth", Some("app"), Some("u1")),
            zc("a", "s2s", "ServerToServer", Some("app"), Some("u1")),
            zc("d", "new", "DefaultOAuth", None, None),
        ];
        // (connection, its user, the others it shares a grant with)
        let cases: [(usize, &str, &[&str]); 5] = [
            (0, "u1", &["b/bot"]),
            (2, "u2", &[]),
            (3, "u1", &["a/own2"]),
            (5, "u1", &[]),
            (6, "u1", &[]),
        ];
        for (i, user, want) in cases {
            assert_eq!(sharing(&all[i], user, &all), want, "case {i}");
        }
    }
}
