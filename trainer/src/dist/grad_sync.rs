//! How a training step's gradients become the same on every rank (`dist.overlap`):
//! nothing in one process; c10d's Reducer during the backward pass; or buckets
//! averaged after it. The training step calls [`GradSync::prepare`] before its forward
//! pass, [`GradSync::backward`] instead of `loss.backward()`, and [`GradSync::finish`]
//! before the optimizer step, whatever the choice.

use tch::Tensor;

use super::buckets::GradBuckets;
use super::group::{DistError, ProcessGroup};
use super::overlap::Overlap;

pub enum GradSync<'a> {
    /// One process: the gradients are already the ones to use.
    Local,
    /// c10d's Reducer, bucket by bucket during the backward pass.
    During(Overlap<'a>),
    /// All buckets after the backward pass (of these parameters).
    After { pg: &'a ProcessGroup, buckets: GradBuckets, params: Vec<Tensor> },
}

impl<'a> GradSync<'a> {
    /// The sync of `params` over `pg` (none: [`GradSync::Local`]), buckets of at most
    /// `bucket_bytes`. `params` in the model's forward order (conv1 first, see
    /// [`forward_order`]): the buckets are made last-first, the order in which the
    /// backward pass produces the gradients.
    pub fn new(
        pg: Option<&'a ProcessGroup>,
        params: Vec<Tensor>,
        bucket_bytes: usize,
        overlap: bool,
    ) -> Result<Self, DistError> {
        Ok(match pg {
            None => GradSync::Local,
            Some(pg) if overlap => GradSync::During(Overlap::new(pg, &params, bucket_bytes)?),
            Some(pg) => GradSync::After { pg, buckets: GradBuckets::new(&params, bucket_bytes), params },
        })
    }

    /// Before the forward pass: arms the Reducer's hooks.
    pub fn prepare(&mut self) -> Result<(), DistError> {
        match self {
            GradSync::During(r) => r.prepare(),
            _ => Ok(()),
        }
    }

    /// The backward pass of `loss` (with the Reducer: gradients averaged on return).
    pub fn backward(&mut self, loss: &Tensor) -> Result<(), DistError> {
        match self {
            GradSync::During(r) => r.backward(loss),
            _ => Ok(loss.f_backward()?),
        }
    }

    /// After the backward pass: the gradients averaged over the ranks (buckets).
    pub fn finish(&mut self) -> Result<(), DistError> {
        match self {
            GradSync::After { pg, buckets, params } => buckets.average(params, pg),
            _ => Ok(()),
        }
    }
}

/// Indices of `names` (reference_models.py's parameter names) in the model's forward
/// order: `features.N` before `classifier.N`, by layer number, weight before bias.
pub fn forward_order(names: &[String]) -> Vec<usize> {
    let key = |n: &str| {
        let mut parts = n.split('.');
        let section = match parts.next() {
            Some("features") => 0,
            Some("classifier") => 1,
            _ => 2,
        };
        let layer: usize = parts.next().and_then(|p| p.parse().ok()).unwrap_or(usize::MAX);
        (section, layer, parts.next() != Some("weight"), n.to_string())
    };
    let mut idx: Vec<usize> = (0..names.len()).collect();
    idx.sort_by_key(|&i| key(&names[i]));
    idx
}

#[cfg(test)]
mod tests {
    #[test]
    fn parameters_in_the_models_forward_order() {
        let names: Vec<String> = [
            "classifier.0.bias",
            "classifier.0.weight",
            "classifier.6.weight",
            "features.0.bias",
            "features.0.weight",
            "features.10.weight",
            "features.4.weight",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let order: Vec<&str> = super::forward_order(&names).into_iter().map(|i| names[i].as_str()).collect();
        assert_eq!(
            order,
            [
                "features.0.weight",
                "features.0.bias",
                "features.4.weight",
                "features.10.weight",
                "classifier.0.weight",
                "classifier.0.bias",
                "classifier.6.weight"
            ]
        );
    }
}
