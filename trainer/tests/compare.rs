//! `train compare` end to end on two real tiny runs (the tests' preset, one with LRN
//! off): the markdown table names the differing key and the paper's claim, CSV and JSON
//! carry the same rows, `--plot` writes the overlaid curves, and bad input is one line.

use std::path::Path;
use std::process::Command;

mod common;

fn train(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(args)
        .env_remove("RANK")
        .env_remove("WORLD_SIZE")
        .env_remove("SLURM_PROCID")
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

fn tiny_run(data: &Path, dir: &Path, sets: &[&str]) {
    let preset = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/smoke-tiny.toml");
    let mut args =
        vec!["run", "--config", preset, "--data", data.to_str().unwrap(), "--run-dir", dir.to_str().unwrap()];
    args.extend(["--threads", "1", "--set", "optim.epochs=2"]);
    for s in sets {
        args.extend(["--set", s]);
    }
    let (ok, out, err) = train(&args);
    assert!(ok, "{out}{err}");
}

#[test]
fn two_runs_side_by_side() {
    let t = tempfile::tempdir().unwrap();
    let data = common::tiny_dataset(t.path());
    let (a, b) = (t.path().join("base"), t.path().join("nolrn"));
    tiny_run(&data, &a, &[]);
    tiny_run(&data, &b, &["model.lrn=false"]);
    let png = t.path().join("cmp.png");
    let (ok, md, err) = train(&["compare", a.to_str().unwrap(), b.to_str().unwrap(), "--plot", png.to_str().unwrap()]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = md.lines().collect();
    assert!(lines[0].starts_with("| run | model.lrn | epochs | best top-1 err %"), "{md}");
    assert!(lines[2].contains("| true | 2 |") && lines[2].ends_with("| - |"), "{md}");
    assert!(lines[3].contains("| false | 2 |") && lines[3].contains("3.3: without LRN"), "{md}");
    assert_eq!(image::image_dimensions(&png).unwrap(), (trainer::curves::WIDTH, trainer::curves::HEIGHT));
    let (ok, csv, _) = train(&["compare", a.to_str().unwrap(), b.to_str().unwrap(), "--csv"]);
    assert!(ok && csv.lines().count() == 3 && csv.starts_with("run,model.lrn,epochs,"), "{csv}");
    let (ok, json, _) = train(&["compare", a.to_str().unwrap(), b.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(ok && v[1]["differs"]["model.lrn"] == "false" && v[1]["epochs"] == 2, "{json}");
    let (ok, _, err) = train(&["compare", a.to_str().unwrap(), t.path().to_str().unwrap()]);
    assert!(!ok && err.contains("not a run folder") && err.trim_end().lines().count() == 1, "{err}");
}
