//! SGD with momentum and weight decay, written as tensor ops so that the momentum
//! buffers can be saved and restored (tch's optimizer hides them).
//!
//! PyTorch's form (`torch.optim.SGD`, dampening 0, no Nesterov):
//! `g = grad + wd * w; v = m * v + g (v = g on the first step); w -= lr * v`.
//! While the learning rate is constant this equals the paper's rule (section 5),
//! `v = 0.9 v - 0.0005 e w - e g; w = w + v`, with v scaled by the learning rate.

use tch::{Kind, Tensor};

/// Momentum buffers (from an optimizer file) that do not fit the model's parameters.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BufferError {
    #[error("{buffers} momentum buffers for {params} parameters")]
    Count { buffers: usize, params: usize },
    #[error("momentum buffer {index} has shape {buffer:?}, parameter {param:?}")]
    Shape { index: usize, buffer: Vec<i64>, param: Vec<i64> },
}

#[derive(Debug)]
pub struct Sgd {
    pub momentum: f64,
    pub weight_decay: f64,
    params: Vec<Tensor>,
    /// One buffer per parameter; `None` until the first step (as PyTorch).
    buffers: Vec<Option<Tensor>>,
}

impl Sgd {
    pub fn new(params: Vec<Tensor>, momentum: f64, weight_decay: f64) -> Self {
        let n = params.len();
        Self { momentum, weight_decay, params, buffers: (0..n).map(|_| None).collect() }
    }

    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.detach_().zero_();
            }
        }
    }

    /// One update with learning rate `lr`. In place, with no parameter-sized
    /// temporaries (the weight decay is added into the gradient, which the next
    /// `zero_grad` clears; `addcmul_` with a scalar tensor stands for `add_(alpha=)`,
    /// which tch does not expose): three passes over each parameter, as PyTorch's
    /// foreach SGD.
    pub fn step(&mut self, lr: f64) {
        let Some(first) = self.params.first() else { return };
        // The two factors as 0-dim tensors, made once per step on the parameters'
        // device (not once per parameter: on CUDA each is a copy from the host).
        let scalar = |x: f64| Tensor::from(x).to_kind(first.kind()).to_device(first.device());
        let (wd, neg_lr) = (scalar(self.weight_decay), scalar(-lr));
        tch::no_grad(|| {
            for (p, buf) in self.params.iter_mut().zip(self.buffers.iter_mut()) {
                let mut g = p.grad();
                if !g.defined() {
                    continue;
                }
                if self.weight_decay != 0.0 {
                    let _ = g.addcmul_(p, &wd); // g += wd * w
                }
                let v = match buf {
                    Some(v) => {
                        let _ = v.g_mul_scalar_(self.momentum).g_add_(&g);
                        v
                    }
                    None => buf.insert(g.detach().copy()),
                };
                let _ = p.addcmul_(v, &neg_lr); // w -= lr * v
            }
        });
    }

    /// The momentum buffers (zeros where no step was taken yet), for checkpoints.
    pub fn buffers(&self) -> Vec<Tensor> {
        self.params
            .iter()
            .zip(&self.buffers)
            .map(|(p, b)| match b {
                Some(b) => b.shallow_clone(),
                None => p.zeros_like().to_kind(Kind::Float),
            })
            .collect()
    }

    /// Restores buffers saved by [`Sgd::buffers`] (`started`: whether any step ran).
    pub fn set_buffers(&mut self, buffers: Vec<Tensor>, started: bool) -> Result<(), BufferError> {
        if buffers.len() != self.params.len() {
            return Err(BufferError::Count { buffers: buffers.len(), params: self.params.len() });
        }
        for (i, (p, b)) in self.params.iter().zip(buffers).enumerate() {
            if p.size() != b.size() {
                return Err(BufferError::Shape { index: i, buffer: b.size(), param: p.size() });
            }
            self.buffers[i] = started.then(|| b.to_device(p.device()).to_kind(p.kind()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Python (torch 2.11.0):
    /// ```python
    /// w = torch.tensor([[0.5, -1.0, 2.0], [0.1, 0.0, -0.3]], requires_grad=True)
    /// opt = torch.optim.SGD([w], lr=0.1, momentum=0.9, weight_decay=0.01)
    /// grads = [[[1.0, 2.0, -1.0], [0.5, 0.5, 0.5]], [[-1.0, 0.0, 3.0], [0.2, -0.2, 1.0]],
    ///          [[0.3, 0.3, 0.3], [1.0, 1.0, 1.0]]]
    /// for i, g in enumerate(grads):
    ///     if i == 2: opt.param_groups[0]["lr"] = 0.01
    ///     w.grad = torch.tensor(g); opt.step()
    /// w.tolist(), opt.state[w]["momentum_buffer"].tolist()
    /// ```
    #[test]
    fn matches_torch_optim_sgd() {
        let w = Tensor::from_slice(&[0.5f32, -1.0, 2.0, 0.1, 0.0, -0.3]).view([2, 3]).set_requires_grad(true);
        let mut opt = Sgd::new(vec![w.shallow_clone()], 0.9, 0.01);
        let grads =
            [[1.0f32, 2.0, -1.0, 0.5, 0.5, 0.5], [-1.0, 0.0, 3.0, 0.2, -0.2, 1.0], [0.3, 0.3, 0.3, 1.0, 1.0, 1.0]];
        for (i, g) in grads.iter().enumerate() {
            opt.zero_grad();
            // d(sum(w * g))/dw = g
            (&w * Tensor::from_slice(g).view([2, 3])).sum(Kind::Float).backward();
            opt.step(if i == 2 { 0.01 } else { 0.1 });
        }
        let want_w = [0.40643319, -1.39577448, 1.86166286, -0.03110097, -0.08718801, -0.51702511];
        let want_v = [0.22173196, 1.88734007, 2.24392295, 1.58610678, 1.22380042, 2.29448175];
        let got_w = Vec::<f32>::try_from(w.detach().flatten(0, -1)).unwrap();
        let got_v = Vec::<f32>::try_from(opt.buffers()[0].flatten(0, -1)).unwrap();
        for i in 0..6 {
            assert!((got_w[i] as f64 - want_w[i]).abs() < 1e-6, "w[{i}] {} vs {}", got_w[i], want_w[i]);
            assert!((got_v[i] as f64 - want_v[i]).abs() < 1e-6, "v[{i}]");
        }
    }
}
