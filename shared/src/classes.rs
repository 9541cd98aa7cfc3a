//! The class index: a class is the position of its wnid in sorted order, as
//! torchvision's `ImageFolder` numbers the folders.

use std::collections::{BTreeMap, HashMap};

use crate::error::{Error, Result};
use crate::manifest::ClassEntry;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassIndex {
    wnids: Vec<String>,
    by_wnid: HashMap<String, usize>,
}

impl ClassIndex {
    /// Sorts and deduplicates the wnids; the index of a class is its sorted position.
    pub fn new<I, S>(wnids: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut wnids: Vec<String> = wnids.into_iter().map(Into::into).collect();
        wnids.sort();
        wnids.dedup();
        if wnids.is_empty() {
            return Err(Error::Invalid("no classes: the train folder has no class sub-folders".into()));
        }
        if wnids.len() > i16::MAX as usize + 1 {
            return Err(Error::Invalid(format!("{} classes: labels are int16, at most 32768 classes", wnids.len())));
        }
        let by_wnid = wnids.iter().enumerate().map(|(i, w)| (w.clone(), i)).collect();
        Ok(Self { wnids, by_wnid })
    }

    pub fn len(&self) -> usize {
        self.wnids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.wnids.is_empty()
    }

    pub fn wnids(&self) -> &[String] {
        &self.wnids
    }

    pub fn index(&self, wnid: &str) -> Option<usize> {
        self.by_wnid.get(wnid).copied()
    }

    /// Manifest entries; names from `names` (wnid -> name) where given, else the wnid.
    pub fn entries(&self, names: &BTreeMap<String, String>) -> Vec<ClassEntry> {
        self.wnids
            .iter()
            .enumerate()
            .map(|(index, wnid)| ClassEntry {
                index,
                wnid: wnid.clone(),
                name: names.get(wnid).cloned().unwrap_or_else(|| wnid.clone()),
            })
            .collect()
    }
}

/// Parses `LOC_synset_mapping.txt`: one `wnid name, other names` per line.
pub fn parse_synset_mapping(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let (wnid, name) = line.split_once(char::is_whitespace).unwrap_or((line, line));
            (!wnid.is_empty()).then(|| (wnid.to_string(), name.trim().to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_is_sorted_position() {
        let c = ClassIndex::new(["n02", "n01", "n03", "n01"]).unwrap();
        assert_eq!(c.wnids(), ["n01", "n02", "n03"]);
        assert_eq!(c.index("n03"), Some(2));
        assert_eq!(c.index("n09"), None);
    }

    #[test]
    fn synset_mapping_names() {
        let m = parse_synset_mapping("n01440764 tench, Tinca tinca\nn01443537 goldfish\n\n");
        assert_eq!(m["n01440764"], "tench, Tinca tinca");
        assert_eq!(m["n01443537"], "goldfish");
        assert_eq!(m.len(), 2);
    }
}
