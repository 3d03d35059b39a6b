//! zoom-operator's benchmarks. Each starts its own control plane (kube-apiserver 1.20.2 with
//! an audit log), zoom-sim and operator, release builds, and prints its figures with N, the
//! machine and the command that reproduces them. They assert nothing about speed: CI runs each
//! once at a small N to prove it still works; docs/benchmarks.md records full runs.
//!
//!   hack/bench.sh startup --n 1000
//!   hack/bench.sh memory --n 5000
//!   hack/bench.sh restart --n 5000
//!   hack/bench.sh refresh --n 1000 --seconds 600
//!   hack/bench.sh webhooks --seconds 10

mod scenarios;
mod world;

use clap::{Parser, ValueEnum};

#[derive(Parser)]
#[command(about = "zoom-operator benchmarks (see docs/benchmarks.md)")]
struct Args {
    /// Which benchmark.
    #[arg(value_enum)]
    name: Name,
    /// Connections (for memory: the last step of 0, N/5, N/2, N).
    #[arg(long, default_value_t = 1000)]
    n: usize,
    /// How long the measured phase runs (refresh, webhooks).
    #[arg(long)]
    seconds: Option<u64>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Name {
    /// N Server-to-Server connections created before the operator starts, until all Ready;
    /// the API server's own rate for the same essential writes; requests per connection.
    Startup,
    /// Memory at 0, N/5, N/2 and N Ready connections, then with 2N unrelated 10 KiB Secrets.
    Memory,
    /// The operator restarted against N Ready connections: API-server connections, memory,
    /// reconciles, tokens left alone.
    Restart,
    /// N OAuth connections with 60-second tokens: refreshes over time, reuse, expired tokens
    /// seen, requests and status writes per refresh.
    Refresh,
    /// Signed webhooks at 64 concurrent connections with 1 and 100 apps, invalid signatures,
    /// and a bare axum handler as the ceiling.
    Webhooks,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    println!("# {command}");
    println!("# machine: {}", scenarios::machine());
    match args.name {
        Name::Startup => scenarios::startup(args.n).await,
        Name::Memory => scenarios::memory(args.n).await,
        Name::Restart => scenarios::restart(args.n).await,
        Name::Refresh => scenarios::refresh(args.n, args.seconds.unwrap_or(600)).await,
        Name::Webhooks => scenarios::webhooks(args.seconds.unwrap_or(10)).await,
    }
}
