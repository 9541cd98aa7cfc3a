//! The lines rank 0 prints when a run starts, before its first step: what runs where,
//! so that a log says it without the config at hand.
//!
//! ```text
//! train: alexnet 0.1.0 (commit 0123456789ab, libtorch 2.11.0); device cuda:0 (NVIDIA H200), CUDA 13.0, cuDNN 9.19.0
//! train: model paper, width 1, crop 227, 1000 classes: 60,965,224 parameters; precision fp32
//! train: data /data/imagenet: 1,281,167 train images (1,281,167 trained on), 50,000 val
//! train: global batch 128 (128 x 1 rank); 90 epochs; 16 intra-op threads, 8 loader workers
//! ```

use tch::Device;

use super::setup::Run;
use crate::provenance::{cuda_versions, version_line};

impl Run<'_> {
    /// The start-up lines (without the `train: ` prefix).
    pub fn banner(&self, train_rows: usize, val_rows: usize) -> Vec<String> {
        let cfg = &self.cfg;
        let (cuda, cudnn) = cuda_versions();
        let mut device = format!("device {}", device_name(self.opt.device));
        if self.opt.device.is_cuda() {
            device +=
                &format!(", CUDA {}, cuDNN {}", cuda.as_deref().unwrap_or("?"), cudnn.as_deref().unwrap_or("none"));
        }
        let params: i64 = self.learner.params.iter().map(|p| p.numel() as i64).sum();
        let m = &self.meta.model;
        vec![
            format!("alexnet {}; {device}", version_line()),
            format!(
                "model {}, width {}, crop {}, {} classes: {} parameters; precision {}",
                m.arch.name(),
                m.width,
                m.crop,
                m.num_classes,
                thousands(params as u64),
                serde_json::to_value(cfg.run.precision)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default()
            ),
            format!(
                "data {}: {} train images ({} trained on), {} val",
                self.opt.data.display(),
                thousands(train_rows as u64),
                thousands(train_rows.saturating_sub(cfg.data.holdout) as u64),
                thousands(val_rows as u64)
            ),
            format!(
                "global batch {} ({} x {} rank{}); {} epochs; {} intra-op threads, {} loader workers",
                cfg.optim.batch_size * self.world,
                cfg.optim.batch_size,
                self.world,
                if self.world == 1 { "" } else { "s" },
                cfg.optim.epochs,
                tch::get_num_threads(),
                cfg.data.workers
            ),
        ]
    }
}

/// `cuda:0 (NVIDIA H200)`, `cpu (AMD EPYC 9654)`: the device and, where it can be
/// read, its name (nvidia-smi; /proc/cpuinfo).
fn device_name(d: Device) -> String {
    let (shown, name) = match d {
        Device::Cuda(i) => (format!("cuda:{i}"), gpu_name(i)),
        _ => ("cpu".to_string(), cpu_name()),
    };
    match name {
        Some(n) => format!("{shown} ({n})"),
        None => shown,
    }
}

fn gpu_name(i: usize) -> Option<String> {
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader", "-i", &i.to_string()])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !s.is_empty()).then_some(s)
}

fn cpu_name() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("model name"))?;
    Some(line.split_once(':')?.1.trim().to_string())
}

/// `60965224` -> `60,965,224`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands_are_grouped() {
        for (n, s) in [(0, "0"), (999, "999"), (1000, "1,000"), (60965224, "60,965,224"), (1281167, "1,281,167")] {
            assert_eq!(super::thousands(n), s);
        }
    }
}
