//! `train`: AlexNet training (`train run`), the layer table of a configuration (`train
//! describe`), a device check (`train check-device`) and a data-parallel check (`train
//! check-dist`). Under torchrun or srun (RANK/WORLD_SIZE or
//! SLURM_PROCID set) `train run` is one rank of a data-parallel run. The work is in
//! [`trainer::cli`]; this file is the flags.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// `train --version`: the version, the commit it was built from, the libtorch.
static VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(trainer::provenance::version_line);

#[derive(Parser)]
#[command(name = "train", version = VERSION.as_str(), about = "AlexNet training (Krizhevsky et al. 2012) on libtorch")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train: `train run --config configs/alexnet-paper.toml --data DATASET --run-dir RUN`.
    Run {
        /// TOML preset (configs/); with --resume, the run's saved config.toml is used
        /// when this is absent.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override a config key: `--set optim.lr=0.02` (repeatable; any key, checked
        /// as in the file, recorded in RUN_DIR/config.toml). On --resume only
        /// optim.epochs, run.log_every_steps, run.checkpoint_minutes, run.keep_last,
        /// data.workers, data.prefetch and dist.timeout_s may change.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Dataset folder built by `preprocess build`.
        #[arg(long)]
        data: PathBuf,
        /// Run folder: config.toml, metrics.jsonl, checkpoints/.
        #[arg(long)]
        run_dir: PathBuf,
        /// Device: cpu, cuda (GPU 0) or cuda:N (GPU N). Under a launcher each rank uses
        /// its local GPU with cuda.
        #[arg(long, default_value = "cpu", value_name = "cpu|cuda|cuda:N")]
        device: String,
        /// Continue the run in --run-dir from its latest checkpoint.
        #[arg(long)]
        resume: bool,
        /// Stop after N steps of this process (N >= 1), with a checkpoint (as on SIGTERM).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        max_steps: Option<u64>,
        /// Start a new run from the weights of this model file (a checkpoint, or
        /// torchvision's AlexNet converted with `python -m alexnet_bridge convert`)
        /// instead of a random initialisation. The optimizer and schedule start fresh;
        /// another class count re-initializes the last layer.
        #[arg(long, value_name = "FILE", conflicts_with = "resume")]
        init: Option<PathBuf>,
        /// libtorch intra-op threads. Default under a launcher: the machine's cores
        /// divided by the ranks on it (torchrun's OMP_NUM_THREADS=1 is not used).
        #[arg(long)]
        threads: Option<i32>,
        /// Deterministic kernels on CUDA (torch.use_deterministic_algorithms with
        /// warn_only, cuDNN deterministic, no cuDNN autotuning, cuBLAS workspace
        /// config): reruns give the same weights, at some speed. The CPU is
        /// deterministic without it.
        #[arg(long)]
        deterministic: bool,
    },
    /// Check the data-parallel setup: rendezvous, then collectives on known values,
    /// checked exactly on every rank. Run it as the training will be run:
    /// `torchrun --no-python --nproc-per-node 2 train check-dist`.
    CheckDist {
        /// Device: cpu (gloo) or cuda (NCCL, each rank on its local GPU).
        #[arg(long, default_value = "cpu", value_name = "cpu|cuda|cuda:N")]
        device: String,
        /// Seconds to wait for the other ranks.
        #[arg(long, default_value_t = 60.0)]
        timeout_s: f64,
        /// Also time an all-reduce (average) of this many MiB of float32 (AlexNet's
        /// gradients: 233 MiB).
        #[arg(long)]
        bench_mb: Option<f64>,
        /// Timed all-reduces of --bench-mb (the median is reported).
        #[arg(long, default_value_t = 10)]
        bench_iters: usize,
    },
    /// The network a configuration builds, layer by layer: kernel, stride, padding,
    /// output shape, parameters and multiply-adds, and the totals (markdown on stdout):
    /// `train describe --config configs/alexnet-paper.toml --set model.towers=1`.
    Describe {
        /// TOML preset (configs/); without it, the paper's defaults.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override a config key, as for `train run` (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Output classes (ImageNet's 1000; a dataset's class count).
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        classes: u64,
        /// JSON instead of the markdown table.
        #[arg(long)]
        json: bool,
    },
    /// Runs side by side: what differs between their configs, best and last val top-1 /
    /// top-5 error, ten-crop errors (an `eval score --json` report of ten crops in the
    /// run folder), epochs, wall time and the paper's claimed difference for a switch
    /// (the first run is the baseline). Markdown on stdout.
    Compare {
        /// Run folders (`train run --run-dir`), the baseline first.
        #[arg(required = true, num_args = 2..)]
        runs: Vec<PathBuf>,
        /// CSV instead of markdown.
        #[arg(long, conflicts_with = "json")]
        csv: bool,
        /// JSON instead of markdown.
        #[arg(long)]
        json: bool,
        /// Also draw the runs' curves overlaid into this PNG.
        #[arg(long)]
        plot: Option<PathBuf>,
        /// Runs that differ only in run.seed are one variant: one row each, with the
        /// mean and spread over its seeds and its difference from the baseline.
        #[arg(long, conflicts_with = "csv")]
        by_seed: bool,
    },
    /// The paper's Figure 1 (section 3.1): a four-layer net on the dataset's train images
    /// scaled down to 32x32, trained with ReLU and with tanh (no regularization), each
    /// at the fastest learning rate of a small grid; when each reached 25% training
    /// error, their ratio, and the figure. Writes OUT/figure1.{json,md,png}; the table
    /// on stdout.
    Figure1 {
        /// Dataset folder built by `preprocess build` (any image size; CIFAR-10 as
        /// printed).
        #[arg(long)]
        data: PathBuf,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// The most epochs of one run.
        #[arg(long, default_value_t = 40.0)]
        epochs: f64,
        /// Images per step.
        #[arg(long, default_value_t = 128)]
        batch: usize,
        /// Learning rates tried with ReLU (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "0.01,0.02,0.05")]
        lr_relu: Vec<f64>,
        /// Learning rates tried with tanh (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "0.01,0.02,0.05")]
        lr_tanh: Vec<f64>,
        /// The training error the runs race to.
        #[arg(long, default_value_t = 0.25)]
        target: f64,
        /// Measurements of the training error per epoch.
        #[arg(long, default_value_t = 4)]
        evals_per_epoch: usize,
        /// Training images the error is measured on (a fixed sample).
        #[arg(long, default_value_t = 10_000)]
        measure_images: usize,
        /// Use only the first N train images.
        #[arg(long)]
        max_images: Option<usize>,
        /// Seed of the initial weights (the same for every run) and of the batch order.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Device: cpu, cuda (GPU 0) or cuda:N.
        #[arg(long, default_value = "cpu", value_name = "cpu|cuda|cuda:N")]
        device: String,
        /// libtorch intra-op threads (and image-loading threads).
        #[arg(long)]
        threads: Option<i32>,
    },
    /// Check that libtorch works on a device: cpu, cuda or cuda:N.
    CheckDevice {
        /// Device: cpu, cuda (GPU 0) or cuda:N (GPU N).
        #[arg(long, default_value = "cpu", value_name = "cpu|cuda|cuda:N")]
        device: String,
    },
}

fn main() -> ExitCode {
    // No panic reaches the user: one `error:` line (see alexnet_shared::guard). Exit
    // codes: trainer::cli::exit.
    alexnet_shared::guard::main_guard(|| run(Cli::parse()).map(ExitCode::from))
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Run { config, sets, data, run_dir, device, resume, max_steps, init, threads, deterministic } => {
            let req = trainer::cli::RunRequest {
                config,
                sets,
                data,
                run_dir,
                device,
                resume,
                max_steps,
                init,
                threads,
                deterministic,
            };
            let out = trainer::cli::train(&req)?;
            if out.main {
                alexnet_shared::out_line!("{}", out.summary);
            }
            return Ok(out.exit_code);
        }
        Command::CheckDist { device, timeout_s, bench_mb, bench_iters } => {
            for line in trainer::cli::check_dist(&device, timeout_s, bench_mb, bench_iters)? {
                alexnet_shared::out_line!("{line}");
            }
        }
        Command::CheckDevice { device } => alexnet_shared::out_line!("{}", trainer::cli::check_device(&device)?),
        Command::Compare { runs, csv, json, plot, by_seed } => {
            let r = trainer::compare::compare(&runs)?;
            if let Some(p) = &plot {
                trainer::compare::write_plot(&r, p)?;
                alexnet_shared::err_line!("train: wrote {}", p.display());
            }
            let text = if by_seed {
                let v = trainer::compare::seeds::by_seed(&r);
                if json {
                    serde_json::to_string_pretty(&v)?
                } else {
                    trainer::compare::seeds::markdown(&v)
                }
            } else if json {
                serde_json::to_string_pretty(&r)?
            } else if csv {
                trainer::compare::csv(&r)
            } else {
                trainer::compare::markdown(&r)
            };
            alexnet_shared::out_line!("{text}");
        }
        Command::Figure1 {
            data,
            out,
            epochs,
            batch,
            lr_relu,
            lr_tanh,
            target,
            evals_per_epoch,
            measure_images,
            max_images,
            seed,
            device,
            threads,
        } => {
            let cfg = trainer::figure1::Figure1Config {
                epochs,
                batch,
                lr_relu,
                lr_tanh,
                target,
                evals_per_epoch,
                measure_images,
                max_images,
                seed,
                ..Default::default()
            };
            let device = trainer::device::parse_device(&device)?;
            if let Some(t) = threads {
                anyhow::ensure!(t >= 1, "--threads must be at least 1");
                tch::set_num_threads(t);
            }
            let loaders = std::thread::available_parallelism().map_or(1, |n| n.get());
            let report = trainer::figure1::run(&data, &cfg, device, threads.map_or(loaders, |t| t as usize))?;
            for p in trainer::figure1::write(&report, &out)? {
                alexnet_shared::err_line!("train: wrote {}", p.display());
            }
            alexnet_shared::out_line!("{}", report.markdown());
        }
        Command::Describe { config, sets, classes, json } => {
            let d = trainer::describe::from_config(config.as_deref(), &sets, classes as usize)?;
            let text = if json { serde_json::to_string_pretty(&d)? } else { d.markdown() };
            alexnet_shared::out_line!("{text}");
        }
    }
    Ok(trainer::cli::exit::FINISHED)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// First-use review: flags without help text. Every argument of every subcommand
    /// has some (clap's own --help and --version aside).
    #[test]
    fn every_flag_has_help_text() {
        let missing = alexnet_shared::flags_without_help(&super::Cli::command());
        assert!(missing.is_empty(), "without help: {missing:?}");
    }
}
