//! `delay-proxy --routes FILE`: the userspace WAN link of `bench/latency.sh` (see
//! `sovereign_bench::delay_proxy`). Serves every route of the file until it is stopped.

use anyhow::Context;
use clap::Parser;
use sovereign_bench::delay_proxy::{Route, bind};

#[derive(Parser)]
struct Args {
    /// One route a line: `listen=ADDR target=ADDR rtt_ms=N [rate_mbit=X]`.
    #[arg(long, value_name = "FILE")]
    routes: std::path::PathBuf,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let text = std::fs::read_to_string(&args.routes)
        .with_context(|| format!("reading {}", args.routes.display()))?;
    let routes =
        Route::parse_file(&text).with_context(|| format!("in {}", args.routes.display()))?;
    let mut tasks = Vec::new();
    for route in routes {
        let (listen, target, rtt) = (route.listen, route.target, route.rtt);
        let rate = route.rate_bytes_per_s;
        let (addr, task) = bind(route)
            .await
            .with_context(|| format!("binding {listen}"))?;
        match rate {
            Some(rate) => println!(
                "delay-proxy: {addr} -> {target}: rtt {} ms, {:.1} Mbit/s each way",
                rtt.as_millis(),
                rate * 8.0 / 1e6
            ),
            None => println!(
                "delay-proxy: {addr} -> {target}: rtt {} ms",
                rtt.as_millis()
            ),
        }
        tasks.push(task);
    }
    println!("delay-proxy: ready");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Ok(()),
        (result, _, _) = futures_util::future::select_all(tasks) => {
            result.context("an accept loop panicked")?.context("accepting")
        }
    }
}
