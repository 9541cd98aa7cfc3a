//! A c10d process group and its `TCPStore` rendezvous, reached through the C++ shim
//! `csrc/dist_shim.cpp` (see `build.rs`): Gloo on the CPU, NCCL on CUDA, with
//! all-reduce, broadcast and barrier on tch tensors, each bounded by a timeout.

use std::cell::Cell;
use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int, c_void};
use std::time::Duration;

use tch::{Device, Tensor};

use super::ffi;
use super::launch::Launch;

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
    /// The ranks disagree (start position, weights).
    #[error("{0}")]
    Mismatch(String),
    #[error("{0}")]
    Torch(#[from] tch::TchError),
}

/// Takes a message returned by the shim (NULL: success).
pub(super) fn check(raw: *mut c_char) -> Result<(), String> {
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
    pub(super) group: *mut ffi::RawGroup,
    rank: usize,
    world: usize,
    backend: Backend,
    device: Device,
    timeout: Duration,
    pub(super) failed: Cell<bool>,
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
        // The store's server listens on MASTER_ADDR's interface only (loopback stays
        // loopback): bound here and handed over, as TCPStore would bind every interface.
        let listen_fd = if launch.hosts_store() {
            let l = std::net::TcpListener::bind((launch.master_addr.as_str(), launch.master_port)).map_err(|e| {
                rendezvous(
                    "hosting the TCPStore",
                    format!("binding {}:{}: {e}", launch.master_addr, launch.master_port),
                )
            })?;
            std::os::fd::IntoRawFd::into_raw_fd(l)
        } else {
            -1
        };
        let mut store = std::ptr::null_mut();
        // SAFETY: valid C strings for the call; `store` receives an owned pointer or NULL;
        // the server takes ownership of `listen_fd`.
        check(unsafe {
            ffi::alexnet_dist_store_new(
                host.as_ptr(),
                launch.master_port,
                launch.hosts_store() as c_int,
                launch.world as c_int,
                timeout_ms,
                prefix.as_ptr(),
                listen_fd,
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

    pub(super) fn call(&self, op: &'static str, f: impl FnOnce(i64) -> *mut c_char) -> Result<(), DistError> {
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
    pub(super) fn fail(&self, op: &'static str, message: String) -> DistError {
        self.failed.set(true);
        DistError::Collective { op, rank: self.rank, world: self.world, timeout_s: self.timeout.as_secs(), message }
    }

    pub(super) fn pointers(tensors: &[Tensor]) -> Vec<*const c_void> {
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
