//! `eval predict` on image files: the source files of a built dataset (non-square,
//! asymmetric procedural JPEGs) and PNG copies of them classified as `eval score`
//! classifies the dataset's rows; checkpoints that carry their inputs need no dataset,
//! older ones are told to give `--data`; unreadable inputs are named and the others
//! still printed, with a failing exit code.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use std::sync::Arc;

use alexnet_shared::{read_mean_image, Dataset, Split};
use eval::predict::{run as predict, PredictConfig};
use eval::score::{run as score, ScoreConfig};
use preprocess::synth;
use tch::nn::{self, OptimizerConfig, VarStore};
use tch::Device;
use trainer::checkpoint::{save_model, CheckpointMeta, InputsMeta};
use trainer::data::{Crops, LoaderConfig, Normalization, Pipeline};
use trainer::model::{AlexNet, ModelConfig};

const EVAL: &str = env!("CARGO_BIN_EXE_eval");

/// 3 classes, 4 val images each; the source images stay in `dir/images`.
fn dataset(dir: &Path) -> PathBuf {
    let mut s = synth::SynthConfig::new(dir.join("images"));
    (s.classes, s.train_per_class, s.val_per_class, s.corrupt, s.seed) = (3, 4, 4, 0, 17);
    synth::build_raw(&s, &dir.join("ds")).unwrap()
}

/// A checkpoint for `data` fitted for 40 Adam steps to the val split's centre crops (so
/// that images get different classes with clear margins: a top-1 that float rounding
/// cannot flip); `inputs`: the class names and normalization data, as the trainer
/// records them.
fn checkpoint(path: &Path, data: &Path, norm: Normalization, inputs: bool) -> PathBuf {
    let cfg = ModelConfig { width: 0.1, crop: 99, ..ModelConfig::paper(3) };
    let vs = VarStore::new(Device::Cpu);
    let mut m = AlexNet::new(&vs.root(), &cfg).unwrap();
    tch::manual_seed(5);
    m.torch_default_init();
    m.set_dropout(0.0);
    let ds = Dataset::open(data).unwrap();
    let manifest = ds.manifest();
    let mean = read_mean_image(&data.join(manifest.mean_image.as_ref().unwrap())).unwrap();
    let split = Arc::new(ds.split(Split::Val).unwrap());
    let mut lc = LoaderConfig::new(12, 99, Crops::Center);
    lc.workers = 1;
    let mut val = Pipeline::new(split, lc, manifest, Some(&mean), norm, Device::Cpu).unwrap();
    val.start(0);
    let batch = val.next_batch().unwrap().unwrap();
    let (x, y) = (val.input(&batch, false).unwrap(), batch.labels());
    let mut opt = nn::Adam::default().build(&vs, 1e-3).unwrap();
    for _ in 0..40 {
        let loss = m.forward_t(&x, false).cross_entropy_for_logits(&y);
        opt.backward_step(&loss);
    }
    let mean = (norm == Normalization::MeanImage).then_some(mean.as_slice());
    let meta = CheckpointMeta {
        model: cfg,
        normalization: norm,
        epoch: 1,
        step: 40,
        manifest_sha256: String::new(),
        wnids: manifest.wnids(),
        data_fingerprint: None,
        inputs: inputs.then(|| InputsMeta::of(manifest, mean)),
        provenance: None,
        pca_noise: true,
    };
    save_model(path, &vs, Some(&meta)).unwrap();
    path.to_path_buf()
}

/// `eval score --predictions` of the val split: key -> (top-1 class, its probability).
fn scored(ckpt: &Path, data: &Path, crops: Crops, dir: &Path) -> HashMap<String, (i64, f64)> {
    let mut c = ScoreConfig::new(vec![ckpt.to_path_buf()], data.to_path_buf());
    c.crops = crops;
    let csv = dir.join(format!("predictions-{crops:?}.csv"));
    c.predictions = Some(csv.clone());
    score(&c).unwrap();
    let text = std::fs::read_to_string(&csv).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].to_string(), (f[2].parse().unwrap(), f[3].parse().unwrap()))
        })
        .collect()
}

/// The source file of a val key (its path in the flat val folder).
fn source(images: &Path, key: &str) -> PathBuf {
    let p = images.join("val").join(key);
    assert!(p.is_file(), "key {key} is not a file under {}", images.display());
    p
}

#[test]
fn predict_on_the_source_files_agrees_with_score_on_the_built_dataset() {
    let t = tempfile::tempdir().unwrap();
    let data = dataset(t.path());
    let images = t.path().join("images");
    for norm in [Normalization::MeanImage, Normalization::MeanRgb] {
        let ckpt = checkpoint(&t.path().join(format!("{norm:?}.safetensors")), &data, norm, true);
        for crops in [Crops::Center, Crops::Ten] {
            let want = scored(&ckpt, &data, crops, t.path());
            assert_eq!(want.len(), 12);
            // The files the dataset was built from, no dataset given.
            let files: Vec<PathBuf> = want.keys().map(|k| source(&images, k)).collect();
            let mut cfg = PredictConfig::new(files, vec![ckpt.clone()]);
            (cfg.crops, cfg.batch_size) = (crops, 5);
            let report = predict(&cfg).unwrap();
            assert!(report.failed.is_empty(), "{:?}", report.failed);
            assert_eq!(report.images.len(), 12);
            let mut classes = std::collections::BTreeSet::new();
            for p in &report.images {
                let key = Path::new(&p.path).strip_prefix(images.join("val")).unwrap().to_string_lossy().into_owned();
                let (class, prob) = want[&key];
                let top = &p.top[0];
                assert_eq!(top.index as i64, class, "{key} {norm:?} {crops:?}");
                // The same pixels, the same crops: the same probability up to float32
                // summation order (two normalization paths, other batch sizes).
                assert!((top.probability - prob).abs() < 1e-5, "{key}: {} vs {prob}", top.probability);
                assert_eq!(p.top.len(), 3, "top-5 of 3 classes is 3");
                let sum: f64 = p.top.iter().map(|g| g.probability).sum();
                assert!((sum - 1.0).abs() < 1e-5, "{sum}");
                assert!(p.top.windows(2).all(|w| w[0].probability >= w[1].probability));
                assert_eq!(top.wnid, Dataset::open(&data).unwrap().manifest().classes[top.index].wnid);
                classes.insert(top.index);
            }
            // Not one class for everything: the check above means something.
            assert!(classes.len() >= 2, "{classes:?}");
        }
        // PNG copies of three of them (decoded pixels saved losslessly): the same top-1.
        let want = scored(&ckpt, &data, Crops::Center, t.path());
        let png_dir = t.path().join(format!("png-{norm:?}"));
        std::fs::create_dir_all(&png_dir).unwrap();
        let mut keys: Vec<&String> = want.keys().collect();
        keys.sort();
        let mut by_png = HashMap::new();
        for (i, key) in keys.iter().take(3).enumerate() {
            let png = png_dir.join(format!("copy-{i}.png"));
            image::open(source(&images, key)).unwrap().to_rgb8().save(&png).unwrap();
            by_png.insert(png.display().to_string(), want[*key].0);
        }
        // A folder as input: its image files, in name order.
        let report = predict(&PredictConfig::new(vec![png_dir.clone()], vec![ckpt.clone()])).unwrap();
        let got: Vec<&str> = report.images.iter().map(|p| p.path.as_str()).collect();
        let mut names: Vec<&String> = by_png.keys().collect();
        names.sort();
        assert_eq!(got, names);
        for p in &report.images {
            assert_eq!(p.top[0].index as i64, by_png[&p.path], "{}", p.path);
        }
    }
}

#[test]
fn older_checkpoints_need_data_and_bad_inputs_are_named_while_the_others_print() {
    let t = tempfile::tempdir().unwrap();
    let data = dataset(t.path());
    let old = checkpoint(&t.path().join("old.safetensors"), &data, Normalization::MeanImage, false);
    let good = std::fs::read_dir(t.path().join("images/val"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "JPEG"))
        .unwrap();
    // Without its inputs recorded and without --data: the error says what to give.
    let e = predict(&PredictConfig::new(vec![good.clone()], vec![old.clone()])).unwrap_err().to_string();
    assert!(e.contains("old.safetensors") && e.contains("give --data DATASET"), "{e}");
    let mut cfg = PredictConfig::new(vec![good.clone()], vec![old.clone()]);
    cfg.data = Some(data.clone());
    let with_data = predict(&cfg).unwrap();
    assert_eq!(with_data.images.len(), 1);
    // The same as a checkpoint carrying the same inputs.
    let new = checkpoint(&t.path().join("new.safetensors"), &data, Normalization::MeanImage, true);
    let carried = predict(&PredictConfig::new(vec![good.clone()], vec![new])).unwrap();
    assert_eq!(carried.images[0].top, with_data.images[0].top);

    // The binary: a good image, a corrupt one, a missing one, an empty folder.
    let bad = t.path().join("bad.jpg");
    std::fs::write(&bad, b"\xff\xd8\xff\xe0 not really a jpeg").unwrap();
    let missing = t.path().join("missing.png");
    let empty = t.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let run = |extra: &[&str]| {
        let mut c = Command::new(EVAL);
        c.env_remove("RUST_BACKTRACE").arg("predict");
        c.args([&good, &bad, &missing, &empty]).arg("--checkpoint").arg(&old).arg("--data").arg(&data);
        c.args(extra).output().unwrap()
    };
    let o = run(&[]);
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(out.starts_with(&format!("{}\n", good.display())) && out.contains("   1 "), "{out}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 4, "{err}");
    assert_eq!(
        lines[0],
        format!("error: {}: truncated JPEG: the file ends before its end-of-image marker", bad.display())
    );
    assert_eq!(lines[1], format!("error: {}: no such file or folder", missing.display()));
    assert!(lines[2].starts_with(&format!("error: {}: no image files in the folder", empty.display())), "{err}");
    assert_eq!(lines[3], "error: 3 of 4 input(s) could not be classified (named above); the others are printed");
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "{err}");
    // JSON on standard output: the predictions and the failures.
    let o = run(&["--json", "-"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["images"].as_array().unwrap().len(), 1);
    assert_eq!(v["failed"].as_array().unwrap().len(), 3);
    assert_eq!(v["images"][0]["top"][0]["rank"], 1);
    // CSV to a file: a header and one line per class of the good image.
    let csv = t.path().join("p.csv");
    let o = run(&["--csv", csv.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let text = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows[0], "path,rank,index,wnid,name,probability");
    assert_eq!(rows.len(), 4, "{text}");
    assert!(rows[1].starts_with(&format!("{},1,", good.display())), "{text}");
}
