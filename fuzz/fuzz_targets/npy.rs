//! The mean image (`.npy`): the header checked before the values are allocated.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = alexnet_shared::parse_mean_image(data);
});
