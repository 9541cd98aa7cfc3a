//! c10d's `Reducer` (the engine of PyTorch's DDP): gradients all-reduced bucket by
//! bucket while the backward pass is still running.

use tch::Tensor;

use super::ffi;
use super::group::{check, DistError, ProcessGroup};

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
                    self.pg.rank()
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
