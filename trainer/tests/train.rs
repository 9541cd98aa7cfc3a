//! The training run on a tiny preset: the loss falls, a run stopped and resumed ends
//! with the same weights as one that never stopped, bad inputs are one-line errors.

mod common;

use std::path::{Path, PathBuf};

use tch::{nn::VarStore, Device};
use trainer::checkpoint::load_model;
use trainer::config::TrainConfig;
use trainer::model::AlexNet;
use trainer::train::{run, Record, RunOptions};

/// libtorch's random generator (dropout) and thread count are global to the process:
/// the training runs of this file take turns, as separate processes would.
static ONE_RUN_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// 3 classes, 48 train rows (6 steps of 8 per epoch), 12 val rows.
fn dataset(dir: &Path) -> PathBuf {
    common::tiny_dataset(dir)
}

/// A new run of the dataset `data` in `run_dir`, on the CPU, to its end.
fn fresh(data: &Path, run_dir: PathBuf) -> RunOptions {
    RunOptions { data: data.to_path_buf(), run_dir, device: Device::Cpu, resume: false, max_steps: None, init: None }
}

fn weights(path: &Path, cfg: &TrainConfig) -> Vec<(String, tch::Tensor)> {
    let mut vs = VarStore::new(Device::Cpu);
    let _m = AlexNet::new(&vs.root(), &cfg.model_config(3)).unwrap();
    load_model(path, &mut vs).unwrap();
    let mut v: Vec<(String, tch::Tensor)> = vs.variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn a_stopped_and_resumed_run_ends_with_the_same_weights() {
    let _serial = serial();
    tch::set_num_threads(1);
    let t = tempfile::tempdir().unwrap();
    let data = dataset(t.path());
    let cfg = common::tiny(&[]);
    let opts = |dir: &str, resume: bool, max_steps: Option<u64>| RunOptions {
        data: data.clone(),
        run_dir: t.path().join(dir),
        device: Device::Cpu,
        resume,
        max_steps,
        init: None,
    };
    // 48 train rows, batch 8: 6 steps per epoch, 18 in all.
    let full = run(&cfg, &opts("full", false, None)).unwrap();
    assert_eq!((full.global_step, full.epochs_done, full.stopped_early), (18, 3, false));

    // Stop mid-epoch (step 4 of epoch 0), then at an epoch boundary, then finish.
    let a = run(&cfg, &opts("resumed", false, Some(4))).unwrap();
    assert!(a.stopped_early && a.global_step == 4);
    let e = run(&cfg, &opts("resumed", false, None)).unwrap_err().to_string();
    assert!(e.contains("--resume"), "{e}");
    damaged_momentum_is_refused(&cfg, &t.path().join("resumed"), &opts("damaged", true, Some(1)));
    let b = run(&cfg, &opts("resumed", true, Some(8))).unwrap();
    assert_eq!(b.global_step, 12);
    let c = run(&cfg, &opts("resumed", true, None)).unwrap();
    assert_eq!((c.global_step, c.epochs_done), (18, 3));

    let (wa, wb) = (weights(&full.last_checkpoint, &cfg), weights(&c.last_checkpoint, &cfg));
    for ((n, x), (_, y)) in wa.iter().zip(&wb) {
        assert!(x.equal(y), "{n} differs between the uninterrupted and the resumed run");
    }
    assert_eq!((full.val_top1, full.val_top5), (c.val_top1, c.val_top5));
    // The loss fell: metrics.jsonl of the full run.
    let losses: Vec<f64> = records(&t.path().join("full/metrics.jsonl"))
        .into_iter()
        .filter_map(|r| match r {
            Record::Train { loss, .. } => Some(loss),
            _ => None,
        })
        .collect();
    assert!(losses.len() >= 6);
    let first: f64 = losses[..2].iter().sum::<f64>() / 2.0;
    let last: f64 = losses[losses.len() - 2..].iter().sum::<f64>() / 2.0;
    assert!(last < first, "loss did not fall: {losses:?}");
    // Kept: the last 2 epoch checkpoints and the best; no step checkpoints.
    let mut files: Vec<String> = std::fs::read_dir(t.path().join("resumed/checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.contains(".optim."))
        .collect();
    files.sort();
    assert_eq!(files, ["best.safetensors", "epoch-002.safetensors", "epoch-003.safetensors"]);
}

/// A copy of `run_dir` whose latest optimizer state holds one momentum tensor in
/// float16 (bytes of the right length for it): the resume names it instead of reading
/// past the buffer as float32.
fn damaged_momentum_is_refused(cfg: &TrainConfig, run_dir: &Path, opts: &RunOptions) {
    let copy = &opts.run_dir;
    for sub in ["", "checkpoints"] {
        std::fs::create_dir_all(copy.join(sub)).unwrap();
        for e in std::fs::read_dir(run_dir.join(sub)).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() {
                std::fs::copy(e.path(), copy.join(sub).join(e.file_name())).unwrap();
            }
        }
    }
    let optim = std::fs::read_dir(copy.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".optim.safetensors"))
        .unwrap();
    let bytes = std::fs::read(&optim).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let meta = safetensors::SafeTensors::read_metadata(&bytes).unwrap().1.metadata().clone();
    let mut names = st.names();
    names.sort();
    let views: Vec<(String, safetensors::tensor::TensorView)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let v = st.tensor(n).unwrap();
            let (dtype, data) =
                if i == 0 { (safetensors::Dtype::F16, &v.data()[..v.data().len() / 2]) } else { (v.dtype(), v.data()) };
            (n.to_string(), safetensors::tensor::TensorView::new(dtype, v.shape().to_vec(), data).unwrap())
        })
        .collect();
    std::fs::write(&optim, safetensors::serialize(views, meta).unwrap()).unwrap();
    let e = run(cfg, opts).unwrap_err().to_string();
    assert!(e.contains("expected float32") && e.contains("F16"), "{e}");
}

#[test]
fn a_checkpoint_of_other_classes_or_a_bad_config_is_a_one_line_error() {
    let e = TrainConfig::from_toml(&common::tiny_text().replace("[run]", "[run]\nsed = 1")).unwrap_err().to_string();
    assert!(e.contains("sed") && !e.contains('\n'), "{e}");
    let e = TrainConfig::from_toml(&common::tiny_text().replace("crop = 67", "crop = 40")).unwrap_err().to_string();
    assert!(e.contains("crop 40"), "{e}");
    // The same through --set: a typo'd key names itself; a bad value is checked.
    let sets =
        |s: &[&str]| TrainConfig::parse(&common::tiny_text(), &s.iter().map(|x| x.to_string()).collect::<Vec<_>>());
    let e = sets(&["run.sed=1"]).unwrap_err().to_string();
    assert!(e.contains("--set run.sed=1: unknown key \"run.sed\"") && !e.contains('\n'), "{e}");
    let e = sets(&["model.crop=40"]).unwrap_err().to_string();
    assert!(e.contains("crop 40"), "{e}");
}

fn records(path: &Path) -> Vec<Record> {
    Record::read_all(path).unwrap()
}

fn plateau_errors(optim: &Path) -> Vec<f64> {
    let bytes = std::fs::read(optim).unwrap();
    let (_, h) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    serde_json::from_str(&h.metadata().as_ref().unwrap()["val_errors"]).unwrap()
}

#[test]
fn a_held_out_train_slice_drives_the_plateau_rule_and_the_curves_are_drawn() {
    let _serial = serial();
    tch::set_num_threads(1);
    let t = tempfile::tempdir().unwrap();
    let data = dataset(t.path());
    let sets = [
        "data.holdout=8",
        "optim.epochs=2",
        "optim.schedule={ kind = \"plateau\", patience = 3, threshold = 0.0, factor = 10.0, max_drops = 3 }",
    ];
    let cfg = common::tiny(&sets);
    assert_eq!(cfg.data.holdout, 8);
    let opts = fresh(&data, t.path().join("run"));
    let s = run(&cfg, &opts).unwrap();
    // 48 - 8 = 40 train rows left: 5 steps of 8 per epoch.
    assert_eq!((s.global_step, s.epochs_done), (10, 2));
    let held: Vec<(u64, f64)> = records(&t.path().join("run/metrics.jsonl"))
        .into_iter()
        .filter_map(|r| match r {
            Record::Holdout { images, top1, .. } => Some((images, top1)),
            _ => None,
        })
        .collect();
    assert_eq!(held.len(), 2);
    assert!(held.iter().all(|&(images, _)| images == 8));
    // The schedule saw the held-out errors, not val's.
    let errors = plateau_errors(&s.last_checkpoint.with_extension("optim.safetensors"));
    let expect: Vec<f64> = held.iter().map(|&(_, top1)| 1.0 - top1).collect();
    assert_eq!(errors.len(), 2);
    for (e, x) in errors.iter().zip(&expect) {
        assert!((e - x).abs() < 1e-5, "plateau errors {errors:?}, held-out errors {expect:?}");
    }
    // The picture of the curves, redrawn each epoch.
    let png = image::open(t.path().join("run/curves.png")).unwrap().to_rgb8();
    assert_eq!(png.dimensions(), (trainer::curves::WIDTH, trainer::curves::HEIGHT));
    let coloured = png.pixels().filter(|p| p[0].abs_diff(p[1]) > 100 || p[1].abs_diff(p[2]) > 100).count();
    assert!(coloured > 300, "curves.png has no curves ({coloured} coloured pixels)");
    // Too large a slice is refused.
    let e = run(
        &common::tiny(&[&sets[..], &["data.holdout=44"]].concat()),
        &RunOptions { run_dir: t.path().join("run2"), ..opts },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("data.holdout = 44"), "{e}");
}

#[test]
fn channels_last_trains_to_the_same_weights_and_saves_nchw() {
    let _serial = serial();
    tch::set_num_threads(1);
    let t = tempfile::tempdir().unwrap();
    let data = dataset(t.path());
    let base = common::tiny(&["optim.epochs=1"]);
    let nhwc = common::tiny(&["optim.epochs=1", "run.channels_last=true"]);
    assert!(nhwc.run.channels_last);
    let go = |cfg: &TrainConfig, dir: &str| run(cfg, &fresh(&data, t.path().join(dir))).unwrap().last_checkpoint;
    let (a, b) = (weights(&go(&base, "nchw"), &base), weights(&go(&nhwc, "nhwc"), &base));
    // Other conv kernels, the same arithmetic: after 6 SGD steps the weights agree to
    // float rounding (measured max difference about 1e-6 of the largest weight).
    for ((n, x), (_, y)) in a.iter().zip(&b) {
        let diff = (x - y).abs().max().double_value(&[]);
        let scale = x.abs().max().double_value(&[]);
        assert!(diff <= 1e-4 * scale.max(1e-3), "{n}: max difference {diff} (largest weight {scale})");
    }
}

#[test]
fn the_owt_model_trains_too() {
    // torchvision's AlexNet with PyTorch's default initialisation starts slowly: its
    // logits start near 0.007 (std), so over the first few dozen steps only the
    // classifier moves and the loss creeps down from ln 3 (torch.optim.SGD does the
    // same: 30 steps of the same kind leave it at 1.08-1.10). The validation loss
    // (no dropout, the same 12 images) shows it: it falls after every epoch.
    let _serial = serial();
    tch::set_num_threads(2);
    let t = tempfile::tempdir().unwrap();
    let data = dataset(t.path());
    let cfg = common::tiny(&[
        "model.arch=owt",
        "model.crop=63",
        "model.width=1.0",
        "data.normalization=torchvision",
        "optim.lr=0.01",
        "optim.weight_decay=1e-4",
    ]);
    assert_eq!(cfg.model.arch, trainer::model::Arch::Owt);
    let opts = fresh(&data, t.path().join("owt"));
    let s = run(&cfg, &opts).unwrap();
    assert_eq!((s.global_step, s.epochs_done), (18, 3));
    let val_loss: Vec<f64> = records(&t.path().join("owt/metrics.jsonl"))
        .into_iter()
        .filter_map(|r| match r {
            Record::Val { loss, .. } => Some(loss),
            _ => None,
        })
        .collect();
    assert_eq!(val_loss.len(), 3);
    assert!(val_loss.windows(2).all(|w| w[1] < w[0]), "the owt val loss did not fall: {val_loss:?}");
    assert!(val_loss[0] < 3f64.ln() + 0.01, "{val_loss:?}");
    // A checkpoint of this model is refused by the paper model, by name.
    let paper = common::tiny(&[]);
    let mut vs = VarStore::new(Device::Cpu);
    let _m = AlexNet::new(&vs.root(), &paper.model_config(3)).unwrap();
    let e = load_model(&s.last_checkpoint, &mut vs).unwrap_err().to_string();
    assert!(e.contains("does not match the model") && !e.contains('\n'), "{e}");
}

#[test]
fn bf16_autocast_trains_close_to_float32() {
    let _serial = serial();
    tch::set_num_threads(1);
    let t = tempfile::tempdir().unwrap();
    let data = dataset(t.path());
    let fp32 = common::tiny(&["optim.epochs=1"]);
    let bf16 = common::tiny(&["optim.epochs=1", "run.precision=bf16"]);
    assert_eq!(bf16.run.precision, trainer::config::Precision::Bf16);
    let go = |cfg: &TrainConfig, dir: &str| run(cfg, &fresh(&data, t.path().join(dir))).unwrap();
    let (a, b) = (go(&fp32, "fp32"), go(&bf16, "bf16"));
    let (wa, wb) = (weights(&a.last_checkpoint, &fp32), weights(&b.last_checkpoint, &fp32));
    // Autocast was on: the bf16 run rounds differently, so its weights are not the
    // float32 run's; six steps later they are still close (bf16: 8 mantissa bits).
    let mut differ = false;
    for ((n, x), (_, y)) in wa.iter().zip(&wb) {
        assert_eq!(y.kind(), tch::Kind::Float, "{n}: weights stay float32");
        differ |= !x.equal(y);
        let diff = (x - y).abs().max().double_value(&[]);
        let scale = x.abs().max().double_value(&[]);
        assert!(diff <= 0.05 * scale, "{n}: bf16 weights {diff} away (largest weight {scale})");
    }
    assert!(differ, "bf16 gave bit-identical weights: autocast did not run");
    // Every train line parses with a finite loss (JSON writes NaN as null: such a line
    // would not parse).
    let m = std::fs::read_to_string(t.path().join("bf16/metrics.jsonl")).unwrap();
    let lines = m.lines().filter(|l| l.contains("\"train\"")).count();
    let finite = records(&t.path().join("bf16/metrics.jsonl"))
        .iter()
        .filter(|r| matches!(r, Record::Train { loss, .. } if loss.is_finite()))
        .count();
    assert!(lines >= 3 && finite == lines, "{finite} of {lines} train lines with a finite loss");
}

/// `train run` as a user runs it: a fresh start with `--set`, a resume that extends the
/// run (applied, printed, saved), a resume that would change the model (refused).
#[test]
fn the_binary_applies_set_and_refuses_a_changed_config_on_resume() {
    let t = tempfile::tempdir().unwrap();
    let data = dataset(t.path());
    let preset = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/smoke-tiny.toml");
    let run_dir = t.path().join("run");
    let train = |args: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_train"))
            .args(["run", "--data", data.to_str().unwrap(), "--run-dir", run_dir.to_str().unwrap(), "--threads", "1"])
            .args(args)
            .env_remove("RANK")
            .env_remove("WORLD_SIZE")
            .env_remove("SLURM_PROCID")
            .output()
            .unwrap();
        (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
    };
    let saved = || TrainConfig::from_toml(&std::fs::read_to_string(run_dir.join("config.toml")).unwrap()).unwrap();
    let (ok, out) = train(&["--config", preset, "--set", "optim.epochs=1", "--set", "run.log_every_steps=3"]);
    assert!(ok && out.contains("epochs 1 steps 6"), "{out}");
    assert_eq!((saved().optim.epochs, saved().run.log_every_steps), (1, 3));
    // A typo'd key: one line naming it, nothing run.
    let (ok, out) = train(&["--resume", "--set", "optim.epoch=2"]);
    assert!(!ok && out.contains("unknown key \"optim.epoch\"") && out.lines().count() == 1, "{out}");
    // Extended: applied and saved, so the next resume keeps it.
    let (ok, out) = train(&["--resume", "--set", "optim.epochs=2"]);
    assert!(ok && out.contains("optim.epochs (1 -> 2) applied") && out.contains("epochs 2 steps 12"), "{out}");
    assert_eq!(saved().optim.epochs, 2);
    // A model change is refused, naming it; the safe change beside it is not applied.
    let (ok, out) = train(&["--resume", "--set", "model.width=0.2", "--set", "optim.epochs=3"]);
    assert!(!ok && out.contains("model.width (0.1 -> 0.2)") && !out.contains("optim.epochs ("), "{out}");
    assert_eq!(saved().optim.epochs, 2, "a refused resume saves nothing");
}

/// `train run` as a user runs it: (exit code, stdout + stderr). `sh_prefix` runs it
/// under `sh -c` after that text (a `ulimit`).
fn train_binary(args: &[&str], sh_prefix: Option<&str>) -> (i32, String) {
    let exe = env!("CARGO_BIN_EXE_train");
    let mut cmd = match sh_prefix {
        Some(p) => {
            let mut c = std::process::Command::new("sh");
            c.arg("-c").arg(format!("{p}; exec \"$0\" \"$@\"")).arg(exe);
            c
        }
        None => std::process::Command::new(exe),
    };
    let o = cmd
        .args(args)
        .env_remove("RANK")
        .env_remove("WORLD_SIZE")
        .env_remove("SLURM_PROCID")
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    (o.status.code().unwrap_or(-1), text)
}

fn checkpoint_files(run_dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(run_dir.join("checkpoints"))
        .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Reliability review B5: a model whose weights went non-finite with a finite loss (the
/// step's loss is taken before its update) is never checkpointed nor marked best, at an
/// epoch's end (its validation loss is NaN) or on a stop (`--max-steps`), and the error
/// names the last good checkpoint. (Before: epoch-001 and best were written, exit 0.)
#[test]
fn a_diverged_model_is_never_checkpointed_nor_called_good() {
    let t = tempfile::tempdir().unwrap();
    let data = dataset(t.path());
    // 48 train images, batch 48: one step per epoch; lr 1e300 is inf in float32.
    let (code, out, ck) =
        tiny_run(&data, &t.path().join("r1"), &["--set", "optim.batch_size=48", "--set", "optim.lr=1e300"], None);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("diverged") && out.contains("last good checkpoint is none"), "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("error:")).count(), 1, "{out}");
    assert!(ck.is_empty(), "{ck:?}");
    // A diverging step stopped by --max-steps: the stop's checkpoint is refused.
    let (code, out, ck) = tiny_run(&data, &t.path().join("r2"), &["--set", "optim.lr=1e300", "--max-steps", "1"], None);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("diverged: weight ") && out.contains("no checkpoint written"), "{out}");
    assert!(ck.is_empty(), "{ck:?}");
}

/// `train run` of the tests' preset on `data` into `run_dir` with `extra` flags: (exit
/// code, output, the checkpoint files left), with no internal error or C++ backtrace.
fn tiny_run(data: &Path, run_dir: &Path, extra: &[&str], sh: Option<&str>) -> (i32, String, Vec<String>) {
    let preset = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/smoke-tiny.toml");
    let base = ["run", "--config", preset, "--data", data.to_str().unwrap(), "--run-dir", run_dir.to_str().unwrap()];
    let (code, out) = train_binary(&[&base[..], &["--threads", "1"], extra].concat(), sh);
    assert!(!out.contains("internal error") && !out.contains("frame #"), "{out}");
    (code, out, checkpoint_files(run_dir))
}

/// Reliability review B12, B13, B18: sizes no machine has, memory the model cannot get
/// and `--max-steps 0` end in one `error:` line before anything is allocated or run.
/// (Before: SIGABRT with no `error:` line; an "internal error" with a C++ backtrace;
/// one step trained.)
#[test]
fn sizes_and_memory_out_of_reach_are_one_line_errors() {
    let t = tempfile::tempdir().unwrap();
    let data = dataset(t.path());
    let run = |name: &str, extra: &[&str], sh: Option<&str>| tiny_run(&data, &t.path().join(name), extra, sh);
    let one_error = |out: &str| out.lines().filter(|l| l.starts_with("error:")).count() == 1;
    let (code, out, _) = run("prefetch", &["--set", "data.prefetch=1000000000"], None);
    assert!(code == 1 && one_error(&out) && out.contains("data.prefetch"), "{out}");
    // 48 train images: a batch of 1000 is refused before the loaders allocate it.
    let (code, out, ck) = run("batch", &["--set", "optim.batch_size=1000"], None);
    assert!(code == 1 && one_error(&out) && out.contains("fewer than one step of 1000"), "{out}");
    assert!(ck.is_empty());
    // 3.4 GB of weights (width 4 at 227) under a 5 GB address-space limit.
    let (code, out, _) =
        run("oom", &["--set", "model.width=4.0", "--set", "model.crop=227"], Some("ulimit -v 5000000"));
    assert!(
        code == 1 && one_error(&out) && out.contains("building the paper model") && out.contains("out of memory"),
        "{out}"
    );
    // A usage error is clap's: `error:`, a usage hint, exit 2.
    let (code, out, ck) = run("zero", &["--max-steps", "0"], None);
    assert!(code == 2 && out.starts_with("error:") && out.contains("--max-steps") && out.contains("--help"), "{out}");
    assert!(ck.is_empty());
}
