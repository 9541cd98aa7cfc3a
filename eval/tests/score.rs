//! `eval score` end to end on small procedural datasets (non-square, asymmetric source
//! images): ties, fewer than five classes, one image, ensembles, class order, bad
//! checkpoints, prediction files. Agreement with PyTorch is checked by
//! `check_agreement.py` (scripts/test.sh).

use std::path::{Path, PathBuf};

use alexnet_shared::Dataset;
use eval::checkpoint::Overrides;
use eval::score::{run, ScoreConfig};
use preprocess::synth;
use tch::{nn::VarStore, Device, Tensor};
use trainer::checkpoint::{save_model, CheckpointMeta};
use trainer::data::{Crops, Normalization};
use trainer::model::{AlexNet, ModelConfig};

fn dataset(dir: &Path, classes: usize, val_per_class: usize) -> PathBuf {
    let mut s = synth::SynthConfig::new(dir.join("images"));
    s.classes = classes;
    s.train_per_class = 4;
    s.val_per_class = val_per_class;
    s.corrupt = 0;
    s.seed = 11;
    synth::build_raw(&s, &dir.join("ds")).unwrap()
}

fn small(classes: usize, crop: usize) -> ModelConfig {
    ModelConfig { width: 0.1, crop, ..ModelConfig::paper(classes) }
}

/// A seeded, untrained checkpoint for the dataset at `data`; `edit` may change tensors.
fn checkpoint(
    path: &Path,
    data: &Path,
    cfg: &ModelConfig,
    norm: Normalization,
    seed: i64,
    wnids: Option<Vec<String>>,
    edit: impl FnOnce(&VarStore),
) -> PathBuf {
    let vs = VarStore::new(Device::Cpu);
    let mut m = AlexNet::new(&vs.root(), cfg).unwrap();
    tch::manual_seed(seed);
    m.torch_default_init();
    tch::no_grad(|| edit(&vs));
    let ds = Dataset::open(data).unwrap();
    let meta = CheckpointMeta {
        model: cfg.clone(),
        normalization: norm,
        epoch: 1,
        step: 10,
        manifest_sha256: "00".repeat(32),
        wnids: wnids.unwrap_or_else(|| ds.manifest().wnids()),
        data_fingerprint: None,
        inputs: None,
        provenance: None,
        pca_noise: true,
    };
    save_model(path, &vs, Some(&meta)).unwrap();
    path.to_path_buf()
}

fn config(ckpts: &[&Path], data: &Path, crops: Crops) -> ScoreConfig {
    let mut c = ScoreConfig::new(ckpts.iter().map(|p| p.to_path_buf()).collect(), data.to_path_buf());
    c.crops = crops;
    c.batch_size = 3; // several batches, the last one short
    c
}

/// One line of a predictions CSV: key, label, [(class, probability)].
type Line = (String, i64, Vec<(i64, f32)>);

fn read_csv(path: &Path) -> Vec<Line> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("key,label,class_1,prob_1"), "{header}");
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let top = f[2..].chunks(2).map(|c| (c[0].parse().unwrap(), c[1].parse().unwrap())).collect();
            (f[0].to_string(), f[1].parse().unwrap(), top)
        })
        .collect()
}

#[test]
fn equal_probabilities_go_to_the_lower_class_index() {
    tch::set_num_threads(1);
    let t = tempfile::tempdir().unwrap();
    let data = dataset(t.path(), 6, 3);
    // fc8 all zeros: every class gets exactly 1/6 on every crop, for every image.
    let ck =
        checkpoint(&t.path().join("tie.safetensors"), &data, &small(6, 67), Normalization::MeanRgb, 1, None, |vs| {
            let v = vs.variables();
            let _ = v["classifier.6.weight"].shallow_clone().zero_();
            let _ = v["classifier.6.bias"].shallow_clone().zero_();
        });
    for crops in [Crops::Ten, Crops::Center] {
        let mut cfg = config(&[&ck], &data, crops);
        cfg.predictions = Some(t.path().join("p.csv"));
        let r = run(&cfg).unwrap();
        // Top-1 is class 0 for all 18 images (3 of label 0); top-5 is 0..5 (15 hits).
        assert_eq!((r.images, r.top1, r.top5), (18, 3.0 / 18.0, 15.0 / 18.0));
        assert_eq!(r.crops, crops.per_image());
        assert_eq!(r.per_class[0].top1, 1.0);
        assert_eq!(r.per_class[5].top5, 0.0);
        for (_, _, top) in read_csv(&t.path().join("p.csv")) {
            let classes: Vec<i64> = top.iter().map(|c| c.0).collect();
            assert_eq!(classes, [0, 1, 2, 3, 4]);
            assert!(top.iter().all(|c| (c.1 - 1.0 / 6.0).abs() < 1e-7));
        }
    }
}

#[test]
fn one_image_of_one_class() {
    tch::set_num_threads(1);
    let t = tempfile::tempdir().unwrap();
    let data = dataset(t.path(), 1, 1);
    let ck =
        checkpoint(&t.path().join("one.safetensors"), &data, &small(1, 67), Normalization::MeanImage, 2, None, |_| {});
    let mut cfg = config(&[&ck], &data, Crops::Ten);
    cfg.predictions = Some(t.path().join("p.parquet"));
    let r = run(&cfg).unwrap();
    assert_eq!((r.images, r.top1, r.top5, r.per_class.len()), (1, 1.0, 1.0, 1));
    // Parquet: key, label, class_1, prob_1 (one class: k = 1), probability 1.
    let f = std::fs::File::open(t.path().join("p.parquet")).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f).unwrap().build().unwrap();
    let batches: Vec<_> = reader.map(|b| b.unwrap()).collect();
    let b = &batches[0];
    let names: Vec<String> = b.schema().fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(names, ["key", "label", "class_1", "prob_1"]);
    assert_eq!(b.num_rows(), 1);
    let p = b.column(3).as_any().downcast_ref::<arrow_array::Float32Array>().unwrap().value(0);
    assert_eq!(p, 1.0);
}

#[test]
fn fewer_than_five_classes_ensembles_and_class_order() {
    tch::set_num_threads(1);
    let t = tempfile::tempdir().unwrap();
    let data = dataset(t.path(), 4, 4);
    let a =
        checkpoint(&t.path().join("a.safetensors"), &data, &small(4, 67), Normalization::MeanImage, 3, None, |_| {});
    // Another crop and normalization: its own loader, in lockstep with a's.
    let b =
        checkpoint(&t.path().join("b.safetensors"), &data, &small(4, 75), Normalization::Torchvision, 4, None, |_| {});
    let score = |ckpts: &[&Path], name: &str| {
        let mut cfg = config(ckpts, &data, Crops::Ten);
        cfg.predictions = Some(t.path().join(name));
        let r = run(&cfg).unwrap();
        (r, read_csv(&t.path().join(name)))
    };
    let (ra, pa) = score(&[&a], "a.csv");
    let (_, pb) = score(&[&b], "b.csv");
    let (re, pe) = score(&[&a, &b], "ab.csv");
    assert_eq!((ra.images, re.images, pa.len()), (16, 16, 16));
    // Four classes: four columns, all the probability.
    for ((ka, la, ta), ((kb, _, tb), (ke, le, te))) in pa.iter().zip(pb.iter().zip(&pe)) {
        assert!(ka == kb && ka == ke && la == le);
        assert_eq!(ta.len(), 4);
        let sum: f32 = te.iter().map(|c| c.1).sum();
        assert!((sum - 1.0).abs() < 1e-5);
        let prob = |top: &[(i64, f32)], c: i64| top.iter().find(|x| x.0 == c).unwrap().1;
        for c in 0..4 {
            let want = (prob(ta, c) + prob(tb, c)) / 2.0;
            assert!((prob(te, c) - want).abs() < 1e-6, "{ke} class {c}: {} vs {want}", prob(te, c));
        }
        // Ordered by probability.
        assert!(te.windows(2).all(|w| w[0].1 >= w[1].1));
    }

    // The same network with its outputs stored in reverse wnid order scores the same.
    let wnids = Dataset::open(&data).unwrap().manifest().wnids();
    let reversed: Vec<String> = wnids.iter().rev().cloned().collect();
    let r = checkpoint(
        &t.path().join("r.safetensors"),
        &data,
        &small(4, 67),
        Normalization::MeanImage,
        3,
        Some(reversed),
        |vs| {
            let v = vs.variables();
            let idx = Tensor::from_slice(&[3i64, 2, 1, 0]);
            for n in ["classifier.6.weight", "classifier.6.bias"] {
                let flipped = v[n].index_select(0, &idx);
                v[n].shallow_clone().copy_(&flipped);
            }
        },
    );
    let (rr, pr) = score(&[&r], "r.csv");
    assert_eq!((rr.top1, rr.top5), (ra.top1, ra.top5));
    for ((_, _, x), (_, _, y)) in pa.iter().zip(&pr) {
        for (p, q) in x.iter().zip(y) {
            assert!(p.0 == q.0 && (p.1 - q.1).abs() < 1e-6);
        }
    }
}

/// Every error is one line naming the file and what is wrong; nothing panics.
#[test]
fn bad_checkpoints_are_one_line_errors() {
    tch::set_num_threads(1);
    let t = tempfile::tempdir().unwrap();
    let data = dataset(t.path(), 3, 1);
    let good =
        checkpoint(&t.path().join("g.safetensors"), &data, &small(3, 67), Normalization::MeanImage, 5, None, |_| {});
    let err = |path: &Path, ov: Overrides| {
        let mut cfg = config(&[path], &data, Crops::Center);
        cfg.overrides = ov;
        let e = format!("{:#}", run(&cfg).unwrap_err());
        assert!(!e.contains('\n'), "not one line: {e}");
        e
    };
    // Truncated.
    let bytes = std::fs::read(&good).unwrap();
    let trunc = t.path().join("trunc.safetensors");
    std::fs::write(&trunc, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let e = err(&trunc, Overrides::default());
    assert!(e.contains("trunc.safetensors") && e.contains("damaged"), "{e}");
    // Not a checkpoint at all, and a missing file.
    let junk = t.path().join("junk.safetensors");
    std::fs::write(&junk, b"this is not a model").unwrap();
    assert!(err(&junk, Overrides::default()).contains("junk.safetensors"));
    let e = err(&t.path().join("none.safetensors"), Overrides::default());
    assert!(e.contains("none.safetensors"), "{e}");
    // The other model: --model owt for a paper checkpoint; owt tensors under paper metadata.
    let e = err(&good, Overrides { arch: Some(trainer::model::Arch::Owt), ..Default::default() });
    assert!(e.contains("holds the paper model") && e.contains("--model"), "{e}");
    let other = t.path().join("other.safetensors");
    {
        let vs = VarStore::new(Device::Cpu);
        let _m = AlexNet::new(&vs.root(), &ModelConfig::owt(3)).unwrap();
        let meta = trainer::checkpoint::read_meta(&good).unwrap().unwrap();
        save_model(&other, &vs, Some(&meta)).unwrap();
    }
    let e = err(&other, Overrides::default());
    assert!(e.contains("other.safetensors") && e.contains("its metadata does not describe its tensors"), "{e}");
    // Made for other classes: one wnid differs; and an import with 5 outputs for 3 classes.
    let mut wnids = Dataset::open(&data).unwrap().manifest().wnids();
    let replaced = std::mem::replace(&mut wnids[1], "n09999999".into());
    let cls = checkpoint(
        &t.path().join("cls.safetensors"),
        &data,
        &small(3, 67),
        Normalization::MeanImage,
        6,
        Some(wnids.clone()),
        |_| {},
    );
    let e = err(&cls, Overrides::default());
    assert!(e.contains("other classes") && e.contains("n09999999") && e.contains(&replaced), "{e}");
    let five = t.path().join("five.safetensors");
    {
        let vs = VarStore::new(Device::Cpu);
        let _m = AlexNet::new(&vs.root(), &small(5, 67)).unwrap();
        save_model(&five, &vs, None).unwrap();
    }
    let e = err(&five, Overrides { crop: Some(67), ..Default::default() });
    assert!(e.contains("5 outputs") && e.contains("3 classes"), "{e}");
    // bf16 is for CUDA.
    let mut cfg = config(&[&good], &data, Crops::Center);
    cfg.bf16 = true;
    assert!(run(&cfg).unwrap_err().to_string().contains("is for CUDA"));
}

/// A file without metadata (as PyTorch exports one) is read off its tensor names and
/// shapes: the same scores as the trainer's file with metadata, given the same
/// normalization; a paper net at a crop other than 227 needs --crop.
#[test]
fn imports_without_metadata() {
    tch::set_num_threads(1);
    let t = tempfile::tempdir().unwrap();
    let data = dataset(t.path(), 3, 2);
    let with =
        checkpoint(&t.path().join("m.safetensors"), &data, &small(3, 99), Normalization::MeanImage, 7, None, |_| {});
    let without = t.path().join("bare.safetensors");
    {
        let mut vs = VarStore::new(Device::Cpu);
        let _m = AlexNet::new(&vs.root(), &small(3, 99)).unwrap();
        trainer::checkpoint::load_model(&with, &mut vs).unwrap();
        save_model(&without, &vs, None).unwrap();
    }
    let mut cfg = config(&[&without], &data, Crops::Ten);
    let e = format!("{:#}", run(&cfg).unwrap_err());
    assert!(e.contains("give --crop") && e.contains("99"), "{e}");
    cfg.overrides.crop = Some(99);
    let (a, b) = (run(&cfg).unwrap(), run(&config(&[&with], &data, Crops::Ten)).unwrap());
    assert_eq!((a.top1, a.top5, a.images), (b.top1, b.top5, b.images));
    assert!(a.models[0].contains("imported") && a.models[0].contains("width 0.1"), "{}", a.models[0]);
}
