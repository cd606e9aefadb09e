//! The `troupe` binary: the demo runs to completion and the benchmark prints well-formed JSON.

use std::process::Command;

fn troupe() -> Command {
    Command::new(env!("CARGO_BIN_EXE_troupe"))
}

#[test]
fn demo_runs_and_reports() {
    let out = troupe()
        .args(["demo", "--seconds", "1", "--teams", "6", "--team-size", "20", "--crashes-per-sec", "50"])
        .output()
        .expect("run troupe demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "demo failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("built a supervision tree: 6 teams"), "{stdout}");
    assert!(stdout.contains("0 failed"), "{stdout}");
    assert!(stdout.contains("120/120 workers alive"), "{stdout}");
    assert!(stdout.contains("0 still alive"), "{stdout}");
    // The cluster part: three processes on the default overlay (HyParView), a dashboard, a
    // broadcast everyone delivers, exactly-once acked tells, a SIGKILLed node noticed and removed.
    assert!(stdout.contains("overlay hyparview"), "{stdout}");
    assert!(stdout.contains("live dashboard of the cluster at http://127.0.0.1:"), "{stdout}");
    assert!(stdout.contains("delivered: corinth yes, athens yes, sparta yes"), "{stdout}");
    let after = stdout.lines().find(|l| l.contains("overlay after the kill")).expect("the overlay after the kill");
    assert!(!after.contains("sparta"), "sparta still in a view: {after}");
    assert!(stdout.contains("corinth saw it down after"), "{stdout}");
    assert!(stdout.contains("got Down(its node is down)"), "{stdout}");
    assert!(stdout.contains("on sparta had linked to exited with it (linked actor"), "{stdout}");
    assert!(stdout.contains("athens still serves"), "{stdout}");
}

#[test]
fn bench_remote_quick_prints_json_lines() {
    let out = troupe().args(["bench", "remote", "--quick", "--json"]).output().expect("run troupe bench remote");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> =
        stdout.lines().map(|l| serde_json::from_str(l).expect("a JSON object per line")).collect();
    let names: Vec<&str> = lines.iter().filter_map(|l| l["bench"].as_str()).collect();
    assert_eq!(names, ["tell64", "ask64", "bulk512k", "hol", "echo20ms"]);
    for line in &lines {
        assert_eq!(line["suite"], "remote");
        assert!(line["value"].as_f64().is_some_and(|v| v > 0.0), "{line}");
        assert!(line["baseline"].as_f64().is_some_and(|v| v > 0.0), "{line}");
    }
}

#[test]
fn bench_local_quick_prints_json_lines() {
    let out = troupe().args(["bench", "local", "--quick", "--json"]).output().expect("run troupe bench");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> =
        stdout.lines().map(|l| serde_json::from_str(l).expect("a JSON object per line")).collect();
    let names: Vec<&str> = lines.iter().filter_map(|l| l["bench"].as_str()).collect();
    assert_eq!(names, ["tell", "pingpong", "ring", "spawn", "ask", "big", "cores", "idle_actor_bytes"]);
    for line in &lines {
        assert_eq!(line["suite"], "local");
        assert!(line["value"].as_f64().is_some_and(|v| v > 0.0), "{line}");
        if let Some(baseline) = line["baseline"].as_f64() {
            let ratio = line["ratio"].as_f64().expect("ratio");
            assert!((ratio - line["value"].as_f64().unwrap_or(0.0) / baseline).abs() < 1e-9);
        }
    }
}

#[test]
fn bad_arguments_are_a_clear_error() {
    let out = troupe().args(["bench", "nonsense"]).output().expect("run troupe");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unrecognized subcommand"));
}

#[test]
fn bench_crdt_quick_reports_sync_saving() {
    let out = troupe().args(["bench", "crdt", "--quick", "--json"]).output().expect("run troupe bench crdt");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> =
        stdout.lines().map(|l| serde_json::from_str(l).expect("a JSON object per line")).collect();
    assert!(lines.iter().all(|l| l["suite"] == "crdt" && l["value"].as_f64().is_some()));
    let savings: Vec<f64> =
        lines.iter().filter(|l| l["bench"] == "sync_saving").filter_map(|l| l["value"].as_f64()).collect();
    assert!(!savings.is_empty(), "no sync_saving line: {stdout}");
    assert!(savings.iter().all(|s| *s >= 20.0), "sync saving below 20: {savings:?}");
}

#[test]
fn bench_scale_prints_its_json_line() {
    let out = troupe()
        .args(["bench", "scale", "--overlay", "hyparview", "--nodes", "24", "--broadcasts", "50", "--json"])
        .output()
        .expect("run troupe bench scale");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    assert_eq!(line["bench"], "scale");
    assert_eq!(line["overlay"], "hyparview");
    assert_eq!(line["nodes"], 24);
    assert_eq!(line["delivery"], 1.0, "{line}");
    assert!(line["join_secs"].as_f64().is_some_and(|s| s > 0.0), "{line}");
    assert!(
        line["msgs_per_broadcast"].as_f64().is_some_and(|m| m >= 23.0),
        "at least one message per other node: {line}"
    );
    assert!(line["fds_per_node"].as_f64().is_some_and(|f| f > 0.0), "{line}");
    assert!(line["rss_bytes_per_node"].as_u64().is_some(), "{line}");
}
