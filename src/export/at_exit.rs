//! `LEAKSCOPE_DHAT_OUT`: a DHAT file written when the process exits.
//!
//! A constructor (run by the dynamic loader before `main`, from the
//! executable's `.init_array`) registers the writer with `atexit` when the
//! variable is set, so the allocator below knows nothing of exports.

use crate::config;

/// Run before `main`: registers [`write_at_exit`] when `LEAKSCOPE_DHAT_OUT`
/// is set. Reads the variable without allocating.
extern "C" fn register() {
    if config::DHAT_OUT.raw().is_some() {
        // SAFETY: registering a plain extern "C" function.
        unsafe { libc::atexit(write_at_exit) };
    }
}

#[used]
#[unsafe(link_section = ".init_array")]
static REGISTER: extern "C" fn() = register;

/// Writes the file `LEAKSCOPE_DHAT_OUT` names.
extern "C" fn write_at_exit() {
    let Some(path) = config::DHAT_OUT.path() else {
        return;
    };
    match super::dhat::write(&path) {
        Ok(f) => eprintln!(
            "leakscope: DHAT file written to {} ({} program points); open it with dh_view.html",
            path.display(),
            f.pps.len()
        ),
        Err(e) => eprintln!(
            "leakscope: cannot write the DHAT file {}: {e}",
            path.display()
        ),
    }
}
