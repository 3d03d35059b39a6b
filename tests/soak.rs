//! Soak: 50 OAuth connections with 20-second tokens for 5 minutes while the leader is
//! SIGKILLed every 40 seconds and restarted, as a Deployment would. zoom-sim must count no
//! reused refresh token, and no token Secret may hold an expired token for longer than one
//! failover, unless its status says exactly why (a refresh the killed leader had sent and not
//! stored). Long on purpose: its own test binary, so CI runs it beside the other suites.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use tokio::time::Instant;
use zoom_operator::api::ZoomConnection;

const CONNECTIONS: usize = 50;
const RUN_FOR: Duration = Duration::from_secs(300);
const KILL_EVERY: Duration = Duration::from_secs(40);
/// One failover: the lease runs out (15 s after the last renewal was seen), the successor
/// starts its controller and lists, and the due refreshes go out; 20 s of token life that
/// the refresh at half-life left are added to it by the check below.
const ONE_FAILOVER: Duration = Duration::from_secs(30);

async fn leader_pid(client: &kube::Client, ns: &str) -> Option<u32> {
    lease_holder(client, ns)
        .await
        .and_then(|h| h.rsplit('-').next()?.parse().ok())
}

fn expires_at(s: &Secret) -> Option<Timestamp> {
    let raw = s.data.as_ref()?.get("expires_at")?;
    std::str::from_utf8(&raw.0).ok()?.parse().ok()
}

/// Connections whose grant was lost to a kill between Zoom's answer and the write, and that
/// say so in status (the only loss nobody can prevent).
async fn explained_losses(client: &kube::Client, ns: &str) -> Vec<String> {
    let zcs = Api::<ZoomConnection>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("list connections");
    zcs.items
        .into_iter()
        .filter(|zc| {
            zc.condition("Authorized").is_some_and(|c| {
                c.status == "False"
                    && c.reason == "RefreshTokenRejected"
                    && c.message.contains("already been sent to Zoom")
            })
        })
        .filter_map(|zc| zc.metadata.name)
        .collect()
}

#[tokio::test]
async fn fifty_connections_survive_a_leader_killed_every_forty_seconds() {
    let env = Env::new("soak")
        .sim(&["--consent=approve", "--token-lifetime=20"])
        .app(ZoomApp::oauth("soak-id", "soak-secret").account("acc-1"))
        .start()
        .await;
    let second = env.replica(&[]);
    let Env {
        client,
        ns,
        sim,
        op: first,
    } = env;
    let mut replicas = vec![first, second];
    for i in 0..CONNECTIONS {
        Zc::private_oauth(&format!("bot-{i}"))
            .refresh_before("10s")
            .apply(&client, &ns)
            .await;
    }
    for i in 0..CONNECTIONS {
        browser_authorize(&client, &ns, &format!("bot-{i}")).await;
    }

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let started = Instant::now();
    let mut next_kill = started + KILL_EVERY;
    let mut kills = 0;
    // Since when (test clock) each Secret has been seen holding an expired token.
    let mut expired_since: HashMap<String, Instant> = HashMap::new();
    let mut worst = Duration::ZERO;
    while started.elapsed() < RUN_FOR {
        let s = sim.stats().await;
        assert_eq!(
            s["reused_refresh_tokens"], 0,
            "a refresh token was sent twice: {s}"
        );
        if Instant::now() >= next_kill {
            if let Some(pid) = leader_pid(&client, &ns).await {
                // The killed replica is replaced, as its Deployment would; the first one's
                // public URL stays the advertised one only while it lives, so a new replica
                // serves its own.
                if let Some(i) = replicas.iter().position(|r| r.pid() == pid) {
                    replicas.swap_remove(i).kill();
                    kills += 1;
                    replicas.push(sim.operator(&ns, &[]));
                }
            }
            next_kill += KILL_EVERY;
        }
        let now = Timestamp::now();
        let list = secrets
            .list(&ListParams::default().labels("app.kubernetes.io/managed-by=zoom-operator"))
            .await
            .expect("list token Secrets");
        let lost = explained_losses(&client, &ns).await;
        for secret in list.items {
            let name = secret.metadata.name.clone().unwrap_or_default();
            let connection = name.trim_end_matches("-zoom-token").to_owned();
            match expires_at(&secret) {
                Some(at) if at <= now && !lost.contains(&connection) => {
                    let since = *expired_since
                        .entry(name.clone())
                        .or_insert_with(Instant::now);
                    worst = worst.max(since.elapsed());
                    assert!(
                        since.elapsed() <= ONE_FAILOVER,
                        "Secret {name} has held an expired token for {:?} with no explanation in status",
                        since.elapsed()
                    );
                }
                _ => {
                    expired_since.remove(&name);
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let s = sim.stats().await;
    assert_eq!(s["reused_refresh_tokens"], 0, "{s}");
    let lost = explained_losses(&client, &ns).await;
    assert!(kills >= 6, "only {kills} leaders were killed");
    // Every connection kept refreshing, except those whose loss status explains.
    assert!(
        s["refreshes"].as_u64().unwrap_or(0) >= ((CONNECTIONS - lost.len()) * 10) as u64,
        "{s}"
    );
    println!(
        "soak: {kills} leaders killed, {} refreshes, {} grants lost to a kill between Zoom's answer and the write ({lost:?}), longest expired token seen {worst:?}",
        s["refreshes"],
        lost.len()
    );
}
