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
//! - [`GradSync`]: the one choice between the two (or nothing, in one process) that
//!   the training step goes through.
//! - [`sync`]: what ranks agree on besides gradients: the stop, sums of counts, the
//!   start position, bit-identical weights.
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

pub mod buckets;
pub mod check;
pub mod ffi;
pub mod grad_sync;
pub mod group;
pub mod launch;
pub mod overlap;
pub mod sync;

pub use buckets::{GradBuckets, DEFAULT_BUCKET_BYTES};
pub use grad_sync::{forward_order, GradSync};
pub use group::{Backend, DistError, ProcessGroup};
pub use launch::Launch;
pub use overlap::{Overlap, FIRST_BUCKET_BYTES};
pub use sync::{agree, any, broadcast_params, check_same_position, check_same_weights, sum};
