//! End-to-end tests of `preprocess build`: round trip against an independent resize,
//! every odd input, bad inputs, resume after a kill, determinism, refusals, layouts.

use std::path::{Path, PathBuf};

use alexnet_shared::{Dataset, Encoding, Manifest, Split, IMAGE_BYTES, IMAGE_SIDE};
use image::{DynamicImage, ImageBuffer, Rgb, RgbImage};
use preprocess::build::{self, BuildConfig};
use preprocess::inputs::InputOptions;
use preprocess::synth;

/// A non-square, asymmetric test picture: gradients plus a bright block near the
/// top-left corner, so a flip, a transpose or a shifted crop changes it.
fn pattern(w: u32, h: u32, seed: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let block = x < w / 5 && y < h / 7;
        if block {
            Rgb([250, 240, (seed * 40 % 256) as u8])
        } else {
            Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, ((x + 2 * y + seed * 13) % 200) as u8])
        }
    })
}

fn png_bytes(img: &DynamicImage) -> Vec<u8> {
    let mut v = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut v), image::ImageFormat::Png).unwrap();
    v
}

/// Pillow's antialiased bilinear resize (ImagingResample with the triangle filter),
/// written out plainly in f64: the weights of output `xx` of a full resize of `in_size`
/// to `out_size`.
fn pillow_weights(in_size: u32, out_size: u32, xx: u32) -> (usize, Vec<f64>) {
    let scale = in_size as f64 / out_size as f64;
    let fscale = scale.max(1.0);
    let support = fscale;
    let center = (xx as f64 + 0.5) * scale;
    let xmin = ((center - support + 0.5).floor() as i64).max(0) as usize;
    let xmax = ((center + support + 0.5).floor() as i64).min(in_size as i64) as usize;
    let mut w: Vec<f64> = (xmin..xmax).map(|x| (1.0 - ((x as f64 - center + 0.5) / fscale).abs()).max(0.0)).collect();
    let s: f64 = w.iter().sum();
    w.iter_mut().for_each(|v| *v /= s);
    (xmin, w)
}

/// torchvision Resize(256) + CenterCrop(256) on `img`, independently of the crate code.
fn reference(img: &RgbImage) -> Vec<u8> {
    let (w, h) = img.dimensions();
    let (rw, rh) = if w <= h { (256, 256 * h / w) } else { (256 * w / h, 256) };
    let round_half_even = |x: u32| {
        let (q, r) = (x / 2, x % 2);
        if r == 1 && q % 2 == 1 {
            q + 1
        } else {
            q
        }
    };
    let (left, top) = (round_half_even(rw - 256), round_half_even(rh - 256));
    // Horizontal pass for all rows, then vertical.
    let mut tmp = vec![[0f64; 3]; 256 * h as usize];
    for x in 0..256u32 {
        let (x0, wts) = pillow_weights(w, rw, x + left);
        for y in 0..h {
            let mut acc = [0f64; 3];
            for (k, wt) in wts.iter().enumerate() {
                let p = img.get_pixel((x0 + k) as u32, y);
                for c in 0..3 {
                    acc[c] += wt * p[c] as f64;
                }
            }
            tmp[y as usize * 256 + x as usize] = acc;
        }
    }
    let mut out = vec![0u8; IMAGE_BYTES];
    for y in 0..256u32 {
        let (y0, wts) = pillow_weights(h, rh, y + top);
        for x in 0..256usize {
            let mut acc = [0f64; 3];
            for (k, wt) in wts.iter().enumerate() {
                let p = tmp[(y0 + k) * 256 + x];
                for c in 0..3 {
                    acc[c] += wt * p[c];
                }
            }
            for c in 0..3 {
                out[3 * (y as usize * 256 + x) + c] = acc[c].round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

fn diff(a: &[u8], b: &[u8]) -> (f64, u8) {
    let mut sum = 0u64;
    let mut max = 0u8;
    for (x, y) in a.iter().zip(b) {
        let d = x.abs_diff(*y);
        sum += d as u64;
        max = max.max(d);
    }
    (sum as f64 / a.len() as f64, max)
}

fn config(input: &Path, output: &Path) -> BuildConfig {
    let mut c =
        BuildConfig::new(InputOptions { root: input.to_path_buf(), ..Default::default() }, output.to_path_buf());
    c.threads = 2;
    c.progress = false;
    c.shard_rows = 16;
    c.max_reject_rate = 0.1; // synth_input holds one truncated file
    c
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// All rows of a split by key.
fn rows(ds: &Dataset, split: Split) -> Vec<(String, i16, Vec<u8>)> {
    let r = ds.split(split).unwrap();
    (0..r.len())
        .map(|i| {
            let img = r.get(i).unwrap();
            let px = match img.jpeg {
                false => img.bytes.to_vec(),
                true => image::load_from_memory(img.bytes).unwrap().into_rgb8().into_raw(),
            };
            (img.key.to_string(), img.label, px)
        })
        .collect()
}

fn by_key(rows: &[(String, i16, Vec<u8>)], key: &str) -> Vec<u8> {
    rows.iter().find(|r| r.0 == key).unwrap_or_else(|| panic!("no row {key}")).2.clone()
}

#[test]
fn round_trip_matches_an_independent_resize() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    // Wide, tall, exact, smaller than 256 (upscaled), very wide, odd offsets.
    let sizes = [(320, 200), (190, 300), (256, 256), (100, 60), (1000, 260), (257, 300), (301, 256)];
    let mut pics = Vec::new();
    for (i, &(w, h)) in sizes.iter().enumerate() {
        let img = pattern(w, h, i as u32);
        let class = format!("n0000000{}", i % 2);
        let key = format!("{class}/img{i}.png");
        write(&input.join("train").join(&key), &png_bytes(&DynamicImage::ImageRgb8(img.clone())));
        pics.push((key, i % 2, img));
    }
    write(&input.join("val/n00000001/v.png"), &png_bytes(&DynamicImage::ImageRgb8(pattern(280, 260, 9))));
    let out = tmp.path().join("out");
    let s = build::run(&config(&input, &out)).unwrap();
    assert_eq!((s.train_rows, s.rejected), (sizes.len() as u64, 0));
    let ds = Dataset::open(&out).unwrap();
    let got = rows(&ds, Split::Train);
    for (key, label, img) in &pics {
        let row = got.iter().find(|r| &r.0 == key).unwrap();
        assert_eq!(row.1 as usize, *label, "{key}");
        let (mean, max) = diff(&row.2, &reference(img));
        assert!(mean < 0.15 && max <= 1, "{key} {:?}: mean abs {mean:.4}, max {max}", img.dimensions());
    }
    // The wide image's left block lands where the center crop puts it: 320x200 ->
    // 409x256, crop offset round(153/2) = 76, so the block (x < 64 of 320, i.e. < 81.8
    // rescaled) spans crop columns 0..5, rows 0..36 (y < 28 of 200 -> < 35.8).
    let wide = by_key(&got, "n00000000/img0.png");
    let px = |x: usize, y: usize| &wide[3 * (y * IMAGE_SIDE + x)..][..3];
    assert_eq!(px(2, 10)[..2], [250, 240]);
    assert_ne!(px(10, 10)[..2], [250, 240]);
    assert_ne!(px(2, 40)[..2], [250, 240]);
}

#[test]
fn odd_inputs_decode_like_the_rgb_original() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    let base = pattern(300, 220, 7);
    let d = |p: &str| input.join("train/n01").join(p);
    let q100 = |s: synth::Storage| synth::encode(&base, s, 100).unwrap();
    write(&d("rgb.JPEG"), &q100(synth::Storage::Jpeg));
    write(&d("gray.JPEG"), &q100(synth::Storage::GrayJpeg));
    write(&d("cmyk.JPEG"), &q100(synth::Storage::CmykJpeg));
    write(&d("ycck.JPEG"), &q100(synth::Storage::YcckJpeg));
    write(&d("exif6.JPEG"), &q100(synth::Storage::ExifRotatedJpeg));
    write(&d("rgba-png.JPEG"), &q100(synth::Storage::RgbaPng));
    write(&d("png16.JPEG"), &q100(synth::Storage::Png16));
    write(&d("palette.JPEG"), &q100(synth::Storage::PalettePng));
    // Bad inputs: skipped, recorded, counted.
    let jpeg = q100(synth::Storage::Jpeg);
    write(&input.join("train/n02/truncated.JPEG"), &jpeg[..jpeg.len() / 2]);
    write(&input.join("train/n02/empty.JPEG"), b"");
    write(&input.join("train/n02/text.JPEG"), b"this is not an image\n");
    write(&input.join("train/n02/ok.JPEG"), &jpeg);
    write(&input.join("val/n02/v.JPEG"), &jpeg);
    let out = tmp.path().join("out");
    let mut cfg = config(&input, &out);
    cfg.max_reject_rate = 0.5;
    let s = build::run(&cfg).unwrap();
    assert_eq!((s.train_rows, s.rejected), (9, 3));
    assert_eq!(s.reject_kinds.values().sum::<u64>(), 3);

    let got = rows(&Dataset::open(&out).unwrap(), Split::Train);
    let want = reference(&base);
    for (key, limit) in [
        ("n01/rgb.JPEG", 1.0),
        ("n01/cmyk.JPEG", 1.5),
        ("n01/ycck.JPEG", 1.5),
        ("n01/exif6.JPEG", 1.0),
        ("n01/rgba-png.JPEG", 0.15),
        ("n01/png16.JPEG", 0.15),
    ] {
        let (mean, _) = diff(&by_key(&got, key), &want);
        assert!(mean < limit, "{key}: mean abs difference {mean:.3} to the RGB original");
    }
    // Palette: 3-3-2 bit quantisation of the original.
    let (mean, _) = diff(&by_key(&got, "n01/palette.JPEG"), &want);
    assert!(mean < 40.0, "palette {mean}");
    // Grayscale: three equal channels, close to the original's luma.
    let gray = by_key(&got, "n01/gray.JPEG");
    assert!(gray.chunks(3).all(|p| p[0] == p[1] && p[1] == p[2]));
    let luma = reference(&DynamicImage::ImageLuma8(DynamicImage::ImageRgb8(base.clone()).into_luma8()).into_rgb8());
    assert!(diff(&gray, &luma).0 < 1.0);

    let tsv = std::fs::read_to_string(out.join("rejects.tsv")).unwrap();
    let lines: Vec<&str> = tsv.lines().collect();
    assert_eq!(lines[0], "path\treason");
    assert_eq!(lines.len(), 4, "{tsv}");
    assert!(lines.iter().any(|l| l.contains("truncated.JPEG\ttruncated JPEG")), "{tsv}");
    assert!(lines.iter().any(|l| l.contains("empty.JPEG\tempty file")), "{tsv}");
    assert!(lines.iter().any(|l| l.contains("text.JPEG\tnot an image")), "{tsv}");
    assert_eq!(Manifest::load(&out).unwrap().rejected, 3);
}

#[test]
fn too_many_rejects_fail_the_build_with_the_reasons() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    for i in 0..8 {
        write(&input.join(format!("train/n01/{i}.png")), &png_bytes(&DynamicImage::ImageRgb8(pattern(90, 70, i))));
    }
    write(&input.join("train/n01/bad.JPEG"), b"garbage");
    write(&input.join("val/n01/v.png"), &png_bytes(&DynamicImage::ImageRgb8(pattern(80, 90, 3))));
    let out = tmp.path().join("out");
    let mut cfg = config(&input, &out);
    cfg.max_reject_rate = 0.01;
    let e = build::run(&cfg).unwrap_err().to_string();
    assert!(e.contains("1 of 10 inputs") && e.contains("not an image") && e.contains("--max-reject-rate"), "{e}");
    assert!(!out.join("dataset.json").exists());
    assert!(std::fs::read_to_string(out.join("rejects.tsv")).unwrap().contains("bad.JPEG"));
    // Raising the threshold finishes the same build, keeping its shards.
    let mut cfg = config(&input, &out);
    cfg.max_reject_rate = 0.2;
    let s = build::run(&cfg).unwrap();
    assert_eq!((s.shards_kept, s.shards_built, s.train_rows), (2, 0, 8));
}

fn synth_input(dir: &Path, classes: usize, per_class: usize, val: usize) -> PathBuf {
    let input = dir.join("images");
    synth::run(&synth::SynthConfig {
        output: input.clone(),
        classes,
        train_per_class: per_class,
        val_per_class: val,
        corrupt: 1,
        seed: 5,
        sides: (150, 460),
        layout: synth::Layout::Folders,
    })
    .unwrap();
    input
}

fn shard_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "parquet")
                || p.file_name().unwrap() == "mean_image.npy"
                || p.file_name().unwrap() == "dataset.json"
                || p.file_name().unwrap() == "rejects.tsv"
        })
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    v.sort();
    v
}

#[test]
fn same_inputs_and_seed_give_identical_bytes_and_stats_do_not_depend_on_order() {
    let tmp = tempfile::tempdir().unwrap();
    let input = synth_input(tmp.path(), 3, 20, 4);
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    let c = tmp.path().join("c");
    build::run(&config(&input, &a)).unwrap();
    let mut cfg = config(&input, &b);
    cfg.threads = 1; // a different schedule must not change a byte
    build::run(&cfg).unwrap();
    let mut cfg = config(&input, &c);
    cfg.seed = 1;
    build::run(&cfg).unwrap();
    let (ma, mc) = (Manifest::load(&a).unwrap(), Manifest::load(&c).unwrap());
    // The source path is recorded; the rest is the same bytes.
    assert_eq!(
        shard_bytes(&a).iter().filter(|f| f.0 != "dataset.json" && f.0 != "rejects.tsv").collect::<Vec<_>>(),
        shard_bytes(&b).iter().filter(|f| f.0 != "dataset.json" && f.0 != "rejects.tsv").collect::<Vec<_>>()
    );
    assert_eq!(ma, Manifest::load(&b).unwrap());
    // Another seed: other train shards, the very same statistics (exact integer sums).
    assert_ne!(ma.splits["train"].shards[0].sha256, mc.splits["train"].shards[0].sha256);
    assert_eq!(ma.splits["val"], mc.splits["val"]);
    assert_eq!(ma.stats, mc.stats);
    // Every train shard mixes classes.
    let ds = Dataset::open(&a).unwrap();
    for s in ds.split(Split::Train).unwrap().shards() {
        let mut l = s.labels().to_vec();
        l.sort();
        l.dedup();
        assert!(l.len() >= 2, "{:?} holds one class", s.path());
    }
}

#[test]
fn resume_after_a_kill_at_random_points_gives_the_same_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let input = synth_input(tmp.path(), 3, 40, 8);
    let clean = tmp.path().join("clean");
    build::run(&config(&input, &clean)).unwrap();
    let want = shard_bytes(&clean);
    let exe = env!("CARGO_BIN_EXE_preprocess");
    // Kill points spread over the build; the pseudo-random offsets come from the clock.
    let jitter = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_millis() as u64;
    for (i, base_ms) in [10u64, 150, 600, 1200].into_iter().enumerate() {
        let out = tmp.path().join(format!("killed{i}"));
        let cmd = |out: &Path| {
            let mut c = std::process::Command::new(exe);
            c.args(["build", "--quiet", "--threads", "2", "--shard-rows", "16", "--max-reject-rate", "0.1", "--input"])
                .arg(&input)
                .arg("--output")
                .arg(out);
            c.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
            c
        };
        let mut child = cmd(&out).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(base_ms + jitter % 300));
        child.kill().unwrap(); // SIGKILL: no chance to clean up
        child.wait().unwrap();
        let rerun = cmd(&out).stderr(std::process::Stdio::piped()).output().unwrap();
        assert!(rerun.status.success(), "resume after kill {i} failed: {}", String::from_utf8_lossy(&rerun.stderr));
        assert_eq!(
            shard_bytes(&out).iter().map(|f| &f.0).collect::<Vec<_>>(),
            want.iter().map(|f| &f.0).collect::<Vec<_>>()
        );
        for ((name, got), (_, exp)) in shard_bytes(&out).iter().zip(&want) {
            if name == "dataset.json" || name == "rejects.tsv" {
                continue; // they name the output and input folders
            }
            assert!(got == exp, "{name} differs after a kill at {}ms and a resume", base_ms + jitter % 300);
        }
        let (m1, m2) = (Manifest::load(&out).unwrap(), Manifest::load(&clean).unwrap());
        assert_eq!((m1.stats, m1.splits), (m2.stats, m2.splits));
    }
}

#[test]
fn a_build_killed_while_writing_its_first_state_resumes() {
    // What a SIGKILL during the first state write leaves: a half-written temporary and
    // nothing else (CI once caught the kill test refusing this folder as not its own).
    let tmp = tempfile::tempdir().unwrap();
    let input = synth_input(tmp.path(), 2, 10, 2);
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join(format!(".{}.tmp", build::STATE_FILE)), b"{\"identity\": {\"form").unwrap();
    std::fs::write(out.join(".notes.tmp"), b"someone else's").unwrap(); // not ours: kept
    build::run(&config(&input, &out)).unwrap();
    assert!(Manifest::load(&out).is_ok());
    let left: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert_eq!(left, [".notes.tmp"], "temporaries left");
}

#[test]
fn a_damaged_finished_shard_is_rebuilt_and_statistics_stay_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let input = synth_input(tmp.path(), 2, 20, 2);
    let out = tmp.path().join("out");
    build::run(&config(&input, &out)).unwrap();
    let before = Manifest::load(&out).unwrap();
    // Damage one shard and delete another; the rerun rebuilds exactly those.
    let f0 = out.join(&before.splits["train"].shards[0].file);
    let mut bytes = std::fs::read(&f0).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&f0, bytes).unwrap();
    std::fs::remove_file(out.join(&before.splits["train"].shards[1].file)).unwrap();
    let s = build::run(&config(&input, &out)).unwrap();
    assert_eq!(s.shards_built, 2);
    assert_eq!(Manifest::load(&out).unwrap(), before);
}

#[test]
fn a_different_build_in_the_output_is_refused_unless_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let input = synth_input(tmp.path(), 2, 10, 2);
    let out = tmp.path().join("out");
    build::run(&config(&input, &out)).unwrap();
    let mut cfg = config(&input, &out);
    cfg.seed = 9;
    let e = build::run(&cfg).unwrap_err().to_string();
    assert!(e.contains("holds a different build") && e.contains("seed") && e.contains("--overwrite"), "{e}");
    cfg.overwrite = true;
    build::run(&cfg).unwrap();
    assert_eq!(Manifest::load(&out).unwrap().build.seed, 9);
    // Files of a dataset the build did not start are refused too.
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("train-00000.parquet"), b"x").unwrap();
    let e = build::run(&config(&input, &other)).unwrap_err().to_string();
    assert!(e.contains("did not start"), "{e}");
}

#[test]
fn a_short_disk_is_refused_before_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let input = synth_input(tmp.path(), 2, 10, 2);
    for (encoding, free) in [(Encoding::Raw, 3_000_000u64), (Encoding::Jpeg, 100_000)] {
        let out = tmp.path().join(encoding.name());
        let mut cfg = config(&input, &out);
        cfg.encoding = encoding;
        cfg.assume_free_bytes = Some(free);
        let e = build::run(&cfg).unwrap_err().to_string();
        assert!(e.contains("not enough disk space") && e.contains("GiB"), "{e}");
        assert!(!std::fs::read_dir(&out).unwrap().any(|f| f
            .unwrap()
            .path()
            .extension()
            .is_some_and(|e| e == "parquet")));
    }
}

#[test]
fn jpeg_shards_hold_the_same_images_as_raw() {
    let tmp = tempfile::tempdir().unwrap();
    let input = synth_input(tmp.path(), 2, 12, 3);
    let (raw, jpeg) = (tmp.path().join("raw"), tmp.path().join("jpeg"));
    build::run(&config(&input, &raw)).unwrap();
    let mut cfg = config(&input, &jpeg);
    cfg.encoding = Encoding::Jpeg;
    cfg.quality = 95;
    build::run(&cfg).unwrap();
    let (r, j) = (Dataset::open(&raw).unwrap(), Dataset::open(&jpeg).unwrap());
    assert_eq!(j.manifest().encoding, Encoding::Jpeg);
    // Statistics are of the pixels before encoding: identical.
    assert_eq!(r.manifest().stats, j.manifest().stats);
    for split in [Split::Train, Split::Val] {
        let (a, b) = (rows(&r, split), rows(&j, split));
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!((&x.0, x.1), (&y.0, y.1));
            let (mean, _) = diff(&x.2, &y.2);
            assert!(mean < 3.0, "{}: jpeg q95 vs raw mean abs {mean}", x.0);
        }
    }
    let total: u64 = std::fs::read_dir(&jpeg).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    let raw_total: u64 = std::fs::read_dir(&raw).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    assert!(total * 3 < raw_total, "jpeg {total} vs raw {raw_total}");
    // The encoder's rule at quality 95: full-resolution chroma, recorded.
    assert_eq!(j.manifest().build.chroma, Some(alexnet_shared::Chroma::Full));
    assert_eq!(sof_sampling(&first_jpeg(&j)), 0x11);

    // --chroma 420: half-resolution chroma in every JPEG, recorded in the manifest, the
    // same images within the (larger) loss of subsampled colour; a different build from
    // the 4:4:4 one (the rerun refuses it without --overwrite).
    let half = tmp.path().join("jpeg420");
    let mut c420 = cfg.clone();
    c420.output = half.clone();
    c420.chroma = Some(alexnet_shared::Chroma::Half);
    build::run(&c420).unwrap();
    let h = Dataset::open(&half).unwrap();
    assert_eq!(h.manifest().build.chroma, Some(alexnet_shared::Chroma::Half));
    assert_eq!(sof_sampling(&first_jpeg(&h)), 0x22);
    for split in [Split::Train, Split::Val] {
        for (x, y) in rows(&r, split).iter().zip(&rows(&h, split)) {
            assert_eq!((&x.0, x.1), (&y.0, y.1));
            let (mean, _) = diff(&x.2, &y.2);
            assert!(mean < 6.0, "{}: jpeg q95 4:2:0 vs raw mean abs {mean}", x.0);
        }
    }
    c420.output = jpeg.clone();
    let e = build::run(&c420).unwrap_err().to_string();
    assert!(e.contains("different build") && e.contains("chroma"), "{e}");
}

/// `--raw-fraction`: each shard keeps round(f * rows) rows raw, those with the largest
/// JPEGs, byte for byte the raw build's pixels; every other row is byte for byte the
/// JPEG build's JPEG. The manifest is format 4, "mixed", with the fraction; the disk
/// estimate follows the fraction; another fraction is another build.
#[test]
fn mixed_shards_keep_the_largest_jpegs_raw_and_the_rest_as_jpeg() {
    let tmp = tempfile::tempdir().unwrap();
    let input = synth_input(tmp.path(), 2, 14, 3);
    let (raw, jpeg, mixed) = (tmp.path().join("raw"), tmp.path().join("jpeg"), tmp.path().join("mixed"));
    build::run(&config(&input, &raw)).unwrap();
    let mut cj = config(&input, &jpeg);
    cj.encoding = Encoding::Jpeg;
    build::run(&cj).unwrap();
    let mut cm = config(&input, &mixed);
    cm.encoding = Encoding::Mixed;
    cm.raw_fraction = 0.25;
    let s = build::run(&cm).unwrap();
    assert_eq!(s.encoding, Encoding::Mixed);
    let (r, j, m) = (Dataset::open(&raw).unwrap(), Dataset::open(&jpeg).unwrap(), Dataset::open(&mixed).unwrap());
    let mm = m.manifest();
    assert_eq!((mm.format_version, mm.encoding, mm.build.raw_fraction), (4, Encoding::Mixed, Some(0.25)));
    assert_eq!((mm.build.quality, mm.build.chroma), (Some(90), Some(alexnet_shared::Chroma::Full)));
    assert_eq!(mm.stats, r.manifest().stats, "statistics are of the pixels before encoding");
    let (mut kept_raw, mut total) = (0, 0);
    for split in [Split::Train, Split::Val] {
        let (rs, js, ms) = (r.split(split).unwrap(), j.split(split).unwrap(), m.split(split).unwrap());
        assert_eq!(ms.len(), rs.len());
        let mut row = 0;
        for shard in ms.shards() {
            let n = shard.len();
            assert_eq!(shard.raw_rows(), (0.25 * n as f64).round() as usize, "{}", shard.path().display());
            let (mut smallest_raw, mut largest_jpeg) = (usize::MAX, 0);
            for i in 0..n {
                let (a, b, c) = (rs.get(row).unwrap(), js.get(row).unwrap(), shard.get(i).unwrap());
                assert_eq!((a.key, a.label), (c.key, c.label));
                if c.jpeg {
                    assert_eq!(c.bytes, b.bytes, "{}: the JPEG build's JPEG", c.key);
                    largest_jpeg = largest_jpeg.max(b.bytes.len());
                } else {
                    assert_eq!(c.bytes, a.bytes, "{}: the raw build's pixels", c.key);
                    smallest_raw = smallest_raw.min(b.bytes.len());
                }
                row += 1;
            }
            if shard.raw_rows() > 0 {
                assert!(
                    smallest_raw >= largest_jpeg,
                    "raw rows are the largest JPEGs: {smallest_raw} < {largest_jpeg}"
                );
            }
            kept_raw += shard.raw_rows();
            total += n;
        }
    }
    assert!(kept_raw > 0 && kept_raw < total, "{kept_raw} of {total}");
    let size = |d: &Path| -> u64 { std::fs::read_dir(d).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum() };
    assert!(size(&jpeg) < size(&mixed) && size(&mixed) < size(&raw), "{} {} {}", size(&jpeg), size(&mixed), size(&raw));
    // `verify` checks each shard's raw rows against the recorded fraction.
    assert!(preprocess::verify::run(&mixed, 2).unwrap().problems.is_empty());
    let text = std::fs::read_to_string(mixed.join("dataset.json")).unwrap();
    std::fs::write(mixed.join("dataset.json"), text.replace("\"raw_fraction\": 0.25", "\"raw_fraction\": 0.5"))
        .unwrap();
    let problems = preprocess::verify::run(&mixed, 2).unwrap().problems;
    assert!(problems.iter().any(|p| p.contains("raw row(s), the build's raw fraction 0.5")), "{problems:?}");
    std::fs::write(mixed.join("dataset.json"), text).unwrap();
    // The same build again is kept; another fraction is a different build.
    assert_eq!(build::run(&cm).unwrap().shards_built, 0);
    let mut other = cm.clone();
    other.raw_fraction = 0.5;
    let e = build::run(&other).unwrap_err().to_string();
    assert!(e.contains("different build") && e.contains("raw_fraction"), "{e}");

    // The disk estimate follows the fraction: room for the JPEG build (a JPEG of these
    // images is well under 90,000 bytes) is not room for half of the rows raw.
    let rows = 2 * 14 + 2 * 3;
    let free = (4 << 20) + rows * 90_000;
    let mut fits = cj.clone();
    fits.output = tmp.path().join("jpeg-fits");
    fits.assume_free_bytes = Some(free);
    build::run(&fits).unwrap();
    let mut short = cm.clone();
    short.output = tmp.path().join("mixed-short");
    short.raw_fraction = 0.5;
    short.assume_free_bytes = Some(free);
    let e = build::run(&short).unwrap_err().to_string();
    assert!(e.contains("not enough disk space") && e.contains("--raw-fraction"), "{e}");

    // The command line: --raw-fraction goes with --encoding jpeg, strictly inside (0, 1).
    let exe = env!("CARGO_BIN_EXE_preprocess");
    for (args, says) in [
        (vec!["--raw-fraction", "0.3"], "--raw-fraction goes with --encoding jpeg"),
        (vec!["--encoding", "jpeg", "--raw-fraction", "1"], "not strictly between 0 and 1"),
        (vec!["--encoding", "mixed"], "invalid value 'mixed'"),
    ] {
        let o = std::process::Command::new(exe)
            .args(["build", "--input"])
            .arg(&input)
            .arg("--output")
            .arg(tmp.path().join("cli"))
            .args(&args)
            .env_remove("RUST_BACKTRACE")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(says) && !err.contains("panicked"), "{args:?}: {err}");
    }
}

/// Mixed shards of whole images (format 4, whole layout): raw rows are the raw whole
/// build's pixels at their own sizes, JPEG rows the JPEG build's bytes, and the rows kept
/// raw are those whose JPEG is largest for their raw size.
#[test]
fn mixed_whole_image_shards_keep_rows_at_their_sizes() {
    let tmp = tempfile::tempdir().unwrap();
    let input = synth_input(tmp.path(), 2, 8, 2);
    let whole = |name: &str, encoding: Encoding, f: f64| {
        let out = tmp.path().join(name);
        let mut c = config(&input, &out);
        c.whole = Some((alexnet_shared::WholeResize::ShorterSide, 96));
        c.encoding = encoding;
        c.raw_fraction = f;
        build::run(&c).unwrap();
        Dataset::open(&out).unwrap()
    };
    let (r, j, m) =
        (whole("raw", Encoding::Raw, 0.0), whole("jpeg", Encoding::Jpeg, 0.0), whole("mixed", Encoding::Mixed, 0.5));
    assert_eq!((m.manifest().format_version, m.manifest().encoding), (4, Encoding::Mixed));
    assert!(m.manifest().layout.is_whole() && m.manifest().mean_image.is_none());
    let (rs, js, ms) = (r.split(Split::Train).unwrap(), j.split(Split::Train).unwrap(), m.split(Split::Train).unwrap());
    let (mut sizes, mut row) = (std::collections::HashSet::new(), 0);
    for shard in ms.shards() {
        assert_eq!(shard.raw_rows(), (0.5 * shard.len() as f64).round() as usize);
        let ratio = |i: usize| {
            let (b, a) = (js.get(row + i).unwrap(), rs.get(row + i).unwrap());
            b.bytes.len() as f64 / a.bytes.len() as f64
        };
        let (mut min_raw, mut max_jpeg) = (f64::INFINITY, 0f64);
        for i in 0..shard.len() {
            let (a, b, c) = (rs.get(row + i).unwrap(), js.get(row + i).unwrap(), shard.get(i).unwrap());
            assert_eq!((a.key, a.height, a.width), (c.key, c.height, c.width));
            sizes.insert((c.height, c.width));
            if c.jpeg {
                assert_eq!(c.bytes, b.bytes, "{}", c.key);
                max_jpeg = max_jpeg.max(ratio(i));
            } else {
                assert_eq!(c.bytes, a.bytes, "{}", c.key);
                min_raw = min_raw.min(ratio(i));
            }
        }
        assert!(min_raw >= max_jpeg, "{min_raw} < {max_jpeg}");
        row += shard.len();
    }
    assert!(sizes.len() > 1, "whole images of several sizes: {sizes:?}");
}

/// The first train JPEG of a dataset.
fn first_jpeg(ds: &Dataset) -> Vec<u8> {
    ds.split(Split::Train).unwrap().get(0).unwrap().bytes.to_vec()
}

/// The first component's sampling factors in a baseline JPEG's SOF0 (0x22: 4:2:0).
fn sof_sampling(jpeg: &[u8]) -> u8 {
    let at = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).expect("an SOF0 marker");
    jpeg[at + 11]
}

#[test]
fn limit_per_class_takes_the_first_images_of_each_class() {
    let tmp = tempfile::tempdir().unwrap();
    let input = synth_input(tmp.path(), 3, 10, 4);
    let out = tmp.path().join("out");
    let mut cfg = config(&input, &out);
    cfg.input.limit_per_class = Some(2);
    let s = build::run(&cfg).unwrap();
    assert_eq!((s.train_rows, s.val_rows), (6, 6));
    let keys: Vec<String> = rows(&Dataset::open(&out).unwrap(), Split::Train).into_iter().map(|r| r.0).collect();
    // Sorted by name: n..._0 and n..._1 (the truncated file sorts after them).
    assert!(keys.iter().all(|k| k.ends_with("_0.JPEG") || k.ends_with("_1.JPEG")), "{keys:?}");
}

mod layouts {
    use super::*;

    fn train_two_classes(input: &Path) {
        for (c, w) in ["n02", "n01"].iter().enumerate() {
            for i in 0..3 {
                write(
                    &input.join(format!("train/{w}/{i}.png")),
                    &png_bytes(&DynamicImage::ImageRgb8(pattern(80 + i * 10, 60, c as u32))),
                );
            }
        }
    }

    fn val_labels(out: &Path) -> Vec<(String, i16)> {
        rows(&Dataset::open(out).unwrap(), Split::Val).into_iter().map(|r| (r.0, r.1)).collect()
    }

    fn png(seed: u32) -> Vec<u8> {
        png_bytes(&DynamicImage::ImageRgb8(pattern(70, 90, seed)))
    }

    #[test]
    fn val_class_folders() {
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path().join("in");
        train_two_classes(&input);
        write(&input.join("val/n02/a.png"), &png(1));
        write(&input.join("val/n01/b.png"), &png(2));
        let out = tmp.path().join("out");
        build::run(&config(&input, &out)).unwrap();
        assert_eq!(val_labels(&out), [("n01/b.png".to_string(), 0), ("n02/a.png".to_string(), 1)]);
    }

    #[test]
    fn val_flat_with_kaggle_csv_and_kaggle_folders() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("in");
        let input = root.join("ILSVRC/Data/CLS-LOC");
        train_two_classes(&input);
        write(&input.join("val/ILSVRC2012_val_00000001.JPEG"), &png(1));
        write(&input.join("val/ILSVRC2012_val_00000002.JPEG"), &png(2));
        write(&input.join("val/ILSVRC2012_val_00000003.JPEG"), &png(3)); // not in the csv
        write(&root.join("LOC_val_solution.csv"), b"ImageId,PredictionString\nILSVRC2012_val_00000002,n01 1 2 3 4\nILSVRC2012_val_00000001,n02 1 2 3 4 n02 5 6 7 8\n");
        write(&root.join("LOC_synset_mapping.txt"), b"n01 first class, one\nn02 second class\n");
        let out = tmp.path().join("out");
        let mut cfg = config(&root, &out);
        cfg.max_reject_rate = 0.2;
        let s = build::run(&cfg).unwrap();
        assert_eq!(s.rejected, 1);
        assert_eq!(
            val_labels(&out),
            [("ILSVRC2012_val_00000001.JPEG".to_string(), 1), ("ILSVRC2012_val_00000002.JPEG".to_string(), 0)]
        );
        let m = Manifest::load(&out).unwrap();
        assert_eq!(m.classes[0].name, "first class, one");
        assert!(std::fs::read_to_string(out.join("rejects.tsv"))
            .unwrap()
            .contains("ILSVRC2012_val_00000003.JPEG\tno label"));
    }

    #[test]
    fn val_flat_with_devkit_ground_truth() {
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path().join("in");
        train_two_classes(&input);
        write(&input.join("val/ILSVRC2012_val_00000001.JPEG"), &png(1));
        write(&input.join("val/ILSVRC2012_val_00000002.JPEG"), &png(2));
        // Devkit IDs: 1 = n02, 2 = n01 (not sorted order).
        write(&input.join("ILSVRC2012_validation_ground_truth.txt"), b"1\n2\n");
        let out = tmp.path().join("out");
        let e = build::run(&config(&input, &out)).unwrap_err().to_string();
        assert!(e.contains("--devkit-synsets"), "{e}");
        write(&tmp.path().join("synsets.txt"), b"n02\nn01\n");
        let mut cfg = config(&input, &out);
        cfg.input.devkit_synsets = Some(tmp.path().join("synsets.txt"));
        build::run(&cfg).unwrap();
        assert_eq!(
            val_labels(&out),
            [("ILSVRC2012_val_00000001.JPEG".to_string(), 1), ("ILSVRC2012_val_00000002.JPEG".to_string(), 0)]
        );
    }

    #[test]
    fn a_val_wnid_missing_from_train_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path().join("in");
        train_two_classes(&input);
        write(&input.join("val/n07/a.png"), &png(1));
        let e = build::run(&config(&input, &tmp.path().join("o1"))).unwrap_err().to_string();
        assert!(e.contains("n07") && e.contains("not a class of train"), "{e}");
        std::fs::remove_dir_all(input.join("val")).unwrap();
        write(&input.join("val/ILSVRC2012_val_00000001.JPEG"), &png(1));
        write(&input.join("LOC_val_solution.csv"), b"ImageId,PredictionString\nILSVRC2012_val_00000001,n09 1 2 3 4\n");
        let e = build::run(&config(&input, &tmp.path().join("o2"))).unwrap_err().to_string();
        assert!(e.contains("n09") && e.contains("not a class of train"), "{e}");
    }

    #[test]
    fn a_flat_val_without_labels_says_what_to_give() {
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path().join("in");
        train_two_classes(&input);
        write(&input.join("val/ILSVRC2012_val_00000001.JPEG"), &png(1));
        let e = build::run(&config(&input, &tmp.path().join("o"))).unwrap_err().to_string();
        assert!(e.contains("--val-labels"), "{e}");
    }

    #[allow(dead_code)]
    fn _unused(_: ImageBuffer<Rgb<u8>, Vec<u8>>) {}
}
