//! `train check-dist`: collectives on known values, every rank checking the exact
//! result. Run where a data-parallel job will run, before it; the CI runs it with two
//! Gloo ranks on loopback. gloo's headers come from another snapshot than the gloo
//! inside libtorch (see `build.rs`): a layout mismatch would show here as wrong sums,
//! wrong elements of a non-square tensor or a crash, not as a slightly-off training run.

use std::time::Instant;

use anyhow::{ensure, Result};
use tch::{Device, Kind, Tensor};

use super::{GradBuckets, Overlap, ProcessGroup};

/// Element `i` of rank `r`'s test tensor; exact in f32 for the sizes used (< 2^24).
fn value(i: i64, r: i64) -> i64 {
    (3 * (i % 100_003) + 1) * (r + 1) + r
}

/// Sum over ranks of [`value`].
fn summed(i: i64, world: i64) -> i64 {
    (3 * (i % 100_003) + 1) * world * (world + 1) / 2 + world * (world - 1) / 2
}

fn known(shape: &[i64], kind: Kind, rank: i64, device: Device) -> Tensor {
    let n: i64 = shape.iter().product();
    let i = Tensor::arange(n, (Kind::Int64, Device::Cpu));
    let v = (&i - i.divide_scalar_mode(100_003, "floor") * 100_003) * 3 + 1;
    (v * (rank + 1) + rank).to_kind(kind).view(shape).to_device(device)
}

/// Every element of `got` equals `want(i)` exactly.
fn compare(what: &str, got: &Tensor, want: impl Fn(i64) -> f64) -> Result<()> {
    within(what, got, want, 0.0)
}

/// Every element of `got` is within `rel * |want(i)|` of `want(i)`.
fn within(what: &str, got: &Tensor, want: impl Fn(i64) -> f64, rel: f64) -> Result<()> {
    let g = Vec::<f64>::try_from(got.to_device(Device::Cpu).to_kind(Kind::Double).reshape([-1]))?;
    for (i, &x) in g.iter().enumerate() {
        let w = want(i as i64);
        ensure!((x - w).abs() <= rel * w.abs(), "{what}: element {i} is {x}, expected {w} (of {} elements)", g.len());
    }
    Ok(())
}

/// All-reduce (several kinds and shapes in one call), the bucketed gradient average
/// after and during (c10d's Reducer) a backward pass, max, broadcast from the first and
/// the last rank, and a barrier; `Err` names the first wrong element. Returns a
/// one-line summary.
pub fn self_test(pg: &ProcessGroup) -> Result<String> {
    let (r, w, dev) = (pg.rank() as i64, pg.world() as i64, pg.device());
    let cases: [(&[i64], Kind); 6] = [
        (&[1], Kind::Float),
        (&[7], Kind::Double),
        (&[3, 5], Kind::Float),
        (&[1000], Kind::Int64),
        (&[65537], Kind::Float),
        (&[17, 31, 2], Kind::Int),
    ];
    let ts: Vec<Tensor> = cases.iter().map(|(s, k)| known(s, *k, r, dev)).collect();
    pg.all_reduce_sum(&ts)?;
    for ((s, k), t) in cases.iter().zip(&ts) {
        ensure!(t.size() == s.to_vec() && t.kind() == *k, "all-reduce changed a tensor's shape or kind");
        compare(&format!("all-reduce sum of {k:?} {s:?}"), t, |i| summed(i, w) as f64)?;
    }

    // The gradient path of training: parameters with gradients (value(i, r)), averaged.
    let shapes: [&[i64]; 4] = [&[96, 3, 11, 11], &[96], &[40, 25], &[5]];
    let params: Vec<Tensor> =
        shapes.iter().map(|s| Tensor::zeros(*s, (Kind::Float, dev)).set_requires_grad(true)).collect();
    // sum(scale * p * v): its gradient is scale * v.
    let loss = |scale: f64| {
        params.iter().zip(&shapes).fold(Tensor::zeros([], (Kind::Float, dev)), |acc, (p, s)| {
            acc + (p * known(s, Kind::Float, r, dev) * scale).sum(Kind::Float)
        })
    };
    loss(1.0).backward();
    let mut buckets = GradBuckets::new(&params, 8 << 10);
    buckets.average(&params, pg)?;
    for (p, s) in params.iter().zip(&shapes) {
        compare(&format!("bucketed gradient average {s:?}"), &p.grad(), |i| summed(i, w) as f64 / w as f64)?;
    }

    // The same through c10d's Reducer (the overlapped path), two steps: the first one
    // also re-orders the buckets. It divides before summing: exact at 1, 2, 4, 8 ranks,
    // within float rounding otherwise.
    let mut overlap = Overlap::new(pg, &params, 8 << 10)?;
    for step in 0..2 {
        for p in &params {
            let _ = p.grad().zero_();
        }
        overlap.prepare()?;
        let scale = (step + 1) as f64;
        overlap.backward(&loss(scale))?;
        for (p, s) in params.iter().zip(&shapes) {
            let what = format!("gradient average during backward {s:?}, step {}", step + 1);
            within(&what, &p.grad(), |i| scale * summed(i, w) as f64 / w as f64, 1e-6)?;
        }
    }
    let reducer_buckets = overlap.buckets();
    drop(overlap);

    let m = known(&[9, 4], Kind::Double, r, dev);
    pg.all_reduce_max(std::slice::from_ref(&m))?;
    compare("all-reduce max", &m, |i| value(i, w - 1) as f64)?;

    for root in [0, w - 1] {
        let b = known(&[2, 3, 4], Kind::Float, r, dev);
        pg.broadcast(std::slice::from_ref(&b), root as usize)?;
        compare(&format!("broadcast from rank {root}"), &b, |i| value(i, root) as f64)?;
    }
    pg.barrier()?;
    Ok(format!(
        "rank {r} of {w} ({}): all-reduce sum (f32, f64, i64, i32; shapes up to 65537), gradient average after \
         backward ({}) and during it (c10d's Reducer, {}), max, broadcast and barrier gave the expected values",
        pg.backend().name(),
        plural(buckets.len(), "bucket"),
        plural(reducer_buckets, "bucket")
    ))
}

fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// Seconds per all-reduce of `mb` MiB of float32 (the median of `iters`), after two
/// warm-up calls; the gradient average of a step moves this much.
pub fn bench_all_reduce(pg: &ProcessGroup, mb: f64, iters: usize) -> Result<f64> {
    let n = (mb * (1 << 20) as f64 / 4.0) as i64;
    let t = Tensor::f_ones([n.max(1)], (Kind::Float, pg.device()))
        .map_err(|e| crate::device::torch_error(e, &format!("allocating {mb} MiB"), "lower --bench-mb"))?;
    let mut times = Vec::with_capacity(iters);
    for k in 0..iters + 2 {
        pg.barrier()?;
        let t0 = Instant::now();
        pg.all_reduce_mean(std::slice::from_ref(&t))?;
        let _ = t.double_value(&[0]); // host sync (CUDA)
        if k >= 2 {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}
