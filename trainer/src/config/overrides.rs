//! Changing a configuration from outside its file: `train run --set key=value`
//! ([`apply_sets`]), and what a resumed run may change ([`for_run`]: the keys of
//! [`RESUME_SAFE`] are applied and saved, any other difference is refused, the keys the
//! run derives itself ([`DERIVED`]) are never compared).

use std::collections::BTreeMap;
use std::path::Path;

use super::{read_table, ConfigError, TrainConfig};

/// One key whose value differs between two configurations.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub key: String,
    pub from: String,
    pub to: String,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({} -> {})", self.key, self.from, self.to)
    }
}

pub(super) fn list(changes: &[Change]) -> String {
    changes.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ")
}

/// Keys that a resumed run may change: they decide how long it runs and how it logs,
/// checkpoints and loads, never what a step computes. `optim.epochs` extends (or
/// shortens) a run; the loader's threads do not change its batches (they are handed
/// out in order); `data.on_damaged` acts only on a row whose bytes fail their check;
/// `stall.*` only warns (or stops).
pub const RESUME_SAFE: &[&str] = &[
    "optim.epochs",
    "run.log_every_steps",
    "run.checkpoint_minutes",
    "run.keep_last",
    "data.workers",
    "data.prefetch",
    "dist.timeout_s",
    "data.on_damaged",
    "stall.steps",
    "stall.tolerance",
    "stall.stop",
];

/// Keys the run fills in itself ([`TrainConfig::resolve`]): recorded, never compared.
pub const DERIVED: &[&str] = &["dist.world_size", "dist.global_batch", "dist.scaled_lr"];

impl TrainConfig {
    /// Every key as `section.key` -> its TOML text (`optim.schedule` whole).
    pub fn leaves(&self) -> BTreeMap<String, String> {
        flatten(&self.to_table())
    }

    /// The keys whose values differ from `other`'s, derived keys ([`DERIVED`]) left out.
    pub fn changes_to(&self, other: &TrainConfig) -> Vec<Change> {
        let (a, b) = (flatten(&self.to_table()), flatten(&other.to_table()));
        let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
        keys.sort();
        keys.dedup();
        let shown = |v: Option<&String>| v.cloned().unwrap_or_else(|| "(unset)".into());
        keys.into_iter()
            .filter(|k| !DERIVED.contains(&k.as_str()) && a.get(*k) != b.get(*k))
            .map(|k| Change { key: k.clone(), from: shown(a.get(k)), to: shown(b.get(k)) })
            .collect()
    }
}

/// Every leaf of a TOML table as `section.key` -> its TOML text (inline tables such as
/// `optim.schedule` are one leaf: a schedule is changed whole).
fn flatten(t: &toml::Table) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (section, v) in t {
        match v {
            toml::Value::Table(inner) => {
                for (k, v) in inner {
                    out.insert(format!("{section}.{k}"), v.to_string());
                }
            }
            other => {
                out.insert(section.clone(), other.to_string());
            }
        }
    }
    out
}

/// Applies `key=value` overrides (`optim.lr=0.02`, `optim.schedule={kind="step",
/// step_epochs=30, gamma=0.1}`) to a parsed configuration file. The value is TOML; a
/// bare word that is not TOML (`mean-rgb`) is taken as a string. A key that no
/// configuration has is an error naming it and the keys of its section; values are
/// checked when the result is parsed, as in a file.
pub fn apply_sets(table: &mut toml::Table, sets: &[String]) -> Result<(), ConfigError> {
    let known = TrainConfig::default().to_table();
    for set in sets {
        let err = |message: String| ConfigError::Set { set: set.clone(), message };
        let (key, text) = set.split_once('=').ok_or_else(|| err("expected key=value, e.g. optim.lr=0.02".into()))?;
        let key = key.trim();
        let value = match toml::from_str::<toml::Table>(&format!("v = {}", text.trim())) {
            Ok(mut t) => t.remove("v").expect("parsed v"),
            Err(_) => toml::Value::String(text.trim().to_string()),
        };
        let Some((section, field)) = key.split_once('.') else {
            return Err(err(format!("{key:?} is a section: give section.key (e.g. optim.lr)")));
        };
        let Some(toml::Value::Table(fields)) = known.get(section) else {
            let sections: Vec<&String> = known.keys().collect();
            return Err(err(format!("unknown section {section:?} (sections: {sections:?})")));
        };
        if let Some((whole, _)) = field.split_once('.') {
            return Err(err(format!(
                "give {section}.{whole} whole, as a TOML inline table (e.g. \
                 optim.schedule={{kind=\"step\", step_epochs=30, gamma=0.1}})"
            )));
        }
        if !(fields.contains_key(field) || DERIVED.contains(&key)) {
            let names: Vec<&String> = fields.keys().collect();
            return Err(err(format!("unknown key {key:?} ([{section}] has {names:?})")));
        }
        let entry = table.entry(section).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(t) = entry else {
            return Err(err(format!("{section} is not a table in the configuration")));
        };
        t.insert(field.to_string(), value);
    }
    Ok(())
}

/// The configuration `train run` trains with, and the keys applied on resume.
///
/// A fresh run: `preset` with `sets` applied. `--resume` of a run folder with a saved
/// `config.toml`: the saved one, or `preset` when given, with `sets` applied, compared
/// with the saved one over the keys a user sets (not [`DERIVED`]): keys of
/// [`RESUME_SAFE`] that differ are applied and returned (the run saves them, so the
/// next resume keeps them); any other difference is refused, listing every key.
pub fn for_run(
    preset: Option<&Path>,
    sets: &[String],
    run_dir: &Path,
    resume: bool,
) -> Result<(TrainConfig, Vec<Change>), ConfigError> {
    let saved_path = run_dir.join("config.toml");
    // A typo in --run-dir must not start a new run under --resume, with or without a
    // preset. (A folder stopped before its first checkpoint has its config.toml: it
    // resumes from the start.)
    if resume && !saved_path.exists() {
        return Err(ConfigError::Invalid(format!(
            "--resume: {} is missing: {} holds no run to continue; check --run-dir, or leave out --resume (and give \
             --config) to start a new run there",
            saved_path.display(),
            run_dir.display()
        )));
    }
    let saved_table = if resume && saved_path.exists() { Some(read_table(&saved_path)?) } else { None };
    let saved = match &saved_table {
        Some(t) => Some(
            TrainConfig::from_table(t.clone())
                .map_err(|e| ConfigError::Invalid(format!("{}: {e}", saved_path.display())))?,
        ),
        None => None,
    };
    let (mut table, origin) = match (preset, saved_table) {
        (Some(p), _) => (read_table(p)?, p.display().to_string()),
        (None, Some(t)) => (t, saved_path.display().to_string()),
        (None, None) => {
            return Err(ConfigError::Invalid("give --config (a preset from configs/), or --resume a run".into()))
        }
    };
    apply_sets(&mut table, sets)?;
    let mut cfg = TrainConfig::from_table(table).map_err(|e| ConfigError::Invalid(format!("{origin}: {e}")))?;
    let Some(saved) = saved else { return Ok((cfg, Vec::new())) };
    let changes = saved.changes_to(&cfg);
    let refused: Vec<Change> = changes.iter().filter(|c| !RESUME_SAFE.contains(&c.key.as_str())).cloned().collect();
    if !refused.is_empty() {
        return Err(ConfigError::ChangedOnResume(refused));
    }
    // What the run recorded stays: it is checked again against the launch.
    (cfg.dist.world_size, cfg.dist.global_batch, cfg.dist.scaled_lr) =
        (saved.dist.world_size, saved.dist.global_batch, saved.dist.scaled_lr);
    Ok((cfg, changes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Precision;
    use crate::data::Normalization;
    use crate::schedule::Schedule;

    fn preset(name: &str) -> String {
        std::fs::read_to_string(format!("{}/../configs/{name}.toml", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    fn sets(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn set_overrides_any_key_and_is_checked_like_the_file() {
        let mut t: toml::Table = toml::from_str(&preset("demo")).unwrap();
        apply_sets(
            &mut t,
            &sets(&[
                "optim.lr=0.02",
                "optim.epochs = 30",
                "data.normalization=mean-rgb",
                "run.precision=\"bf16\"",
                "optim.schedule={kind=\"step\", step_epochs=3, gamma=0.5}",
                "dist.overlap=false",
            ]),
        )
        .unwrap();
        let c = TrainConfig::from_table(t).unwrap();
        assert_eq!((c.optim.lr, c.optim.epochs, c.data.normalization), (0.02, 30, Normalization::MeanRgb));
        assert_eq!(c.run.precision, Precision::Bf16);
        assert_eq!(c.optim.schedule, Schedule::Step { step_epochs: 3, gamma: 0.5 });
        assert!(!c.dist.overlap);
        // A typo'd key names itself and its section's keys; so does a section.
        let mut t: toml::Table = toml::from_str(&preset("demo")).unwrap();
        let e = apply_sets(&mut t, &sets(&["optim.lrr=0.1"])).unwrap_err().to_string();
        assert!(
            e.contains("--set optim.lrr=0.1") && e.contains("unknown key \"optim.lrr\"") && e.contains("\"lr\""),
            "{e}"
        );
        let e = apply_sets(&mut t, &sets(&["optm.lr=0.1"])).unwrap_err().to_string();
        assert!(e.contains("unknown section \"optm\""), "{e}");
        let e = apply_sets(&mut t, &sets(&["optim.lr"])).unwrap_err().to_string();
        assert!(e.contains("key=value"), "{e}");
        let e = apply_sets(&mut t, &sets(&["optim.schedule.kind=step"])).unwrap_err().to_string();
        assert!(e.contains("optim.schedule whole"), "{e}");
        // Values are validated as in a file: a type error, a range error.
        let mut t: toml::Table = toml::from_str(&preset("demo")).unwrap();
        apply_sets(&mut t, &sets(&["optim.batch_size=many"])).unwrap();
        let e = TrainConfig::from_table(t).unwrap_err().to_string();
        assert!(e.contains("batch_size") || e.contains("integer"), "{e}");
        let mut t: toml::Table = toml::from_str(&preset("demo")).unwrap();
        apply_sets(&mut t, &sets(&["model.dropout=1.5"])).unwrap();
        let e = TrainConfig::from_table(t).unwrap_err().to_string();
        assert!(e.contains("model.dropout 1.5"), "{e}");
    }

    #[test]
    fn a_resume_applies_safe_changes_and_refuses_the_others() {
        let t = tempfile::tempdir().unwrap();
        let demo = t.path().join("demo.toml");
        std::fs::write(&demo, preset("demo")).unwrap();
        let run = t.path().join("run");
        // A fresh start: the preset and its --set; nothing to compare with.
        let (fresh, changes) = for_run(Some(&demo), &sets(&["optim.lr=0.02"]), &run, false).unwrap();
        assert!(changes.is_empty() && fresh.optim.lr == 0.02);
        std::fs::create_dir_all(&run).unwrap();
        std::fs::write(run.join("config.toml"), fresh.resolve(1).unwrap().to_toml()).unwrap();
        // Resumed with nothing: the saved config, derived keys kept.
        let (same, changes) = for_run(None, &[], &run, true).unwrap();
        assert!(changes.is_empty(), "{changes:?}");
        assert_eq!(same, fresh.resolve(1).unwrap());
        // The same preset and --set again are not a change.
        let (_, changes) = for_run(Some(&demo), &sets(&["optim.lr=0.02"]), &run, true).unwrap();
        assert!(changes.is_empty(), "{changes:?}");
        // Extending the run: applied, and reported.
        let (longer, changes) =
            for_run(None, &sets(&["optim.epochs=12", "run.log_every_steps=5"]), &run, true).unwrap();
        assert_eq!((longer.optim.epochs, longer.run.log_every_steps), (12, 5));
        let keys: Vec<&str> = changes.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["optim.epochs", "run.log_every_steps"]);
        assert_eq!(changes[0].to_string(), "optim.epochs (8 -> 12)");
        assert_eq!(longer.dist.world_size, Some(1));
        // A change of what a step computes is refused, listing every such key; the
        // preset without the run's --set changes optim.lr back: refused too.
        let e = for_run(None, &sets(&["model.width=0.5", "optim.epochs=12", "data.flip=false"]), &run, true)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("data.flip (true -> false), model.width (0.25 -> 0.5)") && !e.contains("optim.epochs ("),
            "{e}"
        );
        assert!(e.contains("only optim.epochs, run.log_every_steps"), "{e}");
        let e = for_run(Some(&demo), &[], &run, true).unwrap_err().to_string();
        assert!(e.contains("optim.lr (0.02 -> 0.005)"), "{e}");
        // No preset and nothing to resume.
        let e = for_run(None, &[], &t.path().join("new"), false).unwrap_err().to_string();
        assert!(e.contains("give --config"), "{e}");
        // --resume of a folder that holds no run (a typo in --run-dir) is refused even
        // with a preset: it does not start a new run there. (Before: it did.)
        let e = for_run(Some(&demo), &[], &t.path().join("rnu"), true).unwrap_err().to_string();
        assert!(e.contains("rnu/config.toml is missing") && e.contains("holds no run"), "{e}");
        assert!(!t.path().join("rnu").exists());
    }
}
