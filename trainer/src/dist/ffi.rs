//! The C functions of `csrc/dist_shim.cpp`. Every fallible one returns NULL on success
//! or a malloc'ed one-line message, freed with [`alexnet_dist_free_string`]. Tensors
//! are passed as tch's `Tensor::as_ptr` (a `torch::Tensor*`, torch-sys's own
//! representation); the shim does not take ownership.

use std::os::raw::{c_char, c_int, c_void};

/// A `c10d::Store` (a `PrefixStore` over a `TCPStore`).
#[repr(C)]
pub struct RawStore {
    _private: [u8; 0],
}

/// A `c10d::Backend` (`ProcessGroupGloo` or `ProcessGroupNCCL`).
#[repr(C)]
pub struct RawGroup {
    _private: [u8; 0],
}

/// A `c10d::Reducer` over a model's parameters.
#[repr(C)]
pub struct RawOverlap {
    _private: [u8; 0],
}

extern "C" {
    pub fn alexnet_dist_free_string(s: *mut c_char);
    pub fn alexnet_dist_has_nccl() -> c_int;
    pub fn alexnet_dist_store_new(
        host: *const c_char,
        port: u16,
        is_server: c_int,
        world: c_int,
        timeout_ms: i64,
        prefix: *const c_char,
        listen_fd: c_int,
        out: *mut *mut RawStore,
    ) -> *mut c_char;
    pub fn alexnet_dist_store_free(s: *mut RawStore);
    pub fn alexnet_dist_gloo_new(
        store: *mut RawStore,
        rank: c_int,
        world: c_int,
        timeout_ms: i64,
        threads: c_int,
        out: *mut *mut RawGroup,
    ) -> *mut c_char;
    pub fn alexnet_dist_nccl_new(
        store: *mut RawStore,
        rank: c_int,
        world: c_int,
        timeout_ms: i64,
        device: c_int,
        out: *mut *mut RawGroup,
    ) -> *mut c_char;
    pub fn alexnet_dist_group_free(g: *mut RawGroup, abort: c_int) -> *mut c_char;
    pub fn alexnet_dist_all_reduce(
        g: *mut RawGroup,
        tensors: *const *const c_void,
        n: usize,
        op: c_int,
        timeout_ms: i64,
    ) -> *mut c_char;
    pub fn alexnet_dist_broadcast(
        g: *mut RawGroup,
        tensors: *const *const c_void,
        n: usize,
        root: c_int,
        timeout_ms: i64,
    ) -> *mut c_char;
    pub fn alexnet_dist_barrier(g: *mut RawGroup, timeout_ms: i64) -> *mut c_char;
    pub fn alexnet_dist_reducer_new(
        g: *mut RawGroup,
        params: *const *const c_void,
        n: usize,
        bucket_bytes: i64,
        first_bucket_bytes: i64,
        out: *mut *mut RawOverlap,
    ) -> *mut c_char;
    pub fn alexnet_dist_reducer_prepare(o: *mut RawOverlap) -> *mut c_char;
    pub fn alexnet_dist_reducer_buckets(o: *mut RawOverlap) -> usize;
    pub fn alexnet_dist_reducer_free(o: *mut RawOverlap) -> *mut c_char;
}
