//! The panic guard of the binaries (`alexnet_shared::guard`), in its own test binary:
//! it installs a process-wide panic hook.

use std::panic;
use std::process::ExitCode;

use alexnet_shared::guard::{catch, describe, install_quiet_hook, main_guard};

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
    let code = main_guard(|| -> Result<ExitCode, String> { Ok(ExitCode::from(3)) });
    let failed = main_guard(|| -> Result<ExitCode, String> { Err("no such file".into()) });
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
