//! The tar index behind reading ImageNet's archives in place.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = preprocess::archive::tar_index::index_members(data, 0, "fuzzed.tar");
});
