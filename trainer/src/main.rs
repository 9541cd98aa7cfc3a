//! `train`: AlexNet training (`train run`), and a device check (`train check-device`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tch::{Kind, Tensor};

#[derive(Parser)]
#[command(name = "train", version, about = "AlexNet training (Krizhevsky et al. 2012) on libtorch")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train: `train run --config configs/alexnet-paper.toml --data DATASET --run-dir RUN`.
    Run {
        /// TOML preset (configs/); with --resume, the run's saved config.toml is used.
        #[arg(long)]
        config: Option<std::path::PathBuf>,
        /// Dataset folder built by `preprocess build`.
        #[arg(long)]
        data: std::path::PathBuf,
        /// Run folder: config.toml, metrics.jsonl, checkpoints/.
        #[arg(long)]
        run_dir: std::path::PathBuf,
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Continue the run in --run-dir from its latest checkpoint.
        #[arg(long)]
        resume: bool,
        /// Stop after N steps of this process, with a checkpoint (as on SIGTERM).
        #[arg(long)]
        max_steps: Option<u64>,
        /// libtorch intra-op threads (torchrun sets OMP_NUM_THREADS=1: set it here).
        #[arg(long)]
        threads: Option<i32>,
    },
    /// Check that libtorch works on a device: cpu, cuda or cuda:N.
    CheckDevice {
        #[arg(long, default_value = "cpu")]
        device: String,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run { config, data, run_dir, device, resume, max_steps, threads } => {
            use anyhow::Context;
            let saved = run_dir.join("config.toml");
            let path = match (&config, resume && saved.exists()) {
                (_, true) => saved,
                (Some(c), false) => c.clone(),
                (None, false) => anyhow::bail!("give --config (a preset from configs/), or --resume a run"),
            };
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let cfg = trainer::config::TrainConfig::from_toml(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            if let Some(t) = threads {
                tch::set_num_threads(t);
            }
            let opts = trainer::train::RunOptions {
                data,
                run_dir,
                device: trainer::device::parse_device(&device)?,
                resume,
                max_steps,
            };
            let s = trainer::train::run(&cfg, &opts)?;
            match (s.val_top1, s.val_top5) {
                (Some(t1), Some(t5)) => println!(
                    "epochs {} steps {}: val top-1 {:.2}% top-5 {:.2}% (error {:.2}% / {:.2}%); checkpoint {}",
                    s.epochs_done,
                    s.global_step,
                    100.0 * t1,
                    100.0 * t5,
                    100.0 * (1.0 - t1),
                    100.0 * (1.0 - t5),
                    s.last_checkpoint.display()
                ),
                _ => println!("stopped at step {}; checkpoint {}", s.global_step, s.last_checkpoint.display()),
            }
            Ok(())
        }
        Command::CheckDevice { device } => {
            let dev = trainer::device::parse_device(&device)?;
            tch::manual_seed(0);
            // conv1 of the paper on one 227x227 image: [1, 96, 55, 55]
            let x = Tensor::f_randn([1, 3, 227, 227], (Kind::Float, dev))?;
            let w = Tensor::f_randn([96, 3, 11, 11], (Kind::Float, dev))?;
            let y = x.f_conv2d(&w, None::<Tensor>, [4, 4], [0, 0], [1, 1], 1)?;
            let m = Tensor::f_randn([256, 256], (Kind::Float, dev))?;
            let s = m.f_matmul(&m)?.f_sum(Kind::Double)?.f_double_value(&[])?; // sync point
            println!(
                "device {dev:?}: conv output {:?}, matmul sum {s:.3}; CUDA available: {}, {} device(s); intra-op threads {}",
                y.size(),
                tch::Cuda::is_available(),
                tch::Cuda::device_count(),
                tch::get_num_threads()
            );
            Ok(())
        }
    }
}
