//! `eval`: scores AlexNet checkpoints (`eval score`), classifies image files (`eval
//! predict`), draws the conv1 kernels (`eval kernels`) and finds nearest training images
//! by fc7 features (`eval neighbors`).

use std::path::PathBuf;
use std::process::ExitCode;

use alexnet_shared::Split;
use anyhow::Result;
use clap::{Parser, Subcommand};
use eval::checkpoint::Overrides;
use trainer::data::{Crops, Normalization};
use trainer::model::Arch;

/// `eval --version`: the version, the commit it was built from, the libtorch.
static VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(trainer::provenance::version_line);

#[derive(Parser)]
#[command(name = "eval", version = VERSION.as_str(), about = "Scores AlexNet checkpoints (Krizhevsky et al. 2012): top-1/top-5, pictures")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where and how the forward passes run (shared by `score` and `neighbors`).
#[derive(clap::Args)]
struct RunFlags {
    /// libtorch intra-op threads (default: libtorch's).
    #[arg(long)]
    threads: Option<i32>,
    /// Loader worker threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// No progress on stderr.
    #[arg(long)]
    quiet: bool,
}

impl RunFlags {
    /// Sets libtorch's threads; the device.
    fn apply(&self) -> Result<tch::Device> {
        if let Some(t) = self.threads {
            anyhow::ensure!(t >= 1, "--threads must be at least 1");
            tch::set_num_threads(t);
        }
        trainer::device::parse_device(&self.device)
    }
}

/// How to read checkpoints without metadata (PyTorch exports), or to override it.
#[derive(clap::Args)]
struct ModelFlags {
    /// The model the checkpoint must hold (read off the tensor names when absent).
    #[arg(long, value_enum)]
    model: Option<Arch>,
    /// Input crop side (default: the metadata's; without it 227 paper, 224 owt).
    #[arg(long)]
    crop: Option<usize>,
    /// Pixel normalization (default: the metadata's; without it torchvision for owt,
    /// mean-image for paper).
    #[arg(long, value_enum)]
    normalization: Option<Normalization>,
}

impl ModelFlags {
    fn overrides(&self) -> Overrides {
        Overrides { arch: self.model, crop: self.crop, normalization: self.normalization }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Top-1/top-5 of a checkpoint (several: an ensemble) on a built dataset.
    Score {
        /// Model file (*.safetensors); repeat to average an ensemble's probabilities.
        #[arg(long = "checkpoint", required = true)]
        checkpoints: Vec<PathBuf>,
        /// Dataset folder built by `preprocess build`.
        #[arg(long)]
        data: PathBuf,
        /// Split to score.
        #[arg(long, value_enum, default_value = "val")]
        split: Split,
        /// Crops per image: center, the paper's ten (of the central square, softmax
        /// averaged), or ten-whole (torchvision's TenCrop: corners of the whole image).
        /// Default: the one matching the first checkpoint's training (its metadata):
        /// ten for the paper's crops, center (torchvision's Resize(256) + CenterCrop)
        /// for RandomResizedCrop on whole images.
        #[arg(long, value_enum)]
        crops: Option<Crops>,
        /// Images per batch (ten crops put 10x as many crops through the model).
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
        #[command(flatten)]
        run: RunFlags,
        /// bf16 autocast (CUDA only): convolutions and matrix products in bfloat16, as
        /// torch.autocast; softmax and averaging in float32/float64.
        #[arg(long)]
        bf16: bool,
        /// Write the scores as JSON (top1, top5, images, crops, per_class, ...); `-`:
        /// on standard output (the table then goes to standard error).
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write every image's top-5 with probabilities: CSV, or Parquet for *.parquet.
        #[arg(long)]
        predictions: Option<PathBuf>,
        /// Score only the first N images.
        #[arg(long)]
        limit: Option<usize>,
        #[command(flatten)]
        model: ModelFlags,
    },
    /// The top classes of image files or folders of them (a checkpoint, or an ensemble).
    Predict {
        /// Image files (JPEG, PNG, BMP, GIF, TIFF, WebP), or folders searched
        /// recursively for them.
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// Model file (*.safetensors); repeat to average an ensemble's probabilities.
        #[arg(long = "checkpoint", required = true)]
        checkpoints: Vec<PathBuf>,
        /// The dataset the checkpoint was trained on: class names and normalization
        /// data for checkpoints that do not carry them (older ones, PyTorch files).
        #[arg(long)]
        data: Option<PathBuf>,
        /// center: one 227 (224) crop of the centre; ten: the paper's ten crops.
        #[arg(long, value_enum, default_value = "center")]
        crops: Crops,
        /// Classes shown per image.
        #[arg(long, default_value_t = 5)]
        top: usize,
        /// Images per forward pass (ten crops put 10x as many crops through the model).
        #[arg(long, default_value_t = 16)]
        batch_size: usize,
        /// libtorch intra-op threads (default: libtorch's).
        #[arg(long)]
        threads: Option<i32>,
        /// cpu, cuda or cuda:N.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// bf16 autocast (CUDA only).
        #[arg(long)]
        bf16: bool,
        /// Write the predictions as JSON; `-`: on standard output (the table then goes
        /// to standard error).
        #[arg(long, conflicts_with = "csv")]
        json: Option<PathBuf>,
        /// Write the predictions as CSV (path,rank,index,wnid,name,probability); `-`:
        /// on standard output.
        #[arg(long)]
        csv: Option<PathBuf>,
        #[command(flatten)]
        model: ModelFlags,
    },
    /// The conv1 kernels as a PNG grid (figure 3).
    Kernels {
        /// Model file (*.safetensors) whose conv1 kernels are drawn.
        #[arg(long)]
        checkpoint: PathBuf,
        /// The PNG to write.
        #[arg(long)]
        out: PathBuf,
        /// Pixels per weight.
        #[arg(long, default_value_t = 4)]
        scale: u32,
        /// Kernels per row (default 16 for the paper model, as in figure 3).
        #[arg(long)]
        columns: Option<usize>,
    },
    /// Nearest training images by fc7 activations (section 6.1, figure 4): PNG grid and CSV.
    Neighbors {
        /// Model file (*.safetensors) whose fc7 activations are compared.
        #[arg(long)]
        checkpoint: PathBuf,
        /// Dataset folder built by `preprocess build` (queries and train images).
        #[arg(long)]
        data: PathBuf,
        /// Number of query images, spread evenly over the query split.
        #[arg(long, conflicts_with = "query_rows")]
        queries: Option<usize>,
        /// Query rows of the query split, comma-separated.
        #[arg(long, value_delimiter = ',')]
        query_rows: Vec<usize>,
        /// Split the queries come from.
        #[arg(long, value_enum, default_value = "val")]
        query_split: Split,
        /// Neighbours per query (figure 4 shows 6).
        #[arg(long, default_value_t = 6)]
        k: usize,
        /// The picture: a row per query, the query first, then its neighbours.
        #[arg(long)]
        out: PathBuf,
        /// The list: query, rank, train row, key, label, distance (CSV).
        #[arg(long)]
        list: Option<PathBuf>,
        /// Side of each picture in the grid, in pixels.
        #[arg(long, default_value_t = 128)]
        thumb: u32,
        /// Search only the first N train images.
        #[arg(long)]
        limit: Option<usize>,
        /// Images per batch of the feature pass.
        #[arg(long, default_value_t = 64)]
        batch_size: usize,
        #[command(flatten)]
        run: RunFlags,
        #[command(flatten)]
        model: ModelFlags,
    },
}

fn main() -> ExitCode {
    // No panic reaches the user: one `error:` line (see alexnet_shared::guard).
    alexnet_shared::guard::main_guard(|| run(Cli::parse()).map(|()| ExitCode::SUCCESS))
}

fn run(cli: Cli) -> Result<()> {
    let text = match cli.command {
        Command::Score { checkpoints, data, split, crops, batch_size, run, bf16, json, predictions, limit, model } => {
            let crops = match crops {
                Some(c) => c,
                None => eval::score::default_crops(&checkpoints)?,
            };
            let mut cfg = eval::score::ScoreConfig::new(checkpoints, data);
            (cfg.split, cfg.crops, cfg.batch_size, cfg.workers) = (split, crops, batch_size, run.workers);
            (cfg.device, cfg.bf16, cfg.overrides) = (run.apply()?, bf16, model.overrides());
            (cfg.predictions, cfg.limit, cfg.progress) = (predictions, limit, !run.quiet);
            let printed = eval::cli::score(&cfg, json.as_deref())?;
            alexnet_shared::say::write_text(true, &printed.stderr);
            printed.stdout
        }
        Command::Predict {
            images,
            checkpoints,
            data,
            crops,
            top,
            batch_size,
            threads,
            device,
            bf16,
            json,
            csv,
            model,
        } => {
            let run = RunFlags { threads, workers: 1, device, quiet: true };
            let mut cfg = eval::predict::PredictConfig::new(images, checkpoints);
            (cfg.data, cfg.crops, cfg.top, cfg.batch_size) = (data, crops, top, batch_size);
            (cfg.device, cfg.bf16, cfg.overrides) = (run.apply()?, bf16, model.overrides());
            let printed = eval::cli::predict(&cfg, json.as_deref(), csv.as_deref())?;
            alexnet_shared::say::write_text(true, &printed.stderr);
            alexnet_shared::say::write_text(false, &printed.stdout);
            return printed.outcome;
        }
        Command::Kernels { checkpoint, out, scale, columns } => {
            eval::cli::kernels(&eval::kernels::KernelsConfig { checkpoint, out, scale, columns })?
        }
        Command::Neighbors {
            checkpoint,
            data,
            queries,
            query_rows,
            query_split,
            k,
            out,
            list,
            thumb,
            limit,
            batch_size,
            run,
            model,
        } => {
            let cfg = eval::neighbors::NeighborsConfig {
                checkpoint,
                data,
                query_split,
                query_rows,
                k,
                batch_size,
                workers: run.workers,
                device: run.apply()?,
                overrides: model.overrides(),
                limit,
                progress: !run.quiet,
            };
            eval::cli::neighbors(eval::cli::NeighborsJob { cfg, queries, out, list, thumb })?
        }
    };
    alexnet_shared::say::write_text(false, &text);
    Ok(())
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
