//! Learning-rate schedules, as pure functions of the history.
//!
//! - `plateau` (the paper, section 5): "divide the learning rate by 10 when the
//!   validation error rate stopped improving with the current learning rate"; they did
//!   it three times in about 90 epochs. Here: after `patience` epochs without an
//!   improvement of more than `threshold` (absolute, in error rate) over the best so
//!   far at the current rate, the rate is divided by `factor`, at most `max_drops` times.
//! - `step`: times `gamma` every `step_epochs` (torchvision's reference: 0.1 every 30).
//! - `epochs`: times `gamma` at each listed epoch.
//!
//! Under data parallel with linear scaling, [`warmup_lr`] ramps the rate up from the
//! unscaled one over the first epochs (Goyal et al. 2017).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Schedule {
    Plateau { patience: usize, threshold: f64, factor: f64, max_drops: usize },
    Step { step_epochs: usize, gamma: f64 },
    Epochs { at: Vec<usize>, gamma: f64 },
}

impl Schedule {
    /// Whether the schedule can run: every rate it produces finite and positive, and
    /// never larger than the one before it.
    pub fn validate(&self) -> Result<(), String> {
        let gamma = |g: f64| {
            if g.is_finite() && g > 0.0 && g <= 1.0 {
                Ok(())
            } else {
                Err(format!("gamma = {g} must be in (0, 1] (the rate is multiplied by it)"))
            }
        };
        match self {
            Schedule::Step { step_epochs, gamma: g } => {
                if *step_epochs == 0 {
                    return Err("step_epochs must be at least 1".into());
                }
                gamma(*g)
            }
            Schedule::Epochs { gamma: g, .. } => gamma(*g),
            Schedule::Plateau { threshold, factor, .. } => {
                if !(factor.is_finite() && *factor >= 1.0) {
                    return Err(format!("factor = {factor} must be a finite number >= 1 (the rate is divided by it)"));
                }
                if !(threshold.is_finite() && *threshold >= 0.0) {
                    return Err(format!("threshold = {threshold} must be a finite number >= 0"));
                }
                Ok(())
            }
        }
    }
}

/// The learning rate of epoch `epoch` (0-based), given the base rate and the validation
/// error rates of the epochs before it (`val_errors[e]` measured after epoch `e`).
pub fn learning_rate(schedule: &Schedule, base: f64, epoch: usize, val_errors: &[f64]) -> f64 {
    match schedule {
        Schedule::Step { step_epochs, gamma } => base * gamma.powi((epoch / (*step_epochs).max(1)) as i32),
        Schedule::Epochs { at, gamma } => base * gamma.powi(at.iter().filter(|&&e| e <= epoch).count() as i32),
        Schedule::Plateau { patience, threshold, factor, max_drops } => {
            let mut lr = base;
            let mut drops = 0;
            let mut best = f64::INFINITY;
            let mut since = 0;
            for &err in val_errors.iter().take(epoch) {
                if err < best - threshold {
                    best = err;
                    since = 0;
                } else {
                    since += 1;
                }
                if since >= *patience && drops < *max_drops {
                    lr /= factor;
                    drops += 1;
                    since = 0;
                    best = err.min(best); // a fresh start at the new rate
                }
            }
            lr
        }
    }
}

/// The learning rate of one step: `epoch_lr` (scaled, after the schedule), ramped
/// linearly from `epoch_lr / factor` (the unscaled rate) during the first
/// `warmup_epochs` epochs (Goyal et al. 2017, section 2.2). `batch` of `steps` is the
/// step's place in its epoch.
pub fn warmup_lr(epoch_lr: f64, factor: f64, warmup_epochs: f64, epoch: usize, batch: usize, steps: usize) -> f64 {
    let t = epoch as f64 + batch as f64 / steps.max(1) as f64;
    if warmup_epochs <= 0.0 || t >= warmup_epochs || factor <= 1.0 {
        return epoch_lr;
    }
    epoch_lr * (1.0 / factor + (1.0 - 1.0 / factor) * t / warmup_epochs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_and_epoch_lists() {
        let s = Schedule::Step { step_epochs: 30, gamma: 0.1 };
        assert_eq!(learning_rate(&s, 0.01, 29, &[]), 0.01);
        assert!((learning_rate(&s, 0.01, 30, &[]) - 0.001).abs() < 1e-15);
        assert!((learning_rate(&s, 0.01, 89, &[]) - 1e-4).abs() < 1e-15);
        let e = Schedule::Epochs { at: vec![2, 5], gamma: 0.5 };
        let lrs: Vec<f64> = (0..7).map(|ep| learning_rate(&e, 1.0, ep, &[])).collect();
        assert_eq!(lrs, [1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25]);
    }

    #[test]
    fn plateau_divides_by_ten_when_validation_stops_improving() {
        let s = Schedule::Plateau { patience: 2, threshold: 0.001, factor: 10.0, max_drops: 3 };
        // errors after epochs 0..: improving, then flat for two epochs, then improving.
        let errs = [0.9, 0.8, 0.7, 0.7, 0.7005, 0.6, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5];
        let lrs: Vec<f64> = (0..=errs.len()).map(|e| learning_rate(&s, 0.01, e, &errs)).collect();
        // epoch 5 is the first after two epochs (3, 4) without improvement.
        assert_eq!(&lrs[..5], &[0.01; 5]);
        assert!((lrs[5] - 0.001).abs() < 1e-12);
        // flat from epoch 7 on: drops after epochs 8 and 10 and 12, then capped at 3.
        assert!((lrs[9] - 1e-4).abs() < 1e-15);
        assert!((lrs[11] - 1e-5).abs() < 1e-16);
        assert!((lrs[15] - 1e-5).abs() < 1e-16);
    }

    #[test]
    fn warm_up_ramps_linearly_from_the_unscaled_rate() {
        // 8 ranks, linear scaling: 0.1 -> 0.8 over 2 epochs of 10 steps.
        let at = |e, b| warmup_lr(0.8, 8.0, 2.0, e, b, 10);
        assert!((at(0, 0) - 0.1).abs() < 1e-12);
        assert!((at(1, 0) - 0.45).abs() < 1e-12);
        assert!((at(1, 5) - (0.1 + 0.7 * 0.75)).abs() < 1e-12);
        assert_eq!(at(2, 0), 0.8);
        assert_eq!(warmup_lr(0.8, 8.0, 0.0, 0, 0, 10), 0.8);
        assert_eq!(warmup_lr(0.1, 1.0, 5.0, 0, 0, 10), 0.1);
    }
}
