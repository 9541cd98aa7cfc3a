//! Inputs a build must survive and name (the reliability review, B1, B8, B9, B11, B15,
//! B16): decompression bombs, entries of class folders that are not image files,
//! unusable class folders, two builds into one folder, a fixed input and a rerun.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use alexnet_shared::{Dataset, Manifest, Split};
use image::{DynamicImage, Rgb, RgbImage};
use preprocess::build::{self, BuildConfig};
use preprocess::inputs::InputOptions;

/// A non-square, asymmetric picture (a bright block near the top-left corner).
fn pattern(w: u32, h: u32, seed: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        if x < w / 5 && y < h / 7 {
            Rgb([250, 240, (seed * 40 % 256) as u8])
        } else {
            Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, ((x + 2 * y + seed * 13) % 200) as u8])
        }
    })
}

fn png(seed: u32) -> Vec<u8> {
    let mut v = Vec::new();
    DynamicImage::ImageRgb8(pattern(90 + seed, 70, seed))
        .write_to(&mut std::io::Cursor::new(&mut v), image::ImageFormat::Png)
        .unwrap();
    v
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// train/n01, n02 with `per_class` images each, val/n01, n02 with 2 each.
fn input(dir: &Path, per_class: u32) -> PathBuf {
    let root = dir.join("in");
    for (c, wnid) in ["n01", "n02"].iter().enumerate() {
        for i in 0..per_class {
            write(&root.join(format!("train/{wnid}/{wnid}_{i}.png")), &png(i + 10 * c as u32));
        }
        for i in 0..2 {
            write(&root.join(format!("val/{wnid}/v{wnid}_{i}.png")), &png(i + 3 + 10 * c as u32));
        }
    }
    root
}

fn config(input: &Path, output: &Path) -> BuildConfig {
    let mut c =
        BuildConfig::new(InputOptions { root: input.to_path_buf(), ..Default::default() }, output.to_path_buf());
    c.threads = 2;
    c.progress = false;
    c.shard_rows = 4;
    c.max_reject_rate = 0.5;
    c
}

fn rejects(out: &Path) -> String {
    std::fs::read_to_string(out.join("rejects.tsv")).unwrap()
}

fn mkfifo(p: &Path) {
    assert!(std::process::Command::new("mkfifo").arg(p).status().unwrap().success());
}

/// A JPEG whose SOF claims 60000x60000 (a valid small JPEG, header patched) and a PNG
/// whose IHDR claims 10^6 x 10^6 (CRC fixed).
fn bombs() -> (Vec<u8>, Vec<u8>) {
    let rgb: Vec<u8> = (0..16 * 8 * 3).map(|i| (i * 7 % 256) as u8).collect();
    let mut jpeg = Vec::new();
    jpeg_encoder::Encoder::new(&mut jpeg, 80).encode(&rgb, 16, 8, jpeg_encoder::ColorType::Rgb).unwrap();
    let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    jpeg[sof + 5..sof + 9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]);
    let mut png = png(1);
    assert_eq!(&png[12..16], b"IHDR");
    png[16..24].copy_from_slice(&[0, 0x0F, 0x42, 0x40, 0, 0x0F, 0x42, 0x40]); // 1000000 x 1000000
    let crc = crc32fast::hash(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    (jpeg, png)
}

/// B1: the bombs are rejected and named, the build goes on and finishes.
#[test]
fn decompression_bombs_are_rejected_and_named() {
    let tmp = tempfile::tempdir().unwrap();
    let root = input(tmp.path(), 4);
    let (jpeg, png) = bombs();
    write(&root.join("train/n01/bomb_jpeg.JPEG"), &jpeg);
    write(&root.join("train/n02/bomb_png.JPEG"), &png);
    let out = tmp.path().join("out");
    let s = build::run(&config(&root, &out)).unwrap();
    assert_eq!((s.train_rows, s.rejected), (8, 2));
    let tsv = rejects(&out);
    assert!(tsv.contains("bomb_jpeg.JPEG\ttoo large: 60000x60000 pixels would take 10.8 GB"), "{tsv}");
    assert!(tsv.contains("bomb_png.JPEG\ttoo large: 1000000x1000000 pixels"), "{tsv}");
}

/// B11: entries of class folders that are not image files are named in rejects.tsv and
/// count in the reject rate; the FIFO is never opened (the build would hang).
#[test]
fn non_regular_entries_are_rejected_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let root = input(tmp.path(), 4);
    let c = root.join("train/n01");
    std::os::unix::fs::symlink("/nonexistent/a.JPEG", c.join("dangling.JPEG")).unwrap();
    mkfifo(&c.join("fifo.JPEG"));
    std::os::unix::fs::symlink(c.join("fifo.JPEG"), c.join("to_fifo.JPEG")).unwrap();
    std::os::unix::fs::symlink(c.join("loop_b.JPEG"), c.join("loop_a.JPEG")).unwrap();
    std::os::unix::fs::symlink(c.join("loop_a.JPEG"), c.join("loop_b.JPEG")).unwrap();
    std::fs::create_dir(c.join("x.JPEG")).unwrap();
    std::fs::create_dir(root.join("val/n02/y.JPEG")).unwrap();
    let out = tmp.path().join("out");
    let mut cfg = config(&root, &out);
    cfg.max_reject_rate = 0.3;
    let e = build::run(&cfg).unwrap_err().to_string();
    assert!(e.contains("7 of 19 inputs"), "{e}");
    let tsv = rejects(&out);
    for (name, why) in [
        ("dangling.JPEG", "not a file: a dangling symlink"),
        ("fifo.JPEG", "not a file: a FIFO"),
        ("to_fifo.JPEG", "not a file: a symlink to a FIFO"),
        ("loop_a.JPEG", "not a file: a symlink loop"),
        ("loop_b.JPEG", "not a file: a symlink loop"),
        ("x.JPEG", "not a file: a folder"),
        ("y.JPEG", "not a file: a folder"),
    ] {
        assert!(tsv.lines().any(|l| l.ends_with(&format!("{name}\t{why}"))), "{name}: {tsv}");
    }
}

/// B16: an empty class folder and a class folder that is a symlink loop are refused
/// (torchvision's ImageFolder refuses an empty class); so is a non-UTF-8 class name.
#[test]
fn unusable_class_folders_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let root = input(tmp.path(), 2);
    std::fs::create_dir(root.join("train/n05")).unwrap();
    let e = build::run(&config(&root, &tmp.path().join("o1"))).unwrap_err().to_string();
    assert!(e.contains("train/n05: the class folder holds no images"), "{e}");
    std::fs::remove_dir(root.join("train/n05")).unwrap();

    std::os::unix::fs::symlink(root.join("train/n06"), root.join("train/n06")).unwrap();
    let e = build::run(&config(&root, &tmp.path().join("o2"))).unwrap_err().to_string();
    assert!(e.contains("train/n06: a symlink that cannot be followed"), "{e}");
    std::fs::remove_file(root.join("train/n06")).unwrap();

    let bad = root.join("train").join(std::ffi::OsStr::from_bytes(b"n07\xff"));
    write(&bad.join("a.png"), &png(3));
    let e = build::run(&config(&root, &tmp.path().join("o3"))).unwrap_err().to_string();
    assert!(e.contains("the class folder name is not UTF-8"), "{e}");
}

/// B16: two file names that differ only in invalid bytes are two rejects, not two rows
/// with one lossy key.
#[test]
fn non_utf8_file_names_are_rejected_not_merged() {
    let tmp = tempfile::tempdir().unwrap();
    let root = input(tmp.path(), 4);
    for b in [b"a\xfe.png", b"a\xff.png"] {
        write(&root.join("train/n01").join(std::ffi::OsStr::from_bytes(b)), &png(7));
    }
    let out = tmp.path().join("out");
    let s = build::run(&config(&root, &out)).unwrap();
    assert_eq!((s.train_rows, s.rejected), (8, 2));
    let keys: Vec<String> = {
        let ds = Dataset::open(&out).unwrap();
        let t = ds.split(Split::Train).unwrap();
        (0..t.len()).map(|i| t.get(i).unwrap().key.to_string()).collect()
    };
    assert!(keys.iter().all(|k| !k.contains('\u{FFFD}')), "{keys:?}");
    assert_eq!(rejects(&out).matches("the file name is not UTF-8").count(), 2);
}

/// B8: inputs without val images are refused before any decode.
#[test]
fn inputs_without_val_images_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let root = input(tmp.path(), 2);
    for c in ["n01", "n02"] {
        for i in 0..2 {
            std::fs::remove_file(root.join(format!("val/{c}/v{c}_{i}.png"))).unwrap();
        }
    }
    let e = build::run(&config(&root, &tmp.path().join("o1"))).unwrap_err().to_string();
    assert!(e.contains("no val images") && e.contains("needs a val split"), "{e}");
    std::fs::remove_dir_all(root.join("val")).unwrap();
    let e = build::run(&config(&root, &tmp.path().join("o2"))).unwrap_err().to_string();
    assert!(e.contains("no val images (none (no val folder))"), "{e}");
}

/// B15: a second build into a folder whose lock is held is refused with the lock named.
#[test]
fn a_second_build_into_a_locked_folder_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let root = input(tmp.path(), 2);
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let lock = std::fs::File::create(out.join(build::LOCK_FILE)).unwrap();
    std::fs::write(out.join(build::LOCK_FILE), "pid 4242\n").unwrap();
    fs4::FileExt::try_lock(&lock).unwrap();
    let e = build::run(&config(&root, &out)).unwrap_err().to_string();
    assert!(e.contains("being built by another preprocess build (pid 4242") && e.contains(".build.lock"), "{e}");
    assert!(!out.join(".build-state.json").exists());
    drop(lock);
    build::run(&config(&root, &out)).unwrap();
}

/// B9: "fix the inputs and rerun" works: a rejected file replaced by a good one is
/// retried, its shard rebuilt, and the statistics equal a clean build's.
#[test]
fn a_fixed_input_is_retried_on_rerun() {
    let tmp = tempfile::tempdir().unwrap();
    let root = input(tmp.path(), 6);
    let bad = root.join("train/n02/n02_3.png");
    std::fs::write(&bad, b"truncated garbage").unwrap();
    let out = tmp.path().join("out");
    let mut cfg = config(&root, &out);
    cfg.max_reject_rate = 0.01;
    let e = build::run(&cfg).unwrap_err().to_string();
    assert!(e.contains("1 of 16 inputs"), "{e}");
    std::fs::write(&bad, png(13)).unwrap();
    let s = build::run(&cfg).unwrap();
    assert_eq!((s.train_rows, s.rejected, s.shards_built), (12, 0, 1));
    let clean = tmp.path().join("clean");
    build::run(&config(&root, &clean)).unwrap();
    let (a, b) = (Manifest::load(&out).unwrap(), Manifest::load(&clean).unwrap());
    assert_eq!(a.stats, b.stats);
    assert_eq!(a.splits, b.splits);
    assert_eq!(
        std::fs::read(out.join("mean_image.npy")).unwrap(),
        std::fs::read(clean.join("mean_image.npy")).unwrap()
    );
}
