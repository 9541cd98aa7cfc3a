//! Data-parallel training with two CPU ranks over Gloo on loopback, started the way
//! users start it (torchrun, and bare Slurm variables): exact collectives on known
//! values, two ranks equal to one process trained on the union of their batches, a
//! dead or hung rank failing the other within the timeout, a signal on one rank
//! stopping both at the same step, bad launches as one-line errors. Needs `torchrun` on PATH (`source scripts/setup.sh` puts the venv's first).

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alexnet_shared::{read_mean_image, Dataset, Split};
use tch::{nn::VarStore, Device, Kind, Tensor};
use trainer::checkpoint::load_model;
use trainer::config::TrainConfig;
use trainer::data::sampler::derive_seed;
use trainer::data::{Crops, LoaderConfig, Pipeline};
use trainer::model::AlexNet;
use trainer::sgd::Sgd;

const TRAIN: &str = env!("CARGO_BIN_EXE_train");
const LAUNCH_VARS: &[&str] = &[
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "TORCHELASTIC_USE_AGENT_STORE",
    "TORCHELASTIC_RESTART_COUNT",
    "SLURM_PROCID",
    "SLURM_NTASKS",
    "SLURM_LOCALID",
    "SLURM_NTASKS_PER_NODE",
    "SLURM_LAUNCH_NODE_IPADDR",
    "SLURM_JOB_ID",
];

/// 3 classes, 48 train rows (6 steps of 4 per rank and epoch with 2 ranks), 12 val rows.
fn dataset(dir: &Path) -> PathBuf {
    common::tiny_dataset(dir)
}

/// The tests' preset at a per-rank batch of 4; dropout off (its masks depend on the
/// batch split); augmentation on (its draws depend on the rank and the position, which
/// the reference reproduces). Written as the run's preset file.
fn config(dir: &Path, timeout_s: u64, epochs: usize) -> PathBuf {
    let p = dir.join(format!("tiny-{timeout_s}-{epochs}.toml"));
    let cfg = common::tiny(&[
        "model.dropout=0.0",
        "data.workers=1",
        "optim.batch_size=4",
        &format!("optim.epochs={epochs}"),
        "run.log_every_steps=1",
        &format!("dist.timeout_s={timeout_s}.0"),
        "dist.bucket_mb=0.05",
    ]);
    std::fs::write(&p, cfg.to_toml()).unwrap();
    p
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn torchrun() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("torchrun"))
        .find(|p| p.is_file())
        .expect("torchrun is not on PATH: `source scripts/setup.sh` puts the venv's bin first")
}

fn clean(mut c: Command) -> Command {
    for v in LAUNCH_VARS {
        c.env_remove(v);
    }
    c
}

/// `train ARGS` as one of two ranks under torchrun (its agent hosts the store).
fn torchrun_train(args: &[&str]) -> Output {
    let mut c = clean(Command::new(torchrun()));
    c.args(["--no-python", "--nproc-per-node", "2", "--master-addr", "127.0.0.1"])
        .args(["--master-port", &free_port().to_string(), TRAIN])
        .args(args);
    c.output().unwrap()
}

/// `train ARGS` as rank `rank` of `world`, with the variables srun gives.
fn slurm_rank(rank: usize, world: usize, port: u16, args: &[&str]) -> Command {
    let mut c = clean(Command::new(TRAIN));
    c.args(args)
        .env("SLURM_PROCID", rank.to_string())
        .env("SLURM_NTASKS", world.to_string())
        .env("SLURM_LOCALID", rank.to_string())
        .env("SLURM_NTASKS_PER_NODE", world.to_string())
        .env("SLURM_LAUNCH_NODE_IPADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string());
    c
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn weights(path: &Path, cfg: &TrainConfig) -> Vec<(String, Tensor)> {
    let mut vs = VarStore::new(Device::Cpu);
    let _m = AlexNet::new(&vs.root(), &cfg.model_config(3)).unwrap();
    load_model(path, &mut vs).unwrap();
    let mut v: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// One process, `steps` SGD steps on the union of rank 0's and rank 1's batches of
/// epoch 0 (same initial weights, same crops, flips and colour noise as the ranks).
fn one_process_on_the_union(cfg: &TrainConfig, data: &Path, steps: usize) -> Vec<(String, Tensor)> {
    let ds = Dataset::open(data).unwrap();
    let manifest = ds.manifest().clone();
    let mean = read_mean_image(&data.join(manifest.mean_image.as_ref().unwrap())).unwrap();
    let split = Arc::new(ds.split(Split::Train).unwrap());
    let mut loaders: Vec<Pipeline> = (0..2)
        .map(|rank| {
            let mut c = LoaderConfig::new(cfg.optim.batch_size, cfg.model.crop, Crops::Train);
            (c.workers, c.prefetch, c.seed, c.shuffle) = (1, 2, cfg.run.seed, cfg.data.shuffle);
            (c.flip, c.pca_noise, c.rank, c.world) = (cfg.data.flip, cfg.data.pca_noise, rank, 2);
            Pipeline::new(split.clone(), c, &manifest, Some(&mean), cfg.data.normalization, Device::Cpu).unwrap()
        })
        .collect();
    // The trainer's initialisation (train.rs).
    let vs = VarStore::new(Device::Cpu);
    let mut model = AlexNet::new(&vs.root(), &cfg.model_config(3)).unwrap();
    tch::manual_seed(derive_seed(&[cfg.run.seed, 0x1a17]) as i64);
    model.torch_default_init();
    model.set_dropout(0.0);
    let mut names: Vec<String> = vs.variables().keys().cloned().collect();
    names.sort();
    let vars = vs.variables();
    let params: Vec<Tensor> = names.iter().map(|n| vars[n].shallow_clone()).collect();
    let mut sgd = Sgd::new(params, cfg.optim.momentum, cfg.optim.weight_decay);
    for l in &mut loaders {
        assert_eq!(l.start(0), 6);
    }
    for _ in 0..steps {
        let (a, b) = (loaders[0].next_batch().unwrap().unwrap(), loaders[1].next_batch().unwrap().unwrap());
        let x = Tensor::cat(&[loaders[0].input(&a, true).unwrap(), loaders[1].input(&b, true).unwrap()], 0);
        let y = Tensor::cat(&[a.labels(), b.labels()], 0);
        let loss = model.forward_t(&x, true).cross_entropy_for_logits(&y);
        sgd.zero_grad();
        loss.backward();
        sgd.step(cfg.optim.lr);
    }
    let mut v: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn two_ranks_all_reduce_known_values_exactly() {
    let o = torchrun_train(&["check-dist", "--timeout-s", "60"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    for r in 0..2 {
        assert!(t.contains(&format!("rank {r} of 2 (gloo): all-reduce sum")), "{t}");
    }
}

#[test]
fn two_ranks_equal_one_process_on_the_union_of_their_batches() {
    tch::set_num_threads(1);
    let t = tempfile::tempdir().unwrap();
    let data = dataset(t.path());
    let cfg_path = config(t.path(), 60, 3);
    let cfg = TrainConfig::from_toml(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    const K: usize = 5; // mid-epoch: a step checkpoint
    let run_args = |dir: &Path| -> Vec<String> {
        ["run", "--config", cfg_path.to_str().unwrap(), "--data", data.to_str().unwrap()]
            .iter()
            .map(|s| s.to_string())
            .chain(["--run-dir".into(), dir.display().to_string(), "--max-steps".into(), K.to_string()])
            .collect()
    };

    // torchrun
    let dir_t = t.path().join("torchrun");
    let args = run_args(&dir_t);
    let o = torchrun_train(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains(&format!("weights bit-identical on all 2 ranks after step {K}")), "{out}");
    let ckpt = format!("checkpoints/step-{K:09}.safetensors");
    let ddp = weights(&dir_t.join(&ckpt), &cfg);

    // The same under Slurm's variables, rank 0 hosting the store, with the gradients
    // averaged after the backward pass instead of during it (c10d's Reducer): at two
    // ranks both are exact (halving is), so the weights are bit-identical.
    // (`--set`, as a user would switch it).
    let dir_s = t.path().join("slurm");
    let mut args: Vec<String> = run_args(&dir_s);
    args.extend(["--set".to_string(), "dist.overlap=false".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let port = free_port();
    let ranks: Vec<Child> = (0..2)
        .map(|r| slurm_rank(r, 2, port, &args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap())
        .collect();
    for c in ranks {
        let o = c.wait_with_output().unwrap();
        // Stopped by --max-steps: exit code 3 on every rank (0 under torchrun, above).
        assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    }
    let saved = TrainConfig::from_toml(&std::fs::read_to_string(dir_s.join("config.toml")).unwrap()).unwrap();
    assert!(!saved.dist.overlap && cfg.dist.overlap, "--set dist.overlap=false is recorded in the run's config.toml");
    let slurm = weights(&dir_s.join(&ckpt), &cfg);
    for ((n, a), (_, b)) in ddp.iter().zip(&slurm) {
        assert!(a.equal(b), "{n}: torchrun (overlapped) and srun (after backward) runs differ");
    }

    // One process on the union of the two ranks' batches: the same up to float32
    // summation order (each rank's mean gradient, averaged, vs the mean over 8).
    // Tolerance: |ddp - one| <= 1e-6 + 1e-5 |one| per element after 5 steps (measured
    // here: at most 1.5e-8).
    let one = one_process_on_the_union(&cfg, &data, K);
    let mut worst = 0f64;
    for ((n, a), (m, b)) in ddp.iter().zip(&one) {
        assert_eq!(n, m);
        let diff = (a - b).abs().max().double_value(&[]);
        let excess = ((a - b).abs() - b.abs() * 1e-5).max().double_value(&[]);
        assert!(excess <= 1e-6, "{n}: two ranks and one process differ by {diff:e}");
        worst = worst.max(diff);
        // Not trivially equal to the initial weights: the steps moved them.
        assert!(a.abs().sum(Kind::Double).double_value(&[]) > 0.0);
    }
    eprintln!("largest difference between two ranks and one process after {K} steps: {worst:e}");

    // Resumed at the world size it stopped at (other world sizes:
    // `a_run_stopped_at_two_ranks_resumes_at_one_and_at_three`): two ranks finish the run.
    let args = ["run", "--data", data.to_str().unwrap(), "--run-dir", dir_t.to_str().unwrap(), "--resume"];
    let o = torchrun_train(&args);
    let out = text(&o);
    assert!(o.status.success() && out.contains("epochs 3 steps 18"), "{out}");
    // And end where two ranks that never stopped end (at two ranks the sums are exact,
    // whatever buckets the Reducer has before and after its re-ordering).
    let dir_u = t.path().join("uninterrupted");
    let args = ["run", "--config", cfg_path.to_str().unwrap(), "--data", data.to_str().unwrap()];
    let o = torchrun_train(&[&args[..], &["--run-dir", dir_u.to_str().unwrap()]].concat());
    assert!(o.status.success(), "{}", text(&o));
    let last = "checkpoints/epoch-003.safetensors";
    for ((n, a), (_, b)) in weights(&dir_t.join(last), &cfg).iter().zip(&weights(&dir_u.join(last), &cfg)) {
        assert!(a.equal(b), "{n}: the resumed two-rank run differs from the uninterrupted one");
    }
}

/// Spawns two Slurm-style ranks of a long run and returns them once rank 0 has
/// logged its second step, with rank 0's stderr lines arriving on the channel.
fn two_ranks_training(dir: &Path, timeout_s: u64) -> (Child, Child, mpsc::Receiver<String>) {
    let data = dataset(dir);
    let cfg = config(dir, timeout_s, 1000);
    let run = dir.join("run");
    let args = ["run", "--config", cfg.to_str().unwrap(), "--data", data.to_str().unwrap()];
    let args: Vec<&str> = args.into_iter().chain(["--run-dir", run.to_str().unwrap()]).collect();
    let port = free_port();
    let mut rank0 = slurm_rank(0, 2, port, &args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let rank1 = slurm_rank(1, 2, port, &args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let (tx, rx) = mpsc::channel();
    let err = rank0.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut rank1 = rank1;
    loop {
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(line) if line.contains("[2/6]") => return (rank0, rank1, rx),
            Ok(_) => {}
            Err(_) => {
                for c in [&mut rank0, &mut rank1] {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                panic!("rank 0 did not start training within 120 s");
            }
        }
    }
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill(2) on our own child's pid.
    let r = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    assert_eq!(r, 0, "kill({}, {sig}) failed", child.id());
}

/// Waits for `child`, at most `limit`; returns its exit status and how long it took.
fn wait_at_most(child: &mut Child, limit: Duration) -> (Option<std::process::ExitStatus>, Duration) {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if let Some(s) = child.try_wait().unwrap() {
            return (Some(s), t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    (None, t0.elapsed())
}

#[test]
fn a_killed_rank_makes_the_other_fail_with_a_message() {
    let t = tempfile::tempdir().unwrap();
    let (mut rank0, mut rank1, rx) = two_ranks_training(t.path(), 30);
    rank1.kill().unwrap(); // SIGKILL: no goodbye to the others
    rank1.wait().unwrap();
    let (status, took) = wait_at_most(&mut rank0, Duration::from_secs(30 + 15));
    let status = status.expect("rank 0 still running after the timeout");
    let lines: Vec<String> = rx.try_iter().collect();
    assert!(!status.success(), "{lines:?}");
    let err = lines.iter().find(|l| l.starts_with("error:")).unwrap_or_else(|| panic!("{lines:?}"));
    assert!(err.contains("failed on rank 0 of 2"), "{err}");
    eprintln!("rank 0 exited {took:?} after rank 1 was killed: {err}");
}

#[test]
fn a_hung_rank_makes_the_other_fail_within_the_timeout() {
    let t = tempfile::tempdir().unwrap();
    let timeout = 6;
    let (mut rank0, mut rank1, rx) = two_ranks_training(t.path(), timeout);
    signal(&rank1, libc::SIGSTOP);
    let (status, took) = wait_at_most(&mut rank0, Duration::from_secs(timeout + 20));
    let _ = rank1.kill();
    let _ = rank1.wait();
    let status = status.expect("rank 0 still running well past the timeout");
    let lines: Vec<String> = rx.try_iter().collect();
    assert!(!status.success(), "{lines:?}");
    let err = lines.iter().find(|l| l.starts_with("error:")).unwrap_or_else(|| panic!("{lines:?}"));
    assert!(err.contains("failed on rank 0 of 2") && err.contains(&format!("{timeout} s timeout")), "{err}");
    assert!(took >= Duration::from_secs(timeout - 1), "failed after {took:?}, before the timeout: {err}");
    eprintln!("rank 0 exited {took:?} after rank 1 hung: {err}");
}

/// The one `error:` line of a failed `train` (libtorch may add its own warnings).
fn one_line_error(o: &Output) -> String {
    assert!(!o.status.success(), "{}", text(o));
    let e = String::from_utf8_lossy(&o.stderr);
    let errors: Vec<&str> = e.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{e}");
    assert!(!e.contains("Exception raised from"), "a C++ backtrace reached the user: {e}");
    errors[0].to_string()
}

#[test]
fn bad_launches_are_one_line_errors() {
    let t = tempfile::tempdir().unwrap();
    let data = dataset(t.path());
    let cfg = config(t.path(), 3, 1);
    let run = t.path().join("run");
    let args = ["run", "--config", cfg.to_str().unwrap(), "--data", data.to_str().unwrap()];
    let args: Vec<&str> = args.into_iter().chain(["--run-dir", run.to_str().unwrap()]).collect();
    let torchrun_vars = |c: &mut Command, rank: &str, port: u16| {
        c.env("RANK", rank).env("WORLD_SIZE", "2").env("LOCAL_RANK", rank);
        c.env("MASTER_ADDR", "127.0.0.1").env("MASTER_PORT", port.to_string());
    };

    // A missing variable.
    let mut c = clean(Command::new(TRAIN));
    torchrun_vars(&mut c, "0", 29500);
    c.env_remove("MASTER_ADDR");
    let e = one_line_error(&c.args(&args).output().unwrap());
    assert!(e.contains("MASTER_ADDR is not set"), "{e}");

    // Inconsistent variables.
    let mut c = clean(Command::new(TRAIN));
    torchrun_vars(&mut c, "2", 29500);
    let e = one_line_error(&c.args(&args).output().unwrap());
    assert!(e.contains("rank 2 is not below the world size 2"), "{e}");

    // The store's port is taken: rank 0 cannot host the store.
    let held = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let mut c = clean(Command::new(TRAIN));
    torchrun_vars(&mut c, "0", port);
    let t0 = Instant::now();
    let e = one_line_error(&c.args(&args).output().unwrap());
    assert!(e.contains("hosting the TCPStore") && e.to_lowercase().contains("address already in use"), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(20));
    drop(held);

    // Nobody hosts the store: a client gives up after the configured timeout (3 s).
    let mut c = clean(Command::new(TRAIN));
    torchrun_vars(&mut c, "1", free_port());
    let t0 = Instant::now();
    let e = one_line_error(&c.args(&args).output().unwrap());
    assert!(e.contains("joining the TCPStore"), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(30), "took {:?}", t0.elapsed());
}

#[test]
fn a_signal_on_one_rank_stops_both_at_the_same_step() {
    let t = tempfile::tempdir().unwrap();
    let (mut rank0, mut rank1, rx) = two_ranks_training(t.path(), 60);
    signal(&rank1, libc::SIGTERM);
    let (s0, _) = wait_at_most(&mut rank0, Duration::from_secs(60));
    let (s1, _) = wait_at_most(&mut rank1, Duration::from_secs(10));
    let lines: Vec<String> = rx.try_iter().collect();
    // Both exit with the code of a stop by a signal (75), the signalled one and the other.
    let stopped = |s: Option<std::process::ExitStatus>| s.is_some_and(|s| s.code() == Some(75));
    assert!(stopped(s0) && stopped(s1), "{s0:?} {s1:?} {lines:?}");
    // Rank 0 (not signalled) stopped too, and wrote the checkpoint of that step.
    let stop = lines.iter().find(|l| l.contains("stopped at epoch")).unwrap_or_else(|| panic!("{lines:?}"));
    assert!(lines.iter().any(|l| l.contains("weights bit-identical on all 2 ranks after step")), "{lines:?}");
    let ckpts: Vec<String> = std::fs::read_dir(t.path().join("run/checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(ckpts.iter().any(|n| n.starts_with("step-") && n.ends_with(".optim.safetensors")), "{ckpts:?} {stop}");
}

/// The listening sockets on `port` (local addresses as /proc/net/tcp{,6} print them:
/// hex IP, `0100007F` is 127.0.0.1, all zeros is every interface).
fn listeners_on(port: u16) -> Vec<String> {
    let mut out = Vec::new();
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(f) else { continue };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state)) = (cols.get(1), cols.get(3)) else { continue };
            let Some((ip, p)) = local.split_once(':') else { continue };
            if *state == "0A" && u16::from_str_radix(p, 16) == Ok(port) {
                out.push(ip.to_string());
            }
        }
    }
    out
}

/// Reliability review B21: rank 0's TCPStore (Slurm-style launch) listened on every
/// interface, v4 and v6, with MASTER_ADDR=127.0.0.1. It listens on loopback only now.
#[test]
fn the_store_rank_0_hosts_listens_on_master_addrs_interface_only() {
    if !std::path::Path::new("/proc/net/tcp").exists() {
        return; // Linux's socket table is how this is observed
    }
    let port = free_port();
    // Rank 0 of 2 without its peer: it hosts the store and waits in the rendezvous.
    let mut rank0 = slurm_rank(0, 2, port, &["check-dist", "--timeout-s", "20"])
        .env("MASTER_ADDR", "127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let mut seen = Vec::new();
    while seen.is_empty() && t0.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(100));
        seen = listeners_on(port);
    }
    std::thread::sleep(Duration::from_millis(300)); // every socket the store opens
    let all = listeners_on(port);
    let _ = rank0.kill();
    let _ = rank0.wait();
    assert!(!all.is_empty(), "no listener on port {port} within 15 s");
    assert!(all.iter().all(|ip| ip == "0100007F"), "listening on {all:?} (0100007F is 127.0.0.1)");
}

/// Copies the folder `from` into `to` (a run folder, to resume it twice).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// The rows each step trained on, from `ALEXNET_TRACE_ROWS`'s files in `dir`:
/// (epoch, rank, batch, rows).
fn traced_rows(dir: &Path) -> Vec<(usize, usize, usize, Vec<usize>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        let rank: usize = name.trim_start_matches("rows-rank").trim_end_matches(".txt").parse().unwrap();
        for line in std::fs::read_to_string(dir.join(&name)).unwrap().lines() {
            let v: Vec<usize> = line.split(' ').map(|x| x.parse().unwrap()).collect();
            out.push((v[0], rank, v[1], v[2..].to_vec()));
        }
    }
    out
}

/// A run of two ranks stopped mid-epoch and resumed at one rank and at three (a node
/// lost, or added): the images of the stopped epoch that no rank had read are dealt
/// over the new ranks, so every image of it is trained on exactly once except the
/// remainder that does not fill a batch on every rank; the global batch follows the
/// world size (the per-rank batch stays), the change is logged, recorded in
/// config.toml and in metrics.jsonl, and the run finishes. (Not identical to a run that
/// never stopped: the steps after the change average another number of images. At the
/// same world size a resume is bit-identical:
/// `two_ranks_equal_one_process_on_the_union_of_their_batches`.)
#[test]
fn a_run_stopped_at_two_ranks_resumes_at_one_and_at_three() {
    let t = tempfile::tempdir().unwrap();
    let data = dataset(t.path());
    let cfg_path = config(t.path(), 60, 2);
    let train_args = |dir: &Path| -> Vec<String> {
        ["run", "--config", cfg_path.to_str().unwrap(), "--data", data.to_str().unwrap(), "--run-dir"]
            .iter()
            .map(|s| s.to_string())
            .chain([dir.display().to_string()])
            .collect()
    };
    let launch = |world: usize, args: &[String], trace: &Path, code: i32| -> String {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let port = free_port();
        let ranks: Vec<Child> = (0..world)
            .map(|r| {
                let mut c = if world == 1 { clean(Command::new(TRAIN)) } else { slurm_rank(r, world, port, &[]) };
                c.args(&args).env("ALEXNET_TRACE_ROWS", trace).stdout(Stdio::piped()).stderr(Stdio::piped());
                c.spawn().unwrap()
            })
            .collect();
        let mut all = String::new();
        for c in ranks {
            let o = c.wait_with_output().unwrap();
            assert_eq!(o.status.code(), Some(code), "{}", text(&o));
            all += &text(&o);
        }
        all
    };
    // 48 train rows, 4 per batch: at two ranks 6 steps an epoch; stopped after 2.
    let stopped = t.path().join("stopped");
    let trace = t.path().join("trace-stopped");
    std::fs::create_dir(&trace).unwrap();
    let mut args = train_args(&stopped);
    args.extend(["--max-steps".to_string(), "2".to_string()]);
    launch(2, &args, &trace, 3); // 3: stopped by --max-steps
    for (world, left_steps, epoch_steps) in [(1usize, 8usize, 12usize), (3, 2, 4)] {
        let run = t.path().join(format!("at-{world}"));
        let tr = t.path().join(format!("trace-{world}"));
        copy_dir(&stopped, &run);
        copy_dir(&trace, &tr);
        let mut args = train_args(&run);
        args.push("--resume".into());
        let out = launch(world, &args, &tr, 0);
        let said = format!("resuming a run of 2 rank(s) at {world} rank(s): global batch 8 -> {}", 4 * world);
        assert!(out.contains(&said), "{out}");
        assert!(out.contains("are dealt over the"), "{out}");
        let steps = 2 + left_steps + epoch_steps;
        assert!(out.contains(&format!("epochs 2 steps {steps}")), "{out}");
        let saved = TrainConfig::from_toml(&std::fs::read_to_string(run.join("config.toml")).unwrap()).unwrap();
        assert_eq!((saved.dist.world_size, saved.dist.global_batch), (Some(world), Some(4 * world)));
        let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
        assert!(
            metrics.lines().any(|l| l.contains("\"kind\":\"world\"")
                && l.contains("\"from\":2")
                && l.contains(&format!("\"to\":{world}"))),
            "{metrics}"
        );
        let traced = traced_rows(&tr);
        for epoch in 0..2 {
            let mut rows: Vec<usize> = traced.iter().filter(|s| s.0 == epoch).flat_map(|s| s.3.clone()).collect();
            let n = rows.len();
            rows.sort();
            rows.dedup();
            assert_eq!(rows.len(), n, "epoch {epoch} at {world}: an image trained on twice");
            assert!(rows.iter().all(|&r| r < 48));
            // Epoch 0: 2 steps of 2 ranks, then the 32 unread rows dealt over `world`
            // ranks in whole batches of 4 (at 3 ranks: 10 each, 8 taken, 8 left out).
            // Epoch 1: a whole epoch at `world` ranks.
            let want = if epoch == 0 { 16 + left_steps * 4 * world } else { epoch_steps * 4 * world };
            assert_eq!(n, want, "epoch {epoch} at {world} rank(s)");
        }
        // Epoch 0's steps: 2 on each of the 2 ranks, then `left_steps` on each of the new ones.
        assert_eq!(traced.iter().filter(|s| s.0 == 0).count(), 2 * 2 + left_steps * world, "{traced:?}");
    }
}
