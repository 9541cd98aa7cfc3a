//! Choosing the libtorch device. Asking for CUDA where libtorch cannot see a GPU is an
//! error, never a silent fall back to the CPU.

use anyhow::{bail, Result};
use tch::Device;

/// `cpu`, `cuda` (GPU 0, or `LOCAL_RANK` under a launcher) or `cuda:N`.
pub fn parse_device(name: &str) -> Result<Device> {
    let name = name.trim().to_ascii_lowercase();
    if name == "cpu" {
        return Ok(Device::Cpu);
    }
    let index = match name.as_str() {
        "cuda" => std::env::var("LOCAL_RANK").ok().and_then(|r| r.parse::<usize>().ok()).unwrap_or(0),
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
}
