//! The training step alone, the same work as `../shared/anchors/torch_alexnet_step.py`:
//! random inputs and labels, forward, cross-entropy, backward, SGD (momentum 0.9,
//! weight decay 5e-4), timed after warm-up.
//!
//! usage: cargo run --release -p trainer --example step_bench -- [--model paper|owt]
//!            [--batch 128] [--steps 10] [--warmup 3] [--threads N] [--device cpu|cuda]
//!            [--amp] [--channels-last]
//!
//! `--amp`: the forward pass and loss under bf16 autocast (`run.precision = "bf16"`);
//! `--channels-last`: NHWC conv weights and input (`run.channels_last`), as the
//! anchor's flags of the same names.

use std::time::Instant;

use clap::Parser;
use tch::{nn::VarStore, Device, Kind, Tensor};
use trainer::model::{AlexNet, Arch, ModelConfig};
use trainer::sgd::Sgd;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "paper")]
    model: String,
    #[arg(long, default_value_t = 128)]
    batch: i64,
    #[arg(long, default_value_t = 10)]
    steps: usize,
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    #[arg(long, default_value_t = 0)]
    threads: i32,
    #[arg(long, default_value = "cpu")]
    device: String,
    #[arg(long)]
    amp: bool,
    #[arg(long)]
    channels_last: bool,
}

fn nhwc(t: &Tensor) -> Tensor {
    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    if a.threads > 0 {
        tch::set_num_threads(a.threads);
    }
    let cfg = if a.model == "owt" { ModelConfig::owt(1000) } else { ModelConfig::paper(1000) };
    let dev = trainer::device::parse_device(&a.device)?;
    let vs = VarStore::new(dev);
    let mut model = AlexNet::new(&vs.root(), &cfg).map_err(anyhow::Error::msg)?;
    tch::manual_seed(0);
    match cfg.arch {
        Arch::Paper => model.paper_init(),
        Arch::Owt => model.torch_default_init(),
    }
    if a.channels_last {
        tch::no_grad(|| {
            for (_, mut v) in vs.variables() {
                if v.dim() == 4 {
                    v.set_data(&nhwc(&v));
                }
            }
        });
    }
    let mut sgd = Sgd::new(vs.trainable_variables(), 0.9, 5e-4);
    let side = cfg.crop as i64;
    let mut x = Tensor::randn([a.batch, 3, side, side], (Kind::Float, dev));
    if a.channels_last {
        x = nhwc(&x);
    }
    let y = Tensor::randint(1000, [a.batch], (Kind::Int64, dev));
    let sync = || {
        if let Device::Cuda(i) = dev {
            tch::Cuda::synchronize(i as i64);
        }
    };
    let mut step = || -> anyhow::Result<()> {
        let forward = || model.forward_t(&x, true).cross_entropy_for_logits(&y);
        let loss =
            if a.amp { trainer::ext::autocast_bf16(dev, forward).map_err(anyhow::Error::msg)? } else { forward() };
        sgd.zero_grad();
        loss.backward();
        sgd.step(0.01);
        Ok(())
    };
    for _ in 0..a.warmup {
        step()?;
    }
    sync();
    let t0 = Instant::now();
    for _ in 0..a.steps {
        step()?;
    }
    sync();
    let dt = t0.elapsed().as_secs_f64();
    println!(
        "model={} device={} batch={} amp={} channels_last={} threads={}: {:.1} ms/step, {:.1} images/s",
        a.model,
        a.device,
        a.batch,
        a.amp,
        a.channels_last,
        tch::get_num_threads(),
        dt / a.steps as f64 * 1000.0,
        (a.batch as usize * a.steps) as f64 / dt
    );
    Ok(())
}
