//! How close the process is to its address-space limit (`ulimit -v`,
//! `prlimit --as`): an allocation past it fails, and a failed allocation
//! outside leakscope's fallible paths aborts the process. Background work
//! that allocates much (the growth history's heaps) asks first.

/// Bytes the process may still map under its address-space limit: `None`
/// when it has no such limit or the figures cannot be read.
pub(crate) fn address_space_room() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the limit into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut limit) } != 0
        || limit.rlim_cur == libc::RLIM_INFINITY
    {
        return None;
    }
    // The first field of statm is the mapped size, in pages.
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().next()?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let mapped = pages * u64::try_from(page).ok()?;
    Some(limit.rlim_cur.saturating_sub(mapped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_limit_there_is_no_room_to_count() {
        // The test runner has no address-space limit.
        assert_eq!(address_space_room(), None);
    }
}
