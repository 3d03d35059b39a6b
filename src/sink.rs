//! Where a connection's events may be forwarded. Only in-cluster Service hosts, or hosts the
//! platform team allowed with `--allow-sink-host`, are ever called: a tenant must not be able to
//! point the operator at cloud metadata endpoints, loopback or the wider internet.

use std::net::IpAddr;

use url::{Host, Url};

use crate::api::SinkSpec;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkProblem(pub String);

/// Resolves `spec.events.sink` to the URL to POST to, or says why it is not allowed.
pub fn resolve(
    sink: &SinkSpec,
    namespace: &str,
    allowed_hosts: &[String],
) -> Result<Url, SinkProblem> {
    match (&sink.uri, &sink.service_ref) {
        (Some(_), Some(_)) => Err(SinkProblem(
            "spec.events.sink sets both uri and ref; set exactly one".to_owned(),
        )),
        (None, None) => Err(SinkProblem(
            "spec.events.sink sets neither uri nor ref; set exactly one".to_owned(),
        )),
        (None, Some(r)) => {
            if r.kind != "Service" {
                return Err(SinkProblem(format!(
                    "spec.events.sink.ref.kind {:?} is not supported; use Service",
                    r.kind
                )));
            }
            let path = r.path.as_deref().unwrap_or("/");
            let path = if path.starts_with('/') {
                path.to_owned()
            } else {
                format!("/{path}")
            };
            Url::parse(&format!(
                "http://{}.{namespace}.svc:{}{path}",
                r.name, r.port
            ))
            .map_err(|e| {
                SinkProblem(format!(
                    "spec.events.sink.ref does not make a valid URL: {e}"
                ))
            })
        }
        (Some(uri), None) => {
            let url = Url::parse(uri).map_err(|e| {
                SinkProblem(format!("spec.events.sink.uri {uri:?} is not a URL: {e}"))
            })?;
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
            if host_allowed(&url, allowed_hosts) {
                Ok(url)
            } else {
                Err(SinkProblem(format!(
                    "sink host {} is not an in-cluster Service (*.svc or *.svc.cluster.local) and not allowed by the operator's --allow-sink-host; events will not be sent there",
                    url.host_str().unwrap_or_default()
                )))
            }
        }
    }
}

fn host_allowed(url: &Url, allowed_hosts: &[String]) -> bool {
    let Some(host) = url.host() else {
        return false;
    };
    let name = match &host {
        Host::Domain(d) => d.trim_end_matches('.').to_ascii_lowercase(),
        Host::Ipv4(ip) => ip.to_string(),
        Host::Ipv6(ip) => ip.to_string(),
    };
    if allowed_hosts.iter().any(|a| a.eq_ignore_ascii_case(&name)) {
        return true;
    }
    // IP literals are never in-cluster Service names; only an explicit allow admits them.
    if name.parse::<IpAddr>().is_ok() {
        return false;
    }
    let labels: Vec<&str> = name.split('.').collect();
    // <service>.<namespace>.svc or <service>.<namespace>.svc.cluster.local
    let service_shape = |rest: &[&str]| rest.len() == 2 && rest.iter().all(|l| is_dns_label(l));
    match labels.as_slice() {
        [rest @ .., "svc"] => service_shape(rest),
        [rest @ .., "svc", "cluster", "local"] => service_shape(rest),
        _ => false,
    }
}

fn is_dns_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SinkRef;

    fn uri(u: &str) -> SinkSpec {
        SinkSpec {
            uri: Some(u.to_owned()),
            service_ref: None,
        }
    }

    #[test]
    fn in_cluster_services_are_allowed() {
        for ok in [
            "http://handler.team-a.svc:8080/zoom",
            "http://handler.team-a.svc.cluster.local/zoom",
            "https://handler.team-a.svc/",
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
            "file:///etc/passwd",
            "http://user:pw@handler.team-a.svc/",
            "not a url",
        ] {
            assert!(
                resolve(&uri(bad), "team-a", &[]).is_err(),
                "{bad} must be refused"
            );
        }
    }

    #[test]
    fn allow_list_admits_named_hosts_only() {
        let allowed = vec!["127.0.0.1".to_owned(), "hooks.example.com".to_owned()];
        assert!(resolve(&uri("http://127.0.0.1:9000/x"), "ns", &allowed).is_ok());
        assert!(resolve(&uri("https://HOOKS.example.com/x"), "ns", &allowed).is_ok());
        assert!(resolve(&uri("http://169.254.169.254/"), "ns", &allowed).is_err());
    }

    #[test]
    fn service_ref_resolves_in_the_connection_namespace() {
        let spec = SinkSpec {
            uri: None,
            service_ref: Some(SinkRef {
                kind: "Service".into(),
                name: "handler".into(),
                port: 8080,
                path: Some("zoom".into()),
            }),
        };
        assert_eq!(
            resolve(&spec, "team-a", &[]).expect("ok").as_str(),
            "http://handler.team-a.svc:8080/zoom"
        );
    }
}
