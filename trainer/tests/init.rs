//! `train run --init FILE` (issue 14): a new run from another checkpoint's weights, with
//! the same class count (every tensor taken) and with another (the last layer
//! re-initialized, said in the log); the optimizer and position start fresh; a run
//! stopped before its first checkpoint takes the same weights again on `--resume`; a
//! shape mismatch elsewhere, a PyTorch pickle and `--init` with `--resume` are refused
//! with one line, leaving no run folder behind.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use preprocess::synth;
use trainer::checkpoint::Checkpoint;

const TRAIN: &str = env!("CARGO_BIN_EXE_train");
const PRESET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/smoke-tiny.toml");

/// `train run` of the tests' preset (the saved config with `--resume`) on `data` into
/// `run_dir` with `extra`: (exit code, stdout + stderr).
fn train(data: &Path, run_dir: &Path, extra: &[&str]) -> (i32, String) {
    let mut c = Command::new(TRAIN);
    for v in ["RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_LOCALID", "RUST_BACKTRACE"] {
        c.env_remove(v);
    }
    c.args(["run", "--data", data.to_str().unwrap(), "--run-dir", run_dir.to_str().unwrap(), "--threads", "1"]);
    if !extra.contains(&"--resume") {
        c.args(["--config", PRESET]);
    }
    c.args(extra);
    let o = c.output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
    )
}

/// 4 procedural classes (the tiny dataset has 3), raw shards in `dir/ds4`.
fn four_classes(dir: &Path) -> PathBuf {
    let mut s = synth::SynthConfig::new(dir.join("images4"));
    (s.classes, s.train_per_class, s.val_per_class, s.corrupt) = (4, 12, 3, 0);
    synth::build_raw(&s, &dir.join("ds4")).unwrap()
}

/// max |a - b| of tensor `name` of two model files (None: the shapes differ).
fn diff(a: &Path, b: &Path, name: &str) -> Option<f32> {
    let (x, xs) = Checkpoint::open(a).unwrap().tensor_f32(name).unwrap();
    let (y, ys) = Checkpoint::open(b).unwrap().tensor_f32(name).unwrap();
    (xs == ys).then(|| x.iter().zip(&y).map(|(p, q)| (p - q).abs()).fold(0.0, f32::max))
}

fn names(path: &Path) -> Vec<String> {
    let mut n: Vec<String> = Checkpoint::open(path).unwrap().shapes().into_keys().collect();
    n.sort();
    n
}

/// The learning rate of the runs started from a file: small enough that one step leaves
/// every weight within 1e-6 of where it started (a fresh initialisation differs by ~0.01).
const STILL: &str = "optim.lr=1e-9";

#[test]
fn init_takes_the_weights_with_the_same_and_with_another_class_count() {
    let t = tempfile::tempdir().unwrap();
    let data = common::tiny_dataset(t.path());
    let (code, out) = train(&data, &t.path().join("a"), &["--max-steps", "2"]);
    assert_eq!(code, 3, "{out}");
    let src = t.path().join("a/checkpoints/step-000000002.safetensors");
    let src_arg = src.to_str().unwrap();

    // The same classes: every tensor; a fresh optimizer and position (step 1, not 3).
    let b = t.path().join("b");
    let (code, out) = train(&data, &b, &["--init", src_arg, "--set", STILL, "--max-steps", "1"]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains(&format!(
            "train: --init {src_arg}: weights of all 16 tensors; optimizer and schedule start fresh"
        )),
        "{out}"
    );
    let got = b.join("checkpoints/step-000000001.safetensors");
    for name in names(&src) {
        let d = diff(&src, &got, &name).unwrap();
        assert!(d <= 1e-6, "{name}: {d}");
    }
    assert_eq!(Checkpoint::open(&got).unwrap().meta().unwrap().step, 1);
    let rec = trainer::train::init::InitRecord::read(&b).unwrap().unwrap();
    assert_eq!((rec.file.as_path(), rec.reinitialized.len()), (src.as_path(), 0));

    // Stopped before its first checkpoint: --resume takes the file's weights again.
    std::fs::remove_dir_all(b.join("checkpoints")).unwrap();
    let (code, out) = train(&data, &b, &["--resume", "--max-steps", "1"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("train: --resume before the first checkpoint: the weights of --init again"), "{out}");
    assert!(diff(&src, &got, "features.0.weight").unwrap() <= 1e-6);

    // 4 classes: all but the last layer, which keeps its fresh initialisation.
    let data4 = four_classes(t.path());
    let c = t.path().join("c");
    let (code, out) = train(&data4, &c, &["--init", src_arg, "--set", STILL, "--max-steps", "1"]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains(&format!(
            "train: --init {src_arg}: weights of 14 of 16 tensors; the last layer (classifier.6) re-initialized: the \
             file has 3 classes, this dataset 4"
        )),
        "{out}"
    );
    let got = c.join("checkpoints/step-000000001.safetensors");
    for name in names(&src) {
        match diff(&src, &got, &name) {
            Some(d) => assert!(!name.starts_with("classifier.6.") && d <= 1e-6, "{name}: {d}"),
            None => assert!(name.starts_with("classifier.6."), "{name} changed shape"),
        }
    }
    let (_, shape) = Checkpoint::open(&got).unwrap().tensor_f32("classifier.6.weight").unwrap();
    assert_eq!(shape[0], 4);
    let rec = trainer::train::init::InitRecord::read(&c).unwrap().unwrap();
    assert_eq!(rec.reinitialized, ["classifier.6.weight", "classifier.6.bias"]);
}

#[test]
fn init_refuses_another_network_a_pickle_and_resume_with_one_line() {
    let t = tempfile::tempdir().unwrap();
    let data = common::tiny_dataset(t.path());
    let (code, out) = train(&data, &t.path().join("a"), &["--max-steps", "1"]);
    assert_eq!(code, 3, "{out}");
    let src = t.path().join("a/checkpoints/step-000000001.safetensors");
    let src_arg = src.to_str().unwrap();
    let one_error_line = |out: &str| out.starts_with("error: ") && out.lines().count() == 1;

    // Another width: conv1 is the first tensor that differs.
    let run = t.path().join("wide");
    let (code, out) = train(&data, &run, &["--init", src_arg, "--set", "model.width=0.2"]);
    assert_eq!(code, 1, "{out}");
    assert!(one_error_line(&out), "{out}");
    assert!(
        out.contains("features.0.weight has shape [10, 3, 11, 11] there, this model needs [20, 3, 11, 11]"),
        "{out}"
    );
    assert!(!run.exists(), "a refused --init left {}", run.display());

    // Another switch that changes the tensor names: none; another architecture does.
    let (code, out) = train(
        &data,
        &run,
        &["--init", src_arg, "--set", "model.arch=owt", "--set", "model.crop=224", "--set", "model.width=1"],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        one_error_line(&out) && out.contains("its tensors are not this model's: missing [") && out.contains("owt"),
        "{out}"
    );

    // A PyTorch pickle: the conversion to use.
    let pth = t.path().join("alexnet-owt-7be5be79.pth");
    std::fs::write(&pth, b"PK").unwrap();
    let (code, out) = train(&data, &run, &["--init", pth.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(one_error_line(&out) && out.contains("python -m alexnet_bridge convert"), "{out}");

    // A file that is not a checkpoint.
    let (code, out) = train(&data, &run, &["--init", PRESET]);
    assert_eq!(code, 1, "{out}");
    assert!(one_error_line(&out) && out.contains("--init "), "{out}");

    // With --resume: a usage error (clap's exit code 2).
    let (code, out) = train(&data, &t.path().join("a"), &["--resume", "--init", src_arg]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("'--init <FILE>'") && out.contains("--resume"), "{out}");
}
