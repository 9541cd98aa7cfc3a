//! The training step alone, the same work as `../shared/anchors/torch_alexnet_step.py`:
//! random inputs and labels, forward, cross-entropy, backward, SGD (momentum 0.9,
//! weight decay 5e-4), timed after warm-up.
//!
//! usage: cargo run --release -p trainer --example step_bench -- [--model paper|owt]
//!            [--batch 128] [--steps 10] [--warmup 3] [--threads N]

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
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    if a.threads > 0 {
        tch::set_num_threads(a.threads);
    }
    let cfg = if a.model == "owt" { ModelConfig::owt(1000) } else { ModelConfig::paper(1000) };
    let vs = VarStore::new(Device::Cpu);
    let mut model = AlexNet::new(&vs.root(), &cfg).map_err(anyhow::Error::msg)?;
    tch::manual_seed(0);
    match cfg.arch {
        Arch::Paper => model.paper_init(),
        Arch::Owt => model.torch_default_init(),
    }
    let mut sgd = Sgd::new(vs.trainable_variables(), 0.9, 5e-4);
    let side = cfg.crop as i64;
    let x = Tensor::randn([a.batch, 3, side, side], (Kind::Float, Device::Cpu));
    let y = Tensor::randint(1000, [a.batch], (Kind::Int64, Device::Cpu));
    let mut step = || {
        let loss = model.forward_t(&x, true).cross_entropy_for_logits(&y);
        sgd.zero_grad();
        loss.backward();
        sgd.step(0.01);
    };
    for _ in 0..a.warmup {
        step();
    }
    let t0 = Instant::now();
    for _ in 0..a.steps {
        step();
    }
    let dt = t0.elapsed().as_secs_f64();
    println!(
        "model={} device=cpu batch={} threads={}: {:.1} ms/step, {:.1} images/s",
        a.model,
        a.batch,
        tch::get_num_threads(),
        dt / a.steps as f64 * 1000.0,
        (a.batch as usize * a.steps) as f64 / dt
    );
    Ok(())
}
