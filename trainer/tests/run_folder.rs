//! `train run` as a user sees it from the outside (issue 14): the start-up banner and
//! the ETA in a log, the exit codes of a stop, `--version`, the provenance in the run
//! folder and the checkpoints, TensorBoard files beside metrics.jsonl, a `--resume`
//! typo refused, a folder stopped before its first checkpoint resumed from the start,
//! and a closed pipe that does not kill the run.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use trainer::checkpoint::Checkpoint;
use trainer::provenance::Provenance;
use trainer::train::tensorboard;

const TRAIN: &str = env!("CARGO_BIN_EXE_train");
const PRESET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/smoke-tiny.toml");

fn clean(mut c: Command) -> Command {
    for v in ["RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_LOCALID", "RUST_BACKTRACE"] {
        c.env_remove(v);
    }
    c
}

/// `train run` on `data` into `run_dir` with `extra`: (exit code, stdout + stderr), its
/// stderr a file as under nohup or Slurm (no terminal).
fn train(data: &Path, run_dir: &Path, extra: &[&str]) -> (i32, String) {
    let mut c = clean(Command::new(TRAIN));
    c.args(["run", "--data", data.to_str().unwrap(), "--run-dir", run_dir.to_str().unwrap(), "--threads", "1"])
        .args(extra);
    let o = c.output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
    )
}

#[test]
fn a_log_has_the_banner_and_the_eta_and_a_stop_its_exit_code() {
    let t = tempfile::tempdir().unwrap();
    let data = common::tiny_dataset(t.path());
    let run = t.path().join("run");
    // 48 train images, batch 8: 6 steps an epoch, 3 epochs.
    let (code, log) = train(&data, &run, &["--config", PRESET, "--max-steps", "4"]);
    assert_eq!(code, 3, "--max-steps: {log}");
    let line =
        |start: &str| log.lines().find(|l| l.starts_with(start)).unwrap_or_else(|| panic!("no {start:?}: {log}"));
    let first = line("train: alexnet ");
    assert!(first.contains("(commit ") && first.contains("libtorch 2.11") && first.contains("device cpu"), "{first}");
    let model = line("train: model paper, width 0.1, crop 67, 3 classes: ");
    assert!(model.ends_with("parameters; precision fp32"), "{model}");
    assert!(line("train: data ").contains("48 train images (48 trained on), 12 val"), "{log}");
    let batch = line("train: global batch 8 (8 x 1 rank); 3 epochs; 1 intra-op threads, 2 loader workers");
    assert!(!batch.is_empty());
    // The banner comes before the first step; the log lines give epoch k/N and the ETA.
    assert!(log.find("train: global batch").unwrap() < log.find("train: epoch 1/3 [2/6]").unwrap(), "{log}");
    let step = line("train: epoch 1/3 [4/6] loss ");
    assert!(step.contains(" elapsed ") && step.contains(", run ETA "), "{step}");
    assert!(log.contains("stopped at step 4;") && log.contains("(stopped by --max-steps; continue with --resume)"));

    // Provenance: one line per start, and in the checkpoint.
    let p = Provenance::read_all(&run).unwrap();
    assert_eq!(p.len(), 1);
    assert_eq!(
        (p[0].start.as_str(), p[0].world_size, p[0].git_commit.as_str()),
        ("new", 1, alexnet_shared::build_info::GIT_COMMIT)
    );
    assert!(p[0].command_line.iter().any(|a| a == "--max-steps") && p[0].manifest_sha256.len() == 64);
    let ck = Checkpoint::open(&run.join("checkpoints/step-000000004.safetensors")).unwrap();
    assert_eq!(ck.meta().unwrap().provenance.as_ref(), Some(&p[0]));

    // SIGTERM mid-run: a checkpoint and exit code 75; the resume is the second start.
    let mut child = clean(Command::new(TRAIN))
        .args(["run", "--data", data.to_str().unwrap(), "--run-dir", run.to_str().unwrap(), "--threads", "1"])
        .args(["--resume", "--set", "optim.epochs=400"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let metrics = run.join("metrics.jsonl");
    let lines = || std::fs::read_to_string(&metrics).map(|s| s.lines().count()).unwrap_or(0);
    let before = lines();
    let t0 = std::time::Instant::now();
    while lines() < before + 3 && t0.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) }, 0);
    assert_eq!(child.wait().unwrap().code(), Some(75), "SIGTERM: the code of a stop by a signal");
    let p = Provenance::read_all(&run).unwrap();
    assert_eq!((p.len(), p[1].start.as_str(), p[1].resumed_at_step), (2, "resume", Some(4)));

    // TensorBoard files of the two starts; no step twice across them.
    let files = tensorboard::event_files(&run).unwrap();
    assert_eq!(files.len(), 2, "{files:?}");
    let mut steps = Vec::new();
    for f in &files {
        for e in tensorboard::read_events(f).unwrap().0 {
            if let Some(tensorboard::What::Summary(s)) = &e.what {
                steps.extend(s.value.iter().filter(|v| v.tag == "train/loss").map(|_| e.step));
            }
        }
    }
    let mut unique = steps.clone();
    unique.dedup();
    assert!(steps.len() >= 3 && unique == steps && steps.windows(2).all(|w| w[0] < w[1]), "{steps:?}");

    // --version: the commit and the libtorch.
    let o = Command::new(TRAIN).arg("--version").output().unwrap();
    let v = String::from_utf8_lossy(&o.stdout);
    assert!(v.starts_with("train 0.1.0 (commit ") && v.contains(", libtorch 2.11"), "{v}");
}

#[test]
fn resume_refuses_a_folder_without_a_run_and_restarts_one_stopped_before_its_first_checkpoint() {
    let t = tempfile::tempdir().unwrap();
    let data = common::tiny_dataset(t.path());
    // A typo in --run-dir under --resume, with a preset: refused, nothing created.
    let typo = t.path().join("rnu");
    let (code, out) = train(&data, &typo, &["--config", PRESET, "--resume"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("error: --resume: ") && out.contains("holds no run") && out.lines().count() == 1, "{out}");
    assert!(!typo.exists());
    // A run folder killed before its first checkpoint (its config.toml written, a
    // record or two, no checkpoint): --resume starts it from step 0.
    let run = t.path().join("run");
    let (code, _) = train(&data, &run, &["--config", PRESET, "--max-steps", "2"]);
    assert_eq!(code, 3);
    std::fs::remove_dir_all(run.join("checkpoints")).unwrap();
    let (code, out) = train(&data, &run, &["--resume", "--max-steps", "1"]);
    assert_eq!(code, 3, "{out}");
    assert!(!out.contains("resuming from") && out.contains("stopped at step 1;"), "{out}");
    assert!(out.contains("metrics.jsonl: 1 record(s) after step 0 dropped"), "{out}");
    let p = Provenance::read_all(&run).unwrap();
    assert_eq!((p[1].start.as_str(), p[1].resumed_at_step), ("resume", None));
    // The records of the first start past step 0 were dropped: step 1 is logged once.
    let steps: Vec<u64> =
        trainer::train::Record::read_all(&run.join("metrics.jsonl")).unwrap().iter().map(|r| r.step()).collect();
    assert!(steps.iter().all(|&s| s <= 1), "{steps:?}");
}

/// First-use review: `train run ... 2>&1 | head` killed the training with Rust's panic
/// exit code 101 at the first line after head left. Now the run goes on to its end.
#[test]
fn a_closed_pipe_does_not_stop_the_run() {
    let t = tempfile::tempdir().unwrap();
    let data = common::tiny_dataset(t.path());
    let run = t.path().join("run");
    let o = clean(Command::new("bash"))
        .arg("-c")
        .arg(r#""$@" 2>&1 | head -n 1 >/dev/null; echo "rc=${PIPESTATUS[0]}""#)
        .arg("train")
        .args([TRAIN, "run", "--config", PRESET, "--data", data.to_str().unwrap()])
        .args(["--run-dir", run.to_str().unwrap(), "--threads", "1", "--set", "optim.epochs=1"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(out.trim(), "rc=0", "{out}");
    assert!(run.join("checkpoints/epoch-001.safetensors").exists());
}
