//! Everything a run needs before its first step: the resolved configuration saved in
//! the run folder, the learner (model, SGD, gradient sync), the position resumed from
//! the latest checkpoint, and the input pipelines of train, val and the held-out slice.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use alexnet_shared::{sha256_file, Dataset, Manifest, Split, MANIFEST_FILE};
use anyhow::{bail, ensure, Context, Result};

use super::init::{init_weights, InitRecord, INIT_FILE};
use super::log::RunClock;
use super::metrics::{unix_time, MetricsSink, Record};
use super::step::Learner;
use super::RunOptions;
use crate::checkpoint::{
    data_fingerprint, optim_path, read_optim, Checkpoint, CheckpointError, CheckpointMeta, InputsMeta, Position,
    RunDir, Survey,
};
use crate::config::TrainConfig;
use crate::data::sampler::held_out_rows;
use crate::data::{Crops, LoaderConfig, Normalization, Pipeline, Rows};
use crate::dist::ProcessGroup;
use crate::provenance::{Provenance, PROVENANCE_FILE};

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
    /// When this process began (the ETA's pace).
    pub clock: RunClock,
    /// Steps at chance (the `[stall]` warning).
    pub stall: super::stall::StallWatch,
}

impl<'a> Run<'a> {
    /// Sets up the run in `opt.run_dir` (a new one, or the one to resume).
    pub fn new(cfg: &TrainConfig, opt: &'a RunOptions, pg: Option<&'a ProcessGroup>) -> Result<Self> {
        let (rank, world) = pg.map_or((0, 1), |p| (p.rank(), p.world()));
        let main = rank == 0;
        let ckpts = RunDir::new(&opt.run_dir);
        let survey = ckpts.survey()?;
        if !survey.is_empty() && !opt.resume {
            bail!(
                "{} already holds checkpoints: use --resume to continue it, or another run folder",
                opt.run_dir.display()
            );
        }
        // A resumed run may continue at another world size (its saved config says which
        // it had); a new one must match what its config states.
        let (cfg, world_change) = if opt.resume { cfg.resolve_resumed(world)? } else { (cfg.resolve(world)?, None) };
        let ds = Dataset::open(&opt.data)?;
        let manifest = ds.manifest().clone();
        let mean_image = match cfg.data.normalization {
            Normalization::MeanImage => Some(ds.mean_image()?),
            _ => None,
        };
        let mut meta = CheckpointMeta {
            model: cfg.model_config(manifest.classes.len()),
            normalization: cfg.data.normalization,
            epoch: 0,
            step: 0,
            manifest_sha256: sha256_file(&opt.data.join(MANIFEST_FILE))?,
            wnids: manifest.wnids(),
            data_fingerprint: Some(data_fingerprint(&manifest)),
            // Class names and normalization data: `eval predict` then needs no dataset.
            inputs: Some(InputsMeta::of(&manifest, mean_image.as_deref())),
            provenance: None,
            pca_noise: cfg.data.pca_noise,
        };
        let mut learner = Learner::new(&cfg, manifest.classes.len(), opt.device)?;
        // --init (or its record, on a resume before the first checkpoint): checked before
        // the run folder is made, so a bad file leaves nothing behind.
        let init = start_weights(&mut learner, opt, survey.is_empty(), &meta.wnids, main)?;
        if main {
            ckpts.create()?;
            alexnet_shared::atomic_write(&opt.run_dir.join("config.toml"), cfg.to_toml().as_bytes())?;
            if let Some(record) = init {
                record.write(&opt.run_dir)?;
            }
        }
        let mut pos = Position { best_top1: -1.0, part: Some((world, cfg.optim.batch_size)), ..Default::default() };
        let mut latest = None;
        if !survey.is_empty() {
            let train_rows = manifest.split(Split::Train).map_or(0, |s| s.rows as usize);
            let (path, p) = resume_latest(&mut learner, &ckpts, &survey, &meta, &cfg, train_rows, opt, main)?;
            pos = p;
            let recorded = world_change.as_ref().map_or(world, |c| c.from);
            let (w0, b0) = pos.part.unwrap_or((recorded, cfg.optim.batch_size));
            let moved = pos.continue_at(world, cfg.optim.batch_size, recorded);
            if moved && main {
                alexnet_shared::err_line!(
                    "train: epoch {} was stopped at batch {} of {w0} rank(s) x {b0}: the images no rank has read yet \
                     are dealt over the {world} rank(s) now",
                    pos.epoch,
                    pos.trained(world, b0).iter().rev().nth(1).map_or(0, |t| t.batches)
                );
            }
            let done = pos.images_before().saturating_add(pos.batch.saturating_mul(cfg.optim.batch_size * world));
            ensure!(
                done <= train_rows,
                "{}: epoch {} is {done} images in ({:?} at other world sizes, then batch {}), beyond the {train_rows} \
                 train images",
                optim_path(&path).display(),
                pos.epoch,
                pos.parts,
                pos.batch
            );
            latest = Some(path.clone());
            let path = &path;
            if main {
                alexnet_shared::err_line!(
                    "train: resuming from {} (epoch {}/{} at batch {}, step {})",
                    path.display(),
                    pos.epoch + 1,
                    cfg.optim.epochs,
                    pos.batch,
                    pos.global_step
                );
            }
        }
        let resumed_at = latest.is_some().then_some(pos.global_step);
        let provenance = Provenance::now("train", world, &meta.manifest_sha256, opt.resume, resumed_at);
        if main {
            provenance.append_to(&opt.run_dir).with_context(|| format!("writing {PROVENANCE_FILE}"))?;
        }
        meta.provenance = Some(provenance);
        if let Some(pg) = pg {
            // Every rank starts from rank 0's weights, at rank 0's position.
            learner.join(pg, &cfg)?;
            crate::dist::check_same_position(pg, pos.epoch, pos.batch, pos.global_step)?;
        }
        let (train, val, holdout) = pipelines(&cfg, &ds, &manifest, opt, rank, world)?;
        let (mut metrics, dropped) = MetricsSink::resume(&opt.run_dir.join("metrics.jsonl"), main, pos.global_step)
            .context("opening metrics.jsonl")?;
        if let Some(c) = &world_change {
            if main {
                alexnet_shared::err_line!(
                    "train: resuming a run of {} rank(s) at {} rank(s): global batch {} -> {}, learning rate {} -> {} \
                     (dist.lr_scaling = {}); config.toml records the new world size",
                    c.from,
                    c.to,
                    c.global_batch.0,
                    c.global_batch.1,
                    c.lr.0,
                    c.lr.1,
                    format!("{:?}", cfg.dist.lr_scaling).to_lowercase()
                );
            }
            metrics.write(&Record::World {
                time: unix_time(),
                epoch: pos.epoch as u64 + 1,
                step: pos.global_step,
                from: c.from,
                to: c.to,
                global_batch: c.global_batch.1,
                lr: c.lr.1,
            })?;
        }
        if dropped > 0 {
            alexnet_shared::err_line!(
                "train: metrics.jsonl: {dropped} record(s) after step {} dropped (written after the last checkpoint; \
                 trained again now)",
                pos.global_step
            );
        }
        let mut stall = super::stall::StallWatch::new(&cfg.stall, manifest.classes.len());
        if let Some(saved) = &pos.stall {
            stall.restore(saved);
        }
        let rows = |split| manifest.split(split).map_or(0, |s| s.rows as usize);
        let (train_rows, val_rows) = (rows(Split::Train), rows(Split::Val));
        let run = Self {
            clock: RunClock::now(pos.global_step),
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
            stall,
        };
        if main {
            for line in run.banner(train_rows, val_rows) {
                alexnet_shared::err_line!("train: {line}");
            }
        }
        Ok(run)
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
        self.pos.stall = Some(self.stall.state());
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

/// The weights of `--init` in a new run, or in a run resumed before its first checkpoint
/// that was started with `--init` (its `init.json`): the same file again, checked by the
/// hash of its tensors. Returns the record to write in a new run's folder.
fn start_weights(
    learner: &mut Learner,
    opt: &RunOptions,
    no_checkpoint: bool,
    wnids: &[String],
    main: bool,
) -> Result<Option<InitRecord>> {
    let (path, again) = match (&opt.init, InitRecord::read(&opt.run_dir)?) {
        (Some(_), _) if opt.resume => bail!("--init starts a new run; --resume continues one: give one of them"),
        (Some(p), _) => (p.clone(), None),
        (None, Some(rec)) if opt.resume && no_checkpoint => (rec.file.clone(), Some(rec)),
        (None, _) => return Ok(None),
    };
    let (record, lines) = match &again {
        Some(_) => init_weights(learner, &path, wnids).with_context(|| {
            format!("--resume of a run started with --init (its {INIT_FILE}), before its first checkpoint")
        })?,
        None => init_weights(learner, &path, wnids)?,
    };
    if let Some(rec) = &again {
        ensure!(
            rec.tensors_sha256 == record.tensors_sha256,
            "--resume: the run was started with --init {}, whose tensors have changed since (sha256 {} then, {} now); \
             restore that file, or start a new run folder",
            path.display(),
            rec.tensors_sha256,
            record.tensors_sha256
        );
    }
    if main {
        if again.is_some() {
            alexnet_shared::err_line!("train: --resume before the first checkpoint: the weights of --init again");
        }
        for line in lines {
            alexnet_shared::err_line!("train: {line}");
        }
    }
    Ok(if again.is_some() { None } else { Some(record) })
}

/// Resumes from the newest usable checkpoint of `survey` (`--resume` of a folder that
/// holds checkpoints). A damaged one (truncated, tensor bytes that do not match their
/// hash, non-finite values: model or optimizer file alike) is skipped with a warning
/// naming it, for the one before it. A checkpoint that is intact but does not belong to
/// this run (another model, classes, data build; an optimizer file of another model
/// file; a position beyond the config or the data) stops the resume with the reason.
/// No usable checkpoint at all is an error listing why each was left out: never a
/// silent new start over a folder of checkpoints.
#[allow(clippy::too_many_arguments)]
fn resume_latest(
    learner: &mut Learner,
    ckpts: &RunDir,
    survey: &Survey,
    want: &CheckpointMeta,
    cfg: &TrainConfig,
    train_rows: usize,
    opt: &RunOptions,
    main: bool,
) -> Result<(PathBuf, Position)> {
    let mut skipped: Vec<String> = survey.unusable.iter().map(|(p, why)| format!("{}: {why}", p.display())).collect();
    for path in &survey.candidates {
        match resume(learner, path, want, cfg, train_rows, opt, main) {
            Ok(pos) => {
                if main {
                    for (p, why) in survey.unusable.iter().filter(|(p, _)| !p.ends_with("best.safetensors")) {
                        alexnet_shared::err_line!("train: warning: skipped {}: {why}", p.display());
                    }
                }
                return Ok((path.clone(), pos));
            }
            Err(e) if e.is_damage() => {
                if main {
                    alexnet_shared::err_line!("train: warning: skipped {}: {e}", path.display());
                }
                skipped.push(e.to_string());
            }
            Err(e) => return Err(e.into_anyhow()),
        }
    }
    bail!(
        "--resume: {} holds checkpoints but none can be resumed ({}); restore the missing or damaged files, or \
         start a new run in another --run-dir",
        ckpts.dir().display(),
        skipped.join("; ")
    )
}

/// Why a checkpoint was not resumed: damage (the resume tries the one before) or a
/// refusal (it stops).
#[derive(Debug)]
enum ResumeError {
    Checkpoint(CheckpointError),
    Refused(anyhow::Error),
}

impl From<CheckpointError> for ResumeError {
    fn from(e: CheckpointError) -> Self {
        ResumeError::Checkpoint(e)
    }
}

impl From<anyhow::Error> for ResumeError {
    fn from(e: anyhow::Error) -> Self {
        ResumeError::Refused(e)
    }
}

impl std::fmt::Display for ResumeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResumeError::Checkpoint(e) => write!(f, "{e}"),
            ResumeError::Refused(e) => write!(f, "{e:#}"),
        }
    }
}

impl ResumeError {
    fn into_anyhow(self) -> anyhow::Error {
        match self {
            ResumeError::Checkpoint(e) => e.into(),
            ResumeError::Refused(e) => e,
        }
    }

    fn is_damage(&self) -> bool {
        matches!(self, ResumeError::Checkpoint(e) if e.is_damage())
    }
}

/// Loads the checkpoint at `path` (model and optimizer file) into `learner`; it must be
/// one of this model, these classes and this data, its optimizer file the one written
/// with it, its position within the config and the data. Both files are read and
/// checked before anything is loaded.
fn resume(
    learner: &mut Learner,
    path: &std::path::Path,
    want: &CheckpointMeta,
    cfg: &TrainConfig,
    train_rows: usize,
    opt: &RunOptions,
    main: bool,
) -> Result<Position, ResumeError> {
    let shown = path.display();
    let ckpt = Checkpoint::open(path)?;
    let meta = ckpt.meta().cloned().with_context(|| format!("{shown}: checkpoint without metadata"))?;
    // Dropout is not compared: a checkpoint written before the key existed reads as
    // 0.5 whatever the run used, and the run's config.toml (compared on every resume)
    // already fixes it.
    let model = crate::model::ModelConfig { dropout: want.model.dropout, ..meta.model.clone() };
    if model != want.model {
        return Err(
            anyhow::anyhow!("{shown}: a checkpoint of another model ({:?}), not {:?}", meta.model, want.model).into()
        );
    }
    if meta.wnids != want.wnids {
        return Err(anyhow::anyhow!("{shown}: made for other classes than {}", opt.data.display()).into());
    }
    match (&meta.data_fingerprint, &want.data_fingerprint) {
        (Some(had), Some(now)) if had != now => {
            return Err(anyhow::anyhow!(
                "{shown}: trained on another build of the data than {} (the classes or the shards' contents differ: \
                 data_fingerprint {had} in the checkpoint, {now} here); resume with the data it was trained on, or \
                 start a new run",
                opt.data.display()
            )
            .into())
        }
        (None, _) if main => alexnet_shared::err_line!(
            "train: warning: {shown} records no data fingerprint (written by an older trainer): the data is not checked \
             against the one it was trained on"
        ),
        _ => {}
    }
    let optim = optim_path(path);
    let state = read_optim(&optim, &learner.names)?;
    let pos = state.pos;
    let oshown = optim.display();
    if let Some(link) = &state.model_sha256 {
        if link != ckpt.tensors_sha256() {
            return Err(anyhow::anyhow!(
                "{oshown}: belongs to another model file than {shown} (model_tensors_sha256 {link}, the model file's \
                 tensors hash to {}): an optimizer file of another checkpoint or run",
                ckpt.tensors_sha256()
            )
            .into());
        }
    }
    if (meta.epoch, meta.step) != (pos.epoch as u64, pos.global_step) {
        return Err(anyhow::anyhow!(
            "{oshown}: at epoch {} step {}, its model file {shown} at epoch {} step {}: an optimizer file of another \
             checkpoint or run",
            pos.epoch,
            pos.global_step,
            meta.epoch,
            meta.step
        )
        .into());
    }
    if pos.epoch > cfg.optim.epochs {
        return Err(anyhow::anyhow!(
            "{oshown}: at epoch {}, beyond the run's optim.epochs = {}",
            pos.epoch,
            cfg.optim.epochs
        )
        .into());
    }
    if pos.batch.saturating_mul(cfg.optim.batch_size) > train_rows {
        return Err(anyhow::anyhow!(
            "{oshown}: at batch {} of epoch {}, beyond the {train_rows} train images at batch size {}",
            pos.batch,
            pos.epoch,
            cfg.optim.batch_size
        )
        .into());
    }
    ckpt.load_into(&mut learner.vs)?;
    learner.sgd.set_buffers(state.momentum, pos.global_step > 0).with_context(|| oshown.to_string())?;
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
    let mean = match cfg.data.normalization {
        Normalization::MeanImage => Some(ds.mean_image()?),
        _ => None,
    };
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
        c.resized_crop = cfg.data.resized_crop();
        c.on_damaged = cfg.data.on_damaged;
        c.rows = rows;
        c
    };
    let pipeline = |split, c| Pipeline::new(split, c, manifest, mean.as_deref(), cfg.data.normalization, opt.device);
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
