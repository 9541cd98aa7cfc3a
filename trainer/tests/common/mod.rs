//! Set-up shared by the trainer's integration tests.
#![allow(dead_code)] // each test file uses some of these

use std::path::{Path, PathBuf};

use preprocess::synth;

/// 3 procedural classes, 48 train rows, 12 val rows, raw shards in `dir/ds`.
pub fn tiny_dataset(dir: &Path) -> PathBuf {
    let mut s = synth::SynthConfig::new(dir.join("images"));
    s.classes = 3;
    s.train_per_class = 16;
    s.val_per_class = 4;
    s.corrupt = 0;
    synth::build_raw(&s, &dir.join("ds")).unwrap()
}

/// `configs/smoke-tiny.toml`, the tests' preset, with `key=value` overrides (as
/// `train run --set`).
pub fn tiny(sets: &[&str]) -> trainer::config::TrainConfig {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    trainer::config::TrainConfig::parse(&tiny_text(), &sets).unwrap()
}

pub fn tiny_text() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/smoke-tiny.toml")).unwrap()
}
