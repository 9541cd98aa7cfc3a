//! Choosing the libtorch device. Asking for CUDA where libtorch cannot see a GPU is an
//! error, never a silent fall back to the CPU.

use anyhow::{bail, Result};
use tch::Device;

/// `cpu`, `cuda` (GPU 0, or under a launcher the rank's local GPU: `LOCAL_RANK`, else
/// Slurm's `SLURM_LOCALID`; GPU 0 when the launcher left each rank one visible GPU) or
/// `cuda:N`.
pub fn parse_device(name: &str) -> Result<Device> {
    let name = name.trim().to_ascii_lowercase();
    if name == "cpu" {
        return Ok(Device::Cpu);
    }
    let local =
        ["LOCAL_RANK", "SLURM_LOCALID"].iter().find_map(|v| std::env::var(v).ok()?.trim().parse::<usize>().ok());
    let index = match name.as_str() {
        "cuda" => match local {
            // srun --gpus-per-task=1 (or --gpu-bind): every task sees its one GPU as 0.
            Some(_) if tch::Cuda::is_available() && tch::Cuda::device_count() == 1 => 0,
            Some(r) => r,
            None => 0,
        },
        s if s.starts_with("cuda:") => match s[5..].parse::<usize>() {
            Ok(i) => i,
            Err(_) => bail!("device {name:?}: expected cpu, cuda or cuda:N"),
        },
        _ => bail!("device {name:?}: expected cpu, cuda or cuda:N"),
    };
    if !tch::Cuda::is_available() {
        bail!(
            "--device {name}: libtorch sees no CUDA GPU (a CPU build of torch, no driver, or \
             libtorch_cuda.so not loaded). Use --device cpu, or run where a GPU is visible"
        );
    }
    let count = tch::Cuda::device_count() as usize;
    if index >= count {
        bail!("--device {name}: only {count} CUDA device(s) are visible");
    }
    Ok(Device::Cuda(index))
}

/// A libtorch error of `what` (a forward pass at some batch size, an allocation) as one
/// line: the C++ backtrace dropped, and for an allocation failure the way out.
pub fn torch_error(e: tch::TchError, what: &str, batch_hint: &str) -> anyhow::Error {
    let (first, oom) = torch_message(&e);
    if oom {
        anyhow::anyhow!("{what}: out of memory ({first}); {batch_hint}")
    } else {
        anyhow::anyhow!("{what}: {first}")
    }
}

/// A libtorch error's first line (its C++ backtrace dropped) and whether it is an
/// allocation failure (CUDA's or the CPU allocator's).
pub fn torch_message(e: &tch::TchError) -> (String, bool) {
    let msg = e.to_string();
    let first = msg.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("libtorch error");
    let first = first.strip_prefix("Internal torch error: ").unwrap_or(first);
    let oom = first.contains("out of memory") || first.contains("can't allocate memory");
    (first.to_string(), oom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_bad_names() {
        assert_eq!(parse_device("cpu").unwrap(), Device::Cpu);
        assert!(parse_device("tpu").unwrap_err().to_string().contains("expected cpu"));
        assert!(parse_device("cuda:x").is_err());
    }

    #[test]
    fn cuda_without_gpu_is_a_clear_error() {
        if tch::Cuda::is_available() {
            return; // only meaningful where there is no GPU (CI)
        }
        let e = parse_device("cuda").unwrap_err().to_string();
        assert!(e.contains("no CUDA GPU"), "{e}");
    }

    #[test]
    fn a_libtorch_allocation_failure_reads_as_one_line_with_the_way_out() {
        // 2^62 floats: no machine has them; libtorch refuses the allocation.
        let e = tch::Tensor::f_zeros([1i64 << 62], (tch::Kind::Float, Device::Cpu)).unwrap_err();
        let m = torch_error(e, "forward pass at batch 4", "lower optim.batch_size").to_string();
        assert!(m.starts_with("forward pass at batch 4: "), "{m}");
        assert!(!m.contains('\n'), "{m}");
        let shape = tch::Tensor::zeros([2, 3], (tch::Kind::Float, Device::Cpu)).f_view([7]).unwrap_err();
        let m = torch_error(shape, "reshaping", "").to_string();
        assert!(m.starts_with("reshaping: ") && m.contains("[7]") && !m.contains('\n'), "{m}");
    }
}
