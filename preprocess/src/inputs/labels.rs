//! Val labels, whatever holds them: Kaggle's `LOC_val_solution.csv`, or the devkit's
//! ground truth (devkit IDs, numbered by `meta.mat`, not in sorted-wnid order), and the
//! labelling of a flat val split, shared by every layout.

use std::collections::HashMap;

use alexnet_shared::ClassIndex;
use anyhow::{bail, Context, Result};

use super::{Item, ListReject, Source};

pub const SOLUTION_CSV: &str = "LOC_val_solution.csv";
pub const GROUND_TRUTH_TXT: &str = "ILSVRC2012_validation_ground_truth.txt";
pub const SYNSET_MAPPING: &str = "LOC_synset_mapping.txt";

/// `ImageId,PredictionString` rows; the label is the first token of PredictionString.
pub fn parse_solution_csv(text: &str) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (i == 0 && line.starts_with("ImageId")) {
            continue;
        }
        let (id, pred) =
            line.split_once(',').with_context(|| format!("line {}: expected ImageId,PredictionString", i + 1))?;
        let wnid = pred.split_whitespace().next().with_context(|| format!("line {}: empty PredictionString", i + 1))?;
        out.insert(id.trim().to_string(), wnid.to_string());
    }
    Ok(out)
}

/// The wnids of a `--devkit-synsets` list (line i = devkit ID i) as ID -> wnid.
pub fn id_list(text: &str) -> HashMap<usize, String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).enumerate().map(|(i, w)| (i + 1, w.to_string())).collect()
}

/// The devkit's ground truth: line i holds the devkit ID of the image numbered i
/// (`ILSVRC2012_val_{i:08}`); `ids` gives each ID's wnid. Returns stem -> wnid for the
/// given stems.
pub fn parse_ground_truth<'a>(
    text: &str,
    ids: &HashMap<usize, String>,
    stems: impl IntoIterator<Item = &'a str>,
) -> Result<HashMap<String, String>> {
    let labels: Vec<usize> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, l)| l.parse::<usize>().with_context(|| format!("line {}: {l:?} is not an ID", i + 1)))
        .collect::<Result<_>>()?;
    let mut out = HashMap::new();
    for stem in stems {
        let digits: String =
            stem.chars().rev().take_while(|c| c.is_ascii_digit()).collect::<Vec<_>>().into_iter().rev().collect();
        let Ok(n) = digits.parse::<usize>() else { continue };
        let Some(&id) = n.checked_sub(1).and_then(|i| labels.get(i)) else { continue };
        let wnid = ids.get(&id).with_context(|| {
            format!("ID {id} (image {stem}) is not a class ID of the devkit ({} classes)", ids.len())
        })?;
        out.insert(stem.to_string(), wnid.clone());
    }
    Ok(out)
}

/// A val image of a flat split, before labelling: its file name (the key) and bytes.
pub struct Candidate {
    pub name: String,
    pub source: Source,
    /// How rejects.tsv names it.
    pub path: String,
}

fn stem(name: &str) -> &str {
    match name.rfind('.') {
        Some(i) if i > 0 => &name[..i],
        _ => name,
    }
}

/// Labels a flat val split (candidates in sorted order) by stem; keeps the first `take`
/// of each class; an image with no label is a reject. Every labelled wnid must be a
/// train class.
pub fn label_flat(
    candidates: Vec<Candidate>,
    by_stem: &HashMap<String, String>,
    classes: &ClassIndex,
    take: usize,
    labels_what: &str,
    labels_name: &str,
) -> Result<(Vec<Item>, Vec<ListReject>)> {
    let mut unknown: Vec<&String> = by_stem.values().filter(|w| classes.index(w).is_none()).collect();
    unknown.sort();
    unknown.dedup();
    if let Some(w) = unknown.first() {
        bail!("{labels_what}: val wnid {w} is not a class of train ({} unknown wnids in all)", unknown.len());
    }
    let mut per_class: HashMap<i16, usize> = HashMap::new();
    let (mut items, mut rejects) = (Vec::new(), Vec::new());
    for c in candidates {
        match by_stem.get(stem(&c.name)) {
            Some(w) => {
                let label = classes.index(w).expect("checked above") as i16;
                let n = per_class.entry(label).or_default();
                if *n < take {
                    *n += 1;
                    items.push(Item { key: c.name, label, source: c.source });
                }
            }
            None => rejects.push(ListReject { path: c.path, reason: format!("no label: not listed in {labels_name}") }),
        }
    }
    Ok((items, rejects))
}

/// The stems of candidates, for the ground truth.
pub fn stems(candidates: &[Candidate]) -> impl Iterator<Item = &str> {
    candidates.iter().map(|c| stem(&c.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solution_csv_first_token() {
        let m = parse_solution_csv(
            "ImageId,PredictionString\nILSVRC2012_val_00008726,n02119789 255 142 454 329 n02119789 44 21 322 295\n",
        )
        .unwrap();
        assert_eq!(m["ILSVRC2012_val_00008726"], "n02119789");
    }

    #[test]
    fn ground_truth_uses_devkit_ids() {
        // Devkit order differs from sorted order: ID 1 is n2, ID 2 is n1.
        let ids = id_list("n2\nn1\n");
        let stems = ["ILSVRC2012_val_00000001", "ILSVRC2012_val_00000002"];
        let m = parse_ground_truth("2\n1\n", &ids, stems).unwrap();
        assert_eq!(m["ILSVRC2012_val_00000001"], "n1");
        assert_eq!(m["ILSVRC2012_val_00000002"], "n2");
        assert!(parse_ground_truth("3\n", &ids, stems).is_err());
    }
}
