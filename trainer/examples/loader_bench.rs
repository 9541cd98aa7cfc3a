//! Input pipeline throughput, the same finished work as `../shared/anchors/torch_loader.py`:
//! train rows -> random crop, random flip, PCA colour noise, mean-RGB subtraction ->
//! a float [batch, 3, crop, crop] batch on the training device (here the CPU), through
//! the pipeline the trainer uses (`trainer::data::Pipeline`). On a whole-image dataset
//! (`preprocess build --keep whole`) the work is that of
//! `../shared/anchors/torchvision_folder_loader.py` instead: torchvision's
//! RandomResizedCrop (scale 0.08-1, ratio 3/4-4/3, antialiased bilinear) to `--crop`
//! (224), flip, torchvision's normalization, no colour noise.
//!
//! usage: cargo run --release -p trainer --example loader_bench -- DATASET_DIR
//!            [--workers N] [--batch 128] [--batches 40] [--crop 227] [--intra-op-threads T]
//!            [--float-in workers|device] [--no-row-checks] [--no-decode-region] [--json]
//!
//! Prints three figures so that one can see where the time goes: the loader alone
//! (crops in the ring), the float step alone (on one batch, repeated), and the two
//! together, which is the number to compare with the anchor. `--float-in` overrides the
//! pipeline's choice for the CPU (float crops made in the workers) to time the other
//! path, uint8 crops converted by tensor ops. `--no-row-checks` turns off the check of
//! each row's bytes (CRC-32C; on by default, as in training) to measure what it costs.
//! `--json` prints the figures as one JSON object instead (`images_per_s` is the
//! end-to-end figure).
//!
//! Then where the workers' time went during the end-to-end run (`StageTimes`: row
//! check, JPEG decode, resize, the fused crop/flip/colour/normalize pass, and waiting),
//! per image and as a share of the workers' time, and the fused pass taken apart on one
//! 256x256 image: the crop and flip alone (uint8), against the whole pass to floats.

use std::sync::Arc;
use std::time::{Duration, Instant};

use alexnet_shared::{Dataset, Split};
use anyhow::Context;
use clap::Parser;
use tch::Device;
use trainer::data::augment::{crop_into, train_draw};
use trainer::data::{Crops, FloatIn, LoaderConfig, Normalization, Pipeline, PixelTransform};

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
    /// on the device after the loader. Default: the pipeline's choice for the CPU
    /// (workers).
    #[arg(long, value_enum)]
    float_in: Option<FloatIn>,
    /// Do not check each row's bytes (CRC-32C) as it is read: to measure the check's cost.
    #[arg(long)]
    no_row_checks: bool,
    /// JPEG shards: decode each whole image instead of only the rows and iMCU columns its
    /// crop reads (to measure what the region decode saves).
    #[arg(long)]
    no_decode_region: bool,
    /// Print one JSON object with the figures instead of the text.
    #[arg(long)]
    json: bool,
}

/// The figures, as `--json` prints them.
#[derive(serde::Serialize)]
struct Report {
    /// End to end: float batches ready for the model.
    images_per_s: f64,
    /// The loader alone: crops in the ring.
    loader_only_images_per_s: f64,
    /// The float step alone (`Pipeline::input` on one batch, repeated).
    float_only_images_per_s: f64,
    /// Time the consumer waited for data during the end-to-end run.
    waited_s: f64,
    workers: usize,
    batch: usize,
    crop: usize,
    encoding: String,
    /// `center-square 256x256` (random crops) or `whole images, ...` (RandomResizedCrop).
    layout: String,
    float_in: FloatIn,
    /// Whether each row's bytes were checked as read (the default).
    row_checks: bool,
    decode_region: bool,
    /// Microseconds per image of each worker stage during the end-to-end run (summed
    /// over workers), and the consumer's side.
    stages_us_per_image: Stages,
    /// The fused pass on one 256x256 image, microseconds: crop and flip alone (uint8),
    /// and crop, flip, colour noise and normalization to floats.
    crop_flip_us: f64,
    crop_flip_colour_normalize_us: f64,
}

#[derive(serde::Serialize)]
struct Stages {
    check: f64,
    decode: f64,
    resize: f64,
    crop_flip_colour_normalize: f64,
    wait_buffer: f64,
    wait_job: f64,
    handoff: f64,
    /// The consumer: waiting for a batch, and the float step (a view when the workers
    /// make floats).
    consumer_wait: f64,
    consumer_float_step: f64,
}

/// Runs `batches` batches (after one warm-up batch), wrapping epochs like the anchor;
/// `with_float`: make each batch's float input. Returns images/s.
fn run(p: &mut Pipeline, epoch: &mut u64, with_float: bool, batches: usize) -> anyhow::Result<f64> {
    let mut t0 = None;
    let mut n = 0;
    for b in 0..=batches {
        let batch = next(p, epoch)?;
        if with_float {
            std::hint::black_box(&p.input(&batch, true)?);
        }
        if b == 0 {
            t0 = Some(Instant::now());
        } else {
            n += batch.len();
        }
    }
    Ok(n as f64 / t0.context("the warm-up ran")?.elapsed().as_secs_f64())
}

/// The next batch, starting the next epoch at the end of one.
fn next(p: &mut Pipeline, epoch: &mut u64) -> anyhow::Result<trainer::data::Batch> {
    if let Some(b) = p.next_batch()? {
        return Ok(b);
    }
    *epoch += 1;
    p.start(*epoch);
    p.next_batch()?.context("the train split has fewer rows than one batch")
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    tch::set_num_threads(a.intra_op_threads.unwrap_or(a.workers as i32));
    let ds = Dataset::open(&a.dataset)?;
    let split = Arc::new(ds.split(Split::Train)?);
    let whole = ds.manifest().layout.is_whole();
    let norm = if whole { Normalization::Torchvision } else { Normalization::MeanRgb };
    let transform = PixelTransform::new(ds.manifest(), None, norm)?;
    let mut cfg = LoaderConfig::new(a.batch, a.crop, Crops::Train);
    if whole {
        cfg.resized_crop = Some(Default::default());
        cfg.pca_noise = false;
    }
    cfg.workers = a.workers;
    cfg.check_rows = !a.no_row_checks;
    cfg.decode_region = !a.no_decode_region;
    let float_in = a.float_in.unwrap_or(FloatIn::for_device(Device::Cpu));
    let mut p = Pipeline::with_float_in(split, cfg, &transform, Device::Cpu, float_in)?;

    let mut epoch = 0;
    p.start(0);
    let crops_only = run(&mut p, &mut epoch, false, a.batches)?;
    let wait_before = p.stats().wait;
    let stages_before = p.stage_times();
    let images_before = p.stats().images;
    let t_full = Instant::now();
    let full = run(&mut p, &mut epoch, true, a.batches)?;
    let full_s = t_full.elapsed().as_secs_f64();
    let waited: Duration = p.stats().wait - wait_before;
    let stages = p.stage_times().since(&stages_before);
    let images = (p.stats().images - images_before) as f64;

    // The float step alone, on one batch held in the ring.
    let batch = next(&mut p, &mut epoch)?;
    let t = Instant::now();
    let reps = 10;
    for _ in 0..reps {
        std::hint::black_box(&p.input(&batch, true)?);
    }
    let float_only = (reps * batch.len()) as f64 / t.elapsed().as_secs_f64();
    drop(batch);
    drop(p);
    let per = |d: Duration| d.as_secs_f64() * 1e6 / images;
    let consumer_wait = per(waited);
    let stages_us_per_image = Stages {
        check: per(stages.check),
        decode: per(stages.decode),
        resize: per(stages.resize),
        crop_flip_colour_normalize: per(stages.crop),
        wait_buffer: per(stages.wait_buffer),
        wait_job: per(stages.wait_job),
        handoff: per(stages.handoff),
        consumer_wait,
        // The rest of the consumer's time in the end-to-end run.
        consumer_float_step: (full_s * 1e6 / images - consumer_wait).max(0.0),
    };
    let (crop_flip_us, crop_flip_colour_normalize_us) = fused_pass(&transform, a.crop);

    let r = Report {
        images_per_s: full,
        loader_only_images_per_s: crops_only,
        float_only_images_per_s: float_only,
        waited_s: waited.as_secs_f64(),
        workers: a.workers,
        batch: a.batch,
        crop: a.crop,
        encoding: ds.manifest().encoding.name().to_string(),
        layout: ds.manifest().describe_layout(),
        float_in,
        row_checks: !a.no_row_checks,
        decode_region: !a.no_decode_region,
        stages_us_per_image,
        crop_flip_us,
        crop_flip_colour_normalize_us,
    };
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        print_text(&r, reps);
    }
    Ok(())
}

fn print_text(r: &Report, reps: usize) {
    let (what, conv) = match r.float_in {
        FloatIn::Workers => ("float crops made in the workers", "device step (a view on the CPU)"),
        FloatIn::Device => ("uint8 crops", "float conversion as tensor ops"),
    };
    println!(
        "{} shards of {}, {} workers, batch {}, crop {}, {what}, row checks {}{}:",
        r.encoding,
        r.layout,
        r.workers,
        r.batch,
        r.crop,
        if r.row_checks { "on" } else { "off" },
        match (r.encoding.as_str(), r.decode_region) {
            ("jpeg" | "mixed", true) => ", JPEG decode of the crop's region only",
            ("jpeg" | "mixed", false) => ", JPEG decode of the whole image",
            _ => "",
        }
    );
    println!("  loader alone (crops in the ring):         {:.0} images/s", r.loader_only_images_per_s);
    println!("  {conv}, alone (one batch x{reps}): {:.0} images/s", r.float_only_images_per_s);
    println!(
        "  end to end (float batch ready):          {:.0} images/s  (waited for data {:.2} s)",
        r.images_per_s, r.waited_s
    );
    println!("{:.1} images/s with {} worker(s)", r.images_per_s, r.workers);
    let s = &r.stages_us_per_image;
    let busy = s.check + s.decode + s.resize + s.crop_flip_colour_normalize;
    println!("where the workers' time went, end to end (us per image, summed over workers; share of work):");
    for (name, us) in [
        ("row check (CRC-32C)", s.check),
        ("JPEG decode", s.decode),
        ("resize (whole images)", s.resize),
        ("crop+flip+colour+normalize (fused)", s.crop_flip_colour_normalize),
    ] {
        println!("  {name:<36} {us:>8.1}  {:>5.1}%", 100.0 * us / busy.max(1e-9));
    }
    println!("  {:<36} {:>8.1}", "waiting for a free buffer", s.wait_buffer);
    println!("  {:<36} {:>8.1}", "waiting for a job", s.wait_job);
    println!("  {:<36} {:>8.1}", "handing off to the ready queue", s.handoff);
    println!("  {:<36} {:>8.1}", "consumer: waiting for a batch", s.consumer_wait);
    println!("  {:<36} {:>8.1}", "consumer: float step", s.consumer_float_step);
    println!(
        "the fused pass on one 256x256 image: crop+flip alone (uint8) {:.1} us, crop+flip+colour+normalize \
         to floats {:.1} us",
        r.crop_flip_us, r.crop_flip_colour_normalize_us
    );
}

/// The fused pass taken apart on one image: microseconds for the crop and flip alone
/// (uint8 out), and for the crop, flip, colour noise and normalization (float out).
fn fused_pass(t: &PixelTransform, crop: usize) -> (f64, f64) {
    let side = alexnet_shared::IMAGE_SIDE;
    let src: Vec<u8> = (0..side * side * 3).map(|i| (i * 7 % 251) as u8).collect();
    let mut u8s = vec![0u8; crop * crop * 3];
    let mut floats = vec![0f32; crop * crop * 3];
    let reps = 2000;
    let draws: Vec<_> = (0..reps).map(|i| train_draw(1, 0, 0, i, crop, true)).collect();
    let t0 = Instant::now();
    for d in &draws {
        crop_into(&src, d.crop, crop, &mut u8s);
        std::hint::black_box(&u8s);
    }
    let plain = t0.elapsed().as_secs_f64() * 1e6 / reps as f64;
    let t0 = Instant::now();
    for d in &draws {
        t.crop_float(&src, d.crop, crop, d.alpha, &mut floats);
        std::hint::black_box(&floats);
    }
    (plain, t0.elapsed().as_secs_f64() * 1e6 / reps as f64)
}
