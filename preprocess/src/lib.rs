//! `preprocess`: builds ImageNet into dataset format v1 (see `alexnet_shared`), writes
//! the built-in procedural demo data, and verifies built datasets.
//!
//! - [`build::run`]: ImageNet folders -> shuffled, sharded Parquet + manifest, with the
//!   train pixel statistics and PCA (paper sections 2 and 4.1); resumable.
//! - [`synth::run`]: a small procedural dataset in the ImageNet layout.
//! - [`verify::run`]: checks a built dataset and names every problem.

pub mod build;
pub mod imageproc;
pub mod inputs;
pub mod synth;
pub mod verify;
