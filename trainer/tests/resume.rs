//! What `--resume` trusts and what it refuses (the reliability review's B6, B7, B17): a
//! folder of checkpoints none of which can be resumed is refused, never started over; a
//! damaged latest checkpoint (model or optimizer file) falls back to the one before;
//! an optimizer file of another checkpoint, another data build, an absurd position are
//! refused by name; another build of the same images resumes.

mod common;

use std::path::{Path, PathBuf};

use tch::Device;
use trainer::config::TrainConfig;
use trainer::train::{run, RunOptions};

/// libtorch's generator and thread count are global: runs take turns.
static ONE_RUN_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn opts(data: &Path, run_dir: PathBuf, resume: bool, max_steps: Option<u64>) -> RunOptions {
    RunOptions { data: data.to_path_buf(), run_dir, device: Device::Cpu, resume, max_steps, init: None }
}

/// A copy of the run folder `from` (config, metrics, checkpoints) at `to`.
fn copy_run(from: &Path, to: &Path) -> PathBuf {
    for sub in ["", "checkpoints"] {
        std::fs::create_dir_all(to.join(sub)).unwrap();
        for e in std::fs::read_dir(from.join(sub)).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() {
                std::fs::copy(e.path(), to.join(sub).join(e.file_name())).unwrap();
            }
        }
    }
    to.to_path_buf()
}

/// Flips 64 bytes in the middle of the tensor data of `path` (the structure intact).
fn flip_tensor_bytes(path: &Path) {
    let mut b = std::fs::read(path).unwrap();
    let (n, _) = safetensors::SafeTensors::read_metadata(&b).unwrap();
    let i = 8 + n + (b.len() - 8 - n) / 2;
    b[i..i + 64].iter_mut().for_each(|x| *x ^= 0xff);
    std::fs::write(path, b).unwrap();
}

/// Rewrites the metadata key `key` of the safetensors file `path` (tensors unchanged).
fn set_meta(path: &Path, key: &str, value: &str) {
    let b = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&b).unwrap();
    let mut meta = safetensors::SafeTensors::read_metadata(&b).unwrap().1.metadata().clone().unwrap();
    meta.insert(key.into(), value.into());
    let out = safetensors::serialize(st.tensors(), Some(meta)).unwrap();
    std::fs::write(path, out).unwrap();
}

fn ckpt(run_dir: &Path, stem: &str) -> PathBuf {
    run_dir.join(format!("checkpoints/{stem}.safetensors"))
}

fn optim(run_dir: &Path, stem: &str) -> PathBuf {
    run_dir.join(format!("checkpoints/{stem}.optim.safetensors"))
}

#[test]
fn resume_falls_back_over_damage_and_refuses_what_is_not_this_runs() {
    let _serial = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    tch::set_num_threads(1);
    let t = tempfile::tempdir().unwrap();
    let data = common::tiny_dataset(t.path());
    let cfg: TrainConfig = common::tiny(&[]);
    // 6 steps per epoch: epoch-001 at step 6, step-000000008 at step 8.
    let base = t.path().join("base");
    let s = run(&cfg, &opts(&data, base.clone(), false, Some(8))).unwrap();
    assert_eq!(s.global_step, 8);
    assert!(ckpt(&base, "epoch-001").exists() && ckpt(&base, "step-000000008").exists());
    let resume = |dir: &Path| run(&cfg, &opts(&data, dir.to_path_buf(), true, Some(1)));

    // B6: the optimizer files gone. Refused, naming why, and nothing is written: best
    // stays as it was (it was overwritten by a silent new start).
    let x = copy_run(&base, &t.path().join("no-optim"));
    for stem in ["epoch-001", "step-000000008", "best"] {
        std::fs::remove_file(optim(&x, stem)).unwrap();
    }
    let best = std::fs::read(ckpt(&x, "best")).unwrap();
    for _ in 0..2 {
        let e = format!("{:#}", resume(&x).unwrap_err());
        assert!(e.contains("holds checkpoints but none can be resumed"), "{e}");
        assert!(e.contains("no optimizer file step-000000008.optim.safetensors"), "{e}");
    }
    assert_eq!(std::fs::read(ckpt(&x, "best")).unwrap(), best);
    let e = run(&cfg, &opts(&data, x.clone(), false, Some(1))).unwrap_err().to_string();
    assert!(e.contains("already holds checkpoints"), "{e}");

    // B7 + B17: damaged tensor bytes of the latest model file, or of its optimizer
    // file, or a truncated latest model file: back to epoch-001 (step 6), one step on.
    for (name, damage) in [
        ("flip-model", &(|x: &Path| flip_tensor_bytes(&ckpt(x, "step-000000008"))) as &dyn Fn(&Path)),
        ("flip-optim", &|x: &Path| flip_tensor_bytes(&optim(x, "step-000000008"))),
        ("cut-model", &|x: &Path| {
            let p = ckpt(x, "step-000000008");
            let b = std::fs::read(&p).unwrap();
            std::fs::write(&p, &b[..b.len() / 2]).unwrap();
        }),
    ] {
        let x = copy_run(&base, &t.path().join(name));
        damage(&x);
        let s = resume(&x).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert_eq!(s.global_step, 7, "{name}: resumed from epoch-001");
    }
    // Every checkpoint damaged: an error listing each, no new start.
    let x = copy_run(&base, &t.path().join("all-damaged"));
    flip_tensor_bytes(&ckpt(&x, "step-000000008"));
    flip_tensor_bytes(&optim(&x, "epoch-001"));
    let e = format!("{:#}", resume(&x).unwrap_err());
    assert!(e.contains("none can be resumed") && e.contains("step-000000008.safetensors: tensor data damaged"), "{e}");
    assert!(e.contains("epoch-001.optim.safetensors: tensor data damaged"), "{e}");

    // B17: the optimizer file of another checkpoint in place of the latest one's.
    let x = copy_run(&base, &t.path().join("foreign-optim"));
    std::fs::copy(optim(&x, "epoch-001"), optim(&x, "step-000000008")).unwrap();
    let e = format!("{:#}", resume(&x).unwrap_err());
    assert!(e.contains("step-000000008.optim.safetensors: belongs to another model file"), "{e}");
    // The same without the link (an older trainer's files): caught by the positions.
    set_meta(&optim(&x, "step-000000008"), "model_tensors_sha256", "");
    let e = format!("{:#}", resume(&x).unwrap_err());
    assert!(e.contains("belongs to another model file"), "{e}");
    let b = std::fs::read(optim(&x, "step-000000008")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&b).unwrap();
    let mut meta = safetensors::SafeTensors::read_metadata(&b).unwrap().1.metadata().clone().unwrap();
    meta.remove("model_tensors_sha256");
    std::fs::write(optim(&x, "step-000000008"), safetensors::serialize(st.tensors(), Some(meta)).unwrap()).unwrap();
    let e = format!("{:#}", resume(&x).unwrap_err());
    assert!(e.contains("at epoch 1 step 6, its model file") && e.contains("another checkpoint or run"), "{e}");

    // B17: an absurd batch in the optimizer file (it skipped an epoch silently).
    let x = copy_run(&base, &t.path().join("batch"));
    set_meta(&optim(&x, "step-000000008"), "batch", "1000000");
    let e = format!("{:#}", resume(&x).unwrap_err());
    assert!(e.contains("at batch 1000000 of epoch 1, beyond the 48 train images at batch size 8"), "{e}");

    // B17: another build of the data (same classes, other images) is refused; the same
    // images with another dataset.json (its build section differs) resume.
    let mut other = preprocess::synth::SynthConfig::new(t.path().join("images2"));
    (other.classes, other.train_per_class, other.val_per_class, other.corrupt, other.seed) = (3, 16, 4, 0, 99);
    let data2 = preprocess::synth::build_raw(&other, &t.path().join("ds2")).unwrap();
    let x = copy_run(&base, &t.path().join("other-data"));
    let e = format!("{:#}", run(&cfg, &opts(&data2, x.clone(), true, Some(1))).unwrap_err());
    assert!(e.contains("trained on another build of the data than") && e.contains("data_fingerprint"), "{e}");
    let same = t.path().join("same-images");
    std::fs::create_dir_all(&same).unwrap();
    for e in std::fs::read_dir(&data).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), same.join(e.file_name())).unwrap();
    }
    let manifest = std::fs::read_to_string(same.join("dataset.json")).unwrap();
    let mut m: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    m["build"]["source"] = serde_json::Value::String("archives".into());
    std::fs::write(same.join("dataset.json"), serde_json::to_string_pretty(&m).unwrap()).unwrap();
    assert_ne!(std::fs::read_to_string(same.join("dataset.json")).unwrap(), manifest);
    let s = run(&cfg, &opts(&same, x, true, Some(1))).unwrap();
    assert_eq!(s.global_step, 9);
}

/// B17: `--resume` of a folder without config.toml (and no --config) says so.
#[test]
fn a_resume_without_config_toml_says_it_is_missing() {
    let t = tempfile::tempdir().unwrap();
    let e = trainer::config::for_run(None, &[], t.path(), true).unwrap_err().to_string();
    assert!(e.contains("config.toml is missing") && e.contains("--config"), "{e}");
    let e = trainer::config::for_run(None, &[], t.path(), false).unwrap_err().to_string();
    assert!(e.contains("give --config"), "{e}");
}
