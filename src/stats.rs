//! Allocator figures: leakscope's counters and jemalloc's own statistics,
//! and returning unused pages to the operating system.

use crate::tracker::{self, Mode};

/// An error from jemalloc's control interface.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a `mallctl` key failed.
    #[error("jemalloc: {key} failed: {source}")]
    Jemalloc {
        /// The key (`stats.allocated`, `epoch` …).
        key: &'static str,
        /// jemalloc's error.
        #[source]
        source: tikv_jemalloc_ctl::Error,
    },
    /// Purging the arenas failed.
    #[error("jemalloc: {key} failed: {source}")]
    Purge {
        /// The key.
        key: &'static str,
        /// The error number jemalloc returned.
        #[source]
        source: std::io::Error,
    },
}

fn ctl<T>(key: &'static str, r: Result<T, tikv_jemalloc_ctl::Error>) -> Result<T, Error> {
    r.map_err(|source| Error::Jemalloc { key, source })
}

/// jemalloc's own figures (bytes), read after advancing its statistics epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JemallocStats {
    /// Bytes in blocks the program holds.
    pub allocated: u64,
    /// Bytes in active pages (allocated plus fragmentation in those pages).
    pub active: u64,
    /// Bytes in physically resident pages the allocator holds.
    pub resident: u64,
    /// Bytes in active extents mapped by the allocator.
    pub mapped: u64,
    /// Bytes retained: unmapped from use but kept as virtual memory.
    pub retained: u64,
    /// Bytes of the allocator's own metadata.
    pub metadata: u64,
}

impl JemallocStats {
    /// Reads the figures now.
    pub fn read() -> Result<Self, Error> {
        use tikv_jemalloc_ctl::{epoch, stats};
        ctl("epoch", epoch::advance())?;
        Ok(JemallocStats {
            allocated: ctl("stats.allocated", stats::allocated::read())? as u64,
            active: ctl("stats.active", stats::active::read())? as u64,
            resident: ctl("stats.resident", stats::resident::read())? as u64,
            mapped: ctl("stats.mapped", stats::mapped::read())? as u64,
            retained: ctl("stats.retained", stats::retained::read())? as u64,
            metadata: ctl("stats.metadata", stats::metadata::read())? as u64,
        })
    }
}

/// leakscope's counters and jemalloc's figures at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// The mode in force (`None` before the first allocation).
    pub mode: Option<Mode>,
    /// Bytes in live blocks (allocated minus freed) as the program asked for them.
    pub live_bytes: u64,
    /// Live blocks.
    pub live_blocks: u64,
    /// Bytes allocated since the start (a realloc counts its new size).
    pub total_bytes: u64,
    /// Blocks allocated since the start (a realloc counts one).
    pub total_blocks: u64,
    /// Bytes freed since the start.
    pub freed_bytes: u64,
    /// Blocks freed since the start.
    pub freed_blocks: u64,
    /// The peak of live bytes. Exact in exact mode since tracking began
    /// (the recorder's peak); otherwise an estimate updated every ~mean-gap
    /// bytes each thread allocates, so it may be low by about
    /// [`Stats::peak_tolerance`].
    pub peak_live_bytes: u64,
    /// About how far `peak_live_bytes` may be below the true peak (threads ×
    /// the sampling mean; 0 when exact).
    pub peak_tolerance: u64,
    /// Threads whose counters are registered now.
    pub threads: usize,
    /// The longest any thread has waited for one of the recorder's locks
    /// since the start: how long leakscope itself has stalled an allocation.
    /// Views copy the recorder without taking its locks, so what is left is
    /// threads freeing each other's blocks at once, and the host's
    /// scheduling of a lock's holder. Waits that a short spin ends (well
    /// under 10 µs) are not measured.
    pub longest_tracker_wait: std::time::Duration,
    /// Parts of the recorder that views copied under its locks (an
    /// allocating thread then perhaps waiting for the copy) because copies
    /// without them kept being torn by the thread changing that part.
    pub locked_copies: u64,
    /// Bytes leakscope holds for itself, not counted in the figures above:
    /// everything its own code allocated (the recorder, the symbol cache,
    /// scratch space of snapshots). Bounded: see [`crate::symbols`] for
    /// the cache's cap.
    pub own_bytes: u64,
    /// Of [`Stats::own_bytes`], what the recorder's tables take.
    pub recorder_bytes: u64,
    /// Of [`Stats::own_bytes`], what symbols take (an estimate): the frames
    /// resolved, the index of the debug information, the type layouts
    /// read. The rest is the console's sessions and their views.
    pub debug_info_bytes: u64,
    /// The bound leakscope keeps its own memory within outside exact mode:
    /// [`OWN_MEMORY_FIXED`] plus a twentieth of the live bytes (in exact
    /// mode the recorder adds at most 48 bytes per live block to it).
    pub own_bound: u64,
    /// Past this much of its own memory, leakscope makes no new snapshot
    /// or heap graph for a console line or an HTTP request (see
    /// [`crate::tracker::views_budget`]).
    pub views_budget: u64,
    /// jemalloc's figures.
    pub jemalloc: JemallocStats,
}

/// The fixed part of the bound on leakscope's own memory (see
/// [`Stats::own_bound`]).
pub const OWN_MEMORY_FIXED: u64 = 16 << 20;

/// Reads the counters (summed over threads) and jemalloc's figures.
///
/// The counters are exact in every mode but `off`: each thread counts its own
/// allocations, and the sum is taken here. After a switch from `off`, frees
/// of blocks allocated while off are counted too, so live figures are exact
/// only for a process that never ran in `off`.
pub fn stats() -> Result<Stats, Error> {
    let jemalloc = JemallocStats::read()?;
    let c = tracker::counter_totals();
    let live_bytes = c.alloc_bytes.saturating_sub(c.free_bytes);
    let mode = tracker::mode();
    let (peak, tolerance) = if mode == Mode::Exact {
        (tracker::totals().peak_bytes.max(live_bytes), 0)
    } else {
        let tol = (c.threads.max(1) as u64) * tracker::sample_bytes();
        (c.peak_estimate.max(live_bytes), tol)
    };
    Ok(Stats {
        mode: Some(mode),
        live_bytes,
        live_blocks: c.alloc_blocks.saturating_sub(c.free_blocks),
        total_bytes: c.alloc_bytes,
        total_blocks: c.alloc_blocks,
        freed_bytes: c.free_bytes,
        freed_blocks: c.free_blocks,
        peak_live_bytes: peak,
        peak_tolerance: tolerance,
        threads: c.threads,
        longest_tracker_wait: c.longest_wait,
        locked_copies: tracker::locked_copies(),
        own_bytes: c.own_bytes,
        recorder_bytes: {
            let m = tracker::memory();
            m.live_table + m.stacks
        },
        debug_info_bytes: crate::symbols::memory(),
        own_bound: OWN_MEMORY_FIXED + live_bytes / 20,
        views_budget: tracker::views_budget(live_bytes),
        jemalloc,
    })
}

/// What [`purge`] gave back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PurgeReport {
    /// jemalloc's figures before.
    pub before: JemallocStats,
    /// jemalloc's figures after.
    pub after: JemallocStats,
}

impl PurgeReport {
    /// Resident bytes returned to the operating system.
    pub fn freed_resident(&self) -> u64 {
        self.before.resident.saturating_sub(self.after.resident)
    }
}

/// Returns unused dirty pages of every arena to the operating system (the
/// "leak without a leak": resident far above allocated) and reports the
/// figures before and after.
pub fn purge() -> Result<PurgeReport, Error> {
    let before = JemallocStats::read()?;
    // "arena.<MALLCTL_ARENAS_ALL>.purge" takes no value: it must be called
    // with no old and no new pointer, which the typed wrappers cannot do.
    let name = b"arena.4096.purge\0";
    // SAFETY: a NUL-terminated name and null pointers, as this mallctl wants.
    let rc = unsafe {
        tikv_jemalloc_sys::mallctl(
            name.as_ptr().cast(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        )
    };
    if rc != 0 {
        return Err(Error::Purge {
            key: "arena.4096.purge",
            source: std::io::Error::from_raw_os_error(rc),
        });
    }
    let after = JemallocStats::read()?;
    Ok(PurgeReport { before, after })
}
