//! Opening any checkpoint for evaluation: the trainer's files (model, crop, width, LRN,
//! normalization and class wnids from the metadata), and files made in PyTorch under
//! the names of `reference_models.py` without metadata (torchvision's pretrained
//! AlexNet saved with safetensors), whose model is read off the tensor names and
//! shapes ([`Checkpoint::infer_config`]). The file is opened once
//! ([`trainer::checkpoint`] owns the format); classes are matched to the dataset's by
//! wnid. Opening checks the file ([`Checkpoint::open`]): a regular file, intact
//! (its `tensors_sha256`), finite weights, metadata that describes its tensors.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use tch::{nn::VarStore, Device, Kind, Tensor};
pub use trainer::checkpoint::Overrides;
use trainer::checkpoint::{Checkpoint, InputsMeta};
use trainer::data::Normalization;
use trainer::model::{AlexNet, Arch, ModelConfig};

/// A checkpoint ready to score: the model on its device, how to feed it, and how its
/// outputs map to the dataset's classes.
pub struct LoadedModel {
    pub path: PathBuf,
    pub model: AlexNet,
    pub vs: VarStore,
    pub normalization: Normalization,
    /// True for a file without the trainer's metadata (classes taken from the dataset).
    pub imported: bool,
    /// Model output index of each dataset class, when the orders differ.
    pub class_map: Option<Tensor>,
    /// Forward passes under bf16 autocast (probabilities in float32).
    pub bf16: bool,
    /// sha256 of the manifest of the data it was trained on (from the metadata).
    pub manifest_sha256: Option<String>,
    /// The content of the data it was trained on (`data_fingerprint`; None: not recorded).
    pub data_fingerprint: Option<String>,
    /// Its class names and normalization data (None: not recorded, or a PyTorch file).
    pub inputs: Option<InputsMeta>,
    /// Whether it was trained with PCA colour noise (its metadata; absent: the paper's
    /// true; None: a file without metadata).
    pub pca_noise: Option<bool>,
}

impl LoadedModel {
    pub fn config(&self) -> &ModelConfig {
        self.model.config()
    }

    /// Runs `f` under bf16 autocast when asked (convolutions and matrix products in
    /// bfloat16, as `torch.autocast(dtype=torch.bfloat16)`), else as it is.
    fn forward<T>(&self, f: impl FnOnce() -> T) -> Result<T> {
        if self.bf16 {
            trainer::ext::autocast_bf16(self.vs.device(), f).map_err(anyhow::Error::msg)
        } else {
            Ok(f())
        }
    }

    /// Softmax probabilities [N, dataset classes] (float32) of a float batch [N, 3, s, s].
    pub fn probabilities(&self, x: &Tensor) -> Result<Tensor> {
        let logits =
            self.forward(|| self.model.f_forward_t(x, false))?.map_err(|e| self.oom(e, x))?.f_to_kind(Kind::Float)?;
        let p = trainer::model::probabilities(&logits);
        Ok(match &self.class_map {
            Some(m) => p.f_index_select(1, m)?,
            None => p,
        })
    }

    /// fc7 activations (after the ReLU; section 6.1's features) [N, D], float32.
    pub fn fc7(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.forward(|| self.model.f_fc7(x, false))?.map_err(|e| self.oom(e, x))?.f_to_kind(Kind::Float)?)
    }

    fn oom(&self, e: tch::TchError, x: &Tensor) -> anyhow::Error {
        let n = x.size().first().copied().unwrap_or(0);
        trainer::device::torch_error(
            e,
            &format!("forward pass of {n} crops"),
            "lower --batch-size (ten crops per image count ten times)",
        )
    }

    /// A one-line description: `paper width 0.25 crop 99, mean-image, 10 classes`; a
    /// paper variant names its switches (`paper (tanh-nolrn) width 0.25 ...`), a model
    /// trained without PCA colour noise says so (`nopca`).
    pub fn describe(&self) -> String {
        let c = self.config();
        let mut variant = c.variant_name();
        if self.pca_noise == Some(false) {
            variant = if variant == c.arch.name() { "nopca".into() } else { format!("{variant}-nopca") };
        }
        let mut s = match c.arch {
            Arch::Paper if variant != "paper" => format!("paper ({variant}) width {} crop {}", c.width, c.crop),
            Arch::Paper => format!("paper width {} crop {}", c.width, c.crop),
            Arch::Owt if variant != "owt" => format!("owt ({variant}) crop {}", c.crop),
            Arch::Owt => format!("owt crop {}", c.crop),
        };
        s += &format!(", {} normalization, {} classes", self.normalization.name(), c.num_classes);
        if self.imported {
            s += " (imported: no metadata)";
        }
        s
    }
}

/// Opens `path` for a dataset whose classes are `wnids` (in index order).
pub fn open(path: &Path, ov: &Overrides, wnids: &[String], device: Device, bf16: bool) -> Result<LoadedModel> {
    let shown = path.display();
    let ckpt = Checkpoint::open(path)?;
    let meta = ckpt.meta();
    let (cfg, normalization, class_map, imported) = match meta {
        Some(m) => {
            if let Some(a) = ov.arch {
                if a != m.model.arch {
                    bail!(
                        "{shown}: holds the {} model (its metadata), not {} (--model)",
                        m.model.arch.name(),
                        a.name()
                    );
                }
            }
            let mut cfg = m.model.clone();
            if let Some(c) = ov.crop {
                cfg.crop = c;
            }
            let norm = ov.normalization.unwrap_or(m.normalization);
            if m.wnids.len() != m.model.num_classes {
                bail!("{shown}: metadata lists {} wnids for {} classes", m.wnids.len(), m.model.num_classes);
            }
            let map = class_map(&m.wnids, wnids).map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
            (cfg, norm, map, false)
        }
        None => {
            let cfg = ckpt.infer_config(ov)?;
            if cfg.num_classes != wnids.len() {
                bail!(
                    "{shown}: has {} outputs, the dataset {} classes (a checkpoint without metadata is taken to have \
                     the dataset's classes in index order)",
                    cfg.num_classes,
                    wnids.len()
                );
            }
            let norm = ov.normalization.unwrap_or(match cfg.arch {
                Arch::Owt => Normalization::Torchvision,
                Arch::Paper => Normalization::MeanImage,
            });
            (cfg, norm, None, true)
        }
    };
    cfg.validate().map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
    let mut vs = VarStore::new(device);
    let model = AlexNet::new(&vs.root(), &cfg).map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
    ckpt.load_into(&mut vs)?;
    vs.freeze();
    let class_map = class_map.map(|m| Tensor::from_slice(&m).to_device(device));
    let manifest_sha256 = meta.map(|m| m.manifest_sha256.clone()).filter(|h| !h.is_empty());
    let data_fingerprint = meta.and_then(|m| m.data_fingerprint.clone());
    let inputs = meta.and_then(|m| m.inputs.clone());
    let pca_noise = meta.map(|m| m.pca_noise);
    Ok(LoadedModel {
        path: path.to_path_buf(),
        model,
        vs,
        normalization,
        imported,
        class_map,
        bf16,
        manifest_sha256,
        data_fingerprint,
        inputs,
        pca_noise,
    })
}

/// For each dataset class (by wnid), its index among the checkpoint's outputs; `None`
/// when the orders agree. Classes that are not the same set are an error naming one.
pub fn class_map(ckpt: &[String], dataset: &[String]) -> Result<Option<Vec<i64>>, String> {
    if ckpt == dataset {
        return Ok(None);
    }
    let index: HashMap<&str, usize> = ckpt.iter().enumerate().map(|(i, w)| (w.as_str(), i)).collect();
    let missing: Vec<&String> = dataset.iter().filter(|w| !index.contains_key(w.as_str())).collect();
    let dset: std::collections::HashSet<&str> = dataset.iter().map(String::as_str).collect();
    let extra: Vec<&String> = ckpt.iter().filter(|w| !dset.contains(w.as_str())).collect();
    if !missing.is_empty() || !extra.is_empty() || index.len() != ckpt.len() {
        let mut parts = Vec::new();
        if let Some(w) = missing.first() {
            parts.push(format!("the dataset's class {w} is not among its classes ({} such)", missing.len()));
        }
        if let Some(w) = extra.first() {
            parts.push(format!("its class {w} is not in the dataset ({} such)", extra.len()));
        }
        if parts.is_empty() {
            parts.push("its wnids repeat".into());
        }
        return Err(format!(
            "made for other classes ({} classes, the dataset {}): {}",
            ckpt.len(),
            dataset.len(),
            parts.join("; ")
        ));
    }
    Ok(Some(dataset.iter().map(|w| index[w.as_str()] as i64).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn classes_are_matched_by_wnid() {
        assert_eq!(class_map(&w(&["a", "b"]), &w(&["a", "b"])).unwrap(), None);
        assert_eq!(class_map(&w(&["b", "c", "a"]), &w(&["a", "b", "c"])).unwrap(), Some(vec![2, 0, 1]));
        let e = class_map(&w(&["a", "x"]), &w(&["a", "b"])).unwrap_err();
        assert!(e.contains("class b is not among") && e.contains("class x is not in the dataset"), "{e}");
        let e = class_map(&w(&["a", "b", "c"]), &w(&["a", "b"])).unwrap_err();
        assert!(e.contains("3 classes, the dataset 2") && e.contains("class c"), "{e}");
    }
}
