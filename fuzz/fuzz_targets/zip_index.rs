//! The zip index behind reading Kaggle's ImageNet zip in place.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = preprocess::archive::zip_index::index_members(data, "fuzzed.zip");
});
