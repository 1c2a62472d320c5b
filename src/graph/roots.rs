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
    Thread(u32),
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
/// given the addresses of each known thread's thread-locals (with its
/// index) and, when every other live thread could be placed, the stack
/// pointers of those others (`others`). A mapping laid out like a thread's
/// stack that no live thread runs on is the C library's cached stack of a
/// thread that ended: what it holds is stale, and it is no root.
pub(super) fn regions(
    maps: &str,
    threads: &[(usize, u32)],
    others: Option<&[usize]>,
) -> Vec<Region> {
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
            if others.is_some_and(|sps| !sps.iter().any(|sp| (m.start..m.end).contains(sp))) {
                continue;
            }
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

/// The stack pointers of the live threads other than the main thread and
/// those in `registered` (operating-system ids), as the kernel shows them
/// for a thread waiting in a system call. `None` when one of them cannot
/// be placed (it is running, or its file cannot be read): then every
/// mapping laid out like a stack stays a root.
pub(super) fn other_stack_pointers(registered: &[u32]) -> Option<Vec<usize>> {
    let main = std::process::id();
    let mut sps = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task").ok()? {
        let name = entry.ok()?.file_name();
        let tid: u32 = name.to_str()?.parse().ok()?;
        if tid == main || registered.contains(&tid) {
            continue;
        }
        let syscall = std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall"));
        match syscall {
            Ok(text) => sps.push(stack_pointer(&text)?),
            // Ended since it was listed.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(_) => return None,
        }
    }
    Some(sps)
}

/// The stack pointer in a thread's `syscall` file: the next to last
/// field of a thread that waits (`running` has none).
fn stack_pointer(syscall: &str) -> Option<usize> {
    let fields: Vec<&str> = syscall.split_whitespace().collect();
    if fields.len() < 3 {
        return None;
    }
    let sp = fields[fields.len() - 2].strip_prefix("0x")?;
    usize::from_str_radix(sp, 16).ok()
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
        let r = regions(MAPS, &[(0x7f0000500f00, 3)], None);
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

    #[test]
    fn a_stack_no_live_thread_runs_on_is_no_root() {
        // The thread on the stack at 0x7f0000601000 ended; one waits on
        // a stack of its own elsewhere.
        let r = regions(MAPS, &[(0x7f0000500f00, 3)], Some(&[0x7f0000a00000]));
        assert!(r.iter().all(|r| r.kind != RootKind::OtherThread), "{r:?}");
        assert_eq!(r.len(), 6);
        // It runs there.
        let r = regions(MAPS, &[], Some(&[0x7f00007ff000]));
        let kinds: Vec<&RootKind> = r.iter().map(|r| &r.kind).collect();
        assert!(kinds.contains(&&RootKind::OtherThread), "{kinds:?}");
    }

    #[test]
    fn the_stack_pointer_of_a_waiting_thread_and_none_of_a_running_one() {
        let waiting = "202 0x7f12 0x80 0x0 0x0 0x0 0x0 0x7f0000700f30 0x7f99aa\n";
        assert_eq!(stack_pointer(waiting), Some(0x7f0000700f30));
        assert_eq!(stack_pointer("running\n"), None);
        assert_eq!(stack_pointer("-1 0x7ffd1230 0x55aa\n"), Some(0x7ffd1230));
    }

    #[test]
    fn a_thread_waiting_in_this_process_is_placed_on_its_own_stack() {
        let (tx, rx) = std::sync::mpsc::channel::<(u32, usize)>();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let waiter = std::thread::spawn(move || {
            let here = 0u8;
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() } as u32;
            tx.send((tid, std::ptr::addr_of!(here) as usize)).unwrap();
            stop_rx.recv()
        });
        let (tid, local) = rx.recv().unwrap();
        // Every other thread of this test binary counts as registered:
        // only the waiter is to be placed.
        let others: Vec<u32> = std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|&t| t != tid)
            .collect();
        // Until it waits, it runs and cannot be placed.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let sps = loop {
            if let Some(sps) = other_stack_pointers(&others) {
                break sps;
            }
            assert!(std::time::Instant::now() < deadline, "never placed");
            std::thread::yield_now();
        };
        assert_eq!(sps.len(), 1, "{sps:x?}");
        assert!(sps[0].abs_diff(local) < 64 << 10, "{:x} {local:x}", sps[0]);
        drop(stop_tx);
        waiter.join().unwrap().unwrap_err();
    }
}
