//! Input pipeline throughput, the same finished work as `../shared/anchors/torch_loader.py`:
//! train rows -> random crop, random flip, PCA colour noise, mean-RGB subtraction ->
//! a float [batch, 3, crop, crop] batch on the training device (here the CPU).
//!
//! usage: cargo run --release -p trainer --example loader_bench -- DATASET_DIR
//!            [--workers N] [--batch 128] [--batches 40] [--crop 227] [--intra-op-threads T]
//!
//! Prints three figures so that one can see where the time goes: the loader alone
//! (uint8 crops in the ring), the float conversion alone (on one batch, repeated), and
//! the two together, which is the number to compare with the anchor.

use std::sync::Arc;
use std::time::Instant;

use alexnet_shared::{Dataset, Split};
use clap::Parser;
use trainer::data::{Crops, Loader, LoaderConfig, Normalization, Normalizer, PixelTransform};

#[derive(Parser)]
struct Args {
    dataset: std::path::PathBuf,
    #[arg(long, default_value_t = 2)]
    workers: usize,
    #[arg(long, default_value_t = 128)]
    batch: usize,
    #[arg(long, default_value_t = 40)]
    batches: usize,
    #[arg(long, default_value_t = 227)]
    crop: usize,
    /// libtorch intra-op threads for the float conversion (default: as many as workers).
    #[arg(long)]
    intra_op_threads: Option<i32>,
    /// Where uint8 becomes float: in the workers (fused with the crop) or as tensor ops
    /// on the device after the loader.
    #[arg(long, value_enum, default_value = "workers")]
    float_in: FloatIn,
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum FloatIn {
    Workers,
    Device,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    tch::set_num_threads(a.intra_op_threads.unwrap_or(a.workers as i32));
    let ds = Dataset::open(&a.dataset)?;
    let split = Arc::new(ds.split(Split::Train)?);
    let transform = PixelTransform::new(ds.manifest(), None, Normalization::MeanRgb)?;
    let norm = Normalizer::from_transform(&transform, tch::Device::Cpu);
    let mut cfg = LoaderConfig::new(a.batch, a.crop, Crops::Train);
    cfg.workers = a.workers;
    if a.float_in == FloatIn::Workers {
        cfg.transform = Some(transform);
    }
    let mut loader = Loader::new(split, cfg)?;
    let encoding = ds.manifest().encoding.name();

    // Runs `batches` batches (after one warm-up batch), wrapping epochs like the anchor.
    let mut epoch = 0;
    let mut run = |loader: &mut Loader, with_float: bool, batches: usize| -> anyhow::Result<f64> {
        let mut t0 = None;
        let mut n = 0;
        for b in 0..=batches {
            let batch = match loader.next_batch()? {
                Some(b) => b,
                None => {
                    epoch += 1;
                    loader.start(epoch);
                    loader.next_batch()?.expect("an epoch has batches")
                }
            };
            if with_float {
                let x = norm.apply(&batch, true)?;
                std::hint::black_box(&x);
            }
            if b == 0 {
                t0 = Some(Instant::now());
            } else {
                n += batch.len();
            }
        }
        Ok(n as f64 / t0.expect("warm-up ran").elapsed().as_secs_f64())
    };
    loader.start(0);
    let crops_only = run(&mut loader, false, a.batches)?;
    let wait_before = loader.stats().wait;
    let full = run(&mut loader, true, a.batches)?;
    let waited = loader.stats().wait - wait_before;

    // The float conversion alone, on one batch held in the ring.
    let batch = loader.next_batch()?.or_else(|| {
        loader.start(epoch + 1);
        loader.next_batch().ok().flatten()
    });
    let batch = batch.expect("a batch");
    let t = Instant::now();
    let reps = 10;
    for _ in 0..reps {
        let _ = std::hint::black_box(norm.apply(&batch, true)?);
    }
    let float_only = (reps * batch.len()) as f64 / t.elapsed().as_secs_f64();

    let (what, conv) = match a.float_in {
        FloatIn::Workers => ("float crops made in the workers", "device step (a view on the CPU)"),
        FloatIn::Device => ("uint8 crops", "float conversion as tensor ops"),
    };
    println!("{encoding} shards, {} workers, batch {}, crop {}, {what}:", a.workers, a.batch, a.crop);
    println!("  loader alone (crops in the ring):         {crops_only:.0} images/s");
    println!("  {conv}, alone (one batch x{reps}): {float_only:.0} images/s");
    println!(
        "  end to end (float batch ready):          {full:.0} images/s  (waited for data {:.2} s)",
        waited.as_secs_f64()
    );
    println!("{full:.1} images/s with {} worker(s)", a.workers);
    Ok(())
}
