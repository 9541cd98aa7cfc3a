//! No panic reaches a user: the binaries run their `main` through [`main_guard`], so a
//! panic anywhere (a bug, a decoder that panics on a malformed file, a libtorch error
//! raised as a panic by tch) ends the program with one `error:` line and a failure exit
//! code instead of Rust's panic report; and [`catch`] turns a panic in a unit of work
//! (one image) into that unit's error, silently.
//!
//! `RUST_BACKTRACE=1` restores Rust's own report, for debugging.

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::process::ExitCode;
use std::sync::Mutex;

/// Where and why the last panic happened (the hook records it; nothing is printed).
static LAST: Mutex<Option<String>> = Mutex::new(None);

fn debugging() -> bool {
    std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0")
}

/// The text of a panic payload: its message, or a placeholder.
pub fn panic_message(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".into()
    }
}

/// First non-empty line (libtorch's messages carry a C++ backtrace after it).
fn first_line(s: &str) -> &str {
    s.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("")
}

fn install_quiet_hook() {
    if debugging() {
        return;
    }
    panic::set_hook(Box::new(|info| {
        let msg = panic_message(info.payload());
        let at = info.location().map(|l| format!(" (at {}:{})", l.file(), l.line())).unwrap_or_default();
        if let Ok(mut last) = LAST.lock() {
            *last = Some(format!("{}{at}", first_line(&msg)));
        }
    }));
}

/// Runs a binary's body. `Ok` exits 0; `Err(e)` prints `error: e` (with its causes) and
/// exits 1; a panic prints `error: internal error: MESSAGE (at FILE:LINE)` and exits 1.
pub fn main_guard<E: std::fmt::Display>(body: impl FnOnce() -> Result<ExitCode, E>) -> ExitCode {
    install_quiet_hook();
    match panic::catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
        Err(p) => {
            let recorded = LAST.lock().ok().and_then(|mut l| l.take());
            let what = recorded.unwrap_or_else(|| first_line(&panic_message(p.as_ref())).to_string());
            eprintln!("error: internal error: {what}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `f`; a panic inside it becomes `Err("panicked: MESSAGE")` (nothing printed
/// under [`main_guard`]).
pub fn catch<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => Err(format!("panicked: {}", first_line(&panic_message(p.as_ref())))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_in_a_unit_of_work_is_that_units_error() {
        install_quiet_hook();
        let r: Result<(), String> = catch(|| panic!("bad huffman table\nC++ backtrace line"));
        assert_eq!(r.unwrap_err(), "panicked: bad huffman table");
        assert_eq!(catch(|| Ok::<_, String>(7)), Ok(7));
        assert_eq!(catch(|| Err::<(), _>("plain".to_string())), Err("plain".to_string()));
        let code = main_guard(|| -> Result<ExitCode, String> { panic!("index out of bounds") });
        assert_eq!(code, ExitCode::FAILURE);
        let _ = panic::take_hook();
    }
}
