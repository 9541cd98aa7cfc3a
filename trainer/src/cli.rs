//! What the `train` binary's subcommands do, behind its flag parsing (`main.rs`):
//! choosing the configuration of a run (a preset, `--set`, or the saved one on
//! `--resume`), the thread split under a launcher, the deterministic switches, the
//! process group, and the two checks. Each returns what the binary prints.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, ensure, Result};
use tch::{Kind, Tensor};

use crate::config::{for_run, MAX_TIMEOUT_S};
use crate::dist::{launch, Backend, Launch, ProcessGroup};
use crate::train::{run_distributed, RunOptions, StopCause, TrainSummary};

/// `train run`'s flags.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// A preset; with `--resume`, optional (the run's saved config.toml).
    pub config: Option<PathBuf>,
    /// `key=value` overrides of any config key.
    pub sets: Vec<String>,
    pub data: PathBuf,
    pub run_dir: PathBuf,
    pub device: String,
    pub resume: bool,
    pub max_steps: Option<u64>,
    /// A new run's weights from this model file (not with `resume`).
    pub init: Option<PathBuf>,
    /// libtorch intra-op threads (default under a launcher: the cores per local rank).
    pub threads: Option<i32>,
    pub deterministic: bool,
}

/// The exit codes of `train run` (README, "Exit codes"). 1 (an error), 2 (a usage
/// error, clap's) and 101 (Rust's panic, which `main_guard` turns into 1) keep their
/// usual meaning; the two stops with a checkpoint have codes of their own, so a job
/// script can tell "preempted: resume me" and "chunk done" from "finished".
pub mod exit {
    /// Every epoch done.
    pub const FINISHED: u8 = 0;
    /// An error (one `error:` line).
    pub const ERROR: u8 = 1;
    /// A usage error (clap's message and hint).
    pub const USAGE: u8 = 2;
    /// Stopped by `--max-steps`, with a checkpoint. Under torchrun's agent 0 instead:
    /// torchrun takes any other code for a failure and restarts the workers.
    pub const MAX_STEPS: u8 = 3;
    /// Stopped by SIGTERM, SIGINT or SIGUSR1, with a checkpoint: resume with
    /// `--resume` (sysexits' EX_TEMPFAIL, "try again later").
    pub const STOPPED: u8 = 75;
}

/// What `train run` ends with.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    pub summary: TrainSummary,
    /// Rank 0 (or a single process): it prints the summary.
    pub main: bool,
    /// The process's exit code ([`exit`]); the same on every rank.
    pub exit_code: u8,
}

/// The exit code of a run that ended as `s` says; `under_agent`: a worker of torchrun's
/// agent.
pub fn exit_code(s: &TrainSummary, under_agent: bool) -> u8 {
    match s.stopped_by {
        None => exit::FINISHED,
        Some(StopCause::Signal) => exit::STOPPED,
        Some(StopCause::MaxSteps) if under_agent => exit::FINISHED,
        Some(StopCause::MaxSteps) => exit::MAX_STEPS,
    }
}

/// Runs `train run`: the summary (printed by rank 0 only) and the exit code.
pub fn train(req: &RunRequest) -> Result<TrainOutcome> {
    // Before any other thread starts (libtorch's, the loaders', gloo's): see stop_signals.
    crate::train::stop_signals().map_err(|e| anyhow!("taking SIGINT/SIGTERM: {e}"))?;
    let (cfg, changes) = for_run(req.config.as_deref(), &req.sets, &req.run_dir, req.resume)?;
    let launch = launch::from_env().map_err(|e| anyhow!("launch: {e}"))?;
    let main = launch.as_ref().is_none_or(|l| l.rank == 0);
    if main {
        for c in &changes {
            alexnet_shared::err_line!("train: --resume: {c} applied (saved in the run's config.toml)");
        }
    }
    if req.deterministic {
        // cuBLAS reads this when it creates its first handle: before any CUDA work.
        if std::env::var_os("CUBLAS_WORKSPACE_CONFIG").is_none() {
            std::env::set_var("CUBLAS_WORKSPACE_CONFIG", ":4096:8");
        }
        crate::ext::set_deterministic(true).map_err(|e| anyhow!("--deterministic: {e}"))?;
    }
    let device = crate::device::parse_device(&req.device)?;
    if let Some(t) = req.threads.or_else(|| launch.as_ref().map(per_rank_threads)) {
        ensure!(t >= 1, "--threads must be at least 1");
        tch::set_num_threads(t);
    }
    // Under a launcher even one rank gets its process group (to measure it).
    let pg = match &launch {
        Some(l) => {
            alexnet_shared::err_line!(
                "train: {l}; {} intra-op threads, {} loader workers",
                tch::get_num_threads(),
                cfg.data.workers
            );
            Some(ProcessGroup::connect(l, device, Duration::from_secs_f64(cfg.dist.timeout_s))?)
        }
        None => None,
    };
    let opts = RunOptions {
        data: req.data.clone(),
        run_dir: req.run_dir.clone(),
        device,
        resume: req.resume,
        max_steps: req.max_steps,
        init: req.init.clone(),
    };
    let summary = run_distributed(&cfg, &opts, pg.as_ref())?;
    let under_agent = launch.as_ref().is_some_and(|l| l.agent_store);
    let exit_code = exit_code(&summary, under_agent);
    if main && under_agent && summary.stopped_by == Some(StopCause::MaxSteps) {
        alexnet_shared::err_line!(
            "train: stopped by --max-steps: exit code 0 under torchrun (3 elsewhere), which restarts a failed worker"
        );
    }
    Ok(TrainOutcome { summary, main, exit_code })
}

/// Intra-op threads of one rank: the cores of this machine shared by its ranks
/// (`LOCAL_WORLD_SIZE`, or Slurm's tasks per node; one rank when neither says).
fn per_rank_threads(l: &Launch) -> i32 {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    (cores / l.local_world.unwrap_or(1).max(1)).max(1) as i32
}

/// `train check-dist`: the self-test's line, and with `bench_mb` the all-reduce's
/// time and bus bandwidth (rank 0's lines; the other ranks get none).
pub fn check_dist(device: &str, timeout_s: f64, bench_mb: Option<f64>, bench_iters: usize) -> Result<Vec<String>> {
    let launch = launch::from_env()
        .map_err(|e| anyhow!("launch: {e}"))?
        .ok_or_else(|| anyhow!("launch: no RANK/WORLD_SIZE or SLURM_PROCID: start it with torchrun or srun"))?;
    let device = crate::device::parse_device(device)?;
    ensure!(
        timeout_s.is_finite() && (1.0..=MAX_TIMEOUT_S).contains(&timeout_s),
        "--timeout-s must be between 1 and {MAX_TIMEOUT_S} (30 days)"
    );
    let pg = ProcessGroup::connect(&launch, device, Duration::from_secs_f64(timeout_s))?;
    let mut lines = vec![format!("check-dist: {}", crate::dist::check::self_test(&pg)?)];
    if let Some(mb) = bench_mb {
        ensure!(
            mb > 0.0 && mb <= 65536.0 && bench_iters >= 1,
            "--bench-mb must be in (0, 65536] and --bench-iters at least 1"
        );
        let s = crate::dist::check::bench_all_reduce(&pg, mb, bench_iters)?;
        // Bus bandwidth as NCCL's tests define it for all-reduce: 2 (n - 1) / n bytes per byte.
        let n = pg.world() as f64;
        let busbw = mb * (1 << 20) as f64 * 2.0 * (n - 1.0) / n / s / 1e9;
        lines.push(format!(
            "check-dist: all-reduce of {mb} MiB float32 over {} ranks ({}): {:.2} ms (median of {bench_iters}), bus \
             bandwidth {busbw:.2} GB/s",
            pg.world(),
            pg.backend().name(),
            s * 1e3
        ));
    }
    Ok(if pg.rank() == 0 { lines } else { lines.into_iter().take(1).collect() })
}

/// `train check-device`: conv1 of the paper and a matrix product on the device.
pub fn check_device(device: &str) -> Result<String> {
    let dev = crate::device::parse_device(device)?;
    tch::manual_seed(0);
    // conv1 of the paper on one 227x227 image: [1, 96, 55, 55]
    let x = Tensor::f_randn([1, 3, 227, 227], (Kind::Float, dev))?;
    let w = Tensor::f_randn([96, 3, 11, 11], (Kind::Float, dev))?;
    let y = x.f_conv2d(&w, None::<Tensor>, [4, 4], [0, 0], [1, 1], 1)?;
    let m = Tensor::f_randn([256, 256], (Kind::Float, dev))?;
    let s = m.f_matmul(&m)?.f_sum(Kind::Double)?.f_double_value(&[])?; // sync point
    Ok(format!(
        "device {dev:?}: conv output {:?}, matmul sum {s:.3}; CUDA available: {}, {} device(s); intra-op threads {}; \
         NCCL data parallel {}",
        y.size(),
        tch::Cuda::is_available(),
        tch::Cuda::device_count(),
        tch::get_num_threads(),
        if Backend::nccl_built() { "built in" } else { "not built in" }
    ))
}
