//! Errors of the dataset format: each names the file (and row) it is about.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a valid manifest: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error("{path}: damaged or not a dataset shard: {message}")]
    Shard { path: PathBuf, message: String },
    #[error("{path}: sha256 is {actual}, the manifest says {expected}: the shard is damaged; rebuild it (rerun `preprocess build`)")]
    Checksum { path: PathBuf, expected: String, actual: String },
    /// A row whose bytes differ from what the build wrote (its CRC-32C, or its shard's
    /// sha256 for datasets built before the per-row check).
    #[error("{path}: row {row}: {message}")]
    Damaged { path: PathBuf, row: usize, message: String },
    #[error("{path}: {message}")]
    Parquet { path: PathBuf, message: String },
    #[error("row {row} is out of range: the {split} split has {rows} rows")]
    RowOutOfRange { split: String, row: usize, rows: usize },
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    pub fn shard(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Shard { path: path.into(), message: message.into() }
    }

    pub fn parquet(path: impl Into<PathBuf>, e: impl std::fmt::Display) -> Self {
        Error::Parquet { path: path.into(), message: e.to_string() }
    }
}
