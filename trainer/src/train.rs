//! The training run: for epoch { for batch { forward; loss; backward; step; log }
//! validate; checkpoint }, resumable exactly.
//!
//! Every random draw comes from (seed, epoch, step): the loader's crops, flips and
//! colour noise (see [`crate::data`]), and dropout, for which libtorch's generator is
//! reseeded before each step. With the momentum buffers and the loader position saved
//! beside each checkpoint, a run stopped and resumed ends with the same weights as one
//! that never stopped. SIGINT/SIGTERM finish the current step, write a checkpoint and
//! exit cleanly; a NaN or infinite loss stops the run naming the step and keeps the
//! last good checkpoint.
//!
//! Data parallel ([`run_distributed`] with a [`ProcessGroup`]): every rank starts from
//! rank 0's weights, trains on its slice of each epoch, and averages the gradients
//! before an identical SGD step; validation counts are summed over the ranks; only
//! rank 0 logs and writes checkpoints; a stop (signal, NaN, `--max-steps`) is agreed at
//! a step boundary through a small all-reduce, and after each epoch the ranks check
//! that their weights are bit-identical.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use alexnet_shared::{read_mean_image, sha256_file, Dataset, Split, SplitReader, MANIFEST_FILE};
use anyhow::{bail, ensure, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use safetensors::tensor::SafeTensors;
use tch::{nn::VarStore, Device, Kind, Tensor};

use crate::checkpoint::{load_model, save_model, write_tensors, CheckpointMeta};
use crate::config::{Precision, TrainConfig};
use crate::curves::Curves;
use crate::data::sampler::{derive_seed, held_out_rows};
use crate::data::{Crops, Loader, LoaderConfig, Normalizer, Pipeline, Rows};
use crate::dist::{GradBuckets, Overlap, ProcessGroup};
use crate::model::AlexNet;
use crate::schedule::learning_rate;
use crate::sgd::Sgd;

const OPTIM_FORMAT: &str = "alexnet-optim-v1";

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub data: PathBuf,
    pub run_dir: PathBuf,
    pub device: Device,
    pub resume: bool,
    /// Stop (with a checkpoint, as on SIGTERM) after this many steps of this process.
    pub max_steps: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct TrainSummary {
    pub epochs_done: usize,
    pub global_step: u64,
    pub val_top1: Option<f64>,
    pub val_top5: Option<f64>,
    pub stopped_early: bool,
    pub last_checkpoint: PathBuf,
}

/// How a data-parallel step averages the gradients (`dist.overlap`).
enum GradSync<'a> {
    /// c10d's Reducer, bucket by bucket during the backward pass.
    During(Overlap<'a>),
    /// All buckets after the backward pass (of these parameters).
    After(GradBuckets, Vec<Tensor>),
}

/// Indices of `names` (reference_models.py's parameter names) in the model's forward
/// order: `features.N` before `classifier.N`, by layer number, weight before bias.
fn forward_order(names: &[String]) -> Vec<usize> {
    let key = |n: &str| {
        let mut parts = n.split('.');
        let section = match parts.next() {
            Some("features") => 0,
            Some("classifier") => 1,
            _ => 2,
        };
        let layer: usize = parts.next().and_then(|p| p.parse().ok()).unwrap_or(usize::MAX);
        (section, layer, parts.next() != Some("weight"), n.to_string())
    };
    let mut idx: Vec<usize> = (0..names.len()).collect();
    idx.sort_by_key(|&i| key(&names[i]));
    idx
}

/// Where a run stands: saved in `*.optim.safetensors`.
#[derive(Debug, Clone, Default, PartialEq)]
struct Position {
    epoch: usize,
    /// Batches of `epoch` already trained.
    batch: usize,
    global_step: u64,
    /// The top-1 error of each finished epoch that drives the plateau schedule: on val,
    /// or on the held-out slice of train when the run holds one out.
    val_errors: Vec<f64>,
    best_top1: f64,
}

pub fn run(cfg: &TrainConfig, opt: &RunOptions) -> Result<TrainSummary> {
    run_distributed(cfg, opt, None)
}

/// [`run`] as one rank of a data-parallel run over `pg` (`None`: a single process).
/// Every rank reads the run folder (a shared filesystem across machines); only rank 0
/// writes to it.
pub fn run_distributed(cfg: &TrainConfig, opt: &RunOptions, pg: Option<&ProcessGroup>) -> Result<TrainSummary> {
    let (rank, world) = pg.map_or((0, 1), |p| (p.rank(), p.world()));
    let main = rank == 0;
    let cfg = &crate::dist::resolve_config(cfg, world)?;
    let ds = Dataset::open(&opt.data)?;
    let manifest = ds.manifest().clone();
    let manifest_sha = sha256_file(&opt.data.join(MANIFEST_FILE))?;
    let ckpt_dir = opt.run_dir.join("checkpoints");
    let latest = latest_checkpoint(&ckpt_dir)?;
    if latest.is_some() && !opt.resume {
        bail!(
            "{} already holds checkpoints: use --resume to continue it, or another run folder",
            opt.run_dir.display()
        );
    }
    if main {
        std::fs::create_dir_all(&ckpt_dir).with_context(|| format!("creating {}", ckpt_dir.display()))?;
        alexnet_shared::atomic_write(&opt.run_dir.join("config.toml"), cfg.to_toml().as_bytes())?;
    }

    let mcfg = cfg.model_config(manifest.classes.len());
    let mut vs = VarStore::new(opt.device);
    let mut model = AlexNet::new(&vs.root(), &mcfg).map_err(anyhow::Error::msg)?;
    tch::manual_seed(derive_seed(&[cfg.run.seed, 0x1a17]) as i64);
    if cfg.optim.paper_init {
        model.paper_init();
    } else {
        model.torch_default_init();
    }
    if cfg.run.channels_last {
        to_channels_last(&vs);
    }
    model.set_dropout(cfg.model.dropout);
    let mut names: Vec<String> = vs.variables().keys().cloned().collect();
    names.sort();
    let vars = vs.variables();
    let params: Vec<Tensor> = names.iter().map(|n| vars[n].shallow_clone()).collect();
    let mut sgd =
        Sgd::new(params.iter().map(|p| p.shallow_clone()).collect(), cfg.optim.momentum, cfg.optim.weight_decay);

    let mut pos = Position { best_top1: -1.0, ..Default::default() };
    if let Some(path) = &latest {
        let meta = load_model(path, &mut vs)?.context("checkpoint without metadata")?;
        ensure!(
            meta.model == mcfg,
            "{}: a checkpoint of another model ({:?}), not {:?}",
            path.display(),
            meta.model,
            mcfg
        );
        ensure!(
            meta.wnids == manifest.wnids(),
            "{}: made for other classes than {}",
            path.display(),
            opt.data.display()
        );
        pos = load_optim(&optim_path(path), &names, &mut sgd)?;
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

    let mut grad_sync = None;
    if let Some(pg) = pg {
        // Every rank starts from rank 0's weights, at rank 0's position.
        crate::dist::broadcast_params(pg, &params, 0)?;
        crate::dist::check_same_position(pg, pos.epoch, pos.batch, pos.global_step)?;
        let cap = (cfg.dist.bucket_mb * (1 << 20) as f64) as usize;
        // In the model's order (conv1 first): the buckets are made last-first, the order
        // in which the backward pass produces the gradients.
        let in_order: Vec<Tensor> = forward_order(&names).into_iter().map(|i| params[i].shallow_clone()).collect();
        grad_sync = Some(if cfg.dist.overlap {
            GradSync::During(Overlap::new(pg, &in_order, cap)?)
        } else {
            GradSync::After(GradBuckets::new(&in_order, cap), in_order)
        });
    }
    let lr_factor = cfg.dist.lr_factor(world);

    let mean = read_mean_image(&opt.data.join(&manifest.mean_image))?;
    let loader_cfg = |crops: Crops| {
        let mut c = LoaderConfig::new(cfg.optim.batch_size, mcfg.crop, crops);
        c.workers = cfg.data.workers;
        c.prefetch = cfg.data.prefetch;
        c.seed = cfg.run.seed;
        c.rank = rank;
        c.world = world;
        c.shuffle = cfg.data.shuffle;
        c.flip = cfg.data.flip;
        c.pca_noise = cfg.data.pca_noise;
        c
    };
    // The CPU/CUDA choice of the input path (float crops in the workers, or pinned
    // uint8 crops converted on the device) is the pipeline's (data/pipeline.rs).
    let pipeline = |split: &Arc<SplitReader>, c: LoaderConfig| {
        Pipeline::new(split.clone(), c, &manifest, Some(&mean), cfg.data.normalization, opt.device)
    };
    let train_split = Arc::new(ds.split(Split::Train)?);
    let held = if cfg.data.holdout > 0 {
        ensure!(
            cfg.data.holdout + cfg.optim.batch_size <= train_split.len(),
            "data.holdout = {} leaves less than one batch of the {} train images",
            cfg.data.holdout,
            train_split.len()
        );
        Some(Arc::new(held_out_rows(train_split.len(), cfg.data.holdout, cfg.run.seed)))
    } else {
        None
    };
    let mut train_cfg = loader_cfg(Crops::Train);
    let mut holdout = None;
    if let Some(h) = &held {
        train_cfg.rows = Rows::Except(h.clone());
        let mut c = loader_cfg(Crops::Center);
        c.rows = Rows::Only(h.clone());
        holdout = Some(pipeline(&train_split, c)?.loader);
    }
    let Pipeline { loader: mut train, norm } = pipeline(&train_split, train_cfg)?;
    let mut val = pipeline(&Arc::new(ds.split(Split::Val)?), loader_cfg(Crops::Center))?.loader;

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    // Rank 0 alone logs: the other ranks write to a sink.
    let metrics_path = opt.run_dir.join("metrics.jsonl");
    let mut metrics: Box<dyn Write> = if main {
        Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&metrics_path)
                .context("opening metrics.jsonl")?,
        )
    } else {
        Box::new(std::io::sink())
    };
    let mut last_ckpt = latest.clone().unwrap_or_default();
    let mut last_ckpt_time = Instant::now();
    let mut steps_here = 0u64;
    let mut last_val = (None, None);

    let meta_at = |p: &Position| CheckpointMeta {
        model: mcfg.clone(),
        normalization: cfg.data.normalization.name().into(),
        epoch: p.epoch as u64,
        step: p.global_step,
        manifest_sha256: manifest_sha.clone(),
        wnids: manifest.wnids(),
    };

    while pos.epoch < cfg.optim.epochs {
        let epoch_lr = learning_rate(&cfg.optim.schedule, cfg.optim.lr * lr_factor, pos.epoch, &pos.val_errors);
        let steps = train.start(pos.epoch as u64);
        ensure!(steps > 0, "the train split has fewer rows than one batch of {}", cfg.optim.batch_size);
        let (t_epoch, mut t_log, mut loss_sum, mut loss_n, mut images) = (Instant::now(), Instant::now(), 0.0, 0, 0);
        let wait0 = train.stats().wait;
        // On a terminal, a bar with the loss and images/s; in logs, a line every
        // `log_every_steps` (which a terminal sees printed above the bar).
        let bar = (main && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(steps as u64), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("epoch {prefix} [{bar:20}] {pos}/{len}  {msg}  ETA {eta}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(pos.epoch.to_string());
            bar.set_position(pos.batch as u64);
            bar
        });
        let mut b = 0;
        while let Some(batch) = train.next_batch()? {
            if b < pos.batch {
                b += 1; // resumed mid-epoch: these were trained before the stop
                continue;
            }
            // Dropout draws depend on (seed, epoch, step, rank) only.
            let mut parts = vec![cfg.run.seed, pos.epoch as u64, b as u64, 0xd409];
            if rank > 0 {
                parts.push(rank as u64);
            }
            tch::manual_seed(derive_seed(&parts) as i64);
            let lr = crate::dist::warmup_lr(epoch_lr, lr_factor, cfg.dist.warmup_epochs, pos.epoch, b, steps);
            if let Some(GradSync::During(r)) = grad_sync.as_mut() {
                r.prepare()?;
            }
            let x = norm.apply(&batch, cfg.data.pca_noise)?;
            let y = batch.labels().to_device(opt.device);
            let forward = || {
                model.f_forward_t(&x, true)?.f_log_softmax(-1, Kind::Float)?.f_nll_loss(
                    &y,
                    None::<Tensor>,
                    tch::Reduction::Mean,
                    -100,
                )
            };
            let loss = match cfg.run.precision {
                Precision::Fp32 => forward(),
                Precision::Bf16 => crate::ext::autocast_bf16(opt.device, forward).map_err(anyhow::Error::msg)?,
            }
            .map_err(|e| {
                crate::device::torch_error(
                    e,
                    &format!("training step {} (batch {} per rank)", pos.global_step, cfg.optim.batch_size),
                    "lower optim.batch_size (with optim.lr) in the config",
                )
            })?;
            sgd.zero_grad();
            match grad_sync.as_mut() {
                Some(GradSync::During(r)) => r.backward(&loss)?,
                _ => loss.f_backward()?,
            }
            let mut l = loss.double_value(&[]); // host sync: the loss is checked every step
            let mut stop_now = stop.load(Ordering::Relaxed);
            if let Some(pg) = pg {
                if let Some(GradSync::After(buckets, in_order)) = grad_sync.as_mut() {
                    buckets.average(in_order, pg)?;
                }
                // The stop is agreed: any rank's signal, or NaN, stops every rank here.
                (l, stop_now) = crate::dist::agree(pg, l, stop_now)?;
            }
            if !l.is_finite() {
                bail!(
                    "loss is {l} at epoch {} step {} (global step {}): stopping; the last good checkpoint is {}",
                    pos.epoch,
                    b,
                    pos.global_step,
                    if last_ckpt.as_os_str().is_empty() { "none".into() } else { last_ckpt.display().to_string() }
                );
            }
            sgd.step(lr);
            drop(batch);
            b += 1;
            pos.batch = b;
            pos.global_step += 1;
            steps_here += 1;
            loss_sum += l;
            loss_n += 1;
            images += cfg.optim.batch_size * world;
            if let Some(bar) = &bar {
                let rate = images as f64 / t_log.elapsed().as_secs_f64().max(1e-9);
                bar.set_message(format!("loss {:.4}  lr {lr:.0e}  {rate:.0} img/s", loss_sum / loss_n as f64));
                bar.set_position(b as u64);
            }
            if main && (pos.global_step.is_multiple_of(cfg.run.log_every_steps.max(1) as u64) || b == steps) {
                let secs = t_log.elapsed().as_secs_f64();
                let rate = images as f64 / secs.max(1e-9);
                let wait = (train.stats().wait - wait0).as_secs_f64();
                writeln!(
                    metrics,
                    "{{\"time\": {:.3}, \"kind\": \"train\", \"epoch\": {}, \"step\": {}, \"loss\": {:.5}, \"lr\": {}, \"images_per_s\": {rate:.1}, \"data_wait_s\": {wait:.3}}}",
                    unix_time(),
                    pos.epoch,
                    pos.global_step,
                    loss_sum / loss_n as f64,
                    lr
                )?;
                let line = format!(
                    "train: epoch {} [{b}/{steps}] loss {:.4} lr {lr} {rate:.0} images/s (waited for data {wait:.1} s)",
                    pos.epoch,
                    loss_sum / loss_n as f64
                );
                match &bar {
                    Some(bar) => bar.println(line),
                    None => eprintln!("{line}"),
                }
                (t_log, loss_sum, loss_n, images) = (Instant::now(), 0.0, 0, 0);
            }
            let interrupted = stop_now || opt.max_steps.is_some_and(|m| steps_here >= m);
            let timed = last_ckpt_time.elapsed().as_secs_f64() >= cfg.run.checkpoint_minutes * 60.0;
            if (interrupted || timed) && b < steps {
                let stem = format!("step-{:09}", pos.global_step);
                if main {
                    last_ckpt = write_checkpoint(&ckpt_dir, &stem, &vs, &meta_at(&pos), &pos, &names, &sgd)?;
                } else {
                    last_ckpt = ckpt_dir.join(format!("{stem}.safetensors"));
                }
                last_ckpt_time = Instant::now();
                if interrupted {
                    if let Some(pg) = pg {
                        crate::dist::check_same_weights(pg, &params, &format!("step {}", pos.global_step))?;
                        pg.barrier()?;
                    }
                    if main {
                        eprintln!("train: stopped at epoch {} batch {b}; resume with --resume", pos.epoch);
                    }
                    return Ok(TrainSummary {
                        epochs_done: pos.epoch,
                        global_step: pos.global_step,
                        val_top1: last_val.0,
                        val_top5: last_val.1,
                        stopped_early: true,
                        last_checkpoint: last_ckpt,
                    });
                }
            }
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        // Validation: center crops, every val image once.
        let mut counts = validate_counts(&model, &mut val, &norm, opt.device)?;
        if let Some(pg) = pg {
            counts = crate::dist::sum_counts(pg, counts)?;
        }
        let (top1, top5, vloss) = counts.fractions()?;
        last_val = (Some(top1), Some(top5));
        writeln!(
            metrics,
            "{{\"time\": {:.3}, \"kind\": \"val\", \"epoch\": {}, \"step\": {}, \"top1\": {top1:.5}, \"top5\": {top5:.5}, \"loss\": {vloss:.5}, \"epoch_seconds\": {:.1}}}",
            unix_time(),
            pos.epoch,
            pos.global_step,
            t_epoch.elapsed().as_secs_f64()
        )?;
        if main {
            eprintln!(
                "train: epoch {} val top-1 {:.2}% top-5 {:.2}% loss {vloss:.4}",
                pos.epoch,
                100.0 * top1,
                100.0 * top5
            );
        }
        let mut plateau_error = 1.0 - top1;
        if let Some(h) = holdout.as_mut() {
            let mut counts = validate_counts(&model, h, &norm, opt.device)?;
            if let Some(pg) = pg {
                counts = crate::dist::sum_counts(pg, counts)?;
            }
            let (h1, h5, hloss) = counts.fractions()?;
            writeln!(
                metrics,
                "{{\"time\": {:.3}, \"kind\": \"holdout\", \"epoch\": {}, \"step\": {}, \"top1\": {h1:.5}, \"top5\": {h5:.5}, \"loss\": {hloss:.5}, \"images\": {}}}",
                unix_time(),
                pos.epoch,
                pos.global_step,
                cfg.data.holdout
            )?;
            if main {
                eprintln!(
                    "train: epoch {} held-out train top-1 {:.2}% top-5 {:.2}% loss {hloss:.4} (drives the schedule)",
                    pos.epoch,
                    100.0 * h1,
                    100.0 * h5
                );
            }
            plateau_error = 1.0 - h1;
        }
        if main {
            metrics.flush()?;
            if let Err(e) = Curves::read(&metrics_path).and_then(|c| c.write_png(&opt.run_dir.join("curves.png"))) {
                eprintln!("train: warning: curves.png not drawn: {e:#}");
            }
        }
        pos.val_errors.push(plateau_error);
        pos.epoch += 1;
        pos.batch = 0;
        let improved = top1 > pos.best_top1;
        if improved {
            pos.best_top1 = top1;
        }
        if let Some(pg) = pg {
            crate::dist::check_same_weights(pg, &params, &format!("epoch {}", pos.epoch))?;
        }
        let stem = format!("epoch-{:03}", pos.epoch);
        if main {
            last_ckpt = write_checkpoint(&ckpt_dir, &stem, &vs, &meta_at(&pos), &pos, &names, &sgd)?;
            if improved {
                write_checkpoint(&ckpt_dir, "best", &vs, &meta_at(&pos), &pos, &names, &sgd)?;
            }
            prune(&ckpt_dir, cfg.run.keep_last)?;
        } else {
            last_ckpt = ckpt_dir.join(format!("{stem}.safetensors"));
        }
        last_ckpt_time = Instant::now();
        let mut stop_now = stop.load(Ordering::Relaxed);
        if let Some(pg) = pg {
            stop_now = crate::dist::agree(pg, 0.0, stop_now)?.1;
        }
        if stop_now || opt.max_steps.is_some_and(|m| steps_here >= m) {
            break;
        }
    }
    if let Some(pg) = pg {
        pg.barrier()?; // every rank leaves together, after rank 0's last checkpoint
    }
    Ok(TrainSummary {
        epochs_done: pos.epoch,
        global_step: pos.global_step,
        val_top1: last_val.0,
        val_top5: last_val.1,
        stopped_early: pos.epoch < cfg.optim.epochs,
        last_checkpoint: last_ckpt,
    })
}

/// Center-crop top-1, top-5 (fractions) and mean loss over the val split (this
/// rank's share of it).
pub fn validate(model: &AlexNet, val: &mut Loader, norm: &Normalizer, device: Device) -> Result<(f64, f64, f64)> {
    validate_counts(model, val, norm, device)?.fractions()
}

/// Sums over a validation pass, to be added up across ranks.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ValCounts {
    pub images: i64,
    pub top1: i64,
    pub top5: i64,
    pub loss_sum: f64,
}

impl ValCounts {
    /// (top-1, top-5, mean loss).
    pub fn fractions(&self) -> Result<(f64, f64, f64)> {
        ensure!(self.images > 0, "the val split is empty");
        let n = self.images as f64;
        Ok((self.top1 as f64 / n, self.top5 as f64 / n, self.loss_sum / n))
    }
}

/// Counts of correct top-1 and top-5 and the summed loss over this rank's val rows.
pub fn validate_counts(model: &AlexNet, val: &mut Loader, norm: &Normalizer, device: Device) -> Result<ValCounts> {
    val.start(0);
    let (mut n, mut c1, mut c5, mut loss) = (0i64, 0i64, 0i64, 0.0);
    tch::no_grad(|| -> Result<()> {
        while let Some(batch) = val.next_batch()? {
            let x = norm.apply(&batch, false)?;
            let y = batch.labels().to_device(device);
            let logits = model.f_forward_t(&x, false).map_err(|e| {
                crate::device::torch_error(e, &format!("validation (batch {})", batch.len()), "lower optim.batch_size")
            })?;
            loss += logits
                .f_log_softmax(-1, Kind::Float)?
                .f_nll_loss(&y, None::<Tensor>, tch::Reduction::Mean, -100)?
                .f_double_value(&[])?
                * batch.len() as f64;
            let (a, b) = crate::topk::correct_top1_top5(&logits.to_device(Device::Cpu), &y.to_device(Device::Cpu))?;
            c1 += a;
            c5 += b;
            n += batch.len() as i64;
        }
        Ok(())
    })?;
    Ok(ValCounts { images: n, top1: c1, top5: c5, loss_sum: loss })
}

/// Conv weights in channels-last (NHWC) memory layout; convolutions then run, and hand
/// on activations, in that layout. The tensors keep their NCHW shapes and names.
fn to_channels_last(vs: &VarStore) {
    tch::no_grad(|| {
        for (_, mut v) in vs.variables() {
            if v.dim() == 4 {
                let nhwc = v.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2]);
                v.set_data(&nhwc);
            }
        }
    });
}

fn unix_time() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

fn optim_path(model: &Path) -> PathBuf {
    let s = model.to_string_lossy();
    PathBuf::from(s.trim_end_matches(".safetensors").to_string() + ".optim.safetensors")
}

/// Model file, then optimizer file (the optimizer file is written last: a checkpoint
/// counts only when both exist).
fn write_checkpoint(
    dir: &Path,
    stem: &str,
    vs: &VarStore,
    meta: &CheckpointMeta,
    pos: &Position,
    names: &[String],
    sgd: &Sgd,
) -> Result<PathBuf> {
    let path = dir.join(format!("{stem}.safetensors"));
    save_model(&path, vs, Some(meta))?;
    let named: Vec<(String, Tensor)> =
        names.iter().zip(sgd.buffers()).map(|(n, t)| (format!("momentum.{n}"), t)).collect();
    let meta: HashMap<String, String> = HashMap::from([
        ("format".into(), OPTIM_FORMAT.into()),
        ("epoch".into(), pos.epoch.to_string()),
        ("batch".into(), pos.batch.to_string()),
        ("global_step".into(), pos.global_step.to_string()),
        ("val_errors".into(), serde_json::to_string(&pos.val_errors)?),
        ("best_top1".into(), pos.best_top1.to_string()),
    ]);
    write_tensors(&optim_path(&path), named, Some(meta))?;
    Ok(path)
}

fn load_optim(path: &Path, names: &[String], sgd: &mut Sgd) -> Result<Position> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let st =
        SafeTensors::deserialize(&bytes).with_context(|| format!("{}: damaged optimizer state", path.display()))?;
    let (_, header) = SafeTensors::read_metadata(&bytes)?;
    let m = header.metadata().clone().unwrap_or_default();
    ensure!(
        m.get("format").map(String::as_str) == Some(OPTIM_FORMAT),
        "{}: not an optimizer state file",
        path.display()
    );
    let get = |k: &str| m.get(k).with_context(|| format!("{}: no {k}", path.display()));
    let pos = Position {
        epoch: get("epoch")?.parse()?,
        batch: get("batch")?.parse()?,
        global_step: get("global_step")?.parse()?,
        val_errors: serde_json::from_str(get("val_errors")?)?,
        best_top1: get("best_top1")?.parse()?,
    };
    let mut bufs = Vec::with_capacity(names.len());
    for n in names {
        let v =
            st.tensor(&format!("momentum.{n}")).with_context(|| format!("{}: no momentum for {n}", path.display()))?;
        ensure!(
            v.dtype() == safetensors::Dtype::F32,
            "{}: momentum for {n} is {:?}, expected float32 (not an optimizer state this trainer wrote)",
            path.display(),
            v.dtype()
        );
        let shape: Vec<i64> = v.shape().iter().map(|&d| d as i64).collect();
        bufs.push(Tensor::f_from_data_size(v.data(), &shape, Kind::Float)?);
    }
    sgd.set_buffers(bufs, pos.global_step > 0).map_err(anyhow::Error::msg)?;
    Ok(pos)
}

/// The checkpoint with the highest global step whose optimizer file exists.
fn latest_checkpoint(dir: &Path) -> Result<Option<PathBuf>> {
    if !dir.exists() {
        return Ok(None);
    }
    let mut best: Option<(u64, PathBuf)> = None;
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if !name.ends_with(".optim.safetensors") || name.starts_with("best") || name.starts_with('.') {
            continue;
        }
        let bytes = std::fs::read(&p)?;
        let Ok((_, h)) = SafeTensors::read_metadata(&bytes) else { continue };
        let step: u64 =
            h.metadata().as_ref().and_then(|m| m.get("global_step")).and_then(|s| s.parse().ok()).unwrap_or(0);
        let model = PathBuf::from(p.to_string_lossy().replace(".optim.safetensors", ".safetensors"));
        if model.exists() && best.as_ref().is_none_or(|(s, _)| step > *s) {
            best = Some((step, model));
        }
    }
    Ok(best.map(|(_, p)| p))
}

/// Keeps the `keep` newest epoch checkpoints (and `best`); step checkpoints older than
/// the newest epoch checkpoint go too.
fn prune(dir: &Path, keep: usize) -> Result<()> {
    let mut epochs: Vec<PathBuf> = Vec::new();
    let mut steps: Vec<PathBuf> = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.ends_with(".optim.safetensors") {
            continue;
        }
        if name.starts_with("epoch-") {
            epochs.push(p);
        } else if name.starts_with("step-") {
            steps.push(p);
        }
    }
    epochs.sort();
    let old = epochs.len().saturating_sub(keep.max(1));
    for p in epochs.iter().take(old).chain(steps.iter()) {
        let _ = std::fs::remove_file(p);
        let _ = std::fs::remove_file(optim_path(p));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn parameters_in_the_models_forward_order() {
        let names: Vec<String> = [
            "classifier.0.bias",
            "classifier.0.weight",
            "classifier.6.weight",
            "features.0.bias",
            "features.0.weight",
            "features.10.weight",
            "features.4.weight",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let order: Vec<&str> = super::forward_order(&names).into_iter().map(|i| names[i].as_str()).collect();
        assert_eq!(
            order,
            [
                "features.0.weight",
                "features.0.bias",
                "features.4.weight",
                "features.10.weight",
                "classifier.0.weight",
                "classifier.0.bias",
                "classifier.6.weight"
            ]
        );
    }
}
