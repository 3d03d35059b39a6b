//! The operator's settings, as parsed from flags (see `main.rs`), in the shape the controller
//! and the servers use.

use std::net::SocketAddr;

use k8s_openapi::NamespaceResourceScope;
use kube::api::Api;
use kube::{Client, Resource};
use url::Url;

use crate::urls::UrlSource;

#[derive(Clone, Debug)]
pub struct OperatorConfig {
    pub listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    pub url_source: UrlSource,
    pub zoom_oauth_url: Url,
    pub zoom_api_url: Url,
    /// `--default-app-secret NAMESPACE/NAME`.
    pub default_app_secret: Option<crate::api::ObjectRef>,
    /// Empty means all namespaces.
    pub watch_namespaces: Vec<String>,
    pub leader_election: bool,
    /// Where the Lease and the signing-key Secret live.
    pub operator_namespace: String,
    /// This replica's identity in the Lease.
    pub identity: String,
    pub allow_sink_hosts: Vec<String>,
    /// How many undelivered events are stored for redelivery, per connection and in all
    /// (0 in all: none; the operator then answers 503 so that Zoom retries).
    pub pending_event_limits: Limits,
    /// `--max-concurrent-reconciles`.
    pub max_concurrent_reconciles: u16,
}

/// What one set of watches covers: every namespace, or one. Several `--watch-namespace` values
/// get one set of watches each, so that every list and watch the operator makes is namespaced
/// and a Role per namespace is all it needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchScope {
    All,
    Namespace(String),
}

impl WatchScope {
    /// One scope per distinct watched namespace (a repeated flag must not start two watches
    /// of one namespace); all namespaces when none is given.
    pub fn from_namespaces(namespaces: &[String]) -> Vec<WatchScope> {
        if namespaces.is_empty() {
            return vec![WatchScope::All];
        }
        let mut scopes = Vec::with_capacity(namespaces.len());
        for ns in namespaces {
            let scope = WatchScope::Namespace(ns.clone());
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        scopes
    }

    /// An `Api` over this scope.
    pub fn api<K>(&self, client: Client) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match self {
            WatchScope::All => Api::all(client),
            WatchScope::Namespace(ns) => Api::namespaced(client, ns),
        }
    }

    pub fn covers(&self, namespace: &str) -> bool {
        match self {
            WatchScope::All => true,
            WatchScope::Namespace(ns) => ns == namespace,
        }
    }
}

impl std::fmt::Display for WatchScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WatchScope::All => f.write_str("all namespaces"),
            WatchScope::Namespace(ns) => write!(f, "namespace {ns}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_scope_per_distinct_namespace() {
        assert_eq!(WatchScope::from_namespaces(&[]), [WatchScope::All]);
        let ns = |n: &str| WatchScope::Namespace(n.to_owned());
        assert_eq!(
            WatchScope::from_namespaces(&["a".into(), "b".into(), "a".into()]),
            [ns("a"), ns("b")]
        );
        assert!(WatchScope::All.covers("x"));
        assert!(ns("a").covers("a"));
        assert!(!ns("a").covers("b"));
    }
}

/// How many undelivered events are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub total: usize,
    pub per_connection: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            total: 1000,
            per_connection: 100,
        }
    }
}
