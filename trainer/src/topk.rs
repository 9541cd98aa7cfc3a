//! Top-k classes and accuracy with a deterministic tie rule.

use anyhow::{ensure, Result};
use tch::{Kind, Tensor};

/// The `k` best classes of each row of `scores` [N, C], best first; equal scores are
/// ordered by lower class index. `k` is clipped to C. Returns [N, min(k, C)] int64.
pub fn topk_classes(scores: &Tensor, k: usize) -> Result<Tensor> {
    let size = scores.size();
    ensure!(size.len() == 2, "scores must be [N, C], got {size:?}");
    let c = size[1];
    ensure!(c > 0, "scores have no classes");
    let k = (k as i64).min(c);
    // A stable descending sort keeps equal scores in index order.
    let (_, idx) = scores.f_to_kind(Kind::Double)?.f_sort_stable(true, 1, true)?;
    Ok(idx.f_narrow(1, 0, k)?)
}

/// Number of rows whose label is in their top-k, for k = 1 and k = 5.
pub fn correct_top1_top5(scores: &Tensor, labels: &Tensor) -> Result<(i64, i64)> {
    let top = topk_classes(scores, 5)?;
    let labels = labels.f_to_kind(Kind::Int64)?.f_unsqueeze(1)?;
    let hits = top.f_eq_tensor(&labels)?;
    let top1 = hits.f_narrow(1, 0, 1)?.f_sum(Kind::Int64)?.f_int64_value(&[])?;
    let top5 = hits.f_sum(Kind::Int64)?.f_int64_value(&[])?;
    Ok((top1, top5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_go_to_the_lower_index() {
        // torch: torch.tensor([[0.1, 0.3, 0.3, 0.2, 0.3, 0.0]]).sort(descending=True, stable=True).indices
        //        -> [[1, 2, 4, 3, 0, 5]]
        let s = Tensor::from_slice(&[0.1f32, 0.3, 0.3, 0.2, 0.3, 0.0]).view([1, 6]);
        let t = topk_classes(&s, 5).unwrap();
        assert_eq!(Vec::<i64>::try_from(t.view([-1])).unwrap(), [1, 2, 4, 3, 0]);
    }

    #[test]
    fn fewer_than_five_classes_and_one_image() {
        let s = Tensor::from_slice(&[0.2f32, 0.5, 0.3]).view([1, 3]);
        assert_eq!(topk_classes(&s, 5).unwrap().size(), [1, 3]);
        let (t1, t5) = correct_top1_top5(&s, &Tensor::from_slice(&[2i64])).unwrap();
        assert_eq!((t1, t5), (0, 1));
        let (t1, t5) = correct_top1_top5(&s, &Tensor::from_slice(&[1i64])).unwrap();
        assert_eq!((t1, t5), (1, 1));
    }

    #[test]
    fn counts_over_a_batch() {
        // Two rows of 6 classes: row 0 best is 5, row 1 best is 0 and label 4 is 6th.
        let s = Tensor::from_slice(&[
            0.0f32, 0.1, 0.2, 0.3, 0.4, 0.5, //
            0.9, 0.8, 0.7, 0.6, 0.0, 0.5,
        ])
        .view([2, 6]);
        let (t1, t5) = correct_top1_top5(&s, &Tensor::from_slice(&[5i64, 4])).unwrap();
        assert_eq!((t1, t5), (1, 1));
    }
}
