//! CIFAR-10's binary archive: `preprocess synth --layout cifar` writes one, the reader
//! gives back every label and pixel (asymmetric procedural images: a swapped plane,
//! row or column order would show), and damaged archives are errors, not panics.

use preprocess::archive::cifar::{self, RECORD};
use preprocess::synth::{self, Layout, SynthConfig};

fn config(dir: &std::path::Path) -> SynthConfig {
    let mut s = SynthConfig::new(dir.to_path_buf());
    (s.classes, s.train_per_class, s.val_per_class, s.seed, s.layout) = (3, 5, 2, 4, Layout::Cifar);
    s
}

#[test]
fn a_synthetic_cifar_archive_round_trips_labels_and_pixels() {
    let t = tempfile::tempdir().unwrap();
    let s = config(t.path());
    let sum = synth::run(&s).unwrap();
    assert_eq!((sum.train, sum.val, sum.classes), (15, 6, 3));
    let c = cifar::read(&t.path().join(cifar::ARCHIVE)).unwrap();
    assert_eq!(c.classes, (0..3).map(synth::class_name).collect::<Vec<_>>());
    assert_eq!((c.train.len(), c.test.len()), (15, 6));
    let (train, test) = synth::cifar::labels(&s);
    for (i, img) in c.train.iter().enumerate() {
        assert_eq!(img.label, train[i]);
        assert_eq!(img.hwc, synth::cifar::image(&s, train[i] as usize, i), "train {i}");
    }
    for (i, img) in c.test.iter().enumerate() {
        assert_eq!(img.label, test[i]);
        assert_eq!(img.hwc, synth::cifar::image(&s, test[i] as usize, 15 + i), "test {i}");
        assert_eq!(img.key, format!("test_batch.bin:{i}"));
    }
    // Fifteen images over five batches: three in each, in order.
    assert_eq!(c.train[3].key, "data_batch_2.bin:0");
    // The images are not symmetric: flipping either axis or swapping them changes them.
    let px =
        |hwc: &[u8], y: usize, x: usize| [hwc[(y * 32 + x) * 3], hwc[(y * 32 + x) * 3 + 1], hwc[(y * 32 + x) * 3 + 2]];
    let a = &c.train[0].hwc;
    assert!((0..32).any(|y| (0..32).any(|x| px(a, y, x) != px(a, x, y))));
    assert!((0..32).any(|y| (0..32).any(|x| px(a, y, x) != px(a, 31 - y, x))));
    // One record by hand: label byte, then the red plane from the top-left pixel.
    let rec = synth::cifar::record(c.train[4].label, &c.train[4].hwc);
    assert_eq!(rec.len(), RECORD);
    assert_eq!((rec[0], rec[1 + 32 + 5], rec[1 + 1024 + 32 + 5], rec[1 + 2048]), {
        let p = px(&c.train[4].hwc, 1, 5);
        (c.train[4].label, p[0], p[1], px(&c.train[4].hwc, 0, 0)[2])
    });
}

#[test]
fn damaged_cifar_archives_are_errors() {
    let t = tempfile::tempdir().unwrap();
    synth::run(&config(t.path())).unwrap();
    let good = std::fs::read(t.path().join(cifar::ARCHIVE)).unwrap();
    let cut = t.path().join("cut.tar.gz");
    std::fs::write(&cut, &good[..good.len() / 2]).unwrap();
    let e = format!("{:#}", cifar::read(&cut).unwrap_err());
    assert!(e.contains("cut.tar.gz"), "{e}");
    // A tar without the test batch.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    let meta = b"cat\ndog\n";
    h.set_size(meta.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, "cifar-10-batches-bin/batches.meta.txt", &meta[..]).unwrap();
    let only_meta = t.path().join("meta.tar");
    std::fs::write(&only_meta, b.into_inner().unwrap()).unwrap();
    let e = format!("{:#}", cifar::read(&only_meta).unwrap_err());
    assert!(e.contains("no cifar-10-batches-bin/data_batch_1.bin"), "{e}");
    let e = format!("{:#}", cifar::read(&t.path().join("missing.tar.gz")).unwrap_err());
    assert!(e.contains("missing.tar.gz"), "{e}");
}

/// Every row of a split: (key, label, height, width, pixels).
fn stored(dir: &std::path::Path, split: alexnet_shared::Split) -> Vec<(String, i16, usize, usize, Vec<u8>)> {
    let ds = alexnet_shared::Dataset::open(dir).unwrap();
    let r = ds.split_verified(split).unwrap();
    (0..r.len())
        .map(|i| {
            let img = r.get(i).unwrap();
            (img.key.to_string(), img.label, img.height, img.width, img.bytes.to_vec())
        })
        .collect()
}

fn build(args: &[&str], input: &std::path::Path, output: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_preprocess"))
        .args(["build", "--quiet", "--threads", "2", "--shard-rows", "4", "--input"])
        .arg(input)
        .arg("--output")
        .arg(output)
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap()
}

#[test]
fn the_build_keeps_cifar_images_as_they_are_from_the_archive_or_its_folder() {
    use alexnet_shared::{Layout, Manifest, Split, WholeResize};
    let t = tempfile::tempdir().unwrap();
    let s = config(t.path());
    synth::run(&s).unwrap();
    let archive = t.path().join(cifar::ARCHIVE);
    // The archive given as --input, with no --keep: whole images at their own 32x32.
    let out = t.path().join("ds");
    let o = build(&[], &archive, &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = Manifest::load(&out).unwrap();
    assert_eq!((m.format_version, m.image_size), (3, 32));
    assert_eq!(m.layout, Layout::Whole { resize: WholeResize::ShorterSide });
    assert!(m.mean_image.is_none());
    assert_eq!(m.build.archives.len(), 1);
    assert_eq!((m.build.archives[0].role.as_str(), m.build.archives[0].file.as_str()), ("cifar", cifar::ARCHIVE));
    // The classes are the meta file's names (spaces as `_` in the id), sorted; each
    // record's label names the same class in the dataset.
    let names: Vec<String> = (0..3).map(synth::class_name).collect();
    let mut ids: Vec<String> = names.iter().map(|n| n.replace(' ', "_")).collect();
    ids.sort();
    assert_eq!(m.classes.iter().map(|c| c.wnid.clone()).collect::<Vec<_>>(), ids);
    for c in &m.classes {
        assert_eq!(c.name.replace(' ', "_"), c.wnid);
    }
    let (train_labels, test_labels) = synth::cifar::labels(&s);
    let c = cifar::read(&archive).unwrap();
    let mut sum = [0f64; 3];
    for (split, records, labels, first) in
        [(Split::Train, &c.train, &train_labels, 0), (Split::Val, &c.test, &test_labels, c.train.len())]
    {
        let rows = stored(&out, split);
        assert_eq!(rows.len(), records.len());
        for (key, label, h, w, px) in &rows {
            let i = records.iter().position(|r| &r.key == key).unwrap_or_else(|| panic!("no record {key}"));
            assert_eq!((*h, *w), (32, 32));
            // The pixels unchanged: the synthetic image of that record.
            assert_eq!(px, &synth::cifar::image(&s, labels[i] as usize, first + i), "{key}");
            assert_eq!(m.classes[*label as usize].name, synth::class_name(labels[i] as usize), "{key}");
            if split == Split::Train {
                for p in px.chunks_exact(3) {
                    (0..3).for_each(|ch| sum[ch] += p[ch] as f64);
                }
            }
        }
    }
    // The mean RGB is over every stored train pixel.
    let n = (c.train.len() * 32 * 32) as f64;
    for ch in 0..3 {
        assert!((m.stats.mean_rgb[ch] - sum[ch] / n).abs() < 1e-9, "{:?} vs {}", m.stats.mean_rgb, sum[ch] / n);
    }

    // The unpacked folder builds the same shards.
    let unpacked = t.path().join("unpacked");
    let mut a = tar::Archive::new(flate2::read::GzDecoder::new(std::fs::File::open(&archive).unwrap()));
    a.unpack(&unpacked).unwrap();
    let from_folder = t.path().join("ds-folder");
    let o = build(&[], &unpacked.join(cifar::FOLDER), &from_folder);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for split in [Split::Train, Split::Val] {
        assert_eq!(stored(&from_folder, split), stored(&out, split));
    }

    // --limit-per-class takes the first records of each class; --keep center rescales to
    // the paper's 256x256 squares (with a mean image).
    let limited = t.path().join("ds-limited");
    let o = build(&["--limit-per-class", "2", "--keep", "center"], &archive, &limited);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = Manifest::load(&limited).unwrap();
    assert_eq!((m.format_version, m.image_size, m.layout), (2, 256, Layout::CenterSquare));
    let rows = stored(&limited, Split::Train);
    assert_eq!(rows.len(), 6);
    assert!(rows.iter().all(|r| r.4.len() == 256 * 256 * 3));
    let keys: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    // Labels dealt 0,1,2,0,1,2,...: the first two of each class are records 0..6, the
    // first two batches (three records each).
    let want: std::collections::BTreeSet<&str> = [
        "data_batch_1.bin:0",
        "data_batch_1.bin:1",
        "data_batch_1.bin:2",
        "data_batch_2.bin:0",
        "data_batch_2.bin:1",
        "data_batch_2.bin:2",
    ]
    .into();
    assert_eq!(keys, want);

    // A damaged archive is one error line naming it, no panic.
    let bad = t.path().join("bad").join(cifar::ARCHIVE);
    std::fs::create_dir_all(bad.parent().unwrap()).unwrap();
    let good = std::fs::read(&archive).unwrap();
    std::fs::write(&bad, &good[..good.len() / 3]).unwrap();
    let o = build(&[], &bad, &t.path().join("ds-bad"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("error: ") && err.contains("bad/cifar-10-binary.tar.gz") && !err.contains("panicked"),
        "{err}"
    );
}
