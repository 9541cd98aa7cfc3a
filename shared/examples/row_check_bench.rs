//! What checking a row's bytes costs (`ShardReader::check_row`: the CRC-32C of a format
//! 2 row), per row and per byte, over every train row of a dataset, three passes (the
//! first maps the pages in).
//!
//! usage: cargo run --release -p alexnet-shared --example row_check_bench -- DATASET_DIR

use std::time::Instant;

use alexnet_shared::{Dataset, Split};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: row_check_bench DATASET_DIR")?;
    let ds = Dataset::open(dir.as_ref())?;
    let train = ds.split(Split::Train)?;
    let check = train.shards()[0].row_check();
    for pass in 0..3 {
        let (mut rows, mut bytes) = (0u64, 0u64);
        let t = Instant::now();
        for s in train.shards() {
            for r in 0..s.len() {
                s.check_row(r)?;
                rows += 1;
                bytes += s.image_unchecked(r).len() as u64;
            }
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "pass {pass}: {rows} rows ({check:?}) in {secs:.3} s: {:.1} us per row, {:.2} GB/s",
            1e6 * secs / rows as f64,
            bytes as f64 / secs / 1e9
        );
    }
    Ok(())
}
