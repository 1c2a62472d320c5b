//! What the operating system gives the layers above: clocks, stopping
//! long work from outside it, a lock that
//! never allocates (and one biased towards an owner thread), arrays that
//! readers copy without a lock, mutexes a
//! forked child can always take, reading the
//! environment without allocating, the executable mapped read-only, and
//! the room left under the address-space limit.
//! Nothing here knows what leakscope records.

pub(crate) mod biased;
pub(crate) mod cancel;
pub(crate) mod clock;
pub(crate) mod env;
pub(crate) mod fork;
pub(crate) mod limit;
pub(crate) mod lock;
pub(crate) mod mapped;
pub(crate) mod operator;
pub(crate) mod published;
