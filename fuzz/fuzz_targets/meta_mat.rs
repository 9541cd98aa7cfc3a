//! The MAT-file reader behind the devkit's meta.mat, and the synsets read from it.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = preprocess::mat5::read_variables(data);
    let _ = preprocess::archive::devkit::synsets(data);
});
