//! `preprocess`: builds ImageNet into dataset format v1 (see `alexnet_shared`), writes
//! the built-in procedural demo data, and verifies built datasets.
//!
//! - [`build::run`]: ImageNet -> shuffled, sharded Parquet + manifest, with the train
//!   pixel statistics and PCA (paper sections 2 and 4.1); resumable. The input is the
//!   official downloads read in place ([`archive`]: tar index, memory map, devkit,
//!   Kaggle's zip), or unpacked folders ([`inputs`]).
//! - [`synth::run`]: a small procedural dataset in the ImageNet layout, as folders or as
//!   the official archives and Kaggle's zip.
//! - [`mat5`]: a MATLAB v5 MAT-file reader (the devkit's `meta.mat`) and writer.
//! - [`verify::run`]: checks a built dataset and names every problem.

pub mod archive;
pub mod build;
pub mod imageproc;
pub mod inputs;
pub mod mat5;
pub mod synth;
pub mod verify;
