//! Building from ImageNet as downloaded, in place: the official archive layout (outer
//! tar of class tars, flat val tar, devkit .tar.gz with meta.mat) and Kaggle's zip give
//! shards byte-identical to a build from the unpacked folders; damaged, truncated,
//! compressed or incomplete downloads are named; a killed archive build resumes.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use alexnet_shared::{Encoding, Manifest};
use preprocess::archive::tar_index::index_members;
use preprocess::build::{self, BuildConfig};
use preprocess::inputs::InputOptions;
use preprocess::synth::{self, archives as sa, Layout};

fn synth_cfg(out: &Path, layout: Layout) -> synth::SynthConfig {
    synth::SynthConfig {
        output: out.to_path_buf(),
        classes: 4,
        train_per_class: 9,
        val_per_class: 3,
        corrupt: 1,
        seed: 11,
        // Non-square, varied sizes (some below 256: upscaled).
        sides: (120, 330),
        layout,
    }
}

/// The same images as folders and as archives.
fn both(dir: &Path) -> (PathBuf, PathBuf) {
    let (folders, archives) = (dir.join("folders"), dir.join("archives"));
    synth::run(&synth_cfg(&folders, Layout::Folders)).unwrap();
    synth::run(&synth_cfg(&archives, Layout::Archives)).unwrap();
    (folders, archives)
}

fn config(input: &Path, output: &Path) -> BuildConfig {
    let mut c =
        BuildConfig::new(InputOptions { root: input.to_path_buf(), ..Default::default() }, output.to_path_buf());
    c.threads = 2;
    c.progress = false;
    c.shard_rows = 8;
    c.max_reject_rate = 0.1; // one truncated image
    c
}

/// Every file a build writes, but the two that name the inputs (dataset.json,
/// rejects.tsv).
fn data_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet" || e == "npy"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    v.sort();
    v
}

fn assert_same_build(a: &Path, b: &Path) {
    let (fa, fb) = (data_files(a), data_files(b));
    assert_eq!(fa.iter().map(|f| &f.0).collect::<Vec<_>>(), fb.iter().map(|f| &f.0).collect::<Vec<_>>());
    for ((name, x), (_, y)) in fa.iter().zip(&fb) {
        assert!(x == y, "{name} differs between {} and {}", a.display(), b.display());
    }
    let (ma, mb) = (Manifest::load(a).unwrap(), Manifest::load(b).unwrap());
    assert_eq!((&ma.splits, &ma.stats, ma.rejected), (&mb.splits, &mb.stats, mb.rejected));
    assert_eq!(ma.classes, mb.classes, "class names: LOC_synset_mapping.txt vs meta.mat's words");
}

#[test]
fn archives_and_kaggle_zip_build_the_same_bytes_as_the_unpacked_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let (folders, archives) = both(tmp.path());
    // The meta.mat IDs are not the sorted order: val labels go through them.
    let ids = sa::devkit_ids(4, 11);
    assert_ne!(ids, [1, 2, 3, 4]);

    // The archives hold exactly the unpacked files (unpacking = the folder layout).
    let train = std::fs::read(archives.join(sa::TRAIN_TAR)).unwrap();
    let mut n = 0;
    for class_tar in index_members(&train, 0, "train").unwrap() {
        let wnid = class_tar.name.strip_suffix(".tar").unwrap();
        let inner = &train[class_tar.offset as usize..(class_tar.offset + class_tar.size) as usize];
        for m in index_members(inner, class_tar.offset, "inner").unwrap() {
            let want = std::fs::read(folders.join("train").join(wnid).join(&m.name)).unwrap();
            assert!(train[m.offset as usize..(m.offset + m.size) as usize] == want[..], "{wnid}/{}", m.name);
            n += 1;
        }
    }
    assert_eq!(n, 4 * 9 + 1);

    for encoding in [Encoding::Raw, Encoding::Jpeg] {
        let from_folders = tmp.path().join(format!("folders-{}", encoding.name()));
        let mut cfg = config(&folders, &from_folders);
        cfg.encoding = encoding;
        let a = build::run(&cfg).unwrap();
        assert_eq!((a.train_rows, a.val_rows, a.rejected), (36, 12, 1));

        let from_archives = tmp.path().join(format!("archives-{}", encoding.name()));
        let mut cfg = config(&archives, &from_archives);
        cfg.encoding = encoding;
        let b = build::run(&cfg).unwrap();
        assert_eq!((b.train_rows, b.val_rows, b.rejected), (36, 12, 1));
        assert_eq!(b.indexed, 4 + 37 + 12, "class tars, their members, val members");
        assert!(b.val_layout.contains("meta.mat"), "{}", b.val_layout);
        assert_same_build(&from_folders, &from_archives);
        let m = Manifest::load(&from_archives).unwrap();
        let roles: Vec<(&str, &str)> = m.build.archives.iter().map(|a| (a.role.as_str(), a.file.as_str())).collect();
        assert_eq!(roles, [("train", sa::TRAIN_TAR), ("val", sa::VAL_TAR), ("devkit", sa::DEVKIT)]);
        assert_eq!(m.build.archives[0].bytes, train.len() as u64);
        assert!(m.build.archives.iter().all(|a| a.md5.is_none()));
        let tsv = std::fs::read_to_string(from_archives.join("rejects.tsv")).unwrap();
        assert!(
            tsv.contains(&format!(
                "{}:{}.tar/{}_truncated_0.JPEG\ttruncated JPEG",
                sa::TRAIN_TAR,
                synth::wnid(0),
                synth::wnid(0)
            )),
            "{tsv}"
        );

        // Kaggle's zip (members stored and deflated), given as --input FILE.zip.
        let from_zip = tmp.path().join(format!("zip-{}", encoding.name()));
        let mut cfg = config(&archives.join(sa::KAGGLE_ZIP), &from_zip);
        cfg.encoding = encoding;
        build::run(&cfg).unwrap();
        assert_same_build(&from_folders, &from_zip);
        assert_eq!(Manifest::load(&from_zip).unwrap().build.archives[0].role, "kaggle");
    }
}

#[test]
fn explicit_archive_flags_check_md5_and_mixups() {
    let tmp = tempfile::tempdir().unwrap();
    let archives = tmp.path().join("a");
    synth::run(&synth_cfg(&archives, Layout::Archives)).unwrap();
    // Explicit paths, from another folder, with --check-md5.
    let out = tmp.path().join("out");
    let mut cfg = config(tmp.path(), &out);
    cfg.input.train_archive = Some(archives.join(sa::TRAIN_TAR));
    cfg.input.val_archive = Some(archives.join(sa::VAL_TAR));
    cfg.input.devkit = Some(archives.join(sa::DEVKIT));
    cfg.input.check_md5 = true;
    build::run(&cfg).unwrap();
    let m = Manifest::load(&out).unwrap();
    for a in &m.build.archives {
        let mut h = <md5::Md5 as md5::Digest>::new();
        md5::Digest::update(&mut h, std::fs::read(archives.join(&a.file)).unwrap());
        assert_eq!(a.md5.as_deref(), Some(hex::encode(md5::Digest::finalize(h)).as_str()), "{}", a.file);
    }
    // The train tar as --input: the rest is found beside it; same rows.
    let out2 = tmp.path().join("out2");
    let s = build::run(&config(&archives.join(sa::TRAIN_TAR), &out2)).unwrap();
    assert_eq!((s.train_rows, s.val_rows), (36, 12));
    assert_eq!(data_files(&out), data_files(&out2));

    // A folder where an archive is expected, and the reverse: named, with the fix.
    let mut cfg = config(tmp.path(), &tmp.path().join("o3"));
    cfg.input.train_archive = Some(archives.clone());
    let e = build::run(&cfg).unwrap_err().to_string();
    assert!(e.contains("is a folder") && e.contains("--train-dir"), "{e}");
    let mut cfg = config(tmp.path(), &tmp.path().join("o4"));
    cfg.input.train_dir = Some(archives.join(sa::TRAIN_TAR));
    let e = build::run(&cfg).unwrap_err().to_string();
    assert!(e.contains("is a file") && e.contains("--train-archive"), "{e}");
    let e = build::run(&config(&archives.join(sa::DEVKIT), &tmp.path().join("o5"))).unwrap_err().to_string();
    assert!(e.contains("is the devkit") && e.contains("--devkit"), "{e}");
}

#[test]
fn missing_devkit_is_named_with_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let archives = tmp.path().join("a");
    synth::run(&synth_cfg(&archives, Layout::Archives)).unwrap();
    std::fs::remove_file(archives.join(sa::DEVKIT)).unwrap();
    let e = build::run(&config(&archives, &tmp.path().join("o"))).unwrap_err().to_string();
    assert!(e.contains("devkit") && e.contains("--devkit") && e.contains(sa::VAL_TAR), "{e}");
    // A devkit without meta.mat.
    let bad = tmp.path().join("bad_devkit.tar.gz");
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    b.append_data(&mut h, "ILSVRC2012_devkit_t12/readme.txt", &b"hi\n"[..]).unwrap();
    std::fs::write(&bad, b.into_inner().unwrap().finish().unwrap()).unwrap();
    let mut cfg = config(&archives, &tmp.path().join("o2"));
    cfg.input.devkit = Some(bad);
    let e = format!("{:#}", build::run(&cfg).unwrap_err());
    assert!(e.contains("no data/meta.mat"), "{e}");
}

#[test]
fn a_gzipped_train_tar_is_refused_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let archives = tmp.path().join("a");
    synth::run(&synth_cfg(&archives, Layout::Archives)).unwrap();
    let tar = archives.join(sa::TRAIN_TAR);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&std::fs::read(&tar).unwrap()).unwrap();
    std::fs::remove_file(&tar).unwrap();
    std::fs::write(archives.join("synth_img_train.tar.gz"), gz.finish().unwrap()).unwrap();
    let e = build::run(&config(&archives, &tmp.path().join("o"))).unwrap_err().to_string();
    assert!(e.contains("gzip-compressed") && e.contains("no fixed member offsets") && e.contains("gunzip"), "{e}");
}

/// Copies the archive folder with the train tar replaced by `bytes`.
fn with_train(tmp: &Path, archives: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let dir = tmp.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for f in [sa::VAL_TAR, sa::DEVKIT] {
        std::fs::copy(archives.join(f), dir.join(f)).unwrap();
    }
    std::fs::write(dir.join(sa::TRAIN_TAR), bytes).unwrap();
    dir
}

#[test]
fn truncated_outer_and_inner_tars_are_named_with_member_and_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let archives = tmp.path().join("a");
    synth::run(&synth_cfg(&archives, Layout::Archives)).unwrap();
    let train = std::fs::read(archives.join(sa::TRAIN_TAR)).unwrap();
    let outer = index_members(&train, 0, "t").unwrap();
    let second = &outer[1];
    // Cut inside the second class tar's data, inside its header, and right after the
    // last member (the end-of-archive blocks lost).
    let last = outer.last().unwrap();
    let cuts = [
        ("data", (second.offset + second.size / 2) as usize, second.name.clone()),
        ("header", (second.offset - 300) as usize, outer[0].name.clone()),
        ("boundary", (last.offset + last.size.next_multiple_of(512)) as usize, last.name.clone()),
    ];
    for (what, cut, member) in cuts {
        let dir = with_train(tmp.path(), &archives, what, &train[..cut]);
        let e = build::run(&config(&dir, &tmp.path().join(format!("o-{what}")))).unwrap_err().to_string();
        assert!(e.contains("truncated") && e.contains(&member) && e.contains("offset"), "{what}: {e}");
        assert!(!e.contains('\n'), "one line: {e}");
    }

    // An outer tar that is whole, holding a truncated class tar.
    let class = &outer[0];
    let inner = &train[class.offset as usize..(class.offset + class.size) as usize];
    let members = index_members(inner, 0, "i").unwrap();
    let cut = (members[2].offset + 10) as usize;
    let mut b = tar::Builder::new(Vec::new());
    for (i, m) in outer.iter().enumerate() {
        let data = &train[m.offset as usize..(m.offset + m.size) as usize];
        let data = if i == 0 { &inner[..cut] } else { data };
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        b.append_data(&mut h, &m.name, data).unwrap();
    }
    let dir = with_train(tmp.path(), &archives, "inner", &b.into_inner().unwrap());
    let e = build::run(&config(&dir, &tmp.path().join("o-inner"))).unwrap_err().to_string();
    assert!(e.contains("truncated") && e.contains(&class.name) && e.contains(&members[2].name), "{e}");
}

#[test]
fn a_damaged_member_is_a_reject() {
    let tmp = tempfile::tempdir().unwrap();
    let archives = tmp.path().join("a");
    synth::run(&synth_cfg(&archives, Layout::Archives)).unwrap();
    let mut train = std::fs::read(archives.join(sa::TRAIN_TAR)).unwrap();
    let outer = index_members(&train, 0, "t").unwrap();
    let class = outer[1].clone();
    let inner = train[class.offset as usize..(class.offset + class.size) as usize].to_vec();
    let m = index_members(&inner, class.offset, "i").unwrap()[0].clone();
    // Overwrite the member's start (its JPEG or PNG signature) with text.
    train[m.offset as usize..m.offset as usize + 16].copy_from_slice(b"damaged-bytes-xx");
    let dir = with_train(tmp.path(), &archives, "damaged", &train);
    let out = tmp.path().join("o");
    let s = build::run(&config(&dir, &out)).unwrap();
    assert_eq!((s.train_rows, s.rejected), (35, 2));
    let tsv = std::fs::read_to_string(out.join("rejects.tsv")).unwrap();
    assert!(tsv.contains(&format!("{}/{}\tnot an image", class.name, m.name)), "{tsv}");

    // A deflated zip member with a damaged byte fails its CRC-32 (or does not inflate).
    let zip_path = archives.join(sa::KAGGLE_ZIP);
    let mut zip = std::fs::read(&zip_path).unwrap();
    let members = preprocess::archive::zip_index::index_members(&zip, "z").unwrap();
    let z = members
        .iter()
        .find(|m| m.method == preprocess::archive::zip_index::Method::Deflated && m.name.contains("/train/"))
        .unwrap();
    zip[(z.offset + z.stored_size / 2) as usize] ^= 0x55;
    std::fs::write(&zip_path, &zip).unwrap();
    let out = tmp.path().join("oz");
    let s = build::run(&config(&zip_path, &out)).unwrap();
    assert_eq!(s.rejected, 2);
    let tsv = std::fs::read_to_string(out.join("rejects.tsv")).unwrap();
    assert!(tsv.contains(&format!("{}\tdamaged archive member", z.name)), "{tsv}");
}

#[test]
fn official_names_are_checked_against_the_published_sizes() {
    let tmp = tempfile::tempdir().unwrap();
    let archives = tmp.path().join("a");
    synth::run(&synth_cfg(&archives, Layout::Archives)).unwrap();
    let dir = tmp.path().join("official");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(archives.join(sa::TRAIN_TAR), dir.join("ILSVRC2012_img_train.tar")).unwrap();
    let e = build::run(&config(&dir, &tmp.path().join("o"))).unwrap_err().to_string();
    assert!(e.contains("147,897,477,120") && e.contains("incomplete") && !e.contains('\n'), "{e}");
}

#[test]
fn resume_after_a_kill_at_random_points_of_an_archive_build_gives_the_same_shards() {
    let tmp = tempfile::tempdir().unwrap();
    let archives = tmp.path().join("a");
    let mut s = synth_cfg(&archives, Layout::Archives);
    (s.classes, s.train_per_class, s.val_per_class) = (3, 30, 6);
    synth::run(&s).unwrap();
    let clean = tmp.path().join("clean");
    let mut cfg = config(&archives, &clean);
    cfg.shard_rows = 16;
    build::run(&cfg).unwrap();
    let want = data_files(&clean);
    let exe = env!("CARGO_BIN_EXE_preprocess");
    let jitter = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_millis() as u64;
    for (i, base_ms) in [20u64, 300, 900].into_iter().enumerate() {
        let out = tmp.path().join(format!("killed{i}"));
        let cmd = |out: &Path| {
            let mut c = std::process::Command::new(exe);
            c.args(["build", "--quiet", "--threads", "2", "--shard-rows", "16", "--max-reject-rate", "0.1", "--input"])
                .arg(&archives)
                .arg("--output")
                .arg(out);
            c.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
            c
        };
        let mut child = cmd(&out).spawn().unwrap();
        let at = base_ms + jitter % 300;
        std::thread::sleep(std::time::Duration::from_millis(at));
        child.kill().unwrap();
        child.wait().unwrap();
        let rerun = cmd(&out).stderr(std::process::Stdio::piped()).output().unwrap();
        assert!(rerun.status.success(), "resume after a kill at {at}ms: {}", String::from_utf8_lossy(&rerun.stderr));
        let got = data_files(&out);
        assert_eq!(got.iter().map(|f| &f.0).collect::<Vec<_>>(), want.iter().map(|f| &f.0).collect::<Vec<_>>());
        for ((name, g), (_, w)) in got.iter().zip(&want) {
            assert!(g == w, "{name} differs after a kill at {at}ms and a resume");
        }
        let (m1, m2) = (Manifest::load(&out).unwrap(), Manifest::load(&clean).unwrap());
        assert_eq!((m1.stats, m1.splits), (m2.stats, m2.splits));
    }
}

#[allow(dead_code)]
fn _read(_: &mut dyn Read) {}

/// A file with the official name and exactly the published size passes the size check;
/// its counts are then checked against the published ones. The file is sparse: the
/// demo train tar followed by zeros (zero blocks end a tar), so it takes no disk.
#[test]
fn official_archives_get_their_counts_checked_in_the_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let archives = tmp.path().join("a");
    synth::run(&synth_cfg(&archives, Layout::Archives)).unwrap();
    let dir = tmp.path().join("official");
    std::fs::create_dir_all(&dir).unwrap();
    let (train, val) = (dir.join("ILSVRC2012_img_train.tar"), dir.join("ILSVRC2012_img_val.tar"));
    std::fs::copy(archives.join(sa::TRAIN_TAR), &train).unwrap();
    std::fs::copy(archives.join(sa::VAL_TAR), &val).unwrap();
    std::fs::copy(archives.join(sa::DEVKIT), dir.join(sa::DEVKIT)).unwrap();
    for (p, len) in [(&train, 147_897_477_120u64), (&val, 6_744_924_160)] {
        let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
        if f.set_len(len).is_err() {
            eprintln!("skipped: this file system cannot hold a sparse {len}-byte file");
            return;
        }
    }
    {
        use std::os::unix::fs::MetadataExt;
        let blocks = std::fs::metadata(&train).unwrap().blocks();
        if blocks * 512 > 1 << 30 {
            eprintln!("skipped: the file system does not keep files sparse");
            return;
        }
    }
    let s = build::run(&config(&dir, &tmp.path().join("o"))).unwrap();
    assert_eq!((s.train_rows, s.val_rows), (36, 12));
    assert_eq!(s.notes.len(), 2, "{:?}", s.notes);
    assert!(
        s.notes[0].contains("4 classes and 37 images") && s.notes[0].contains("not the official train set"),
        "{:?}",
        s.notes
    );
    assert!(s.notes[1].contains("12 images") && s.notes[1].contains("50,000"), "{:?}", s.notes);
    let m = Manifest::load(&tmp.path().join("o")).unwrap();
    assert_eq!(m.build.archives[0].bytes, 147_897_477_120);
}

/// Unpacked folders with the devkit's ground truth: `--devkit` (the .tar.gz, or its
/// unpacked folder) reads meta.mat for the IDs, in place of `--devkit-synsets`.
#[test]
fn folders_with_the_devkit_ground_truth_use_meta_mat() {
    let tmp = tempfile::tempdir().unwrap();
    let (folders, archives) = both(tmp.path());
    // Relabel the flat val folder by the devkit instead of the csv.
    std::fs::remove_file(folders.join("LOC_val_solution.csv")).unwrap();
    let mut devkit =
        tar::Archive::new(flate2::read::GzDecoder::new(std::fs::File::open(archives.join(sa::DEVKIT)).unwrap()));
    let unpacked = tmp.path().join("devkit");
    devkit.unpack(&unpacked).unwrap();
    std::fs::copy(
        unpacked.join("ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt"),
        folders.join("ILSVRC2012_validation_ground_truth.txt"),
    )
    .unwrap();
    let e = build::run(&config(&folders, &tmp.path().join("o0"))).unwrap_err().to_string();
    assert!(e.contains("--devkit") && e.contains("not in sorted-wnid order"), "{e}");
    let from_archives = tmp.path().join("from-archives");
    build::run(&config(&archives, &from_archives)).unwrap();
    for (i, devkit) in [archives.join(sa::DEVKIT), unpacked.join("ILSVRC2012_devkit_t12")].into_iter().enumerate() {
        let out = tmp.path().join(format!("o{}", i + 1));
        let mut cfg = config(&folders, &out);
        cfg.input.devkit = Some(devkit);
        let s = build::run(&cfg).unwrap();
        assert!(s.val_layout.contains("devkit labels"), "{}", s.val_layout);
        let (a, b) = (data_files(&out), data_files(&from_archives));
        assert!(a == b, "folders + devkit {i} differ from the archive build");
    }
}
