//! The deterministic fuzz loop shared by the fuzz tests of `shared` and `preprocess`
//! (included with `#[path]`): fixed seeds, byte mutations of a kept corpus of valid
//! files, a fixed number of cases; a case fails on a panic, on taking longer than
//! [`CASE_SECONDS`], or on one allocation larger than the input allows. Each failure
//! names the target and the case's seed, so `FUZZ_SEED=S` replays it alone.

use std::alloc::{GlobalAlloc, Layout, System};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Counts the largest single allocation since the last reset (all threads).
pub struct Counting;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// The longest a single case may take (debug build, busy machine).
pub const CASE_SECONDS: u64 = 20;

/// xorshift64*: small, deterministic, good enough to pick mutations.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One to four mutations of `input`: bit flips, interesting bytes and 32-bit values
/// (little and big endian), truncation, insertion, a copied chunk. Half the
/// positions fall in the last `tail` bytes (where footers and headers live).
pub fn mutate(input: &[u8], rng: &mut Rng, tail: usize) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        if v.is_empty() {
            v.push(rng.next() as u8);
            continue;
        }
        let len = v.len();
        let at = if rng.below(2) == 0 && tail > 0 { len - 1 - rng.below(tail.min(len)) } else { rng.below(len) };
        match rng.below(7) {
            0 => v[at] ^= 1 << rng.below(8),
            1 => v[at] = [0x00, 0xFF, 0x7F, 0x80, 0x01, 0xFE][rng.below(6)],
            2 => {
                let x = [u32::MAX, 0x7FFF_FFFF, 0x8000_0000, 0, 1 << 30, 65536][rng.below(6)];
                let b = if rng.below(2) == 0 { x.to_le_bytes() } else { x.to_be_bytes() };
                for (i, byte) in b.iter().enumerate() {
                    if at + i < len {
                        v[at + i] = *byte;
                    }
                }
            }
            3 => v.truncate(at),
            4 => {
                let n = 1 + rng.below(16);
                let junk: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                v.splice(at..at, junk);
            }
            5 => {
                let from = rng.below(len);
                let n = (1 + rng.below(64)).min(len - from);
                let chunk = v[from..from + n].to_vec();
                v.splice(at..at, chunk);
            }
            _ => {
                let n = (1 + rng.below(8)).min(len - at);
                v.drain(at..at + n);
            }
        }
    }
    v
}

/// Runs `cases` mutated inputs of `corpus` through `target`; returns the failures. A
/// target returns `Err` freely (that is a correct answer to bad input); a panic, a slow
/// case or an allocation over `alloc_limit(input length)` is a failure.
pub fn fuzz(
    name: &str,
    corpus: &[Vec<u8>],
    cases: u64,
    tail: usize,
    alloc_limit: impl Fn(usize) -> usize,
    target: impl Fn(&[u8]) -> bool,
) -> Vec<String> {
    let only: Option<u64> = std::env::var("FUZZ_SEED").ok().and_then(|s| s.parse().ok());
    let mut failures = Vec::new();
    let mut accepted = 0;
    for seed in 0..cases {
        if only.is_some_and(|s| s != seed) {
            continue;
        }
        let mut rng = Rng::new(seed ^ (name.len() as u64 * 0x1000_0001));
        let base = &corpus[rng.below(corpus.len())];
        let input = if seed == 0 { base.clone() } else { mutate(base, &mut rng, tail) };
        LARGEST.store(0, Ordering::Relaxed);
        let t = Instant::now();
        let r = catch_unwind(AssertUnwindSafe(|| target(&input)));
        let took = t.elapsed();
        let largest = LARGEST.load(Ordering::Relaxed);
        match r {
            Ok(ok) => accepted += ok as u64,
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("{name}: seed {seed}: panicked: {msg}"));
            }
        }
        if took > Duration::from_secs(CASE_SECONDS) {
            failures.push(format!("{name}: seed {seed}: took {took:?}"));
        }
        if largest > alloc_limit(input.len()) {
            failures.push(format!(
                "{name}: seed {seed}: allocated {largest} bytes at once for {} input bytes",
                input.len()
            ));
        }
    }
    // The unmutated corpus must be accepted, or the run tested only the error paths.
    assert!(only.is_some() || accepted >= 1, "{name}: not even the corpus was accepted");
    eprintln!("fuzz {name}: {cases} cases, {accepted} accepted, {} failures", failures.len());
    failures
}
