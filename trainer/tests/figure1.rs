//! `train figure1` on a tiny procedural dataset (3 classes, 48 train images stored at
//! 256x256 from non-square sources): the 32x32 images are the area filter of the stored
//! ones, every grid run has its curve, the chosen runs are the soonest to the target,
//! the ratio is theirs, and the report, table and figure are written; a CIFAR-10
//! archive built by `preprocess build` is held exactly as its records are.

mod common;

use tch::Device;
use trainer::figure1::{self, data, Figure1Config};
use trainer::model::Activation;

#[test]
fn figure1_on_a_tiny_dataset_reports_the_time_to_the_target_and_the_ratio() {
    let t = tempfile::tempdir().unwrap();
    let ds = common::tiny_dataset(t.path());
    tch::set_num_threads(2);

    // The held images are the stored ones, area-filtered from 256 to 32.
    let held = data::load(&ds, 32, None, 2).unwrap();
    assert_eq!((held.len(), held.classes, held.side, held.source_side), (48, 3, 32, 256));
    let d = alexnet_shared::Dataset::open(&ds).unwrap();
    let split = d.split(alexnet_shared::Split::Train).unwrap();
    for row in [0usize, 47] {
        let r = split.get(row).unwrap();
        let mut want = vec![0u8; 3 * 32 * 32];
        data::area_downscale(r.bytes, 256, 256, 32, &mut want);
        let got = Vec::<u8>::try_from(held.pixels.get(row as i64).flatten(0, -1)).unwrap();
        assert_eq!(got, want, "row {row}");
        assert_eq!(held.labels.int64_value(&[row as i64]), r.label as i64);
        // The stored image's 8x8 block means, by hand, for one pixel of each channel.
        for (c, y, x) in [(0usize, 3usize, 29usize), (2, 30, 1)] {
            let mut s = 0u32;
            for dy in 0..8 {
                for dx in 0..8 {
                    s += r.bytes[((8 * y + dy) * 256 + 8 * x + dx) * 3 + c] as u32;
                }
            }
            assert_eq!(want[c * 1024 + y * 32 + x] as f64, (s as f64 / 64.0).round(), "row {row} ({c}, {y}, {x})");
        }
    }

    // A whole-image dataset (format 3) of the same sources: each row its own
    // non-square size, of which the central square is scaled down.
    let inputs = preprocess::inputs::InputOptions { root: t.path().join("images"), ..Default::default() };
    let mut b = preprocess::build::BuildConfig::new(inputs, t.path().join("whole"));
    (b.threads, b.progress, b.whole) = (2, false, Some((alexnet_shared::WholeResize::ShorterSide, 40)));
    preprocess::build::run(&b).unwrap();
    let whole = data::load(&t.path().join("whole"), 32, Some(5), 2).unwrap();
    assert_eq!((whole.len(), whole.source.as_str()), (5, "whole images, shorter side 40"));
    let wd = alexnet_shared::Dataset::open(&t.path().join("whole")).unwrap();
    let ws = wd.split(alexnet_shared::Split::Train).unwrap();
    let mut non_square = 0;
    for row in 0..5 {
        let r = ws.get(row).unwrap();
        let (h, w) = (r.height, r.width);
        non_square += usize::from(h != w);
        let s = h.min(w);
        let (y0, x0) = ((h - s) / 2, (w - s) / 2);
        let sq: Vec<u8> =
            (y0..y0 + s).flat_map(|y| r.bytes[(y * w + x0) * 3..(y * w + x0 + s) * 3].iter().copied()).collect();
        let mut want = vec![0u8; 3 * 32 * 32];
        data::area_downscale(&sq, s, s, 32, &mut want);
        let got = Vec::<u8>::try_from(whole.pixels.get(row as i64).flatten(0, -1)).unwrap();
        assert_eq!(got, want, "whole row {row} ({w}x{h})");
    }
    assert!(non_square >= 4, "the sources are non-square");

    // CIFAR-10's binary archive built as it is (32x32, `preprocess build`'s default for
    // it): Figure 1 holds its images unchanged, as CHW.
    let mut sc = preprocess::synth::SynthConfig::new(t.path().join("cifar-src"));
    (sc.classes, sc.train_per_class, sc.val_per_class, sc.layout) = (3, 4, 1, preprocess::synth::Layout::Cifar);
    preprocess::synth::run(&sc).unwrap();
    let archive = t.path().join("cifar-src").join(preprocess::archive::cifar::ARCHIVE);
    let inputs = preprocess::inputs::InputOptions { root: archive.clone(), ..Default::default() };
    let mut b = preprocess::build::BuildConfig::new(inputs, t.path().join("cifar"));
    (b.threads, b.progress, b.whole) = (2, false, Some((alexnet_shared::WholeResize::ShorterSide, 32)));
    preprocess::build::run(&b).unwrap();
    let held = data::load(&t.path().join("cifar"), 32, None, 2).unwrap();
    assert_eq!((held.len(), held.source.as_str()), (12, "whole images, shorter side 32"));
    let records = preprocess::archive::cifar::read(&archive).unwrap().train;
    let cd = alexnet_shared::Dataset::open(&t.path().join("cifar")).unwrap();
    let cs = cd.split(alexnet_shared::Split::Train).unwrap();
    for row in 0..12 {
        let key = cs.get(row).unwrap().key.to_string();
        let rec = records.iter().find(|r| r.key == key).unwrap();
        let chw: Vec<u8> = (0..3).flat_map(|c| rec.hwc.iter().skip(c).step_by(3).copied()).collect();
        let got = Vec::<u8>::try_from(held.pixels.get(row as i64).flatten(0, -1)).unwrap();
        assert_eq!(got, chw, "CIFAR row {row} ({key})");
    }

    let cfg = Figure1Config {
        epochs: 6.0,
        batch: 8,
        lr_relu: vec![0.002, 0.02],
        lr_tanh: vec![0.02],
        target: 0.4,
        evals_per_epoch: 3,
        measure_images: 40,
        ..Default::default()
    };
    let r = figure1::run(&ds, &cfg, Device::Cpu, 2).unwrap();
    assert_eq!((r.images, r.measured_images, r.classes, r.steps_per_epoch), (48, 40, 3, 6));
    assert_eq!(r.parameters, figure1::net::parameter_count(32, 3));
    assert_eq!(r.runs.len(), 3);
    for run in &r.runs {
        let c = &run.curve;
        assert!(c.len() >= 2 && c.len() <= 1 + 6 * 3, "{run:?}");
        assert_eq!(c[0].epoch, 0.0);
        assert!(c.windows(2).all(|w| w[1].epoch > w[0].epoch), "{run:?}");
        // Three measurements an epoch: after steps 2, 4 and 6 of 6.
        assert!((c[1].epoch - 1.0 / 3.0).abs() < 1e-9, "{run:?}");
        assert!(c.iter().all(|p| (0.0..=1.0).contains(&p.error)));
        assert_eq!(run.epochs_to_target, figure1::crossing(c, cfg.target));
        assert_eq!(run.epochs_run, c.last().unwrap().epoch);
        assert!(!run.diverged);
    }
    let (relu, tanh) = (&r.runs[r.relu.run], &r.runs[r.tanh.run]);
    assert_eq!((relu.activation, tanh.activation), (Activation::Relu, Activation::Tanh));
    let relu_at = r.relu.epochs_to_target.expect("ReLU reaches 40% training error on 3 easy classes");
    let tanh_at = r.tanh.epochs_to_target.expect("tanh too");
    for run in r.runs.iter().filter(|x| x.activation == Activation::Relu) {
        assert!(run.epochs_to_target.is_none_or(|e| e >= relu_at), "{run:?}");
    }
    assert!((r.ratio.unwrap() - tanh_at / relu_at).abs() < 1e-12);
    assert_eq!(r.ratio_at_least, None);

    let out = t.path().join("fig");
    let files = figure1::write(&r, &out).unwrap();
    assert_eq!(files.len(), 3);
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("figure1.json")).unwrap()).unwrap();
    assert_eq!(json["relu"]["epochs_to_target"].as_f64(), Some(relu_at));
    assert_eq!(json["tanh"]["lr"].as_f64(), Some(0.02));
    assert_eq!(json["ratio"].as_f64(), r.ratio);
    assert_eq!(json["runs"][0]["curve"].as_array().unwrap().len(), r.runs[0].curve.len());
    let md = std::fs::read_to_string(out.join("figure1.md")).unwrap();
    assert!(md.contains(&format!("{:.2}x sooner than tanh", r.ratio.unwrap())), "{md}");
    assert!(md.contains("| **relu** |") && md.contains("| **tanh** |"), "{md}");
    let png = image::open(out.join("figure1.png")).unwrap().to_rgb8();
    assert_eq!(png.dimensions(), (figure1::plot::WIDTH, figure1::plot::HEIGHT));
    let has = |rgb: [u8; 3]| png.pixels().any(|p| p.0 == rgb);
    assert!(has([0, 0, 255]) && has([255, 0, 0]), "the ReLU (blue) and tanh (red) curves");

    // Fewer images than a batch: an error that says what to do.
    let big = Figure1Config { batch: 64, ..cfg };
    let e = figure1::run(&ds, &big, Device::Cpu, 2).unwrap_err().to_string();
    assert!(e.contains("fewer than one batch of 64: lower the batch"), "{e}");
}
