//! The panic guard of the binaries (`alexnet_shared::guard`), in its own test binary:
//! it installs a process-wide panic hook.

use std::panic;
use std::process::ExitCode;

use alexnet_shared::guard::{catch, describe, install_quiet_hook, main_guard, report};

#[test]
fn panics_become_errors_and_main_gets_the_panics_own_message() {
    std::env::remove_var("RUST_BACKTRACE"); // which would keep Rust's report (the only test here)
    install_quiet_hook();
    let caught: Result<(), String> = catch(|| panic!("bad huffman table\nC++ backtrace line"));
    let ok = catch(|| Ok::<_, String>(7));
    let plain = catch(|| Err::<(), _>("plain".to_string()));
    // A worker's panic re-raised in main, after a caught one elsewhere.
    let worker = std::thread::spawn(|| panic!("index out of bounds: the len is 3")).join().unwrap_err();
    let _: Result<(), String> = catch(|| panic!("an unrelated decoder panic"));
    let described = describe(worker.as_ref());
    let code = main_guard(|| -> anyhow::Result<ExitCode> { Ok(ExitCode::from(3)) });
    let failed = main_guard(|| -> anyhow::Result<ExitCode> { Err(anyhow::anyhow!("no such file")) });
    // Rust's hook back before asserting, so that a failure is reported.
    let _ = panic::take_hook();
    assert_eq!(caught.unwrap_err(), "panicked: bad huffman table");
    assert_eq!(ok, Ok(7));
    assert_eq!(plain, Err("plain".to_string()));
    assert!(described.starts_with("internal error: index out of bounds: the len is 3 (at "), "{described}");
    assert!(described.contains("guard.rs:"), "{described}");
    assert_eq!(code, ExitCode::from(3));
    assert_eq!(failed, ExitCode::FAILURE);
}

/// The `error:` line: each cause once, libtorch's C++ backtrace dropped, one line.
#[test]
fn an_error_and_its_causes_are_one_line_each_cause_once() {
    // thiserror's `{path}: {source}` spells out its source, which is also its cause.
    let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory (os error 2)");
    let shard = alexnet_shared::Error::io("ds/train-00000.parquet", io);
    let e = anyhow::Error::new(shard).context("opening the train split");
    assert_eq!(report(&e), "opening the train split: ds/train-00000.parquet: No such file or directory (os error 2)");
    // A libtorch message: its first lines, not the frames after them.
    let torch = anyhow::anyhow!(
        "Internal torch error: [enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't \
         allocate memory\nframe #0: c10::ThrowEnforceNotMet(char const*) + 0x6a\nframe #1: c10::alloc_cpu"
    )
    .context("training step 3");
    let r = report(&torch);
    assert_eq!(
        r,
        "training step 3: [enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory"
    );
    // Lines of one message are joined, not lost.
    assert_eq!(report(&anyhow::anyhow!("two problems:\n  a\n  b")), "two problems: a b");
}
