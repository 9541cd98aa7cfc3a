//! The model of a file without metadata (a PyTorch export under the names of
//! `reference_models.py`, e.g. torchvision's pretrained AlexNet saved with
//! safetensors), read off its tensor names and shapes; and what a command line may
//! impose on a checkpoint ([`Overrides`]).

use std::collections::HashMap;

use super::{bad, Checkpoint, CheckpointError};
use crate::data::Normalization;
use crate::model::{Arch, ModelConfig};

/// What the command line may impose on a checkpoint (needed for files without metadata
/// whose crop cannot be read off the shapes; otherwise for experiments).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// The model the file must hold (an error when it holds the other one).
    pub arch: Option<Arch>,
    /// Input side (the paper model's classifier fixes it up to a range; owt takes any).
    pub crop: Option<usize>,
    pub normalization: Option<Normalization>,
}

impl Checkpoint {
    /// The model of this file from its tensor names and shapes (whatever its metadata
    /// says): owt has `features.3` and `classifier.1` (torchvision's indices), the paper
    /// model `features.4` and `classifier.0`. The paper model's width comes from fc7's
    /// size, its towers from conv2's input maps (the one-GPU net's conv2 sees all of
    /// conv1's), its crop is 227 when the classifier allows it (else `ov.crop`); the
    /// switches the names cannot tell (activation, LRN, pooling) are the paper's.
    pub fn infer_config(&self, ov: &Overrides) -> Result<ModelConfig, CheckpointError> {
        let path = self.path();
        let shapes = self.shapes();
        let shape = |name: &str| shapes.get(name).cloned();
        let arch = arch_of(&shapes).ok_or_else(|| {
            let mut names: Vec<&String> = shapes.keys().collect();
            names.sort();
            names.truncate(4);
            bad(
                path,
                format!(
                    "neither AlexNet: no metadata, and the tensor names ({names:?}...) are not those of \
                     reference_models.py (features.N.weight, classifier.N.weight)"
                ),
            )
        })?;
        if let Some(a) = ov.arch.filter(|&a| a != arch) {
            return Err(bad(
                path,
                format!("holds the {} model's tensors, not the {} model's (--model)", arch.name(), a.name()),
            ));
        }
        // Every weight used below must be a matrix or a conv kernel (a hand-made file may
        // hold anything under these names).
        for (name, dims) in [
            ("classifier.0.weight", 2),
            ("classifier.3.weight", 2),
            ("classifier.6.weight", 2),
            ("features.12.weight", 4),
        ] {
            if let Some(s) = shape(name).filter(|s| s.len() != dims) {
                return Err(bad(path, format!("{name} has shape {s:?}, expected {dims} dimensions")));
            }
        }
        let need = |name: &str| shape(name).ok_or_else(|| bad(path, format!("no {name}")));
        let num_classes = need("classifier.6.weight")?[0];
        if arch == Arch::Owt {
            return Ok(ModelConfig { crop: ov.crop.unwrap_or(224), ..ModelConfig::owt(num_classes) });
        }
        let fc7 = need("classifier.3.weight")?;
        let fc6 = shape("classifier.0.weight").unwrap_or_default();
        let conv5 = need("features.12.weight")?;
        let width = fc7[0] as f64 / 4096.0;
        // conv2 sees all of conv1's maps in the one-GPU net (section 3.2), half in two towers.
        let one_tower = matches!(
            (shape("features.0.weight").as_deref(), shape("features.4.weight").as_deref()),
            (Some([c1, ..]), Some([_, cin, ..])) if c1 == cin
        );
        let towers = if one_tower { 1 } else { 2 };
        let base = ModelConfig { width, towers, lrn_towers: towers, ..ModelConfig::paper(num_classes) };
        if let Some(c) = ov.crop {
            return Ok(ModelConfig { crop: c, ..base });
        }
        // classifier.0 takes conv5 maps x side x side: find the crops that give that side.
        let (maps, fc_in) = (conv5[0], fc6.get(1).copied().unwrap_or(0));
        let fits: Vec<usize> = (67..=256)
            .filter(|&crop| maps * ModelConfig { crop, ..base.clone() }.feature_side().pow(2) == fc_in)
            .collect();
        match fits.as_slice() {
            [] => {
                Err(bad(path, format!("classifier.0 takes {fc_in} inputs, which no crop gives with {maps} conv5 maps")))
            }
            f if f.contains(&227) => Ok(ModelConfig { crop: 227, ..base }),
            f => Err(bad(
                path,
                format!("no metadata, and its classifier fits crops {}..={}: give --crop", f[0], f[f.len() - 1]),
            )),
        }
    }
}

/// Which AlexNet the tensor names are of.
fn arch_of(shapes: &HashMap<String, Vec<usize>>) -> Option<Arch> {
    let has = |name: &str| shapes.contains_key(name);
    if has("features.3.weight") && has("classifier.1.weight") {
        Some(Arch::Owt)
    } else if has("features.4.weight") && has("classifier.0.weight") {
        Some(Arch::Paper)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::save_model;
    use crate::model::AlexNet;
    use tch::{nn::VarStore, Device};

    fn bare(dir: &std::path::Path, name: &str, cfg: &ModelConfig) -> Checkpoint {
        let vs = VarStore::new(Device::Cpu);
        let _m = AlexNet::new(&vs.root(), cfg).unwrap();
        let path = dir.join(name);
        save_model(&path, &vs, None).unwrap();
        Checkpoint::open(&path).unwrap()
    }

    #[test]
    fn the_model_is_read_off_names_and_shapes() {
        let dir = tempfile::tempdir().unwrap();
        let paper = ModelConfig { width: 0.25, ..ModelConfig::paper(7) };
        let c = bare(dir.path(), "p.safetensors", &paper);
        assert_eq!(c.infer_config(&Overrides::default()).unwrap(), paper);
        let one = ModelConfig { towers: 1, lrn_towers: 1, ..paper.clone() };
        let c1 = bare(dir.path(), "p1.safetensors", &one);
        assert_eq!(c1.infer_config(&Overrides::default()).unwrap(), one);
        let e = c.infer_config(&Overrides { arch: Some(Arch::Owt), ..Default::default() }).unwrap_err().to_string();
        assert!(e.contains("p.safetensors: holds the paper model's tensors, not the owt model's"), "{e}");
        let owt = bare(dir.path(), "o.safetensors", &ModelConfig::owt(3));
        assert_eq!(owt.infer_config(&Overrides::default()).unwrap(), ModelConfig::owt(3));
        let ov = Overrides { crop: Some(160), ..Default::default() };
        assert_eq!(owt.infer_config(&ov).unwrap(), ModelConfig { crop: 160, ..ModelConfig::owt(3) });
        // Crop 99 gives a 2x2 pool5, as crops 99..=130 do: --crop is needed.
        let small = bare(dir.path(), "s.safetensors", &ModelConfig { width: 0.25, crop: 99, ..ModelConfig::paper(2) });
        let e = small.infer_config(&Overrides::default()).unwrap_err().to_string();
        assert!(e.contains("fits crops 99..=") && e.contains("give --crop"), "{e}");
    }
}
