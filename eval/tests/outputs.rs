//! What `eval` refuses and where it writes (the reliability review's B4, B10, B14):
//! non-finite weights and probabilities are errors naming the tensor or the image;
//! `--json` and `--predictions` write through symlinks and into FIFOs in place, `-`
//! prints on stdout; a `--checkpoint` that is a FIFO or a directory is refused at once.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use alexnet_shared::Dataset;
use eval::score::{run, ScoreConfig};
use preprocess::synth;
use tch::{nn::VarStore, Device};
use trainer::checkpoint::{save_model, CheckpointMeta};
use trainer::data::{Crops, Normalization};
use trainer::model::{AlexNet, ModelConfig};

fn dataset(dir: &Path) -> PathBuf {
    let mut s = synth::SynthConfig::new(dir.join("images"));
    (s.classes, s.train_per_class, s.val_per_class, s.corrupt, s.seed) = (3, 2, 2, 0, 5);
    synth::build_raw(&s, &dir.join("ds")).unwrap()
}

fn small() -> ModelConfig {
    ModelConfig { width: 0.1, crop: 67, ..ModelConfig::paper(3) }
}

/// A seeded checkpoint for `data`; `edit` may change the tensors before it is saved.
fn checkpoint(path: &Path, data: &Path, edit: impl FnOnce(&VarStore)) -> PathBuf {
    let vs = VarStore::new(Device::Cpu);
    let mut m = AlexNet::new(&vs.root(), &small()).unwrap();
    tch::manual_seed(3);
    m.torch_default_init();
    tch::no_grad(|| edit(&vs));
    let manifest = Dataset::open(data).unwrap().manifest().clone();
    let meta = CheckpointMeta {
        model: small(),
        normalization: Normalization::MeanRgb,
        epoch: 1,
        step: 4,
        manifest_sha256: String::new(),
        wnids: manifest.wnids(),
        data_fingerprint: Some(trainer::checkpoint::data_fingerprint(&manifest)),
        inputs: None,
        provenance: None,
        pca_noise: true,
    };
    save_model(path, &vs, Some(&meta)).unwrap();
    path.to_path_buf()
}

fn config(ck: &Path, data: &Path) -> ScoreConfig {
    let mut c = ScoreConfig::new(vec![ck.to_path_buf()], data.to_path_buf());
    c.crops = Crops::Center;
    c.batch_size = 2;
    c
}

fn mkfifo(p: &Path) {
    assert!(Command::new("mkfifo").arg(p).status().unwrap().success());
}

/// `eval ARGS` with a deadline: (exit code, stdout, stderr); a hang fails the test.
fn eval_bin(args: &[&str]) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_eval"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("eval {args:?} hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = child.wait_with_output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

/// B4: a NaN weight or an infinite bias is refused naming the tensor, in score and in
/// kernels; outputs that overflow (finite weights of 3e38) are refused naming the
/// image, before anything is written.
#[test]
fn non_finite_weights_and_probabilities_are_errors() {
    tch::set_num_threads(1);
    let t = tempfile::tempdir().unwrap();
    let data = dataset(t.path());
    let nan = checkpoint(&t.path().join("nan.safetensors"), &data, |vs| {
        let _ = vs.variables()["features.0.weight"].flatten(0, -1).get(5).fill_(f64::NAN);
    });
    let e = format!("{:#}", run(&config(&nan, &data)).unwrap_err());
    assert!(e.contains("nan.safetensors: features.0.weight holds a non-finite value (NaN at element 5"), "{e}");
    let e = format!("{:#}", eval::kernels::conv1(&nan).unwrap_err());
    assert!(e.contains("features.0.weight holds a non-finite value"), "{e}");
    let inf = checkpoint(&t.path().join("inf.safetensors"), &data, |vs| {
        let _ = vs.variables()["classifier.6.bias"].shallow_clone().fill_(f64::INFINITY);
    });
    let e = format!("{:#}", run(&config(&inf, &data)).unwrap_err());
    assert!(e.contains("classifier.6.bias holds a non-finite value (inf"), "{e}");
    // Finite weights whose outputs overflow to inf, and softmax to NaN.
    let big = checkpoint(&t.path().join("big.safetensors"), &data, |vs| {
        let _ = vs.variables()["classifier.6.weight"].shallow_clone().fill_(3e38);
    });
    let mut cfg = config(&big, &data);
    cfg.predictions = Some(t.path().join("p.csv"));
    let e = format!("{:#}", run(&cfg).unwrap_err());
    assert!(e.contains("are NaN or infinite") && e.contains("row 0 of the split"), "{e}");
    assert!(!t.path().join("p.csv").exists() && !t.path().join(".p.csv.tmp").exists());
    // Through the binary: one error line, exit 1.
    let (code, _, err) = eval_bin(&[
        "score",
        "--checkpoint",
        nan.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--crops",
        "center",
        "--quiet",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.starts_with("error: ") && err.trim_end().lines().count() == 1, "{err}");
}

/// B10: `--json` and `--predictions` through a symlink write its target (the link
/// stays), into a FIFO in place (a reader gets the bytes); `--json -` prints JSON on
/// stdout. B14: a `--checkpoint` FIFO or folder is refused at once.
#[test]
fn outputs_go_through_links_and_into_fifos_and_fifo_checkpoints_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let data = dataset(t.path());
    let ck = checkpoint(&t.path().join("m.safetensors"), &data, |_| {});
    let (ck_s, data_s) = (ck.to_str().unwrap(), data.to_str().unwrap());
    let base = ["score", "--checkpoint", ck_s, "--data", data_s, "--crops", "center", "--quiet", "--threads", "1"];
    let with = |extra: &[&str]| eval_bin(&[&base[..], extra].concat());

    let target = t.path().join("target.json");
    std::fs::write(&target, "old").unwrap();
    let link = t.path().join("link.json");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let (ptarget, plink) = (t.path().join("p.csv"), t.path().join("p-link.csv"));
    std::os::unix::fs::symlink(&ptarget, &plink).unwrap(); // dangling until written
    let (code, _, err) = with(&["--json", link.to_str().unwrap(), "--predictions", plink.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&target).unwrap()).unwrap();
    assert_eq!(json["images"], 6);
    assert!(std::fs::symlink_metadata(&plink).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read_to_string(&ptarget).unwrap().lines().count(), 7);

    let fifo = t.path().join("scores.fifo");
    mkfifo(&fifo);
    let f = fifo.clone();
    let reader = std::thread::spawn(move || std::fs::read_to_string(f).unwrap());
    let (code, _, err) = with(&["--json", fifo.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let got: serde_json::Value = serde_json::from_str(&reader.join().unwrap()).unwrap();
    assert_eq!(got["top1"], json["top1"]);
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());

    let (code, out, err) = with(&["--json", "-"]);
    assert_eq!(code, 0, "{err}");
    let printed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(printed["top1"], json["top1"]);
    assert!(err.contains("top-1"), "the table goes to stderr: {err}");

    // B14: a FIFO (no writer: its open would block), a link to it, a folder.
    let to_fifo = t.path().join("to-fifo.safetensors");
    std::os::unix::fs::symlink(&fifo, &to_fifo).unwrap();
    let folder = t.path().join("folder.safetensors");
    std::fs::create_dir(&folder).unwrap();
    for (p, what) in [(&fifo, "a FIFO"), (&to_fifo, "a FIFO"), (&folder, "a directory")] {
        let (code, _, err) = eval_bin(&["score", "--checkpoint", p.to_str().unwrap(), "--data", data_s]);
        assert_eq!(code, 1, "{err}");
        assert!(
            err.contains(&format!("is {what}, not a checkpoint file")) && err.trim_end().lines().count() == 1,
            "{err}"
        );
        let (code, _, err) = eval_bin(&[
            "kernels",
            "--checkpoint",
            p.to_str().unwrap(),
            "--out",
            t.path().join("k.png").to_str().unwrap(),
        ]);
        assert!(code == 1 && err.contains(&format!("is {what}")), "{err}");
    }
}
