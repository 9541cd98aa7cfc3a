//! Runs and checkpoints written before the experiment switches existed keep working:
//! a run with a non-default `model.dropout` whose checkpoints carry no switch keys (as
//! every checkpoint written before them) resumes, and its model loads as the paper's.

mod common;

use std::path::Path;

use tch::Device;
use trainer::checkpoint::Checkpoint;
use trainer::model::ModelConfig;
use trainer::train::{run, RunOptions};

/// The safetensors file `path` without the metadata keys `keys` (tensors unchanged).
fn drop_meta(path: &Path, keys: &[&str]) {
    let b = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&b).unwrap();
    let mut meta = safetensors::SafeTensors::read_metadata(&b).unwrap().1.metadata().clone().unwrap();
    for k in keys {
        assert!(meta.remove(*k).is_some(), "{k}");
    }
    std::fs::write(path, safetensors::serialize(st.tensors(), Some(meta)).unwrap()).unwrap();
}

#[test]
fn a_run_from_before_the_switches_resumes() {
    tch::set_num_threads(1);
    let t = tempfile::tempdir().unwrap();
    let data = common::tiny_dataset(t.path());
    let run_dir = t.path().join("run");
    let opts = |resume| RunOptions {
        data: data.clone(),
        run_dir: run_dir.clone(),
        device: Device::Cpu,
        resume,
        max_steps: None,
        init: None,
    };
    let cfg = common::tiny(&["optim.epochs=1", "model.dropout=0.3"]);
    run(&cfg, &opts(false)).unwrap();
    let path = run_dir.join("checkpoints/epoch-001.safetensors");
    drop_meta(&path, &["activation", "lrn", "pooling", "towers", "dropout"]);
    let meta = Checkpoint::open(&path).unwrap().meta().cloned().unwrap();
    assert_eq!(meta.model, ModelConfig { dropout: 0.5, ..cfg.model_config(3) });
    // The run's config.toml still says dropout 0.3 (it is compared on resume); the
    // checkpoint, silent on it, does not refuse the resume.
    let more = common::tiny(&["optim.epochs=2", "model.dropout=0.3"]);
    let s = run(&more, &opts(true)).unwrap();
    assert_eq!(s.epochs_done, 2);
}
