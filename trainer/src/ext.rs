//! libtorch switches that tch 0.24 does not reach, through `csrc/ext.cpp`: autocast in
//! bfloat16 (tch's `autocast` enables CUDA autocast in its default dtype, float16, and
//! not at all on the CPU) and `torch.use_deterministic_algorithms`.

use std::ffi::{c_char, c_int, CStr};

use tch::Device;

extern "C" {
    fn alexnet_autocast_enter(cuda: c_int, bf16: c_int, err: *mut c_char, len: usize) -> c_int;
    fn alexnet_autocast_exit(cuda: c_int, was_enabled: c_int, err: *mut c_char, len: usize) -> c_int;
    fn alexnet_autocast_is_enabled(cuda: c_int) -> c_int;
    fn alexnet_set_deterministic(on: c_int, err: *mut c_char, len: usize) -> c_int;
    fn alexnet_deterministic_algorithms() -> c_int;
}

/// A libtorch switch that failed, with libtorch's message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ExtError(pub String);

fn call(f: impl FnOnce(*mut c_char, usize) -> c_int) -> Result<(), ExtError> {
    let mut buf = vec![0 as c_char; 1024];
    if f(buf.as_mut_ptr(), buf.len()) == 0 {
        Ok(())
    } else {
        // SAFETY: the C side always NUL-terminates within the buffer.
        Err(ExtError(unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned()))
    }
}

/// Runs `f` with autocast on `device` in bfloat16, as PyTorch's
/// `with torch.autocast(device.type, dtype=torch.bfloat16)`: convolutions and matrix
/// products in bf16, reductions, softmax and losses in float32. The autocast state
/// found on entry is restored after `f`.
pub fn autocast_bf16<T>(device: Device, f: impl FnOnce() -> T) -> Result<T, ExtError> {
    let cuda = c_int::from(device.is_cuda());
    // SAFETY: plain calls into libtorch; errors come back as messages.
    let was = unsafe { alexnet_autocast_is_enabled(cuda) };
    call(|e, n| unsafe { alexnet_autocast_enter(cuda, 1, e, n) })?;
    let out = f();
    call(|e, n| unsafe { alexnet_autocast_exit(cuda, was, e, n) })?;
    Ok(out)
}

/// Whether autocast is on for `device` at this point.
pub fn autocast_enabled(device: Device) -> bool {
    // SAFETY: reads a thread-local flag of libtorch.
    unsafe { alexnet_autocast_is_enabled(c_int::from(device.is_cuda())) != 0 }
}

/// `torch.use_deterministic_algorithms(on, warn_only=True)` with cuDNN's deterministic
/// mode and no cuDNN autotuning. On CUDA, cuBLAS also needs
/// `CUBLAS_WORKSPACE_CONFIG=:4096:8` in the environment before its first use (the
/// `train` binary sets it).
pub fn set_deterministic(on: bool) -> Result<(), ExtError> {
    // SAFETY: sets flags of libtorch's global context.
    call(|e, n| unsafe { alexnet_set_deterministic(c_int::from(on), e, n) })
}

pub fn deterministic() -> bool {
    // SAFETY: reads a flag of libtorch's global context.
    unsafe { alexnet_deterministic_algorithms() != 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    #[test]
    fn bf16_autocast_on_the_cpu_runs_convolutions_in_bf16_and_restores_the_state() {
        tch::manual_seed(3);
        let x = Tensor::randn([2, 3, 19, 23], (Kind::Float, Device::Cpu));
        let w = Tensor::randn([8, 3, 5, 5], (Kind::Float, Device::Cpu)) * 0.1;
        let full = x.conv2d(&w, None::<Tensor>, [2, 2], [0, 0], [1, 1], 1);
        assert!(!autocast_enabled(Device::Cpu));
        let (kind, half, inside) = autocast_bf16(Device::Cpu, || {
            let y = x.conv2d(&w, None::<Tensor>, [2, 2], [0, 0], [1, 1], 1);
            (y.kind(), y.to_kind(Kind::Float), autocast_enabled(Device::Cpu))
        })
        .unwrap();
        assert!(inside);
        assert_eq!(kind, Kind::BFloat16, "autocast did not reach the convolution");
        assert!(!autocast_enabled(Device::Cpu), "the state on entry is restored");
        // bf16 keeps 8 bits of mantissa: relative error about 2^-8 per input rounding.
        let err = (&half - &full).abs().max().double_value(&[]);
        let scale = full.abs().max().double_value(&[]);
        assert!(err > 0.0 && err < 0.03 * scale, "bf16 error {err} of {scale}");
        // Outside the region: float32 again.
        assert_eq!(x.conv2d(&w, None::<Tensor>, [2, 2], [0, 0], [1, 1], 1).kind(), Kind::Float);
    }

    #[test]
    fn the_deterministic_switch_reaches_libtorch() {
        set_deterministic(true).unwrap();
        assert!(deterministic());
        set_deterministic(false).unwrap();
        assert!(!deterministic());
    }
}
