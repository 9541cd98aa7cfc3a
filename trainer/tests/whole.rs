//! Whole-image datasets (format 3) through the loader and the trainer: torchvision's
//! RandomResizedCrop and centre crop on the stored images, the same batches whatever
//! the thread count, JPEG shards decoded at their own size, the owt recipe training on
//! them, and each recipe refusing the other kind of dataset with one line.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use alexnet_shared::{Dataset, Encoding, Split, WholeResize};
use fast_image_resize::Resizer;
use preprocess::build::{self, BuildConfig};
use preprocess::inputs::InputOptions;
use preprocess::synth;
use tch::Device;
use trainer::data::augment::resized_crop_draw;
use trainer::data::resized_crop::{center_box, resized_crop_into, RandomResizedCrop};
use trainer::data::{Crops, Loader, LoaderConfig, Shuffle};
use trainer::train::{run, RunOptions};

/// Synthetic images of varied, non-square sizes, built whole at a shorter side of 80
/// (raw and JPEG) and as centre squares.
fn datasets() -> &'static (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf, PathBuf, PathBuf)> = OnceLock::new();
    DIR.get_or_init(|| {
        let t = tempfile::tempdir().unwrap();
        let images = t.path().join("images");
        let mut s = synth::SynthConfig::new(images.clone());
        s.classes = 3;
        s.train_per_class = 16;
        s.val_per_class = 4;
        s.corrupt = 0;
        synth::run(&s).unwrap();
        let build = |name: &str, encoding, whole| {
            let out = t.path().join(name);
            let mut cfg = BuildConfig::new(InputOptions { root: images.clone(), ..Default::default() }, out.clone());
            (cfg.encoding, cfg.whole, cfg.shard_rows, cfg.threads, cfg.progress) = (encoding, whole, 16, 2, false);
            build::run(&cfg).unwrap();
            out
        };
        let whole = Some((WholeResize::ShorterSide, 80));
        let raw = build("whole-raw", Encoding::Raw, whole);
        let jpeg = build("whole-jpeg", Encoding::Jpeg, whole);
        let center = build("center", Encoding::Raw, None);
        (t, raw, jpeg, center)
    })
}

fn loader(data: &Path, split: Split, crops: Crops, workers: usize) -> Loader {
    loader_with(data, split, crops, workers, true)
}

fn loader_with(data: &Path, split: Split, crops: Crops, workers: usize, decode_region: bool) -> Loader {
    let s = Arc::new(Dataset::open(data).unwrap().split(split).unwrap());
    let mut c = LoaderConfig::new(8, 64, crops);
    c.decode_region = decode_region;
    (c.workers, c.prefetch, c.seed, c.pca_noise) = (workers, 2, 5, false);
    if crops == Crops::Train {
        c.resized_crop = Some(RandomResizedCrop::default());
    }
    // Centre crops at the dataset's shorter side (as the pipeline sets it).
    c.eval_resize = 80;
    c.shuffle = Shuffle::Full;
    Loader::new(s, c).unwrap()
}

/// The u8 crops of every batch of pass `epoch`, with their rows.
fn pass(l: &mut Loader, epoch: u64) -> Vec<(Vec<usize>, Vec<u8>)> {
    l.start(epoch);
    let mut out = Vec::new();
    while let Some(b) = l.next_batch().unwrap() {
        let px = Vec::<u8>::try_from(b.images().unwrap().flatten(0, -1)).unwrap();
        out.push((b.rows().to_vec(), px));
    }
    out
}

#[test]
fn whole_images_keep_their_aspect_and_sizes_in_the_shards() {
    let (_, raw, jpeg, _) = datasets();
    for data in [raw, jpeg] {
        let ds = Dataset::open(data).unwrap();
        assert!(ds.manifest().layout.is_whole() && ds.manifest().mean_image.is_none());
        assert_eq!(ds.manifest().format_version, 3);
        let train = ds.split(Split::Train).unwrap();
        let mut shapes = std::collections::BTreeSet::new();
        for row in 0..train.len() {
            let img = train.get(row).unwrap();
            assert_eq!(img.height.min(img.width), 80, "row {row}: shorter side");
            shapes.insert((img.height, img.width));
        }
        assert!(shapes.iter().any(|(h, w)| h != w), "the synthetic images are not all square: {shapes:?}");
        assert!(ds.mean_image().unwrap_err().to_string().contains("has no mean image"));
    }
}

/// Each train crop is torchvision's RandomResizedCrop of the stored image: the box drawn
/// for its position ([`resized_crop_draw`]: torchvision's sampling rule, tested on
/// recorded draws in `resized_crop.rs`), resized with Pillow's bilinear (tested against
/// Pillow there); the centre crop is torchvision's CenterCrop offsets. The batches are
/// the same with 1 and 3 workers.
#[test]
fn train_and_center_crops_are_torchvisions_on_the_stored_images() {
    let (_, raw, _, _) = datasets();
    let ds = Dataset::open(raw).unwrap();
    let train = ds.split(Split::Train).unwrap();
    let one = pass(&mut loader(raw, Split::Train, Crops::Train, 1), 2);
    let three = pass(&mut loader(raw, Split::Train, Crops::Train, 3), 2);
    assert_eq!(one, three, "the batches depend on the worker count");
    let per = 64 * 64 * 3;
    let mut rz = Resizer::new();
    let mut want = vec![0u8; per];
    let mut resized = 0;
    for (b, (rows, px)) in one.iter().enumerate() {
        for (i, &row) in rows.iter().enumerate() {
            let img = train.get(row).unwrap();
            let (bx, flip, _) =
                resized_crop_draw(5, 2, 0, b * 8 + i, img.height, img.width, &RandomResizedCrop::default(), true);
            resized_crop_into(&mut rz, img.bytes, img.height, img.width, bx, 64, flip, &mut want).unwrap();
            resized += (bx.height != 64 || bx.width != 64) as usize;
            assert_eq!(&px[i * per..(i + 1) * per], &want[..], "batch {b} item {i} (row {row}, box {bx:?})");
        }
    }
    assert!(resized > 20, "the boxes are resized");

    let val = ds.split(Split::Val).unwrap();
    let center = pass(&mut loader(raw, Split::Val, Crops::Center, 2), 0);
    for (rows, px) in &center {
        for (i, &row) in rows.iter().enumerate() {
            let img = val.get(row).unwrap();
            let b = center_box(img.height, img.width, 64, 80);
            assert_eq!((b.height, b.width), (64, 64), "CenterCrop(64) of a shorter side of 80: no resize");
            for y in [0, 17, 63] {
                let got = &px[i * per + y * 64 * 3..][..64 * 3];
                let at = ((b.top + y) * img.width + b.left) * 3;
                assert_eq!(got, &img.bytes[at..at + 64 * 3], "row {row}, crop line {y}");
            }
        }
    }
}

/// JPEG shards decode at each row's own size; their crops follow the raw ones within
/// the JPEG loss (quality 90).
#[test]
fn jpeg_whole_images_decode_at_their_own_size() {
    let (_, raw, jpeg, _) = datasets();
    let a = pass(&mut loader(raw, Split::Val, Crops::Ten, 2), 0);
    let b = pass(&mut loader(jpeg, Split::Val, Crops::Ten, 2), 0);
    assert_eq!(a.iter().map(|x| &x.0).collect::<Vec<_>>(), b.iter().map(|x| &x.0).collect::<Vec<_>>());
    let (mut sum, mut n) = (0f64, 0usize);
    for ((_, x), (_, y)) in a.iter().zip(&b) {
        for (p, q) in x.iter().zip(y) {
            sum += (*p as f64 - *q as f64).abs();
            n += 1;
        }
    }
    let mae = sum / n as f64;
    assert!(mae < 4.0, "JPEG crops differ from the raw ones by {mae:.2} grey levels on average");
}

/// Decoding only the region the crops read (libjpeg-turbo's cropping region and
/// skipped rows, the loader's default) gives exactly the batches of a full decode, for
/// RandomResizedCrop boxes of every size and the eval crops.
#[test]
fn region_decoding_gives_the_full_decodes_batches_on_whole_images() {
    let (_, _, jpeg, _) = datasets();
    for (split, crops) in [(Split::Train, Crops::Train), (Split::Val, Crops::Center), (Split::Val, Crops::TenWhole)] {
        for epoch in [0, 1] {
            let a = pass(&mut loader_with(jpeg, split, crops, 2, true), epoch);
            let b = pass(&mut loader_with(jpeg, split, crops, 1, false), epoch);
            assert!(!a.is_empty());
            assert!(a == b, "{crops:?} epoch {epoch}: region decoding changed the batches");
        }
    }
}

fn owt_tiny(sets: &[&str]) -> trainer::config::TrainConfig {
    let mut all = vec![
        "model.crop=67",
        "data.normalization=torchvision",
        "data.train_crop=random-resized-crop",
        "data.pca_noise=false",
        "optim.epochs=2",
    ];
    all.extend_from_slice(sets);
    common::tiny(&all)
}

/// The owt recipe (its data keys, on the tests' tenth-width net) trains on whole images
/// and records it; the paper's crops refuse a
/// whole-image dataset and RandomResizedCrop a centre-square one, each in one line.
#[test]
fn the_owt_recipe_trains_on_whole_images_and_each_recipe_refuses_the_other_kind() {
    let (t, _, jpeg, center) = datasets();
    tch::set_num_threads(1);
    let opts = |data: &Path, dir: &str| RunOptions {
        data: data.to_path_buf(),
        run_dir: t.path().join(dir),
        device: Device::Cpu,
        resume: false,
        max_steps: None,
        init: None,
    };
    let s = run(&owt_tiny(&[]), &opts(jpeg, "owt")).unwrap();
    assert_eq!((s.epochs_done, s.global_step), (2, 12));
    let ckpt = t.path().join("owt/checkpoints/epoch-002.safetensors");
    let meta = trainer::checkpoint::read_meta(&ckpt).unwrap().unwrap();
    let inputs = meta.inputs.unwrap();
    assert_eq!(inputs.train_crop, trainer::config::TrainCrop::RandomResizedCrop);
    assert!(inputs.mean_image.is_none());

    let e = format!("{:#}", run(&common::tiny(&["data.normalization=mean-rgb"]), &opts(jpeg, "paper")).unwrap_err());
    assert!(e.contains("the paper's random crops take 256x256 centre squares") && !e.contains('\n'), "{e}");
    let e = format!("{:#}", run(&owt_tiny(&[]), &opts(center, "owt-center")).unwrap_err());
    assert!(e.contains("RandomResizedCrop takes whole images") && !e.contains('\n'), "{e}");
    // The mean image does not exist for whole images: said by name.
    let e = format!("{:#}", run(&owt_tiny(&["data.normalization=mean-image"]), &opts(jpeg, "mean")).unwrap_err());
    assert!(e.contains("has no mean image"), "{e}");
}
