//! The data module's one error type: what can go wrong between a memory-mapped shard and
//! a float batch (a damaged image, a worker that died, a configuration that cannot work,
//! a libtorch failure). Every message is one line that names the shard and row, or says
//! what to change.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A row that cannot be read (a bad JPEG in a shard, a row outside the split).
    #[error("{shard}: row {row}: {message}")]
    Image { shard: PathBuf, row: usize, message: String },
    #[error("loader worker {worker} panicked: {message}")]
    Panic { worker: usize, message: String },
    #[error("invalid loader configuration: {0}")]
    Config(String),
    #[error("mean-image normalization needs the dataset's mean image")]
    NoMeanImage,
    #[error("{0}")]
    Torch(#[from] tch::TchError),
}

/// The name the loader's clients have always used for [`DataError`].
pub type LoaderError = DataError;
