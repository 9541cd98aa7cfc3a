//! Gradients flattened into a few large buckets and averaged after the backward pass
//! (`dist.overlap = false`).

use tch::{Device, Kind, Tensor};

use super::group::{DistError, ProcessGroup};

/// Gradients of a parameter list flattened into buckets of at most `cap` bytes (one
/// parameter larger than that gets a bucket of its own), in reverse order as DDP
/// does (the last layers' gradients are ready first), grouped by device and kind.
#[derive(Debug)]
pub struct GradBuckets {
    buckets: Vec<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    flat: Tensor,
    /// (parameter index, offset, elements)
    members: Vec<(usize, i64, i64)>,
}

/// PyTorch DDP's default `bucket_cap_mb`.
pub const DEFAULT_BUCKET_BYTES: usize = 25 << 20;

impl GradBuckets {
    pub fn new(params: &[Tensor], cap: usize) -> Self {
        let mut buckets: Vec<Bucket> = Vec::new();
        // Buckets being filled: (device, kind, members, elements).
        type Open = (Device, Kind, Vec<(usize, i64, i64)>, i64);
        let mut open: Vec<Open> = Vec::new();
        let close = |(device, kind, members, n): Open| Bucket { flat: Tensor::zeros([n], (kind, device)), members };
        for (i, p) in params.iter().enumerate().rev() {
            let (device, kind, n) = (p.device(), p.kind(), p.numel() as i64);
            let bytes = n as usize * kind.elt_size_in_bytes();
            let slot = match open.iter().position(|(d, k, _, _)| *d == device && *k == kind) {
                Some(s) => s,
                None => {
                    open.push((device, kind, Vec::new(), 0));
                    open.len() - 1
                }
            };
            let used = open[slot].3 as usize * kind.elt_size_in_bytes();
            if used > 0 && used + bytes > cap {
                let full = std::mem::replace(&mut open[slot], (device, kind, Vec::new(), 0));
                buckets.push(close(full));
            }
            let o = &mut open[slot];
            o.2.push((i, o.3, n));
            o.3 += n;
        }
        buckets.extend(open.into_iter().filter(|o| o.3 > 0).map(close));
        Self { buckets }
    }

    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Replaces every parameter's gradient by its average over the ranks. A parameter
    /// without a gradient contributes zeros and stays without one.
    pub fn average(&mut self, params: &[Tensor], pg: &ProcessGroup) -> Result<(), DistError> {
        tch::no_grad(|| {
            for b in &mut self.buckets {
                for &(i, off, n) in &b.members {
                    let g = params[i].grad();
                    let mut dst = b.flat.narrow(0, off, n);
                    if g.defined() {
                        dst.copy_(&g.reshape([-1]));
                    } else {
                        let _ = dst.zero_();
                    }
                }
            }
        });
        let flats: Vec<Tensor> = self.buckets.iter().map(|b| b.flat.shallow_clone()).collect();
        pg.all_reduce_mean(&flats)?;
        tch::no_grad(|| {
            for b in &self.buckets {
                for &(i, off, n) in &b.members {
                    let mut g = params[i].grad();
                    if g.defined() {
                        let size = g.size();
                        g.copy_(&b.flat.narrow(0, off, n).view(size.as_slice()));
                    }
                }
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_hold_every_parameter_once_in_reverse_order_within_the_cap() {
        let params: Vec<Tensor> =
            [10i64, 300, 20, 5, 1000, 7].iter().map(|&n| Tensor::zeros([n], (Kind::Float, Device::Cpu))).collect();
        let b = GradBuckets::new(&params, 330 * 4);
        let layout: Vec<Vec<usize>> = b.buckets.iter().map(|b| b.members.iter().map(|m| m.0).collect()).collect();
        // 7 | 1000 alone (over the cap) | 5 20 300 | 10
        assert_eq!(layout, vec![vec![5], vec![4], vec![3, 2, 1], vec![0]]);
        for bk in &b.buckets {
            let total: i64 = bk.members.iter().map(|m| m.2).sum();
            assert_eq!(bk.flat.numel() as i64, total);
        }
    }
}
