//! The dataset manifest (`manifest.json`): parsed and checked, never a panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = alexnet_shared::Manifest::parse(data);
});
