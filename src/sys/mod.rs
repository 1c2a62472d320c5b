//! What the operating system gives the layers above: clocks, a lock that
//! never allocates, and reading the environment without allocating. Nothing
//! here knows what leakscope records.

pub(crate) mod clock;
pub(crate) mod env;
pub(crate) mod lock;
