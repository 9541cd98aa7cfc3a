//! The input pipeline on a small built dataset: coverage per epoch across ranks,
//! reproducibility, crops against the shard pixels, the float conversion against the
//! paper's formula, the PCA colour noise's distribution, the two float paths of the
//! pipeline builder against each other, errors from damaged shards, prompt shutdown.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use alexnet_shared::{read_mean_image, Dataset, Encoding, Split, IMAGE_SIDE};
use preprocess::build::{self, BuildConfig};
use preprocess::inputs::InputOptions;
use preprocess::synth;
use tch::{Device, Kind, Tensor};
use trainer::data::augment::{crop_into, ten_crops, train_draw};
use trainer::data::pixels;
use trainer::data::{
    Crops, FloatIn, Loader, LoaderConfig, Normalization, Normalizer, OnDamaged, Pipeline, PixelTransform, Rows, Shuffle,
};

fn build_dataset(dir: &Path, encoding: Encoding) -> PathBuf {
    let images = dir.join("images");
    if !images.exists() {
        let mut s = synth::SynthConfig::new(images.clone());
        s.classes = 3;
        s.train_per_class = 24;
        s.val_per_class = 5;
        s.corrupt = 0;
        synth::run(&s).unwrap();
    }
    let out = dir.join(encoding.name());
    let mut cfg = BuildConfig::new(InputOptions { root: images, ..Default::default() }, out.clone());
    cfg.encoding = encoding;
    if encoding == Encoding::Mixed {
        cfg.raw_fraction = 0.5;
    }
    cfg.shard_rows = 16;
    cfg.threads = 2;
    cfg.progress = false;
    build::run(&cfg).unwrap();
    out
}

/// One raw dataset for the read-only tests: 72 train rows in 5 shards, 15 val rows.
fn shared_dataset() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let t = tempfile::tempdir().unwrap();
        let p = build_dataset(t.path(), Encoding::Raw);
        (t, p)
    })
    .1
}

fn split(dir: &Path, s: Split) -> Arc<alexnet_shared::SplitReader> {
    Arc::new(Dataset::open(dir).unwrap().split(s).unwrap())
}

fn cfg(batch: usize, crop: usize, crops: Crops) -> LoaderConfig {
    let mut c = LoaderConfig::new(batch, crop, crops);
    c.workers = 2;
    c.prefetch = 2;
    c.seed = 11;
    c
}

fn bytes(t: &Tensor) -> Vec<u8> {
    Vec::<u8>::try_from(t.flatten(0, -1)).unwrap()
}

/// The oracle of the PCA colour shift, in f64 from the manifest's own numbers (DESIGN.md):
/// `sum_i alpha_i * (lambda_i / 255) * p_i` on the 0..255 scale, with `eigenvalues` of
/// the 0..255 covariance and `eigenvectors[i]` a unit row.
fn pca_shift(alpha: [f32; 3], eigenvalues: [f64; 3], eigenvectors: [[f64; 3]; 3]) -> [f64; 3] {
    let mut s = [0.0; 3];
    for i in 0..3 {
        let a = alpha[i] as f64 * eigenvalues[i] / 255.0;
        for c in 0..3 {
            s[c] += a * eigenvectors[i][c];
        }
    }
    s
}

#[test]
fn every_image_appears_once_per_epoch_across_ranks() {
    let dir = shared_dataset();
    for shuffle in [Shuffle::Full, Shuffle::ShardThenRow] {
        let world = 3;
        let mut seen = Vec::new();
        let mut steps = Vec::new();
        for rank in 0..world {
            let mut c = cfg(5, 64, Crops::Train);
            c.shuffle = shuffle;
            (c.rank, c.world) = (rank, world);
            let mut l = Loader::new(split(dir, Split::Train), c).unwrap();
            let n = l.start(0);
            let mut k = 0;
            while let Some(b) = l.next_batch().unwrap() {
                assert_eq!(b.len(), 5, "whole batches only");
                seen.extend_from_slice(b.rows());
                k += 1;
            }
            assert_eq!(k, n);
            steps.push(n);
        }
        assert_eq!(steps, [4, 4, 4]); // 72 / 3 = 24 rows per rank: 4 batches of 5
        let before = seen.len();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), before, "an image was read twice in one epoch");
    }
    // Validation: every row exactly once over 2 ranks, last batches short.
    let mut seen = Vec::new();
    for rank in 0..2 {
        let mut c = cfg(4, 64, Crops::Center);
        (c.rank, c.world) = (rank, 2);
        let mut l = Loader::new(split(dir, Split::Val), c).unwrap();
        l.start(0);
        while let Some(b) = l.next_batch().unwrap() {
            seen.extend_from_slice(b.rows());
        }
    }
    seen.sort();
    assert_eq!(seen, (0..15).collect::<Vec<_>>());
}

#[test]
fn the_same_seed_gives_the_same_batches_whatever_the_threads() {
    let dir = shared_dataset();
    let run = |seed: u64, workers: usize| {
        let mut c = cfg(8, 96, Crops::Train);
        c.seed = seed;
        c.workers = workers;
        let mut l = Loader::new(split(dir, Split::Train), c).unwrap();
        let mut out = Vec::new();
        for epoch in 0..2 {
            l.start(epoch);
            while let Some(b) = l.next_batch().unwrap() {
                out.push((
                    bytes(&b.images().unwrap()),
                    Vec::<i64>::try_from(b.labels()).unwrap(),
                    Vec::<f32>::try_from(b.alphas().flatten(0, -1)).unwrap(),
                ));
            }
        }
        out
    };
    let a = run(1, 1);
    assert_eq!(a.len(), 18);
    assert!(a == run(1, 3), "1 and 3 workers differ");
    assert!(a != run(2, 2), "another seed gives the same batches");
    assert!(a[..9] != a[9..], "two epochs are the same");
}

#[test]
fn crops_are_the_shard_pixels_at_the_recorded_offsets() {
    let dir = shared_dataset();
    let s = split(dir, Split::Train);
    for (crops, crop) in [(Crops::Train, 227), (Crops::Center, 227), (Crops::Ten, 224)] {
        let mut l = Loader::new(s.clone(), cfg(3, crop, crops)).unwrap();
        l.start(0);
        let b = l.next_batch().unwrap().unwrap();
        assert_eq!(b.len(), 3 * crops.per_image());
        let imgs = bytes(&b.images().unwrap());
        let labels = Vec::<i64>::try_from(b.labels()).unwrap();
        let per = crop * crop * 3;
        let mut want = vec![0u8; per];
        for (i, (&row, spec)) in b.rows().iter().zip(b.specs()).enumerate() {
            let src = s.get(row).unwrap();
            crop_into(src.bytes, *spec, crop, &mut want);
            assert!(imgs[i * per..(i + 1) * per] == want[..], "{crops:?} crop {i}");
            assert_eq!(labels[i], src.label as i64);
        }
        if crops == Crops::Ten {
            for img in 0..3 {
                assert_eq!(b.specs()[img * 10..img * 10 + 10], ten_crops(224));
                assert!(b.rows()[img * 10..img * 10 + 10].iter().all(|&r| r == b.rows()[img * 10]));
            }
        }
        if crops == Crops::Center {
            assert!(b.specs().iter().all(|s| (s.y, s.x, s.flip) == (14, 14, false)));
        }
    }
}

/// The float batch against the formula of the torch_loader anchor:
/// `f = crop + shift - mean`, shift = sum_i alpha_i (lambda_i / 255) p_i; CHW.
#[test]
fn normalizer_applies_the_papers_formula() {
    let dir = shared_dataset();
    let ds = Dataset::open(dir).unwrap();
    let m = ds.manifest();
    let mean_img = read_mean_image(&dir.join(m.mean_image.as_ref().unwrap())).unwrap();
    let mut l = Loader::new(split(dir, Split::Train), cfg(4, 100, Crops::Train)).unwrap();
    l.start(3);
    let b = l.next_batch().unwrap().unwrap();
    let crops = bytes(&b.images().unwrap());
    let alphas = Vec::<f32>::try_from(b.alphas().flatten(0, -1)).unwrap();
    assert!(b.specs().iter().any(|s| s.flip) || b.specs().iter().any(|s| !s.flip));
    for norm in [Normalization::MeanImage, Normalization::MeanRgb, Normalization::Torchvision] {
        let n = Normalizer::new(m, Some(&mean_img), norm, Device::Cpu).unwrap();
        let x = n.apply(&b, true).unwrap();
        assert_eq!(x.size(), [4, 3, 100, 100]);
        assert_eq!(x.kind(), Kind::Float);
        let xv = Vec::<f32>::try_from(x.flatten(0, -1)).unwrap();
        for i in 0..4 {
            let spec = b.specs()[i];
            let shift = pca_shift(
                [alphas[3 * i], alphas[3 * i + 1], alphas[3 * i + 2]],
                m.stats.pca.eigenvalues,
                m.stats.pca.eigenvectors,
            );
            for &(y, xx, ch) in &[(0usize, 0usize, 0usize), (5, 97, 1), (99, 3, 2), (50, 50, 0)] {
                let v = crops[((i * 100 + y) * 100 + xx) * 3 + ch] as f64 + shift[ch];
                let sx = if spec.flip { spec.x + 99 - xx } else { spec.x + xx };
                let want = match norm {
                    Normalization::MeanImage => v - mean_img[((spec.y + y) * IMAGE_SIDE + sx) * 3 + ch] as f64,
                    Normalization::MeanRgb => v - m.stats.mean_rgb[ch],
                    Normalization::Torchvision => (v / 255.0 - [0.485, 0.456, 0.406][ch]) / [0.229, 0.224, 0.225][ch],
                };
                let got = xv[((i * 3 + ch) * 100 + y) * 100 + xx] as f64;
                assert!((got - want).abs() < 1e-3, "{norm:?} image {i} ({y},{xx},{ch}): {got} vs {want}");
            }
        }
    }
    // Without noise (evaluation) the shift is zero.
    let n = Normalizer::new(m, None, Normalization::MeanRgb, Device::Cpu).unwrap();
    let x = Vec::<f32>::try_from(n.apply(&b, false).unwrap().flatten(0, -1)).unwrap();
    assert!((x[0] as f64 - (crops[0] as f64 - m.stats.mean_rgb[0])).abs() < 1e-4);
    assert!(Normalizer::new(m, None, Normalization::MeanImage, Device::Cpu).is_err());
}

/// DESIGN.md: lambda = [9356, 2147, 934] gives a shift of about 3.7 grey levels (one
/// sigma) along p_1. Over many draws the shifts have covariance
/// sum_i (0.1 * lambda_i / 255)^2 p_i p_i^T: check each direction's spread.
#[test]
fn pca_noise_has_the_papers_distribution_and_directions() {
    let lambda = [9356.0, 2147.0, 934.0];
    let s = 1.0 / 3f64.sqrt();
    let p = [
        [s, s, s],
        [1.0 / 2f64.sqrt(), 0.0, -1.0 / 2f64.sqrt()],
        [1.0 / 6f64.sqrt(), -2.0 / 6f64.sqrt(), 1.0 / 6f64.sqrt()],
    ];
    let n = 20000;
    let mut proj = [[0.0f64; 2]; 3]; // sum and sum of squares of the shift along p_i
    let mut cross = 0.0; // sum of (shift.p0)(shift.p1)
    for k in 0..n {
        let d = train_draw(5, 0, 0, k, 227, true);
        let shift = pca_shift(d.alpha, lambda, p);
        let along: Vec<f64> = (0..3).map(|i| (0..3).map(|c| shift[c] * p[i][c]).sum()).collect();
        for i in 0..3 {
            proj[i][0] += along[i];
            proj[i][1] += along[i] * along[i];
        }
        cross += along[0] * along[1];
    }
    for i in 0..3 {
        let mean = proj[i][0] / n as f64;
        let sd = (proj[i][1] / n as f64 - mean * mean).sqrt();
        let want = 0.1 * lambda[i] / 255.0;
        assert!((sd / want - 1.0).abs() < 0.03, "direction {i}: sd {sd:.3}, want {want:.3}");
        assert!(mean.abs() < 4.0 * want / (n as f64).sqrt(), "direction {i}: mean {mean}");
    }
    assert!((0.1f64 * 9356.0 / 255.0 - 3.67).abs() < 0.01);
    let corr = cross / n as f64 / ((0.1 * lambda[0] / 255.0) * (0.1 * lambda[1] / 255.0));
    assert!(corr.abs() < 0.05, "directions 0 and 1 correlate: {corr}");
}

/// The pipeline's one PCA formula (f32, from the manifest's eigenpairs) against the f64
/// oracle.
#[test]
fn the_pipelines_pca_shift_is_the_papers_formula() {
    let ds = Dataset::open(shared_dataset()).unwrap();
    let m = ds.manifest();
    let t = PixelTransform::new(m, None, Normalization::MeanRgb).unwrap();
    for k in 0..200 {
        let alpha = train_draw(3, 1, 0, k, 227, true).alpha;
        let got = t.shift(alpha);
        assert_eq!(got, pixels::pca_shift(alpha, &t.eig, &t.vecs));
        let want = pca_shift(alpha, m.stats.pca.eigenvalues, m.stats.pca.eigenvectors);
        for c in 0..3 {
            assert!((got[c] as f64 - want[c]).abs() < 1e-4 * (1.0 + want[c].abs()), "{k}: {got:?} vs {want:?}");
        }
    }
}

#[test]
fn a_corrupt_jpeg_in_a_shard_is_an_error_naming_shard_and_row() {
    let t = tempfile::tempdir().unwrap();
    let dir = build_dataset(t.path(), Encoding::Jpeg);
    // Find row 3's JPEG bytes in the first val shard and overwrite them in the file.
    let ds = Dataset::open(&dir).unwrap();
    let val = ds.split(Split::Val).unwrap();
    let shard = val.shards()[0].path().to_path_buf();
    let img = val.get(3).unwrap().bytes.to_vec();
    drop(val);
    let mut file = std::fs::read(&shard).unwrap();
    let at = file.windows(img.len()).position(|w| w == &img[..]).unwrap();
    for b in &mut file[at + 2..at + img.len()] {
        *b = 0x11;
    }
    std::fs::write(&shard, file).unwrap();
    let mut c = cfg(2, 64, Crops::Center);
    c.workers = 3;
    let mut l = Loader::new(split(&dir, Split::Val), c).unwrap();
    l.start(0);
    let mut err = None;
    while err.is_none() {
        match l.next_batch() {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => err = Some(e.to_string()),
        }
    }
    let e = err.expect("the corrupt JPEG must be reported");
    assert!(e.contains("val-00000.parquet") && e.contains("row 3"), "{e}");
}

/// B2: one flipped pixel byte (file size unchanged, so the shard still opens) stops the
/// loader with the shard and row named; with `OnDamaged::Skip` the row is left out and
/// counted, and every other row is delivered.
#[test]
fn a_damaged_row_stops_the_loader_or_is_skipped_as_configured() {
    let t = tempfile::tempdir().unwrap();
    let dir = build_dataset(t.path(), Encoding::Raw);
    let shard = {
        let val = split(&dir, Split::Val);
        let s = &val.shards()[0];
        let at = s.image_unchecked(4).as_ptr() as usize - s.bytes().as_ptr() as usize + 5000;
        let mut file = std::fs::read(s.path()).unwrap();
        file[at] ^= 0x40;
        std::fs::write(s.path(), file).unwrap();
        s.path().to_path_buf()
    };
    let run = |on_damaged| {
        let mut c = cfg(4, 64, Crops::Center);
        c.on_damaged = on_damaged;
        let mut l = Loader::new(split(&dir, Split::Val), c).unwrap();
        l.start(0);
        let mut images = 0;
        loop {
            match l.next_batch() {
                Ok(Some(b)) => images += b.len(),
                Ok(None) => return Ok((images, l.stats().skipped)),
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    let e = run(OnDamaged::Stop).unwrap_err();
    assert!(e.contains(&format!("{}: row 4: key ", shard.display())) && e.contains("CRC-32C"), "{e}");
    assert_eq!(run(OnDamaged::Skip).unwrap(), (14, 1));
}

#[test]
fn a_batch_too_large_for_memory_is_an_error_not_an_abort() {
    let err = |c: LoaderConfig| match Loader::new(split(shared_dataset(), Split::Train), c) {
        Ok(_) => panic!("a batch ring beyond any machine was allocated"),
        Err(e) => e.to_string(),
    };
    // 2^36 crops: out of range before anything is allocated.
    let e = err(cfg(1 << 36, 227, Crops::Train));
    assert!(e.contains("at most 65536") && e.contains("out of range") && !e.contains('\n'), "{e}");
    // In range, but 1280 buffers of 65536 crops of 227x227 (12 TB): more than the
    // machine has available, said before the ring is allocated (reliability review B12).
    let mut c = cfg(65536, 227, Crops::Train);
    (c.workers, c.prefetch) = (1024, 256);
    let e = err(c);
    assert!(e.contains("GiB") && e.contains("lower the workers, the prefetch or the batch size"), "{e}");
}

#[test]
fn dropping_the_loader_mid_epoch_returns_promptly() {
    let dir = shared_dataset();
    let mut c = cfg(4, 227, Crops::Train);
    c.workers = 4;
    c.prefetch = 1;
    let mut l = Loader::new(split(dir, Split::Train), c).unwrap();
    l.start(0);
    let b = l.next_batch().unwrap().unwrap();
    let t = Instant::now();
    drop(l); // workers are blocked on a full ring: they must still stop
    assert!(t.elapsed() < Duration::from_secs(2), "drop took {:?}", t.elapsed());
    drop(b);
}

#[test]
fn jpeg_shards_give_the_same_crops_as_raw_up_to_jpeg_loss() {
    let t = tempfile::tempdir().unwrap();
    let raw = build_dataset(t.path(), Encoding::Raw);
    let jpeg = build_dataset(t.path(), Encoding::Jpeg);
    let get = |dir: &Path| {
        let mut l = Loader::new(split(dir, Split::Train), cfg(6, 200, Crops::Train)).unwrap();
        l.start(1);
        let b = l.next_batch().unwrap().unwrap();
        (bytes(&b.images().unwrap()), b.rows().to_vec())
    };
    let (a, ra) = get(&raw);
    let (b, rb) = get(&jpeg);
    assert_eq!(ra, rb);
    let mean: f64 = a.iter().zip(&b).map(|(x, y)| x.abs_diff(*y) as f64).sum::<f64>() / a.len() as f64;
    assert!(mean < 4.0, "mean abs difference {mean}");
}

/// A mixed dataset (half of each shard raw, format 4) gives, image by image, exactly
/// the raw dataset's crops where its row is raw and the JPEG dataset's where it is a
/// JPEG: the same rows, draws and pixels, whatever the row's encoding.
#[test]
fn mixed_shards_give_the_raw_crops_of_raw_rows_and_the_jpeg_crops_of_jpeg_rows() {
    let t = tempfile::tempdir().unwrap();
    let (raw, jpeg, mixed) = (
        build_dataset(t.path(), Encoding::Raw),
        build_dataset(t.path(), Encoding::Jpeg),
        build_dataset(t.path(), Encoding::Mixed),
    );
    let reader = split(&mixed, Split::Train);
    let is_jpeg: Vec<bool> = (0..reader.len()).map(|r| reader.get(r).unwrap().jpeg).collect();
    let n_raw = is_jpeg.iter().filter(|j| !**j).count();
    assert!(n_raw > 20 && n_raw < 52, "{n_raw} raw rows of {}", is_jpeg.len());
    for (crop, crops) in [(200, Crops::Train), (227, Crops::Center), (99, Crops::Ten)] {
        let get = |dir: &Path| {
            let mut l = Loader::new(split(dir, Split::Train), cfg(6, crop, crops)).unwrap();
            l.start(1);
            let mut out = Vec::new();
            while let Some(b) = l.next_batch().unwrap() {
                out.push((bytes(&b.images().unwrap()), b.rows().to_vec()));
            }
            out
        };
        let (a, b, c) = (get(&raw), get(&jpeg), get(&mixed));
        assert!(!c.is_empty());
        let per = 3 * crop * crop;
        let (mut from_raw, mut from_jpeg) = (0, 0);
        for ((ra, rb), rc) in a.iter().zip(&b).zip(&c) {
            assert_eq!((&ra.1, &rb.1), (&rc.1, &rc.1));
            for (k, &row) in rc.1.iter().enumerate() {
                let want = if is_jpeg[row] { &rb.0 } else { &ra.0 };
                assert!(
                    rc.0[k * per..(k + 1) * per] == want[k * per..(k + 1) * per],
                    "{crops:?}: crop {k} of row {row}"
                );
                if is_jpeg[row] {
                    from_jpeg += 1
                } else {
                    from_raw += 1
                }
            }
        }
        assert!(from_raw > 0 && from_jpeg > 0, "{crops:?}: {from_raw} raw, {from_jpeg} jpeg crops");
    }
}

/// Decoding only the region the crops read (the loader's default) gives exactly the
/// batches of a full decode: random crops near every edge, the centre and the ten.
#[test]
fn region_decoding_gives_the_full_decodes_batches() {
    let t = tempfile::tempdir().unwrap();
    let jpeg = build_dataset(t.path(), Encoding::Jpeg);
    for (crop, crops) in [(200, Crops::Train), (99, Crops::Train), (227, Crops::Center), (99, Crops::Ten)] {
        let get = |region: bool| {
            let mut c = cfg(6, crop, crops);
            c.decode_region = region;
            let mut l = Loader::new(split(&jpeg, Split::Train), c).unwrap();
            l.start(2);
            let mut out = Vec::new();
            while let Some(b) = l.next_batch().unwrap() {
                out.push((bytes(&b.images().unwrap()), b.rows().to_vec()));
            }
            out
        };
        let (a, b) = (get(true), get(false));
        assert!(!a.is_empty());
        assert!(a == b, "{crops:?} {crop}: region decoding changed the batches");
    }
}

/// The two paths [`Pipeline`] chooses between agree: on the CPU it yields float crops
/// made in the workers, and these equal the uint8 path (`FloatIn::Device`) converted by
/// the normalizer, for train, center and ten crops and every normalization.
#[test]
fn worker_float_crops_equal_the_device_conversion() {
    let dir = shared_dataset();
    let ds = Dataset::open(dir).unwrap();
    let mean_img = read_mean_image(&dir.join(ds.manifest().mean_image.as_ref().unwrap())).unwrap();
    for (norm, crops) in [
        (Normalization::MeanImage, Crops::Train),
        (Normalization::MeanRgb, Crops::Train),
        (Normalization::Torchvision, Crops::Train),
        (Normalization::MeanImage, Crops::Center),
        (Normalization::MeanRgb, Crops::Center),
        (Normalization::MeanImage, Crops::Ten),
        (Normalization::Torchvision, Crops::Ten),
    ] {
        let s = split(dir, Split::Train);
        let mut p =
            Pipeline::new(s.clone(), cfg(4, 99, crops), ds.manifest(), Some(&mean_img), norm, Device::Cpu).unwrap();
        assert_eq!(p.float_in(), FloatIn::Workers, "the CPU's choice");
        assert!(p.config().pin_memory.is_none());
        let t = PixelTransform::new(ds.manifest(), Some(&mean_img), norm).unwrap();
        let mut u = Pipeline::with_float_in(s, cfg(4, 99, crops), &t, Device::Cpu, FloatIn::Device).unwrap();
        assert!(u.config().transform.is_none());
        let train = crops == Crops::Train;
        assert_eq!(p.start(2), u.start(2));
        for _ in 0..3 {
            let (bp, bu) = (p.next_batch().unwrap().unwrap(), u.next_batch().unwrap().unwrap());
            assert!(bp.images().is_none() && bp.floats().is_some(), "float crops from the workers");
            assert!(bu.images().is_some() && bu.floats().is_none(), "uint8 crops");
            assert_eq!((bp.rows(), bp.specs()), (bu.rows(), bu.specs()));
            let xp = p.input(&bp, train).unwrap();
            let xu = u.input(&bu, train).unwrap();
            assert_eq!(xp.size(), [4 * crops.per_image() as i64, 3, 99, 99]);
            assert_eq!(xp.size(), xu.size());
            let d = (xp - xu).abs().max().double_value(&[]);
            assert!(d < 1e-4, "{norm:?} {crops:?}: max difference {d}");
        }
    }
    // Loaders made by hand (a transform set in the config) are the same workers' path.
    let t = PixelTransform::new(ds.manifest(), Some(&mean_img), Normalization::MeanImage).unwrap();
    let n = Normalizer::from_transform(&t, Device::Cpu);
    let mut c = cfg(4, 99, Crops::Train);
    c.transform = Some(t);
    let mut a = Loader::new(split(dir, Split::Train), c).unwrap();
    let mut p = Pipeline::new(
        split(dir, Split::Train),
        cfg(4, 99, Crops::Train),
        ds.manifest(),
        Some(&mean_img),
        Normalization::MeanImage,
        Device::Cpu,
    )
    .unwrap();
    a.start(1);
    p.start(1);
    let (ba, bp) = (a.next_batch().unwrap().unwrap(), p.next_batch().unwrap().unwrap());
    assert!(n.apply(&ba, true).unwrap().equal(&p.input(&bp, true).unwrap()));
}

/// `Rows::Only` reads the rows given, in the order given (a list of query rows), and a
/// row outside the split is an error, not a panic.
#[test]
fn only_rows_come_in_the_order_given() {
    let dir = shared_dataset();
    let mut c = cfg(2, 64, Crops::Center);
    c.rows = Rows::Only(std::sync::Arc::new(vec![9, 2, 2, 70, 0]));
    let mut l = Loader::new(split(dir, Split::Train), c).unwrap();
    assert_eq!(l.start(0), 3);
    let mut seen = Vec::new();
    while let Some(b) = l.next_batch().unwrap() {
        seen.extend_from_slice(b.rows());
    }
    assert_eq!(seen, [9, 2, 2, 70, 0]);
    let mut c = cfg(2, 64, Crops::Center);
    c.rows = Rows::Only(std::sync::Arc::new(vec![1, 72]));
    let mut l = Loader::new(split(dir, Split::Train), c).unwrap();
    l.start(0);
    let e = l.next_batch().err().expect("row 72 of 72 rows").to_string();
    assert!(e.contains("row 72 is outside the split (72 rows)") && !e.contains("panicked"), "{e}");
}

#[test]
fn pca_noise_off_gives_zero_coefficients_and_no_shift() {
    let dir = shared_dataset();
    let mut c = cfg(4, 64, Crops::Train);
    c.pca_noise = false;
    let mut l = Loader::new(split(dir, Split::Train), c).unwrap();
    l.start(0);
    let b = l.next_batch().unwrap().unwrap();
    assert_eq!(b.alphas().abs().sum(Kind::Float).double_value(&[]), 0.0);
    let mut c = cfg(4, 64, Crops::Train);
    c.pca_noise = true;
    let mut l = Loader::new(split(dir, Split::Train), c).unwrap();
    l.start(0);
    let b = l.next_batch().unwrap().unwrap();
    assert!(b.alphas().abs().sum(Kind::Float).double_value(&[]) > 0.0);
}
