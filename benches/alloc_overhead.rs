//! The allocator's cost in each mode, as ratios against plain
//! tikv-jemallocator measured in the same run, and the tracker's memory.
//!
//! Workload: alloc+free pairs of mixed sizes (16 B – 4 KiB), each block living
//! for 64 operations, on 1 and 2 threads, from a shallow stack and from 30
//! frames deeper. Every allocator is called through `&dyn GlobalAlloc`: one
//! real call per operation, as a program pays it through the `__rust_alloc`
//! symbol (std's collections are precompiled and always call it), and never
//! an inlined copy of one allocator but not the other. The speed of a
//! shared virtual machine drifts by a third from one moment to the next, so
//! every subject runs in pairs with jemalloc, back to back (in alternating
//! order, round by round, worker `k` always on CPU `k`), and its figure is
//! the median over the rounds of its time divided by its partner's: a slow
//! stretch moves both times of a pair, and the median drops the pairs that
//! one hiccup split. dhat::Alloc runs the same workload for comparison (it
//! wraps the system allocator), and so does jemalloc's own heap profiler,
//! from `fixtures/jeprof` (built here with the profiler compiled in, and
//! timed active against inactive, since its build cannot share this one's
//! jemalloc).
//!
//! Timing on a shared machine moves by ±20% from run to run, far more than
//! the few percent the targets are about; so when Valgrind is installed the
//! bench also counts instructions per pair under callgrind (one thread,
//! deterministic): the bench runs itself with `--count SUBJECT DEPTH OPS`
//! at two operation counts, and the difference divided by the difference
//! in pairs is the cost of one pair, the loop's own instructions included
//! (as they are in the timings).
//!
//! Run: `cargo bench --bench alloc_overhead` (set `BENCH_QUICK=1` for a short
//! run, `BENCH_ONLY=off,exact` to time only those subjects, `BENCH_DEBUG=1` to
//! print every pair).

mod workload;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use workload::{churn, deep, median, sizes};

use leakscope::{Alloc, Mode};
use tikv_jemallocator::Jemalloc;

#[global_allocator]
static GLOBAL: Alloc = Alloc::new();

static TRACKED: Alloc = Alloc::new();

#[derive(Clone, Copy, PartialEq)]
enum Subject {
    Jemalloc,
    Leakscope(Mode),
    Dhat,
}

impl Subject {
    fn name(self) -> String {
        match self {
            Subject::Jemalloc => "jemalloc".into(),
            Subject::Leakscope(m) => format!("leakscope {}", m.name()),
            Subject::Dhat => "dhat::Alloc".into(),
        }
    }
}

/// Nanoseconds per alloc+free pair, per thread.
fn measure(
    subject: Subject,
    threads: usize,
    depth: usize,
    ops: usize,
    sizes: &Arc<Vec<usize>>,
) -> f64 {
    if let Subject::Leakscope(m) = subject {
        leakscope::set_mode(m);
    }
    let _profiler = (subject == Subject::Dhat).then(|| dhat::Profiler::builder().testing().build());
    let ns = workload::time_threads(
        threads,
        sizes,
        move |sizes, n| run(subject, sizes, n, depth),
        ops,
    );
    leakscope::set_mode(Mode::Sampled);
    ns
}

fn run(subject: Subject, sizes: &[usize], ops: usize, depth: usize) {
    let mut f = || match subject {
        Subject::Jemalloc => churn(&Jemalloc, sizes, ops),
        Subject::Leakscope(_) => churn(&TRACKED, sizes, ops),
        Subject::Dhat => churn(&dhat::Alloc, sizes, ops),
    };
    deep(depth, &mut f);
}

/// A timing row's cells: jemalloc's median time, then each other subject's
/// median ratio to the jemalloc run paired with it, and its median time.
fn paired_cells(times: &[Vec<f64>], ratios: &[Vec<f64>]) -> String {
    let mut cells = vec![format!("{:.1} ns", median(&times[0]))];
    for (t, r) in times.iter().zip(ratios).skip(1) {
        cells.push(format!("{:.2}× ({:.1} ns)", median(r), median(t)));
    }
    cells.join(" | ")
}

fn memory_per_block() {
    println!("\n## Tracker memory\n");
    println!("| mode | live blocks | fixed | per live block |");
    println!("|---|---:|---:|---:|");
    leakscope::tracker::reset();
    // Every quarter octave from 125 k to 2 M blocks: hash tables double, so
    // a figure at one size alone could hide the worst point.
    for n in (0..=16).map(|k| (125_000.0 * 2f64.powf(k as f64 / 4.0)) as usize) {
        leakscope::set_mode(Mode::Exact);
        let kept: Vec<Box<u64>> = (0..n as u64).map(Box::new).collect();
        leakscope::set_mode(Mode::Sampled);
        let m = leakscope::tracker::memory();
        println!(
            "| exact | {} | {} KiB | {:.1} B |",
            m.live_blocks,
            m.fixed / 1024,
            m.per_live_block()
        );
        drop(kept);
        leakscope::tracker::reset();
    }
    leakscope::set_mode(Mode::Sampled);
    let kept: Vec<Vec<u8>> = (0..400_000).map(|_| vec![0u8; 1024]).collect();
    let m = leakscope::tracker::memory();
    println!(
        "| sampled (400 MB live) | {} samples | {} KiB | {:.1} B per sample |",
        m.live_blocks,
        m.fixed / 1024,
        m.per_live_block()
    );
    drop(kept);
}

/// Instructions callgrind counts for `--count SUBJECT DEPTH OPS`; None if
/// Valgrind cannot be run.
fn callgrind_instructions(subject: usize, depth: usize, ops: usize) -> Option<u64> {
    let exe = std::env::current_exe().ok()?;
    let out = std::process::Command::new("valgrind")
        .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
        .arg(exe)
        .args([
            "--count",
            &subject.to_string(),
            &depth.to_string(),
            &ops.to_string(),
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stderr);
    let line = text.lines().find(|l| l.contains("Collected :"))?;
    line.rsplit(':')
        .next()?
        .trim()
        .replace(',', "")
        .parse()
        .ok()
}

/// The table of instructions per alloc+free pair, or a line saying why not.
fn instruction_table(subjects: &[Subject], ops: usize) {
    println!("\n## Instructions per alloc+free pair (callgrind, 1 thread)\n");
    let names: Vec<String> = subjects.iter().map(|s| s.name()).collect();
    let mut rows = Vec::new();
    for depth in [0usize, 30] {
        let mut cells = Vec::new();
        for (i, s) in subjects.iter().enumerate() {
            let n = ops_for(*s, ops);
            let (Some(a), Some(b)) = (
                callgrind_instructions(i, depth, n),
                callgrind_instructions(i, depth, 2 * n),
            ) else {
                println!("(valgrind is not installed or failed: no instruction counts)");
                return;
            };
            cells.push(b.saturating_sub(a) as f64 / n as f64);
        }
        rows.push((depth, cells));
    }
    println!("| stack | {} |", names.join(" | "));
    println!("|---|{}", "---:|".repeat(names.len()));
    for (depth, cells) in rows {
        println!(
            "| {} | {} |",
            stack_label(depth),
            ratio_cells(&cells, 0, "")
        );
    }
}

/// A table row's cells: the first value (jemalloc's) as it is, the others as
/// ratios to it, with the value after.
fn ratio_cells(values: &[f64], decimals: usize, unit: &str) -> String {
    let base = values[0];
    let cells: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            if i == 0 {
                format!("{v:.decimals$}{unit}")
            } else {
                format!("{:.2}× ({v:.decimals$}{unit})", v / base)
            }
        })
        .collect();
    cells.join(" | ")
}

fn stack_label(depth: usize) -> &'static str {
    if depth == 0 { "shallow" } else { "+30 frames" }
}

/// The same workload on jemalloc built with its own heap profiler
/// (`fixtures/jeprof`, a workspace of its own: the profiling build would
/// otherwise be every crate's jemalloc), active at one sample per 2^19 bytes
/// on average against the same binary with it inactive; or a line saying
/// why not.
fn jemalloc_profiler_table(ops: usize, rounds: usize) {
    println!(
        "\n## jemalloc's own profiler (prof, lg_prof_sample:19, its default unwinder), \
         active vs inactive in the same build\n"
    );
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = root.join("target/jeprof");
    let built = std::process::Command::new(env!("CARGO"))
        .args(["build", "--release", "-q", "--manifest-path"])
        .arg(root.join("fixtures/jeprof/Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .status();
    if !matches!(built, Ok(s) if s.success()) {
        println!("(skipped: fixtures/jeprof did not build: {built:?})");
        return;
    }
    let out = std::process::Command::new(target.join("release/leakscope-fixture-jeprof"))
        .args([ops.to_string(), rounds.to_string()])
        .env(
            "_RJEM_MALLOC_CONF",
            "prof:true,prof_active:false,lg_prof_sample:19",
        )
        .output();
    let text = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        other => {
            println!("(skipped: fixtures/jeprof failed: {other:?})");
            return;
        }
    };
    println!("| threads | stack | prof inactive | prof active |");
    println!("|---:|---|---:|---:|");
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let [threads, depth, ratio, off, on] = f[..] {
            let depth: usize = depth.parse().unwrap_or(0);
            println!(
                "| {threads} | {} | {off} ns | {ratio}× ({on} ns) |",
                stack_label(depth)
            );
        }
    }
}

/// Rounds a subject runs: dhat::Alloc, far from any threshold, fewer;
/// exact mode, near its own, 25 (a median over 9 pairs moved by ±5% between
/// runs here), so that its median is within a few percent too.
fn rounds_for(subject: Subject, rounds: usize) -> usize {
    match subject {
        Subject::Dhat => rounds.min(3),
        Subject::Leakscope(Mode::Exact) => rounds.min(25),
        _ => rounds,
    }
}

/// Operations per run: dhat::Alloc gets a fiftieth (it is ~300× slower).
fn ops_for(subject: Subject, ops: usize) -> usize {
    if subject == Subject::Dhat {
        ops / 50
    } else {
        ops
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let subjects = [
        Subject::Jemalloc,
        Subject::Leakscope(Mode::Off),
        Subject::Leakscope(Mode::Counters),
        Subject::Leakscope(Mode::Sampled),
        Subject::Leakscope(Mode::Exact),
        Subject::Dhat,
    ];
    if args.get(1).map(String::as_str) == Some("--count") {
        // One subject, one thread, under callgrind (see instruction_table).
        let arg = |i: usize| args.get(i).and_then(|a| a.parse::<usize>().ok());
        let (Some(subject), Some(depth), Some(ops)) = (arg(2), arg(3), arg(4)) else {
            eprintln!("usage: alloc_overhead --count SUBJECT DEPTH OPS");
            std::process::exit(2);
        };
        let subject = subjects[subject.min(subjects.len() - 1)];
        if let Subject::Leakscope(m) = subject {
            leakscope::set_mode(m);
        }
        let _profiler =
            (subject == Subject::Dhat).then(|| dhat::Profiler::builder().testing().build());
        run(subject, &sizes(), ops, depth);
        return;
    }
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let (ops, rounds) = if quick { (200_000, 5) } else { (1_000_000, 45) };
    let sizes = Arc::new(sizes());
    println!(
        "# leakscope allocator overhead (ns per alloc+free pair; ratio to jemalloc, same run)\n"
    );
    println!(
        "unwinder: {:?}, {} ops per run, {} rounds (exact 25, dhat 3); each cell is the median \
         over the rounds of the subject's time divided by jemalloc's, measured right before \
         or after it, and the median time\n",
        leakscope::tracker::unwinder(),
        ops,
        rounds
    );
    let names: Vec<String> = subjects.iter().map(|s| s.name()).collect();
    println!("| threads | stack | {} |", names.join(" | "));
    println!("|---:|---|{}", "---:|".repeat(names.len()));
    let debug = std::env::var_os("BENCH_DEBUG").is_some();
    // BENCH_ONLY=off,exact: time only those subjects (against jemalloc).
    let only: Vec<usize> = match std::env::var("BENCH_ONLY") {
        Ok(list) => (1..subjects.len())
            .filter(|&i| {
                list.split(',')
                    .any(|n| subjects[i].name().ends_with(n.trim()))
            })
            .collect(),
        Err(_) => (1..subjects.len()).collect(),
    };
    for threads in [1usize, 2] {
        for depth in [0usize, 30] {
            let mut times = vec![Vec::new(); subjects.len()];
            let mut ratios = vec![Vec::new(); subjects.len()];
            for round in 0..rounds {
                for (i, &s) in subjects.iter().enumerate().skip(1) {
                    if round >= rounds_for(s, rounds) || !only.contains(&i) {
                        continue;
                    }
                    // A pair: jemalloc and the subject back to back, in
                    // alternating order, each on the same number of ops.
                    let n = ops_for(s, ops);
                    let mut pair = [Subject::Jemalloc, s].map(|s| (s, 0.0));
                    if round % 2 == 1 {
                        pair.reverse();
                    }
                    for (s, t) in &mut pair {
                        *t = measure(*s, threads, depth, n, &sizes);
                    }
                    let (base, subject) = if round % 2 == 1 {
                        (pair[1].1, pair[0].1)
                    } else {
                        (pair[0].1, pair[1].1)
                    };
                    if debug {
                        eprintln!(
                            "{} t={threads} d={depth} {subject:.1} / {base:.1}",
                            s.name()
                        );
                    }
                    times[0].push(base);
                    times[i].push(subject);
                    ratios[i].push(subject / base);
                }
            }
            println!(
                "| {threads} | {} | {} |",
                stack_label(depth),
                paired_cells(&times, &ratios)
            );
        }
    }
    jemalloc_profiler_table(ops, rounds);
    instruction_table(&subjects, if quick { 50_000 } else { 200_000 });
    memory_per_block();
    black_box(Duration::ZERO);
}
