//! Webhook hot path figures: signature verification throughput against 1, 10 and 100
//! configured secret tokens (2 KiB body; every token is always checked, so the signer's
//! position does not matter), the same with 100 apps when Zoom's `clientid` header names the
//! signer, what a forged or header-less request costs, and the routing index with 1,000
//! connections.
//!
//! `cargo bench --bench webhook` prints a table; no harness, no statistics beyond a median of
//! a few runs.

use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use zoom_operator::api::{
    AuthType, CredentialsRef, ZoomAccount, ZoomConnection, ZoomConnectionSpec, ZoomConnectionStatus,
};
use zoom_operator::webhooks::index::{CachedSecret, IndexSettings, SecretRef, Snapshot};
use zoom_operator::zoom::webhook::{check_headers, sign, verify};

const TIMESTAMP: &str = "1700000000";
const NOW: i64 = 1_700_000_010;

/// Runs `f` in batches for about `budget`, five times; the median rate per second.
fn rate(budget: Duration, mut f: impl FnMut()) -> f64 {
    let mut rates = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let mut n: u64 = 0;
        while start.elapsed() < budget / 5 {
            for _ in 0..16 {
                f();
            }
            n += 16;
        }
        rates.push(n as f64 / start.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

fn body() -> Vec<u8> {
    let mut body = br#"{"event":"meeting.participant_joined","event_ts":1700000000000,"payload":{"account_id":"acc-7","object":{"note":""#.to_vec();
    while body.len() < 2048 - 4 {
        body.push(b'x');
    }
    body.extend_from_slice(b"\"}}}");
    body
}

fn connection(i: usize) -> Arc<ZoomConnection> {
    // 1,000 connections: 10 apps (credentials Secrets), 100 accounts, half OAuth half S2S.
    let app = i % 10;
    let auth_type = if i % 2 == 0 {
        AuthType::PrivateOAuth
    } else {
        AuthType::ServerToServer
    };
    let mut zc = ZoomConnection::new(
        &format!("conn-{i}"),
        ZoomConnectionSpec {
            auth_type,
            credentials_ref: Some(CredentialsRef::with_name(format!("app-{app}"))),
            token_secret_name: None,
            token_secret_template: None,
            refresh_before: "10m".into(),
            events: None,
            revoke_on_delete: false,
        },
    );
    zc.metadata.namespace = Some(format!("team-{}", i % 20));
    zc.metadata.uid = Some(format!("uid-{i}"));
    zc.status = Some(ZoomConnectionStatus {
        account: Some(ZoomAccount {
            account_id: Some(format!("acc-{}", i % 100)),
            user_id: Some(format!("user-{i}")),
            email: None,
        }),
        ..Default::default()
    });
    Arc::new(zc)
}

fn main() {
    let body = body();
    assert_eq!(body.len(), 2048);
    println!(
        "zoom-operator webhook benchmark (body {} bytes)\n",
        body.len()
    );
    println!("{:<44} {:>14} {:>12}", "case", "per second", "per op");
    let row = |name: &str, per_sec: f64| {
        println!("{name:<44} {per_sec:>14.0} {:>10.2}µs", 1e6 / per_sec);
    };

    for n in [1usize, 10, 100] {
        let tokens: Vec<String> = (0..n)
            .map(|i| format!("secret-token-{i:03}-0123456789abcdef"))
            .collect();
        let signer = &tokens[n - 1];
        let signature = sign(signer.as_bytes(), TIMESTAMP, &body);
        let ok = verify(
            Some(&signature),
            Some(TIMESTAMP),
            &body,
            NOW,
            tokens.iter().map(|t| t.as_bytes()),
        );
        assert_eq!(ok, Ok(n - 1));
        let per_sec = rate(Duration::from_secs(2), || {
            let r = verify(
                black_box(Some(signature.as_str())),
                Some(TIMESTAMP),
                black_box(&body),
                NOW,
                tokens.iter().map(|t| t.as_bytes()),
            );
            black_box(r).ok();
        });
        row(&format!("verify, {n} secret token(s)"), per_sec);
    }

    // 100 apps: what Zoom's `clientid` header saves (the signer's app is tried first), and
    // what an unauthenticated request with a valid-looking signature costs (every app).
    let tokens: Vec<String> = (0..100)
        .map(|i| format!("secret-token-{i:03}-0123456789abcdef"))
        .collect();
    let signature = sign(tokens[57].as_bytes(), TIMESTAMP, &body);
    let headers = check_headers(Some(&signature), Some(TIMESTAMP), NOW).expect("headers");
    let forged = check_headers(
        Some(&sign(b"guess", TIMESTAMP, &body)),
        Some(TIMESTAMP),
        NOW,
    )
    .expect("headers");
    assert_eq!(
        headers.signer(&body, tokens.iter().map(|t| t.as_bytes()), &[57]),
        Ok(57)
    );
    for (name, headers, hint) in [
        ("verify, 100 apps, with clientid", &headers, vec![57usize]),
        ("verify, 100 apps, without clientid", &headers, vec![]),
        ("forged signature, 100 apps (all tried)", &forged, vec![57]),
    ] {
        let per_sec = rate(Duration::from_secs(2), || {
            let r = headers.signer(black_box(&body), tokens.iter().map(|t| t.as_bytes()), &hint);
            black_box(r).ok();
        });
        row(name, per_sec);
    }
    let no_headers = rate(Duration::from_secs(1), || {
        black_box(check_headers(black_box(None), Some(TIMESTAMP), NOW)).ok();
    });
    row("no signature headers (refused, body unread)", no_headers);

    // Routing index with 1,000 connections.
    let connections: Vec<Arc<ZoomConnection>> = (0..1000).map(connection).collect();
    let secrets: HashMap<SecretRef, CachedSecret> = (0..20)
        .flat_map(|ns| (0..10).map(move |app| (ns, app)))
        .map(|(ns, app)| {
            (
                SecretRef {
                    namespace: format!("team-{ns}"),
                    name: format!("app-{app}"),
                },
                CachedSecret {
                    resource_version: Some("1".into()),
                    values: BTreeMap::from([
                        ("secretToken".to_owned(), Some(format!("token-{app}"))),
                        (
                            "accountId".to_owned(),
                            Some(format!("acc-{}", (ns * 10 + app) % 100)),
                        ),
                    ]),
                },
            )
        })
        .collect();
    let settings = IndexSettings::default();
    let snapshot = Snapshot::build(&connections, &secrets, &settings);
    assert_eq!(snapshot.routable_count(), 1000);
    assert_eq!(snapshot.app_count(), 10);

    let build_rate = rate(Duration::from_secs(2), || {
        black_box(Snapshot::build(
            black_box(&connections),
            &secrets,
            &settings,
        ));
    });
    row("index build, 1,000 connections", build_rate);

    let accounts: Vec<String> = (0..100).map(|a| format!("acc-{a}")).collect();
    let mut i = 0usize;
    let mut found = 0usize;
    let lookup_rate = rate(Duration::from_secs(2), || {
        i = i.wrapping_add(7);
        found += black_box(snapshot.route(i % 10, &accounts[i % 100])).len();
    });
    black_box(found);
    row("route lookup (app, account), 1,000 conns", lookup_rate);

    let misses = rate(Duration::from_secs(1), || {
        black_box(snapshot.route(3, black_box("no-such-account")));
    });
    row("route lookup, unknown account", misses);
}
