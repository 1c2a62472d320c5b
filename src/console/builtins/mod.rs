//! leakscope's own names in the console, registered through the same host
//! API as the program's objects and functions: one table serves lookup,
//! `from … import …` and `help()`. Each module is one package of names.

mod allocator;
mod core;
mod dump;
mod heapy;
mod mode;
mod pympler;
mod python;
mod trackref;

use super::host::Host;

/// Registers every built-in, in the order `help()` lists them.
pub(crate) fn register(host: &mut Host) {
    trackref::register(host);
    heapy::register(host);
    allocator::register(host);
    mode::register(host);
    dump::register(host);
    pympler::register(host);
    python::register(host);
    core::register(host);
}
