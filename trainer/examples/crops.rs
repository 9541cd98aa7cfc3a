//! The evaluation crops of the Rust loader, written to a file for the PyTorch side to
//! compare with (`python/alexnet_bridge`'s `ShardDataset`, checked by
//! `python/tests/check_dataset_bridge.py`, run by scripts/test.sh).
//!
//! usage: crops dump DATASET SPLIT CROP center|ten NORMALIZATION OUT.safetensors
//!        crops format1 DATASET COPY   # COPY: DATASET rewritten as format 1 (no crc32c
//!                                     # column), by the Rust writer, for the readers' tests
//!
//! OUT holds `u8` (uint8 [N, CROP, CROP, 3], HWC, what the loader's workers copy out of
//! the shards, decoded for JPEG shards), `f32` (float [N, 3, CROP, CROP], the model's
//! input as `eval score` makes it on the CPU: normalized in the workers), `rows` and
//! `labels` (int64 [N]); N = images x crops per image, in the loader's order.

use std::path::Path;
use std::sync::Arc;

use alexnet_shared::{Dataset, Split};
use anyhow::{bail, Context};
use tch::{Device, Kind, Tensor};
use trainer::data::{Crops, Loader, LoaderConfig, Normalization, Pipeline};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("dump") if args.len() == 7 => dump(&args[1..]),
        Some("format1") if args.len() == 3 => format1(Path::new(&args[1]), Path::new(&args[2])),
        _ => bail!(
            "usage: crops dump DATASET SPLIT CROP center|ten NORMALIZATION OUT.safetensors | crops format1 DATASET COPY"
        ),
    }
}

/// A copy of the dataset `src` in `dst` as format 1: the same rows, shards without the
/// `crc32c` column, the manifest's version 1 and the new shards' sha256.
fn format1(src: &Path, dst: &Path) -> anyhow::Result<()> {
    use alexnet_shared::{Encoding, Manifest, ShardImages, ShardReader, ShardRows, ShardWriter};
    let mut m = Manifest::load(src)?;
    if m.layout.is_whole() || m.encoding == Encoding::Mixed {
        bail!("{}: whole images and mixed shards are formats 3 and 4 only", src.display());
    }
    std::fs::create_dir_all(dst)?;
    if let Some(mean) = &m.mean_image {
        std::fs::copy(src.join(mean), dst.join(mean))?;
    }
    let w = ShardWriter::with_format(m.encoding, 1);
    for split in m.splits.values_mut() {
        for s in &mut split.shards {
            let r = ShardReader::open(&src.join(&s.file), m.encoding)?;
            let images: Vec<Vec<u8>> =
                (0..r.len()).map(|i| r.image(i).map(<[u8]>::to_vec)).collect::<Result<_, _>>()?;
            let keys: Vec<String> =
                (0..r.len()).map(|i| r.get(i).map(|g| g.key.to_string())).collect::<Result<_, _>>()?;
            let flat: Vec<u8> = images.concat();
            let pixels = match m.encoding {
                Encoding::Raw => ShardImages::Raw(&flat),
                Encoding::Jpeg | Encoding::Mixed => ShardImages::PerRow(&images),
            };
            *s = w.write(
                &dst.join(&s.file),
                &ShardRows { images: pixels, labels: r.labels(), keys: &keys, sizes: &[] },
            )?;
        }
    }
    m.format_version = 1;
    m.save(dst)?;
    println!("crops: {} written as format 1", dst.display());
    Ok(())
}

fn dump(args: &[String]) -> anyhow::Result<()> {
    let [data, split, crop, crops, norm, out] = args else { bail!("crops dump: 6 arguments") };
    let split = match split.as_str() {
        "train" => Split::Train,
        "val" => Split::Val,
        s => bail!("split {s:?}: train or val"),
    };
    let crop: usize = crop.parse().context("CROP")?;
    let crops = match crops.as_str() {
        "center" => Crops::Center,
        "ten" => Crops::Ten,
        c => bail!("crops {c:?}: center or ten"),
    };
    let norm = Normalization::from_name(norm).with_context(|| format!("normalization {norm:?}"))?;
    let ds = Dataset::open(Path::new(data))?;
    if ds.manifest().layout.is_whole() {
        bail!("crops dump: {data} holds whole images (format 3); the loader's crops are of 256x256 squares");
    }
    let mean = if norm == Normalization::MeanImage { Some(ds.mean_image()?) } else { None };
    let reader = Arc::new(ds.split(split)?);
    let mut cfg = LoaderConfig::new(16, crop, crops);
    (cfg.workers, cfg.flip, cfg.pca_noise) = (2, false, false);

    // uint8 crops: a loader without a transform.
    let mut loader = Loader::new(reader.clone(), cfg.clone())?;
    loader.start(0);
    let (mut u8s, mut rows, mut labels) = (Vec::new(), Vec::new(), Vec::new());
    while let Some(b) = loader.next_batch()? {
        u8s.push(b.images().context("uint8 crops")?.copy());
        rows.extend(b.rows().iter().map(|&r| r as i64));
        labels.push(b.labels());
    }
    // float crops: the pipeline `eval score` uses on the CPU.
    let mut pipe = Pipeline::new(reader, cfg, ds.manifest(), mean.as_deref(), norm, Device::Cpu)?;
    pipe.start(0);
    let mut f32s = Vec::new();
    while let Some(b) = pipe.next_batch()? {
        f32s.push(pipe.input(&b, false)?.copy());
    }
    let u8s = Tensor::cat(&u8s, 0);
    let f32s = Tensor::cat(&f32s, 0).to_kind(Kind::Float);
    let rows = Tensor::from_slice(&rows);
    let labels = Tensor::cat(&labels, 0);
    Tensor::write_safetensors(&[("u8", &u8s), ("f32", &f32s), ("rows", &rows), ("labels", &labels)], out)?;
    println!("crops: {} crops of {crop}x{crop} written to {out}", u8s.size()[0]);
    Ok(())
}
