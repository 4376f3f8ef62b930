// Run: cargo run -p rtlab-core --example sizes
//! Prints the in-memory size of the core's per-connection types: the floor
//! of what an idle connection costs in user space on any runtime.
use rtlab_core::{Connection, hub::Peer, outbox::Outbox, ws::WsDecoder};

fn main() {
    println!("Connection  {:>4} bytes", std::mem::size_of::<Connection>());
    println!("Peer        {:>4} bytes (+16 for the Arc counts)", std::mem::size_of::<Peer>());
    println!("Outbox      {:>4} bytes", std::mem::size_of::<Outbox>());
    println!("WsDecoder   {:>4} bytes", std::mem::size_of::<WsDecoder>());
}
