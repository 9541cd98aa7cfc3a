//! The model file's metadata ([`CheckpointMeta`]) and its string map, the safetensors
//! `__metadata__` (string values only). Enums are written and read under their serde
//! names (`paper`, `owt`; `mean-image`, `mean-rgb`, `torchvision`), the names of the
//! config files; numbers in Rust's shortest form (`0.25`, `1`, `0.0001`). Keys not listed
//! here are ignored, so files carrying newer optional keys still load.
//!
//! Optional keys (a file without one loads as before): `data_fingerprint`
//! ([`data_fingerprint`]), `provenance` (a JSON object: [`Provenance`], the start of
//! the run that wrote the file), `tensors_sha256` (added by the writer, see `file.rs`),
//! the inputs a checkpoint needs to classify images ([`InputsMeta`]), and the model's
//! experiment switches `activation` (`relu` | `tanh`), `lrn` (`true` | `false`),
//! `pooling` (`overlapping` | `non-overlapping`), `towers` (`2` | `1`) and `dropout`,
//! whose absence means the architecture's own (the paper's for `paper`, torchvision's
//! for `owt`), as every file written before them holds; and the training transform's
//! switch `pca_noise` (`true` | `false`; absent: `true`, the paper's).
//! Numbers must be finite, counts whole and non-negative: `lrn_alpha = NaN` or
//! `num_classes = 1e30` are errors naming the key.

use std::collections::HashMap;
use std::path::Path;

use serde::de::value::{Error as ValueError, StrDeserializer};
use serde::{de::DeserializeOwned, Serialize};

use super::{bad, CheckpointError, FORMAT};
use crate::data::Normalization;
use crate::model::ModelConfig;
use crate::provenance::Provenance;

/// The metadata of a checkpoint written by the trainer.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointMeta {
    pub model: ModelConfig,
    /// How its inputs were normalized in training.
    pub normalization: Normalization,
    /// Epochs finished.
    pub epoch: u64,
    /// Global step (SGD steps taken).
    pub step: u64,
    /// sha256 of the `dataset.json` of the data it was trained on (may be empty).
    pub manifest_sha256: String,
    /// The class wnids, in output order.
    pub wnids: Vec<String>,
    /// [`data_fingerprint`] of the data it was trained on (None: written before the key).
    pub data_fingerprint: Option<String>,
    /// Where the run that wrote it came from (None: written before the key, or not by
    /// the trainer).
    pub provenance: Option<Provenance>,
    /// What classifying an image needs besides the weights (None: written before the
    /// keys, or made in PyTorch; then the dataset supplies it).
    pub inputs: Option<InputsMeta>,
    /// Whether training added the paper's PCA colour noise (section 4.1; key
    /// `pca_noise`, `true` | `false`; a file without it was trained with it, the
    /// paper's and the only behaviour before the switch).
    pub pca_noise: bool,
}

/// The class names and the normalization data a checkpoint carries, so that
/// `eval predict` needs no dataset: keys `class_names` (JSON list, output order),
/// `mean_rgb` (JSON [r, g, b], 0..255), and with `normalization = mean-image`
/// `mean_image` (the 256x256x3 HWC float32 mean image, little-endian, base64) and
/// `mean_image_sha256` (of those bytes, checked on reading). About 1 MB of header with
/// the mean image; PyTorch's `load_file` ignores metadata, so `strict=True` loads stay
/// as they were.
#[derive(Debug, Clone, PartialEq)]
pub struct InputsMeta {
    pub class_names: Vec<String>,
    pub mean_rgb: [f64; 3],
    /// 256x256x3 HWC, 0..255 (only for `mean-image` normalization).
    pub mean_image: Option<std::sync::Arc<Vec<f32>>>,
    /// The train crops it was trained with (key `train_crop`; absent: the paper's):
    /// eval's default crops follow it.
    pub train_crop: crate::config::TrainCrop,
}

impl InputsMeta {
    /// From a dataset: its class names, mean RGB and (when the model is normalized by
    /// it) mean image.
    pub fn of(manifest: &alexnet_shared::Manifest, mean_image: Option<&[f32]>) -> Self {
        Self {
            class_names: manifest.classes.iter().map(|c| c.name.clone()).collect(),
            mean_rgb: manifest.stats.mean_rgb,
            mean_image: mean_image.map(|m| std::sync::Arc::new(m.to_vec())),
            // The loader trains each layout with its own crops (it refuses the others).
            train_crop: if manifest.layout.is_whole() {
                crate::config::TrainCrop::RandomResizedCrop
            } else {
                crate::config::TrainCrop::Paper
            },
        }
    }

    fn write(&self, map: &mut HashMap<String, String>) -> Result<(), serde_json::Error> {
        use base64::Engine;
        map.insert("class_names".into(), serde_json::to_string(&self.class_names)?);
        map.insert("mean_rgb".into(), serde_json::to_string(&self.mean_rgb)?);
        map.insert("train_crop".into(), self.train_crop.name().into());
        if let Some(m) = &self.mean_image {
            let bytes: Vec<u8> = m.iter().flat_map(|v| v.to_le_bytes()).collect();
            map.insert("mean_image_sha256".into(), sha256_hex(&bytes));
            map.insert("mean_image".into(), base64::engine::general_purpose::STANDARD.encode(&bytes));
        }
        Ok(())
    }

    /// The keys of `m`, if it has `class_names`; every value checked.
    fn read(path: &Path, m: &HashMap<String, String>, classes: usize) -> Result<Option<Self>, CheckpointError> {
        use base64::Engine;
        let Some(names) = m.get("class_names") else { return Ok(None) };
        let class_names: Vec<String> =
            serde_json::from_str(names).map_err(|e| bad(path, format!("metadata class_names: {e}")))?;
        if class_names.len() != classes {
            return Err(bad(path, format!("metadata lists {} class names for {classes} classes", class_names.len())));
        }
        let rgb = m.get("mean_rgb").ok_or_else(|| bad(path, "metadata has class_names but no \"mean_rgb\""))?;
        let mean_rgb: [f64; 3] = serde_json::from_str(rgb).map_err(|e| bad(path, format!("metadata mean_rgb: {e}")))?;
        if mean_rgb.iter().any(|v| !(0.0..=255.0).contains(v)) {
            return Err(bad(path, format!("metadata mean_rgb {mean_rgb:?} is outside 0..255")));
        }
        let mean_image = match m.get("mean_image") {
            None => None,
            Some(text) => {
                let want = alexnet_shared::IMAGE_BYTES * 4;
                // The decoded size is known from the text's length: refused before decoding.
                if text.len() != want.div_ceil(3) * 4 {
                    return Err(bad(path, format!("metadata mean_image is not {want} bytes of float32 in base64")));
                }
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|e| bad(path, format!("metadata mean_image: {e}")))?;
                if m.get("mean_image_sha256").map(String::as_str) != Some(sha256_hex(&bytes).as_str()) {
                    return Err(bad(path, "metadata mean_image does not hash to its mean_image_sha256 (damaged)"));
                }
                let v: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
                if v.iter().any(|x| !(0.0..=255.0).contains(x)) {
                    return Err(bad(path, "metadata mean_image holds values outside 0..255"));
                }
                Some(std::sync::Arc::new(v))
            }
        };
        let train_crop = match m.get("train_crop") {
            None => crate::config::TrainCrop::Paper,
            Some(v) => crate::config::TrainCrop::from_name(v)
                .ok_or_else(|| bad(path, format!("unknown train_crop {v:?} in the metadata")))?,
        };
        Ok(Some(Self { class_names, mean_rgb, mean_image, train_crop }))
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// The content of a dataset build, as a sha256 in hex: its classes (wnids, in index
/// order) and, per split, each shard's row count and sha256 from the manifest. Two
/// builds of the same images (from folders or from the archives) give the same
/// fingerprint although their `dataset.json` differ (build parameters, sources).
pub fn data_fingerprint(manifest: &alexnet_shared::Manifest) -> String {
    use sha2::{Digest, Sha256};
    let splits: std::collections::BTreeMap<&String, Vec<(u64, &String)>> = manifest
        .splits
        .iter()
        .map(|(name, s)| (name, s.shards.iter().map(|sh| (sh.rows, &sh.sha256)).collect()))
        .collect();
    let canonical = serde_json::json!({ "wnids": manifest.wnids(), "splits": splits });
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

impl CheckpointMeta {
    /// The metadata as written in the file.
    pub fn to_map(&self) -> Result<HashMap<String, String>, serde_json::Error> {
        let m = &self.model;
        let mut map = HashMap::from([
            ("format".into(), FORMAT.into()),
            ("model".into(), serde_name(&m.arch)?),
            ("num_classes".into(), m.num_classes.to_string()),
            ("crop".into(), m.crop.to_string()),
            ("width".into(), m.width.to_string()),
            ("lrn_alpha".into(), m.lrn_alpha.to_string()),
            ("lrn_towers".into(), m.lrn_towers.to_string()),
            ("activation".into(), serde_name(&m.activation)?),
            ("lrn".into(), m.lrn.to_string()),
            ("pooling".into(), serde_name(&m.pooling)?),
            ("towers".into(), m.towers.to_string()),
            ("dropout".into(), m.dropout.to_string()),
            ("pca_noise".into(), self.pca_noise.to_string()),
            ("normalization".into(), serde_name(&self.normalization)?),
            ("epoch".into(), self.epoch.to_string()),
            ("step".into(), self.step.to_string()),
            ("manifest_sha256".into(), self.manifest_sha256.clone()),
            ("wnids".into(), serde_json::to_string(&self.wnids)?),
        ]);
        if let Some(f) = &self.data_fingerprint {
            map.insert("data_fingerprint".into(), f.clone());
        }
        if let Some(i) = &self.inputs {
            i.write(&mut map)?;
        }
        if let Some(p) = &self.provenance {
            map.insert("provenance".into(), serde_json::to_string(p)?);
        }
        Ok(map)
    }

    /// Reads the metadata of the file `path` (which must be `format` [`FORMAT`]).
    pub fn from_map(path: &Path, m: &HashMap<String, String>) -> Result<Self, CheckpointError> {
        let get = |k: &str| m.get(k).ok_or_else(|| bad(path, format!("metadata has no {k:?}")));
        let num = |k: &str| -> Result<f64, CheckpointError> {
            let v = get(k)?;
            let x = v.parse::<f64>().map_err(|_| bad(path, format!("metadata {k:?} is not a number")))?;
            if !x.is_finite() {
                return Err(bad(path, format!("metadata {k:?} is {v}, not a finite number")));
            }
            Ok(x)
        };
        // A count: a whole number, written as one ("227"; "227.0" from a hand-made file).
        let count = |k: &str| -> Result<u64, CheckpointError> {
            let v = get(k)?;
            if let Ok(n) = v.parse::<u64>() {
                return Ok(n);
            }
            match num(k)? {
                x if x >= 0.0 && x.fract() == 0.0 && x < 2f64.powi(53) => Ok(x as u64),
                _ => Err(bad(path, format!("metadata {k:?} is {v}, not a whole number"))),
            }
        };
        if get("format")? != FORMAT {
            return Err(bad(path, format!("format {:?}, expected {FORMAT:?}", get("format")?)));
        }
        let model = get("model")?;
        let arch = by_serde_name(model).ok_or_else(|| bad(path, format!("unknown model {model:?}")))?;
        // The switches: optional, the architecture's own when absent.
        let num_classes = count("num_classes")? as usize;
        let d = ModelConfig::of(arch, num_classes);
        fn named<'a>(m: &'a HashMap<String, String>, k: &'a str) -> Option<(&'a str, &'a str)> {
            m.get(k).map(|v| (k, v.as_str()))
        }
        let bad_name = |k: &str, v: &str| bad(path, format!("unknown {k} {v:?} in the metadata"));
        let activation = match named(m, "activation") {
            Some((k, v)) => by_serde_name(v).ok_or_else(|| bad_name(k, v))?,
            None => d.activation,
        };
        let pooling = match named(m, "pooling") {
            Some((k, v)) => by_serde_name(v).ok_or_else(|| bad_name(k, v))?,
            None => d.pooling,
        };
        let lrn = match named(m, "lrn") {
            Some((_, "true")) => true,
            Some((_, "false")) => false,
            Some((_, v)) => return Err(bad(path, format!("metadata \"lrn\" is {v}, not true or false"))),
            None => d.lrn,
        };
        let pca_noise = match named(m, "pca_noise") {
            Some((_, "true")) | None => true,
            Some((_, "false")) => false,
            Some((_, v)) => return Err(bad(path, format!("metadata \"pca_noise\" is {v}, not true or false"))),
        };
        let model = ModelConfig {
            arch,
            num_classes,
            crop: count("crop")? as usize,
            width: num("width")?,
            lrn_alpha: num("lrn_alpha")?,
            lrn_towers: count("lrn_towers")? as usize,
            activation,
            lrn,
            pooling,
            towers: if m.contains_key("towers") { count("towers")? as usize } else { d.towers },
            dropout: if m.contains_key("dropout") { num("dropout")? } else { d.dropout },
        };
        let norm = get("normalization")?;
        let normalization =
            by_serde_name(norm).ok_or_else(|| bad(path, format!("unknown normalization {norm:?} in the metadata")))?;
        let wnids: Vec<String> =
            serde_json::from_str(get("wnids")?).map_err(|e| bad(path, format!("metadata wnids: {e}")))?;
        let inputs = InputsMeta::read(path, m, model.num_classes)?;
        Ok(Self {
            model,
            normalization,
            epoch: count("epoch")?,
            step: count("step")?,
            manifest_sha256: get("manifest_sha256")?.clone(),
            wnids,
            data_fingerprint: m.get("data_fingerprint").cloned(),
            inputs,
            pca_noise,
            provenance: m
                .get("provenance")
                .map(|p| serde_json::from_str(p))
                .transpose()
                .map_err(|e| bad(path, format!("metadata provenance: {e}")))?,
        })
    }
}

/// The serde name of a unit enum variant (`Arch::Paper` -> `paper`).
fn serde_name<T: Serialize>(v: &T) -> Result<String, serde_json::Error> {
    match serde_json::to_value(v)? {
        serde_json::Value::String(s) => Ok(s),
        other => Err(serde::ser::Error::custom(format!("{other} is not a name"))),
    }
}

/// The unit enum variant of a serde name, if any.
fn by_serde_name<T: DeserializeOwned>(s: &str) -> Option<T> {
    T::deserialize(StrDeserializer::<ValueError>::new(s)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Arch;

    fn meta() -> CheckpointMeta {
        CheckpointMeta {
            model: ModelConfig { width: 0.25, crop: 99, ..ModelConfig::paper(2) },
            normalization: Normalization::MeanImage,
            epoch: 3,
            step: 120,
            manifest_sha256: "ab".repeat(32),
            wnids: vec!["n01".into(), "n02".into()],
            data_fingerprint: None,
            inputs: None,
            provenance: None,
            pca_noise: true,
        }
    }

    #[test]
    fn the_map_is_the_files_contract_byte_for_byte() {
        let p = Path::new("m.safetensors");
        let m = meta().to_map().unwrap();
        let want: HashMap<String, String> = [
            ("format", "alexnet-checkpoint-v1"),
            ("model", "paper"),
            ("num_classes", "2"),
            ("crop", "99"),
            ("width", "0.25"),
            ("lrn_alpha", "0.0001"),
            ("lrn_towers", "2"),
            ("activation", "relu"),
            ("lrn", "true"),
            ("pooling", "overlapping"),
            ("towers", "2"),
            ("dropout", "0.5"),
            ("pca_noise", "true"),
            ("normalization", "mean-image"),
            ("epoch", "3"),
            ("step", "120"),
            ("manifest_sha256", &"ab".repeat(32)),
            ("wnids", r#"["n01","n02"]"#),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(m, want);
        assert_eq!(CheckpointMeta::from_map(p, &m).unwrap(), meta());
    }

    /// The inputs `eval predict` needs round-trip; a damaged mean image is named.
    #[test]
    fn class_names_and_the_mean_image_round_trip_and_are_checked() {
        let p = Path::new("m.safetensors");
        let mean: Vec<f32> = (0..alexnet_shared::IMAGE_BYTES).map(|i| (i % 251) as f32 + 0.25).collect();
        let inputs = InputsMeta {
            class_names: vec!["tench".into(), "goldfish, Carassius auratus".into()],
            mean_rgb: [120.5, 115.0, 104.25],
            mean_image: Some(std::sync::Arc::new(mean)),
            train_crop: crate::config::TrainCrop::Paper,
        };
        let with = CheckpointMeta { inputs: Some(inputs.clone()), ..meta() };
        let m = with.to_map().unwrap();
        assert_eq!(CheckpointMeta::from_map(p, &m).unwrap(), with);
        // Mean RGB only (other normalizations): no mean image keys.
        let rgb = CheckpointMeta { inputs: Some(InputsMeta { mean_image: None, ..inputs.clone() }), ..meta() };
        let m2 = rgb.to_map().unwrap();
        assert!(!m2.contains_key("mean_image") && !m2.contains_key("mean_image_sha256"));
        assert_eq!(CheckpointMeta::from_map(p, &m2).unwrap(), rgb);
        // A whole-image model records torchvision's crops; without the key, the paper's.
        let tv =
            InputsMeta { mean_image: None, train_crop: crate::config::TrainCrop::RandomResizedCrop, ..inputs.clone() };
        let m3 = CheckpointMeta { inputs: Some(tv.clone()), ..meta() }.to_map().unwrap();
        assert_eq!(m3["train_crop"], "random-resized-crop");
        assert_eq!(CheckpointMeta::from_map(p, &m3).unwrap().inputs, Some(tv));
        let mut old = m2.clone();
        old.remove("train_crop");
        assert_eq!(
            CheckpointMeta::from_map(p, &old).unwrap().inputs.unwrap().train_crop,
            crate::config::TrainCrop::Paper
        );
        let mut odd = m2.clone();
        odd.insert("train_crop".into(), "five-crop".into());
        assert!(CheckpointMeta::from_map(p, &odd)
            .unwrap_err()
            .to_string()
            .contains("unknown train_crop \"five-crop\""));
        for (k, v, want) in [
            ("class_names", r#"["one"]"#.to_string(), "metadata lists 1 class names for 2 classes"),
            ("mean_rgb", "[300, 0, 0]".to_string(), "metadata mean_rgb [300.0, 0.0, 0.0] is outside 0..255"),
            ("mean_image", "AAAA".to_string(), "metadata mean_image is not 786432 bytes of float32 in base64"),
            ("mean_image_sha256", "00".repeat(32), "does not hash to its mean_image_sha256 (damaged)"),
        ] {
            let mut bad = m.clone();
            bad.insert(k.into(), v);
            let e = CheckpointMeta::from_map(p, &bad).unwrap_err().to_string();
            assert!(e.starts_with("m.safetensors: ") && e.contains(want), "{k}: {e}");
        }
        // A flipped character inside the mean image is caught by its hash.
        let mut bad = m.clone();
        let text = bad.get_mut("mean_image").unwrap();
        let flipped = if text.as_bytes()[1000] == b'A' { "B" } else { "A" };
        text.replace_range(1000..1001, flipped);
        let e = CheckpointMeta::from_map(p, &bad).unwrap_err().to_string();
        assert!(e.contains("damaged"), "{e}");
    }

    #[test]
    fn enum_names_are_the_serde_names_and_unknown_keys_are_ignored() {
        for a in [Arch::Paper, Arch::Owt] {
            assert_eq!(serde_name(&a).unwrap(), a.name());
            assert_eq!(by_serde_name::<Arch>(a.name()), Some(a));
        }
        for n in [Normalization::MeanImage, Normalization::MeanRgb, Normalization::Torchvision] {
            assert_eq!(serde_name(&n).unwrap(), n.name());
            assert_eq!(by_serde_name::<Normalization>(n.name()), Some(n));
        }
        let p = Path::new("m.safetensors");
        let mut m = meta().to_map().unwrap();
        m.insert("trained_by".into(), "a later trainer".into());
        assert_eq!(CheckpointMeta::from_map(p, &m).unwrap(), meta());
        m.insert("normalization".into(), "zca".into());
        let e = CheckpointMeta::from_map(p, &m).unwrap_err().to_string();
        assert_eq!(e, r#"m.safetensors: unknown normalization "zca" in the metadata"#);
        m.insert("normalization".into(), "mean-rgb".into());
        m.insert("model".into(), "vgg".into());
        let e = CheckpointMeta::from_map(p, &m).unwrap_err().to_string();
        assert_eq!(e, r#"m.safetensors: unknown model "vgg""#);
        m.insert("model".into(), "owt".into());
        m.remove("epoch");
        let e = CheckpointMeta::from_map(p, &m).unwrap_err().to_string();
        assert_eq!(e, r#"m.safetensors: metadata has no "epoch""#);
    }

    /// B4: NaN or infinite numbers, and counts that are not whole, are refused by name
    /// (they parsed before: `lrn_alpha = NaN` scored NaN probabilities).
    #[test]
    fn non_finite_numbers_and_absurd_counts_are_refused() {
        let p = Path::new("m.safetensors");
        for (k, v, want) in [
            ("lrn_alpha", "NaN", r#"metadata "lrn_alpha" is NaN, not a finite number"#),
            ("width", "inf", r#"metadata "width" is inf, not a finite number"#),
            ("num_classes", "1e30", r#"metadata "num_classes" is 1e30, not a whole number"#),
            ("crop", "-5", r#"metadata "crop" is -5, not a whole number"#),
            ("epoch", "2.5", r#"metadata "epoch" is 2.5, not a whole number"#),
        ] {
            let mut m = meta().to_map().unwrap();
            m.insert(k.into(), v.into());
            let e = CheckpointMeta::from_map(p, &m).unwrap_err().to_string();
            assert_eq!(e, format!("m.safetensors: {want}"));
        }
        let mut m = meta().to_map().unwrap();
        m.insert("crop".into(), "99.0".into()); // a hand-made file
        assert_eq!(CheckpointMeta::from_map(p, &m).unwrap(), meta());
        // The fingerprint round-trips; without it the file loads as before.
        let with = CheckpointMeta { data_fingerprint: Some("cd".repeat(32)), ..meta() };
        let m = with.to_map().unwrap();
        assert_eq!(m["data_fingerprint"], "cd".repeat(32));
        assert_eq!(CheckpointMeta::from_map(p, &m).unwrap(), with);
    }

    #[test]
    fn provenance_round_trips_and_a_record_of_another_trainer_reads() {
        let p = Path::new("m.safetensors");
        let with = CheckpointMeta { provenance: Some(Provenance::now("train", 4, "ab", true, Some(7))), ..meta() };
        let mut m = with.to_map().unwrap();
        assert!(m["provenance"].contains("\"world_size\":4"));
        assert_eq!(CheckpointMeta::from_map(p, &m).unwrap(), with);
        m.insert("provenance".into(), r#"{"git_commit": "abc", "gpu": "H200"}"#.into());
        let got = CheckpointMeta::from_map(p, &m).unwrap().provenance.unwrap();
        assert_eq!((got.git_commit.as_str(), got.world_size), ("abc", 0));
        m.insert("provenance".into(), "not json".into());
        let e = CheckpointMeta::from_map(p, &m).unwrap_err().to_string();
        assert!(e.starts_with("m.safetensors: metadata provenance: "), "{e}");
    }

    /// Files written before the switches existed load as the paper's (or torchvision's)
    /// model; every variant round-trips; a bad switch value is an error naming it.
    #[test]
    fn the_switches_are_optional_keys_that_round_trip() {
        use crate::model::{Activation, Pooling};
        let p = Path::new("m.safetensors");
        let mut old = meta().to_map().unwrap();
        for k in ["activation", "lrn", "pooling", "towers", "dropout", "pca_noise"] {
            old.remove(k);
        }
        assert_eq!(CheckpointMeta::from_map(p, &old).unwrap(), meta());
        let off = CheckpointMeta { pca_noise: false, ..meta() };
        let map = off.to_map().unwrap();
        assert_eq!(map["pca_noise"], "false");
        assert_eq!(CheckpointMeta::from_map(p, &map).unwrap(), off);
        let owt = CheckpointMeta { model: ModelConfig::owt(2), ..meta() };
        let mut old_owt = owt.to_map().unwrap();
        for k in ["activation", "lrn", "pooling", "towers", "dropout"] {
            old_owt.remove(k);
        }
        assert_eq!(CheckpointMeta::from_map(p, &old_owt).unwrap(), owt);
        for model in meta().model.switch_combinations() {
            let m = CheckpointMeta { model: ModelConfig { dropout: 0.3, ..model }, ..meta() };
            assert_eq!(CheckpointMeta::from_map(p, &m.to_map().unwrap()).unwrap(), m);
        }
        let tanh = CheckpointMeta {
            model: ModelConfig { activation: Activation::Tanh, pooling: Pooling::NonOverlapping, ..meta().model },
            ..meta()
        };
        let map = tanh.to_map().unwrap();
        assert_eq!((map["activation"].as_str(), map["pooling"].as_str()), ("tanh", "non-overlapping"));
        for (k, v, want) in [
            ("activation", "gelu", r#"unknown activation "gelu" in the metadata"#),
            ("pooling", "avg", r#"unknown pooling "avg" in the metadata"#),
            ("lrn", "yes", r#"metadata "lrn" is yes, not true or false"#),
            ("pca_noise", "off", r#"metadata "pca_noise" is off, not true or false"#),
            ("towers", "1.5", r#"metadata "towers" is 1.5, not a whole number"#),
            ("dropout", "nan", r#"metadata "dropout" is nan, not a finite number"#),
        ] {
            let mut m = meta().to_map().unwrap();
            m.insert(k.into(), v.into());
            let e = CheckpointMeta::from_map(p, &m).unwrap_err().to_string();
            assert_eq!(e, format!("m.safetensors: {want}"));
        }
    }
}
