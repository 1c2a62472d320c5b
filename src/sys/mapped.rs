//! A file mapped read-only into memory: the executable's sections are read
//! in place, from the page cache, instead of being copied onto the heap
//! (a debug build's executable is hundreds of MiB).

use std::fs::File;
use std::io;
use std::ops::Deref;
use std::os::fd::AsRawFd;

/// The bytes of a file, mapped read-only and private; unmapped on drop.
pub(crate) struct MappedFile {
    ptr: *const u8,
    len: usize,
}

// SAFETY: the mapping is read-only and owned by this value alone.
unsafe impl Send for MappedFile {}
// SAFETY: as above: shared access only ever reads.
unsafe impl Sync for MappedFile {}

impl MappedFile {
    /// Maps the running executable (`/proc/self/exe`).
    pub(crate) fn executable() -> io::Result<MappedFile> {
        Self::open("/proc/self/exe")
    }

    /// Maps a shared library the process has loaded, by its path.
    pub(crate) fn loaded_library(path: &str) -> io::Result<MappedFile> {
        Self::open(path)
    }

    /// Maps the whole of `path` (an empty file maps to no bytes). Only for
    /// files nothing writes while they are mapped (writes would show
    /// through; truncation would fault on read), as the running executable
    /// and the libraries it has loaded.
    fn open(path: &str) -> io::Result<MappedFile> {
        let file = File::open(path)?;
        let len = usize::try_from(file.metadata()?.len())
            .map_err(|_| io::Error::new(io::ErrorKind::FileTooLarge, "larger than memory"))?;
        if len == 0 {
            return Ok(MappedFile {
                ptr: std::ptr::null(),
                len: 0,
            });
        }
        // SAFETY: a fresh read-only private mapping of an open descriptor;
        // the result is checked before use, and the descriptor may close
        // once the mapping exists.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(MappedFile {
            ptr: ptr.cast(),
            len,
        })
    }
}

impl Deref for MappedFile {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `ptr` maps `len` readable bytes until drop. The file is
        // the running executable (or a test's own file), which the system
        // refuses to open for writing while it runs.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        if self.len != 0 {
            // SAFETY: unmaps exactly the mapping made in `open`, which no
            // borrow outlives (they are tied to `self`).
            unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_a_file_as_its_bytes() {
        let dir = std::env::temp_dir().join(format!("leakscope-mapped-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let full = dir.join("full");
        std::fs::write(&full, b"\x7fELF and more").unwrap();
        let empty = dir.join("empty");
        std::fs::write(&empty, b"").unwrap();
        assert_eq!(
            &*MappedFile::open(full.to_str().unwrap()).unwrap(),
            b"\x7fELF and more"
        );
        assert_eq!(MappedFile::open(empty.to_str().unwrap()).unwrap().len(), 0);
        let missing = MappedFile::open(dir.join("missing").to_str().unwrap());
        assert_eq!(
            missing.err().map(|e| e.kind()),
            Some(io::ErrorKind::NotFound)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
