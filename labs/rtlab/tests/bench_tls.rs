//! `rtlab bench-tls` at a tiny scale: a test of the scenario (it runs every
//! part, plain, TLS and HTTP/2, writes its results document and renders
//! its tables), not a measurement. Run: `cargo test -p rtlab --test bench_tls`

use serde_json::Value;

#[test]
fn bench_tls_runs_and_renders() {
    let out = std::env::temp_dir().join(format!("rtlab-bench-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let result = std::process::Command::new(env!("CARGO_BIN_EXE_rtlab"))
        .args(["bench-tls", "--connections", "4", "--handshakes", "4", "--streams", "4", "--repeat", "1"])
        .args(["--runtimes", "tokio,threads", "--out"])
        .arg(&out)
        .output()
        .expect("running rtlab bench-tls");
    assert!(result.status.success(), "bench-tls failed: {}", String::from_utf8_lossy(&result.stderr));
    let doc: Value = serde_json::from_slice(&std::fs::read(out.join("tls.json")).expect("tls.json")).expect("JSON");
    assert!(doc["git"].is_object() && doc["machine"]["cores"].as_u64() > Some(0), "the environment is recorded");
    let labs = doc["labs"].as_array().expect("labs");
    assert_eq!(labs.iter().map(|l| l["runtime"].as_str().unwrap()).collect::<Vec<_>>(), ["tokio", "threads"]);
    for lab in labs {
        for variant in ["plain", "tls"] {
            for metric in ["user_bytes_per_connection", "kernel_bytes_per_connection", "server_cpu_us_per_connection"] {
                let values = lab[variant][metric]["values"].as_array().expect("raw values");
                assert_eq!(values.len(), 1, "{variant} {metric}: one value per run");
                assert!(values[0].as_f64().is_some_and(f64::is_finite), "{variant} {metric}: {}", values[0]);
            }
            let cpu = lab[variant]["server_cpu_us_per_connection"]["values"][0].as_f64().unwrap();
            assert!(cpu >= 0.0, "CPU time never goes back: {cpu}");
        }
    }
    assert_eq!(doc["h2"]["user_bytes_per_stream"]["values"].as_array().map(Vec::len), Some(1));
    for table in ["tls-idle.md", "tls-handshake.md", "h2-streams.md", "tls-finding.md"] {
        let text = std::fs::read_to_string(out.join("tables").join(table)).expect(table);
        assert!(text.contains("tokio"), "{table} names the labs: {text}");
    }
    let _ = std::fs::remove_dir_all(&out);
}
