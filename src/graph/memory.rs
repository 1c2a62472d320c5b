//! Reading the process's own memory without ever faulting: a block freed
//! (and its pages given back) while the graph is built reads as an error,
//! not a crash. `process_vm_readv` on the process itself, many ranges per
//! call; `/proc/self/mem` where that call is refused (some sandboxes).

use std::fs::File;
use std::os::unix::fs::FileExt;

/// Bytes read per call at most.
pub(super) const BATCH_BYTES: usize = 4 << 20;
/// Ranges per call at most (the kernel's `IOV_MAX`).
const BATCH_RANGES: usize = 1024;

/// One range to read: its address and length, and who asked.
#[derive(Clone, Copy, Debug)]
pub(super) struct Piece {
    /// Address of the first byte.
    pub(super) addr: usize,
    /// Bytes to read (at most [`BATCH_BYTES`]).
    pub(super) len: usize,
    /// What the caller reads it for (a block or root index).
    pub(super) owner: u32,
    /// Offset of `addr` inside the owner.
    pub(super) offset: usize,
}

/// Reads ranges of this process's memory.
pub(super) struct Reader {
    buf: Vec<u8>,
    /// `/proc/self/mem`, once `process_vm_readv` was refused.
    mem: Option<File>,
    /// Ranges that could not be read (freed and unmapped meanwhile).
    pub(super) unreadable: u64,
}

impl Reader {
    pub(super) fn new() -> Reader {
        Reader {
            buf: vec![0; BATCH_BYTES],
            mem: None,
            unreadable: 0,
        }
    }

    /// Reads every piece, calling `f(piece, bytes)` for each one read in
    /// full; pieces that cannot be read are counted in `unreadable`.
    pub(super) fn read_all(&mut self, pieces: &[Piece], mut f: impl FnMut(&Piece, &[u8])) {
        let mut i = 0;
        while i < pieces.len() {
            crate::sys::cancel::batch_point();
            // A batch: as many pieces as fit the buffer and the range limit.
            let mut end = i;
            let mut bytes = 0;
            while end < pieces.len()
                && end - i < BATCH_RANGES
                && bytes + pieces[end].len <= self.buf.len()
            {
                bytes += pieces[end].len;
                end += 1;
            }
            if end == i {
                // A piece longer than the buffer: callers split them.
                self.unreadable += 1;
                i += 1;
                continue;
            }
            let done = self.read_batch(&pieces[i..end], bytes);
            let mut at = 0;
            for p in &pieces[i..i + done] {
                f(p, &self.buf[at..at + p.len]);
                at += p.len;
            }
            if done < end - i {
                // The piece at `i + done` failed: skip it, go on after it.
                self.unreadable += 1;
                i += done + 1;
            } else {
                i = end;
            }
        }
    }

    /// Reads `pieces` (of `bytes` in all) into the buffer, back to back;
    /// returns how many were read in full, in order.
    fn read_batch(&mut self, pieces: &[Piece], bytes: usize) -> usize {
        if self.mem.is_none() {
            match self.vm_readv(pieces, bytes) {
                Ok(n) => return n,
                Err(()) => {
                    self.mem = File::open("/proc/self/mem").ok();
                    if self.mem.is_none() {
                        return 0;
                    }
                }
            }
        }
        let Some(mem) = &self.mem else {
            return 0;
        };
        let mut at = 0;
        for (k, p) in pieces.iter().enumerate() {
            match mem.read_exact_at(&mut self.buf[at..at + p.len], p.addr as u64) {
                Ok(()) => at += p.len,
                Err(_) => return k,
            }
        }
        pieces.len()
    }

    /// `Err` when the call itself is refused (not a bad address).
    fn vm_readv(&mut self, pieces: &[Piece], bytes: usize) -> Result<usize, ()> {
        let local = libc::iovec {
            iov_base: self.buf.as_mut_ptr().cast(),
            iov_len: bytes,
        };
        let remote: Vec<libc::iovec> = pieces
            .iter()
            .map(|p| libc::iovec {
                iov_base: p.addr as *mut libc::c_void,
                iov_len: p.len,
            })
            .collect();
        // SAFETY: `local` is our buffer of at least `bytes` bytes; the
        // kernel checks the remote ranges and reports a bad one as an error
        // or a short count instead of faulting.
        let n = unsafe {
            libc::process_vm_readv(
                libc::getpid(),
                &local,
                1,
                remote.as_ptr(),
                remote.len() as libc::c_ulong,
                0,
            )
        };
        if n < 0 {
            let err = std::io::Error::last_os_error().raw_os_error();
            return match err {
                Some(libc::EFAULT) | Some(libc::ESRCH) => Ok(0),
                Some(libc::ENOMEM) => Ok(0),
                _ => Err(()),
            };
        }
        // Whole pieces within the count.
        let mut left = n as usize;
        let mut done = 0;
        for p in pieces {
            if left < p.len {
                break;
            }
            left -= p.len;
            done += 1;
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_live_memory_and_skips_an_unmapped_range() {
        let data: Vec<u64> = (0..1000).collect();
        // An address that is never mapped.
        let bad = Piece {
            addr: 8,
            len: 64,
            owner: 1,
            offset: 0,
        };
        let good = |owner, offset| Piece {
            addr: data.as_ptr() as usize + offset,
            len: 800,
            owner,
            offset,
        };
        let mut r = Reader::new();
        let mut seen = Vec::new();
        r.read_all(&[good(0, 0), bad, good(2, 800)], |p, bytes| {
            let first = u64::from_ne_bytes(bytes[..8].try_into().unwrap());
            seen.push((p.owner, first, bytes.len()));
        });
        assert_eq!(seen, [(0, 0, 800), (2, 100, 800)]);
        assert_eq!(r.unreadable, 1);
    }
}
