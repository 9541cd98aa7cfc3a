//! The ring's buffers and what the consumer holds: a `HostBuffer` is one preallocated
//! batch (the crops as one contiguous tensor, page-locked for a CUDA device when asked,
//! and the per-crop labels, colour-noise coefficients, crop positions and rows); a
//! [`Batch`] lends it to the consumer and sends it back to the ring's free queue when
//! dropped. Nothing is allocated per image: a worker clears and refills a buffer.

use crossbeam_channel::Sender;
use tch::{Device, Kind, Tensor};

use super::augment::CropSpec;
use super::error::DataError;

/// One preallocated batch buffer.
pub(super) struct HostBuffer {
    /// u8 [capacity, crop, crop, 3] HWC crops, or f32 [capacity, 3, crop, crop].
    images: Tensor,
    float: bool,
    ptr: *mut u8,
    bytes: usize,
    pub(super) labels: Vec<i64>,
    pub(super) alphas: Vec<[f32; 3]>,
    pub(super) specs: Vec<CropSpec>,
    pub(super) rows: Vec<usize>,
    /// Rows left out of this batch because their bytes failed the check (skip mode).
    pub(super) skipped: u64,
}

// SAFETY: a HostBuffer is owned by exactly one thread at a time (it moves through the
// channels); `ptr` points into `images`' storage, which lives as long as the buffer.
unsafe impl Send for HostBuffer {}

impl HostBuffer {
    /// Room for `capacity` crops of `crop`x`crop`: float (CHW) or uint8 (HWC), in
    /// page-locked memory for `pin` (a CUDA device) when given.
    pub(super) fn new(capacity: usize, crop: usize, pin: Option<Device>, float: bool) -> Result<Self, DataError> {
        let (c, k) = (crop as i64, capacity as i64);
        let bytes = capacity * crop * crop * 3 * if float { 4 } else { 1 };
        let oom = |e: tch::TchError| {
            DataError::Config(format!(
                "a batch buffer of {capacity} crops ({:.2} GiB) could not be allocated ({}): lower the batch size",
                bytes as f64 / (1u64 << 30) as f64,
                crate::device::torch_message(&e).0
            ))
        };
        let mut images = if float {
            Tensor::f_zeros([k, 3, c, c], (Kind::Float, Device::Cpu))
        } else {
            Tensor::f_zeros([k, c, c, 3], (Kind::Uint8, Device::Cpu))
        }
        .map_err(oom)?;
        if let Some(dev) = pin {
            images = images.f_pin_memory(dev).map_err(oom)?;
        }
        let ptr = images.data_ptr() as *mut u8;
        Ok(Self {
            images,
            float,
            ptr,
            bytes,
            labels: Vec::with_capacity(capacity),
            alphas: Vec::with_capacity(capacity),
            specs: Vec::with_capacity(capacity),
            rows: Vec::with_capacity(capacity),
            skipped: 0,
        })
    }

    /// Empties the per-crop lists for a new batch (the pixels are overwritten).
    pub(super) fn clear(&mut self) {
        self.labels.clear();
        self.alphas.clear();
        self.specs.clear();
        self.rows.clear();
        self.skipped = 0;
    }

    /// Crops held: images x crops per image.
    pub(super) fn len(&self) -> usize {
        self.labels.len()
    }

    pub(super) fn pixels(&mut self) -> &mut [u8] {
        assert!(!self.float);
        // SAFETY: `ptr` is the start of a contiguous u8 tensor of `bytes` bytes that this
        // buffer owns; `&mut self` makes the slice unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.bytes) }
    }

    pub(super) fn floats(&mut self) -> &mut [f32] {
        assert!(self.float);
        // SAFETY: as for `pixels`; a float tensor's storage is aligned for f32.
        unsafe { std::slice::from_raw_parts_mut(self.ptr as *mut f32, self.bytes / 4) }
    }
}

/// A batch ready for the training loop; its buffer returns to the ring when dropped.
pub struct Batch {
    buf: Option<HostBuffer>,
    free: Sender<HostBuffer>,
    crop: usize,
}

impl Batch {
    /// Lends `buf` (filled with crops of side `crop`) until dropped, then sends it to
    /// `free`.
    pub(super) fn new(buf: HostBuffer, free: Sender<HostBuffer>, crop: usize) -> Self {
        Self { buf: Some(buf), free, crop }
    }

    fn buf(&self) -> &HostBuffer {
        self.buf.as_ref().expect("batch holds its buffer until dropped")
    }

    /// Number of crops (images x crops per image).
    pub fn len(&self) -> usize {
        self.buf().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// u8 [len, crop, crop, 3] crops (HWC), a view of the buffer: valid until the batch
    /// is dropped (copy it, or convert it with [`super::Normalizer`], before that).
    /// `None` when the workers made float crops.
    pub fn images(&self) -> Option<Tensor> {
        let b = self.buf();
        (!b.float).then(|| b.images.narrow(0, 0, self.len() as i64))
    }

    /// f32 [len, 3, crop, crop] normalized crops, a view of the buffer (valid until the
    /// batch is dropped), when the loader has a `transform`.
    pub fn floats(&self) -> Option<Tensor> {
        let b = self.buf();
        b.float.then(|| b.images.narrow(0, 0, self.len() as i64))
    }

    /// int64 `[len]` class indices (repeated for each crop of an image).
    pub fn labels(&self) -> Tensor {
        Tensor::from_slice(&self.buf().labels)
    }

    /// float [len, 3] PCA noise coefficients (zero outside training).
    pub fn alphas(&self) -> Tensor {
        let flat: Vec<f32> = self.buf().alphas.iter().flatten().copied().collect();
        Tensor::from_slice(&flat).view([self.len() as i64, 3])
    }

    /// Where each crop was taken (for the mean image and for tests).
    pub fn specs(&self) -> &[CropSpec] {
        &self.buf().specs
    }

    /// The split row of each crop.
    pub fn rows(&self) -> &[usize] {
        &self.buf().rows
    }

    pub fn crop(&self) -> usize {
        self.crop
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        if let Some(b) = self.buf.take() {
            let _ = self.free.send(b); // the loader may be gone: then the buffer is freed
        }
    }
}
