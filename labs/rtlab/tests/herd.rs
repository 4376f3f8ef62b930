//! Run: `cargo test -p rtlab --test herd`
//!
//! The thundering-herd experiment at a tiny scale, as a test of the
//! experiment (not a measurement): `rtlab bench reconnect` with a couple of
//! hundred clients, the server SIGKILLed and restarted, two strategies, one
//! run each. Every client must come back, every one must be told of the
//! restart (the reset signal: a new server is a new epoch), none may lose a
//! message silently, and the counts must add up.

use std::process::{Command, Stdio};

#[test]
fn the_herd_comes_back_and_is_told_of_the_restart() {
    let clients = 200;
    let json = std::env::temp_dir().join(format!("rtlab-herd-{}.json", std::process::id()));
    let status = Command::new(env!("CARGO_BIN_EXE_rtlab"))
        .args(["bench", "reconnect", "--clients", &clients.to_string(), "--strategies", "none,full-jitter"])
        .args(["--repeats", "1", "--cap-ms", "1000", "--down-ms", "300", "--settle-secs", "60", "--json"])
        .arg(&json)
        .stdin(Stdio::null())
        .status()
        .expect("start rtlab bench reconnect");
    let result: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("the results file")).expect("results JSON");
    let _ = std::fs::remove_file(&json);
    assert!(status.success(), "rtlab bench reconnect failed: {result}");
    let runs = result["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2, "{result}");
    for run in runs {
        let name = &run["strategy"];
        assert!(run["failure"].is_null(), "{name}: {run}");
        assert_eq!(run["back"], clients, "{name}: every client back");
        assert_eq!(run["lost_silently"], 0, "{name}: nothing lost without a word");
        assert_eq!(run["clients_signalled"], clients, "{name}: every client told of the new epoch");
        let attempts = run["attempts"].as_u64().expect("attempts");
        let failed = run["failed"].as_u64().expect("failed");
        assert!(attempts >= clients, "{name}: at least one attempt per client after the kill, got {attempts}");
        assert_eq!(attempts - failed, clients, "{name}: one successful attempt per client: {attempts} attempts, {failed} failed");
        assert!(run["t100_ms"].as_u64().is_some() && run["t99_ms"].as_u64() <= run["t100_ms"].as_u64(), "{name}: {run}");
    }
}
