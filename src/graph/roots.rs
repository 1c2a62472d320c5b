//! The roots of the heap graph: memory that is not a heap block but holds
//! references to blocks. The writable data of the executable and its shared
//! libraries (statics), every thread's stack and thread-locals, and the C
//! library's `brk` heap (where the main thread's thread-locals may live).
//! Read from `/proc/self/maps`.

use std::path::Path;

/// What a root region is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootKind {
    /// Statics and other writable data of a loaded file (its name).
    Statics(String),
    /// The stack of the main thread.
    MainStack,
    /// The stack and thread-locals of the thread with this index.
    Thread(u16),
    /// A thread's stack that leakscope has not seen allocate.
    OtherThread,
    /// The C library's `brk` heap.
    Brk,
}

/// A range of root memory.
#[derive(Clone, Debug)]
pub struct Region {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
    /// What it is.
    pub kind: RootKind,
}

/// One line of `/proc/self/maps`.
#[derive(Debug)]
struct Mapping<'a> {
    start: usize,
    end: usize,
    perms: &'a str,
    path: &'a str,
}

fn parse_line(line: &str) -> Option<Mapping<'_>> {
    let mut it = line.split_ascii_whitespace();
    let range = it.next()?;
    let perms = it.next()?;
    let _offset = it.next()?;
    let _dev = it.next()?;
    let _inode = it.next()?;
    let path = it.next().unwrap_or("");
    let (a, b) = range.split_once('-')?;
    Some(Mapping {
        start: usize::from_str_radix(a, 16).ok()?,
        end: usize::from_str_radix(b, 16).ok()?,
        perms,
        path,
    })
}

/// The root regions described by `maps` (the text of `/proc/self/maps`),
/// given the addresses of each known thread's thread-locals.
pub(super) fn regions(maps: &str, threads: &[(usize, u16)]) -> Vec<Region> {
    let maps: Vec<Mapping> = maps.lines().filter_map(parse_line).collect();
    let mut out = Vec::new();
    for (i, m) in maps.iter().enumerate() {
        if !m.perms.starts_with("rw") {
            continue;
        }
        let prev = i.checked_sub(1).map(|j| &maps[j]);
        let adjacent_prev = prev.filter(|p| p.end == m.start);
        let thread = threads
            .iter()
            .find(|(addr, _)| (m.start..m.end).contains(addr))
            .map(|&(_, index)| index);
        let kind = if m.path == "[stack]" {
            RootKind::MainStack
        } else if let Some(index) = thread {
            RootKind::Thread(index)
        } else if m.path == "[heap]" {
            RootKind::Brk
        } else if m.path.starts_with('/') {
            RootKind::Statics(file_name(m.path))
        } else if !m.path.is_empty() {
            // [vvar], [vsyscall], anonymous names: nothing of the program's.
            continue;
        } else if let Some(p) = adjacent_prev.filter(|p| p.path.starts_with('/')) {
            // The zero-filled end (`.bss`) of the file mapped just before.
            RootKind::Statics(file_name(p.path))
        } else if adjacent_prev.is_some_and(|p| p.perms.starts_with("---")) {
            // An anonymous mapping with a guard page below it: the C
            // library's thread stacks look like this.
            RootKind::OtherThread
        } else {
            continue;
        };
        out.push(Region {
            start: m.start,
            end: m.end,
            kind,
        });
    }
    out
}

fn file_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map_or_else(|| path.to_string(), |n| n.to_string_lossy().into_owned())
}

/// The anonymous writable mappings of `maps`, in address order: where the
/// allocator's blocks are (and thread stacks, which do not matter here).
pub(super) fn anonymous(maps: &str) -> Vec<(usize, usize)> {
    maps.lines()
        .filter_map(parse_line)
        .filter(|m| m.perms.starts_with("rw") && m.path.is_empty())
        .map(|m| (m.start, m.end))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d000000000-55d000001000 r--p 00000000 fd:01 123 /usr/bin/app
55d000001000-55d000002000 rw-p 00001000 fd:01 123 /usr/bin/app
55d000002000-55d000004000 rw-p 00000000 00:00 0
55d000010000-55d000020000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0000200000 rw-p 00000000 00:00 0
7f0000300000-7f0000301000 ---p 00000000 00:00 0
7f0000301000-7f0000501000 rw-p 00000000 00:00 0
7f0000600000-7f0000601000 ---p 00000000 00:00 0
7f0000601000-7f0000801000 rw-p 00000000 00:00 0
7f0000900000-7f0000901000 rw-p 00002000 fd:01 77 /usr/lib/libc.so.6
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
7ffd00030000-7ffd00032000 r--p 00000000 00:00 0 [vvar]
";

    #[test]
    fn statics_bss_stacks_and_brk_are_roots_and_plain_anonymous_memory_is_not() {
        let r = regions(MAPS, &[(0x7f0000500f00, 3)]);
        let got: Vec<(usize, RootKind)> = r.iter().map(|r| (r.start, r.kind.clone())).collect();
        assert_eq!(
            got,
            [
                (0x55d000001000, RootKind::Statics("app".into())),
                (0x55d000002000, RootKind::Statics("app".into())),
                (0x55d000010000, RootKind::Brk),
                (0x7f0000301000, RootKind::Thread(3)),
                (0x7f0000601000, RootKind::OtherThread),
                (0x7f0000900000, RootKind::Statics("libc.so.6".into())),
                (0x7ffd00000000, RootKind::MainStack),
            ]
        );
    }
}
