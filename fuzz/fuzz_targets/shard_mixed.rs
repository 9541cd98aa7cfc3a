//! A mixed shard (format 4: raw and JPEG rows, a `raw` column): the Parquet footer,
//! page headers and columns, then every row (and its check) read back. Errors name the
//! file; nothing panics.
#![no_main]
use std::path::Path;

use alexnet_shared::{Encoding, ShardReader};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzzed.parquet");
    match ShardReader::from_bytes(path, bytes::Bytes::copy_from_slice(data), Encoding::Mixed) {
        Ok(r) => (0..r.len()).for_each(|i| drop(r.get(i))),
        Err(e) => assert!(e.to_string().contains("fuzzed.parquet"), "unnamed error: {e}"),
    }
});
