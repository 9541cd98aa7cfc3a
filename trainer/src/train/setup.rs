//! Everything a run needs before its first step: the resolved configuration saved in
//! the run folder, the learner (model, SGD, gradient sync), the position resumed from
//! the latest checkpoint, and the input pipelines of train, val and the held-out slice.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use alexnet_shared::{read_mean_image, sha256_file, Dataset, Manifest, Split, MANIFEST_FILE};
use anyhow::{bail, ensure, Context, Result};

use super::metrics::MetricsSink;
use super::step::Learner;
use super::RunOptions;
use crate::checkpoint::{load_model, optim_path, read_optim, CheckpointMeta, Position, RunDir};
use crate::config::TrainConfig;
use crate::data::sampler::held_out_rows;
use crate::data::{Crops, LoaderConfig, Pipeline, Rows};
use crate::dist::ProcessGroup;

/// A run in progress (one rank of it).
pub(super) struct Run<'a> {
    /// Resolved for the world size (what `config.toml` holds).
    pub cfg: TrainConfig,
    pub opt: &'a RunOptions,
    pub rank: usize,
    pub world: usize,
    /// Rank 0: logs and writes the run folder.
    pub main: bool,
    pub learner: Learner<'a>,
    pub pos: Position,
    pub train: Pipeline,
    pub val: Pipeline,
    pub holdout: Option<Pipeline>,
    pub ckpts: RunDir,
    /// The last checkpoint written (empty: none yet).
    pub last_ckpt: PathBuf,
    pub last_ckpt_time: Instant,
    pub metrics: MetricsSink,
    /// What every checkpoint's metadata says besides the position.
    pub meta: CheckpointMeta,
    /// The factor `optim.lr` is scaled by (`dist.lr_scaling`).
    pub lr_factor: f64,
    /// Steps taken by this process (for `--max-steps`).
    pub steps_here: u64,
    /// Center-crop (top-1, top-5) of the last validation.
    pub last_val: (Option<f64>, Option<f64>),
}

impl<'a> Run<'a> {
    /// Sets up the run in `opt.run_dir` (a new one, or the one to resume).
    pub fn new(cfg: &TrainConfig, opt: &'a RunOptions, pg: Option<&'a ProcessGroup>) -> Result<Self> {
        let (rank, world) = pg.map_or((0, 1), |p| (p.rank(), p.world()));
        let main = rank == 0;
        let cfg = cfg.resolve(world)?;
        let ds = Dataset::open(&opt.data)?;
        let manifest = ds.manifest().clone();
        let ckpts = RunDir::new(&opt.run_dir);
        let latest = ckpts.latest()?;
        if latest.is_some() && !opt.resume {
            bail!(
                "{} already holds checkpoints: use --resume to continue it, or another run folder",
                opt.run_dir.display()
            );
        }
        if main {
            ckpts.create()?;
            alexnet_shared::atomic_write(&opt.run_dir.join("config.toml"), cfg.to_toml().as_bytes())?;
        }
        let meta = CheckpointMeta {
            model: cfg.model_config(manifest.classes.len()),
            normalization: cfg.data.normalization,
            epoch: 0,
            step: 0,
            manifest_sha256: sha256_file(&opt.data.join(MANIFEST_FILE))?,
            wnids: manifest.wnids(),
        };
        let mut learner = Learner::new(&cfg, manifest.classes.len(), opt.device)?;
        let mut pos = Position { best_top1: -1.0, ..Default::default() };
        if let Some(path) = &latest {
            pos = resume(&mut learner, path, &meta, opt)?;
            if main {
                eprintln!(
                    "train: resuming from {} (epoch {}, batch {}, step {})",
                    path.display(),
                    pos.epoch,
                    pos.batch,
                    pos.global_step
                );
            }
        }
        if let Some(pg) = pg {
            // Every rank starts from rank 0's weights, at rank 0's position.
            learner.join(pg, &cfg)?;
            crate::dist::check_same_position(pg, pos.epoch, pos.batch, pos.global_step)?;
        }
        let (train, val, holdout) = pipelines(&cfg, &ds, &manifest, opt, rank, world)?;
        let (metrics, dropped) = MetricsSink::resume(&opt.run_dir.join("metrics.jsonl"), main, pos.global_step)
            .context("opening metrics.jsonl")?;
        if dropped > 0 {
            eprintln!(
                "train: metrics.jsonl: {dropped} record(s) after step {} dropped (written after the last checkpoint; \
                 trained again now)",
                pos.global_step
            );
        }
        Ok(Self {
            lr_factor: cfg.dist.lr_factor(world),
            cfg,
            opt,
            rank,
            world,
            main,
            learner,
            pos,
            train,
            val,
            holdout,
            ckpts,
            last_ckpt: latest.unwrap_or_default(),
            last_ckpt_time: Instant::now(),
            metrics,
            meta,
            steps_here: 0,
            last_val: (None, None),
        })
    }

    /// The checkpoint metadata at the current position.
    pub fn meta_now(&self) -> CheckpointMeta {
        CheckpointMeta { epoch: self.pos.epoch as u64, step: self.pos.global_step, ..self.meta.clone() }
    }

    /// Writes checkpoint `stem` (rank 0; the other ranks only note its path).
    /// A model with a non-finite weight (diverged) is never written: that is an error
    /// naming the weight and the last good checkpoint.
    pub fn checkpoint(&mut self, stem: &str) -> Result<PathBuf> {
        if let Some(name) = self.learner.first_non_finite()? {
            bail!(
                "the model diverged: weight {name} holds NaN or infinite values at epoch {} step {}; no checkpoint \
                 written (lower optim.lr, check optim.weight_decay); the last good checkpoint is {}",
                self.pos.epoch,
                self.pos.global_step,
                self.last_ckpt_shown()
            );
        }
        let path = if self.main {
            self.ckpts.write(stem, &self.learner.vs, &self.meta_now(), &self.pos, self.learner.momentum())?
        } else {
            self.ckpts.path_of(stem)
        };
        self.last_ckpt_time = Instant::now();
        Ok(path)
    }

    /// The last good checkpoint, for messages.
    pub fn last_ckpt_shown(&self) -> String {
        if self.last_ckpt.as_os_str().is_empty() {
            "none".into()
        } else {
            self.last_ckpt.display().to_string()
        }
    }
}

/// Loads the checkpoint at `path` (model and optimizer file) into `learner`; it must be
/// one of this model and these classes.
fn resume(learner: &mut Learner, path: &std::path::Path, want: &CheckpointMeta, opt: &RunOptions) -> Result<Position> {
    let meta = load_model(path, &mut learner.vs)?.context("checkpoint without metadata")?;
    ensure!(
        meta.model == want.model,
        "{}: a checkpoint of another model ({:?}), not {:?}",
        path.display(),
        meta.model,
        want.model
    );
    ensure!(meta.wnids == want.wnids, "{}: made for other classes than {}", path.display(), opt.data.display());
    let optim = optim_path(path);
    let (pos, bufs) = read_optim(&optim, &learner.names)?;
    learner.sgd.set_buffers(bufs, pos.global_step > 0).with_context(|| optim.display().to_string())?;
    Ok(pos)
}

/// The train, val and (with `data.holdout`) held-out pipelines of this rank.
fn pipelines(
    cfg: &TrainConfig,
    ds: &Dataset,
    manifest: &Manifest,
    opt: &RunOptions,
    rank: usize,
    world: usize,
) -> Result<(Pipeline, Pipeline, Option<Pipeline>)> {
    let mean = read_mean_image(&opt.data.join(&manifest.mean_image))?;
    let loader_cfg = |crops: Crops, rows: Rows| {
        let mut c = LoaderConfig::new(cfg.optim.batch_size, cfg.model.crop, crops);
        c.workers = cfg.data.workers;
        c.prefetch = cfg.data.prefetch;
        c.seed = cfg.run.seed;
        c.rank = rank;
        c.world = world;
        c.shuffle = cfg.data.shuffle;
        c.flip = cfg.data.flip;
        c.pca_noise = cfg.data.pca_noise;
        c.on_damaged = cfg.data.on_damaged;
        c.rows = rows;
        c
    };
    let pipeline = |split, c| Pipeline::new(split, c, manifest, Some(&mean), cfg.data.normalization, opt.device);
    let train_split = Arc::new(ds.split(Split::Train)?);
    let mut train_rows = Rows::All;
    let mut holdout = None;
    if cfg.data.holdout > 0 {
        ensure!(
            cfg.data.holdout + cfg.optim.batch_size <= train_split.len(),
            "data.holdout = {} leaves less than one batch of the {} train images",
            cfg.data.holdout,
            train_split.len()
        );
        let held = Arc::new(held_out_rows(train_split.len(), cfg.data.holdout, cfg.run.seed));
        train_rows = Rows::Except(held.clone());
        holdout = Some(pipeline(train_split.clone(), loader_cfg(Crops::Center, Rows::Only(held)))?);
    }
    // Checked before any loader allocates its buffers.
    let trained = train_split.len().saturating_sub(cfg.data.holdout);
    ensure!(
        trained >= cfg.optim.batch_size * world,
        "the train split has {trained} images to train on, fewer than one step of {} (optim.batch_size {} x {world} \
         rank(s)): lower optim.batch_size",
        cfg.optim.batch_size * world,
        cfg.optim.batch_size
    );
    let val_split = Arc::new(ds.split(Split::Val)?);
    ensure!(
        !val_split.is_empty(),
        "{}: the val split is empty: every epoch ends with a validation; rebuild the dataset with val images",
        opt.data.display()
    );
    let train = pipeline(train_split, loader_cfg(Crops::Train, train_rows))?;
    let val = pipeline(val_split, loader_cfg(Crops::Center, Rows::All))?;
    Ok((train, val, holdout))
}
