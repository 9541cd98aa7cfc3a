//! `preprocess`: build ImageNet into dataset format v1, make the demo data, verify.

use std::path::PathBuf;
use std::process::ExitCode;

use alexnet_shared::progress::fmt_duration;
use alexnet_shared::Encoding;
use clap::{Parser, Subcommand};
use preprocess::build::{self, BuildConfig};
use preprocess::inputs::InputOptions;
use preprocess::{synth, verify};

/// `preprocess --version`: the version and the commit it was built from (it does not
/// link libtorch).
static VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    use alexnet_shared::build_info::{short_commit, VERSION};
    format!("{VERSION} (commit {}, libtorch: none, preprocess does not use it)", short_commit())
});

#[derive(Parser)]
#[command(name = "preprocess", version = VERSION.as_str(), about = "ImageNet -> rescaled 256x256 sharded Parquet (dataset format v1)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build a dataset from ImageNet as downloaded (the folder holding ILSVRC2012_img_train.tar,
    /// ILSVRC2012_img_val.tar and ILSVRC2012_devkit_t12.tar.gz, read in place; or Kaggle's zip),
    /// or from unpacked folders (ROOT/train/<wnid>/*.JPEG, ROOT/val).
    Build(Box<BuildArgs>),
    /// Write the small procedural demo dataset in the ImageNet layout.
    Synth(SynthArgs),
    /// Check a built dataset: manifest, every shard's sha256, schema, layout, row counts.
    Verify {
        /// The dataset folder (holds dataset.json).
        dir: PathBuf,
        /// Threads for hashing shards.
        #[arg(long, default_value_t = default_threads())]
        threads: usize,
    },
}

/// What `build` keeps of each image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Keep {
    /// The central 256x256 square (the paper).
    Center,
    /// The whole image, aspect kept (torchvision's recipe).
    Whole,
}

#[derive(clap::Args)]
struct BuildArgs {
    /// The folder holding the downloaded archives (ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar,
    /// ILSVRC2012_devkit_t12.tar.gz), or Kaggle's imagenet-object-localization-challenge.zip, or
    /// an unpacked ImageNet folder (train/ and val/, or ILSVRC/Data/CLS-LOC/{train,val}); or
    /// CIFAR-10's cifar-10-binary.tar.gz (or its folder, or cifar-10-batches-bin/ unpacked).
    #[arg(long, required_unless_present = "train_archive")]
    input: Option<PathBuf>,
    /// The train archive (an outer tar of class tars), when not in --input.
    #[arg(long)]
    train_archive: Option<PathBuf>,
    /// The val archive (flat), when not in --input.
    #[arg(long)]
    val_archive: Option<PathBuf>,
    /// The devkit (ILSVRC2012_devkit_t12.tar.gz, or its unpacked folder): meta.mat numbers the
    /// classes of the val ground truth.
    #[arg(long)]
    devkit: Option<PathBuf>,
    /// Check each archive's md5 before building (the official ones against the published md5s);
    /// a long read (about 155 GB), shown with progress. The md5s are recorded in dataset.json.
    #[arg(long)]
    check_md5: bool,
    /// Output dataset folder.
    #[arg(long)]
    output: PathBuf,
    /// What to keep of each image: `center`, the paper's central 256x256 square of the image
    /// rescaled to a shorter side of 256 (section 2); or `whole`, the whole image with its aspect
    /// kept, rescaled to a shorter side of --shorter-side (torchvision's Resize(256): the input of
    /// its RandomResizedCrop recipe) or with its longer side capped at --max-side (FFCV's setting).
    /// Default: center; for CIFAR-10, whole at its own 32x32 (the images stored as they are).
    #[arg(long, value_enum)]
    keep: Option<Keep>,
    /// With --keep whole: the shorter side of the stored images (default 256; 32 for CIFAR-10). The build
    /// estimates the disk it needs from a sample of the images before it starts.
    #[arg(long, conflicts_with = "max_side", value_parser = clap::value_parser!(u32).range(8..=4096))]
    shorter_side: Option<u32>,
    /// With --keep whole: cap the longer side at M instead (smaller images are kept as they are;
    /// FFCV's ImageNet setting is 500, close to the original pixels, several times the disk of
    /// --shorter-side 256).
    #[arg(long, value_parser = clap::value_parser!(u32).range(8..=4096))]
    max_side: Option<u32>,
    /// How the image column stores the pixels: raw RGB bytes, or JPEG.
    #[arg(long, value_enum, default_value = "raw")]
    encoding: Encoding,
    /// JPEG quality, with --encoding jpeg.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u8).range(1..=100))]
    quality: u8,
    /// With --encoding jpeg: the chroma subsampling, 444 (full-resolution colour) or 420
    /// (half resolution both ways: about a third smaller and faster to decode; what
    /// ImageNet's own JPEGs mostly are). Default: 444 at --quality 90 and above, 420 below.
    #[arg(long, value_enum)]
    chroma: Option<alexnet_shared::Chroma>,
    /// With --encoding jpeg: keep this fraction of each shard's images raw (FFCV's mixed
    /// shards): the images whose JPEG is largest for their size, the slowest to decode.
    /// Trades disk for loader CPU; the dataset is then format 4, encoding "mixed".
    #[arg(long, value_parser = parse_fraction)]
    raw_fraction: Option<f64>,
    /// Rows per shard (1024 raw rows are about 200 MB).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    shard_rows: u64,
    /// Decode threads.
    #[arg(long, default_value_t = default_threads())]
    threads: usize,
    /// Use only the first N images (sorted by name) of each class: small trial builds.
    #[arg(long)]
    limit_per_class: Option<usize>,
    /// Seed of the train shuffle.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Fail when more than this fraction of the inputs cannot be used.
    #[arg(long, default_value_t = 0.01)]
    max_reject_rate: f64,
    /// Replace a different build found in --output.
    #[arg(long)]
    overwrite: bool,
    /// Train folder, when not ROOT/train.
    #[arg(long)]
    train_dir: Option<PathBuf>,
    /// Val folder, when not ROOT/val.
    #[arg(long)]
    val_dir: Option<PathBuf>,
    /// Labels of a flat val folder: LOC_val_solution.csv, or the devkit's
    /// ILSVRC2012_validation_ground_truth.txt (with --devkit-synsets).
    #[arg(long)]
    val_labels: Option<PathBuf>,
    /// Class names: LOC_synset_mapping.txt ("wnid name" per line).
    #[arg(long)]
    synset_mapping: Option<PathBuf>,
    /// The devkit's ID -> wnid list, one wnid per line in ID order (--devkit reads meta.mat instead).
    #[arg(long)]
    devkit_synsets: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(clap::Args)]
struct SynthArgs {
    /// Output folder.
    #[arg(long)]
    output: PathBuf,
    /// Unpacked folders, or the official archive layout (the same images, byte for byte).
    #[arg(long, value_enum, default_value = "folders")]
    layout: synth::Layout,
    /// Number of classes (procedural shapes, each its own wnid).
    #[arg(long, default_value_t = 10)]
    classes: usize,
    /// Train images per class.
    #[arg(long, default_value_t = 100)]
    train_per_class: usize,
    /// Val images per class.
    #[arg(long, default_value_t = 20)]
    val_per_class: usize,
    /// Truncated files added to train, to show how bad inputs are handled.
    #[arg(long, default_value_t = 1)]
    corrupt: usize,
    /// Seed of the images (the same seed gives the same files).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Range of image widths and heights, MIN:MAX (ImageNet's average is about 400x350).
    #[arg(long, default_value = "150:460", value_parser = parse_range)]
    sides: (u32, u32),
}

fn parse_range(s: &str) -> Result<(u32, u32), String> {
    let (a, b) = s.split_once(':').ok_or("expected MIN:MAX")?;
    Ok((a.parse().map_err(|_| "bad MIN")?, b.parse().map_err(|_| "bad MAX")?))
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn main() -> ExitCode {
    // No panic reaches the user: one `error:` line (see alexnet_shared::guard).
    alexnet_shared::guard::main_guard(|| run(Cli::parse()))
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Build(a) => {
            let input = InputOptions {
                root: a.input.unwrap_or_default(),
                train_archive: a.train_archive,
                val_archive: a.val_archive,
                devkit: a.devkit,
                check_md5: a.check_md5,
                progress: !a.quiet,
                train_dir: a.train_dir,
                val_dir: a.val_dir,
                val_labels: a.val_labels,
                synset_mapping: a.synset_mapping,
                devkit_synsets: a.devkit_synsets,
                limit_per_class: a.limit_per_class,
            };
            anyhow::ensure!((0.0..=1.0).contains(&a.max_reject_rate), "--max-reject-rate must be in 0..=1");
            anyhow::ensure!(a.threads >= 1, "--threads must be at least 1");
            // CIFAR-10 (for the paper's Figure 1) is kept at its own 32x32 unless told otherwise.
            let cifar = preprocess::inputs::cifar::is_cifar(&input);
            let keep = a.keep.unwrap_or(if cifar { Keep::Whole } else { Keep::Center });
            let whole_default = if cifar { preprocess::archive::cifar::SIDE as u32 } else { 256 };
            let mut cfg = BuildConfig::new(input, a.output);
            cfg.encoding = a.encoding;
            cfg.quality = a.quality;
            cfg.chroma = a.chroma;
            anyhow::ensure!(a.chroma.is_none() || a.encoding == Encoding::Jpeg, "--chroma goes with --encoding jpeg");
            if let Some(f) = a.raw_fraction {
                anyhow::ensure!(a.encoding == Encoding::Jpeg, "--raw-fraction goes with --encoding jpeg");
                cfg.raw_fraction = f;
                cfg.encoding = Encoding::Mixed;
            }
            cfg.whole = match (keep, a.shorter_side, a.max_side) {
                (Keep::Center, None, None) => None,
                (Keep::Center, _, _) => anyhow::bail!("--shorter-side and --max-side go with --keep whole"),
                (Keep::Whole, _, Some(m)) => Some((alexnet_shared::WholeResize::MaxSide, m)),
                (Keep::Whole, s, None) => Some((alexnet_shared::WholeResize::ShorterSide, s.unwrap_or(whole_default))),
            };
            cfg.shard_rows = a.shard_rows as usize;
            cfg.threads = a.threads;
            cfg.seed = a.seed;
            cfg.max_reject_rate = a.max_reject_rate;
            cfg.overwrite = a.overwrite;
            cfg.progress = !a.quiet;
            let s = build::run(&cfg)?;
            let st = &s.manifest.stats;
            alexnet_shared::out_line!(
                "built {} ({}, {} encoding, {:.2} GB)",
                s.output.display(),
                s.manifest.describe_layout(),
                match s.manifest.build.raw_fraction {
                    Some(f) => format!("mixed ({:.0}% raw, the rest JPEG)", f * 100.0),
                    None => s.encoding.name().to_string(),
                },
                s.bytes as f64 / 1e9
            );
            alexnet_shared::out_line!("  classes  {}", s.manifest.classes.len());
            if s.indexed > 0 {
                alexnet_shared::out_line!(
                    "  archives {} members indexed in {:.3} s ({:.2} s per 100k members)",
                    s.indexed,
                    s.index_seconds,
                    s.index_seconds * 1e5 / s.indexed as f64
                );
            }
            for note in &s.notes {
                alexnet_shared::out_line!("  check    {note}");
            }
            alexnet_shared::out_line!("  train    {} images in {} shards", s.train_rows, s.train_shards);
            alexnet_shared::out_line!("  val      {} images in {} shards ({})", s.val_rows, s.val_shards, s.val_layout);
            let kinds: Vec<String> = s.reject_kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
            alexnet_shared::out_line!(
                "  rejected {} of {} inputs ({:.2}%){}",
                s.rejected,
                s.inputs,
                100.0 * s.rejected as f64 / s.inputs.max(1) as f64,
                if kinds.is_empty() { String::new() } else { format!(": {}; see rejects.tsv", kinds.join(", ")) }
            );
            alexnet_shared::out_line!(
                "  mean RGB [{:.2}, {:.2}, {:.2}], std RGB [{:.2}, {:.2}, {:.2}]",
                st.mean_rgb[0],
                st.mean_rgb[1],
                st.mean_rgb[2],
                st.std_rgb[0],
                st.std_rgb[1],
                st.std_rgb[2]
            );
            alexnet_shared::out_line!(
                "  PCA eigenvalues [{:.1}, {:.1}, {:.1}]",
                st.pca.eigenvalues[0],
                st.pca.eigenvalues[1],
                st.pca.eigenvalues[2]
            );
            alexnet_shared::out_line!(
                "  {} shards built, {} kept from an earlier run; {} images in {} ({:.0} images/s, {} threads)",
                s.shards_built,
                s.shards_kept,
                s.images_processed,
                fmt_duration(s.seconds),
                s.images_processed as f64 / s.seconds.max(1e-9),
                cfg.threads
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Synth(a) => {
            let s = synth::run(&synth::SynthConfig {
                output: a.output.clone(),
                classes: a.classes,
                train_per_class: a.train_per_class,
                val_per_class: a.val_per_class,
                corrupt: a.corrupt,
                seed: a.seed,
                sides: a.sides,
                layout: a.layout,
            })?;
            let special: Vec<String> =
                s.special.iter().filter(|(_, n)| *n > 0).map(|(k, n)| format!("{n} {k}")).collect();
            let layout = match a.layout {
                synth::Layout::Folders => "flat val with LOC_val_solution.csv".to_string(),
                synth::Layout::Archives => format!(
                    "as downloaded: {}, {}, {} and {}",
                    synth::archives::TRAIN_TAR,
                    synth::archives::VAL_TAR,
                    synth::archives::DEVKIT,
                    synth::archives::KAGGLE_ZIP
                ),
                synth::Layout::Cifar => {
                    format!("32x32, CIFAR-10's binary format: {}", preprocess::archive::cifar::ARCHIVE)
                }
            };
            alexnet_shared::out_line!(
                "wrote {}: {} classes, {} train and {} val images ({layout}); special inputs: {}",
                a.output.display(),
                s.classes,
                s.train,
                s.val,
                if special.is_empty() { "none".to_string() } else { special.join(", ") }
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { dir, threads } => {
            let r = verify::run(&dir, threads)?;
            if r.ok() {
                alexnet_shared::out_line!(
                    "{}: OK ({} shards, {} rows, {:.2} GB, every sha256 matches)",
                    dir.display(),
                    r.shards,
                    r.rows,
                    r.bytes as f64 / 1e9
                );
                Ok(ExitCode::SUCCESS)
            } else {
                // One line per problem, then the one `error:` line (README, "Errors").
                for p in &r.problems {
                    alexnet_shared::err_line!("problem: {}: {}", dir.display(), p.replace('\n', " "));
                }
                alexnet_shared::err_line!(
                    "error: {}: {} problem(s) found; the dataset is not usable as is",
                    dir.display(),
                    r.problems.len()
                );
                Ok(ExitCode::FAILURE)
            }
        }
    }
}

/// A fraction strictly between 0 and 1 (`--raw-fraction`).
fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f > 0.0 && f < 1.0 => Ok(f),
        Ok(_) => Err(format!("{s} is not strictly between 0 and 1 (0: --encoding jpeg alone; 1: --encoding raw)")),
        Err(e) => Err(format!("{s}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// First-use review: flags without help text. Every argument of every subcommand
    /// has some (clap's own --help and --version aside).
    #[test]
    fn every_flag_has_help_text() {
        let missing = alexnet_shared::flags_without_help(&super::Cli::command());
        assert!(missing.is_empty(), "without help: {missing:?}");
    }
}
