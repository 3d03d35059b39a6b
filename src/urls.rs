//! The public URLs Zoom is given: derived from `--public-url` or from the cluster's Ingress.
//!
//! Pure functions over values; the Ingress watch that feeds them lives in the controller.

use k8s_openapi::api::networking::v1::Ingress;
use url::Url;

use crate::api::ObjectRef;

pub const REDIRECT_PATH: &str = "/oauth/redirect/zoom";
pub const EVENT_PATH: &str = "/zoom/event";
pub const START_PATH_PREFIX: &str = "/oauth/start/zoom";

/// Where the public base URL comes from, as configured by flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UrlSource {
    /// `--public-url`.
    Fixed(Url),
    /// `--ingress NAMESPACE/NAME`.
    Ingress(ObjectRef),
    /// Neither flag was given.
    Unconfigured,
}

/// Why no public URL could be derived; each maps to a `URLsReady` reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UrlProblem {
    IngressNotFound { namespace: String, name: String },
    IngressHasNoHost { namespace: String, name: String },
    Unconfigured,
}

impl UrlProblem {
    pub fn reason(&self) -> &'static str {
        match self {
            UrlProblem::IngressNotFound { .. } | UrlProblem::Unconfigured => "IngressNotFound",
            UrlProblem::IngressHasNoHost { .. } => "IngressHasNoHost",
        }
    }

    pub fn message(&self) -> String {
        match self {
            UrlProblem::IngressNotFound { namespace, name } => format!(
                "Ingress {namespace}/{name} (from --ingress) does not exist; create it or start the operator with --public-url"
            ),
            UrlProblem::IngressHasNoHost { namespace, name } => format!(
                "Ingress {namespace}/{name} has no TLS host, no rule host and no load-balancer address yet; add spec.rules[0].host or wait for the load balancer"
            ),
            UrlProblem::Unconfigured => {
                "The operator was started without --public-url or --ingress, so it cannot tell Zoom where to reach it".to_owned()
            }
        }
    }
}

/// The public base URL and the URLs derived from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicUrls {
    base: Url,
}

impl PublicUrls {
    pub fn new(mut base: Url) -> Self {
        // Paths are appended below; a trailing slash would double up.
        let trimmed = base.path().trim_end_matches('/').to_owned();
        base.set_path(&trimmed);
        base.set_query(None);
        base.set_fragment(None);
        PublicUrls { base }
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    fn join(&self, path: &str) -> String {
        format!("{}{}", self.base.as_str().trim_end_matches('/'), path)
    }

    /// Why Zoom would refuse the event URL, if it would: Zoom accepts only `https://`
    /// endpoints for a domain name (with a CA-signed certificate, which only the certificate
    /// can tell). None: acceptable as far as the URL shows.
    pub fn zoom_refuses(&self) -> Option<&'static str> {
        let domain = matches!(self.base.host(), Some(url::Host::Domain(_)));
        match (self.base.scheme() == "https", domain) {
            (true, true) => None,
            (false, true) => Some("is http://, not https://"),
            (_, false) => Some("names an IP address, not a domain"),
        }
    }

    pub fn redirect_url(&self) -> String {
        self.join(REDIRECT_PATH)
    }

    pub fn event_url(&self) -> String {
        self.join(EVENT_PATH)
    }

    /// The "Start OAuth Flow" link for one connection, carrying a signed ticket.
    pub fn authorize_url(&self, namespace: &str, name: &str, ticket: &str) -> String {
        let mut url =
            match Url::parse(&self.join(&format!("{START_PATH_PREFIX}/{namespace}/{name}"))) {
                Ok(url) => url,
                // The base parsed already and namespace/name are DNS labels, so this cannot happen;
                // fall back to plain concatenation rather than panic.
                Err(_) => {
                    return self.join(&format!(
                        "{START_PATH_PREFIX}/{namespace}/{name}?ticket={ticket}"
                    ))
                }
            };
        url.query_pairs_mut().append_pair("ticket", ticket);
        url.into()
    }
}

/// Derives the public URLs from the configured source and, for `--ingress`, the Ingress as
/// currently observed (`None` when it does not exist).
pub fn derive_public_urls(
    source: &UrlSource,
    ingress: Option<&Ingress>,
) -> Result<PublicUrls, UrlProblem> {
    let (namespace, name) = match source {
        UrlSource::Fixed(url) => return Ok(PublicUrls::new(url.clone())),
        UrlSource::Unconfigured => return Err(UrlProblem::Unconfigured),
        UrlSource::Ingress(ObjectRef { namespace, name }) => (namespace, name),
    };
    let ingress = ingress.ok_or_else(|| UrlProblem::IngressNotFound {
        namespace: namespace.clone(),
        name: name.clone(),
    })?;
    let no_host = || UrlProblem::IngressHasNoHost {
        namespace: namespace.clone(),
        name: name.clone(),
    };
    let spec = ingress.spec.as_ref();
    let tls_host = spec
        .and_then(|s| s.tls.as_ref())
        .and_then(|tls| tls.iter().flat_map(|t| t.hosts.iter().flatten()).next())
        .filter(|h| usable_host(h));
    let rule_host = spec
        .and_then(|s| s.rules.as_ref())
        .and_then(|rules| rules.first())
        .and_then(|r| r.host.as_ref())
        .filter(|h| usable_host(h));
    let lb_host = ingress
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .and_then(|entries| {
            entries.iter().find_map(|e| {
                e.hostname
                    .clone()
                    .filter(|h| !h.is_empty())
                    .or_else(|| e.ip.clone())
            })
        })
        .filter(|h| !h.is_empty());

    let base = if let Some(host) = tls_host {
        format!("https://{host}")
    } else if let Some(host) = rule_host {
        format!("http://{host}")
    } else if let Some(host) = lb_host {
        if host.contains(':') {
            format!("http://[{host}]") // an IPv6 address
        } else {
            format!("http://{host}")
        }
    } else {
        return Err(no_host());
    };
    // A wildcard or otherwise unparsable host cannot be given to Zoom.
    Url::parse(&base)
        .map(PublicUrls::new)
        .map_err(|_| no_host())
}

/// A wildcard host (`*.example.com`) names no single address Zoom could call.
fn usable_host(host: &str) -> bool {
    !host.is_empty() && !host.contains('*')
}

/// The public URLs as last derived (shared by a watch channel); `None` until the first
/// derivation.
pub type UrlState = Option<Result<PublicUrls, UrlProblem>>;

/// The public URLs as of now, from the channel `watch_public_urls` keeps current.
pub fn current(urls: &tokio::sync::watch::Receiver<UrlState>) -> Result<PublicUrls, UrlProblem> {
    match &*urls.borrow() {
        Some(state) => state.clone(),
        None => Err(UrlProblem::Unconfigured),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ingress(value: serde_json::Value) -> Ingress {
        serde_json::from_value(value).expect("valid ingress")
    }

    fn source() -> UrlSource {
        UrlSource::Ingress(ObjectRef::new("zoom-operator", "zoom"))
    }

    #[test]
    fn derivation_table() {
        let cases = [
            (
                "tls host wins over rule host",
                json!({"spec": {"tls": [{"hosts": ["zoom.example.com"]}], "rules": [{"host": "plain.example.com"}]}}),
                Ok("https://zoom.example.com"),
            ),
            (
                "rule host without tls is http",
                json!({"spec": {"rules": [{"host": "zoom.example.com"}]}}),
                Ok("http://zoom.example.com"),
            ),
            (
                "load balancer hostname",
                json!({"spec": {}, "status": {"loadBalancer": {"ingress": [{"hostname": "lb.example.com"}]}}}),
                Ok("http://lb.example.com"),
            ),
            (
                "load balancer ip",
                json!({"spec": {}, "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}}),
                Ok("http://203.0.113.7"),
            ),
            (
                "tls entry without hosts falls back to rule host",
                json!({"spec": {"tls": [{"secretName": "x"}], "rules": [{"host": "zoom.example.com"}]}}),
                Ok("http://zoom.example.com"),
            ),
            (
                "nothing at all",
                json!({"spec": {}}),
                Err("IngressHasNoHost"),
            ),
            (
                "wildcard host is unusable",
                json!({"spec": {"rules": [{"host": "*.example.com"}]}}),
                Err("IngressHasNoHost"),
            ),
        ];
        for (name, value, want) in cases {
            let got = derive_public_urls(&source(), Some(&ingress(value)));
            match (got, want) {
                (Ok(urls), Ok(base)) => {
                    assert_eq!(
                        urls.redirect_url(),
                        format!("{base}/oauth/redirect/zoom"),
                        "{name}"
                    );
                    assert_eq!(urls.event_url(), format!("{base}/zoom/event"), "{name}");
                }
                (Err(problem), Err(reason)) => assert_eq!(problem.reason(), reason, "{name}"),
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn urls_zoom_would_refuse() {
        let refuses = |base: &str| {
            PublicUrls::new(Url::parse(base).expect("url"))
                .zoom_refuses()
                .map(str::to_owned)
        };
        assert_eq!(refuses("https://zoom.example.com"), None);
        assert_eq!(refuses("https://zoom.example.com:8443/base/"), None);
        assert_eq!(
            refuses("http://zoom.example.com").as_deref(),
            Some("is http://, not https://")
        );
        for ip in [
            "http://203.0.113.7",
            "https://203.0.113.7",
            "https://[2001:db8::1]",
        ] {
            assert_eq!(
                refuses(ip).as_deref(),
                Some("names an IP address, not a domain"),
                "{ip}"
            );
        }
    }

    #[test]
    fn missing_ingress_is_reported() {
        let err = derive_public_urls(&source(), None).expect_err("no ingress");
        assert_eq!(err.reason(), "IngressNotFound");
        assert!(err.message().contains("zoom-operator/zoom"));
    }

    #[test]
    fn fixed_url_ignores_ingress_and_trailing_slash() {
        let fixed = UrlSource::Fixed(Url::parse("https://zoom.example.com/base/").expect("url"));
        let urls = derive_public_urls(&fixed, None).expect("fixed");
        assert_eq!(
            urls.redirect_url(),
            "https://zoom.example.com/base/oauth/redirect/zoom"
        );
        assert_eq!(
            urls.authorize_url("team-a", "sales-bot", "abc.def"),
            "https://zoom.example.com/base/oauth/start/zoom/team-a/sales-bot?ticket=abc.def"
        );
    }

    #[test]
    fn object_refs_parse_as_namespace_slash_name() {
        assert_eq!("ns/name".parse(), Ok(ObjectRef::new("ns", "name")));
        for bad in ["ns", "/name", "ns/", "a/b/c", ""] {
            assert!(bad.parse::<ObjectRef>().is_err(), "{bad}");
        }
        assert_eq!(ObjectRef::new("ns", "name").to_string(), "ns/name");
    }
}
