//! `rtlab bench-cluster` at a tiny scale, against a real `redis-server` it
//! starts itself: a test of the experiment's code (every part runs, the
//! failure run's checks find no loss and no silent gap, the sticky-sessions
//! part tells the two set-ups apart, the document and its rendering have
//! their fields), not a measurement. Needs `redis-server` on `PATH`.
//! Run: `cargo test -p rtlab --test cluster_bench`

use serde_json::Value;

#[test]
fn bench_cluster_runs_verifies_and_renders() {
    let out = std::env::temp_dir().join(format!("rtlab-bench-cluster-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let result = std::process::Command::new(env!("CARGO_BIN_EXE_rtlab"))
        .args(["bench-cluster", "--runtimes", "mio", "--messages", "40", "--rate", "200", "--repeats", "1"])
        .args(["--fanout-subscribers", "20", "--fanout-processes", "1,2", "--fanout-messages", "10", "--fanout-rate", "50"])
        .args(["--burst", "5", "--fanout-repeats", "1", "--failure-subscribers", "1", "--failure-phases", "0.6,0.6,1"])
        .args(["--sticky-messages", "10", "--sticky-rate", "20", "--out"])
        .arg(&out)
        .output()
        .expect("running rtlab bench-cluster");
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(result.status.success(), "bench-cluster failed: {}\n{stdout}", String::from_utf8_lossy(&result.stderr));
    let file = std::fs::read_dir(&out)
        .expect("the output directory")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("-cluster.json"))
        .expect("a <date>-cluster.json");
    let doc: Value = serde_json::from_slice(&std::fs::read(&file).expect("the document")).expect("JSON");
    assert_eq!(doc["schema"], "rtlab-cluster/1");
    assert!(doc["git"].is_object() && doc["machine"]["cores"].as_u64() > Some(0), "the environment is recorded");
    assert!(doc["shared_machine"].as_str().is_some_and(|s| !s.is_empty()));

    // Latency: the three paths, both subscribers, every message once.
    let latency = doc["latency"].as_array().expect("latency runs");
    assert_eq!(latency.len(), 6, "in-process, Redis same and other process, × SSE and WebSocket");
    for r in latency {
        assert_eq!(r["verified"], true, "{r}");
        assert_eq!(r["count"], 40, "{r}");
        assert!(r["p50_us"].as_u64() <= r["p99_us"].as_u64(), "{r}");
    }

    // Fan-out: one process without a broker, one and two on Redis.
    let fanout = doc["fanout"].as_array().expect("fan-out runs");
    assert_eq!(fanout.len(), 3);
    for r in fanout {
        assert_eq!(r["verified"], true, "{r}");
        assert_eq!(r["delivered"], 20 * 15);
    }
    let on_redis = fanout.iter().find(|r| r["broker"] == "redis" && r["processes"] == 2).expect("two processes on Redis");
    assert!(on_redis["redis_cpu_secs"].as_f64() >= Some(0.0));

    // The failure run: Redis killed and restarted under every transport.
    let run = &doc["failure"][0];
    let subs = run["subscribers"].as_array().expect("subscribers");
    assert_eq!(subs.len(), 9, "one of each transport on each of three instances");
    for s in subs {
        for zero in ["lost", "duplicated", "out_of_order", "silent_gaps"] {
            assert_eq!(s[zero], 0, "{zero}: {s}");
        }
        assert_eq!(s["resets"], 1, "Redis came back empty: a new epoch, told once: {s}");
        assert!(s["recovery_ms"].as_f64().is_some(), "{s}");
        assert_eq!(s["connection_kept"], true, "{s}");
    }
    assert!(run["publishes"]["unavailable"].as_u64() > Some(0), "publishes answered 503 while Redis was down: {}", run["publishes"]);
    assert!(run["publishes"]["ok_after"].as_u64() > Some(0));
    assert_eq!(run["instances_alive"], 3);

    // Sticky sessions: clean on Redis, resets without a shared broker.
    let sticky = doc["sticky"].as_array().expect("sticky clients");
    assert_eq!(sticky.len(), 8);
    for c in sticky.iter().filter(|c| c["broker"] == "redis") {
        assert_eq!((c["lost"].as_u64(), c["duplicated"].as_u64(), c["resets"].as_u64()), (Some(0), Some(0), Some(0)), "{c}");
    }
    for c in sticky.iter().filter(|c| c["broker"] == "none" && c["routing"] == "round-robin") {
        assert!(c["resets"].as_u64() > Some(0), "another process's epoch resets the client: {c}");
    }

    // The rendering.
    for f in ["tables/latency.md", "tables/fanout.md", "tables/failure.md", "tables/sticky.md", "claims/redis.md", "claims/sticky-sessions.md", "plots/latency-p50.svg", "plots/fanout-p99.svg"] {
        assert!(out.join(f).exists(), "{f}");
    }
    let verdict = std::fs::read_to_string(out.join("claims/sticky-sessions.md")).unwrap();
    assert!(verdict.starts_with("**holds when the processes share their ids"), "{verdict}");
    let _ = std::fs::remove_dir_all(&out);
}
