//! The paper's experiment switches and the layer list every model is built, run and
//! described from ([`ModelConfig::layers`]): one entry per module of the PyTorch
//! `nn.Sequential`s (`features.N`, `classifier.N`), so a variant without a layer keeps
//! an [`Module::Identity`] at its index and conv2 is `features.4` in every paper
//! variant. The layer arithmetic is the paper's, `floor((n - f + 2p) / s) + 1`.

use serde::{Deserialize, Serialize};

use super::{Arch, ModelConfig};

/// The nonlinearity after every convolution and hidden fully connected layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// max(0, x): the paper (section 3.1).
    #[default]
    Relu,
    /// tanh(x): the saturating unit of section 3.1 and Figure 1 (six times slower to
    /// reach 25% training error on CIFAR-10 in the paper).
    Tanh,
}

impl Activation {
    pub fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Tanh => "tanh",
        }
    }
}

/// Max pooling after conv1, conv2 and conv5.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Pooling {
    /// 3x3 windows at stride 2 (z = 3, s = 2): the paper (section 3.4).
    #[default]
    Overlapping,
    /// 2x2 windows at stride 2 (z = s = 2), the same output sizes at 227 (section 3.4:
    /// 0.4 / 0.3 points more top-1 / top-5 error).
    NonOverlapping,
}

impl Pooling {
    pub fn name(self) -> &'static str {
        match self {
            Pooling::Overlapping => "overlapping",
            Pooling::NonOverlapping => "non-overlapping",
        }
    }

    /// (window, stride).
    pub fn geometry(self) -> (usize, usize) {
        match self {
            Pooling::Overlapping => (3, 2),
            Pooling::NonOverlapping => (2, 2),
        }
    }
}

/// One module of the network.
#[derive(Debug, Clone, PartialEq)]
pub enum Module {
    /// `nn.Conv2d(cin, cout, kernel, stride, padding, groups)`; `index`: its place among
    /// the model's convolutions (conv1 = 0).
    Conv {
        index: usize,
        cin: usize,
        cout: usize,
        kernel: usize,
        stride: usize,
        pad: usize,
        groups: usize,
    },
    Act(Activation),
    /// `LocalResponseNorm(5, alpha, 0.75, 2)` within each of `towers` groups of maps.
    Lrn {
        towers: usize,
        alpha: f64,
    },
    MaxPool {
        kernel: usize,
        stride: usize,
    },
    /// torchvision's `AdaptiveAvgPool2d((6, 6))` (owt's `avgpool`).
    AdaptiveAvgPool(usize),
    /// A switched-off layer (no LRN): `nn.Identity`, keeping the other layers' indices.
    Identity,
    Dropout(f64),
    /// `nn.Linear(input, output)`; `index`: its place among the linears (fc6 = 0).
    Linear {
        index: usize,
        input: usize,
        output: usize,
    },
}

/// A module with its PyTorch name and a short label (`conv2`, `lrn1`, `fc6`).
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    /// `features.4`, `classifier.0`, `avgpool`.
    pub path: String,
    pub label: String,
    pub module: Module,
}

impl Layer {
    /// Weights and biases.
    pub fn parameters(&self) -> u64 {
        match self.module {
            Module::Conv { cin, cout, kernel, groups, .. } => (cin / groups * kernel * kernel * cout + cout) as u64,
            Module::Linear { input, output, .. } => (input * output + output) as u64,
            _ => 0,
        }
    }

    /// The output shape (without the batch) of an input of shape `input` ([C, H, W],
    /// or [F] in the classifier, whose first linear flattens its input).
    pub fn output_shape(&self, input: &[usize]) -> Vec<usize> {
        let side = |n: usize, f: usize, p: usize, s: usize| (n + 2 * p).saturating_sub(f) / s + 1;
        match (&self.module, input) {
            (Module::Conv { cout, kernel, stride, pad, .. }, [_, h, w]) => {
                vec![*cout, side(*h, *kernel, *pad, *stride), side(*w, *kernel, *pad, *stride)]
            }
            (Module::MaxPool { kernel, stride }, [c, h, w]) => {
                vec![*c, side(*h, *kernel, 0, *stride), side(*w, *kernel, 0, *stride)]
            }
            (Module::AdaptiveAvgPool(s), [c, _, _]) => vec![*c, *s, *s],
            (Module::Linear { output, .. }, _) => vec![*output],
            (_, shape) if self.path == "classifier.0" => vec![shape.iter().product()],
            _ => input.to_vec(),
        }
    }

    /// Multiply-adds of one image producing `output`: a convolution's
    /// `H_out W_out C_out (C_in / groups) k^2`, a linear's `in x out`; the other layers
    /// (activations, LRN, pooling, bias additions) are not counted.
    pub fn multiply_adds(&self, output: &[usize]) -> u64 {
        match self.module {
            Module::Conv { cin, kernel, groups, .. } => {
                (output.iter().product::<usize>() * (cin / groups) * kernel * kernel) as u64
            }
            Module::Linear { input, output, .. } => (input * output) as u64,
            _ => 0,
        }
    }
}

/// The channels of conv1..conv5, the fc width and the convolutions' groups of a paper
/// variant.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PaperDims {
    pub chans: [usize; 5],
    pub fc: usize,
    pub groups: [usize; 5],
}

impl ModelConfig {
    /// conv1..conv5 channels, fc width and groups of the paper model: the two-tower net
    /// (96-256-384-384-256, `groups = 2` on conv2, conv4 and conv5), or the one-GPU net
    /// of section 3.2 (one tower: half the kernels in every convolution but the last,
    /// 48-128-192-192-256, and the full fully connected layers; the paper's footnote),
    /// each scaled by `width` (convolutions to even counts).
    pub(crate) fn paper_dims(&self) -> PaperDims {
        let even = |c: f64| 2.max(2 * super::round_half_even(c * self.width / 2.0)) as usize;
        let base =
            if self.towers == 1 { [48.0, 128.0, 192.0, 192.0, 256.0] } else { [96.0, 256.0, 384.0, 384.0, 256.0] };
        let g = self.towers;
        PaperDims {
            chans: base.map(even),
            fc: 1.max(super::round_half_even(4096.0 * self.width)) as usize,
            groups: [1, g, 1, g, g],
        }
    }

    /// Every module in the order of the forward pass, under its PyTorch name.
    pub fn layers(&self) -> Vec<Layer> {
        let mut out = Vec::new();
        let mut push =
            |path: String, label: &str, module: Module| out.push(Layer { path, label: label.into(), module });
        let f = |i: usize| format!("features.{i}");
        let c = |i: usize| format!("classifier.{i}");
        let conv = |index, cin, cout, kernel, stride, pad, groups| Module::Conv {
            index,
            cin,
            cout,
            kernel,
            stride,
            pad,
            groups,
        };
        let nc = self.num_classes;
        match self.arch {
            Arch::Paper => {
                let PaperDims { chans: [c1, c2, c3, c4, c5], fc, groups: g } = self.paper_dims();
                let act = Module::Act(self.activation);
                let lrn = if self.lrn {
                    Module::Lrn { towers: self.lrn_towers, alpha: self.lrn_alpha }
                } else {
                    Module::Identity
                };
                let (pk, ps) = self.pooling.geometry();
                let pool = Module::MaxPool { kernel: pk, stride: ps };
                push(f(0), "conv1", conv(0, 3, c1, 11, 4, 0, g[0]));
                push(f(1), "act1", act.clone());
                push(f(2), "lrn1", lrn.clone());
                push(f(3), "pool1", pool.clone());
                push(f(4), "conv2", conv(1, c1, c2, 5, 1, 2, g[1]));
                push(f(5), "act2", act.clone());
                push(f(6), "lrn2", lrn);
                push(f(7), "pool2", pool.clone());
                push(f(8), "conv3", conv(2, c2, c3, 3, 1, 1, g[2]));
                push(f(9), "act3", act.clone());
                push(f(10), "conv4", conv(3, c3, c4, 3, 1, 1, g[3]));
                push(f(11), "act4", act.clone());
                push(f(12), "conv5", conv(4, c4, c5, 3, 1, 1, g[4]));
                push(f(13), "act5", act.clone());
                push(f(14), "pool5", pool);
                let side = self.feature_side();
                push(c(0), "fc6", Module::Linear { index: 0, input: c5 * side * side, output: fc });
                push(c(1), "act6", act.clone());
                push(c(2), "drop6", Module::Dropout(self.dropout));
                push(c(3), "fc7", Module::Linear { index: 1, input: fc, output: fc });
                push(c(4), "act7", act);
                push(c(5), "drop7", Module::Dropout(self.dropout));
                push(c(6), "fc8", Module::Linear { index: 2, input: fc, output: nc });
            }
            Arch::Owt => {
                let relu = Module::Act(Activation::Relu);
                let pool = Module::MaxPool { kernel: 3, stride: 2 };
                push(f(0), "conv1", conv(0, 3, 64, 11, 4, 2, 1));
                push(f(1), "act1", relu.clone());
                push(f(2), "pool1", pool.clone());
                push(f(3), "conv2", conv(1, 64, 192, 5, 1, 2, 1));
                push(f(4), "act2", relu.clone());
                push(f(5), "pool2", pool.clone());
                push(f(6), "conv3", conv(2, 192, 384, 3, 1, 1, 1));
                push(f(7), "act3", relu.clone());
                push(f(8), "conv4", conv(3, 384, 256, 3, 1, 1, 1));
                push(f(9), "act4", relu.clone());
                push(f(10), "conv5", conv(4, 256, 256, 3, 1, 1, 1));
                push(f(11), "act5", relu.clone());
                push(f(12), "pool5", pool);
                push("avgpool".into(), "avgpool", Module::AdaptiveAvgPool(6));
                push(c(0), "drop6", Module::Dropout(self.dropout));
                push(c(1), "fc6", Module::Linear { index: 0, input: 256 * 36, output: 4096 });
                push(c(2), "act6", relu.clone());
                push(c(3), "drop7", Module::Dropout(self.dropout));
                push(c(4), "fc7", Module::Linear { index: 1, input: 4096, output: 4096 });
                push(c(5), "act7", relu);
                push(c(6), "fc8", Module::Linear { index: 2, input: 4096, output: nc });
            }
        }
        out
    }

    /// This paper model under every combination of the architectural switches
    /// (activation, LRN, pooling, towers): 16 models, this one first when it is the
    /// paper's. (Dropout changes no shape or logit.)
    pub fn switch_combinations(&self) -> Vec<ModelConfig> {
        let mut out = Vec::new();
        for towers in [2, 1] {
            for activation in [Activation::Relu, Activation::Tanh] {
                for lrn in [true, false] {
                    for pooling in [Pooling::Overlapping, Pooling::NonOverlapping] {
                        let lrn_towers = if towers == 1 { 1 } else { self.lrn_towers };
                        out.push(ModelConfig { towers, activation, lrn, pooling, lrn_towers, ..self.clone() });
                    }
                }
            }
        }
        out
    }

    /// A short name of the switches that differ from the paper's (`paper` when none):
    /// `tanh-nolrn-pool2-1tower`.
    pub fn variant_name(&self) -> String {
        let mut parts = Vec::new();
        if self.activation == Activation::Tanh {
            parts.push("tanh");
        }
        if !self.lrn && self.arch == Arch::Paper {
            parts.push("nolrn");
        }
        if self.pooling == Pooling::NonOverlapping {
            parts.push("pool2");
        }
        if self.towers == 1 && self.arch == Arch::Paper {
            parts.push("1tower");
        }
        if parts.is_empty() {
            self.arch.name().to_string()
        } else {
            parts.join("-")
        }
    }

    /// Each layer with its output shape (one `crop` x `crop` image, without the batch).
    pub fn layer_shapes(&self) -> Vec<(Layer, Vec<usize>)> {
        self.layer_shapes_at(self.crop, self.crop)
    }

    /// [`ModelConfig::layer_shapes`] of a `height` x `width` input (the classifier's
    /// input size holds only for the crop).
    pub fn layer_shapes_at(&self, height: usize, width: usize) -> Vec<(Layer, Vec<usize>)> {
        let mut shape = vec![3, height, width];
        self.layers()
            .into_iter()
            .map(|l| {
                shape = l.output_shape(&shape);
                (l, shape.clone())
            })
            .collect()
    }

    /// Side of the last feature map (pool5) for this crop: conv1 (11x11, stride 4,
    /// padding 0 in the paper net, 2 in owt), then three max pools (3x3/2, or the paper
    /// variant's 2x2/2). (owt then pools it adaptively to 6x6 whatever the crop.)
    pub fn feature_side(&self) -> usize {
        let pad = if self.arch == Arch::Owt { 2 } else { 0 };
        let (k, s) = if self.arch == Arch::Owt { (3, 2) } else { self.pooling.geometry() };
        let mut side = (self.crop + 2 * pad).saturating_sub(11) / 4 + 1; // conv1
        for _ in 0..3 {
            side = side.saturating_sub(k) / s + 1; // pool1, pool2, pool5
        }
        side
    }

    /// The number of weights and biases of the model this builds.
    pub fn parameter_count(&self) -> u64 {
        self.layers().iter().map(Layer::parameters).sum()
    }

    /// Multiply-adds of the forward pass of one `crop` x `crop` image
    /// ([`Layer::multiply_adds`]: convolutions and linears).
    pub fn multiply_adds(&self) -> u64 {
        self.layer_shapes().iter().map(|(l, s)| l.multiply_adds(s)).sum()
    }
}
