//! Random access to images in a built dataset through the zero-copy shard reader.
//!
//! usage: cargo run --release -p alexnet-shared --example read_bench -- DATASET_DIR [PASSES]
//!
//! Prints, for the train split in a seeded random order: the time to open (map and
//! index every shard), images/s of looking an image up (a slice of the map, no copy),
//! and images/s and GB/s of reading every byte of each image (the pages are in the
//! page cache after the first pass; the first pass is reported apart).

use std::time::Instant;

use alexnet_shared::{Dataset, Split};
use rand::seq::SliceRandom;
use rand::SeedableRng;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).ok_or("usage: read_bench DATASET_DIR [PASSES]")?;
    let passes: usize = args.get(2).map(|p| p.parse()).transpose()?.unwrap_or(3);
    let t = Instant::now();
    let ds = Dataset::open(dir.as_ref())?;
    let train = ds.split(Split::Train)?;
    let open_s = t.elapsed().as_secs_f64();
    let n = train.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(0));
    println!("opened {} train images in {} shards in {:.3} s", n, train.shards().len(), open_s);

    // Lookup only: locate the image and take its slice (touches one byte).
    let t = Instant::now();
    let mut acc = 0u64;
    for _ in 0..passes {
        for &i in &order {
            let img = train.get(i)?;
            acc = acc.wrapping_add(img.bytes[img.bytes.len() / 2] as u64 + img.label as u64);
        }
    }
    let dt = t.elapsed().as_secs_f64();
    println!("lookup (slice of the map, no copy): {:.0} images/s", (passes * n) as f64 / dt);

    // Read every byte of every image.
    for pass in 0..=passes {
        let t = Instant::now();
        let mut bytes = 0usize;
        for &i in &order {
            let img = train.get(i)?;
            acc = acc.wrapping_add(img.bytes.iter().map(|&b| b as u64).sum::<u64>());
            bytes += img.bytes.len();
        }
        let dt = t.elapsed().as_secs_f64();
        if pass == 0 || pass == passes {
            println!(
                "read all bytes, pass {}: {:.0} images/s, {:.2} GB/s",
                pass + 1,
                n as f64 / dt,
                bytes as f64 / dt / 1e9
            );
        }
    }
    std::hint::black_box(acc);
    Ok(())
}
