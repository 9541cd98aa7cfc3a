//! No panic reaches a user: the binaries run their `main` through [`main_guard`], so a
//! panic anywhere (a bug, a decoder that panics on a malformed file, a libtorch error
//! raised as a panic by tch) ends the program with one `error:` line and a failure exit
//! code instead of Rust's panic report; and [`catch`] turns a panic in a unit of work
//! (one image) into that unit's error, silently.
//!
//! `RUST_BACKTRACE=1` restores Rust's own report, for debugging.

use std::any::Any;
use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::process::ExitCode;
use std::sync::Mutex;

/// Where each panic not inside [`catch`] happened, by message (the hook records them;
/// nothing is printed). A panic that reaches `main` from another thread (a worker's,
/// re-raised) is matched here by its message to find its location.
static SEEN: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

thread_local! {
    /// Inside [`catch`]: the panic is that unit of work's error; nothing to record.
    static CATCHING: Cell<bool> = const { Cell::new(false) };
}

fn debugging() -> bool {
    std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0")
}

/// The first line of a panic payload's message (libtorch's messages carry a C++
/// backtrace after it), or a placeholder.
pub fn panic_message(p: &(dyn Any + Send)) -> String {
    let full = if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        return "a panic without a message".into();
    };
    full.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("").to_string()
}

/// Replaces Rust's panic report with a silent record (see [`SEEN`]), unless
/// `RUST_BACKTRACE` asks for the report.
pub fn install_quiet_hook() {
    if debugging() {
        return;
    }
    panic::set_hook(Box::new(|info| {
        if CATCHING.with(Cell::get) {
            return;
        }
        let at = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        if let Ok(mut seen) = SEEN.lock() {
            if seen.len() < 64 {
                seen.push((panic_message(info.payload()), at));
            }
        }
    }));
}

/// `internal error: MESSAGE (at FILE:LINE)` for a panic payload that reached `main`.
pub fn describe(p: &(dyn Any + Send)) -> String {
    let msg = panic_message(p);
    let at = SEEN.lock().ok().and_then(|s| s.iter().rev().find(|(m, _)| *m == msg).map(|(_, a)| a.clone()));
    match at {
        Some(a) if !a.is_empty() => format!("internal error: {msg} (at {a})"),
        _ => format!("internal error: {msg}"),
    }
}

/// Runs a binary's body. `Ok` exits with its code; `Err(e)` prints `error: ` and
/// [`report`] of it (one line) and exits 1; a panic prints `error: internal error:
/// MESSAGE (at FILE:LINE)` and exits 1. (Usage errors are clap's before this: an `error:`
/// line, a usage hint, exit 2.)
pub fn main_guard<E: Into<anyhow::Error>>(body: impl FnOnce() -> Result<ExitCode, E>) -> ExitCode {
    install_quiet_hook();
    match panic::catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            crate::err_line!("error: {}", report(&e.into()));
            ExitCode::FAILURE
        }
        Err(p) => {
            crate::err_line!("error: {}", describe(p.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, `message: cause: cause`: a cause its message
/// already spells out (`{path}: {source}`) is not repeated, and libtorch's C++
/// backtrace (the lines from `frame #0:` or `Exception raised from` on) is dropped.
pub fn report(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = one_line(&cause.to_string());
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// The lines of one message joined by spaces, up to a libtorch backtrace.
fn one_line(text: &str) -> String {
    let text = text.strip_prefix("Internal torch error: ").unwrap_or(text);
    text.lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("frame #") && !l.starts_with("Exception raised from"))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `f`; a panic inside it becomes `Err("panicked: MESSAGE")`, recorded nowhere and
/// printed by no hook of [`main_guard`]'s.
pub fn catch<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    let was = CATCHING.with(|c| c.replace(true));
    let r = panic::catch_unwind(AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(was));
    match r {
        Ok(r) => r,
        Err(p) => Err(format!("panicked: {}", panic_message(p.as_ref()))),
    }
}
