//! Spec validation (api.md section 1): the rules the CRD schema states as patterns, checked
//! again here because older API servers enforce less, plus the rules a schema cannot state
//! (`refreshBefore` at most 24h, template keys). Pure: a spec in, the first problem out, with
//! the field it is about named so the condition message tells a person what to fix.

use std::time::Duration;

use crate::api::{
    AuthType, BackoffPolicy, DeliverySpec, SecretTemplate, SinkSpec, ZoomConnection,
    ZoomConnectionSpec, DNS_LABEL_MAX, DNS_SUBDOMAIN_MAX, MAX_DELIVERY_RETRY, SINK_PATH_MAX,
};
use crate::duration::parse_go_duration;

/// `refreshBefore` may not exceed this (api.md: at most 24h). Anything longer would renew a
/// one-hour Zoom token on every pass.
pub const MAX_REFRESH_BEFORE: Duration = Duration::from_secs(24 * 3600);

/// Zoom waits 3 seconds for an answer; one attempt may take at most this.
pub const MAX_DELIVERY_TIMEOUT: Duration = Duration::from_millis(2500);

/// Keys of the operator's own bookkeeping; a template may not set them.
const OPERATOR_PREFIX: &str = "zoom-operator.io/";
/// Kubernetes' limit on all annotations of one object together.
const ANNOTATIONS_TOTAL_MAX: usize = 256 * 1024;

/// What is wrong with a spec: the message names the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SpecProblem(pub String);

fn problem(message: String) -> SpecProblem {
    SpecProblem(message)
}

/// Validates a spec; returns the parsed `refreshBefore`.
pub fn validate_spec(spec: &ZoomConnectionSpec) -> Result<Duration, SpecProblem> {
    let refresh_before = refresh_before(&spec.refresh_before)?;
    match (spec.auth_type, &spec.credentials_ref) {
        (AuthType::DefaultOAuth, Some(_)) => {
            return Err(problem("spec.credentialsRef must not be set for authType DefaultOAuth: the operator-wide default app is used".to_owned()))
        }
        (AuthType::PrivateOAuth | AuthType::ServerToServer, None) => {
            return Err(problem(format!(
                "spec.credentialsRef is required for authType {}",
                spec.auth_type
            )))
        }
        (_, Some(reference)) => secret_name("spec.credentialsRef.name", &reference.name)?,
        (AuthType::DefaultOAuth, None) => {}
    }
    if let Some(name) = spec.token_secret_name.as_deref().filter(|n| !n.is_empty()) {
        secret_name("spec.tokenSecretName", name)?;
    }
    if let Some(template) = &spec.token_secret_template {
        secret_template(template)?;
    }
    if let Some(events) = &spec.events {
        sink("spec.events.sink", &events.sink)?;
        if let Some(delivery) = &events.delivery {
            DeliveryPolicy::from_spec(Some(delivery))?;
        }
    }
    Ok(refresh_before)
}

/// An ISO 8601 duration (`PT1S`, `PT2.5S`, `PT1M30S`) that is positive.
pub fn iso_duration(field: &str, value: &str) -> Result<Duration, SpecProblem> {
    let pattern_ok = value.len() <= 32
        && value.len() > 2
        && value.starts_with("PT")
        && value[2..]
            .bytes()
            .all(|b| b.is_ascii_digit() || b".HMS".contains(&b));
    let parsed = pattern_ok
        .then(|| value.parse::<jiff::SignedDuration>().ok())
        .flatten()
        .and_then(|d| Duration::try_from(d).ok());
    match parsed {
        Some(d) if !d.is_zero() => Ok(d),
        _ => Err(problem(format!(
            "{field} {value:?} is not a positive ISO 8601 duration such as PT1S or PT2.5S"
        ))),
    }
}

/// `refreshBefore`: a Go duration of at most 24h. Never panics, whatever the size.
pub fn refresh_before(value: &str) -> Result<Duration, SpecProblem> {
    let parsed =
        parse_go_duration(value).map_err(|e| problem(format!("spec.refreshBefore: {e}")))?;
    if parsed > MAX_REFRESH_BEFORE {
        return Err(problem(format!(
            "spec.refreshBefore {value:?} is longer than 24h; Zoom access tokens live one hour, so use something like 10m"
        )));
    }
    Ok(parsed)
}

/// Exactly one of `uri` or `ref`; a `ref` names a Service of this namespace by a DNS-1123
/// label, a port 1-65535 and an absolute path. (Where a `uri` may point is the sink policy's
/// business, `crate::sink`.)
pub fn sink(field: &str, sink: &SinkSpec) -> Result<(), SpecProblem> {
    if sink.uri.is_some() == sink.service_ref.is_some() {
        return Err(problem(format!(
            "{field} must set exactly one of uri or ref"
        )));
    }
    let Some(r) = &sink.service_ref else {
        return Ok(());
    };
    if r.kind != "Service" {
        return Err(problem(format!(
            "{field}.ref.kind {:?} is not supported; use Service",
            r.kind
        )));
    }
    if !is_dns_label(&r.name) {
        return Err(problem(format!(
            "{field}.ref.name {:?} is not a Service name (a DNS-1123 label: lowercase letters, digits and '-', at most 63 characters); the Service must be in the connection's namespace",
            shorten(&r.name)
        )));
    }
    if r.port == 0 {
        return Err(problem(format!("{field}.ref.port must be 1 to 65535")));
    }
    if let Some(path) = &r.path {
        if !is_sink_path(path) {
            return Err(problem(format!(
                "{field}.ref.path {:?} must start with / and contain no ?, # or \\ (at most {SINK_PATH_MAX} characters)",
                shorten(path)
            )));
        }
    }
    Ok(())
}

fn secret_name(field: &str, name: &str) -> Result<(), SpecProblem> {
    if is_dns_subdomain(name) {
        Ok(())
    } else {
        Err(problem(format!(
            "{field} {:?} is not a Secret name (a DNS-1123 subdomain: lowercase letters, digits, '-' and '.', at most 253 characters)",
            shorten(name)
        )))
    }
}

/// Template labels and annotations: valid Kubernetes syntax, none of the operator's own keys,
/// so the token Secret can always be written and the bookkeeping cannot be forged.
pub fn secret_template(template: &SecretTemplate) -> Result<(), SpecProblem> {
    for (key, value) in &template.labels {
        qualified_key("spec.tokenSecretTemplate.labels", key)?;
        if !is_label_value(value) {
            return Err(problem(format!(
                "spec.tokenSecretTemplate.labels[{key:?}]: {:?} is not a label value (at most 63 characters: letters, digits, '-', '_', '.', starting and ending with a letter or digit)",
                shorten(value)
            )));
        }
    }
    let mut total = 0usize;
    for (key, value) in &template.annotations {
        qualified_key("spec.tokenSecretTemplate.annotations", key)?;
        total = total.saturating_add(key.len()).saturating_add(value.len());
    }
    if total > ANNOTATIONS_TOTAL_MAX / 2 {
        return Err(problem(format!(
            "spec.tokenSecretTemplate.annotations are {total} bytes; at most {} are allowed (the operator needs room for its own)",
            ANNOTATIONS_TOTAL_MAX / 2
        )));
    }
    Ok(())
}

fn qualified_key(field: &str, key: &str) -> Result<(), SpecProblem> {
    if key.starts_with(OPERATOR_PREFIX) {
        return Err(problem(format!(
            "{field}: key {key:?} is reserved for the operator ({OPERATOR_PREFIX}...); choose another prefix"
        )));
    }
    if !is_qualified_name(key) {
        return Err(problem(format!(
            "{field}: {:?} is not a valid key (an optional DNS subdomain prefix and '/', then at most 63 characters: letters, digits, '-', '_', '.', starting and ending with a letter or digit)",
            shorten(key)
        )));
    }
    Ok(())
}

/// Long tenant input is cut before it goes into a message.
fn shorten(value: &str) -> String {
    const MAX: usize = 80;
    if value.chars().count() <= MAX {
        value.to_owned()
    } else {
        let head: String = value.chars().take(MAX).collect();
        format!("{head}...")
    }
}

pub fn is_dns_label(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= DNS_LABEL_MAX
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-')
}

pub fn is_dns_subdomain(value: &str) -> bool {
    value.len() <= DNS_SUBDOMAIN_MAX && value.split('.').all(is_dns_label)
}

fn is_sink_path(path: &str) -> bool {
    path.len() <= SINK_PATH_MAX
        && path.starts_with('/')
        && !path.contains(['?', '#', '\\'])
        && !path.chars().any(char::is_control)
}

/// Kubernetes' "name" part of a qualified name, and a non-empty label value.
fn is_name_part(value: &str) -> bool {
    let bytes = value.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            value.len() <= 63
                && first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b))
        }
        _ => false,
    }
}

pub fn is_qualified_name(key: &str) -> bool {
    match key.split_once('/') {
        Some((prefix, name)) => {
            !prefix.is_empty() && is_dns_subdomain(prefix) && is_name_part(name)
        }
        None => is_name_part(key),
    }
}

pub fn is_label_value(value: &str) -> bool {
    value.is_empty() || is_name_part(value)
}

/// The longest wait between two delivery attempts, whatever the policy says.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// A connection's `spec.events.delivery`, checked, with the defaults filled in. The
/// redelivery in `webhooks::delivery` follows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryPolicy {
    /// Attempts after the first.
    pub retry: u32,
    pub backoff: BackoffPolicy,
    pub delay: Duration,
    /// Per attempt.
    pub timeout: Duration,
    pub dead_letter_sink: Option<SinkSpec>,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        DeliveryPolicy {
            retry: 10,
            backoff: BackoffPolicy::Exponential,
            delay: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
            dead_letter_sink: None,
        }
    }
}

impl DeliveryPolicy {
    /// Checks `spec` (api.md section 1) and fills in the defaults.
    pub fn from_spec(spec: Option<&DeliverySpec>) -> Result<DeliveryPolicy, SpecProblem> {
        let mut policy = DeliveryPolicy::default();
        let Some(spec) = spec else {
            return Ok(policy);
        };
        if let Some(retry) = spec.retry {
            if retry > MAX_DELIVERY_RETRY {
                return Err(SpecProblem(format!(
                    "spec.events.delivery.retry {retry} is more than {MAX_DELIVERY_RETRY}"
                )));
            }
            policy.retry = retry;
        }
        policy.backoff = spec.backoff_policy;
        if let Some(delay) = &spec.backoff_delay {
            policy.delay = iso_duration("spec.events.delivery.backoffDelay", delay)?;
        }
        if let Some(timeout) = &spec.timeout {
            let timeout = iso_duration("spec.events.delivery.timeout", timeout)?;
            if timeout > MAX_DELIVERY_TIMEOUT {
                return Err(SpecProblem(
                    "spec.events.delivery.timeout is longer than PT2.5S; Zoom waits 3 seconds for the operator's answer"
                        .to_owned(),
                ));
            }
            policy.timeout = timeout;
        }
        if let Some(dls) = &spec.dead_letter_sink {
            sink("spec.events.delivery.deadLetterSink", dls)?;
            policy.dead_letter_sink = Some(dls.clone());
        }
        Ok(policy)
    }

    /// The policy of `zc`; the defaults when its spec is invalid (the reconciler reports that).
    pub fn of(zc: &ZoomConnection) -> DeliveryPolicy {
        let spec = zc.spec.events.as_ref().and_then(|e| e.delivery.as_ref());
        DeliveryPolicy::from_spec(spec).unwrap_or_default()
    }

    /// How long to wait after failed attempt number `attempt` (1 = the first).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = match self.backoff {
            BackoffPolicy::Exponential => 2u32.saturating_pow(attempt.saturating_sub(1)),
            BackoffPolicy::Linear => attempt.max(1),
        };
        self.delay.saturating_mul(factor).min(MAX_BACKOFF)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::api::{DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN, SINK_PATH_PATTERN};

    #[test]
    fn policies_and_their_defaults() {
        assert_eq!(
            DeliveryPolicy::from_spec(None),
            Ok(DeliveryPolicy::default())
        );
        let spec = DeliverySpec {
            retry: Some(3),
            backoff_policy: BackoffPolicy::Linear,
            backoff_delay: Some("PT0.5S".into()),
            timeout: Some("PT2.5S".into()),
            dead_letter_sink: None,
        };
        let p = DeliveryPolicy::from_spec(Some(&spec)).expect("valid");
        assert_eq!((p.retry, p.timeout), (3, Duration::from_millis(2500)));
        assert_eq!(
            [p.backoff(1), p.backoff(2), p.backoff(3)],
            [500, 1000, 1500].map(Duration::from_millis)
        );
        let e = DeliveryPolicy::default();
        assert_eq!(
            [e.backoff(1), e.backoff(2), e.backoff(4), e.backoff(200)],
            [
                Duration::from_secs(1),
                Duration::from_secs(2),
                Duration::from_secs(8),
                MAX_BACKOFF
            ]
        );
    }

    #[test]
    fn invalid_policies_name_the_field() {
        let cases: [(DeliverySpec, &str); 5] = [
            (
                DeliverySpec {
                    retry: Some(101),
                    ..Default::default()
                },
                "spec.events.delivery.retry",
            ),
            (
                DeliverySpec {
                    timeout: Some("PT3S".into()),
                    ..Default::default()
                },
                "spec.events.delivery.timeout",
            ),
            (
                DeliverySpec {
                    timeout: Some("PT0S".into()),
                    ..Default::default()
                },
                "spec.events.delivery.timeout",
            ),
            (
                DeliverySpec {
                    backoff_delay: Some("1s".into()),
                    ..Default::default()
                },
                "spec.events.delivery.backoffDelay",
            ),
            (
                DeliverySpec {
                    dead_letter_sink: Some(SinkSpec {
                        uri: None,
                        service_ref: None,
                    }),
                    ..Default::default()
                },
                "spec.events.delivery.deadLetterSink",
            ),
        ];
        for (spec, field) in cases {
            let e = DeliveryPolicy::from_spec(Some(&spec)).expect_err(field);
            assert!(e.0.starts_with(field), "{field}: {}", e.0);
        }
    }

    use crate::api::{CredentialsRef, EventsSpec};
    use proptest::prelude::*;

    fn spec() -> ZoomConnectionSpec {
        ZoomConnectionSpec::new(
            AuthType::ServerToServer,
            Some(CredentialsRef::with_name("zoom-app")),
        )
    }

    fn with_ref(name: &str, port: u16, path: Option<&str>) -> ZoomConnectionSpec {
        let mut s = spec();
        s.events = Some(EventsSpec {
            delivery: None,
            sink: SinkSpec::service(name, port, path),
        });
        s
    }

    fn message(s: &ZoomConnectionSpec) -> String {
        validate_spec(s).expect_err("invalid").0
    }

    #[test]
    fn a_plain_spec_is_valid() {
        assert_eq!(validate_spec(&spec()), Ok(Duration::from_secs(600)));
        assert!(validate_spec(&with_ref("handler", 8080, Some("/zoom"))).is_ok());
        let mut s = spec();
        s.token_secret_name = Some("bot.zoom-token".into());
        assert!(validate_spec(&s).is_ok());
    }

    #[test]
    fn injected_ref_names_are_refused_naming_the_field() {
        for name in [
            "169.254.169.254/latest#",
            "evil.example:1234/?",
            "a?b",
            "user@evil",
            "a\\b",
            "Handler",
            "a.b",
            "",
            "-a",
            &"a".repeat(64),
        ] {
            let m = message(&with_ref(name, 80, None));
            assert!(m.starts_with("spec.events.sink.ref.name"), "{name:?}: {m}");
        }
        assert!(validate_spec(&with_ref(&"a".repeat(63), 80, None)).is_ok());
    }

    #[test]
    fn ports_and_paths() {
        assert!(message(&with_ref("h", 0, None)).contains("ref.port"));
        for path in ["zoom", "/a?b", "/a#b", "/a\\b", "/a\nb"] {
            assert!(
                message(&with_ref("h", 80, Some(path))).contains("ref.path"),
                "{path:?}"
            );
        }
    }

    #[test]
    fn refresh_before_is_capped_at_a_day_without_panicking() {
        let mut s = spec();
        s.refresh_before = "24h".into();
        assert!(validate_spec(&s).is_ok());
        for huge in ["24h1s", "3000000000000000h", "99999999999999999999999999h"] {
            s.refresh_before = huge.into();
            assert!(message(&s).starts_with("spec.refreshBefore"), "{huge}");
        }
    }

    #[test]
    fn secret_names() {
        let mut s = spec();
        s.token_secret_name = Some("Bad_Name".into());
        assert!(message(&s).starts_with("spec.tokenSecretName"));
        let mut s = spec();
        s.credentials_ref = Some(CredentialsRef::with_name("../x"));
        assert!(message(&s).starts_with("spec.credentialsRef.name"));
    }

    #[test]
    fn templates() {
        let template = |labels: &[(&str, &str)], annotations: &[(&str, &str)]| {
            let mut s = spec();
            let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect()
            };
            s.token_secret_template = Some(SecretTemplate {
                labels: map(labels),
                annotations: map(annotations),
            });
            validate_spec(&s)
        };
        assert!(template(
            &[("team", "a"), ("example.com/tier", "")],
            &[("note", "any text: ok")]
        )
        .is_ok());
        for (labels, annotations, why) in [
            (&[("bad key", "a")][..], &[][..], "not a valid key"),
            (&[("team", "not ok!")], &[], "not a label value"),
            (&[("team", &*"a".repeat(64))], &[], "not a label value"),
            (
                &[],
                &[("zoom-operator.io/last-refresh-time", "x")],
                "reserved",
            ),
            (&[("zoom-operator.io/connection", "x")], &[], "reserved"),
            (&[], &[("/x", "v")], "not a valid key"),
        ] {
            let err = template(labels, annotations).expect_err(why).0;
            assert!(err.contains(why), "{err}");
            assert!(err.starts_with("spec.tokenSecretTemplate"), "{err}");
        }
        let big = "x".repeat(200 * 1024);
        assert!(template(&[], &[("big", &big)]).is_err());
    }

    #[test]
    fn schema_patterns_agree_with_the_checks() {
        let label = regex::Regex::new(DNS_LABEL_PATTERN).expect("re");
        let subdomain = regex::Regex::new(DNS_SUBDOMAIN_PATTERN).expect("re");
        let path = regex::Regex::new(SINK_PATH_PATTERN).expect("re");
        for s in [
            "a", "a-b", "a.b", "-a", "A", "a/b", "", "1", "a..b", "a.", "x#",
        ] {
            assert_eq!(label.is_match(s), is_dns_label(s), "label {s:?}");
            assert_eq!(
                subdomain.is_match(s),
                is_dns_subdomain(s),
                "subdomain {s:?}"
            );
        }
        for p in ["/", "/a", "a", "/a?b", "/a#", "/a\\b", ""] {
            assert_eq!(path.is_match(p), is_sink_path(p), "path {p:?}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_specs_never_panic_and_errors_name_a_field(
            name in ".{0,80}",
            port in any::<u16>(),
            path in proptest::option::of(".{0,40}"),
            refresh in ".{0,30}",
            secret in ".{0,70}",
            key in ".{0,70}",
            value in ".{0,70}",
        ) {
            let mut s = with_ref(&name, port, path.as_deref());
            s.refresh_before = refresh;
            s.token_secret_name = Some(secret);
            s.token_secret_template = Some(SecretTemplate {
                labels: BTreeMap::from([(key.clone(), value.clone())]),
                annotations: BTreeMap::from([(key, value)]),
            });
            if let Err(e) = validate_spec(&s) {
                prop_assert!(e.0.starts_with("spec."), "{}", e.0);
            }
        }

        #[test]
        fn accepted_ref_names_are_dns_labels(name in "[a-z0-9.:/?#@\\\\-]{0,70}") {
            if validate_spec(&with_ref(&name, 80, None)).is_ok() {
                prop_assert!(label_re().is_match(&name) && name.len() <= 63);
            }
        }
    }

    fn label_re() -> regex::Regex {
        regex::Regex::new(DNS_LABEL_PATTERN).expect("re")
    }
}
