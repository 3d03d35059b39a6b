//! The `zoom-operator` binary: `run`, `crd`, `authorize`.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use url::Url;

use zoom_operator::api::ObjectRef;
use zoom_operator::config::OperatorConfig;
use zoom_operator::urls::UrlSource;

#[derive(Parser)]
#[command(
    name = "zoom-operator",
    version,
    about = "Zoom connections as Kubernetes resources"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller, the public HTTP server (OAuth, events) and the metrics server.
    Run(Box<RunArgs>),
    /// Print the ZoomConnection CRD as YAML.
    Crd,
    /// Print a connection's authorize URL and wait until it is authorized.
    Authorize(AuthorizeArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Public HTTP listener: OAuth start/redirect and Zoom events.
    #[arg(long, env = "ZOOM_OPERATOR_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Admin listener: /metrics, /healthz, /readyz.
    #[arg(
        long,
        env = "ZOOM_OPERATOR_METRICS_LISTEN",
        default_value = "0.0.0.0:9090"
    )]
    metrics_listen: SocketAddr,
    /// Public base URL (overrides --ingress).
    #[arg(long, env = "ZOOM_OPERATOR_PUBLIC_URL")]
    public_url: Option<Url>,
    /// Derive the public URL from this Ingress (NAMESPACE/NAME).
    #[arg(long, env = "ZOOM_OPERATOR_INGRESS")]
    ingress: Option<ObjectRef>,
    #[arg(
        long,
        env = "ZOOM_OPERATOR_ZOOM_OAUTH_URL",
        default_value = "https://zoom.us"
    )]
    zoom_oauth_url: Url,
    #[arg(
        long,
        env = "ZOOM_OPERATOR_ZOOM_API_URL",
        default_value = "https://api.zoom.us"
    )]
    zoom_api_url: Url,
    /// The operator-wide default OAuth app's Secret (NAMESPACE/NAME), for authType DefaultOAuth.
    #[arg(long, env = "ZOOM_OPERATOR_DEFAULT_APP_SECRET")]
    default_app_secret: Option<ObjectRef>,
    /// Watch only these namespaces (repeatable; default: all).
    #[arg(long, env = "ZOOM_OPERATOR_WATCH_NAMESPACE", value_delimiter = ',')]
    watch_namespace: Vec<String>,
    /// Elect a leader among replicas; only the leader reconciles.
    #[arg(
        long,
        env = "ZOOM_OPERATOR_LEADER_ELECTION",
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    leader_election: bool,
    /// Namespace of the leader Lease and the signing-key Secret (default: the pod's namespace).
    #[arg(long, env = "ZOOM_OPERATOR_LEASE_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Extra hosts event sinks may use besides in-cluster Services (repeatable).
    #[arg(long, env = "ZOOM_OPERATOR_ALLOW_SINK_HOST", value_delimiter = ',')]
    allow_sink_host: Vec<String>,
    /// Undelivered events stored for redelivery in all (as ConfigMaps in the lease namespace);
    /// 0 stores none, and an event no sink accepted is answered 503 so that Zoom retries.
    #[arg(long, env = "ZOOM_OPERATOR_MAX_PENDING_EVENTS", default_value_t = 1000)]
    max_pending_events: usize,
    /// Undelivered events stored for redelivery per connection.
    #[arg(
        long,
        env = "ZOOM_OPERATOR_MAX_PENDING_EVENTS_PER_CONNECTION",
        default_value_t = 100
    )]
    max_pending_events_per_connection: usize,
    /// Reconciles run at once. Bounds the API-server connections and the memory a restart
    /// against thousands of connections takes; renewals due at the same moment queue.
    #[arg(
        long,
        env = "ZOOM_OPERATOR_MAX_CONCURRENT_RECONCILES",
        default_value_t = 16,
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    max_concurrent_reconciles: u16,
    #[arg(
        long,
        env = "ZOOM_OPERATOR_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
    /// Test only: run as if the wall clock were this many seconds ahead (negative: behind),
    /// to show that replicas whose clocks disagree still refresh each grant once.
    #[arg(long, hide = true, default_value_t = 0, allow_hyphen_values = true)]
    clock_offset_secs: i64,
}

#[derive(clap::Args)]
struct AuthorizeArgs {
    #[arg(
        short,
        long,
        env = "ZOOM_OPERATOR_NAMESPACE",
        default_value = "default"
    )]
    namespace: String,
    name: String,
    /// Give up after this long (Go duration).
    #[arg(long, env = "ZOOM_OPERATOR_TIMEOUT", default_value = "10m")]
    timeout: String,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn,hyper=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn operator_namespace(flag: Option<String>) -> String {
    flag.or_else(|| std::env::var("POD_NAMESPACE").ok())
        .or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                .ok()
                .map(|s| s.trim().to_owned())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "zoom-operator".to_owned())
}

fn identity() -> String {
    std::env::var("POD_NAME")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .filter(|s| !s.is_empty())
        .map(|h| format!("{h}-{}", std::process::id()))
        .unwrap_or_else(|| format!("zoom-operator-{}", std::process::id()))
}

/// A heap-profiling build (`--features dhat-heap`, docs/benchmarks.md) counts every allocation.
#[cfg(feature = "dhat-heap")]
#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => match zoom_operator::api::crd_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: could not render the CRD: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run(args) => {
            let args = *args;
            init_logging(args.log_format);
            zoom_operator::clock::set_offset_secs(args.clock_offset_secs);
            let url_source = match (args.public_url, args.ingress) {
                (Some(url), _) => UrlSource::Fixed(url),
                (None, Some(ingress)) => UrlSource::Ingress(ingress),
                (None, None) => UrlSource::Unconfigured,
            };
            let config = OperatorConfig {
                listen: args.listen,
                metrics_listen: args.metrics_listen,
                url_source,
                zoom_oauth_url: args.zoom_oauth_url,
                zoom_api_url: args.zoom_api_url,
                default_app_secret: args.default_app_secret,
                watch_namespaces: args
                    .watch_namespace
                    .into_iter()
                    .filter(|n| !n.is_empty())
                    .collect(),
                leader_election: args.leader_election,
                operator_namespace: operator_namespace(args.lease_namespace),
                identity: identity(),
                allow_sink_hosts: args
                    .allow_sink_host
                    .into_iter()
                    .filter(|n| !n.is_empty())
                    .collect(),
                pending_event_limits: zoom_operator::config::Limits {
                    total: args.max_pending_events,
                    per_connection: args.max_pending_events_per_connection,
                },
                max_concurrent_reconciles: args.max_concurrent_reconciles,
            };
            // Written to dhat-heap.json when dropped, after the runtime has stopped.
            #[cfg(feature = "dhat-heap")]
            let _profiler = dhat::Profiler::new_heap();
            block_on(zoom_operator::run::run(config))
        }
        Command::Authorize(args) => {
            init_logging(LogFormat::Text);
            let timeout = match zoom_operator::duration::parse_go_duration(&args.timeout) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: --timeout: {e}");
                    return ExitCode::from(2);
                }
            };
            block_on(zoom_operator::authorize::authorize(
                &args.namespace,
                &args.name,
                timeout,
            ))
        }
    }
}

fn block_on(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(args: &[&str]) -> Result<RunArgs, clap::Error> {
        let cli = Cli::try_parse_from(
            std::iter::once("zoom-operator")
                .chain(std::iter::once("run"))
                .chain(args.iter().copied()),
        )?;
        match cli.command {
            Command::Run(args) => Ok(*args),
            _ => unreachable!("parsed run"),
        }
    }

    #[test]
    fn defaults_follow_the_contract() {
        let args = run_args(&[]).expect("parses");
        assert_eq!(args.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(args.metrics_listen.to_string(), "0.0.0.0:9090");
        assert_eq!(args.zoom_oauth_url.as_str(), "https://zoom.us/");
        assert_eq!(args.zoom_api_url.as_str(), "https://api.zoom.us/");
        assert!(args.leader_election);
        assert!(args.watch_namespace.is_empty() && args.allow_sink_host.is_empty());
    }

    #[test]
    fn repeatable_and_boolean_flags() {
        let args = run_args(&[
            "--watch-namespace=a",
            "--watch-namespace",
            "b",
            "--allow-sink-host=hooks.example.com",
            "--leader-election=false",
            "--ingress=ingress-nginx/zoom",
            "--log-format=json",
        ])
        .expect("parses");
        assert_eq!(args.watch_namespace, ["a", "b"]);
        assert_eq!(args.allow_sink_host, ["hooks.example.com"]);
        assert!(!args.leader_election);
        assert_eq!(args.ingress, Some(ObjectRef::new("ingress-nginx", "zoom")));
        assert!(
            run_args(&["--leader-election"])
                .expect("bare flag")
                .leader_election
        );
    }

    #[test]
    fn bad_values_get_a_clear_error() {
        let err = run_args(&["--ingress=just-a-name"])
            .err()
            .expect("rejected")
            .to_string();
        assert!(err.contains("NAMESPACE/NAME"), "{err}");
        assert!(run_args(&["--public-url=not a url"]).is_err());
        assert!(run_args(&["--log-format=yaml"]).is_err());
    }
}
