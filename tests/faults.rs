//! Fault injection around token rotation (api.md section 4, issue 8): forced double
//! refreshes, a token write the API server refuses, a leader SIGKILLed between Zoom's answer
//! and the write, and a leader whose API-server connection stalls. Every test asserts that
//! zoom-sim counted no reused refresh token, and that the token Secret holds the newest grant
//! or the status says exactly why not.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use zoom_operator::api::ZoomConnection;

const FENCE: &str = "zoom-operator.io/refresh-fence";

/// A PrivateOAuth app `id` at a fresh zoom-sim with tokens of `secs` seconds, and its
/// credentials Secret.
fn oauth_app(prefix: &str, id: &str, secs: u32) -> EnvBuilder {
    Env::new(prefix)
        .sim(&["--consent=approve", &format!("--token-lifetime={secs}")])
        .app(ZoomApp::oauth(id, &format!("{id}-secret")).account("acc-1"))
}

/// `oauth_app`'s world with connection `bot` applied and authorized.
async fn authorized_bot(prefix: &str, id: &str, secs: u32) -> Env {
    let env = oauth_app(prefix, id, secs).start().await;
    apply_bot(&env).await;
    env.authorize("bot").await;
    env
}

/// The connection every test rotates: PrivateOAuth, refreshed 10 s before expiry.
async fn apply_bot(env: &Env) {
    apply_bot_in(&env.client, &env.ns).await;
}

async fn apply_bot_in(client: &kube::Client, ns: &str) {
    Zc::private_oauth("bot")
        .refresh_before("10s")
        .apply(client, ns)
        .await;
}

async fn token_secret(client: &kube::Client, ns: &str) -> Secret {
    common::token_secret(client, ns, "bot")
        .await
        .expect("token Secret")
}

fn refresh_token(s: &Secret) -> Option<Vec<u8>> {
    s.data.as_ref()?.get("refresh_token").map(|b| b.0.clone())
}

/// Waits until a refresher has put its fence on the token Secret; returns the fence.
async fn wait_fence(client: &kube::Client, ns: &str) -> String {
    eventually(
        "a refresh fence on the token Secret",
        Duration::from_secs(30),
        || async {
            let s = common::token_secret(client, ns, "bot").await;
            s.and_then(|s| annotation(&s, FENCE))
                .ok_or_else(|| "no fence".to_owned())
        },
    )
    .await
}

/// Waits until the token Secret's refresh token is no longer `old`.
async fn wait_rotated(client: &kube::Client, ns: &str, old: &Option<Vec<u8>>, within: Duration) {
    eventually("a rotated refresh token in the Secret", within, || async {
        // The Secret may be gone for a moment (a test deletes it).
        let now = common::token_secret(client, ns, "bot")
            .await
            .and_then(|s| refresh_token(&s));
        if now.is_some() && now != *old {
            Ok(())
        } else {
            Err("not rotated yet".to_owned())
        }
    })
    .await
}

/// Waits until the leader gauge of `op` reads 0.
async fn wait_stepped_down(op: &Operator, what: &str) {
    eventually(what, Duration::from_secs(20), || async {
        let v = op.metric("zoom_operator_leader").await;
        if v == 0.0 {
            Ok(())
        } else {
            Err(format!("leader gauge {v}"))
        }
    })
    .await;
}

/// Waits until condition Authorized of bot is False with a message that says `says`.
async fn wait_lost(env: &Env, what: &str, says: &str) -> String {
    wait_message(&env.client, &env.ns, "bot", "Authorized", what, |c| {
        c.status == "False" && c.message.contains(says)
    })
    .await
}

#[tokio::test]
async fn forced_double_refresh_lets_only_one_through() {
    // Two processes without leader election, on purpose: both reconcile the same connection
    // at the same moments, so both decide to refresh together.
    let env = oauth_app("double", "dbl-id", 20)
        .operator(&["--leader-election=false"])
        .start()
        .await;
    let _b = env.replica(&["--leader-election=false"]);
    let sim = &env.sim;
    apply_bot(&env).await;
    env.authorize("bot").await;
    // Slow Zoom down so that two refreshes, if both were sent, would be in flight together.
    sim.fault(json!({"path": "/oauth/token", "delay_ms": 1500, "count": 50}))
        .await;

    let first = sim.stats().await["refreshes"].as_u64().unwrap_or(0);
    sim.wait_refreshes("three refreshes", first + 3, Duration::from_secs(120))
        .await;
    sim.assert_no_reuse().await;
    let zc = env.wait("bot", "Ready", "True", "Ready").await;
    let token = zc.condition("TokenReady").expect("TokenReady");
    assert_eq!(token.reason, "Fresh", "{}", token.message);
}

#[tokio::test]
async fn a_grant_whose_write_fails_is_kept_until_it_can_be_stored() {
    // Tokens long enough that no refresh falls due by itself during the test.
    let env = authorized_bot("notstored", "ns-id", 600).await;
    let (client, ns, sim) = (&env.client, &env.ns, &env.sim);
    let before = refresh_token(&token_secret(client, ns).await);

    // While Zoom takes its time answering, the token Secret becomes unwritable: a tenant (or a
    // policy) made it immutable. Every write of it now gets 422 from the API server.
    sim.fault(json!({"path": "/oauth/token", "delay_ms": 4000, "count": 1}))
        .await;
    request_refresh(client, ns, "bot", "1").await;
    wait_fence(client, ns).await;
    Api::<Secret>::namespaced(client.clone(), ns)
        .patch(
            "bot-zoom-token",
            &PatchParams::default(),
            &Patch::Merge(json!({"immutable": true})),
        )
        .await
        .expect("make the Secret immutable");

    let zc = env
        .wait("bot", "TokenReady", "False", "TokenNotStored")
        .await;
    let message = condition_message(&zc, "TokenReady");
    assert!(
        message.contains("immutable") && message.contains("keeps the new grant"),
        "{message}"
    );
    assert!(!message.contains("ns-id-secret"));
    assert_eq!(
        refresh_token(&token_secret(client, ns).await),
        before,
        "the immutable Secret kept the old grant"
    );
    // Zoom rotated once; nothing was sent again while the grant waits to be stored.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let s = sim.assert_no_reuse().await;
    let refreshed = s["refreshes"].clone();
    assert_eq!(refreshed, 1, "{s}");

    // The cause is fixed: the Secret is deleted, and the operator writes the kept grant.
    Api::<Secret>::namespaced(client.clone(), ns)
        .delete("bot-zoom-token", &DeleteParams::default())
        .await
        .expect("delete");
    wait_rotated(client, ns, &before, Duration::from_secs(30)).await;
    env.wait("bot", "Ready", "True", "Ready").await;
    assert_eq!(
        sim.stats().await["refreshes"],
        1,
        "stored the kept grant, not a new one"
    );

    // It is the newest grant: the next refresh with it works.
    let stored = refresh_token(&token_secret(client, ns).await);
    // Forced refreshes are one a minute per connection: this one may wait for the first's minute.
    request_refresh(client, ns, "bot", "2").await;
    wait_rotated(client, ns, &stored, Duration::from_secs(90)).await;
    env.wait("bot", "Ready", "True", "Ready").await;
    sim.assert_no_reuse().await;
}

#[tokio::test]
async fn a_leader_killed_between_zoom_answer_and_write_is_reported_truthfully() {
    let mut env = oauth_app("sigkill", "kill-id", 20).start().await;
    let mut b = env.replica(&[]);
    apply_bot(&env).await;
    env.authorize("bot").await;
    let (client, ns, sim) = (&env.client, &env.ns, &env.sim);

    // Zoom rotates the grant at once but its answer takes 10 s to arrive; the refreshing
    // leader is SIGKILLed while it waits.
    sim.fault(json!({"path": "/oauth/token", "delay_after_ms": 10000, "count": 1}))
        .await;
    request_refresh(client, ns, "bot", "1").await;
    let fence = wait_fence(client, ns).await;
    let holder = fence
        .split(';')
        .find_map(|p| p.strip_prefix("holder="))
        .expect("holder")
        .to_owned();
    assert!(
        !fence.contains("kill-id"),
        "the fence holds no secret: {fence}"
    );
    eventually(
        "Zoom to rotate the grant",
        Duration::from_secs(10),
        || async {
            let s = sim.stats().await;
            if s["refreshes"] == 1 {
                Ok(())
            } else {
                Err(s.to_string())
            }
        },
    )
    .await;
    // SIGKILL the refreshing leader.
    if holder.ends_with(&format!("-{}", env.op.pid())) {
        env.op.kill();
    } else {
        b.kill();
    }

    // The successor finds the stale fence for the stored refresh token, does not send it
    // again, and says why the grant is lost.
    let message = wait_message(
        &env.client,
        &env.ns,
        "bot",
        "Authorized",
        "the successor to report the lost grant",
        |c| c.status == "False" && c.reason == "RefreshTokenRejected",
    )
    .await;
    assert!(
        message.contains("already been sent to Zoom") && message.contains(&holder),
        "{message}"
    );
    assert!(!message.contains("Zoom rejected"), "{message}");
    let s = sim.assert_no_reuse().await;
    assert_eq!(s["refreshes"], 1, "{s}");
}

/// A TCP proxy in front of the API server or zoom-sim that the test can stall (connections
/// stay open, nothing is forwarded, as with a half-open connection or a hung API server) or
/// close (connections are cut and the port refuses new ones, as with a stopped API server or
/// a Zoom host that is up but not listening).
struct StallProxy {
    port: u16,
    upstream: String,
    stalled: Arc<AtomicBool>,
    down: Arc<AtomicBool>,
    acceptor: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl StallProxy {
    async fn start(upstream: String) -> StallProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let proxy = StallProxy {
            port: listener.local_addr().expect("addr").port(),
            upstream,
            stalled: Arc::new(AtomicBool::new(false)),
            down: Arc::new(AtomicBool::new(false)),
            acceptor: std::sync::Mutex::new(None),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: TcpListener) {
        let flags = (self.stalled.clone(), self.down.clone());
        let upstream = self.upstream.clone();
        let acceptor = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if flags.1.load(Ordering::Relaxed) {
                    continue;
                }
                let flags = flags.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (ri, wi) = inbound.into_split();
                    let (ro, wo) = outbound.into_split();
                    tokio::join!(pump(ri, wo, flags.clone()), pump(ro, wi, flags));
                });
            }
        });
        *self.acceptor.lock().expect("acceptor") = Some(acceptor);
    }

    /// Cuts every connection and closes the port: connecting is refused until `reopen`.
    async fn close(&self) {
        self.down.store(true, Ordering::Relaxed);
        if let Some(acceptor) = self.acceptor.lock().expect("acceptor").take() {
            acceptor.abort();
        }
        // Let the pumps see `down` and the aborted task drop its listener.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    /// Listens on the same port again.
    async fn reopen(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("bind the proxy's port again");
        self.down.store(false, Ordering::Relaxed);
        self.serve(listener);
    }

    /// `http://` URL of this proxy.
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A kubeconfig like the control plane's, pointing at this proxy.
    fn kubeconfig(&self) -> std::path::PathBuf {
        let cp = control_plane();
        let kubeconfig = std::fs::read_to_string(&cp.kubeconfig).expect("kubeconfig");
        let proxied = cp.dir.join(format!("kubeconfig-proxy-{}", self.port));
        std::fs::write(
            &proxied,
            kubeconfig.replace(&api_server(), &format!("https://127.0.0.1:{}", self.port)),
        )
        .expect("write kubeconfig");
        proxied
    }
}

/// The API server URL of the control plane's kubeconfig.
fn api_server() -> String {
    std::fs::read_to_string(&control_plane().kubeconfig)
        .expect("kubeconfig")
        .lines()
        .find_map(|l| l.trim().strip_prefix("server:"))
        .map(|s| s.trim().to_owned())
        .expect("server in kubeconfig")
}

async fn proxy_to_api_server() -> StallProxy {
    let upstream = api_server()
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_owned();
    StallProxy::start(upstream).await
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    (stalled, down): (Arc<AtomicBool>, Arc<AtomicBool>),
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if down.load(Ordering::Relaxed) {
            return;
        }
        let n = match tokio::time::timeout(Duration::from_millis(200), from.read(&mut buf)).await {
            Err(_) => continue,
            Ok(Ok(0) | Err(_)) => return,
            Ok(Ok(n)) => n,
        };
        while stalled.load(Ordering::Relaxed) {
            if down.load(Ordering::Relaxed) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn a_leader_whose_api_server_connection_stalls_stops_and_the_other_takes_over() {
    // Replica A reaches the API server only through the proxy.
    let proxy = proxy_to_api_server().await;
    let env = oauth_app("stall", "stall-id", 20)
        .kubeconfig(proxy.kubeconfig())
        .start()
        .await;
    let a = &env.op;
    wait_leading(
        &env.client,
        &env.ns,
        a,
        "replica A to lead",
        Duration::from_secs(30),
    )
    .await;
    let b = env.replica(&[]);
    apply_bot(&env).await;
    env.authorize("bot").await;
    assert_eq!(a.metric("zoom_operator_leader").await, 1.0);
    assert_eq!(b.metric("zoom_operator_leader").await, 0.0);
    let (client, ns, sim) = (&env.client, &env.ns, &env.sim);

    // A's connection to the API server stalls. Within its renew deadline (10 s) it stops
    // leading; it sends nothing to Zoom from then on, and B takes over and refreshes.
    proxy.stalled.store(true, Ordering::Relaxed);
    let stalled_at = tokio::time::Instant::now();
    wait_stepped_down(a, "replica A to step down").await;
    assert!(
        stalled_at.elapsed() <= Duration::from_secs(14),
        "stepped down after {:?}",
        stalled_at.elapsed()
    );
    let a_requests = a.metric("zoom_operator_token_requests_total").await;
    let before = refresh_token(&token_secret(client, ns).await);
    wait_rotated(client, ns, &before, Duration::from_secs(60)).await;
    let rotated = refresh_token(&token_secret(client, ns).await);
    wait_rotated(client, ns, &rotated, Duration::from_secs(30)).await;
    assert_eq!(b.metric("zoom_operator_leader").await, 1.0);
    assert_eq!(
        a.metric("zoom_operator_token_requests_total").await,
        a_requests,
        "the stalled replica called Zoom after stepping down"
    );
    env.wait("bot", "Ready", "True", "Ready").await;
    sim.assert_no_reuse().await;

    // The connection comes back: A stays a follower while B leads, and nothing is reused.
    proxy.stalled.store(false, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(a.metric("zoom_operator_leader").await, 0.0);
    sim.assert_no_reuse().await;
}

#[tokio::test]
async fn a_grant_issued_while_the_api_server_is_down_is_stored_when_it_is_back() {
    let proxy = proxy_to_api_server().await;
    let env = oauth_app("apidown", "down-id", 600)
        .kubeconfig(proxy.kubeconfig())
        .start()
        .await;
    apply_bot(&env).await;
    env.authorize("bot").await;
    let (client, ns, sim) = (&env.client, &env.ns, &env.sim);
    let before = refresh_token(&token_secret(client, ns).await);

    // A refresh is on its way to Zoom when the API server stops (its port refuses connections)
    // for 25 s: Zoom's answer cannot be written, and the replica cannot renew its lease either.
    sim.fault(json!({"path": "/oauth/token", "delay_ms": 3000, "count": 1}))
        .await;
    request_refresh(client, ns, "bot", "1").await;
    wait_fence(client, ns).await;
    proxy.close().await;
    wait_stepped_down(&env.op, "the replica to step down").await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(sim.stats().await["refreshes"], 1, "Zoom answered once");
    assert_eq!(
        refresh_token(&token_secret(client, ns).await),
        before,
        "nothing could be written"
    );

    // Back: the kept grant is written, the replica leads again, nothing was sent twice.
    proxy.reopen().await;
    wait_rotated(client, ns, &before, Duration::from_secs(60)).await;
    env.wait("bot", "Ready", "True", "Ready").await;
    let s = sim.assert_no_reuse().await;
    assert_eq!(s["refreshes"], 1, "{s}");
    let stored = refresh_token(&token_secret(client, ns).await);
    // Forced refreshes are one a minute per connection: this one may wait for the first's minute.
    request_refresh(client, ns, "bot", "2").await;
    wait_rotated(client, ns, &stored, Duration::from_secs(90)).await;
    sim.assert_no_reuse().await;
}

#[tokio::test]
async fn a_concurrent_writer_of_annotations_causes_conflicts_but_no_loss() {
    let env = authorized_bot("conflict", "cfl-id", 20).await;
    let (client, ns, sim) = (&env.client, &env.ns, &env.sim);

    // Another tool rewrites the token Secret's annotations all the time, so that the
    // operator's compare-and-swap writes (fence and grant) keep meeting 409 conflicts.
    let stop = Arc::new(AtomicBool::new(false));
    let hammer = {
        let api: Api<Secret> = Api::namespaced(client.clone(), ns);
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let patch =
                    json!({"metadata": {"annotations": {"example.com/touched": i.to_string()}}});
                let _ = api
                    .patch(
                        "bot-zoom-token",
                        &PatchParams::default(),
                        &Patch::Merge(patch),
                    )
                    .await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            i
        })
    };
    let first = sim.stats().await["refreshes"].as_u64().unwrap_or(0);
    sim.wait_refreshes(
        "three refreshes under contention",
        first + 3,
        Duration::from_secs(120),
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let writes = hammer.await.expect("hammer");
    assert!(writes > 100, "only {writes} competing writes");
    env.wait("bot", "Ready", "True", "Ready").await;
    let secret = token_secret(client, ns).await;
    assert!(
        annotation(&secret, "example.com/touched").is_some(),
        "the other tool's annotation is kept"
    );
    sim.assert_no_reuse().await;
}

#[tokio::test]
async fn zoom_outages_are_ridden_out_and_reported() {
    let env = authorized_bot("outage", "out-id", 20).await;
    let (client, ns, sim) = (&env.client, &env.ns, &env.sim);

    // In order: a slow answer (within the client's timeout), 429 with Retry-After in seconds,
    // 429 with Retry-After as an HTTP date, then 5xx until the token has expired.
    let date = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(20))
        .strftime("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    sim.fault(json!({"path": "/oauth/token", "delay_ms": 5000, "count": 1}))
        .await;
    sim.fault(json!({"path": "/oauth/token", "status": 429, "retry_after": "2", "count": 1}))
        .await;
    sim.fault(json!({"path": "/oauth/token", "status": 429, "retry_after": date, "count": 1}))
        .await;
    sim.fault(json!({"path": "/oauth/token", "status": 503, "count": 1000}))
        .await;

    let zc = env
        .wait("bot", "TokenReady", "False", "RefreshFailing")
        .await;
    let failing = condition_message(&zc, "TokenReady");
    assert!(
        failing.contains("HTTP 429") || failing.contains("HTTP 503"),
        "{failing}"
    );
    let expired = wait_message(
        client,
        ns,
        "bot",
        "TokenReady",
        "the token to expire in status",
        |c| c.reason == "Expired",
    )
    .await;
    assert!(expired.contains("the last refresh failed"), "{expired}");
    assert_eq!(
        zc.condition("Authorized")
            .map(|c| c.status.clone())
            .as_deref(),
        Some("True"),
        "an outage is not a lost grant"
    );

    // Zoom recovers: the grant refreshes and the connection is Ready again.
    let cleared = http()
        .delete(format!("{}/sim/faults", sim.url))
        .send()
        .await
        .expect("clear");
    assert!(cleared.status().is_success());
    env.wait("bot", "Ready", "True", "Ready").await;
    sim.assert_no_reuse().await;
}

#[tokio::test]
async fn a_controller_that_dies_while_leading_releases_the_lease_and_fails_the_process() {
    use zoom_operator::leader::{LeaderElector, LeaderError, Leadership};

    let client = client().await;
    let ns = namespace(&client, "deadtask").await;
    let (tx, leadership) = Leadership::channel();
    let gauge = prometheus_client::metrics::gauge::Gauge::default();
    let elector = LeaderElector::new(client.clone(), &ns, "dying-1", tx, gauge.clone());
    let shutdown = tokio_util::sync::CancellationToken::new();
    // The controller panics a moment after it starts leading (as a reconcile could).
    let outcome = tokio::time::timeout(
        Duration::from_secs(30),
        elector.run(shutdown, |_term| async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            panic!("a reconcile panicked");
        }),
    )
    .await
    .expect("the elector returns instead of leading on with a dead controller");
    assert!(
        matches!(outcome, Err(LeaderError::ControllerStopped(ref why)) if why.contains("panicked")),
        "{outcome:?}"
    );
    assert!(!leadership.is_leader());
    assert_eq!(gauge.get(), 0);
    assert_eq!(
        lease_holder(&client, &ns).await,
        None,
        "the Lease was released for the next replica"
    );

    // The binary turns that into a non-zero exit; a replica with a healthy controller takes
    // the released Lease at once (not after it expires).
    let (tx, leadership) = Leadership::channel();
    let elector = LeaderElector::new(client.clone(), &ns, "healthy-2", tx, Default::default());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let run = tokio::spawn(elector.run(
        shutdown.clone(),
        |term| async move { term.cancelled().await },
    ));
    let started = tokio::time::Instant::now();
    eventually("the next replica to lead", Duration::from_secs(10), || {
        let leadership = leadership.clone();
        async move {
            if leadership.is_leader() {
                Ok(())
            } else {
                Err("not yet".to_owned())
            }
        }
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        lease_holder(&client, &ns).await.as_deref(),
        Some("healthy-2")
    );
    shutdown.cancel();
    assert!(run.await.expect("join").is_ok());
    assert_eq!(
        lease_holder(&client, &ns).await,
        None,
        "released on shutdown"
    );
}

/// Waits for `n` rotations of the refresh token in the token Secret, one after the other.
async fn wait_rotations(client: &kube::Client, ns: &str, n: usize) {
    for _ in 0..n {
        let before = refresh_token(&token_secret(client, ns).await);
        wait_rotated(client, ns, &before, Duration::from_secs(40)).await;
    }
}

#[tokio::test]
async fn a_replica_whose_clock_is_ten_seconds_ahead_does_not_refresh_beside_the_leader() {
    let mut env = oauth_app("skew", "skew-id", 20).start().await;
    wait_leading(
        &env.client,
        &env.ns,
        &env.op,
        "replica A to lead",
        Duration::from_secs(30),
    )
    .await;
    // B's clock runs 10 s ahead: the holder's renewTime looks 10 s older to it, and the
    // refresh fence 10 s closer to expiry, than they are.
    let b = env.replica(&["--clock-offset-secs=10"]);
    apply_bot(&env).await;
    env.authorize("bot").await;
    let (client, ns, sim) = (&env.client, &env.ns, &env.sim);

    wait_rotations(client, ns, 3).await;
    sim.assert_no_reuse().await;
    assert_eq!(b.metric("zoom_operator_leader").await, 0.0);
    assert_eq!(
        b.metric("zoom_operator_token_requests_total").await,
        0.0,
        "the replica that is ahead refreshed beside the leader"
    );

    // The leader dies; the replica that is ahead takes over and refreshes alone.
    env.op.kill();
    wait_rotations(client, ns, 2).await;
    assert_eq!(b.metric("zoom_operator_leader").await, 1.0);
    env.wait("bot", "Ready", "True", "Ready").await;
    let s = sim.assert_no_reuse().await;
    assert_eq!(s["superseded_grants"], 0, "{s}");
}

#[tokio::test]
async fn zoom_refusing_connections_is_ridden_out_without_losing_the_grant() {
    // The operator reaches zoom-sim only through a proxy: Zoom URLs at the proxy.
    let client = client().await;
    let ns = namespace(&client, "refused").await;
    let zcs = Zcs::new(&client, &ns);
    let app = ZoomApp::oauth("ref-id", "ref-id-secret").account("acc-1");
    let sim = start_zoom_sim(&["--consent=approve", "--token-lifetime=20", &app.sim_flag()]);
    app.secret("zoom-app").put(&client, &ns).await;
    let zoom = StallProxy::start(sim.url.trim_start_matches("http://").to_owned()).await;
    let _op = start_operator(&ns, &strs(&zoom_flags(&zoom.url())));
    apply_bot_in(&client, &ns).await;
    browser_authorize(&client, &ns, "bot").await;

    // Zoom's port is closed while the refresh falls due: no request reaches Zoom, so the
    // grant is intact and the refresh is retried.
    zoom.close().await;
    let zc = zcs
        .wait("bot", "TokenReady", "False", "RefreshFailing")
        .await;
    let failing = condition_message(&zc, "TokenReady");
    assert!(failing.contains("could not connect"), "{failing}");
    assert_eq!(
        zc.condition("Authorized")
            .map(|c| c.status.clone())
            .as_deref(),
        Some("True"),
        "a refused connection is not a lost grant"
    );
    let before = refresh_token(&token_secret(&client, &ns).await);
    tokio::time::sleep(Duration::from_secs(5)).await;

    zoom.reopen().await;
    wait_rotated(&client, &ns, &before, Duration::from_secs(60)).await;
    zcs.wait("bot", "Ready", "True", "Ready").await;
    sim.assert_no_reuse().await;
}

#[tokio::test]
async fn a_refresh_answer_lost_in_the_network_is_reported_and_never_repeated() {
    let env = authorized_bot("lost", "lost-id", 600).await;
    let (client, ns, sim) = (&env.client, &env.ns, &env.sim);

    // Zoom rotates the grant, then hangs past the operator's 10-second timeout: the only
    // valid refresh token is in an answer that never arrives.
    sim.fault(json!({"path": "/oauth/token", "delay_after_ms": 15000, "count": 1}))
        .await;
    request_refresh(client, ns, "bot", "1").await;
    let message = wait_lost(
        &env,
        "the lost answer to be reported",
        "already been sent to Zoom",
    )
    .await;
    let api: Api<ZoomConnection> = Api::namespaced(client.clone(), ns);
    assert!(message.contains("answer was lost"), "{message}");
    let zc = api.get("bot").await.expect("bot");
    let authorized = zc.condition("Authorized").expect("Authorized");
    assert_eq!(authorized.reason, "RefreshTokenRejected");
    let s = sim.assert_no_reuse().await;
    assert_eq!(s["refreshes"], 1, "the refresh token was sent once: {s}");

    // Only the Zoom user can repair it: authorizing again makes the connection Ready.
    browser_flow(client, zc).await;
    sim.assert_no_reuse().await;
}
