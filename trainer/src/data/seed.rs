//! Seeds derived from tuples, for independent, reproducible random streams: the
//! sampler's epoch permutations, each image's crop, flip and colour-noise draws, and the
//! training step's dropout are all seeded from (seed, epoch, ...) through
//! [`derive_seed`], never from a shared generator, so no draw depends on thread timing.

/// A stream of 64-bit seeds derived from a tuple, for independent, reproducible RNGs.
pub fn derive_seed(parts: &[u64]) -> u64 {
    // SplitMix64 over the parts: cheap and well mixed.
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15;
    for &p in parts {
        h ^= p.wrapping_add(0x9e37_79b9_7f4a_7c15).wrapping_add(h << 6).wrapping_add(h >> 2);
        let mut z = h;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h = z ^ (z >> 31);
    }
    h
}
