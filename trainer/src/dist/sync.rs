//! What the training loop agrees on across ranks: the resolved data-parallel
//! configuration, the resume position, the stop, validation counts, and the weights.

use anyhow::{bail, ensure, Result};
use sha2::{Digest, Sha256};
use tch::{Device, Kind, Tensor};

use super::ProcessGroup;
use crate::config::TrainConfig;

/// The configuration with `dist.world_size`, `dist.global_batch` and `dist.scaled_lr`
/// filled in for `world` ranks (saved as the run's config). Values already there (a
/// preset that states them, or a resumed run's saved config) must agree: a run
/// resumes with the world size it started with.
pub fn resolve_config(cfg: &TrainConfig, world: usize) -> Result<TrainConfig> {
    let d = &cfg.dist;
    if let Some(w) = d.world_size {
        ensure!(
            w == world,
            "the run's config says dist.world_size = {w} but {world} process(es) were launched: resume with {w} \
             (the world size cannot change mid-run: the epoch's slices and the learning rate depend on it), or \
             start a new run folder"
        );
    }
    let global = cfg.optim.batch_size * world;
    if let Some(g) = d.global_batch {
        ensure!(
            g == global,
            "dist.global_batch = {g}, but optim.batch_size {} (per rank) x {world} rank(s) = {global}",
            cfg.optim.batch_size
        );
    }
    let lr = cfg.optim.lr * d.lr_factor(world);
    if let Some(s) = d.scaled_lr {
        ensure!(
            (s - lr).abs() <= 1e-12 * lr.abs(),
            "dist.scaled_lr = {s}, but optim.lr {} with {:?} scaling over {world} rank(s) gives {lr}",
            cfg.optim.lr,
            d.lr_scaling
        );
    }
    let mut out = cfg.clone();
    out.dist.world_size = Some(world);
    out.dist.global_batch = Some(global);
    out.dist.scaled_lr = Some(lr);
    Ok(out)
}

/// The learning rate of one step: `epoch_lr` (scaled, after the schedule), ramped
/// linearly from `epoch_lr / factor` (the unscaled rate) during the first
/// `warmup_epochs` epochs (Goyal et al. 2017, section 2.2). `batch` of `steps` is the
/// step's place in its epoch.
pub fn warmup_lr(epoch_lr: f64, factor: f64, warmup_epochs: f64, epoch: usize, batch: usize, steps: usize) -> f64 {
    let t = epoch as f64 + batch as f64 / steps.max(1) as f64;
    if warmup_epochs <= 0.0 || t >= warmup_epochs || factor <= 1.0 {
        return epoch_lr;
    }
    epoch_lr * (1.0 / factor + (1.0 - 1.0 / factor) * t / warmup_epochs)
}

fn values(pg: &ProcessGroup, v: &[f64]) -> Tensor {
    Tensor::from_slice(v).to_device(pg.device())
}

fn read(t: &Tensor) -> Result<Vec<f64>> {
    // host sync
    Ok(Vec::<f64>::try_from(t.to_device(Device::Cpu).to_kind(Kind::Double))?)
}

/// Overwrites `params` with rank `root`'s, whatever their memory layout (channels-last
/// weights go through a contiguous copy: c10d wants dense contiguous tensors).
pub fn broadcast_params(pg: &ProcessGroup, params: &[Tensor], root: usize) -> Result<()> {
    // `contiguous` of a contiguous tensor shares its storage: written in place.
    let bufs: Vec<Tensor> = params.iter().map(|p| p.detach().contiguous()).collect();
    pg.broadcast(&bufs, root)?;
    tch::no_grad(|| {
        for (p, b) in params.iter().zip(&bufs) {
            if !p.is_contiguous() {
                p.shallow_clone().copy_(b);
            }
        }
    });
    Ok(())
}

/// The step's mean loss over the ranks and whether any rank asks to stop. A NaN loss
/// on any rank makes the mean NaN everywhere, so every rank stops at the same step.
pub fn agree(pg: &ProcessGroup, loss: f64, stop: bool) -> Result<(f64, bool)> {
    let t = values(pg, &[loss, stop as u8 as f64]);
    pg.all_reduce_sum(std::slice::from_ref(&t))?;
    let v = read(&t)?;
    Ok((v[0] / pg.world() as f64, v[1] > 0.0))
}

/// Validation counts summed over the ranks.
pub fn sum_counts(pg: &ProcessGroup, c: crate::train::ValCounts) -> Result<crate::train::ValCounts> {
    let t = values(pg, &[c.images as f64, c.top1 as f64, c.top5 as f64, c.loss_sum]);
    pg.all_reduce_sum(std::slice::from_ref(&t))?;
    let v = read(&t)?;
    Ok(crate::train::ValCounts { images: v[0] as i64, top1: v[1] as i64, top5: v[2] as i64, loss_sum: v[3] })
}

/// Fails on every rank unless all see rank 0's position (a resumed run reads the same
/// checkpoint everywhere).
pub fn check_same_position(pg: &ProcessGroup, epoch: usize, batch: usize, step: u64) -> Result<()> {
    let mine = [epoch as f64, batch as f64, step as f64];
    let t = values(pg, &mine);
    pg.broadcast(std::slice::from_ref(&t), 0)?;
    let root = read(&t)?;
    let differs = root != mine;
    if any(pg, differs)? {
        bail!(
            "the ranks start from different positions (rank {} at epoch {epoch} batch {batch} step {step}, rank 0 at \
             epoch {} batch {} step {}): every rank must see the same run folder (a shared filesystem)",
            pg.rank(),
            root[0],
            root[1],
            root[2]
        );
    }
    Ok(())
}

/// Whether `flag` holds on any rank.
pub fn any(pg: &ProcessGroup, flag: bool) -> Result<bool> {
    let t = values(pg, &[flag as u8 as f64]);
    pg.all_reduce_max(std::slice::from_ref(&t))?;
    Ok(read(&t)?[0] > 0.0)
}

/// SHA-256 of the parameters' bytes, in order.
pub fn weights_digest(params: &[Tensor]) -> Result<[u8; 32]> {
    let mut h = Sha256::new();
    let mut buf = Vec::new();
    for p in params {
        let c = p.detach().to_device(Device::Cpu).contiguous(); // host sync
        let n = c.numel();
        buf.resize(n * c.kind().elt_size_in_bytes(), 0);
        c.f_copy_data_u8(&mut buf, n)?;
        h.update(&buf);
    }
    Ok(h.finalize().into())
}

/// Fails on every rank unless the weights are bit-identical to rank 0's.
pub fn check_same_weights(pg: &ProcessGroup, params: &[Tensor], when: &str) -> Result<()> {
    let d = weights_digest(params)?;
    // 4 x 64 bits, each as two exact 32-bit halves in f64.
    let mine: Vec<f64> = d.chunks(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect();
    let t = values(pg, &mine);
    pg.broadcast(std::slice::from_ref(&t), 0)?;
    let differs = read(&t)? != mine;
    if any(pg, differs)? {
        bail!(
            "the ranks' weights differ after {when} (rank {}'s {} rank 0's): a non-deterministic reduction or a bug; \
             the last checkpoint holds rank 0's",
            pg.rank(),
            if differs { "differ from" } else { "equal" }
        );
    }
    if pg.rank() == 0 {
        eprintln!("train: weights bit-identical on all {} ranks after {when}", pg.world());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LrScaling;

    /// The demo preset with the rate these tests' numbers assume.
    fn cfg() -> TrainConfig {
        let text = std::fs::read_to_string(format!("{}/../configs/demo.toml", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let mut c = TrainConfig::from_toml(&text).unwrap();
        c.optim.lr = 0.01;
        c
    }

    #[test]
    fn the_resolved_config_records_world_global_batch_and_rate() {
        let mut c = cfg();
        c.dist.lr_scaling = LrScaling::Linear;
        let r = resolve_config(&c, 4).unwrap();
        assert_eq!((r.dist.world_size, r.dist.global_batch), (Some(4), Some(128)));
        assert!((r.dist.scaled_lr.unwrap() - 0.04).abs() < 1e-15);
        // The saved config round-trips and resolves again to itself (a resume).
        let saved = TrainConfig::from_toml(&r.to_toml()).unwrap();
        assert_eq!(resolve_config(&saved, 4).unwrap(), r);
        // Another world size is refused, naming both.
        let e = resolve_config(&saved, 2).unwrap_err().to_string();
        assert!(e.contains("dist.world_size = 4") && e.contains("2 process"), "{e}");
        c.dist.global_batch = Some(100);
        let e = resolve_config(&c, 4).unwrap_err().to_string();
        assert!(e.contains("global_batch = 100"), "{e}");
        // No scaling: the rate is optim.lr whatever the world.
        assert_eq!(resolve_config(&cfg(), 8).unwrap().dist.scaled_lr, Some(0.01));
    }

    #[test]
    fn warm_up_ramps_linearly_from_the_unscaled_rate() {
        // 8 ranks, linear scaling: 0.1 -> 0.8 over 2 epochs of 10 steps.
        let at = |e, b| warmup_lr(0.8, 8.0, 2.0, e, b, 10);
        assert!((at(0, 0) - 0.1).abs() < 1e-12);
        assert!((at(1, 0) - 0.45).abs() < 1e-12);
        assert!((at(1, 5) - (0.1 + 0.7 * 0.75)).abs() < 1e-12);
        assert_eq!(at(2, 0), 0.8);
        assert_eq!(warmup_lr(0.8, 8.0, 0.0, 0, 0, 10), 0.8);
        assert_eq!(warmup_lr(0.1, 1.0, 5.0, 0, 0, 10), 0.1);
    }
}
