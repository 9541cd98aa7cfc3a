//! `train compare --by-seed`: runs that differ only in `run.seed` are one variant; each
//! variant's best and last errors as mean and spread (sample standard deviation) over
//! its seeds, and its difference from the first variant (the baseline), read as none
//! when it is within the larger of the two spreads.

use std::collections::BTreeMap;

use serde::Serialize;

use super::RunSummary;

/// The key a seed sweep varies.
pub const SEED_KEY: &str = "run.seed";

/// Mean and spread of one score over a variant's seeds (fractions).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub mean: f64,
    /// Sample standard deviation (0 with one seed).
    pub sd: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Spread {
    /// Of the values present; None when none is.
    pub fn of(values: impl IntoIterator<Item = Option<f64>>) -> Option<Spread> {
        let v: Vec<f64> = values.into_iter().flatten().collect();
        if v.is_empty() {
            return None;
        }
        let n = v.len();
        let mean = v.iter().sum::<f64>() / n as f64;
        let sd = if n > 1 { (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt() } else { 0.0 };
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some(Spread { mean, sd, min, max, n })
    }
}

/// One variant over its seeds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Variant {
    /// The differing keys other than the seed: this variant's values.
    pub differs: BTreeMap<String, String>,
    pub seeds: Vec<String>,
    pub runs: Vec<String>,
    pub best_top1_error: Option<Spread>,
    pub best_top5_error: Option<Spread>,
    pub last_top1_error: Option<Spread>,
    pub last_top5_error: Option<Spread>,
    /// Mean seconds of training per run.
    pub wall_s: f64,
    pub paper_claims: Vec<String>,
}

/// The runs grouped by everything but the seed, in the order each variant first
/// appears (the baseline first).
pub fn by_seed(runs: &[RunSummary]) -> Vec<Variant> {
    let mut out: Vec<(BTreeMap<String, String>, Vec<&RunSummary>)> = Vec::new();
    for r in runs {
        let key: BTreeMap<String, String> =
            r.differs.iter().filter(|(k, _)| k.as_str() != SEED_KEY).map(|(k, v)| (k.clone(), v.clone())).collect();
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(r),
            None => out.push((key, vec![r])),
        }
    }
    out.into_iter()
        .map(|(differs, rs)| {
            let spread = |f: fn(&RunSummary) -> Option<f64>| Spread::of(rs.iter().map(|r| f(r)));
            let mut claims: Vec<String> = rs.iter().flat_map(|r| r.paper_claims.clone()).collect();
            claims.dedup();
            Variant {
                seeds: rs.iter().map(|r| r.differs.get(SEED_KEY).cloned().unwrap_or_else(|| "(same)".into())).collect(),
                runs: rs.iter().map(|r| r.run.clone()).collect(),
                best_top1_error: spread(|r| r.best_top1_error),
                best_top5_error: spread(|r| r.best_top5_error),
                last_top1_error: spread(|r| r.last_top1_error),
                last_top5_error: spread(|r| r.last_top5_error),
                wall_s: rs.iter().map(|r| r.wall_s).sum::<f64>() / rs.len() as f64,
                paper_claims: claims,
                differs,
            }
        })
        .collect()
}

/// `mean ± sd` in percent.
fn shown(s: Option<Spread>) -> String {
    s.map_or("-".into(), |s| format!("{:.2} ± {:.2}", 100.0 * s.mean, 100.0 * s.sd))
}

/// The difference of `v` from `base` in points, and how it reads against the spreads.
pub fn against(v: Option<Spread>, base: Option<Spread>) -> String {
    match (v, base) {
        (Some(v), Some(b)) => {
            let d = 100.0 * (v.mean - b.mean);
            let spread = 100.0 * v.sd.max(b.sd);
            let reads = if v.n < 2 || b.n < 2 {
                "one seed: no spread to judge by"
            } else if d.abs() <= spread {
                "none (within the spread)"
            } else if d > 0.0 {
                "worse"
            } else {
                "better"
            };
            format!("{d:+.2} ({reads})")
        }
        _ => "-".into(),
    }
}

/// Markdown: one row per variant.
pub fn markdown(vs: &[Variant]) -> String {
    let keys: Vec<String> = vs.first().map(|v| v.differs.keys().cloned().collect()).unwrap_or_default();
    let mut header: Vec<String> = keys.clone();
    header.extend(
        [
            "seeds",
            "best top-1 err % (mean ± sd)",
            "best top-5 err %",
            "last top-1 err %",
            "best top-1 vs baseline, points",
            "wall s / run",
            "paper's claimed difference",
        ]
        .map(String::from),
    );
    let esc = |s: &str| s.replace('|', "\\|");
    let mut out = format!(
        "| {} |\n|{}\n",
        header.iter().map(|h| esc(h)).collect::<Vec<_>>().join(" | "),
        "---|".repeat(header.len())
    );
    let base = vs.first().and_then(|v| v.best_top1_error);
    for v in vs {
        let mut row: Vec<String> = keys.iter().map(|k| v.differs.get(k).cloned().unwrap_or_default()).collect();
        row.extend([
            v.seeds.len().to_string(),
            shown(v.best_top1_error),
            shown(v.best_top5_error),
            shown(v.last_top1_error),
            against(v.best_top1_error, base),
            format!("{:.0}", v.wall_s),
            if v.paper_claims.is_empty() { "-".into() } else { v.paper_claims.join("; ") },
        ]);
        out += &format!("| {} |\n", row.iter().map(|c| esc(c)).collect::<Vec<_>>().join(" | "));
    }
    out += "\nErrors in percent on val, center crop, mean ± sample standard deviation over the seeds; the first \
            variant is the baseline; a difference within the larger spread reads as none.";
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(seed: &str, lrn: &str, best: f64) -> RunSummary {
        RunSummary {
            run: format!("{lrn}-{seed}"),
            differs: BTreeMap::from([
                (SEED_KEY.to_string(), seed.to_string()),
                ("model.lrn".to_string(), lrn.to_string()),
            ]),
            epochs: 2,
            best_top1_error: Some(best),
            best_top5_error: Some(best / 2.0),
            last_top1_error: Some(best + 0.01),
            last_top5_error: None,
            ten_crop_top1_error: None,
            ten_crop_top5_error: None,
            wall_s: 10.0,
            paper_claims: if lrn == "false" { vec!["3.3".into()] } else { vec![] },
            train_loss: vec![],
            val_top1_error: vec![],
        }
    }

    #[test]
    fn seeds_of_a_variant_become_one_row_with_mean_and_spread() {
        let runs = [
            summary("1", "true", 0.40),
            summary("1", "false", 0.50),
            summary("2", "true", 0.44),
            summary("2", "false", 0.52),
            summary("3", "true", 0.42),
            summary("3", "false", 0.48),
        ];
        let v = by_seed(&runs);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].differs, BTreeMap::from([("model.lrn".to_string(), "true".to_string())]));
        assert_eq!((v[0].seeds.clone(), v[1].runs[2].as_str()), (vec!["1".into(), "2".into(), "3".into()], "false-3"));
        let b = v[0].best_top1_error.unwrap();
        assert!((b.mean - 0.42).abs() < 1e-12 && (b.sd - 0.02).abs() < 1e-12 && b.n == 3);
        assert_eq!((b.min, b.max), (0.40, 0.44));
        assert!(v[0].last_top5_error.is_none() && v[1].paper_claims == ["3.3"]);
        // +8 points against spreads of 2: worse. Within the spread: none.
        assert_eq!(against(v[1].best_top1_error, v[0].best_top1_error), "+8.00 (worse)");
        let close = Spread { mean: 0.43, sd: 0.02, min: 0.41, max: 0.45, n: 3 };
        assert_eq!(against(Some(close), Some(b)), "+1.00 (none (within the spread))");
        let one = Spread { n: 1, sd: 0.0, ..close };
        assert_eq!(against(Some(one), Some(b)), "+1.00 (one seed: no spread to judge by)");
        let md = markdown(&v);
        assert!(md.contains("| model.lrn | seeds | best top-1 err % (mean ± sd) |"), "{md}");
        assert!(
            md.contains("| false | 3 | 50.00 ± 2.00 | 25.00 ± 1.00 | 51.00 ± 2.00 | +8.00 (worse) | 10 | 3.3 |"),
            "{md}"
        );
    }
}
