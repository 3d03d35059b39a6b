//! Where a connection's events may be forwarded (api.md sections 5 and 9): the sink policy.
//! Only Services of the connection's own namespace, or hosts the platform team allowed with
//! `--allow-sink-host`, are ever called: a tenant must not be able to point the operator at
//! cloud metadata endpoints, loopback, another tenant's Services or the wider internet.
//!
//! Three layers, each enough on its own for what it covers: [`resolve`] (pure) builds the URL
//! with `Url` setters and runs [`classify_host`] on it; [`service_problem`] refuses ExternalName
//! Services (which point anywhere); [`SinkResolver`] is the DNS resolver of the client that
//! posts to sinks, so the addresses actually connected to are checked, with no gap between
//! check and connect.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use kube::api::Api;
use url::{Host, Url};

use crate::api::{SinkRef, SinkSpec};
use crate::validation::is_dns_label;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkProblem(pub String);

/// What kind of host a sink URL names, once the policy admitted it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SinkHost {
    /// `<service>.<namespace>.svc[.cluster.local]` of the connection's own namespace.
    Service { name: String, namespace: String },
    /// Listed in `--allow-sink-host`: the platform team vouches for it, wherever it resolves.
    Allowed,
}

/// Resolves `spec.events.sink` to the URL to POST to, or says why it is not allowed.
pub fn resolve(
    sink: &SinkSpec,
    namespace: &str,
    allowed_hosts: &[String],
) -> Result<Url, SinkProblem> {
    let url = match (&sink.uri, &sink.service_ref) {
        (Some(_), Some(_)) => {
            return Err(SinkProblem(
                "spec.events.sink sets both uri and ref; set exactly one".to_owned(),
            ))
        }
        (None, None) => {
            return Err(SinkProblem(
                "spec.events.sink sets neither uri nor ref; set exactly one".to_owned(),
            ))
        }
        (None, Some(r)) => service_url(r, namespace)?,
        (Some(uri), None) => parse_uri(uri)?,
    };
    classify_host(&url, namespace, allowed_hosts)?;
    Ok(url)
}

/// `http://<name>.<namespace>.svc:<port><path>`, built with `Url` setters from validated parts
/// so that no character of the name can move the host, port or path.
fn service_url(r: &SinkRef, namespace: &str) -> Result<Url, SinkProblem> {
    let field = "spec.events.sink.ref";
    crate::validation::sink(
        "spec.events.sink",
        &SinkSpec {
            uri: None,
            service_ref: Some(r.clone()),
        },
    )
    .map_err(|e| SinkProblem(e.0))?;
    if !is_dns_label(namespace) {
        return Err(SinkProblem(format!(
            "{field}: the namespace is not a DNS label"
        )));
    }
    let host = [r.name.as_str(), namespace, "svc"].join(".");
    let invalid = || SinkProblem(format!("{field} does not make a valid URL"));
    let mut url = Url::parse("http://sink.invalid/").map_err(|_| invalid())?;
    url.set_host(Some(&host)).map_err(|_| invalid())?;
    url.set_port(Some(r.port)).map_err(|()| invalid())?;
    url.set_path(r.path.as_deref().unwrap_or("/"));
    // Belt and braces: the URL must say exactly what was meant.
    if url.host_str() != Some(host.as_str())
        || url.port_or_known_default() != Some(r.port)
        || url.query().is_some()
    {
        return Err(invalid());
    }
    Ok(url)
}

fn parse_uri(uri: &str) -> Result<Url, SinkProblem> {
    let url = Url::parse(uri)
        .map_err(|e| SinkProblem(format!("spec.events.sink.uri {uri:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(SinkProblem(format!(
            "spec.events.sink.uri must be http or https, not {}",
            url.scheme()
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(SinkProblem(
            "spec.events.sink.uri must not carry credentials".to_owned(),
        ));
    }
    Ok(url)
}

/// The host policy, run on every sink URL: an own-namespace Service name, or an allowed host.
pub fn classify_host(
    url: &Url,
    namespace: &str,
    allowed_hosts: &[String],
) -> Result<SinkHost, SinkProblem> {
    let Some(host) = url.host() else {
        return Err(SinkProblem("the sink URL has no host".to_owned()));
    };
    let name = match &host {
        Host::Domain(d) => d.trim_end_matches('.').to_ascii_lowercase(),
        Host::Ipv4(ip) => ip.to_string(),
        Host::Ipv6(ip) => ip.to_string(),
    };
    if is_allowed(&name, allowed_hosts) {
        return Ok(SinkHost::Allowed);
    }
    match in_cluster_service(&name) {
        Some((svc, ns)) if ns == namespace => Ok(SinkHost::Service {
            name: svc,
            namespace: ns,
        }),
        Some((_, ns)) => Err(SinkProblem(format!(
            "sink host {name} is a Service of namespace {ns}; only Services of the connection's own namespace {namespace} (or hosts in the operator's --allow-sink-host) may receive its events"
        ))),
        None => Err(SinkProblem(format!(
            "sink host {name} is not a Service of namespace {namespace} (<service>.{namespace}.svc or <service>.{namespace}.svc.cluster.local) and not allowed by the operator's --allow-sink-host; events will not be sent there"
        ))),
    }
}

fn is_allowed(host: &str, allowed_hosts: &[String]) -> bool {
    let host = host.trim_end_matches('.');
    allowed_hosts
        .iter()
        .any(|a| a.trim_end_matches('.').eq_ignore_ascii_case(host))
}

/// `(service, namespace)` of `<service>.<namespace>.svc` or `...svc.cluster.local`.
pub fn in_cluster_service(host: &str) -> Option<(String, String)> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = host.split('.').collect();
    let (svc, ns) = match labels.as_slice() {
        [svc, ns, "svc"] | [svc, ns, "svc", "cluster", "local"] => (*svc, *ns),
        _ => return None,
    };
    (is_dns_label(svc) && is_dns_label(ns)).then(|| (svc.to_owned(), ns.to_owned()))
}

/// Addresses a sink may never resolve to unless its host was explicitly allowed: loopback,
/// link-local (cloud metadata lives at 169.254.169.254), unspecified, multicast, broadcast.
pub fn is_refused_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.octets()[0] == 0
        }
        IpAddr::V6(v6) => {
            if let Some(mapped) = v6.to_ipv4_mapped() {
                return is_refused_address(IpAddr::V4(mapped));
            }
            let link_local = (v6.segments()[0] & 0xffc0) == 0xfe80;
            v6.is_loopback() || v6.is_unspecified() || v6.is_multicast() || link_local
        }
    }
}

/// Refuses an in-cluster sink whose Service is of type ExternalName (a DNS alias to any host),
/// and says so when the Service cannot be checked: unknown means refused.
pub async fn service_problem(
    client: &kube::Client,
    name: &str,
    namespace: &str,
) -> Option<SinkProblem> {
    let api: Api<Service> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(Some(svc)) => {
            let kind = svc.spec.as_ref().and_then(|s| s.type_.as_deref());
            (kind == Some("ExternalName")).then(|| {
                SinkProblem(format!(
                    "Service {namespace}/{name} is of type ExternalName, which can point anywhere; ExternalName Services are not sinks"
                ))
            })
        }
        // A Service that does not exist yet cannot be an alias; the connection fails to connect.
        Ok(None) => None,
        Err(e) => Some(SinkProblem(format!(
            "could not check Service {namespace}/{name} ({}); the sink is not used until it can be checked",
            kube_reason(&e)
        ))),
    }
}

/// The Service check for a connection's sink as the reconciler reports it: None when the sink
/// is not an in-cluster Service (the pure policy has its say elsewhere) or the Service is fine.
pub async fn check_sink_service(
    client: &kube::Client,
    sink: &SinkSpec,
    namespace: &str,
    allowed_hosts: &[String],
) -> Option<SinkProblem> {
    let url = resolve(sink, namespace, allowed_hosts).ok()?;
    match classify_host(&url, namespace, allowed_hosts).ok()? {
        SinkHost::Service { name, namespace } => service_problem(client, &name, &namespace).await,
        SinkHost::Allowed => None,
    }
}

fn kube_reason(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => format!("{} {}", status.code, status.reason),
        _ => "the API server could not be reached".to_owned(),
    }
}

/// The DNS resolver of the sink client. Allowed hosts resolve as the system resolves them;
/// own-namespace Service names resolve only if the Service is not ExternalName, and only to
/// addresses outside the refused ranges; every other name is refused.
pub struct SinkResolver {
    allowed_hosts: Vec<String>,
    /// None only in tests without a cluster: then no Service is looked up.
    client: Option<kube::Client>,
}

impl SinkResolver {
    pub fn new(allowed_hosts: Vec<String>, client: Option<kube::Client>) -> Arc<Self> {
        Arc::new(SinkResolver {
            allowed_hosts,
            client,
        })
    }

    /// The addresses to connect to for `host`, or why there are none.
    pub async fn addresses(&self, host: &str) -> Result<Vec<SocketAddr>, SinkProblem> {
        let allowed = is_allowed(host, &self.allowed_hosts);
        if !allowed {
            let Some((svc, ns)) = in_cluster_service(host) else {
                return Err(SinkProblem(format!(
                    "{host} is neither an in-cluster Service nor an allowed sink host"
                )));
            };
            if let Some(client) = &self.client {
                if let Some(problem) = service_problem(client, &svc, &ns).await {
                    return Err(problem);
                }
            }
        }
        let found: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
            .await
            .map_err(|_| SinkProblem(format!("{host} could not be resolved")))?
            .collect();
        if allowed {
            return Ok(found);
        }
        let usable: Vec<SocketAddr> = found
            .into_iter()
            .filter(|a| !is_refused_address(a.ip()))
            .collect();
        if usable.is_empty() {
            return Err(SinkProblem(format!(
                "{host} resolves to no address a sink may have (loopback, link-local and unspecified addresses are refused)"
            )));
        }
        Ok(usable)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ResolveRefused(String);

impl reqwest::dns::Resolve for SinkResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        let allowed_hosts = self.allowed_hosts.clone();
        let client = self.client.clone();
        Box::pin(async move {
            let resolver = SinkResolver {
                allowed_hosts,
                client,
            };
            match resolver.addresses(&host).await {
                Ok(addrs) => Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs),
                Err(problem) => Err(Box::new(ResolveRefused(problem.0)) as _),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn uri(u: &str) -> SinkSpec {
        SinkSpec {
            uri: Some(u.to_owned()),
            service_ref: None,
        }
    }

    fn service_ref(name: &str, port: u16, path: Option<&str>) -> SinkSpec {
        SinkSpec::service(name, port, path)
    }

    #[test]
    fn own_namespace_services_are_allowed() {
        for ok in [
            "http://handler.team-a.svc:8080/zoom",
            "http://handler.team-a.svc.cluster.local/zoom",
            "https://handler.team-a.svc/",
            "http://HANDLER.team-a.svc./",
        ] {
            assert!(resolve(&uri(ok), "team-a", &[]).is_ok(), "{ok}");
        }
    }

    #[test]
    fn everything_else_is_refused() {
        for bad in [
            "http://169.254.169.254/latest/meta-data",
            "http://127.0.0.1:8080/",
            "http://localhost/",
            "http://[::1]/",
            "http://metadata.google.internal/",
            "http://example.com/",
            "http://evil.svc.example.com/",
            "http://a.b.c.svc/",
            "http://handler.team-b.svc/",
            "http://handler.kube-system.svc.cluster.local/",
            "file:///etc/passwd",
            "http://user:pw@handler.team-a.svc/",
            "not a url",
        ] {
            assert!(
                resolve(&uri(bad), "team-a", &[]).is_err(),
                "{bad} must be refused"
            );
        }
        let other = resolve(&uri("http://h.team-b.svc/"), "team-a", &[]).expect_err("refused");
        assert!(other.0.contains("namespace team-b"), "{}", other.0);
    }

    #[test]
    fn allow_list_admits_named_hosts_only() {
        let allowed = vec!["127.0.0.1".to_owned(), "hooks.example.com".to_owned()];
        assert!(resolve(&uri("http://127.0.0.1:9000/x"), "ns", &allowed).is_ok());
        assert!(resolve(&uri("https://HOOKS.example.com/x"), "ns", &allowed).is_ok());
        assert!(resolve(&uri("http://169.254.169.254/"), "ns", &allowed).is_err());
        let other = vec!["handler.team-b.svc".to_owned()];
        assert!(resolve(&uri("http://handler.team-b.svc/"), "team-a", &other).is_ok());
    }

    #[test]
    fn service_ref_resolves_in_the_connection_namespace() {
        assert_eq!(
            resolve(&service_ref("handler", 8080, Some("/zoom")), "team-a", &[])
                .expect("ok")
                .as_str(),
            "http://handler.team-a.svc:8080/zoom"
        );
        assert_eq!(
            resolve(&service_ref("handler", 80, None), "team-a", &[])
                .expect("ok")
                .as_str(),
            "http://handler.team-a.svc/"
        );
    }

    #[test]
    fn injected_ref_names_never_move_the_host() {
        for name in [
            "169.254.169.254/latest#",
            "evil.example:1234/?",
            "a@evil.example",
            "a\\evil",
            "Handler",
            &"a".repeat(64),
        ] {
            let err = resolve(&service_ref(name, 80, None), "team-a", &[]).expect_err(name);
            assert!(err.0.contains("ref.name"), "{name}: {}", err.0);
        }
        let err = resolve(&service_ref("h", 80, Some("/x?y=1")), "team-a", &[]).expect_err("q");
        assert!(err.0.contains("ref.path"), "{}", err.0);
    }

    #[test]
    fn refused_address_ranges() {
        for bad in [
            "127.0.0.1",
            "127.1.2.3",
            "169.254.169.254",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(is_refused_address(bad.parse().expect("ip")), "{bad}");
        }
        for ok in [
            "10.96.0.10",
            "192.168.1.1",
            "172.16.0.1",
            "8.8.8.8",
            "fd00::1",
        ] {
            assert!(!is_refused_address(ok.parse().expect("ip")), "{ok}");
        }
    }

    #[tokio::test]
    async fn the_resolver_filters_what_names_resolve_to() {
        // localhost resolves to loopback: refused unless explicitly allowed.
        let strict = SinkResolver::new(vec![], None);
        assert!(strict.addresses("localhost").await.is_err());
        let allowed = SinkResolver::new(vec!["localhost".into()], None);
        let addrs = allowed.addresses("localhost").await.expect("resolves");
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
        // Names that are neither services nor allowed are not even looked up.
        let err = strict.addresses("example.com").await.expect_err("refused");
        assert!(err.0.contains("neither"), "{}", err.0);
    }

    proptest! {
        #[test]
        fn no_generated_ref_makes_a_url_for_another_host(
            name in "[a-zA-Z0-9.:/?#@%\\\\ -]{0,70}",
            port in any::<u16>(),
            path in proptest::option::of("[a-zA-Z0-9./?#@%\\\\:-]{0,30}"),
        ) {
            if let Ok(url) = resolve(&service_ref(&name, port, path.as_deref()), "team-a", &[]) {
                let host = format!("{name}.team-a.svc");
                prop_assert_eq!(url.host_str(), Some(host.as_str()));
                prop_assert_eq!(url.port_or_known_default(), Some(port));
                prop_assert!(url.query().is_none() && url.fragment().is_none());
                prop_assert!(url.username().is_empty() && url.password().is_none());
            }
        }

        #[test]
        fn no_generated_uri_escapes_the_namespace(uri in "(https?://)?[a-z0-9.:/@\\[\\]-]{0,60}") {
            if let Ok(url) = resolve(&SinkSpec { uri: Some(uri), service_ref: None }, "team-a", &[]) {
                let host = url.host_str().unwrap_or_default().to_owned();
                prop_assert!(in_cluster_service(&host).is_some_and(|(_, ns)| ns == "team-a"), "{}", host);
            }
        }
    }
}
