//! The stall warning end to end (`train run`): a run that cannot learn (its train
//! labels shuffled across the classes) says it has not left chance, and with
//! `stall.stop = true` ends there with one `error:` line; the same run on the true
//! labels, under the same settings, leaves chance and never says so. The window is
//! two epochs of the tests' preset (30 steps of 8 images; the default would be 1,000),
//! and it survives a resume: a run in chunks shorter than it warns at the same step.

use std::path::{Path, PathBuf};
use std::process::Command;

use preprocess::synth;

/// 3 procedural classes of 40 train images (non-square sources) and 4 val each, built
/// into `dir/ds`; with `shuffle`, every train image moved to a random class folder
/// (seeded) before the build, so the labels no longer follow the images.
fn dataset(dir: &Path, shuffle: bool) -> PathBuf {
    let mut s = synth::SynthConfig::new(dir.join("images"));
    (s.classes, s.train_per_class, s.val_per_class, s.corrupt, s.seed) = (3, 40, 4, 0, 3);
    synth::run(&s).unwrap();
    if shuffle {
        let train = dir.join("images/train");
        let mut classes: Vec<PathBuf> = std::fs::read_dir(&train).unwrap().map(|e| e.unwrap().path()).collect();
        classes.sort();
        let mut files: Vec<PathBuf> =
            classes.iter().flat_map(|c| std::fs::read_dir(c).unwrap().map(|e| e.unwrap().path())).collect();
        files.sort();
        // A seeded permutation of the labels (xorshift; the class sizes stay 40 each).
        let mut labels: Vec<usize> = (0..files.len()).map(|i| i % classes.len()).collect();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for i in (1..labels.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            labels.swap(i, (x % (i as u64 + 1)) as usize);
        }
        for (i, (f, l)) in files.iter().zip(labels).enumerate() {
            std::fs::rename(f, classes[l].join(format!("moved{i}.JPEG"))).unwrap();
        }
    }
    let inputs = preprocess::inputs::InputOptions { root: s.output.clone(), ..Default::default() };
    let mut cfg = preprocess::build::BuildConfig::new(inputs, dir.join("ds"));
    (cfg.threads, cfg.progress) = (2, false);
    preprocess::build::run(&cfg).unwrap();
    dir.join("ds")
}

/// `train run` with the tests' preset for 3 epochs (45 steps) and a 30-step stall window.
fn train(data: &Path, run_dir: &Path, extra: &[&str]) -> (bool, String) {
    let preset = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/smoke-tiny.toml");
    let o = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(["run", "--config", preset, "--data", data.to_str().unwrap(), "--run-dir", run_dir.to_str().unwrap()])
        .args(["--threads", "2", "--set", "optim.epochs=3", "--set", "stall.steps=30"])
        .args(extra)
        .env_remove("RANK")
        .env_remove("WORLD_SIZE")
        .env_remove("SLURM_PROCID")
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

#[test]
fn a_run_that_cannot_learn_says_so_and_a_healthy_one_does_not() {
    let t = tempfile::tempdir().unwrap();
    let shuffled = dataset(&t.path().join("shuffled"), true);
    let (ok, out) = train(&shuffled, &t.path().join("warn"), &[]);
    assert!(ok, "{out}");
    let warning = out.lines().find(|l| l.starts_with("train: warning: the training loss has stayed")).expect(&out);
    assert!(warning.contains("within 1% of ln(3) = 1.0986") && warning.contains("over 30 steps (steps "), "{warning}");
    // "steps A to B": the window's last step, where a stopping run ends.
    let to = warning.split(" to ").nth(1).and_then(|r| r.split(',').next()).unwrap().to_string();
    assert!(warning.contains("biases of 0.1") && warning.contains("lower optim.lr"), "{warning}");
    assert!(out.contains("epochs 3 steps 45"), "the warning alone does not stop the run: {out}");

    // The same run in chunks of 12 steps, shorter than the window: the window travels
    // in the optimizer file, so the warning comes at the same step, once.
    let chunks = t.path().join("chunks");
    let mut warnings = Vec::new();
    for i in 0..4 {
        let resume: &[&str] = if i == 0 { &["--max-steps", "12"] } else { &["--resume", "--max-steps", "12"] };
        let (_, out) = train(&shuffled, &chunks, resume);
        assert!(!out.contains("error:"), "chunk {i}: {out}");
        warnings.extend(out.lines().filter(|l| l.contains("has not left chance")).map(String::from));
    }
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains(&format!(" to {to},")), "{} (the whole run: to {to})", warnings[0]);

    let (ok, out) = train(&shuffled, &t.path().join("stop"), &["--set", "stall.stop=true"]);
    assert!(!ok, "{out}");
    let last = out.trim_end().lines().last().unwrap();
    assert!(last.starts_with("error: the training loss has stayed within 1%"), "{out}");
    assert!(last.contains(&format!("Stopped (stall.stop = true) at step {to}; the last checkpoint is")), "{last}");
    assert!(!out.contains("panicked") && !out.contains("internal error"), "{out}");

    let healthy = dataset(&t.path().join("true"), false);
    let (ok, out) = train(&healthy, &t.path().join("healthy"), &["--set", "stall.stop=true"]);
    assert!(ok && !out.contains("has not left chance"), "{out}");
    assert!(out.contains("epochs 3 steps 45"), "{out}");
}
