//! Data-parallel training through libtorch's c10d: one process per GPU (or per CPU
//! process in tests), gradients averaged by the same collectives PyTorch's DDP uses.
//!
//! - [`launch`]: who this process is (torchrun's or Slurm's variables).
//! - [`ProcessGroup`]: a `TCPStore` rendezvous and a c10d process group
//!   (`ProcessGroupGloo` on the CPU, `ProcessGroupNCCL` on CUDA), with all-reduce,
//!   broadcast and barrier on tch tensors, each bounded by a timeout. Reached through
//!   the C++ shim `csrc/dist_shim.cpp` (see `build.rs`).
//! - [`Overlap`]: c10d's Reducer (DDP's engine): gradients averaged bucket by bucket
//!   during the backward pass.
//! - [`GradBuckets`]: gradients flattened into a few large buckets and averaged after
//!   the backward pass (`dist.overlap = false`).
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use trainer::dist::{launch, ProcessGroup};
//! let l = launch::from_env().map_err(anyhow::Error::msg)?.expect("started by torchrun");
//! let pg = ProcessGroup::connect(&l, tch::Device::Cpu, std::time::Duration::from_secs(60))?;
//! let t = tch::Tensor::from_slice(&[pg.rank() as f32]);
//! pg.all_reduce_sum(&[t.shallow_clone()])?; // 0 + 1 + ... + (world - 1)
//! # Ok(()) }
//! ```

pub mod check;
pub mod ffi;
pub mod launch;
pub mod sync;

use std::cell::Cell;
use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int, c_void};
use std::time::Duration;

use tch::{Device, Kind, Tensor};

pub use launch::Launch;
pub use sync::{
    agree, any, broadcast_params, check_same_position, check_same_weights, resolve_config, sum_counts, warmup_lr,
};

/// The collective engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `ProcessGroupGloo`: CPU tensors, TCP. No average: sum, then divide.
    Gloo,
    /// `ProcessGroupNCCL`: CUDA tensors of this rank's GPU.
    Nccl,
}

impl Backend {
    pub fn for_device(device: Device) -> Self {
        if device.is_cuda() {
            Backend::Nccl
        } else {
            Backend::Gloo
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Gloo => "gloo",
            Backend::Nccl => "nccl",
        }
    }

    /// Whether this binary was built with `ProcessGroupNCCL` (see `build.rs`).
    pub fn nccl_built() -> bool {
        // SAFETY: no arguments, no state.
        unsafe { ffi::alexnet_dist_has_nccl() != 0 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DistError {
    #[error("rendezvous at {addr}:{port} failed ({what}): {message}")]
    Rendezvous { addr: String, port: u16, what: String, message: String },
    #[error(
        "{op} failed on rank {rank} of {world} (another rank died or hung past the {timeout_s} s timeout, or the \
         network failed): {message}"
    )]
    Collective { op: &'static str, rank: usize, world: usize, timeout_s: u64, message: String },
    #[error("{0}")]
    Usage(String),
}

/// Takes a message returned by the shim (NULL: success).
fn check(raw: *mut c_char) -> Result<(), String> {
    if raw.is_null() {
        return Ok(());
    }
    // SAFETY: the shim returns NULL or a NUL-terminated malloc'ed string it gives up.
    let msg = unsafe { CStr::from_ptr(raw) }.to_string_lossy().into_owned();
    // SAFETY: freed once, with the allocator that made it.
    unsafe { ffi::alexnet_dist_free_string(raw) };
    Err(msg)
}

/// A c10d process group with its store. Collectives are blocking and in place; each
/// fails after the group's timeout rather than waiting forever. After a failure the
/// group is not used again (every later call fails at once) and is not torn down on
/// drop (its threads may still wait on a dead peer; the process is about to exit).
pub struct ProcessGroup {
    store: *mut ffi::RawStore,
    group: *mut ffi::RawGroup,
    rank: usize,
    world: usize,
    backend: Backend,
    device: Device,
    timeout: Duration,
    failed: Cell<bool>,
}

impl std::fmt::Debug for ProcessGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProcessGroup({}, rank {} of {})", self.backend.name(), self.rank, self.world)
    }
}

impl ProcessGroup {
    /// Rendezvous through the `TCPStore` of `launch` (hosted here on rank 0 without
    /// torchrun's agent), then the process group for tensors on `device` (Gloo on the
    /// CPU, NCCL on CUDA). Both wait at most `timeout` for the other ranks.
    pub fn connect(launch: &Launch, device: Device, timeout: Duration) -> Result<Self, DistError> {
        let backend = Backend::for_device(device);
        if backend == Backend::Nccl && !Backend::nccl_built() {
            return Err(DistError::Usage(
                "this train binary was built without NCCL (no CUDA/NCCL headers at build time): rebuild where the \
                 nvidia-cuda-crt, nvidia-cuda-cccl and nvidia-nccl wheels are installed beside torch"
                    .into(),
            ));
        }
        let timeout_ms = timeout.as_millis().min(i64::MAX as u128) as i64;
        let host =
            CString::new(launch.master_addr.as_str()).map_err(|_| DistError::Usage("MASTER_ADDR holds NUL".into()))?;
        let prefix = CString::new(launch.store_prefix.as_str()).map_err(|_| DistError::Usage("bad prefix".into()))?;
        let rendezvous = |what: &str, message: String| DistError::Rendezvous {
            addr: launch.master_addr.clone(),
            port: launch.master_port,
            what: what.to_string(),
            message,
        };
        let mut store = std::ptr::null_mut();
        // SAFETY: valid C strings for the call; `store` receives an owned pointer or NULL.
        check(unsafe {
            ffi::alexnet_dist_store_new(
                host.as_ptr(),
                launch.master_port,
                launch.hosts_store() as c_int,
                launch.world as c_int,
                timeout_ms,
                prefix.as_ptr(),
                &mut store,
            )
        })
        .map_err(|m| {
            rendezvous(if launch.hosts_store() { "hosting the TCPStore" } else { "joining the TCPStore" }, m)
        })?;
        let mut group = std::ptr::null_mut();
        // SAFETY: `store` is the live store made above; `group` receives an owned pointer or NULL.
        let made = check(unsafe {
            match backend {
                Backend::Gloo => ffi::alexnet_dist_gloo_new(
                    store,
                    launch.rank as c_int,
                    launch.world as c_int,
                    timeout_ms,
                    2,
                    &mut group,
                ),
                Backend::Nccl => ffi::alexnet_dist_nccl_new(
                    store,
                    launch.rank as c_int,
                    launch.world as c_int,
                    timeout_ms,
                    match device {
                        Device::Cuda(i) => i as c_int,
                        _ => 0,
                    },
                    &mut group,
                ),
            }
        });
        if let Err(m) = made {
            // SAFETY: made above, not shared.
            unsafe { ffi::alexnet_dist_store_free(store) };
            return Err(rendezvous(&format!("creating the {} process group", backend.name()), m));
        }
        Ok(Self {
            store,
            group,
            rank: launch.rank,
            world: launch.world,
            backend,
            device,
            timeout,
            failed: Cell::new(false),
        })
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn world(&self) -> usize {
        self.world
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Where this group's tensors live.
    pub fn device(&self) -> Device {
        self.device
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn call(&self, op: &'static str, f: impl FnOnce(i64) -> *mut c_char) -> Result<(), DistError> {
        let err = |message: String| DistError::Collective {
            op,
            rank: self.rank,
            world: self.world,
            timeout_s: self.timeout.as_secs(),
            message,
        };
        if self.failed.get() {
            return Err(err("an earlier collective of this group failed".into()));
        }
        let r = check(f(self.timeout.as_millis().min(i64::MAX as u128) as i64));
        if r.is_err() {
            self.failed.set(true);
        }
        r.map_err(err)
    }

    /// The error of collective `op` that failed with `message`; the group is not used
    /// again.
    fn fail(&self, op: &'static str, message: String) -> DistError {
        self.failed.set(true);
        DistError::Collective { op, rank: self.rank, world: self.world, timeout_s: self.timeout.as_secs(), message }
    }

    fn pointers(tensors: &[Tensor]) -> Vec<*const c_void> {
        tensors.iter().map(|t| t.as_ptr() as *const c_void).collect()
    }

    /// Sums each tensor across ranks, in place.
    pub fn all_reduce_sum(&self, tensors: &[Tensor]) -> Result<(), DistError> {
        self.all_reduce(tensors, 0, "all-reduce")
    }

    /// Element-wise maximum across ranks, in place.
    pub fn all_reduce_max(&self, tensors: &[Tensor]) -> Result<(), DistError> {
        self.all_reduce(tensors, 2, "all-reduce (max)")
    }

    /// Averages each tensor across ranks, in place (NCCL's AVG; Gloo: sum, then divide).
    pub fn all_reduce_mean(&self, tensors: &[Tensor]) -> Result<(), DistError> {
        match self.backend {
            Backend::Nccl => self.all_reduce(tensors, 1, "all-reduce (average)"),
            Backend::Gloo => {
                self.all_reduce(tensors, 0, "all-reduce")?;
                tch::no_grad(|| {
                    for t in tensors {
                        let _ = t.shallow_clone().g_div_scalar_(self.world as f64);
                    }
                });
                Ok(())
            }
        }
    }

    fn all_reduce(&self, tensors: &[Tensor], op: c_int, name: &'static str) -> Result<(), DistError> {
        let ptrs = Self::pointers(tensors);
        // SAFETY: the group is live; the pointers are tch tensors borrowed for the call.
        self.call(name, |ms| unsafe { ffi::alexnet_dist_all_reduce(self.group, ptrs.as_ptr(), ptrs.len(), op, ms) })
    }

    /// Overwrites each tensor with rank `root`'s, in place.
    pub fn broadcast(&self, tensors: &[Tensor], root: usize) -> Result<(), DistError> {
        let ptrs = Self::pointers(tensors);
        // SAFETY: as in all_reduce.
        self.call("broadcast", |ms| unsafe {
            ffi::alexnet_dist_broadcast(self.group, ptrs.as_ptr(), ptrs.len(), root as c_int, ms)
        })
    }

    /// Returns when every rank has called it.
    pub fn barrier(&self) -> Result<(), DistError> {
        // SAFETY: the group is live.
        self.call("barrier", |ms| unsafe { ffi::alexnet_dist_barrier(self.group, ms) })
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if self.failed.get() {
            return; // see the type's doc: left to the process exit
        }
        // SAFETY: owned pointers, freed once; the group before the store it uses.
        unsafe {
            let _ = check(ffi::alexnet_dist_group_free(self.group, 0));
            ffi::alexnet_dist_store_free(self.store);
        }
    }
}

/// c10d's `Reducer`, the engine of PyTorch's `DistributedDataParallel`, over a model's
/// parameters: armed before a step ([`Overlap::prepare`]), it all-reduces each bucket of
/// gradients as soon as the backward pass has produced it, while the earlier layers'
/// gradients are still being computed, and leaves every gradient averaged over the
/// ranks when `backward` returns. Buckets are sized as DDP sizes them (a small first
/// one, then `cap` bytes), re-ordered once after the first step in the order the
/// gradients arrived (agreed with rank 0). Every parameter must get a gradient in every
/// step (as `find_unused_parameters=False`).
pub struct Overlap<'a> {
    raw: *mut ffi::RawOverlap,
    pg: &'a ProcessGroup,
}

/// PyTorch DDP's first bucket (`dist._DEFAULT_FIRST_BUCKET_BYTES`).
pub const FIRST_BUCKET_BYTES: usize = 1 << 20;

impl<'a> Overlap<'a> {
    pub fn new(pg: &'a ProcessGroup, params: &[Tensor], cap: usize) -> Result<Self, DistError> {
        let ptrs = ProcessGroup::pointers(params);
        let mut raw = std::ptr::null_mut();
        // SAFETY: the group is live; the pointers are tch tensors borrowed for the call
        // (the Reducer keeps its own references); `raw` receives an owned pointer or NULL.
        pg.call("setting up the gradient reducer", |_| unsafe {
            ffi::alexnet_dist_reducer_new(
                pg.group,
                ptrs.as_ptr(),
                ptrs.len(),
                cap as i64,
                FIRST_BUCKET_BYTES.min(cap) as i64,
                &mut raw,
            )
        })?;
        Ok(Self { raw, pg })
    }

    /// Arms the hooks for the next backward pass (call before each training step's
    /// forward pass; the first call also re-orders the buckets, a collective).
    pub fn prepare(&mut self) -> Result<(), DistError> {
        // SAFETY: `raw` is live until drop.
        self.pg.call("gradient all-reduce (preparing the step)", |_| unsafe {
            ffi::alexnet_dist_reducer_prepare(self.raw)
        })
    }

    /// The backward pass of `loss`, with the gradients averaged over the ranks on
    /// return. A failed all-reduce inside it is this group's collective error.
    pub fn backward(&mut self, loss: &Tensor) -> Result<(), DistError> {
        loss.f_backward().map_err(|e| {
            let (first, oom) = crate::device::torch_message(&e);
            if oom {
                // Not the network's fault: the other ranks will time out on this one.
                self.pg.failed.set(true);
                return DistError::Usage(format!(
                    "backward pass on rank {}: out of memory ({first}); lower optim.batch_size",
                    self.pg.rank
                ));
            }
            self.pg.fail("gradient all-reduce (during backward)", first)
        })
    }

    /// Buckets in use (after the first step's re-ordering).
    pub fn buckets(&self) -> usize {
        // SAFETY: `raw` is live.
        unsafe { ffi::alexnet_dist_reducer_buckets(self.raw) }
    }
}

impl Drop for Overlap<'_> {
    fn drop(&mut self) {
        if self.pg.failed.get() {
            return; // as ProcessGroup: left to the process exit
        }
        // SAFETY: owned, freed once, before the group it uses (it borrows it).
        let _ = check(unsafe { ffi::alexnet_dist_reducer_free(self.raw) });
    }
}

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
