//! `troupe sim --nodes 1000 --json`: seven scenarios as JSON lines meeting their goals, the same
//! lines for the same seed, and the SVG plots.

use std::process::Command;

fn sim(args: &[&str]) -> (Vec<serde_json::Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_troupe")).arg("sim").args(args).output().expect("run troupe sim");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let lines = stdout.lines().map(|l| serde_json::from_str(l).expect("a JSON object per line")).collect();
    (lines, stdout)
}

#[test]
fn sim_prints_seven_scenarios_meeting_their_goals_and_writes_plots() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().to_str().expect("utf-8 path");
    let (lines, stdout) = sim(&["--nodes", "1000", "--seed", "3", "--json", "--out", out]);
    let names: Vec<&str> = lines.iter().filter_map(|l| l["bench"].as_str()).collect();
    assert_eq!(names, ["stable", "massjoin", "fail20", "fail50", "fail80", "churn", "partition"]);
    for l in &lines {
        assert_eq!(l["suite"], "sim");
        assert_eq!(l["overlay"], "hyparview");
        assert_eq!(l["nodes"], 1000);
        for key in ["reliability", "components", "isolated", "redundancy", "last_hop", "rounds_to_recover"] {
            assert!(l.get(key).is_some(), "{key} missing in {l}");
        }
        let r = l["reliability"].as_f64().expect("reliability");
        assert!((0.0..=1.0).contains(&r), "{l}");
    }
    let by = |name: &str| lines.iter().find(|l| l["bench"] == name).expect("scenario");
    assert_eq!(by("stable")["reliability"], 1.0);
    assert_eq!(by("stable")["components"], 1);
    assert_eq!(by("massjoin")["isolated"], 0);
    for name in ["fail50", "fail80"] {
        let rounds = by(name)["rounds_to_recover"].as_u64().unwrap_or(u64::MAX);
        assert!(rounds <= 5, "{name}: {}", by(name));
    }
    assert_eq!(by("fail80")["live"], 200);
    for name in ["churn", "partition"] {
        let l = by(name);
        assert_eq!(l["components"], 1, "{l}");
        assert_eq!(l["isolated"], 0, "{l}");
        assert!(l["reliability"].as_f64().is_some_and(|r| r >= 0.99), "{l}");
        assert!(l["rounds_to_recover"].as_u64().is_some_and(|p| p <= 5), "{l}");
    }
    assert_eq!(by("churn")["churn"], 0.05);
    assert_eq!(by("churn")["churned"], 300);
    assert!(by("churn")["worst_reliability"].as_f64().is_some_and(|r| r >= 0.9), "{}", by("churn"));
    assert!(by("partition")["side_reliability"].as_f64().is_some_and(|r| r >= 0.99), "{}", by("partition"));
    assert_eq!(by("partition")["disturbed_periods"], 3);
    // The fields of the new scenarios are left out of the others' lines.
    assert!(by("fail50").get("side_reliability").is_none() && by("stable").get("churn").is_none());

    let plots = [
        "connectivity",
        "isolated",
        "degree",
        "reliability",
        "redundancy",
        "last_hop",
        "recovery",
        "churn",
        "partition",
    ];
    for plot in plots {
        let svg = std::fs::read_to_string(dir.path().join(format!("{plot}.svg"))).expect("plot written");
        assert!(svg.starts_with("<svg") && svg.contains("<polyline"), "{plot}.svg is not a line chart");
    }

    // Same seed, same lines (only the plots' directory differs, and it is not in the JSON).
    let (_, again) = sim(&["--nodes", "1000", "--seed", "3", "--json", "--out", out]);
    assert_eq!(stdout, again);
}

#[test]
fn sim_refuses_an_unknown_overlay() {
    let out = Command::new(env!("CARGO_BIN_EXE_troupe"))
        .args(["sim", "--overlay", "chord", "--nodes", "10", "--no-plots"])
        .output()
        .expect("run troupe sim");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown overlay"));
}
