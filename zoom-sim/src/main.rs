//! The `zoom-sim` command line: `serve` and `send-event`.
//!
//! stdout is reserved for machine-readable output (the single "listening" line
//! of `serve`, the status and body of `send-event`); logs go to stderr.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use zoom_sim::config::{AppSpec, FileConfig};
use zoom_sim::delivery::{RetryTimestamp, WebhookSettings};
use zoom_sim::server::{self, ServeOptions};
use zoom_sim::state::{
    CodeRejection, ConsentMode, RefreshRejection, RefreshTokenExpiry, Settings,
    DEFAULT_REFRESH_TOKEN_LIFETIME_SECS, DEFAULT_TOKEN_LIFETIME_SECS, MAX_LIFETIME_SECS,
};
use zoom_sim::webhook::{self, EventSpec, SendEvent};

/// Exit status for bad usage or configuration (clap uses the same).
const EXIT_USAGE: u8 = 2;

#[derive(Parser)]
#[command(
    name = "zoom-sim",
    version,
    about = "A Zoom OAuth, REST API and webhook simulator for tests and demos"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the simulated zoom.us OAuth endpoints, api.zoom.us/v2/users/..., webhook delivery and the /sim admin API.
    Serve(ServeArgs),
    /// Send one signed webhook event (or the url_validation challenge) like Zoom does.
    SendEvent(SendEventArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (printed on stdout).
    #[arg(long, env = "ZOOM_SIM_LISTEN", value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,
    /// Access token lifetime in seconds [default: 3599, like Zoom].
    #[arg(long, value_name = "SECS", value_parser = parse_lifetime)]
    token_lifetime: Option<u64>,
    /// Refresh token lifetime in seconds [default: 90 days].
    #[arg(long, value_name = "SECS", value_parser = parse_lifetime)]
    refresh_token_lifetime: Option<u64>,
    /// What /oauth/authorize does: approve, deny or page [default: page].
    #[arg(long, value_name = "MODE", value_parser = parse_consent)]
    consent: Option<ConsentMode>,
    /// How a dead refresh token is answered: invalid_grant_400 (Zoom today), invalid_grant_401,
    /// invalid_request_400, no_reason_400 or no_reason_401 [default: invalid_grant_400].
    #[arg(long, value_name = "DIALECT", value_parser = parse_refresh_rejection)]
    refresh_rejection: Option<RefreshRejection>,
    /// Live grants one user may hold for one app: 1 is Zoom (authorizing again invalidates
    /// the earlier grant); 0 is no limit [default: 0].
    #[arg(long, value_name = "N")]
    grant_tolerance: Option<u32>,
    /// How a bad authorization code is answered: redacted (first 4 characters, invalid_grant)
    /// or echoed (Zoom's: the whole code, invalid_request) [default: redacted].
    #[arg(long, value_name = "DIALECT", value_parser = parse_code_rejection)]
    code_rejection: Option<CodeRejection>,
    /// How refresh tokens expire: sliding (each refresh gives N more) or absolute (never past
    /// N from the authorization); N is --refresh-token-lifetime [default: sliding].
    #[arg(long, value_name = "MODEL", value_parser = parse_refresh_token_expiry)]
    refresh_token_expiry: Option<RefreshTokenExpiry>,
    /// Whether POST /oauth/revoke of a user grant sends app_deauthorized, as Zoom does
    /// [default: true].
    #[arg(long, value_name = "BOOL")]
    revoke_sends_deauthorization: Option<bool>,
    /// Register an app: kind=oauth|s2s,client_id=ID,client_secret=S,secret_token=T,
    /// account_id=A,user_id=U,email=E[,event_url=URL][,name=N][,scopes=a+b]
    /// [,verification_token=V][,api_url=URL][,redirect_urls=a+b][,allow_list=a+b]
    /// [,deauthorization_url=URL]. Repeatable.
    #[arg(long = "app", value_name = "SPEC", value_parser = parse_app_spec)]
    apps: Vec<AppSpec>,
    /// JSON config file: {"listen","public_url","token_lifetime_secs","refresh_token_lifetime_secs","consent",
    /// "webhook_timeout_ms","webhook_retries","retry_timestamp","duplicate_rate","max_pending_webhooks",
    /// "webhook_request_id_header","legacy_authorization_header","rate_limit":{..},
    /// "refresh_rejection","code_rejection","grant_tolerance","refresh_token_expiry",
    /// "revoke_sends_deauthorization","apps":[..]}.
    /// Command-line flags win over it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Base URL reported as api_url in token answers [default: the Host the client used].
    #[arg(long, value_name = "URL", value_parser = parse_http_url)]
    public_url: Option<String>,
    /// How long a webhook receiver may take to answer [default: 3000, as Zoom].
    #[arg(long, value_name = "MS")]
    webhook_timeout_ms: Option<u64>,
    /// Do not retry failed webhook deliveries (Zoom retries after 5, 20 and 60 minutes).
    #[arg(long)]
    no_webhook_retries: bool,
    /// x-zm-request-timestamp of a retry: original (the first attempt's) or fresh [default: original].
    #[arg(long, value_name = "MODE", value_parser = parse_retry_timestamp)]
    retry_timestamp: Option<RetryTimestamp>,
    /// Probability (0..=1) that an event is delivered twice, same body and headers [default: 0].
    #[arg(long, value_name = "RATE")]
    duplicate_rate: Option<f64>,
    /// Also send x-zm-request-id on webhooks (Zoom documents only x-zm-trackingid).
    #[arg(long)]
    webhook_request_id: bool,
    /// Send the app's verification token as the legacy authorization header on webhooks.
    #[arg(long)]
    legacy_authorization: bool,
    /// Most deliveries waiting for a retry; the oldest is dropped beyond it [default: 10000].
    #[arg(long, value_name = "N")]
    max_pending_webhooks: Option<usize>,
    /// Rate-limit the REST API per account and category, like Zoom's Pro plan.
    #[arg(long)]
    rate_limit: bool,
    /// With --rate-limit: answer 429 without Retry-After (Zoom sometimes does).
    #[arg(long, requires = "rate_limit")]
    no_retry_after: bool,
}

#[derive(Args)]
struct SendEventArgs {
    /// Webhook endpoint to POST to.
    #[arg(long, value_parser = parse_http_url)]
    url: String,
    /// The app's webhook secret token (signs x-zm-signature).
    #[arg(long, env = "ZOOM_SIM_SECRET_TOKEN", hide_env_values = true)]
    secret_token: String,
    /// Event name, e.g. meeting.started.
    #[arg(long, required_unless_present = "validate")]
    event: Option<String>,
    /// Send endpoint.url_validation and check the receiver's answer instead of an event.
    #[arg(long, conflicts_with_all = ["event", "payload", "payload_file", "account_id"])]
    validate: bool,
    /// Sets payload.account_id.
    #[arg(long)]
    account_id: Option<String>,
    /// Payload fields as a JSON object.
    #[arg(long, conflicts_with = "payload_file")]
    payload: Option<String>,
    /// Payload fields from a JSON file.
    #[arg(long, value_name = "FILE")]
    payload_file: Option<PathBuf>,
    /// x-zm-request-id [default: random UUID].
    #[arg(long)]
    request_id: Option<String>,
    /// Override x-zm-request-timestamp (Unix seconds), e.g. to test stale-request rejection.
    #[arg(long, value_name = "SECS")]
    timestamp: Option<i64>,
    /// Send a well-formed but wrong x-zm-signature.
    #[arg(long)]
    bad_signature: bool,
    /// Sets the clientid header Zoom sends.
    #[arg(long)]
    client_id: Option<String>,
    /// Give up on the receiver after this many seconds (Zoom waits 3).
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    timeout: u64,
    /// Send this legacy verification token as the authorization header.
    #[arg(long, value_name = "TOKEN")]
    verification_token: Option<String>,
}

fn parse_lifetime(s: &str) -> Result<u64, String> {
    let secs: u64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if secs == 0 || secs > MAX_LIFETIME_SECS {
        return Err(format!("must be 1..={MAX_LIFETIME_SECS} seconds"));
    }
    Ok(secs)
}

fn parse_consent(s: &str) -> Result<ConsentMode, String> {
    s.parse()
}

fn parse_retry_timestamp(s: &str) -> Result<RetryTimestamp, String> {
    s.parse()
}

fn parse_refresh_rejection(s: &str) -> Result<RefreshRejection, String> {
    s.parse()
}

fn parse_code_rejection(s: &str) -> Result<CodeRejection, String> {
    s.parse()
}

fn parse_refresh_token_expiry(s: &str) -> Result<RefreshTokenExpiry, String> {
    s.parse()
}

fn parse_app_spec(s: &str) -> Result<AppSpec, String> {
    let spec = AppSpec::parse_cli(s)?;
    // Validate now so that mistakes are reported as flag errors; built again in `serve`.
    spec.clone().into_app()?;
    Ok(spec)
}

fn parse_http_url(s: &str) -> Result<String, String> {
    match url::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(s.to_owned()),
        Ok(_) => Err("must be an http or https URL".to_owned()),
        Err(e) => Err(format!("not an absolute URL: {e}")),
    }
}

fn init_logging(default_level: &str) {
    let filter =
        EnvFilter::try_from_env("ZOOM_SIM_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes help a human at a terminal and garble captured logs.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Serve(args) => {
            init_logging("info");
            runtime.block_on(serve(args))
        }
        Command::SendEvent(args) => {
            init_logging("warn");
            runtime.block_on(send_event(args))
        }
    }
}

/// Merges flags over the config file over defaults.
fn serve_options(args: ServeArgs) -> Result<ServeOptions, String> {
    let file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let settings = oauth_settings(&args, &file)?;
    let webhooks = webhook_settings(&args, &file);
    let listen = match (args.listen, file.listen) {
        (Some(addr), _) => addr,
        (None, Some(text)) => text
            .parse()
            .map_err(|_| format!("config listen {text:?} is not ADDR:PORT"))?,
        (None, None) => SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    let public_url = match (args.public_url, file.public_url) {
        (Some(url), _) => Some(url),
        (None, Some(url)) => {
            Some(parse_http_url(&url).map_err(|e| format!("config public_url: {e}"))?)
        }
        (None, None) => None,
    };
    webhooks.validate()?;
    let mut rate_limit = file.rate_limit.unwrap_or_default();
    if args.rate_limit {
        rate_limit.enabled = true;
    }
    if args.no_retry_after {
        rate_limit.retry_after = false;
    }
    rate_limit.validate()?;
    let mut apps = Vec::new();
    for spec in file.apps.into_iter().chain(args.apps) {
        let built = spec.into_app()?;
        if built.generated_secret_token {
            tracing::warn!(
                client_id = %built.app.client_id,
                secret_token = %built.app.secret_token,
                "no secret_token given; webhooks for this app are signed with this random one"
            );
        }
        apps.push(built.app);
    }
    Ok(ServeOptions {
        listen,
        settings,
        apps,
        public_url,
        webhooks,
        rate_limit,
    })
}

/// The OAuth settings: flags over the config file over defaults.
fn oauth_settings(args: &ServeArgs, file: &FileConfig) -> Result<Settings, String> {
    let token_lifetime_secs = args
        .token_lifetime
        .or(file.token_lifetime_secs)
        .unwrap_or(DEFAULT_TOKEN_LIFETIME_SECS);
    let refresh_token_lifetime_secs = args
        .refresh_token_lifetime
        .or(file.refresh_token_lifetime_secs)
        .unwrap_or(DEFAULT_REFRESH_TOKEN_LIFETIME_SECS);
    for (name, secs) in [
        ("token_lifetime_secs", token_lifetime_secs),
        ("refresh_token_lifetime_secs", refresh_token_lifetime_secs),
    ] {
        if secs == 0 || secs > MAX_LIFETIME_SECS {
            return Err(format!("config {name} must be 1..={MAX_LIFETIME_SECS}"));
        }
    }
    Ok(Settings {
        consent: args.consent.or(file.consent).unwrap_or(ConsentMode::Page),
        token_lifetime_secs,
        refresh_token_lifetime_secs,
        refresh_rejection: args
            .refresh_rejection
            .or(file.refresh_rejection)
            .unwrap_or_default(),
        code_rejection: args
            .code_rejection
            .or(file.code_rejection)
            .unwrap_or_default(),
        grant_tolerance: args
            .grant_tolerance
            .or(file.grant_tolerance)
            .unwrap_or_default(),
        refresh_token_expiry: args
            .refresh_token_expiry
            .or(file.refresh_token_expiry)
            .unwrap_or_default(),
        revoke_sends_deauthorization: args
            .revoke_sends_deauthorization
            .or(file.revoke_sends_deauthorization)
            .unwrap_or(Settings::default().revoke_sends_deauthorization),
    })
}

/// The webhook settings: flags over the config file over defaults.
fn webhook_settings(args: &ServeArgs, file: &FileConfig) -> WebhookSettings {
    let defaults = WebhookSettings::default();
    WebhookSettings {
        webhook_timeout_ms: args
            .webhook_timeout_ms
            .or(file.webhook_timeout_ms)
            .unwrap_or(defaults.webhook_timeout_ms),
        webhook_retries: !args.no_webhook_retries
            && file.webhook_retries.unwrap_or(defaults.webhook_retries),
        retry_timestamp: args
            .retry_timestamp
            .or(file.retry_timestamp)
            .unwrap_or(defaults.retry_timestamp),
        duplicate_rate: args
            .duplicate_rate
            .or(file.duplicate_rate)
            .unwrap_or(defaults.duplicate_rate),
        webhook_request_id_header: args.webhook_request_id
            || file
                .webhook_request_id_header
                .unwrap_or(defaults.webhook_request_id_header),
        legacy_authorization_header: args.legacy_authorization
            || file
                .legacy_authorization_header
                .unwrap_or(defaults.legacy_authorization_header),
        max_pending_webhooks: args
            .max_pending_webhooks
            .or(file.max_pending_webhooks)
            .unwrap_or(defaults.max_pending_webhooks),
    }
}

async fn serve(args: ServeArgs) -> ExitCode {
    let opts = match serve_options(args) {
        Ok(opts) => opts,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let settings = opts.settings;
    let app_count = opts.apps.len();
    let running = match server::start(opts).await {
        Ok(running) => running,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    // The one stdout line scripts wait for; flushed because stdout may be a pipe.
    let mut stdout = std::io::stdout();
    if writeln!(stdout, "zoom-sim listening on {}", running.base_url())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        eprintln!("error: cannot write to stdout");
    }
    tracing::info!(
        apps = app_count,
        consent = %settings.consent,
        token_lifetime_secs = settings.token_lifetime_secs,
        "serving; the /sim admin API is unauthenticated, keep this on a trusted interface"
    );
    shutdown_signal().await;
    tracing::info!("shutting down");
    match running.shutdown().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Ctrl-C or SIGTERM (what Kubernetes and test harnesses send).
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

fn read_payload(args: &SendEventArgs) -> Result<Option<serde_json::Value>, String> {
    let text = match (&args.payload, &args.payload_file) {
        (Some(text), _) => text.clone(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read payload file {}: {e}", path.display()))?,
        (None, None) => return Ok(None),
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("the payload is not valid JSON: {e}"))?;
    if !value.is_object() {
        return Err("the payload must be a JSON object".to_owned());
    }
    Ok(Some(value))
}

async fn send_event(args: SendEventArgs) -> ExitCode {
    let payload = match read_payload(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let spec = match (args.validate, args.event) {
        (true, _) => EventSpec::Validate,
        (false, Some(event)) => EventSpec::Named {
            event,
            account_id: args.account_id,
            payload,
        },
        // clap enforces --event unless --validate.
        (false, None) => {
            eprintln!("error: --event is required");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let http = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(http) => http,
        Err(e) => {
            eprintln!("error: cannot build the HTTP client: {e}");
            return ExitCode::FAILURE;
        }
    };
    let opts = SendEvent {
        url: args.url,
        secret_token: args.secret_token,
        spec,
        request_id: args.request_id,
        timestamp_secs: args.timestamp,
        bad_signature: args.bad_signature,
        client_id: args.client_id,
        verification_token: args.verification_token,
        timeout: Duration::from_secs(args.timeout.max(1)),
    };
    match webhook::send_event(&http, opts).await {
        Ok(report) => {
            println!("status: {}", report.delivery.status);
            println!("{}", report.delivery.body);
            match &report.validation {
                Some(Ok(())) => println!("validation: ok"),
                Some(Err(why)) => println!("validation: failed: {why}"),
                None => {}
            }
            if report.succeeded() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
