// Run: cargo build --release -p rtlab && cargo run --release -p rtlab-bench --example expiry_spike -- --out bench-results/DATE-expiry [--connections 5000] [--spreads 0,10] [--repeats 3] && target/release/rtlab report bench-results/DATE-expiry --book book/src/generated
//! The expiry spike (the book's chapter "Tokens, expiry and origins"): N
//! event streams whose tokens are minted together expire together; each
//! client reconnects at once. Compares the server's `--expiry-spread`
//! values: reconnections per 100 ms around `exp`, and what a reconnection
//! costs meanwhile. Writes `expiry.json` (machine, kernel, toolchain,
//! commit, parameters, every raw value); `rtlab report` renders it.

use clap::Parser;
use rtlab_bench::expiry::{self, ExpiryArgs};

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    args: ExpiryArgs,
}

fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    let doc = expiry::run(&cli.args)?;
    println!("{}", expiry::report::table(&doc));
    Ok(())
}
