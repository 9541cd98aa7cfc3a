//! The four-layer convolutional net of Figure 1, modelled on cuda-convnet's CIFAR-10
//! net (`layers-80sec.cfg`): three 5x5 convolutions of 32, 32 and 64 maps, each
//! followed by the activation and a 3x3 stride-2 max pool, then one fully connected
//! layer to the classes. Choices (the paper gives none): padding 2 in every
//! convolution (a 5x5 convolution keeps the side), PyTorch's floor arithmetic in the
//! pools (`floor((n - 3) / 2) + 1`: 32 -> 15 -> 7 -> 3, where cuda-convnet's ceiling
//! gives 16 -> 8 -> 4), max pooling in all three (cuda-convnet averages in the last
//! two), no response normalization, no dropout and no weight decay (the figure's "no
//! regularization of any kind"), PyTorch's default initialisation (which trains both
//! units; section 5's N(0, 0.01) is for the big net). At 32x32 and 10 classes:
//! 85,098 parameters.
//!
//! The layers are [`Layer`]s of the AlexNet model ([`crate::model::layers`]), named as
//! a PyTorch `nn.Sequential` would (`features.0` ... `classifier.0`), so their shapes
//! and parameter counts come from the same arithmetic as `train describe`.

use tch::nn::{self, Module as _};
use tch::{TchError, Tensor};

use crate::model::{Activation, Layer, LayerModule as Module};

/// The convolutions' (output maps) of cuda-convnet's CIFAR-10 net.
pub const MAPS: [usize; 3] = [32, 32, 64];
/// Kernel side and padding of every convolution.
pub const KERNEL: usize = 5;
pub const PAD: usize = 2;
/// Max pooling window and stride (the paper's overlapping pooling, section 3.4).
pub const POOL: (usize, usize) = (3, 2);

/// The net's modules in forward order, for `side` x `side` RGB inputs.
pub fn layers(side: usize, classes: usize, activation: Activation) -> Vec<Layer> {
    let mut out = Vec::new();
    let mut cin = 3;
    let mut shape = vec![3, side, side];
    for (i, &cout) in MAPS.iter().enumerate() {
        let base = 3 * i;
        let n = i + 1;
        let conv = Module::Conv { index: i, cin, cout, kernel: KERNEL, stride: 1, pad: PAD, groups: 1 };
        for (j, (label, module)) in [
            (format!("conv{n}"), conv),
            (format!("act{n}"), Module::Act(activation)),
            (format!("pool{n}"), Module::MaxPool { kernel: POOL.0, stride: POOL.1 }),
        ]
        .into_iter()
        .enumerate()
        {
            let l = Layer { path: format!("features.{}", base + j), label, module };
            shape = l.output_shape(&shape);
            out.push(l);
        }
        cin = cout;
    }
    let input = shape.iter().product();
    out.push(Layer {
        path: "classifier.0".into(),
        label: "fc".into(),
        module: Module::Linear { index: 0, input, output: classes },
    });
    out
}

/// Every layer with its output shape (without the batch) for a `side` x `side` input.
pub fn layer_shapes(side: usize, classes: usize, activation: Activation) -> Vec<(Layer, Vec<usize>)> {
    let mut shape = vec![3, side, side];
    layers(side, classes, activation)
        .into_iter()
        .map(|l| {
            shape = l.output_shape(&shape);
            (l, shape.clone())
        })
        .collect()
}

/// The number of weights and biases.
pub fn parameter_count(side: usize, classes: usize) -> u64 {
    layers(side, classes, Activation::Relu).iter().map(Layer::parameters).sum()
}

/// The net, its parameters in a `VarStore` path.
#[derive(Debug)]
pub struct SmallNet {
    layers: Vec<Layer>,
    convs: Vec<nn::Conv2D>,
    fc: nn::Linear,
}

impl SmallNet {
    /// Builds the net under `root` with PyTorch's default initialisation of `nn.Conv2d`
    /// and `nn.Linear` (weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in))), drawn
    /// from libtorch's generator: seed it first.
    pub fn new(root: &nn::Path, side: usize, classes: usize, activation: Activation) -> Result<Self, TchError> {
        let layers = layers(side, classes, activation);
        let mut convs = Vec::new();
        let mut fc = None;
        for l in &layers {
            let at = l.path.split('.').fold(root.clone(), |p, part| &p / part);
            match l.module {
                Module::Conv { cin, cout, kernel, pad, .. } => {
                    let c = nn::ConvConfig { padding: pad as i64, ..Default::default() };
                    convs.push(nn::conv2d(at, cin as i64, cout as i64, kernel as i64, c));
                }
                Module::Linear { input, output, .. } => {
                    fc = Some(nn::linear(at, input as i64, output as i64, Default::default()));
                }
                _ => {}
            }
        }
        let fc = fc.ok_or_else(|| TchError::Kind("the net has no fully connected layer".into()))?;
        let mut net = Self { layers, convs, fc };
        net.torch_default_init();
        Ok(net)
    }

    fn torch_default_init(&mut self) {
        fn init(ws: &mut Tensor, bs: Option<&mut Tensor>) {
            let fan_in: i64 = ws.size()[1..].iter().product();
            let bound = 1.0 / (fan_in as f64).sqrt();
            let _ = ws.uniform_(-bound, bound);
            if let Some(b) = bs {
                let _ = b.uniform_(-bound, bound);
            }
        }
        tch::no_grad(|| {
            for c in &mut self.convs {
                init(&mut c.ws, c.bs.as_mut());
            }
            init(&mut self.fc.ws, self.fc.bs.as_mut());
        });
    }

    /// Logits [N, classes] of a normalized batch [N, 3, side, side].
    pub fn f_forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        let mut x = x.shallow_clone();
        for l in &self.layers {
            x = match l.module {
                Module::Conv { index, pad, .. } => {
                    let c = &self.convs[index];
                    let p = pad as i64;
                    x.f_conv2d(&c.ws, c.bs.as_ref(), [1, 1], [p, p], [1, 1], 1)?
                }
                Module::Act(Activation::Relu) => x.f_relu()?,
                Module::Act(Activation::Tanh) => x.f_tanh()?,
                Module::MaxPool { kernel, stride } => {
                    let (k, s) = (kernel as i64, stride as i64);
                    x.f_max_pool2d([k, k], [s, s], [0, 0], [1, 1], false)?
                }
                Module::Linear { .. } => self.fc.forward(&x.f_flatten(1, -1)?),
                _ => x,
            };
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn shapes_and_parameters_follow_the_arithmetic_and_the_built_net() {
        let shapes: Vec<Vec<usize>> = layer_shapes(32, 10, Activation::Relu).into_iter().map(|(_, s)| s).collect();
        let want: Vec<Vec<usize>> = vec![
            vec![32, 32, 32],
            vec![32, 32, 32],
            vec![32, 15, 15],
            vec![32, 15, 15],
            vec![32, 15, 15],
            vec![32, 7, 7],
            vec![64, 7, 7],
            vec![64, 7, 7],
            vec![64, 3, 3],
            vec![10],
        ];
        assert_eq!(shapes, want);
        // conv 3*25*32+32, 32*25*32+32, 32*25*64+64; fc 576*10+10.
        assert_eq!(parameter_count(32, 10), 2432 + 25632 + 51264 + 5770);
        assert_eq!(parameter_count(32, 10), 85_098);
        let vs = nn::VarStore::new(Device::Cpu);
        tch::manual_seed(0);
        let net = SmallNet::new(&vs.root(), 32, 10, Activation::Tanh).unwrap();
        let n: i64 = vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
        assert_eq!(n as u64, parameter_count(32, 10));
        let y = net.f_forward(&Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu))).unwrap();
        assert_eq!(y.size(), [2, 10]);
        let mut names: Vec<String> = vs.variables().into_keys().collect();
        names.sort();
        assert_eq!(
            names,
            [
                "classifier.0.bias",
                "classifier.0.weight",
                "features.0.bias",
                "features.0.weight",
                "features.3.bias",
                "features.3.weight",
                "features.6.bias",
                "features.6.weight"
            ]
        );
    }
}
