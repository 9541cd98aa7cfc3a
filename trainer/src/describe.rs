//! `train describe`: the network a configuration builds, layer by layer, from the same
//! layer list the model is built and run from ([`ModelConfig::layers`]): each module's
//! kernel, stride, padding, output shape (the paper's arithmetic,
//! `floor((n - f + 2p) / s) + 1`), parameters and multiply-adds, and the totals, as a
//! markdown table or JSON.
//!
//! Multiply-adds count the convolutions (`H_out W_out C_out (C_in / groups) k^2`) and
//! the fully connected layers (`in x out`) of one image; bias additions, activations,
//! LRN and pooling are left out. The paper's net at 1000 classes: 60,965,224 parameters
//! and 724,406,816 multiply-adds per 227x227 image.

use serde::Serialize;

use crate::model::{Activation, LayerModule, ModelConfig};

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// The PyTorch module name (`features.4`), which is the checkpoint's tensor prefix.
    pub path: String,
    /// `conv2`, `lrn1`, `fc6`, ...
    pub layer: String,
    /// What the module is (`conv 5x5`, `relu`, `lrn (2 towers)`, `identity (LRN off)`).
    pub module: String,
    pub kernel: Option<usize>,
    pub stride: Option<usize>,
    pub padding: Option<usize>,
    /// Groups of a convolution (2: the two towers).
    pub groups: Option<usize>,
    /// Output shape of one image (C, H, W or features).
    pub output: Vec<usize>,
    pub parameters: u64,
    pub multiply_adds: u64,
}

/// The whole description (`--json` writes it as it is).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Description {
    pub model: ModelConfig,
    /// One image: [3, crop, crop].
    pub input: Vec<usize>,
    pub layers: Vec<Row>,
    pub parameters: u64,
    pub multiply_adds: u64,
}

/// The description of the model of a preset (none: the paper's defaults) with `key=value`
/// overrides, for `classes` outputs.
pub fn from_config(
    preset: Option<&std::path::Path>,
    sets: &[String],
    classes: usize,
) -> Result<Description, crate::config::ConfigError> {
    use crate::config::{ConfigError, TrainConfig};
    let text = match preset {
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| ConfigError::Read { path: p.display().to_string(), message: e.to_string() })?,
        None => String::new(),
    };
    let cfg = TrainConfig::parse(&text, sets).map_err(|e| match (preset, e) {
        (Some(p), ConfigError::Invalid(m)) => ConfigError::Invalid(format!("{}: {m}", p.display())),
        (_, e) => e,
    })?;
    let model = cfg.model_config(classes);
    model.validate().map_err(|e| ConfigError::Invalid(e.0))?;
    Ok(describe(&model))
}

/// The description of `cfg`'s model.
pub fn describe(cfg: &ModelConfig) -> Description {
    let layers: Vec<Row> = cfg
        .layer_shapes()
        .into_iter()
        .map(|(l, output)| {
            let (mut kernel, mut stride, mut padding, mut groups) = (None, None, None, None);
            let module = match &l.module {
                LayerModule::Conv { kernel: k, stride: s, pad, groups: g, .. } => {
                    (kernel, stride, padding, groups) = (Some(*k), Some(*s), Some(*pad), Some(*g));
                    format!("conv {k}x{k}")
                }
                LayerModule::Act(Activation::Relu) => "relu".into(),
                LayerModule::Act(Activation::Tanh) => "tanh".into(),
                LayerModule::Lrn { towers, alpha } => {
                    kernel = Some(5);
                    format!("lrn (size 5, alpha {alpha}, {})", if *towers == 2 { "per tower" } else { "all maps" })
                }
                LayerModule::MaxPool { kernel: k, stride: s } => {
                    (kernel, stride, padding) = (Some(*k), Some(*s), Some(0));
                    format!("max pool {k}x{k}")
                }
                LayerModule::AdaptiveAvgPool(s) => format!("adaptive avg pool {s}x{s}"),
                LayerModule::Identity => "identity (LRN off)".into(),
                LayerModule::Dropout(p) => format!("dropout {p}"),
                LayerModule::Linear { .. } if l.path == "classifier.0" => "flatten, linear".into(),
                LayerModule::Linear { .. } => "linear".into(),
            };
            Row {
                parameters: l.parameters(),
                multiply_adds: l.multiply_adds(&output),
                path: l.path,
                layer: l.label,
                module,
                kernel,
                stride,
                padding,
                groups,
                output,
            }
        })
        .collect();
    Description {
        model: cfg.clone(),
        input: vec![3, cfg.crop, cfg.crop],
        parameters: layers.iter().map(|r| r.parameters).sum(),
        multiply_adds: layers.iter().map(|r| r.multiply_adds).sum(),
        layers,
    }
}

/// `1234567` -> `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl Description {
    /// A heading line, the markdown table and the totals.
    pub fn markdown(&self) -> String {
        let m = &self.model;
        let mut out = match m.arch {
            crate::model::Arch::Paper => format!(
                "paper model{}: width {}, {} classes, {}x{} input; {}, LRN {}, {} pooling, {}, dropout {}\n\n",
                match m.variant_name().as_str() {
                    "paper" => String::new(),
                    v => format!(" ({v})"),
                },
                m.width,
                m.num_classes,
                m.crop,
                m.crop,
                m.activation.name(),
                if m.lrn { "on" } else { "off" },
                m.pooling.name(),
                if m.towers == 2 { "two towers" } else { "one tower (the one-GPU net)" },
                m.dropout,
            ),
            crate::model::Arch::Owt => {
                format!("owt model (torchvision's alexnet): {} classes, {}x{} input\n\n", m.num_classes, m.crop, m.crop)
            }
        };
        let opt = |v: Option<usize>| v.map_or(String::new(), |v| v.to_string());
        out += "| module | layer | type | kernel | stride | padding | groups | output | parameters | multiply-adds |\n";
        out += "|---|---|---|---:|---:|---:|---:|---|---:|---:|\n";
        let shape = |s: &[usize]| s.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x");
        out += &format!("| input | | | | | | | {} | | |\n", shape(&self.input));
        for r in &self.layers {
            out += &format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                r.path,
                r.layer,
                r.module,
                opt(r.kernel),
                opt(r.stride),
                opt(r.padding),
                opt(r.groups),
                shape(&r.output),
                thousands(r.parameters),
                thousands(r.multiply_adds),
            );
        }
        out += &format!(
            "| **total** | | | | | | | | **{}** | **{}** |\n\n",
            thousands(self.parameters),
            thousands(self.multiply_adds)
        );
        out += &format!(
            "{} parameters ({:.1} MiB of float32); {:.3} G multiply-adds per {}x{} image (convolutions and fully \
             connected layers; bias additions, activations, LRN and pooling not counted)",
            thousands(self.parameters),
            self.parameters as f64 * 4.0 / (1u64 << 20) as f64,
            self.multiply_adds as f64 / 1e9,
            self.model.crop,
            self.model.crop
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The paper's totals: 60,965,224 parameters (Python: sum(p.numel() for p in
    /// PaperAlexNet().parameters())) and, per 227x227 image, conv1 55*55*96*363 +
    /// conv2 27*27*256*48*25 + conv3 13*13*384*256*9 + conv4 13*13*384*192*9 + conv5
    /// 13*13*256*192*9 + fc 9216*4096 + 4096*4096 + 4096*1000 = 724,406,816 multiply-adds.
    #[test]
    fn the_papers_totals() {
        let d = describe(&ModelConfig::paper(1000));
        assert_eq!(d.parameters, 60_965_224);
        let want: u64 = 55 * 55 * 96 * 363
            + 27 * 27 * 256 * 48 * 25
            + 13 * 13 * 384 * 256 * 9
            + 13 * 13 * 384 * 192 * 9
            + 13 * 13 * 256 * 192 * 9
            + 9216 * 4096
            + 4096 * 4096
            + 4096 * 1000;
        assert_eq!((d.multiply_adds, want), (724_406_816, 724_406_816));
        let conv2 = &d.layers[4];
        assert_eq!(
            (conv2.path.as_str(), conv2.groups, conv2.output.as_slice()),
            ("features.4", Some(2), &[256, 27, 27][..])
        );
        let md = d.markdown();
        assert!(md.contains("| **total** | | | | | | | | **60,965,224** | **724,406,816** |"), "{md}");
        assert!(md.contains("| features.2 | lrn1 | lrn (size 5, alpha 0.0001, per tower) |"), "{md}");
        let off = describe(&ModelConfig { lrn: false, ..ModelConfig::paper(1000) }).markdown();
        assert!(off.contains("| features.2 | lrn1 | identity (LRN off) |"), "{off}");
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1000), "1,000");
    }
}
