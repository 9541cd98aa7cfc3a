//! Lines to stderr and stdout that never panic: `eprintln!` and `println!` panic when
//! the stream is a closed pipe (`train run ... 2>&1 | head`), which ended a training
//! run with Rust's exit code 101 in the middle of an epoch. [`err_line!`] and
//! [`out_line!`] write the same line and drop it when nobody reads it any more: the
//! program goes on (a training run still writes its checkpoints and exits with its own
//! code).

use std::fmt;
use std::io::Write;

/// `eprintln!` that never panics (see the module).
#[macro_export]
macro_rules! err_line {
    () => {
        $crate::say::err_write(format_args!(""))
    };
    ($($t:tt)*) => {
        $crate::say::err_write(format_args!($($t)*))
    };
}

/// `println!` that never panics (see the module).
#[macro_export]
macro_rules! out_line {
    () => {
        $crate::say::out_write(format_args!(""))
    };
    ($($t:tt)*) => {
        $crate::say::out_write(format_args!($($t)*))
    };
}

/// Writes `args` and a newline to stderr; an error (a closed pipe) is ignored.
pub fn err_write(args: fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr().lock(), "{args}");
}

/// Writes `args` and a newline to stdout; an error (a closed pipe) is ignored.
pub fn out_write(args: fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{args}").and_then(|()| out.flush());
}

/// Writes `text` as it is (no newline added) to stdout or stderr; errors are ignored.
pub fn write_text(stderr: bool, text: &str) {
    let _ = if stderr {
        std::io::stderr().lock().write_all(text.as_bytes())
    } else {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes()).and_then(|()| out.flush())
    };
}
