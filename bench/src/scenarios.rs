//! The benchmarks themselves. Each prints `figure: NAME = VALUE` lines (with N) and the
//! breakdowns behind them; nothing is asserted about speed.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use futures::{stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

use zoom_operator::api::ZoomConnection;
use zoom_operator::zoom::webhook::sign;

use crate::world::{connection, credentials, World, NS};

fn figure(name: &str, value: impl std::fmt::Display) {
    println!("figure: {name} = {value}");
}

/// "2 cores (MODEL), 4.0 GiB".
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(str::trim)
        .unwrap_or("unknown CPU");
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kib: f64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0.0);
    format!(
        "{cores} cores ({model}), {:.1} GiB",
        mem_kib / 1024.0 / 1024.0
    )
}

/// Generous: a slow machine gets there eventually; the figure says how long it took.
fn ready_timeout(n: usize) -> Duration {
    Duration::from_secs(120 + n as u64 / 5)
}

fn s2s_app(client_id: &str, account: &str, token: &str) -> String {
    format!("--app=kind=s2s,client_id={client_id},client_secret=s2s-secret,account_id={account},secret_token={token}")
}

fn s2s_secret(name: &str, client_id: &str, account: &str, token: &str) -> Secret {
    credentials(
        name,
        &[
            ("clientId", client_id),
            ("clientSecret", "s2s-secret"),
            ("accountId", account),
            ("secretToken", token),
        ],
    )
}

/// `n` Ready Server-to-Server connections of one app, the operator that made them Ready,
/// and how long that took.
async fn ready_s2s(
    w: &World,
    n: usize,
    from: usize,
    operator: &crate::world::Operator,
) -> anyhow::Result<Duration> {
    let connections = (from..n)
        .map(|i| connection(&format!("c{i}"), "ServerToServer", "app"))
        .collect();
    w.create_all(NS, connections).await?;
    operator.wait_ready(&w.http, n, ready_timeout(n)).await
}

// ----- startup ----------------------------------------------------------------------------

pub async fn startup(n: usize) -> anyhow::Result<()> {
    let w = World::start(&[s2s_app("s2s", "acc-1", "tok")]).await?;
    let (baseline, baseline_cpu) = baseline_rate(&w, n, false).await?;
    // The same with the Event the operator publishes for a new connection: the ceiling for
    // three writes per connection.
    let (with_events, with_events_cpu) = baseline_rate(&w, n, true).await?;

    w.create_all(NS, vec![s2s_secret("app", "s2s", "acc-1", "tok")])
        .await?;
    let connections = (0..n)
        .map(|i| connection(&format!("c{i}"), "ServerToServer", "app"))
        .collect();
    w.create_all(NS, connections).await?;
    let cpu_before = w.cpu(None);
    let op = w.operator(&[]).await?;
    let took = op.wait_ready(&w.http, n, ready_timeout(n)).await?;
    let cpu = w.cpu(Some(&op)).since(&cpu_before, n);
    // Let follow-up passes (if any) happen before counting.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let requests = w.operator_requests(op.started)?;
    let events = w.events().await?;
    let reconciles = op.reconciles(&w.http).await?;
    let rate = n as f64 / took.as_secs_f64();
    println!("# N = {n} ServerToServer connections, created before the operator started");
    figure(
        "connections to Ready",
        format!(
            "{rate:.1}/s ({:.1} s for {n}, from process start)",
            took.as_secs_f64()
        ),
    );
    figure(
        "API server alone, a Secret create and a status apply per connection (16 clients)",
        format!("{baseline:.1}/s"),
    );
    figure("ratio", format!("{:.2}", rate / baseline));
    figure(
        "API server alone, the same plus an Event create per connection (16 clients)",
        format!(
            "{with_events:.1}/s (the operator reaches {:.2} of it)",
            rate / with_events
        ),
    );
    figure("CPU ms per connection, operator run (to Ready)", cpu);
    figure("CPU ms per connection, API server alone", baseline_cpu);
    figure(
        "CPU ms per connection, API server alone with Events",
        with_events_cpu,
    );
    figure(
        "API requests per connection",
        format!(
            "{:.2} ({})",
            requests.work() as f64 / n as f64,
            requests.breakdown()
        ),
    );
    figure(
        "Events per connection",
        format!("{:.2}", events as f64 / n as f64),
    );
    figure(
        "reconciles per connection",
        format!("{:.2}", reconciles as f64 / n as f64),
    );
    Ok(())
}

/// What the API server alone sustains for the writes a new connection needs (a Secret create
/// and a status apply), from 16 concurrent clients: the ceiling the operator is compared with.
/// Also what each process's CPU time per connection was meanwhile. `with_events`: an Event
/// create per connection too, as the operator publishes for a new connection.
async fn baseline_rate(w: &World, n: usize, with_events: bool) -> anyhow::Result<(f64, String)> {
    let ns = if with_events {
        "baseline-events"
    } else {
        "baseline"
    };
    let zcs = (0..n)
        .map(|i| connection(&format!("b{i}"), "ServerToServer", "app"))
        .collect();
    w.create_all(ns, zcs).await?;
    let secrets: Api<Secret> = Api::namespaced(w.client.clone(), ns);
    let zcs: Api<ZoomConnection> = Api::namespaced(w.client.clone(), ns);
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(w.client.clone(), ns);
    let cpu_before = w.cpu(None);
    let started = Instant::now();
    let results: Vec<anyhow::Result<()>> = stream::iter(0..n)
        .map(|i| {
            let (secrets, zcs, events) = (secrets.clone(), zcs.clone(), events.clone());
            async move {
                let secret = credentials(&format!("b{i}-zoom-token"), &[("access_token", "x")]);
                secrets.create(&Default::default(), &secret).await?;
                let status = json!({
                    "apiVersion": "zoom-operator.io/v1alpha1",
                    "kind": "ZoomConnection",
                    "status": {"observedGeneration": 1, "conditions": [{
                        "type": "Ready", "status": "True", "reason": "Ready", "message": "bench",
                        "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}]},
                });
                zcs.patch_status(
                    &format!("b{i}"),
                    &PatchParams::apply("bench").force(),
                    &Patch::Apply(&status),
                )
                .await?;
                if with_events {
                    events
                        .create(&Default::default(), &bench_event(ns, &format!("b{i}")))
                        .await?;
                }
                Ok(())
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let rate = n as f64 / started.elapsed().as_secs_f64();
    results.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    Ok((rate, w.cpu(None).since(&cpu_before, n)))
}

/// An Event like the one the operator publishes when a new connection becomes Ready.
fn bench_event(ns: &str, name: &str) -> k8s_openapi::api::events::v1::Event {
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": format!("{name}.bench")},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "type": "Normal", "reason": "Ready", "action": "Ready",
        "note": "Ready=True: the connection is ready",
        "reportingController": "bench", "reportingInstance": "bench",
        "regarding": {"apiVersion": "zoom-operator.io/v1alpha1", "kind": "ZoomConnection",
                      "namespace": ns, "name": name},
    }))
    .expect("event")
}

// ----- memory -----------------------------------------------------------------------------

/// How long memory is left to settle before it is read.
const SETTLE: Duration = Duration::from_secs(12);

pub async fn memory(n: usize) -> anyhow::Result<()> {
    let w = World::start(&[s2s_app("s2s", "acc-1", "tok")]).await?;
    w.create_all(NS, vec![s2s_secret("app", "s2s", "acc-1", "tok")])
        .await?;
    let op = w.operator(&[]).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (idle, _) = op.memory();
    println!("# memory (RSS) of the operator with N Ready ServerToServer connections");
    figure("RSS at 0 connections", format!("{idle:.1} MiB"));
    let mut done = 0;
    let mut last = idle;
    for step in [n / 5, n / 2, n] {
        if step <= done {
            continue;
        }
        ready_s2s(&w, step, done, &op).await?;
        done = step;
        // Settled: the operator hands freed heap back every 10 s (run.rs, trim_heap).
        tokio::time::sleep(SETTLE).await;
        let (rss, peak) = op.memory();
        last = rss;
        figure(
            &format!("RSS at {step} connections"),
            format!("{rss:.1} MiB (peak so far {peak:.1} MiB)"),
        );
    }
    if n > 0 {
        figure(
            "memory per connection",
            format!("{:.1} KiB", (last - idle) * 1024.0 / n as f64),
        );
    }
    // Secrets that are not ours must cost nothing.
    let blob = "x".repeat(10 * 1024);
    let unrelated = (0..2 * n)
        .map(|i| credentials(&format!("unrelated-{i}"), &[("blob", &blob)]))
        .collect();
    w.create_all(NS, unrelated).await?;
    tokio::time::sleep(SETTLE).await;
    let (rss, peak) = op.memory();
    figure(
        &format!(
            "RSS at {n} connections + {} unrelated 10 KiB Secrets",
            2 * n
        ),
        format!("{rss:.1} MiB (peak {peak:.1} MiB)"),
    );
    let (heap, mapped) = op.memory_split();
    figure(
        "of which heap and stacks / mapped binary and libraries",
        format!("{heap:.1} MiB / {mapped:.1} MiB"),
    );
    // A graceful stop, so a heap-profiling build (--features dhat-heap) writes its profile.
    op.process.terminate()
}

// ----- restart ----------------------------------------------------------------------------

pub async fn restart(n: usize) -> anyhow::Result<()> {
    let w = World::start(&[s2s_app("s2s", "acc-1", "tok")]).await?;
    w.create_all(NS, vec![s2s_secret("app", "s2s", "acc-1", "tok")])
        .await?;
    let first = w.operator(&[]).await?;
    ready_s2s(&w, n, 0, &first).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (steady, _) = first.memory();
    first.process.terminate()?;
    let mints_before = w.sim_stat("account_credentials_grants").await?;

    let op = w.operator(&[]).await?;
    let started = Instant::now();
    let mut sockets = HashSet::new();
    let mut most_open = 0;
    let mut all_reconciled = None;
    while started.elapsed() < Duration::from_secs(30) {
        let open = op.sockets();
        most_open = most_open.max(open.len());
        sockets.extend(open);
        if all_reconciled.is_none() && op.reconciles(&w.http).await.unwrap_or(0) >= n as u64 {
            all_reconciled = Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (rss, peak) = op.memory();
    let requests = w.operator_requests(op.started)?;
    let mints = w.sim_stat("account_credentials_grants").await? - mints_before;
    println!("# the operator restarted (SIGTERM, then a new process) against N Ready connections");
    figure("N", n);
    figure(
        "sockets opened in the first 30 s (sampled every 50 ms)",
        format!("{} (at most {most_open} open at once)", sockets.len()),
    );
    figure(
        "all connections reconciled after",
        all_reconciled.map_or("not within 30 s".to_owned(), |d| {
            format!("{:.1} s", d.as_secs_f64())
        }),
    );
    figure(
        "memory",
        format!("{rss:.1} MiB, peak {peak:.1} MiB (before the restart: {steady:.1} MiB)"),
    );
    figure("tokens minted (none was due)", mints);
    figure(
        "API requests in the first 30 s",
        format!("{} ({})", requests.work(), requests.breakdown()),
    );
    Ok(())
}

// ----- refresh ----------------------------------------------------------------------------

pub async fn refresh(n: usize, seconds: u64) -> anyhow::Result<()> {
    let w = World::start(&[
        "--app=kind=oauth,client_id=oa,client_secret=oa-secret".to_owned(),
        "--token-lifetime=60".to_owned(),
        "--consent=approve".to_owned(),
    ])
    .await?;
    for i in 0..n {
        w.sim_post(
            "/sim/apps/oa/users",
            json!({"user_id": format!("u{i}"), "email": format!("u{i}@bench.example")}),
        )
        .await?;
    }
    w.create_all(
        NS,
        vec![credentials(
            "app",
            &[("clientId", "oa"), ("clientSecret", "oa-secret")],
        )],
    )
    .await?;
    let connections = (0..n)
        .map(|i| {
            let mut zc = connection(&format!("c{i}"), "PrivateOAuth", "app");
            zc.spec.refresh_before = "30s".to_owned();
            zc
        })
        .collect();
    w.create_all(NS, connections).await?;
    let op = w.operator(&[]).await?;
    authorize_all(&w, n).await?;
    op.wait_ready(&w.http, n, ready_timeout(n)).await?;

    println!("# N = {n} OAuth connections, 60 s tokens, refreshBefore 30s, for {seconds} s");
    let since = jiff::Timestamp::now();
    let refreshes_before = w.sim_stat("refreshes").await?;
    let started = Instant::now();
    let mut histogram = Vec::new();
    let mut last = refreshes_before;
    let mut expired_seen = 0;
    let mut samples = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let now = w.sim_stat("refreshes").await?;
        histogram.push(now - last);
        last = now;
        expired_seen += expired_tokens(&w).await?;
        samples += 1;
    }
    let refreshes = last - refreshes_before;
    let reused = w.sim_stat("reused_refresh_tokens").await?;
    let requests = w.operator_requests(since)?;
    let per = |x: u64| x as f64 / refreshes.max(1) as f64;
    figure("refreshes", refreshes);
    figure("reused refresh tokens", reused);
    figure(
        "expired access tokens seen in token Secrets",
        format!("{expired_seen} (in {samples} looks at all {n})"),
    );
    figure(
        "API requests per refresh",
        format!("{:.2} ({})", per(requests.work()), requests.breakdown()),
    );
    figure(
        "status writes per refresh",
        format!("{:.2}", per(requests.count("patch zoomconnections/status"))),
    );
    figure(
        "refreshes per 5 s",
        histogram
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(" "),
    );
    Ok(())
}

/// Each connection authorized by its own Zoom user, through the browser flow.
async fn authorize_all(w: &World, n: usize) -> anyhow::Result<()> {
    let zcs: Api<ZoomConnection> = Api::namespaced(w.client.clone(), NS);
    let deadline = Instant::now() + ready_timeout(n);
    let starts = loop {
        let list = zcs.list(&ListParams::default()).await?;
        let starts: Vec<(String, String)> = list
            .items
            .iter()
            .filter_map(|zc| {
                Some((
                    zc.metadata.name.clone()?,
                    zc.status.as_ref()?.authorize_url.clone()?,
                ))
            })
            .collect();
        if starts.len() >= n {
            break starts;
        }
        if Instant::now() > deadline {
            bail!(
                "only {} of {n} connections show an authorize URL",
                starts.len()
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let results: Vec<anyhow::Result<()>> = stream::iter(starts)
        .map(|(name, start)| async move {
            let user = name.trim_start_matches('c');
            let to_zoom = location(w.http.get(&start).send().await?)?;
            let to_zoom = format!("{to_zoom}&login_hint=u{user}%40bench.example");
            let callback = location(w.http.get(&to_zoom).send().await?)?;
            let answer = w.http.get(&callback).send().await?;
            if !answer.status().is_success() {
                bail!("callback of {name}: {}", answer.status());
            }
            Ok(())
        })
        .buffer_unordered(8)
        .collect()
        .await;
    results.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    Ok(())
}

fn location(response: reqwest::Response) -> anyhow::Result<String> {
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .with_context(|| format!("no redirect ({})", response.status()))
}

/// Token Secrets holding an access token past its expiry right now.
async fn expired_tokens(w: &World) -> anyhow::Result<u64> {
    let secrets: Api<Secret> = Api::namespaced(w.client.clone(), NS);
    let list = secrets
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=zoom-operator"))
        .await?;
    let now = jiff::Timestamp::now();
    Ok(list
        .items
        .iter()
        .filter_map(|s| {
            let raw = s.data.as_ref()?.get("expires_at")?;
            let at: jiff::Timestamp = std::str::from_utf8(&raw.0).ok()?.parse().ok()?;
            Some(at < now)
        })
        .filter(|expired| *expired)
        .count() as u64)
}

// ----- webhooks ---------------------------------------------------------------------------

/// What one load run measured.
struct Load {
    requests: u64,
    ok: u64,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

impl Load {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies_us.len() - 1) as f64 * p).round() as usize;
        self.latencies_us[i] as f64 / 1000.0
    }

    fn describe(&self, ceiling: Option<f64>) -> String {
        let ratio = ceiling.map_or(String::new(), |c| {
            format!(", {:.2}x the ceiling", self.rate() / c)
        });
        format!(
            "{:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} of {} answered 2xx{ratio}",
            self.rate(),
            self.percentile(0.5),
            self.percentile(0.99),
            self.ok,
            self.requests
        )
    }
}

/// How a worker signs its requests.
#[derive(Clone, Copy)]
enum Signing {
    Valid,
    Invalid,
}

/// `workers` concurrent HTTP/1.1 connections POSTing signed `meeting.started` events for
/// `apps` apps (round robin) at `url` for `seconds`.
async fn load(
    url: &str,
    seconds: u64,
    workers: usize,
    apps: usize,
    signing: Signing,
) -> anyhow::Result<Load> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(workers)
        .timeout(Duration::from_secs(10))
        .build()?;
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|worker| {
            let (client, url, stop) = (client.clone(), url.to_owned(), stop.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let (mut requests, mut ok) = (0u64, 0u64);
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    seq += 1;
                    let app = (worker + seq as usize) % apps;
                    let (request, body) = event_request(&client, &url, app, worker, seq, signing);
                    let sent = Instant::now();
                    let answer = request.body(body).send().await;
                    latencies.push(sent.elapsed().as_micros() as u64);
                    requests += 1;
                    if let Ok(answer) = answer {
                        if answer.status().is_success() {
                            ok += 1;
                        }
                        let _ = answer.bytes().await;
                    }
                }
                (requests, ok, latencies)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut result = Load {
        requests: 0,
        ok: 0,
        elapsed: Duration::ZERO,
        latencies_us: Vec::new(),
    };
    for task in tasks {
        let (requests, ok, latencies) = task.await?;
        result.requests += requests;
        result.ok += ok;
        result.latencies_us.extend(latencies);
    }
    result.elapsed = started.elapsed();
    result.latencies_us.sort_unstable();
    Ok(result)
}

fn event_request(
    client: &reqwest::Client,
    url: &str,
    app: usize,
    worker: usize,
    seq: u64,
    signing: Signing,
) -> (reqwest::RequestBuilder, Vec<u8>) {
    let now = jiff::Timestamp::now();
    let body = serde_json::to_vec(&json!({
        "event": "meeting.started",
        "event_ts": now.as_millisecond(),
        "payload": {"account_id": format!("acc-{app}"), "object": {
            "id": format!("{worker}-{seq}"), "uuid": format!("bench-{worker}-{seq}"),
            "topic": "bench", "start_time": now.to_string()}},
    }))
    .unwrap_or_default();
    let timestamp = now.as_second().to_string();
    let token = match signing {
        Signing::Valid => format!("tok-{app}"),
        Signing::Invalid => "not-the-token".to_owned(),
    };
    let signature = sign(token.as_bytes(), &timestamp, &body);
    let request = client
        .post(url)
        .header("content-type", "application/json")
        .header("x-zm-request-timestamp", timestamp)
        .header("x-zm-signature", signature)
        .header("clientid", format!("app-{app}"));
    (request, body)
}

/// A bare axum handler answering 200, in this process: the ceiling of what an HTTP server on
/// this machine does under the same load generator.
async fn bare_server() -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/zoom/event",
        axum::routing::post(|_body: axum::body::Bytes| async { "{}" }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{addr}/zoom/event"))
}

pub async fn webhooks(seconds: u64) -> anyhow::Result<()> {
    const WORKERS: usize = 64;
    const APPS: usize = 100;
    let apps: Vec<String> = (0..APPS)
        .map(|k| {
            s2s_app(
                &format!("app-{k}"),
                &format!("acc-{k}"),
                &format!("tok-{k}"),
            )
        })
        .collect();
    let w = World::start(&apps).await?;
    let add_apps = |range: std::ops::Range<usize>| {
        let secrets: Vec<Secret> = range
            .clone()
            .map(|k| {
                s2s_secret(
                    &format!("app-{k}"),
                    &format!("app-{k}"),
                    &format!("acc-{k}"),
                    &format!("tok-{k}"),
                )
            })
            .collect();
        let zcs: Vec<ZoomConnection> = range
            .map(|k| connection(&format!("c{k}"), "ServerToServer", &format!("app-{k}")))
            .collect();
        (secrets, zcs)
    };
    let (secrets, zcs) = add_apps(0..1);
    w.create_all(NS, secrets).await?;
    w.create_all(NS, zcs).await?;
    let op = w.operator(&[]).await?;
    op.wait_ready(&w.http, 1, ready_timeout(1)).await?;
    let url = format!("{}/zoom/event", op.public);

    println!("# {WORKERS} concurrent connections, signed meeting.started (about 250 bytes), no sink, {seconds} s each");
    let ceiling = load(&bare_server().await?, seconds, WORKERS, 1, Signing::Valid).await?;
    figure("bare axum handler (the ceiling)", ceiling.describe(None));
    let c = Some(ceiling.rate());
    let one = load(&url, seconds, WORKERS, 1, Signing::Valid).await?;
    figure("1 app, verified", one.describe(c));

    let (secrets, zcs) = add_apps(1..APPS);
    w.create_all(NS, secrets).await?;
    w.create_all(NS, zcs).await?;
    op.wait_ready(&w.http, APPS, ready_timeout(APPS)).await?;
    // The routing index rebuilds within a second of the last change.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let many = load(&url, seconds, WORKERS, APPS, Signing::Valid).await?;
    figure(&format!("{APPS} apps, verified"), many.describe(c));
    let invalid = load(&url, seconds, WORKERS, APPS, Signing::Invalid).await?;
    figure(
        &format!("{APPS} apps, invalid signatures (answered 401)"),
        invalid.describe(c),
    );
    // Unauthenticated traffic must not starve real events: half the connections each.
    let (valid, forged) = tokio::join!(
        load(&url, seconds, WORKERS / 2, APPS, Signing::Valid),
        load(&url, seconds, WORKERS / 2, APPS, Signing::Invalid),
    );
    figure(
        &format!("{APPS} apps, verified, while as many forged requests arrive"),
        valid?.describe(c),
    );
    figure("... and the forged ones", forged?.describe(c));
    Ok(())
}
