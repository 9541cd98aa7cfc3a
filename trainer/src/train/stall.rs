//! A run that has not left chance says so: when the training loss has stayed within
//! `stall.tolerance` (1%) of ln(classes), the loss of uniform predictions, over the last
//! `stall.steps` steps (0: the larger of one epoch and 1,000 steps, so the first steps
//! of a healthy run never trigger it), the log names the known causes and remedies;
//! with `stall.stop` the run ends there with an error.
//!
//! "Stayed" is measured on the mean loss of those steps: a small batch at chance (a
//! shuffled label column, 8 images) swings a few percent around ln(classes) from step
//! to step, while the mean of a window stays within 1%. Each step's loss is the mean
//! over the batch (and over the ranks under data parallel, so every rank sees the same
//! sequence and stops at the same step). The window is saved in every checkpoint's
//! optimizer file (`stall_window`, `stall_fired`: [`StallState`]) and restored on
//! `--resume`, so a run trained in chunks shorter than the window (a cluster's time
//! limit, `--max-steps`) still warns, and a warning given once is not repeated after a
//! resume; an optimizer file written before these keys starts the window empty.

use std::collections::VecDeque;

use crate::checkpoint::StallState;
use crate::config::StallSection;

/// The last steps' losses of one process.
#[derive(Debug, Clone)]
pub struct StallWatch {
    /// ln(classes): the cross-entropy of uniform predictions.
    chance: f64,
    tolerance: f64,
    /// `stall.steps` (0: the default rule).
    steps: usize,
    /// The losses of the last steps (at most the window), and their sum.
    window: VecDeque<f64>,
    sum: f64,
    fired: bool,
}

/// What the watch saw when it fired.
#[derive(Debug, Clone, PartialEq)]
pub struct Stall {
    pub chance: f64,
    pub tolerance: f64,
    pub steps: usize,
    /// Global steps of the first and last step of the window.
    pub from: u64,
    pub to: u64,
    /// The mean loss over the window.
    pub mean: f64,
    pub classes: usize,
}

impl StallWatch {
    pub fn new(cfg: &StallSection, classes: usize) -> Self {
        Self {
            chance: (classes.max(1) as f64).ln(),
            tolerance: cfg.tolerance,
            steps: cfg.steps,
            window: VecDeque::new(),
            sum: 0.0,
            fired: false,
        }
    }

    /// The steps at chance that fire the warning with `steps_per_epoch` steps in an
    /// epoch: `stall.steps`, or the larger of one epoch and 1,000 steps.
    pub fn needed(&self, steps_per_epoch: usize) -> usize {
        if self.steps > 0 {
            self.steps
        } else {
            steps_per_epoch.max(1000)
        }
    }

    /// What a checkpoint saves (the window's losses, oldest first, and whether it fired).
    pub fn state(&self) -> StallState {
        StallState { losses: self.window.iter().copied().collect(), fired: self.fired }
    }

    /// Continues from a saved [`StallWatch::state`].
    pub fn restore(&mut self, s: &StallState) {
        self.window = s.losses.iter().copied().collect();
        self.sum = self.window.iter().sum();
        self.fired = s.fired;
    }

    /// After global step `step` with training loss `loss`: `Some` once, on the first
    /// step whose window (the last [`StallWatch::needed`] steps) has a mean loss within
    /// the tolerance of chance.
    pub fn observe(&mut self, loss: f64, step: u64, steps_per_epoch: usize) -> Option<Stall> {
        if self.fired {
            return None;
        }
        let needed = self.needed(steps_per_epoch);
        self.window.push_back(loss);
        self.sum += loss;
        while self.window.len() > needed {
            self.sum -= self.window.pop_front().expect("non-empty window");
        }
        let mean = self.sum / self.window.len() as f64;
        if self.window.len() < needed || (mean - self.chance).abs() > self.tolerance * self.chance {
            return None;
        }
        self.fired = true;
        self.window = VecDeque::new();
        let classes = self.chance.exp().round() as usize;
        let from = step + 1 - needed as u64;
        Some(Stall { chance: self.chance, tolerance: self.tolerance, steps: needed, from, to: step, mean, classes })
    }
}

impl Stall {
    /// The warning: what was seen, the known causes, the remedies, and the option.
    pub fn message(&self, paper_init: bool) -> String {
        let (cause, remedy) = if paper_init {
            (
                "this run uses the paper's initialisation (optim.paper_init = true: N(0, 0.01) weights, biases 1 in \
                 conv2, conv4, conv5, fc6 and fc7), which is known to stall (Caffe's reference AlexNet used biases \
                 of 0.1)",
                "set optim.paper_init = false (PyTorch's initialisation) or lower optim.lr",
            )
        } else {
            (
                "the paper's initialisation (N(0, 0.01) weights, biases 1) is known to stall (Caffe's reference \
                 AlexNet used biases of 0.1), but this run uses PyTorch's; a learning rate too high for the batch \
                 (the units die)",
                "lower optim.lr",
            )
        };
        format!(
            "the training loss has stayed within {}% of ln({}) = {:.4} (uniform predictions: chance) over {} steps \
             (steps {} to {}, mean {:.4}): the run has not left chance. Known causes: {cause}; labels that do not \
             follow the images. Remedies: {remedy}, check the dataset's labels; stall.stop = true stops a run here",
            self.tolerance * 100.0,
            self.classes,
            self.chance,
            self.steps,
            self.from,
            self.to,
            self.mean
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(steps: usize) -> StallWatch {
        StallWatch::new(&StallSection { steps, tolerance: 0.01, stop: false }, 10)
    }

    #[test]
    fn fires_once_when_a_windows_mean_is_at_chance() {
        // ln(10) = 2.302585; within 1%: 2.27956..=2.32561.
        let mut w = watch(3);
        assert_eq!(w.observe(2.20, 1, 100), None);
        assert_eq!(w.observe(2.31, 2, 100), None, "fewer steps than the window");
        assert_eq!(w.observe(2.30, 3, 100), None, "mean 2.27: 1.4% below");
        let s = w.observe(2.34, 4, 100).expect("mean of steps 2..=4 is 2.3167");
        assert_eq!((s.from, s.to, s.steps, s.classes), (2, 4, 3, 10));
        assert!((s.mean - 2.316_666_7).abs() < 1e-6 && (s.chance - 10f64.ln()).abs() < 1e-12);
        assert_eq!(w.observe(2.30, 5, 100), None, "once");
        let m = s.message(true);
        assert!(
            m.contains("within 1% of ln(10) = 2.3026") && m.contains("over 3 steps (steps 2 to 4, mean 2.3167)"),
            "{m}"
        );
        assert!(m.contains("biases of 0.1") && m.contains("optim.paper_init = false") && !m.contains('\n'), "{m}");
        // Each step 2-3% off (a small batch at chance), the mean at chance: fires.
        let mut w = watch(4);
        let fired = [2.25, 2.36, 2.25, 2.36].iter().zip(1..).find_map(|(&l, s)| w.observe(l, s, 100));
        assert_eq!(fired.map(|s| s.to), Some(4));
        // A run leaving chance never fires.
        let mut w = watch(3);
        assert!((0..50).all(|i| w.observe(2.30 - 0.03 * i as f64, i, 100).is_none()));
    }

    #[test]
    fn a_restored_watch_continues_its_window() {
        let losses = [2.20, 2.31, 2.30, 2.34, 2.30, 2.29];
        let mut whole = watch(3);
        let fired: Vec<u64> =
            losses.iter().zip(1..).filter_map(|(&l, s)| whole.observe(l, s, 100)).map(|s| s.to).collect();
        assert_eq!(fired, [4]);
        // Stopped after step 3, resumed: it fires at step 4 as the whole run did.
        let mut a = watch(3);
        assert!(losses[..3].iter().zip(1..).all(|(&l, s)| a.observe(l, s, 100).is_none()));
        let saved = a.state();
        assert_eq!(saved, StallState { losses: vec![2.20, 2.31, 2.30], fired: false });
        let mut b = watch(3);
        b.restore(&saved);
        assert_eq!(b.observe(2.34, 4, 100).map(|s| (s.from, s.to)), Some((2, 4)));
        // A fresh watch (the window restarting empty) would not have, and a watch that
        // fired stays quiet after a resume.
        assert_eq!(watch(3).observe(2.34, 4, 100), None);
        let mut c = watch(3);
        c.restore(&b.state());
        assert!(c.state().fired && losses.iter().zip(5..).all(|(&l, s)| c.observe(l, s, 100).is_none()));
    }

    #[test]
    fn the_default_is_the_larger_of_one_epoch_and_1000_steps() {
        let w = watch(0);
        assert_eq!((w.needed(31), w.needed(10_009)), (1000, 10_009));
        assert_eq!(watch(5).needed(10_009), 5);
        let mut w = watch(0);
        let fired: Vec<u64> = (1..=1200).filter_map(|s| w.observe(10f64.ln(), s, 31)).map(|s| s.to).collect();
        assert_eq!(fired, [1000]);
    }
}
