//! Reading the environment without allocating: the allocator reads its
//! variables on its first allocation, possibly before `main`, where nothing
//! may allocate.

/// The value of the NUL-terminated variable `name`, if set.
pub(crate) fn getenv(name: &'static [u8]) -> Option<&'static [u8]> {
    debug_assert_eq!(name.last(), Some(&0), "names are NUL-terminated");
    // SAFETY: `name` is NUL-terminated; getenv does not allocate; the value
    // lives as long as the environment is not modified, and callers copy
    // nothing out of it beyond their own use.
    unsafe {
        let v = libc::getenv(name.as_ptr().cast());
        if v.is_null() {
            None
        } else {
            Some(std::ffi::CStr::from_ptr(v).to_bytes())
        }
    }
}

/// A decimal whole number (no sign, at most 19 digits).
pub(crate) fn parse_u64(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 19 {
        return None;
    }
    text.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + (b - b'0') as u64)
    })
}

/// Writes a warning to stderr without allocating.
pub(crate) fn warn(parts: &[&[u8]]) {
    for p in parts {
        // SAFETY: writes a valid buffer to fd 2; errors are ignored.
        unsafe { libc::write(2, p.as_ptr().cast(), p.len()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_only() {
        assert_eq!(parse_u64(b"524288"), Some(524288));
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"-1"), None);
        assert_eq!(parse_u64(b"12a"), None);
        assert_eq!(parse_u64(b"99999999999999999999"), None);
    }
}
