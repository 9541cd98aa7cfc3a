//! Writes a checkpoint of seeded random weights for a dataset through the trainer's
//! own writer (`trainer::checkpoint::save_model`): the paper net with the paper's
//! initialization (section 5), or owt with PyTorch's default one; with the metadata the
//! trainer records for that dataset (its classes, the sha256 of its `dataset.json`),
//! or, with `--no-metadata`, none (as a PyTorch export). For benchmarks, whose speed
//! does not depend on the weights (`scripts/bench-eval.sh`).
//!
//! ```text
//! cargo run --release -p trainer --example make_checkpoint -- \
//!     --model paper --data data/demo/dataset --out /tmp/paper.safetensors
//! ```

use std::path::PathBuf;

use alexnet_shared::{sha256_file, Manifest, MANIFEST_FILE};
use anyhow::Result;
use clap::Parser;
use serde::de::DeserializeOwned;
use tch::{nn::VarStore, Device};
use trainer::checkpoint::{data_fingerprint, save_model, CheckpointMeta};
use trainer::data::Normalization;
use trainer::model::{AlexNet, Arch, ModelConfig};

#[derive(Parser)]
#[command(about = "Writes a seeded random AlexNet checkpoint for a dataset")]
struct Args {
    /// paper (227, the paper's initialization) or owt (224, PyTorch's default one).
    #[arg(long, value_parser = by_name::<Arch>)]
    model: Arch,
    /// Dataset folder built by `preprocess build` (its classes and manifest hash).
    #[arg(long)]
    data: PathBuf,
    /// The model file to write.
    #[arg(long)]
    out: PathBuf,
    /// Write no metadata (as a PyTorch export: eval reads the model off the shapes).
    #[arg(long)]
    no_metadata: bool,
    /// Seed of libtorch's generator for the initialization.
    #[arg(long, default_value_t = 0)]
    seed: i64,
    /// The normalization recorded in the metadata.
    #[arg(long, value_parser = by_name::<Normalization>, default_value = "mean-image")]
    normalization: Normalization,
}

/// A config enum by its serde name (the names of the config files and the metadata).
fn by_name<T: DeserializeOwned>(s: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.into())).map_err(|e| e.to_string())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let manifest = Manifest::load(&args.data)?;
    let classes = manifest.classes.len();
    let cfg = match args.model {
        Arch::Paper => ModelConfig::paper(classes),
        Arch::Owt => ModelConfig::owt(classes),
    };
    let vs = VarStore::new(Device::Cpu);
    let mut model = AlexNet::new(&vs.root(), &cfg).map_err(anyhow::Error::msg)?;
    tch::manual_seed(args.seed);
    match cfg.arch {
        Arch::Paper => model.paper_init(),
        Arch::Owt => model.torch_default_init(),
    }
    let meta = CheckpointMeta {
        model: cfg,
        normalization: args.normalization,
        epoch: 0,
        step: 0,
        manifest_sha256: sha256_file(&args.data.join(MANIFEST_FILE))?,
        wnids: manifest.wnids(),
        data_fingerprint: Some(data_fingerprint(&manifest)),
        inputs: None,
        provenance: None,
        pca_noise: true,
    };
    save_model(&args.out, &vs, (!args.no_metadata).then_some(&meta))?;
    println!("make_checkpoint: wrote {} ({} classes)", args.out.display(), classes);
    Ok(())
}
