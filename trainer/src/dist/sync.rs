//! What the ranks agree on besides the gradients: the resume position, the stop, sums
//! of counts (validation), and the weights.

use sha2::{Digest, Sha256};
use tch::{Device, Kind, Tensor};

use super::group::{DistError, ProcessGroup};

type Result<T> = std::result::Result<T, DistError>;

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

/// `values` summed over the ranks, element by element (exact for integer counts below
/// 2^53).
pub fn sum(pg: &ProcessGroup, values: &[f64]) -> Result<Vec<f64>> {
    let t = self::values(pg, values);
    pg.all_reduce_sum(std::slice::from_ref(&t))?;
    read(&t)
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
        return Err(DistError::Mismatch(format!(
            "the ranks start from different positions (rank {} at epoch {epoch} batch {batch} step {step}, rank 0 at \
             epoch {} batch {} step {}): every rank must see the same run folder (a shared filesystem)",
            pg.rank(),
            root[0],
            root[1],
            root[2]
        )));
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
        return Err(DistError::Mismatch(format!(
            "the ranks' weights differ after {when} (rank {}'s {} rank 0's): a non-deterministic reduction or a bug; \
             the last checkpoint holds rank 0's",
            pg.rank(),
            if differs { "differ from" } else { "equal" }
        )));
    }
    if pg.rank() == 0 {
        alexnet_shared::err_line!("train: weights bit-identical on all {} ranks after {when}", pg.world());
    }
    Ok(())
}
