//! Build script of the `rtlab` binary: one opt-in link option.
//!
//! `RTLAB_NO_PIE=1 cargo build --release -p rtlab` links the binary as a
//! position-dependent executable (`-no-pie`). A position-independent one —
//! the default — is relocated when it starts: the dynamic loader writes the
//! absolute addresses into its relocated read-only data (`.data.rel.ro`,
//! the GOT: vtables, string tables), and every page it writes becomes the
//! process's private memory. For this binary that is about a third of a
//! megabyte per process (`readelf -lW target/release/rtlab`, the
//! `GNU_RELRO` segment). One process never notices; the million runs 52 of
//! them, and there it is a tenth of the budget of 300 B per connection.
//! Without PIE those pages stay the file's, shared by every process. The
//! price: the executable's own code and data always load at the same
//! address (no ASLR for them), which is why it is not the default.
//! `rtlab bench million` records which kind of executable ran.
// ANCHOR: no_pie
fn main() {
    println!("cargo:rerun-if-env-changed=RTLAB_NO_PIE");
    if std::env::var_os("RTLAB_NO_PIE").is_some_and(|v| v == "1") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
// ANCHOR_END: no_pie
