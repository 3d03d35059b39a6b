//! The operator's settings, as parsed from flags (see `main.rs`), in the shape the controller
//! and the servers use.

use std::net::SocketAddr;

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
    pub default_app_secret: Option<(String, String)>,
    /// Empty means all namespaces.
    pub watch_namespaces: Vec<String>,
    pub leader_election: bool,
    /// Where the Lease and the signing-key Secret live.
    pub operator_namespace: String,
    /// This replica's identity in the Lease.
    pub identity: String,
    pub allow_sink_hosts: Vec<String>,
}
