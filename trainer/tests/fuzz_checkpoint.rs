//! A deterministic fuzz run of the checkpoint readers: the safetensors header and
//! metadata reader behind [`Checkpoint::open`] (and the model built from its metadata,
//! as eval builds it), the optimizer-file reader [`read_optim`] and the header-only
//! reader behind [`RunDir::survey`]. Stable Rust, fixed seeds, a kept corpus
//! (`tests/fuzz-corpus/`, written by the project's own writers: regenerate it with
//! `FUZZ_REGEN=1 cargo test -p trainer --test fuzz_checkpoint`), a fixed number of
//! mutated cases. Each case must return (Ok or an error), never panic (caught, and the
//! test fails naming the seed), never hang (the run has a deadline), and never ask the
//! Rust allocator for a block larger than the file plus 64 KiB.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tch::{nn::VarStore, Device};
use trainer::checkpoint::{optim_path, read_optim, Checkpoint, CheckpointMeta, Overrides, Position, RunDir};
use trainer::data::Normalization;
use trainer::model::{AlexNet, ModelConfig};

/// The largest single allocation asked for while `TRACK` is on.
struct Tracking;
static TRACK: AtomicBool = AtomicBool::new(false);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if TRACK.load(Ordering::Relaxed) {
            LARGEST.fetch_max(l.size(), Ordering::Relaxed);
        }
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if TRACK.load(Ordering::Relaxed) {
            LARGEST.fetch_max(new, Ordering::Relaxed);
        }
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Tracking = Tracking;

const CASES_PER_FILE: u64 = 1000;
const DEADLINE: Duration = Duration::from_secs(120);

/// The tiny paper model of the corpus: 2 classes, width 0.01, crop 67.
fn cfg() -> ModelConfig {
    ModelConfig { width: 0.01, crop: 67, ..ModelConfig::paper(2) }
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-corpus")
}

/// Writes the corpus with the trainer's writers: a checkpoint (model and optimizer
/// file, as `RunDir::write` writes them) and a model file without metadata.
fn regenerate(dir: &Path) {
    let t = tempfile::tempdir().unwrap();
    let run = RunDir::new(t.path());
    run.create().unwrap();
    let vs = VarStore::new(Device::Cpu);
    let mut m = AlexNet::new(&vs.root(), &cfg()).unwrap();
    tch::manual_seed(1);
    m.paper_init();
    let meta = CheckpointMeta {
        model: cfg(),
        normalization: Normalization::MeanImage,
        epoch: 1,
        step: 6,
        manifest_sha256: "ab".repeat(32),
        wnids: vec!["n01".into(), "n02".into()],
        data_fingerprint: Some("cd".repeat(32)),
        // The corpus stays small: the inputs' keys are checked in meta.rs's tests.
        inputs: None,
        provenance: None,
        pca_noise: true,
    };
    let pos =
        Position { epoch: 1, batch: 0, global_step: 6, val_errors: vec![0.5], best_top1: 0.5, ..Default::default() };
    let momentum = vs.variables().into_iter().collect();
    let p = run.write("epoch-001", &vs, &meta, &pos, momentum).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(&p, dir.join("model.safetensors")).unwrap();
    std::fs::copy(optim_path(&p), dir.join("model.optim.safetensors")).unwrap();
    trainer::checkpoint::save_model(&dir.join("bare.safetensors"), &vs, None).unwrap();
}

/// splitmix64: a fixed, dependency-free generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One mutation of `b` (the corpus file's bytes), chosen by `rng`.
fn mutate(b: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut v = b.to_vec();
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    let header = 8..8 + n;
    match rng.below(9) {
        0 => {
            for _ in 0..1 + rng.below(8) {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
        }
        1 => {
            // Random bytes over a run inside the header.
            let i = header.start + rng.below(n);
            for j in i..(i + 1 + rng.below(16)).min(header.end) {
                v[j] = rng.next() as u8;
            }
        }
        2 => v.truncate(rng.below(v.len())),
        3 => v.extend((0..1 + rng.below(64)).map(|_| rng.next() as u8)),
        4 => {
            let len = v.len() as u64;
            let values = [0, 1, n as u64 - 1, n as u64 + 1, len, len - 8, u64::MAX, 1 << 40, 100_000_001];
            v[..8].copy_from_slice(&values[rng.below(values.len())].to_le_bytes());
        }
        5 => {
            // A digit of the header (offsets, shapes, metadata numbers) changed.
            let digits: Vec<usize> = header.clone().filter(|&i| v[i].is_ascii_digit()).collect();
            let i = digits[rng.below(digits.len())];
            v[i] = b'0' + rng.below(10) as u8;
        }
        6 => {
            // A dtype swapped for another of the same length (the header stays valid).
            let text = String::from_utf8_lossy(&v[header.clone()]).into_owned();
            let at: Vec<usize> = text.match_indices("\"F32\"").map(|(i, _)| i).collect();
            if let Some(&i) = at.get(rng.below(at.len())) {
                let to = ["F16", "F64", "I64", "U8\"", "I32", "BOO"][rng.below(6)];
                v[8 + i + 1..8 + i + 4].copy_from_slice(to.as_bytes());
            }
        }
        7 => {
            // A metadata value replaced (the file re-serialized, so it parses).
            let st = safetensors::SafeTensors::deserialize(b).unwrap();
            let (_, h) = safetensors::SafeTensors::read_metadata(b).unwrap();
            let mut meta = h.metadata().clone().unwrap_or_default();
            let keys = [
                "num_classes",
                "crop",
                "width",
                "lrn_alpha",
                "lrn_towers",
                "epoch",
                "step",
                "wnids",
                "model",
                "normalization",
                "format",
                "batch",
                "global_step",
                "val_errors",
                "best_top1",
                "tensors_sha256",
                "model_tensors_sha256",
            ];
            let values = [
                "NaN",
                "inf",
                "-1",
                "0",
                "1e308",
                "18446744073709551616",
                "",
                "[",
                "[\"n01\"]",
                "1000000000",
                "4",
                "0.5",
                "owt",
                "paper",
                "alexnet-checkpoint-v1",
                "alexnet-optim-v1",
                "[1e309]",
                "3",
            ];
            meta.insert(keys[rng.below(keys.len())].into(), values[rng.below(values.len())].into());
            v = safetensors::serialize(st.tensors(), Some(meta)).unwrap();
        }
        _ => {
            // A dimension of a shape made huge, or zero.
            let text = String::from_utf8_lossy(&v[header.clone()]).into_owned();
            let at: Vec<usize> = text.match_indices("\"shape\":[").map(|(i, _)| i + 9).collect();
            if let Some(&i) = at.get(rng.below(at.len())) {
                let big = ["4294967296", "18446744073709551615", "0", "99999999999"][rng.below(4)];
                let mut t = v[..8 + i].to_vec();
                t.extend_from_slice(big.as_bytes());
                t.push(b',');
                t.extend_from_slice(&v[8 + i..]);
                let n2 = (n + big.len() + 1) as u64;
                t[..8].copy_from_slice(&n2.to_le_bytes());
                v = t;
            }
        }
    }
    v
}

/// Every reader on `path`, as train and eval use them; errors are fine.
fn read_all(path: &Path, names: &[String], run: &RunDir) {
    if let Ok(ckpt) = Checkpoint::open(path) {
        let _ = ckpt.shapes();
        for name in ckpt.shapes().keys() {
            let _ = ckpt.tensor_f32(name);
        }
        let _ = ckpt.infer_config(&Overrides { crop: Some(67), ..Default::default() });
        // As eval builds the model: from the metadata, then loads the tensors.
        if let Some(m) = ckpt.meta() {
            if m.model.validate().is_ok() {
                let mut vs = VarStore::new(Device::Cpu);
                if AlexNet::new(&vs.root(), &m.model).is_ok() {
                    let _ = ckpt.load_into(&mut vs);
                }
            }
        }
    }
    let _ = read_optim(path, names);
    let _ = run.survey();
}

#[test]
fn the_checkpoint_readers_survive_mutated_files() {
    let dir = corpus_dir();
    if std::env::var_os("FUZZ_REGEN").is_some() {
        regenerate(&dir);
    }
    let corpus = ["model.safetensors", "model.optim.safetensors", "bare.safetensors"];
    for f in corpus {
        assert!(dir.join(f).exists(), "{}: missing; FUZZ_REGEN=1 writes the corpus", dir.join(f).display());
    }
    // The corpus reads as it is.
    let model = Checkpoint::open(&dir.join("model.safetensors")).unwrap();
    let names: Vec<String> = {
        let mut n: Vec<String> = model.shapes().into_keys().collect();
        n.sort();
        n
    };
    let st = read_optim(&dir.join("model.optim.safetensors"), &names).unwrap();
    assert_eq!(st.model_sha256.as_deref(), Some(model.tensors_sha256()));

    let case = std::sync::Arc::new(AtomicU64::new(0));
    let (tx, rx) = std::sync::mpsc::channel();
    let c = case.clone();
    let worker = std::thread::spawn(move || {
        let t = tempfile::tempdir().unwrap();
        let run = RunDir::new(t.path());
        run.create().unwrap();
        // The survey reads the optimizer file's header beside a model file.
        std::fs::copy(dir.join("model.safetensors"), run.path_of("epoch-001")).unwrap();
        let target = optim_path(&run.path_of("epoch-001"));
        let mut failures: Vec<String> = Vec::new();
        for (fi, f) in corpus.iter().enumerate() {
            let bytes = std::fs::read(dir.join(f)).unwrap();
            for i in 0..CASES_PER_FILE {
                let seed = (fi as u64) << 32 | i;
                c.store(seed, Ordering::Relaxed);
                let mut rng = Rng(seed);
                let v = mutate(&bytes, &mut rng);
                std::fs::write(&target, &v).unwrap();
                LARGEST.store(0, Ordering::Relaxed);
                TRACK.store(true, Ordering::Relaxed);
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read_all(&target, &names, &run)));
                TRACK.store(false, Ordering::Relaxed);
                if r.is_err() {
                    failures.push(format!("{f} seed {seed:#x}: panicked"));
                }
                let largest = LARGEST.load(Ordering::Relaxed);
                if largest > v.len() + (64 << 10) {
                    failures.push(format!("{f} seed {seed:#x}: allocated {largest} bytes for a file of {}", v.len()));
                }
            }
        }
        tx.send(failures).unwrap();
    });
    let t0 = Instant::now();
    let failures = match rx.recv_timeout(DEADLINE) {
        Ok(f) => f,
        Err(_) => panic!("a reader hung: case seed {:#x} did not finish in {DEADLINE:?}", case.load(Ordering::Relaxed)),
    };
    worker.join().unwrap();
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), 3 * CASES_PER_FILE, failures.join("\n"));
    eprintln!("fuzz: {} cases in {:.1} s", 3 * CASES_PER_FILE, t0.elapsed().as_secs_f64());
}
