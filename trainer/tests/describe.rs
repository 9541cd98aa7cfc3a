//! `train describe` end to end: for every switch combination (set with `--set`, as a
//! user would), the binary's parameter count and per-module output shapes are those of
//! the model built here (tch, measured by a forward pass). The PyTorch definitions are
//! checked against the same layer table by `trainer/tests/check_parity.py`.

use std::process::Command;

use serde_json::Value;
use tch::{nn::VarStore, Device, Kind, Tensor};
use trainer::model::{AlexNet, ModelConfig};

fn describe(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_train"))
        .arg("describe")
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

fn sets(cfg: &ModelConfig) -> Vec<String> {
    let s = |k: &str, v: String| ["--set".to_string(), format!("model.{k}={v}")];
    [
        s("width", cfg.width.to_string()),
        s("crop", cfg.crop.to_string()),
        s("activation", cfg.activation.name().into()),
        s("lrn", cfg.lrn.to_string()),
        s("pooling", cfg.pooling.name().into()),
        s("towers", cfg.towers.to_string()),
    ]
    .concat()
}

#[test]
fn every_switch_combination_describes_the_model_it_builds() {
    tch::set_num_threads(1);
    let preset = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/demo.toml");
    let base = ModelConfig { width: 0.25, crop: 131, ..ModelConfig::paper(7) };
    for cfg in base.switch_combinations() {
        let what = cfg.variant_name();
        let args = sets(&cfg);
        let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
        args.extend(["--config", preset, "--classes", "7", "--json"]);
        let (ok, out, err) = describe(&args);
        assert!(ok, "{what}: {err}");
        let d: Value = serde_json::from_str(&out).unwrap();
        let vs = VarStore::new(Device::Cpu);
        let m = AlexNet::new(&vs.root(), &cfg).unwrap();
        assert_eq!(d["parameters"].as_i64().unwrap(), AlexNet::num_parameters(&vs), "{what}");
        let x = Tensor::zeros([1, 3, 131, 131], (Kind::Float, Device::Cpu));
        let traced = tch::no_grad(|| m.f_trace(&x)).unwrap();
        let rows = d["layers"].as_array().unwrap();
        assert_eq!(rows.len(), traced.len(), "{what}");
        for (row, (path, shape)) in rows.iter().zip(&traced) {
            let out: Vec<i64> = row["output"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
            assert_eq!((row["path"].as_str().unwrap(), &out[..]), (path.as_str(), &shape[1..]), "{what}");
        }
        let want = serde_json::to_value(&cfg).unwrap();
        for k in ["activation", "lrn", "pooling", "towers", "lrn_towers"] {
            assert_eq!(d["model"][k], want[k], "{what}: {k}");
        }
    }
}

#[test]
fn the_papers_net_and_its_one_gpu_baseline_in_markdown() {
    let (ok, out, err) = describe(&[]);
    assert!(ok, "{err}");
    assert!(out.starts_with("paper model: width 1, 1000 classes, 227x227 input; relu, LRN on"), "{out}");
    assert!(
        out.contains("| features.4 | conv2 | conv 5x5 | 5 | 1 | 2 | 2 | 256x27x27 | 307,456 | 223,948,800 |"),
        "{out}"
    );
    assert!(out.contains("**60,965,224** | **724,406,816**"), "{out}");
    let (ok, out, _) = describe(&["--set", "model.towers=1"]);
    assert!(
        ok && out.contains("**59,798,312**")
            && out.contains("| features.4 | conv2 | conv 5x5 | 5 | 1 | 2 | 1 | 128x27x27"),
        "{out}"
    );
    let owt = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/alexnet-owt.toml");
    let (ok, out, _) = describe(&["--config", owt]);
    assert!(ok && out.contains("**61,100,840**"), "{out}");
}

#[test]
fn bad_configurations_are_one_line_errors() {
    let owt = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/alexnet-owt.toml");
    for (args, want) in [
        (vec!["--set", "model.towers=3"], "towers 3 must be 2"),
        (vec!["--set", "model.activation=gelu"], "unknown variant `gelu`"),
        (vec!["--set", "model.crop=40"], "crop 40 must be in 67..=256"),
        (vec!["--config", owt, "--set", "model.pooling=non-overlapping"], "pooling is a switch of the paper model"),
        (vec!["--config", "/nonexistent.toml"], "reading /nonexistent.toml"),
    ] {
        let (ok, out, err) = describe(&args);
        assert!(!ok && out.is_empty(), "{args:?}: {out}");
        assert!(err.contains(want) && err.trim_end().lines().count() == 1, "{args:?}: {err}");
    }
    // clap's own message (its usage hint follows on later lines, as for every flag).
    let (ok, _, err) = describe(&["--classes", "0"]);
    assert!(!ok && err.starts_with("error: invalid value '0' for '--classes"), "{err}");
}
