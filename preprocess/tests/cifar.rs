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
