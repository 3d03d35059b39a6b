//! The operator's leader Lease. Standalone, so that e2e.rs (which has no control plane of
//! its own) includes it as it includes web.rs.

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use kube::Client;

/// The holder of the leader Lease in `ns`, if any.
pub async fn lease_holder(client: &Client, ns: &str) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), ns)
        .get_opt("zoom-operator-leader")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty())
}
