//! The training step alone, the same work as `../shared/anchors/torch_alexnet_step.py`:
//! random inputs and labels through the trainer's own step ([`Learner::step`]: forward,
//! cross-entropy, backward, SGD with momentum 0.9 and weight decay 5e-4), timed after
//! warm-up.
//!
//! usage: cargo run --release -p trainer --example step_bench -- [--model paper|owt]
//!            [--batch 128] [--steps 10] [--warmup 3] [--threads N] [--device cpu|cuda]
//!            [--amp] [--channels-last] [--json]
//!
//! `--amp`: the forward pass and loss under bf16 autocast (`run.precision = "bf16"`);
//! `--channels-last`: NHWC conv weights and input (`run.channels_last`), as the
//! anchor's flags of the same names. `--json`: one JSON object on stdout
//! (`ms_per_step`, `images_per_s` and the settings) instead of the line.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use clap::Parser;
use tch::{Device, Kind, Tensor};
use trainer::config::{Precision, TrainConfig};
use trainer::model::Arch;
use trainer::train::step::{nhwc, Learner};

#[derive(Parser)]
struct Args {
    #[arg(long, value_enum, default_value = "paper")]
    model: Arch,
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
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct Report {
    model: &'static str,
    device: String,
    batch: i64,
    amp: bool,
    channels_last: bool,
    threads: i32,
    steps: usize,
    ms_per_step: f64,
    images_per_s: f64,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    if a.threads > 0 {
        tch::set_num_threads(a.threads);
    }
    let dev = trainer::device::parse_device(&a.device)?;
    // The preset's model at 1000 classes, the anchor's SGD (momentum 0.9, wd 5e-4).
    let mut cfg = TrainConfig::default();
    cfg.model.arch = a.model;
    cfg.model.crop = if a.model == Arch::Owt { 224 } else { 227 };
    cfg.model.lrn_towers = if a.model == Arch::Owt { 1 } else { 2 };
    cfg.optim.paper_init = a.model == Arch::Paper;
    cfg.run.channels_last = a.channels_last;
    cfg.run.precision = if a.amp { Precision::Bf16 } else { Precision::Fp32 };
    let mut learner = Learner::new(&cfg, 1000, dev)?;
    let side = cfg.model.crop as i64;
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
    let stop = AtomicBool::new(false);
    let mut step = |k: usize| learner.step(&x, &y, 0.01, k as u64, &stop, k as u64).map(|_| ());
    for k in 0..a.warmup {
        step(k)?;
    }
    sync();
    let t0 = Instant::now();
    for k in 0..a.steps {
        step(a.warmup + k)?;
    }
    sync();
    let dt = t0.elapsed().as_secs_f64();
    let r = Report {
        model: a.model.name(),
        device: a.device.clone(),
        batch: a.batch,
        amp: a.amp,
        channels_last: a.channels_last,
        threads: tch::get_num_threads(),
        steps: a.steps,
        ms_per_step: dt / a.steps as f64 * 1000.0,
        images_per_s: (a.batch as usize * a.steps) as f64 / dt,
    };
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "model={} device={} batch={} amp={} channels_last={} threads={}: {:.1} ms/step, {:.1} images/s",
            r.model, r.device, r.batch, r.amp, r.channels_last, r.threads, r.ms_per_step, r.images_per_s
        );
    }
    Ok(())
}
