//! The two AlexNets, with parameter names and shapes exactly those of the project's
//! PyTorch modules (`python/alexnet_bridge/models.py`, every switch; for the paper's
//! net and owt also `../shared/anchors/reference_models.py`), so checkpoints load there
//! with `load_state_dict(strict=True)` and weights made there load here.
//!
//! - [`Arch::Paper`]: one network of the paper (section 3, figure 2): 227x227 input,
//!   conv1 96x11x11/4, conv2 256x5x5 and conv4/conv5 with the two-GPU connectivity as
//!   `groups = 2`, conv3 seeing all maps, LRN after the ReLU of conv1 and conv2 (per
//!   tower), overlapping 3x3/2 max pooling, fc6 and fc7 of 4096 with dropout 0.5.
//!   60,965,224 parameters at 1000 classes. `width` and `crop` shrink it for demos and
//!   tests (not the paper), as `PaperAlexNet(width=..., crop=...)` does.
//! - [`Arch::Owt`]: torchvision's single-tower `alexnet` (64-192-384-256-256, adaptive
//!   6x6 average pool), "one weird trick" (Krizhevsky 2014).
//!
//! The paper model's experiment switches ([`Activation`], LRN on or off, [`Pooling`],
//! two towers or the one-GPU net, dropout) keep every tensor name: both models are
//! built and run from [`ModelConfig::layers`], one entry per PyTorch module.

mod layers;

pub use layers::{Activation, Layer, Module as LayerModule, Pooling};
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::{Kind, TchError, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// The paper's two-tower network (reference_models.PaperAlexNet).
    Paper,
    /// torchvision's alexnet ("one weird trick").
    Owt,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Paper => "paper",
            Arch::Owt => "owt",
        }
    }
}

/// A model configuration the layer arithmetic cannot build: one line naming it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ModelError(pub String);

/// What defines a model's shapes: recorded in every checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub arch: Arch,
    pub num_classes: usize,
    /// Input side: 227 (paper), 224 (owt).
    pub crop: usize,
    /// Width multiplier of every layer (paper only; 1.0 is the paper).
    pub width: f64,
    /// LRN alpha in the cuda-convnet/PyTorch convention (alpha divided by the size 5):
    /// 1e-4; the paper's literal formula is 5e-4.
    pub lrn_alpha: f64,
    /// LRN within each tower (2, as the paper's two GPUs) or over all maps (1).
    pub lrn_towers: usize,
    /// The nonlinearity (section 3.1): ReLU (the paper) or tanh. Paper model only.
    #[serde(default)]
    pub activation: Activation,
    /// Local response normalization after conv1 and conv2 (section 3.3); off puts an
    /// identity in its place. Paper model only (owt has none: `false`).
    #[serde(default = "yes")]
    pub lrn: bool,
    /// Overlapping 3x3/2 (the paper, section 3.4) or non-overlapping 2x2/2 max pooling.
    /// Paper model only.
    #[serde(default)]
    pub pooling: Pooling,
    /// 2: the paper's two-GPU net; 1: its one-GPU baseline of section 3.2 (half the
    /// kernels of every convolution but the last; the same fully connected layers).
    /// owt: 1.
    #[serde(default = "two")]
    pub towers: usize,
    /// Dropout probability on fc6 and fc7 in training (section 4.2: 0.5).
    #[serde(default = "half")]
    pub dropout: f64,
}

fn yes() -> bool {
    true
}

fn two() -> usize {
    2
}

fn half() -> f64 {
    0.5
}

impl ModelConfig {
    pub fn paper(num_classes: usize) -> Self {
        Self {
            arch: Arch::Paper,
            num_classes,
            crop: 227,
            width: 1.0,
            lrn_alpha: 1e-4,
            lrn_towers: 2,
            activation: Activation::Relu,
            lrn: true,
            pooling: Pooling::Overlapping,
            towers: 2,
            dropout: 0.5,
        }
    }

    /// torchvision's `alexnet` (one tower, no LRN, ReLU, 3x3/2 pooling).
    pub fn owt(num_classes: usize) -> Self {
        Self { arch: Arch::Owt, crop: 224, lrn_towers: 1, lrn: false, towers: 1, ..Self::paper(num_classes) }
    }

    /// The model of `arch` at its defaults (the paper's, or torchvision's).
    pub fn of(arch: Arch, num_classes: usize) -> Self {
        match arch {
            Arch::Paper => Self::paper(num_classes),
            Arch::Owt => Self::owt(num_classes),
        }
    }

    /// Checks that the layer arithmetic works for this crop and width.
    pub fn validate(&self) -> Result<(), ModelError> {
        self.check().map_err(ModelError)
    }

    fn check(&self) -> Result<(), String> {
        if self.num_classes == 0 {
            return Err("num_classes must be at least 1".into());
        }
        if self.width.is_nan() || self.width <= 0.0 || self.width > 4.0 {
            return Err(format!("width {} must be in (0, 4]", self.width));
        }
        if self.arch == Arch::Owt && self.width != 1.0 {
            return Err("the owt model has no width multiplier".into());
        }
        if !(self.lrn_alpha.is_finite() && self.lrn_alpha >= 0.0) {
            return Err(format!("lrn_alpha {} must be a finite number >= 0", self.lrn_alpha));
        }
        if self.lrn_towers != 1 && self.lrn_towers != 2 {
            return Err(format!("lrn_towers {} must be 1 or 2", self.lrn_towers));
        }
        if self.towers != 1 && self.towers != 2 {
            return Err(format!("towers {} must be 2 (the paper) or 1 (its one-GPU net, section 3.2)", self.towers));
        }
        if self.towers == 1 && self.lrn_towers == 2 {
            return Err("lrn_towers 2 needs two towers: the one-GPU net (towers 1) normalizes over all its maps".into());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!("dropout {} must be in [0, 1)", self.dropout));
        }
        if self.arch == Arch::Owt {
            let paper_only = [
                (self.activation != Activation::Relu, "activation"),
                (self.pooling != Pooling::Overlapping, "pooling"),
                (self.lrn, "lrn"),
                (self.towers != 1, "towers"),
            ];
            if let Some((_, key)) = paper_only.iter().find(|(differs, _)| *differs) {
                return Err(format!(
                    "{key} is a switch of the paper model: the owt model is torchvision's alexnet as it is"
                ));
            }
        }
        let min = if self.arch == Arch::Paper { 67 } else { 63 };
        if self.crop < min || self.crop > 256 {
            return Err(format!("crop {} must be in {min}..=256 for the {} model", self.crop, self.arch.name()));
        }
        Ok(())
    }
}

/// Python's `round` (half to even) of a non-negative float.
pub(crate) fn round_half_even(x: f64) -> i64 {
    let f = x.floor();
    let d = x - f;
    let r = if d > 0.5 || (d == 0.5 && (f as i64) % 2 == 1) { f + 1.0 } else { f };
    r as i64
}

/// `nn.LocalResponseNorm(5, alpha, 0.75, 2)` applied within each of `towers` groups of
/// channels: b = a / (k + alpha/n * sum over 5 neighbouring maps of a^2)^beta, computed
/// as PyTorch's `F.local_response_norm` does (zero padding, average over the window).
pub fn tower_lrn(x: &Tensor, towers: usize, alpha: f64) -> Tensor {
    f_tower_lrn(x, towers, alpha).expect("local response normalization")
}

/// [`tower_lrn`], with libtorch's errors (out of memory) returned.
pub fn f_tower_lrn(x: &Tensor, towers: usize, alpha: f64) -> Result<Tensor, TchError> {
    let lrn = |t: &Tensor| -> Result<Tensor, TchError> {
        let s = t.size();
        let div = t
            .f_square()?
            .f_view([s[0], 1, s[1], s[2], s[3]])?
            .f_constant_pad_nd([0, 0, 0, 0, 2, 2])?
            .f_avg_pool3d([5, 1, 1], [1, 1, 1], [0, 0, 0], false, true, None::<i64>)?
            .f_squeeze_dim(1)?;
        t.f_div(&div.f_mul_scalar(alpha)?.f_add_scalar(2.0)?.f_pow_tensor_scalar(0.75)?)
    };
    if towers == 1 {
        lrn(x)
    } else {
        let parts = x.f_chunk(towers as i64, 1)?.iter().map(lrn).collect::<Result<Vec<_>, _>>()?;
        Tensor::f_cat(&parts, 1)
    }
}

/// An AlexNet of either architecture; parameters live in the given `VarStore` path.
#[derive(Debug)]
pub struct AlexNet {
    cfg: ModelConfig,
    /// Every module in forward order ([`ModelConfig::layers`]).
    layers: Vec<Layer>,
    convs: Vec<nn::Conv2D>,
    fcs: Vec<nn::Linear>,
    /// Dropout probability on fc6 and fc7 in training (section 4.2: 0.5).
    dropout: f64,
}

impl AlexNet {
    /// Builds the model under `root` (tch's initialisation); then call
    /// [`AlexNet::paper_init`] (section 5) or [`AlexNet::torch_default_init`] (owt).
    /// Memory the device cannot give (tch's layer constructors panic on it) is a
    /// [`ModelError`] naming the model's size.
    pub fn new(root: &nn::Path, cfg: &ModelConfig) -> Result<Self, ModelError> {
        cfg.validate()?;
        alexnet_shared::guard::catch(|| Ok(Self::build(root, cfg))).map_err(|panic| {
            let why = panic.strip_prefix("panicked: ").unwrap_or(&panic);
            // tch's unwrap: `called `Result::unwrap()` on an `Err` value: Torch("MESSAGE...`
            // (Debug-escaped: its C++ backtrace follows a literal `\n`).
            let why = why.split_once("Torch(\"").map_or(why, |(_, m)| m);
            let why = why.split("\\n").next().unwrap_or(why).trim_end_matches(['"', ')']);
            let why = why.strip_prefix("Internal torch error: ").unwrap_or(why);
            let gib = cfg.parameter_count() as f64 * 4.0 / (1u64 << 30) as f64;
            let oom = why.contains("out of memory") || why.contains("can't allocate memory");
            let what = if oom { "out of memory" } else { "failed" };
            ModelError(format!(
                "building the {} model ({} parameters, {gib:.2} GiB of float32 weights): {what} ({why}); lower \
                 model.width or use a device with more memory",
                cfg.arch.name(),
                cfg.parameter_count()
            ))
        })
    }

    fn build(root: &nn::Path, cfg: &ModelConfig) -> Self {
        let layers = cfg.layers();
        let (mut convs, mut fcs) = (Vec::new(), Vec::new());
        for l in &layers {
            let at = l.path.split('.').fold(root.clone(), |p, part| &p / part);
            match l.module {
                LayerModule::Conv { cin, cout, kernel, stride, pad, groups, .. } => {
                    let c = nn::ConvConfig {
                        stride: stride as i64,
                        padding: pad as i64,
                        groups: groups as i64,
                        ..Default::default()
                    };
                    convs.push(nn::conv2d(at, cin as i64, cout as i64, kernel as i64, c));
                }
                LayerModule::Linear { input, output, .. } => {
                    fcs.push(nn::linear(at, input as i64, output as i64, Default::default()));
                }
                _ => {}
            }
        }
        Self { cfg: cfg.clone(), layers, convs, fcs, dropout: cfg.dropout }
    }

    /// Sets the training dropout probability (0: off, as in the data-parallel tests).
    pub fn set_dropout(&mut self, p: f64) {
        self.dropout = p;
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Section 5: weights N(0, 0.01); biases 1 in conv2, conv4, conv5, fc6 and fc7
    /// ("accelerates the early stages of learning by providing the ReLUs with positive
    /// inputs"), 0 elsewhere. Draws from libtorch's generator: seed it first.
    pub fn paper_init(&mut self) {
        tch::no_grad(|| {
            for (i, c) in self.convs.iter_mut().enumerate() {
                let _ = c.ws.normal_(0.0, 0.01);
                let one = matches!(i, 1 | 3 | 4);
                let _ = c.bs.as_mut().expect("convs have biases").fill_(if one { 1.0 } else { 0.0 });
            }
            for (i, l) in self.fcs.iter_mut().enumerate() {
                let _ = l.ws.normal_(0.0, 0.01);
                let _ = l.bs.as_mut().expect("linears have biases").fill_(if i < 2 { 1.0 } else { 0.0 });
            }
        });
    }

    /// PyTorch's default initialisation of `nn.Conv2d` and `nn.Linear`, which
    /// torchvision's AlexNet keeps: weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    /// (`kaiming_uniform_(a=sqrt(5))`). Draws from libtorch's generator: seed it first.
    pub fn torch_default_init(&mut self) {
        fn init(ws: &mut Tensor, bs: &mut Tensor) {
            let fan_in: i64 = ws.size()[1..].iter().product();
            let bound = 1.0 / (fan_in as f64).sqrt();
            let _ = ws.uniform_(-bound, bound);
            let _ = bs.uniform_(-bound, bound);
        }
        tch::no_grad(|| {
            for c in &mut self.convs {
                init(&mut c.ws, c.bs.as_mut().expect("convs have biases"));
            }
            for l in &mut self.fcs {
                init(&mut l.ws, l.bs.as_mut().expect("linears have biases"));
            }
        });
    }

    /// Convolutional features, [N, C, 6, 6] at the full size. Panics on a libtorch
    /// error; the binaries use [`AlexNet::f_features`].
    pub fn features(&self, x: &Tensor) -> Tensor {
        self.f_features(x).expect("forward pass")
    }

    /// The last hidden layer: see [`AlexNet::f_fc7`]. Panics on a libtorch error.
    pub fn fc7(&self, x: &Tensor, train: bool) -> Tensor {
        self.f_fc7(x, train).expect("forward pass")
    }

    /// Logits [N, num_classes]. Panics on a libtorch error (out of memory); the
    /// binaries use [`AlexNet::f_forward_t`].
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.f_forward_t(x, train).expect("forward pass")
    }

    /// One module of [`ModelConfig::layers`] on `x`.
    fn apply(&self, l: &Layer, x: Tensor, train: bool) -> Result<Tensor, TchError> {
        match l.module {
            LayerModule::Conv { index, stride, pad, groups, .. } => {
                let c = &self.convs[index];
                let (s, p) = (stride as i64, pad as i64);
                x.f_conv2d(&c.ws, c.bs.as_ref(), [s, s], [p, p], [1, 1], groups as i64)
            }
            LayerModule::Act(Activation::Relu) => x.f_relu(),
            LayerModule::Act(Activation::Tanh) => x.f_tanh(),
            LayerModule::Lrn { towers, alpha } => f_tower_lrn(&x, towers, alpha),
            LayerModule::MaxPool { kernel, stride } => {
                let (k, s) = (kernel as i64, stride as i64);
                x.f_max_pool2d([k, k], [s, s], [0, 0], [1, 1], false)
            }
            LayerModule::AdaptiveAvgPool(side) => x.f_adaptive_avg_pool2d([side as i64, side as i64]),
            LayerModule::Identity => Ok(x),
            // The rate of set_dropout, which may differ from the config's (tests).
            LayerModule::Dropout(_) => x.f_dropout(self.dropout, train),
            LayerModule::Linear { index, .. } => {
                let l = &self.fcs[index];
                x.f_linear(&l.ws, l.bs.as_ref())
            }
        }
    }

    /// The modules from the first through the one labelled `last` (all: `None`), the
    /// convolutional features flattened where the classifier starts; `trace` gets each
    /// module's path and output shape.
    fn run(
        &self,
        x: &Tensor,
        train: bool,
        last: Option<&str>,
        mut trace: Option<&mut Vec<(String, Vec<i64>)>>,
    ) -> Result<Tensor, TchError> {
        let mut x = x.shallow_clone();
        for l in &self.layers {
            if l.path.starts_with("classifier") && x.dim() > 2 {
                x = x.f_flatten(1, -1)?;
            }
            x = self.apply(l, x, train)?;
            if let Some(t) = trace.as_deref_mut() {
                t.push((l.path.clone(), x.size()));
            }
            if last == Some(l.label.as_str()) {
                break;
            }
        }
        Ok(x)
    }

    /// Every module's PyTorch name and output shape on `x` (eval mode): what
    /// `describe` computes, measured.
    pub fn f_trace(&self, x: &Tensor) -> Result<Vec<(String, Vec<i64>)>, TchError> {
        let mut t = Vec::new();
        let _logits = self.run(x, false, None, Some(&mut t))?;
        Ok(t)
    }

    /// Convolutional features, [N, C, 6, 6] at the full size (pool5; owt: its average
    /// pool); a libtorch error (out of memory on a large batch) is returned.
    pub fn f_features(&self, x: &Tensor) -> Result<Tensor, TchError> {
        let last = if self.cfg.arch == Arch::Owt { "avgpool" } else { "pool5" };
        self.run(x, false, Some(last), None)
    }

    /// The last hidden layer (fc7 after its activation, 4096-d at full size): the
    /// features of the paper's retrieval (section 6.1). Dropout only when `train`.
    pub fn f_fc7(&self, x: &Tensor, train: bool) -> Result<Tensor, TchError> {
        self.run(x, train, Some("act7"), None)
    }

    /// Logits [N, num_classes]; a libtorch error (out of memory) is returned.
    pub fn f_forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor, TchError> {
        self.run(x, train, None, None)
    }

    pub fn num_parameters(vs: &nn::VarStore) -> i64 {
        vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
    }
}

impl Module for AlexNet {
    fn forward(&self, x: &Tensor) -> Tensor {
        self.forward_t(x, false)
    }
}

/// Softmax probabilities in f32 (for averaging crops and ensembles).
pub fn probabilities(logits: &Tensor) -> Tensor {
    logits.softmax(-1, Kind::Float)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn::VarStore, Device};

    /// Python: sum(p.numel() for p in PaperAlexNet().parameters()) == 60965224
    #[test]
    fn the_paper_model_has_60_965_224_parameters() {
        let vs = VarStore::new(Device::Cpu);
        let _m = AlexNet::new(&vs.root(), &ModelConfig::paper(1000)).unwrap();
        assert_eq!(AlexNet::num_parameters(&vs), 60_965_224);
        assert_eq!(ModelConfig::paper(1000).parameter_count(), 60_965_224);
        for (width, crop) in [(0.1, 67), (0.37, 131), (2.0, 227)] {
            let cfg = ModelConfig { width, crop, ..ModelConfig::paper(7) };
            let vs = VarStore::new(Device::Cpu);
            let _m = AlexNet::new(&vs.root(), &cfg).unwrap();
            assert_eq!(cfg.parameter_count(), AlexNet::num_parameters(&vs) as u64, "width {width} crop {crop}");
        }
    }

    /// Python: sum(p.numel() for p in torchvision.models.alexnet().parameters()) == 61100840
    #[test]
    fn the_owt_model_has_torchvisions_parameter_count() {
        let vs = VarStore::new(Device::Cpu);
        let _m = AlexNet::new(&vs.root(), &ModelConfig::owt(1000)).unwrap();
        assert_eq!(AlexNet::num_parameters(&vs), 61_100_840);
        assert_eq!(ModelConfig::owt(1000).parameter_count(), 61_100_840);
    }

    #[test]
    fn names_and_shapes_follow_the_reference() {
        let vs = VarStore::new(Device::Cpu);
        let _m = AlexNet::new(&vs.root(), &ModelConfig::paper(1000)).unwrap();
        let v = vs.variables();
        assert_eq!(v["features.4.weight"].size(), [256, 48, 5, 5]); // groups = 2
        assert_eq!(v["features.8.weight"].size(), [384, 256, 3, 3]); // conv3 sees all maps
        assert_eq!(v["classifier.0.weight"].size(), [4096, 9216]);
        assert_eq!(v["classifier.6.bias"].size(), [1000]);
        assert_eq!(v.len(), 16);
    }

    #[test]
    fn small_models_follow_the_reference_arithmetic() {
        // Python: PaperAlexNet(10, width=0.25, crop=99): conv widths 24, 64, 96, 96, 64
        // (_even(c * 0.25)), fc 1024, last feature map 2x2 -> classifier.0 in = 256.
        let cfg = ModelConfig { width: 0.25, crop: 99, ..ModelConfig::paper(10) };
        let d = cfg.paper_dims();
        assert_eq!((d.chans, d.fc, cfg.feature_side()), ([24, 64, 96, 96, 64], 1024, 2));
        let vs = VarStore::new(Device::Cpu);
        let m = AlexNet::new(&vs.root(), &cfg).unwrap();
        let y = m.forward_t(&Tensor::zeros([2, 3, 99, 99], (Kind::Float, Device::Cpu)), false);
        assert_eq!(y.size(), [2, 10]);
        // Python: round(2.5) == 2, round(3.5) == 4
        assert_eq!((round_half_even(2.5), round_half_even(3.5), round_half_even(2.6)), (2, 4, 3));
        assert!(ModelConfig { crop: 50, ..ModelConfig::paper(10) }.validate().is_err());
    }

    #[test]
    fn feature_sides_follow_the_layer_arithmetic() {
        // Python: PaperAlexNet(crop=227), (crop=99) and (crop=67): pool5 sides 6, 2 and 1;
        // torchvision's alexnet.features at 224 and at 63: 6 and 1.
        let paper = |crop| ModelConfig { crop, ..ModelConfig::paper(10) }.feature_side();
        assert_eq!((paper(227), paper(99), paper(67)), (6, 2, 1));
        let owt = |crop| ModelConfig { crop, ..ModelConfig::owt(10) }.feature_side();
        assert_eq!((owt(224), owt(63)), (6, 1));
    }

    #[test]
    fn paper_init_sets_the_biases_of_section_5() {
        let vs = VarStore::new(Device::Cpu);
        let mut m = AlexNet::new(&vs.root(), &ModelConfig { width: 0.25, crop: 99, ..ModelConfig::paper(10) }).unwrap();
        tch::manual_seed(0);
        m.paper_init();
        let v = vs.variables();
        for (name, want) in [
            ("features.0.bias", 0.0),
            ("features.4.bias", 1.0),
            ("features.8.bias", 0.0),
            ("features.10.bias", 1.0),
            ("features.12.bias", 1.0),
            ("classifier.0.bias", 1.0),
            ("classifier.3.bias", 1.0),
            ("classifier.6.bias", 0.0),
        ] {
            let b = &v[name];
            assert_eq!(b.min().double_value(&[]), want, "{name}");
            assert_eq!(b.max().double_value(&[]), want, "{name}");
        }
        let w = &v["classifier.0.weight"];
        let std = w.std(true).double_value(&[]);
        assert!((std - 0.01).abs() < 0.0005 && w.mean(Kind::Float).double_value(&[]).abs() < 0.0005, "std {std}");
    }

    /// torch: nn.Linear(9216, 4096).weight is U(-1/96, 1/96): std 1/(96 sqrt 3) = 0.006014
    #[test]
    fn torch_default_init_bounds() {
        let vs = VarStore::new(Device::Cpu);
        let mut m = AlexNet::new(&vs.root(), &ModelConfig::owt(10)).unwrap();
        tch::manual_seed(0);
        m.torch_default_init();
        let v = vs.variables();
        let w = &v["classifier.1.weight"];
        // float32 draws: allow the rounding of the bound itself
        assert!(w.abs().max().double_value(&[]) <= 1.0 / 96.0 * (1.0 + 1e-6));
        assert!((w.std(true).double_value(&[]) - 0.006014).abs() < 0.0001);
        let b = &v["features.0.bias"]; // fan_in 3 * 11 * 11 = 363
        assert!(b.abs().max().double_value(&[]) <= 1.0 / 363f64.sqrt() * (1.0 + 1e-6));
    }

    fn built(cfg: &ModelConfig) -> (VarStore, AlexNet) {
        let vs = VarStore::new(Device::Cpu);
        let m = AlexNet::new(&vs.root(), cfg).unwrap();
        (vs, m)
    }

    /// Every switch combination builds under the paper's tensor names; its parameter
    /// count and every module's output shape (measured) are those of the layer
    /// arithmetic `describe` prints; on a non-square input (131x163) the convolutional
    /// part keeps height and width apart.
    #[test]
    fn every_switch_combination_matches_its_layer_arithmetic() {
        let base = ModelConfig { width: 0.25, crop: 131, ..ModelConfig::paper(10) };
        let names = |vs: &VarStore| {
            let mut n: Vec<(String, Vec<i64>)> = vs.variables().into_iter().map(|(k, v)| (k, v.size())).collect();
            n.sort();
            n.into_iter().map(|(k, _)| k).collect::<Vec<_>>()
        };
        let (paper_vs, _) = built(&base);
        let combos = base.switch_combinations();
        assert_eq!(combos.len(), 16);
        assert_eq!(combos[0], base);
        for cfg in &combos {
            let (vs, m) = built(cfg);
            let what = cfg.variant_name();
            assert_eq!(names(&vs), names(&paper_vs), "{what}: tensor names");
            assert_eq!(AlexNet::num_parameters(&vs) as u64, cfg.parameter_count(), "{what}");
            let x = Tensor::randn([2, 3, 131, 131], (Kind::Float, Device::Cpu));
            let traced = tch::no_grad(|| m.f_trace(&x)).unwrap();
            let want: Vec<(String, Vec<i64>)> = cfg
                .layer_shapes()
                .into_iter()
                .map(|(l, s)| (l.path, std::iter::once(2).chain(s.iter().map(|&d| d as i64)).collect()))
                .collect();
            assert_eq!(traced, want, "{what}");
            let wide = Tensor::randn([1, 3, 131, 163], (Kind::Float, Device::Cpu));
            let mut traced = Vec::new();
            let _ = tch::no_grad(|| m.run(&wide, false, Some("pool5"), Some(&mut traced))).unwrap();
            let want: Vec<(String, Vec<i64>)> = cfg
                .layer_shapes_at(131, 163)
                .into_iter()
                .take_while(|(l, _)| l.path.starts_with("features"))
                .map(|(l, s)| (l.path, std::iter::once(1).chain(s.iter().map(|&d| d as i64)).collect()))
                .collect();
            assert_eq!(traced, want, "{what} at 131x163");
            let lrn1 = &cfg.layers()[2];
            assert_eq!((lrn1.path.as_str(), lrn1.module == LayerModule::Identity), ("features.2", !cfg.lrn), "{what}");
        }
        let (vs, _) = built(&ModelConfig::owt(10));
        assert_eq!(AlexNet::num_parameters(&vs) as u64, ModelConfig::owt(10).parameter_count());
    }

    /// The one-GPU net of section 3.2: conv1..conv4 halved, conv5 and the fully
    /// connected layers kept (the paper's footnote), no groups.
    /// Python (python/alexnet_bridge): sum(p.numel() for p in PaperAlexNet(towers=1).parameters()) == 59798312
    #[test]
    fn the_one_gpu_net_halves_every_convolution_but_the_last() {
        let one = ModelConfig { towers: 1, lrn_towers: 1, ..ModelConfig::paper(1000) };
        let (vs, _) = built(&one);
        let v = vs.variables();
        assert_eq!(v["features.0.weight"].size(), [48, 3, 11, 11]);
        assert_eq!(v["features.4.weight"].size(), [128, 48, 5, 5]);
        assert_eq!(v["features.8.weight"].size(), [192, 128, 3, 3]);
        assert_eq!(v["features.10.weight"].size(), [192, 192, 3, 3]);
        assert_eq!(v["features.12.weight"].size(), [256, 192, 3, 3]);
        assert_eq!(v["classifier.0.weight"].size(), [4096, 9216]);
        assert_eq!(AlexNet::num_parameters(&vs), 59_798_312);
        // Two towers with LRN per tower need two towers.
        let e = ModelConfig { towers: 1, ..ModelConfig::paper(1000) }.validate().unwrap_err().to_string();
        assert!(e.contains("lrn_towers 2 needs two towers") && !e.contains('\n'), "{e}");
    }

    #[test]
    fn the_switches_change_the_function_and_owt_refuses_them() {
        let base = ModelConfig { width: 0.25, crop: 99, ..ModelConfig::paper(10) };
        let x = Tensor::randn([2, 3, 99, 99], (Kind::Float, Device::Cpu)) * 50.0;
        let logits = |cfg: &ModelConfig| {
            let (mut vs, m) = built(cfg);
            let (paper_vs, mut p) = built(&base);
            tch::manual_seed(3);
            p.torch_default_init();
            vs.copy(&paper_vs).unwrap();
            tch::no_grad(|| m.forward_t(&x, false))
        };
        let paper = logits(&base);
        for cfg in [
            ModelConfig { activation: Activation::Tanh, ..base.clone() },
            ModelConfig { lrn: false, ..base.clone() },
            ModelConfig { pooling: Pooling::NonOverlapping, ..base.clone() },
        ] {
            let d = (logits(&cfg) - &paper).abs().max().double_value(&[]);
            assert!(d > 1e-4, "{}: same logits as the paper's", cfg.variant_name());
        }
        for (cfg, key) in [
            (ModelConfig { activation: Activation::Tanh, ..ModelConfig::owt(10) }, "activation"),
            (ModelConfig { pooling: Pooling::NonOverlapping, ..ModelConfig::owt(10) }, "pooling"),
            (ModelConfig { lrn: true, ..ModelConfig::owt(10) }, "lrn"),
            (ModelConfig { towers: 3, ..ModelConfig::paper(10) }, "towers 3"),
            (ModelConfig { dropout: 1.0, ..ModelConfig::paper(10) }, "dropout 1"),
        ] {
            let e = cfg.validate().unwrap_err().to_string();
            assert!(e.contains(key) && !e.contains('\n'), "{e}");
        }
    }

    /// Section 3.4's pooling: the same sides at 227, other sides at some crops.
    /// Python (python/alexnet_bridge): layer_table(PaperAlexNet(crop=75, pooling=P), 75)[14]
    /// is [.., 2, 2] for "non-overlapping" and [.., 1, 1] for "overlapping".
    #[test]
    fn pooling_geometry_follows_the_arithmetic() {
        let side = |crop, pooling| ModelConfig { crop, pooling, ..ModelConfig::paper(10) }.feature_side();
        assert_eq!(side(227, Pooling::NonOverlapping), 6);
        assert_eq!(side(75, Pooling::NonOverlapping), 2);
        assert_eq!(side(75, Pooling::Overlapping), 1);
    }
}
