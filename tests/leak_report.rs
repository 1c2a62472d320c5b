//! The leak report on programs with known leaks and known non-leaks, in
//! sampled mode (the default) and in exact mode.
//!
//! One process runs eight leaks, each in a function of its own (so that
//! each has its own allocation site), beside four shapes that grow and are
//! not leaks: a cache that reaches its bound, a queue that fills and
//! drains, churn, and a warm-up that ends. `leaks()` must name every leak
//! by its site, and none of the others; in exact mode, with the reference
//! that holds it.

mod common;

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::hint::black_box;
use std::rc::Rc;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use leakscope::Mode;
use leakscope::leaks::{LeakReport, LeakSuspect};

#[global_allocator]
static ALLOC: leakscope::Alloc = leakscope::Alloc::new();

tests!(
    sampled_mode_names_every_leak_and_no_bounded_growth,
    exact_mode_names_every_leak_and_what_holds_it,
);

/// Bytes each leak adds per tick.
const CHUNK: usize = 24 * 1024;
/// Ticks per second.
const TICKS: u64 = 25;

// --- the leaks -------------------------------------------------------

/// A downloaded page, with headers inline.
#[allow(dead_code)]
struct Response {
    head: [u8; 512],
    body: Vec<u8>,
}

/// A request that carries (the leak) the response that led to it.
#[allow(dead_code)]
struct Request {
    url: String,
    meta: Option<Box<Response>>,
}

/// 1. Each request keeps the previous response in its `meta`; the queue
///    of requests is never drained.
#[inline(never)]
fn response_kept_in_meta(queue: &mut Vec<Request>, i: u64) {
    let response = Box::new(Response {
        head: [1; 512],
        body: vec![2; CHUNK],
    });
    queue.push(Request {
        url: format!("https://example.com/{i}"),
        meta: Some(response),
    });
}

/// 2. A map used as a cache that nothing evicts from.
#[inline(never)]
fn cache_that_only_grows(cache: &mut HashMap<u64, Vec<u8>>, i: u64) {
    cache.insert(i, vec![3; CHUNK]);
}

/// 3. An unbounded channel whose consumer stalled.
#[inline(never)]
fn send_to_a_stalled_consumer(tx: &mpsc::Sender<Vec<u8>>) {
    let _ = tx.send(vec![4; CHUNK]);
}

/// 4. A task per request that never finishes, holding its buffer.
#[inline(never)]
fn spawn_a_task_that_never_finishes(rt: &tokio::runtime::Runtime) {
    let buffer = vec![5u8; CHUNK];
    rt.spawn(async move {
        std::future::pending::<()>().await;
        drop(buffer);
    });
}

/// Two nodes that point at each other.
#[allow(dead_code)]
struct Node {
    payload: Vec<u8>,
    peer: Option<Rc<RefCell<Node>>>,
}

/// 5. An `Rc` cycle per request: dropped by the program, never freed.
#[inline(never)]
fn make_an_rc_cycle() {
    let a = Rc::new(RefCell::new(Node {
        payload: vec![6; CHUNK / 2],
        peer: None,
    }));
    let b = Rc::new(RefCell::new(Node {
        payload: vec![6; CHUNK / 2],
        peer: Some(a.clone()),
    }));
    a.borrow_mut().peer = Some(b);
}

/// A listener registered for events.
#[allow(dead_code)]
struct Listener {
    state: Vec<u8>,
}

/// 6. Listeners registered and never removed.
#[inline(never)]
fn register_a_listener(listeners: &mut Vec<Arc<Listener>>) {
    listeners.push(Arc::new(Listener {
        state: vec![7; CHUNK],
    }));
}

/// 7. `Box::leak` per request.
#[inline(never)]
fn leak_a_box() {
    black_box(Box::leak(vec![8u8; CHUNK].into_boxed_slice()));
}

/// A connection's state.
#[allow(dead_code)]
struct Connection {
    buffer: Vec<u8>,
}

/// 8. Per-connection state kept after the connection closed.
#[inline(never)]
fn open_a_connection(connections: &mut HashMap<u64, Connection>, i: u64) {
    connections.insert(
        i,
        Connection {
            buffer: vec![9; CHUNK],
        },
    );
}

/// The leaks' functions: each is the site the report must name.
const LEAKS: [&str; 8] = [
    "response_kept_in_meta",
    "cache_that_only_grows",
    "send_to_a_stalled_consumer",
    "spawn_a_task_that_never_finishes",
    "make_an_rc_cycle",
    "register_a_listener",
    "leak_a_box",
    "open_a_connection",
];

// --- what grows and is not a leak ------------------------------------

/// A cache bounded to 64 entries, filled over the first three seconds,
/// then replacing its oldest entry.
#[inline(never)]
fn bounded_cache(cache: &mut VecDeque<Vec<u8>>, since_start: Duration) {
    let filled = (since_start.as_secs_f64() / 3.0 * 64.0).min(64.0) as usize;
    while cache.len() < filled.max(1) {
        cache.push_back(vec![10; CHUNK]);
    }
    cache.pop_front();
    cache.push_back(vec![10; CHUNK]);
}

/// A queue that fills for two seconds and drains at once. Its length is
/// set by the clock, not by the loop's ticks: a loop stalled by a slow
/// report (a loaded machine) and catching up after would otherwise pile a
/// burst of items into it just before the report looks.
#[inline(never)]
fn sawtooth_queue(queue: &mut VecDeque<Vec<u8>>, elapsed: Duration) {
    let due = (elapsed.as_millis() % 2000) as usize * TICKS as usize / 1000 + 1;
    if queue.len() > due {
        queue.clear();
    }
    while queue.len() < due {
        queue.push_back(vec![11; CHUNK]);
    }
}

/// Buffers made and freed: 100 live from the first tick, one replaced a
/// tick, all made on one line (a site of its own for the replacements
/// would grow until they had replaced the first hundred: slowly, on a
/// loaded machine).
#[inline(never)]
fn churn(live: &mut Vec<Vec<u8>>, tick: u64) {
    let first = live.is_empty();
    for _ in 0..if first { 100 } else { 1 } {
        let buffer = vec![12; CHUNK];
        if first {
            live.push(buffer);
        } else {
            live[(tick.wrapping_mul(2654435761) % 100) as usize] = buffer;
        }
    }
}

/// Grows for the first three seconds, then holds.
#[inline(never)]
fn warm_up(table: &mut Vec<Vec<u8>>, since_start: Duration) {
    if since_start < Duration::from_secs(3) {
        table.push(vec![13; 2 * CHUNK]);
    }
}

const NOT_LEAKS: [&str; 4] = ["bounded_cache", "sawtooth_queue", "churn", "warm_up"];

/// The suspect whose site is in `function`.
fn at<'a>(report: &'a LeakReport, function: &str) -> Option<&'a LeakSuspect> {
    let needle = format!("leak_report::{function} ");
    report.suspects.iter().find(|s| s.site.contains(&needle))
}

/// Runs every shape until the report names every leak, or `deadline`;
/// returns the report at that moment. Judged only once the history has
/// [`MIN_WATCHED`] points, so that each not-leak has shown its shape.
fn run_shapes(deadline: Duration) -> LeakReport {
    const MIN_WATCHED: usize = 12;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let (mut queue, mut cache, mut listeners, mut connections) =
        (Vec::new(), HashMap::new(), Vec::new(), HashMap::new());
    let (mut bounded, mut sawtooth, mut live, mut table) =
        (VecDeque::new(), VecDeque::new(), Vec::new(), Vec::new());
    let started = Instant::now();
    let mut tick = 0;
    let report = loop {
        let due = started + Duration::from_millis(tick * 1000 / TICKS);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        response_kept_in_meta(&mut queue, tick);
        cache_that_only_grows(&mut cache, tick);
        send_to_a_stalled_consumer(&tx);
        spawn_a_task_that_never_finishes(&rt);
        make_an_rc_cycle();
        register_a_listener(&mut listeners);
        leak_a_box();
        open_a_connection(&mut connections, tick);
        bounded_cache(&mut bounded, started.elapsed());
        sawtooth_queue(&mut sawtooth, started.elapsed());
        churn(&mut live, tick);
        warm_up(&mut table, started.elapsed());
        tick += 1;
        if !tick.is_multiple_of(TICKS) {
            continue;
        }
        let report = leakscope::leaks();
        let all_named = LEAKS.iter().all(|f| at(&report, f).is_some());
        if (report.points >= MIN_WATCHED && all_named) || started.elapsed() > deadline {
            break report;
        }
    };
    println!("{report:#?}\n{report}");
    println!("{}", leakscope::leaks::history());
    black_box((&queue, &cache, &listeners, &connections, &rx));
    std::mem::forget(rt);
    report
}

/// Runs `test` in a child process with `mode`, so that each mode has its
/// own allocator state and history from the start.
fn in_child(test: &str, mode: &str) -> bool {
    common::in_fresh_process(
        test,
        "LEAKSCOPE_TEST_LEAK_REPORT_CHILD",
        &[("LEAKSCOPE_MODE", mode), ("LEAKSCOPE_WATCH_INTERVAL", "1")],
    )
}

fn check_names(report: &LeakReport) {
    for f in LEAKS {
        assert!(at(report, f).is_some(), "{f} not named:\n{report}");
    }
    for f in NOT_LEAKS {
        assert!(at(report, f).is_none(), "{f} named:\n{report}");
    }
}

fn sampled_mode_names_every_leak_and_no_bounded_growth() {
    if !in_child(
        "sampled_mode_names_every_leak_and_no_bounded_growth",
        "sampled",
    ) {
        return;
    }
    leakscope::leaks::start();
    let report = run_shapes(Duration::from_secs(60));
    assert_eq!(report.mode, Mode::Sampled);
    check_names(&report);
    assert!(report.suspects.iter().all(|s| s.held_by.is_none()));
    let shown = report.render(80);
    assert!(
        shown.contains("leaks(deep=True) adds what holds each"),
        "{shown}"
    );
    assert!(shown.lines().all(|l| l.chars().count() <= 80), "{shown}");
}

fn exact_mode_names_every_leak_and_what_holds_it() {
    if !in_child("exact_mode_names_every_leak_and_what_holds_it", "exact") {
        return;
    }
    leakscope::leaks::start();
    let report = run_shapes(Duration::from_secs(60));
    assert_eq!(report.mode, Mode::Exact);
    check_names(&report);
    // The reference that holds each leak's blocks, as byvia names it.
    let held = |function: &str, via: &str| {
        let needle = format!("leak_report::{function} ");
        report.suspects.iter().any(|s| {
            s.site.contains(&needle)
                && s.held_by.as_ref().is_some_and(|h| {
                    // Nearly all of them: a stale word on a stack may hold
                    // a few.
                    h.via == via && h.blocks * 10 >= h.of_blocks * 9
                })
        })
    };
    for (function, via) in [
        ("response_kept_in_meta", "Response.body"),
        ("response_kept_in_meta", "Request.meta"),
        ("cache_that_only_grows", "HashMap<u64, Vec<u8>>[*].1"),
        ("open_a_connection", "Connection.buffer"),
        ("register_a_listener", "Listener.state"),
        ("make_an_rc_cycle", "Node.payload"),
        // Leaked on purpose: nothing refers to it.
        ("leak_a_box", "[no reference]"),
    ] {
        assert!(
            held(function, via),
            "{function}: not held by {via}\n{report}"
        );
    }
    // The channel's and the task's buffers are held from inside std and
    // tokio: named, whatever the name.
    for function in [
        "send_to_a_stalled_consumer",
        "spawn_a_task_that_never_finishes",
    ] {
        let s = at(&report, function).unwrap();
        assert!(s.held_by.is_some(), "{function}\n{report}");
    }
    // Where the first suspects are kept alive from, in the dominator tree
    // (looked up for the first three; a leak no root reaches, a
    // `Box::leak` or an `Rc` cycle, is in no tree, and at most two of the
    // leaks are such).
    let kept: Vec<_> = report
        .suspects
        .iter()
        .take(3)
        .filter_map(|s| s.held_by.as_ref()?.kept_by.as_ref())
        .collect();
    assert!(!kept.is_empty(), "{report}");
    for k in kept {
        assert!(k.dominates > 0 && k.retained > 0, "{k:?}");
    }
    let shown = report.render(80);
    assert!(shown.contains("    held by  Response.body ("), "{shown}");
    assert!(shown.contains("    kept by  "), "{shown}");
    assert!(shown.lines().all(|l| l.chars().count() <= 80), "{shown}");
}
