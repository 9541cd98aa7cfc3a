//! The two AlexNets, with parameter names and shapes exactly those of the PyTorch
//! modules in `../shared/anchors/reference_models.py`, so checkpoints load there with
//! `load_state_dict(strict=True)` and weights made there load here.
//!
//! - [`Arch::Paper`]: one network of the paper (section 3, figure 2): 227x227 input,
//!   conv1 96x11x11/4, conv2 256x5x5 and conv4/conv5 with the two-GPU connectivity as
//!   `groups = 2`, conv3 seeing all maps, LRN after the ReLU of conv1 and conv2 (per
//!   tower), overlapping 3x3/2 max pooling, fc6 and fc7 of 4096 with dropout 0.5.
//!   60,965,224 parameters at 1000 classes. `width` and `crop` shrink it for demos and
//!   tests (not the paper), as `PaperAlexNet(width=..., crop=...)` does.
//! - [`Arch::Owt`]: torchvision's single-tower `alexnet` (64-192-384-256-256, adaptive
//!   6x6 average pool), "one weird trick" (Krizhevsky 2014).

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
}

impl ModelConfig {
    pub fn paper(num_classes: usize) -> Self {
        Self { arch: Arch::Paper, num_classes, crop: 227, width: 1.0, lrn_alpha: 1e-4, lrn_towers: 2 }
    }

    pub fn owt(num_classes: usize) -> Self {
        Self { arch: Arch::Owt, num_classes, crop: 224, width: 1.0, lrn_alpha: 1e-4, lrn_towers: 1 }
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
        let min = if self.arch == Arch::Paper { 67 } else { 63 };
        if self.crop < min || self.crop > 256 {
            return Err(format!("crop {} must be in {min}..=256 for the {} model", self.crop, self.arch.name()));
        }
        Ok(())
    }

    /// Side of the last feature map (pool5) for this crop: conv1 (11x11, stride 4,
    /// padding 0 in the paper net, 2 in owt), then three 3x3/2 max pools. (owt then
    /// pools it adaptively to 6x6 whatever the crop.)
    pub fn feature_side(&self) -> usize {
        let pad = if self.arch == Arch::Owt { 2 } else { 0 };
        let mut side = (self.crop + 2 * pad).saturating_sub(11) / 4 + 1; // conv1
        for _ in 0..3 {
            side = side.saturating_sub(3) / 2 + 1; // pool1, pool2, pool5
        }
        side
    }

    /// The number of weights and biases of the model this builds.
    pub fn parameter_count(&self) -> u64 {
        let conv = |cin: i64, cout: i64, k: i64, groups: i64| (cin / groups * k * k * cout + cout) as u64;
        let fc = |i: i64, o: i64| (i * o + o) as u64;
        let nc = self.num_classes as i64;
        match self.arch {
            Arch::Paper => {
                let ([c1, c2, c3, c4, c5], f, side) = self.paper_dims();
                conv(3, c1, 11, 1)
                    + conv(c1, c2, 5, 2)
                    + conv(c2, c3, 3, 1)
                    + conv(c3, c4, 3, 2)
                    + conv(c4, c5, 3, 2)
                    + fc(c5 * side * side, f)
                    + fc(f, f)
                    + fc(f, nc)
            }
            Arch::Owt => {
                conv(3, 64, 11, 1)
                    + conv(64, 192, 5, 1)
                    + conv(192, 384, 3, 1)
                    + conv(384, 256, 3, 1)
                    + conv(256, 256, 3, 1)
                    + fc(256 * 36, 4096)
                    + fc(4096, 4096)
                    + fc(4096, nc)
            }
        }
    }

    /// (conv1..conv5 channels, fc width, side of the last feature map) of the paper net.
    fn paper_dims(&self) -> ([i64; 5], i64, i64) {
        let even = |c: f64| 2.max(2 * round_half_even(c * self.width / 2.0));
        let chans = [96.0, 256.0, 384.0, 384.0, 256.0].map(even);
        let fc = 1.max(round_half_even(4096.0 * self.width));
        (chans, fc, self.feature_side() as i64)
    }
}

/// Python's `round` (half to even) of a non-negative float.
fn round_half_even(x: f64) -> i64 {
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

#[derive(Debug, Clone, Copy)]
struct ConvGeometry {
    stride: i64,
    pad: i64,
    groups: i64,
}

/// An AlexNet of either architecture; parameters live in the given `VarStore` path.
#[derive(Debug)]
pub struct AlexNet {
    cfg: ModelConfig,
    convs: Vec<nn::Conv2D>,
    /// Each conv's stride, padding and groups (tch keeps its own private).
    geometry: Vec<ConvGeometry>,
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
        let f = root / "features";
        let c = root / "classifier";
        let conv = |name: i64, cin: i64, cout: i64, k: i64, stride: i64, pad: i64, groups: i64| {
            let layer = nn::conv2d(
                &f / name,
                cin,
                cout,
                k,
                nn::ConvConfig { stride, padding: pad, groups, ..Default::default() },
            );
            (layer, ConvGeometry { stride, pad, groups })
        };
        let nc = cfg.num_classes as i64;
        let (convs, fcs) = match cfg.arch {
            Arch::Paper => {
                let ([c1, c2, c3, c4, c5], fc, side) = cfg.paper_dims();
                (
                    vec![
                        conv(0, 3, c1, 11, 4, 0, 1),
                        conv(4, c1, c2, 5, 1, 2, 2),
                        conv(8, c2, c3, 3, 1, 1, 1),
                        conv(10, c3, c4, 3, 1, 1, 2),
                        conv(12, c4, c5, 3, 1, 1, 2),
                    ],
                    vec![
                        nn::linear(&c / 0, c5 * side * side, fc, Default::default()),
                        nn::linear(&c / 3, fc, fc, Default::default()),
                        nn::linear(&c / 6, fc, nc, Default::default()),
                    ],
                )
            }
            Arch::Owt => (
                vec![
                    conv(0, 3, 64, 11, 4, 2, 1),
                    conv(3, 64, 192, 5, 1, 2, 1),
                    conv(6, 192, 384, 3, 1, 1, 1),
                    conv(8, 384, 256, 3, 1, 1, 1),
                    conv(10, 256, 256, 3, 1, 1, 1),
                ],
                vec![
                    nn::linear(&c / 1, 256 * 36, 4096, Default::default()),
                    nn::linear(&c / 4, 4096, 4096, Default::default()),
                    nn::linear(&c / 6, 4096, nc, Default::default()),
                ],
            ),
        };
        let (convs, geometry) = convs.into_iter().unzip();
        Self { cfg: cfg.clone(), convs, geometry, fcs, dropout: 0.5 }
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

    fn conv(&self, i: usize, x: &Tensor) -> Result<Tensor, TchError> {
        let c = &self.convs[i];
        let g = self.geometry[i];
        x.f_conv2d(&c.ws, c.bs.as_ref(), [g.stride; 2], [g.pad; 2], [1, 1], g.groups)
    }

    fn linear(&self, i: usize, x: &Tensor) -> Result<Tensor, TchError> {
        let l = &self.fcs[i];
        x.f_linear(&l.ws, l.bs.as_ref())
    }

    /// Convolutional features, [N, C, 6, 6] at the full size; a libtorch error (out of
    /// memory on a large batch) is returned.
    pub fn f_features(&self, x: &Tensor) -> Result<Tensor, TchError> {
        let pool = |t: Tensor| t.f_max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], false);
        match self.cfg.arch {
            Arch::Paper => {
                let lrn = |t: &Tensor| f_tower_lrn(t, self.cfg.lrn_towers, self.cfg.lrn_alpha);
                let x = pool(lrn(&self.conv(0, x)?.f_relu()?)?)?; // [N, 96, 27, 27]
                let x = pool(lrn(&self.conv(1, &x)?.f_relu()?)?)?; // [N, 256, 13, 13]
                let x = self.conv(3, &self.conv(2, &x)?.f_relu()?)?.f_relu()?; // [N, 384, 13, 13]
                pool(self.conv(4, &x)?.f_relu()?) // [N, 256, 6, 6]
            }
            Arch::Owt => {
                let x = pool(self.conv(0, x)?.f_relu()?)?; // [N, 64, 27, 27]
                let x = pool(self.conv(1, &x)?.f_relu()?)?; // [N, 192, 13, 13]
                let x = self.conv(2, &x)?.f_relu()?;
                let x = self.conv(4, &self.conv(3, &x)?.f_relu()?)?.f_relu()?; // [N, 256, 13, 13]
                pool(x)?.f_adaptive_avg_pool2d([6, 6]) // [N, 256, 6, 6]
            }
        }
    }

    /// The last hidden layer (fc7 after its ReLU, 4096-d at full size): the features
    /// of the paper's retrieval (section 6.1). Dropout only when `train`.
    pub fn f_fc7(&self, x: &Tensor, train: bool) -> Result<Tensor, TchError> {
        let h = self.f_features(x)?.f_flatten(1, -1)?;
        let p = self.dropout;
        match self.cfg.arch {
            // fc6 -> ReLU -> dropout -> fc7 -> ReLU (-> dropout before fc8)
            Arch::Paper => self.linear(1, &self.linear(0, &h)?.f_relu()?.f_dropout(p, train)?)?.f_relu(),
            // torchvision: dropout -> fc6 -> ReLU -> dropout -> fc7 -> ReLU
            Arch::Owt => {
                let h = self.linear(0, &h.f_dropout(p, train)?)?.f_relu()?;
                self.linear(1, &h.f_dropout(p, train)?)?.f_relu()
            }
        }
    }

    /// Logits [N, num_classes]; a libtorch error (out of memory) is returned.
    pub fn f_forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor, TchError> {
        let h = self.f_fc7(x, train)?;
        let h = if self.cfg.arch == Arch::Paper { h.f_dropout(self.dropout, train)? } else { h };
        self.linear(2, &h)
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
        assert_eq!(cfg.paper_dims(), ([24, 64, 96, 96, 64], 1024, 2));
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
}
