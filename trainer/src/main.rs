//! `train`: AlexNet training (`train run`), a device check (`train check-device`) and a
//! data-parallel check (`train check-dist`). Under torchrun or srun (RANK/WORLD_SIZE or
//! SLURM_PROCID set) `train run` is one rank of a data-parallel run.

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
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Seconds to wait for the other ranks.
        #[arg(long, default_value_t = 60.0)]
        timeout_s: f64,
        /// Also time an all-reduce (average) of this many MiB of float32 (AlexNet's
        /// gradients: 233 MiB).
        #[arg(long)]
        bench_mb: Option<f64>,
        #[arg(long, default_value_t = 10)]
        bench_iters: usize,
    },
    /// Check that libtorch works on a device: cpu, cuda or cuda:N.
    CheckDevice {
        #[arg(long, default_value = "cpu")]
        device: String,
    },
}

fn main() -> ExitCode {
    // No panic reaches the user: one `error:` line (see alexnet_shared::guard).
    alexnet_shared::guard::main_guard(|| run(Cli::parse()).map(|()| ExitCode::SUCCESS))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run { config, data, run_dir, device, resume, max_steps, threads, deterministic } => {
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
            let launch = trainer::dist::launch::from_env().map_err(|e| anyhow::anyhow!("launch: {e}"))?;
            if deterministic {
                // cuBLAS reads this when it creates its first handle: before any CUDA work.
                if std::env::var_os("CUBLAS_WORKSPACE_CONFIG").is_none() {
                    std::env::set_var("CUBLAS_WORKSPACE_CONFIG", ":4096:8");
                }
                trainer::ext::set_deterministic(true).map_err(|e| anyhow::anyhow!("--deterministic: {e}"))?;
            }
            let device = trainer::device::parse_device(&device)?;
            let threads = threads.or_else(|| launch.as_ref().map(per_rank_threads));
            if let Some(t) = threads {
                anyhow::ensure!(t >= 1, "--threads must be at least 1");
                tch::set_num_threads(t);
            }
            let pg = match &launch {
                // Under a launcher even one rank gets its process group (to measure it).
                Some(l) => {
                    eprintln!(
                        "train: {l}; {} intra-op threads, {} loader workers",
                        tch::get_num_threads(),
                        cfg.data.workers
                    );
                    let timeout = std::time::Duration::from_secs_f64(cfg.dist.timeout_s);
                    Some(trainer::dist::ProcessGroup::connect(l, device, timeout)?)
                }
                _ => None,
            };
            let opts = trainer::train::RunOptions { data, run_dir, device, resume, max_steps };
            let s = trainer::train::run_distributed(&cfg, &opts, pg.as_ref())?;
            if pg.as_ref().is_some_and(|p| p.rank() != 0) {
                return Ok(()); // rank 0 prints the summary
            }
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
        Command::CheckDist { device, timeout_s, bench_mb, bench_iters } => {
            let launch =
                trainer::dist::launch::from_env().map_err(|e| anyhow::anyhow!("launch: {e}"))?.ok_or_else(|| {
                    anyhow::anyhow!("launch: no RANK/WORLD_SIZE or SLURM_PROCID: start it with torchrun or srun")
                })?;
            let device = trainer::device::parse_device(&device)?;
            let max = trainer::config::MAX_TIMEOUT_S;
            anyhow::ensure!(
                timeout_s.is_finite() && (1.0..=max).contains(&timeout_s),
                "--timeout-s must be between 1 and {max} (30 days)"
            );
            let timeout = std::time::Duration::from_secs_f64(timeout_s);
            let pg = trainer::dist::ProcessGroup::connect(&launch, device, timeout)?;
            println!("check-dist: {}", trainer::dist::check::self_test(&pg)?);
            if let Some(mb) = bench_mb {
                anyhow::ensure!(
                    mb > 0.0 && mb <= 65536.0 && bench_iters >= 1,
                    "--bench-mb must be in (0, 65536] and --bench-iters at least 1"
                );
                let s = trainer::dist::check::bench_all_reduce(&pg, mb, bench_iters)?;
                if pg.rank() == 0 {
                    // Bus bandwidth as NCCL's tests define it for all-reduce: 2 (n - 1) / n bytes per byte.
                    let n = pg.world() as f64;
                    let busbw = mb * (1 << 20) as f64 * 2.0 * (n - 1.0) / n / s / 1e9;
                    println!(
                        "check-dist: all-reduce of {mb} MiB float32 over {} ranks ({}): {:.2} ms (median of {bench_iters}), bus bandwidth {busbw:.2} GB/s",
                        pg.world(),
                        pg.backend().name(),
                        s * 1e3
                    );
                }
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
                "device {dev:?}: conv output {:?}, matmul sum {s:.3}; CUDA available: {}, {} device(s); intra-op threads {}; NCCL data parallel {}",
                y.size(),
                tch::Cuda::is_available(),
                tch::Cuda::device_count(),
                tch::get_num_threads(),
                if trainer::dist::Backend::nccl_built() { "built in" } else { "not built in" }
            );
            Ok(())
        }
    }
}

/// Intra-op threads of one rank: the cores of this machine shared by its ranks
/// (`LOCAL_WORLD_SIZE`, or Slurm's tasks per node; one rank when neither says).
fn per_rank_threads(l: &trainer::dist::Launch) -> i32 {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    (cores / l.local_world.unwrap_or(1).max(1)).max(1) as i32
}
