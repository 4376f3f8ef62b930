//! The benchmark harness at a tiny scale, against the tokio lab: a test of
//! the harness (every scenario runs, verifies delivery, and its results
//! render), not a measurement. `rtlab bench --scale tiny` is the same matrix
//! as the quick and full runs with tiny sizes and one run per cell.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn rtlab(args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_rtlab")).args(args).output().expect("failed to run rtlab");
    assert!(
        output.status.success(),
        "rtlab {} failed:\n--- stdout\n{}\n--- stderr\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("rtlab-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn assert_file(path: &Path, contains: &str) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(text.contains(contains), "{} does not contain {contains:?}", path.display());
}

#[test]
fn tiny_matrix_verifies_every_scenario_and_renders_its_report() {
    let tmp = TempDir::new("harness");
    let out = tmp.path("results");
    let out_s = out.to_str().expect("utf-8 path");
    let run = rtlab(&["bench", "--scale", "tiny", "--runtimes", "tokio", "--repeats", "1", "--out", out_s]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("0 failure(s)"), "{stdout}");

    let doc: Value = serde_json::from_slice(&std::fs::read(out.join("results.json")).expect("results.json"))
        .expect("results.json is JSON");
    assert_eq!(doc["schema"], "rtlab-bench/1");
    assert_eq!(doc["scale"], "tiny");
    for field in ["cpu_model", "kernel", "host"] {
        assert!(doc["machine"][field].is_string(), "machine.{field}");
    }
    assert!(doc["toolchain"]["rustc"].is_string());
    assert!(doc["crates"]["tokio"].is_string());
    assert_eq!(doc["failures"], serde_json::json!([]));
    let cells = doc["cells"].as_array().expect("cells");
    // The knee (SSE and WebSocket) replaced back-to-back saturation.
    let expected = [("idle", 3), ("fanout", 3), ("knee", 2), ("backpressure", 8), ("polling", 4)];
    for (scenario, count) in expected {
        let of: Vec<&Value> = cells.iter().filter(|c| c["scenario"] == scenario).collect();
        assert_eq!(of.len(), count, "{scenario} cells");
        for cell in of {
            assert_eq!(cell["verified"], true, "{scenario} {} not verified", cell["transport"]);
            assert_eq!(cell["runs"].as_array().map(Vec::len), Some(1));
            assert!(cell["metrics"].as_object().is_some_and(|m| !m.is_empty()), "{scenario}: no metrics");
            // Every run says what every run reports, in the same keys
            // whatever the scenario.
            let run = &cell["runs"][0];
            assert_eq!((&run["runtime"], &run["transport"]), (&cell["runtime"], &cell["transport"]), "{scenario}");
            assert_eq!((&run["verified"], &run["failure"]), (&Value::Bool(true), &Value::Null), "{scenario}");
            assert!(run["clean_exit"].is_boolean() && run["env"]["wall_secs"].is_number(), "{scenario}: {run}");
        }
    }
    // The stalled subscribers of each policy met their fate.
    let bp = |policy: &str, metric: &str| {
        cells
            .iter()
            .find(|c| c["scenario"] == "backpressure" && c["label"] == policy && c["transport"] == "ws")
            .and_then(|c| c["metrics"][metric]["mean"].as_f64())
            .unwrap_or(-1.0)
    };
    assert!(bp("disconnect", "stalled_closed") > 0.0, "disconnect closed no stalled subscriber");
    assert!(bp("drop-oldest", "stalled_missed") > 0.0, "drop-oldest told no stalled subscriber it missed messages");
    assert_eq!(bp("unbounded", "stalled_closed"), 0.0);

    // The report, into the results directory and a book directory.
    for file in ["plots/idle-user-sse.svg", "plots/fanout-ws.svg", "plots/polling-bytes.svg", "tables/idle.md"] {
        assert!(out.join(file).is_file(), "{file} missing after bench");
    }
    let book = tmp.path("book");
    rtlab(&["report", out_s, "--book", book.to_str().expect("utf-8 path")]);
    assert_file(&book.join("tables/polling.md"), "| short-poll | tokio |");
    assert_file(&book.join("plots/backpressure-memory-ws-unbounded.svg"), "<svg");
    assert_file(&book.join("plots/knee.svg"), "tokio");
    assert_file(&out.join("report.md"), "![knee.svg](plots/knee.svg)");

    // compare: a document against itself changes nothing.
    let same = rtlab(&["compare", out_s, out_s]);
    assert!(String::from_utf8_lossy(&same.stdout).contains("+0.0%"));
}

#[test]
fn tiny_polling_sweep_with_browser_headers_verifies_and_renders() {
    // Three cells (short polling every 200 ms, SSE, WebSocket; one rate), a few
    // clients, the committed Chromium capture: a test of the sweep's
    // plumbing and rendering, not a measurement.
    let tmp = TempDir::new("sweep");
    let out = tmp.path("sweep");
    let capture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench-results/polling/chromium-headers.json");
    let (out_s, capture_s) = (out.to_str().expect("utf-8"), capture.to_str().expect("utf-8"));
    rtlab(&[
        "bench", "polling-sweep", "--runtimes", "tokio", "--transports", "short-poll,sse,ws", "--rates", "5", "--periods", "0.2",
        "--clients", "5", "--large-clients", "0", "--repeats", "1", "--min-updates", "3", "--min-secs", "0.5",
        "--placement", "shared", "--browser-headers", capture_s, "--out", out_s,
    ]);
    let doc: Value = serde_json::from_slice(&std::fs::read(out.join("sweep.json")).expect("sweep.json")).expect("JSON");
    assert_eq!(doc["schema"], "rtlab-polling-sweep/1");
    let runs = doc["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 3);
    let head = doc["browser_headers"]["kinds"]["poll"]["bytes"].as_f64().expect("the capture is in the document");
    for run in runs {
        assert_eq!(run["verified"], true, "{run}");
        assert!(run["browser"].as_str().is_some_and(|b| !b.is_empty()), "{run}");
        let (browser, minimal) = (run["bytes_per_message"].as_f64().unwrap(), run["minimal_bytes_per_message"].as_f64().unwrap());
        assert!(browser >= minimal, "{run}");
        if run["transport"] == "short-poll" {
            // Every poll carried the browser's head: at least its bytes per request.
            let requests = run["requests"].as_f64().unwrap();
            let wire = run["bytes_per_message"].as_f64().unwrap() * 5.0 * run["messages"].as_f64().unwrap();
            assert!(requests > 0.0 && wire / requests > head, "{run}");
            assert!(browser > minimal, "{run}");
        }
    }
    assert_file(&out.join("tables/sweep.md"), "| tokio | 5 | short-poll 0.2 s | 5 |");
    assert_file(&out.join("tables/browser-headers.md"), "`fetch` poll");
    assert_file(&out.join("findings/crossover.md"), "every 0.2 s: tokio");
    assert_file(&out.join("claims/frames-and-headers.md"), "request head for a `fetch` poll");
    assert_file(&out.join("plots/sweep-cpu.svg"), "<svg");
    assert_file(&out.join("plots/sweep-bytes.svg"), "<svg");
}
