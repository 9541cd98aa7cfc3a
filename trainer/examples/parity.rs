//! Same weights and input, same logits in PyTorch and here, for every switch
//! combination: the checkpoint naming contract, checked both ways with
//! `trainer/tests/check_parity.py` against the project's own PyTorch definitions
//! (`python/alexnet_bridge`), run by scripts/test.sh.
//!
//! usage: parity dump DIR    # models made here: DIR/CASE.safetensors (+ metadata),
//!                           # DIR/CASE.io.safetensors (input, logits),
//!                           # DIR/CASE.layers.json (describe's shapes and parameters),
//!                           # DIR/cases.json (the case names)
//!        parity check DIR   # loads DIR/CASE.torch.safetensors (made by PyTorch) and
//!                           # compares with DIR/CASE.torch_io.safetensors
//!
//! Tolerance: max |difference| <= 1e-4 * max |logit|, float32 on the CPU.

use std::path::Path;

use anyhow::Context;
use tch::{nn::VarStore, Device, Kind, Tensor};
use trainer::checkpoint::{load_model, save_model, CheckpointMeta};
use trainer::model::{AlexNet, Arch, ModelConfig};

/// Every switch combination of a small paper net, the LRN conventions, a dropout rate,
/// the full-size two- and one-tower nets and owt.
fn cases() -> Vec<(String, ModelConfig)> {
    let small = ModelConfig { width: 0.25, crop: 99, ..ModelConfig::paper(10) };
    let mut out: Vec<(String, ModelConfig)> =
        small.switch_combinations().into_iter().map(|c| (format!("small_{}", c.variant_name()), c)).collect();
    out.push(("small_lrn1_alpha5e-4".into(), ModelConfig { lrn_towers: 1, lrn_alpha: 5e-4, ..small.clone() }));
    out.push(("small_dropout0.3".into(), ModelConfig { dropout: 0.3, ..small }));
    out.push(("paper_full".into(), ModelConfig::paper(10)));
    out.push(("paper_full_1tower".into(), ModelConfig { towers: 1, lrn_towers: 1, ..ModelConfig::paper(10) }));
    out.push(("owt".into(), ModelConfig::owt(10)));
    out
}

const TOLERANCE: f64 = 1e-4;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (mode, dir) = match (args.get(1), args.get(2)) {
        (Some(m), Some(d)) => (m.as_str(), Path::new(d)),
        _ => anyhow::bail!("usage: parity dump|check DIR"),
    };
    std::fs::create_dir_all(dir)?;
    tch::set_num_threads(2);
    let mut worst = 0.0f64;
    let cases = cases();
    if mode == "dump" {
        let names: Vec<&str> = cases.iter().map(|(n, _)| n.as_str()).collect();
        std::fs::write(dir.join("cases.json"), serde_json::to_string(&names)?)?;
    }
    for (name, cfg) in &cases {
        let mut vs = VarStore::new(Device::Cpu);
        let mut model = AlexNet::new(&vs.root(), cfg).map_err(anyhow::Error::msg)?;
        match mode {
            "dump" => {
                tch::manual_seed(7);
                match cfg.arch {
                    Arch::Paper => model.paper_init(),
                    Arch::Owt => model.torch_default_init(),
                }
                // Pixel-scale inputs exercise the LRN's nonlinearity.
                let x = Tensor::randn([2, 3, cfg.crop as i64, cfg.crop as i64], (Kind::Float, Device::Cpu)) * 60.0;
                let logits = tch::no_grad(|| model.forward_t(&x, false));
                let meta = CheckpointMeta {
                    model: cfg.clone(),
                    normalization: trainer::data::Normalization::MeanImage,
                    epoch: 0,
                    step: 0,
                    manifest_sha256: String::new(),
                    wnids: (0..cfg.num_classes).map(|i| format!("n{i:08}")).collect(),
                    data_fingerprint: None,
                    inputs: None,
                    provenance: None,
                    pca_noise: true,
                };
                save_model(&dir.join(format!("{name}.safetensors")), &vs, Some(&meta))?;
                Tensor::write_safetensors(
                    &[("input", &x), ("logits", &logits)],
                    dir.join(format!("{name}.io.safetensors")),
                )?;
                let layers: Vec<serde_json::Value> = cfg
                    .layer_shapes()
                    .iter()
                    .map(|(l, shape)| serde_json::json!([l.path, shape, l.parameters()]))
                    .collect();
                let table = serde_json::json!({ "layers": layers, "parameters": cfg.parameter_count() });
                std::fs::write(dir.join(format!("{name}.layers.json")), table.to_string())?;
                println!("{name}: wrote weights, input, logits and layers");
            }
            "check" => {
                let path = dir.join(format!("{name}.torch.safetensors"));
                let meta = load_model(&path, &mut vs).with_context(|| format!("{name}: PyTorch weights here"))?;
                anyhow::ensure!(meta.is_none(), "a PyTorch export carries no trainer metadata");
                let io: std::collections::HashMap<String, Tensor> =
                    Tensor::read_safetensors(dir.join(format!("{name}.torch_io.safetensors")))?.into_iter().collect();
                let logits = tch::no_grad(|| model.forward_t(&io["input"], false));
                let want = &io["logits"];
                let scale = want.abs().max().double_value(&[]).max(1e-6);
                let d = (logits - want).abs().max().double_value(&[]);
                println!("{name}: PyTorch weights here: max |logit difference| {d:.3e} (scale {scale:.2})");
                anyhow::ensure!(d <= TOLERANCE * scale, "{name}: logits differ from PyTorch's by {d}");
                worst = worst.max(d / scale);
            }
            _ => anyhow::bail!("usage: parity dump|check DIR"),
        }
    }
    if mode == "check" {
        println!("parity: all {} models agree with PyTorch (worst relative difference {worst:.2e})", cases.len());
    }
    Ok(())
}
