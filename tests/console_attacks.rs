//! The console against a hostile user, over real TCP on 127.0.0.1: each
//! attack with the exact input that once broke it, then the same checks
//! every time: the process is alive and still working (a thread keeps
//! allocating), and a fresh client logs in and gets `prefs()` within 2 s.
//! Sequential (one test at a time on the main thread), since RSS and CPU
//! time are the process's.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::os::fd::FromRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::Client;
use leakscope::console::Console;

#[global_allocator]
static ALLOC: leakscope::Alloc = leakscope::Alloc::new();

const PASSWORD: &str = "s3cret";

/// Work the process goes on doing, attack or not.
static WORK: AtomicU64 = AtomicU64::new(0);

/// What the host's deliberately buggy function panics with.
const DELIBERATE: &str = "a bug in the host's function";

fn main() {
    // The deliberate panics are the point of some attacks: they are not
    // printed (with a backtrace, under RUST_BACKTRACE=1); any other panic is.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<&str>() != Some(&DELIBERATE) {
            report(info);
        }
    }));
    std::thread::spawn(|| {
        loop {
            let v: Vec<u64> = (0..1000).collect();
            WORK.fetch_add(v.len() as u64 / 1000, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    common::run(&[
        (
            "integer_overflow_is_an_error_and_panics_leak_nothing",
            integer_overflow_is_an_error_and_panics_leak_nothing,
        ),
        (
            "a_long_chain_inside_nested_brackets_is_evaluated_without_recursion",
            a_long_chain_inside_nested_brackets_is_evaluated_without_recursion,
        ),
        (
            "values_nested_across_lines_are_bounded",
            values_nested_across_lines_are_bounded,
        ),
        (
            "a_session_cannot_amplify_memory",
            a_session_cannot_amplify_memory,
        ),
        (
            "a_runaway_line_stops_on_its_budget_on_ctrl_c_and_when_the_client_goes",
            a_runaway_line_stops_on_its_budget_on_ctrl_c_and_when_the_client_goes,
        ),
        (
            "silent_connections_and_password_guessing_lock_nobody_out",
            silent_connections_and_password_guessing_lock_nobody_out,
        ),
        (
            "every_http_looking_first_line_is_closed",
            every_http_looking_first_line_is_closed,
        ),
        (
            "dumps_never_replace_other_files",
            dumps_never_replace_other_files,
        ),
        (
            "views_past_the_process_memory_budget_are_refused",
            views_past_the_process_memory_budget_are_refused,
        ),
    ]);
}

fn console() -> Console {
    Console::builder()
        .port(0)
        .password(PASSWORD)
        .line_timeout(Duration::from_secs(2))
        // A host function with a bug, to show that a panic in a line stays
        // in that line.
        .function("buggy", |_| std::panic::panic_any(DELIBERATE))
        .spawn()
        .expect("console")
}

/// The checks after every attack.
fn still_fine(addr: SocketAddr) {
    let before = WORK.load(Ordering::Relaxed);
    let started = Instant::now();
    let mut cl = Client::connect(addr);
    cl.login(PASSWORD);
    let out = cl.run("prefs()");
    assert!(out.starts_with("Live References"), "{out}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a fresh client took {:?}",
        started.elapsed()
    );
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        WORK.load(Ordering::Relaxed) > before,
        "the process stopped working"
    );
}

/// This process's resident memory (bytes).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// This process's CPU time so far.
fn cpu() -> Duration {
    // SAFETY: rusage is plain integers, for which all zeroes is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn integer_overflow_is_an_error_and_panics_leak_nothing() {
    let c = console();
    let addr = c.addr().unwrap();
    // More lines than there are session slots, each in a session of its own.
    for _ in 0..9 {
        let mut cl = Client::connect(addr);
        cl.login(PASSWORD);
        let out = cl.run("(-9223372036854775807 - 1) % -1");
        assert!(
            out.ends_with("OverflowError: integer overflow\r\n"),
            "{out}"
        );
        assert!(cl.run("1 + 1").starts_with('2'));
    }
    let mut cl = Client::connect(addr);
    cl.login(PASSWORD);
    for _ in 0..9 {
        let out = cl.run("buggy()");
        assert!(
            out.ends_with(
                "SystemError: the line failed inside leakscope; the session goes on.\r\n"
            ),
            "{out}"
        );
    }
    assert!(cl.run("1 + 1").starts_with('2'));
    still_fine(addr);
}

fn a_long_chain_inside_nested_brackets_is_evaluated_without_recursion() {
    let c = console();
    let addr = c.addr().unwrap();
    // Ten nested parentheses, each holding 999 `+1`.
    let mut line = "1".to_string();
    for _ in 0..10 {
        line = format!("({line}{})", "+1".repeat(999));
    }
    assert_eq!(line.len(), 20_001);
    let mut cl = Client::connect(addr);
    cl.login(PASSWORD);
    assert_eq!(cl.run(&line), "9991\r\n");
    still_fine(addr);
}

fn values_nested_across_lines_are_bounded() {
    let c = console();
    let addr = c.addr().unwrap();
    let mut cl = Client::connect(addr);
    cl.login(PASSWORD);
    assert_eq!(cl.run("a = 1"), "");
    let nest = format!("a = {}a{}", "[".repeat(60), "]".repeat(60));
    assert_eq!(cl.run(&nest), "");
    let out = cl.run(&nest);
    assert!(
        out.ends_with("MemoryError: lists nested deeper than 64 levels\r\n"),
        "{out}"
    );
    // What was kept is whole and printable, and compares.
    assert!(cl.run("a").starts_with(&"[".repeat(60)));
    assert_eq!(cl.run("a == a"), "True\r\n");
    still_fine(addr);
}

fn a_session_cannot_amplify_memory() {
    let c = console();
    let addr = c.addr().unwrap();
    let mut cl = Client::connect(addr);
    cl.login(PASSWORD);
    // A string of 640 KiB and one of 640 characters.
    assert_eq!(cl.run("s = 'xxxxxxxxxx'"), "");
    for _ in 0..16 {
        assert_eq!(cl.run("s = s + s"), "");
    }
    assert_eq!(cl.run("len(s)"), "655360\r\n");
    assert_eq!(cl.run("t = 'abcdefghij'"), "");
    for _ in 0..6 {
        assert_eq!(cl.run("t = t + t"), "");
    }
    assert_eq!(cl.run("len(t)"), "640\r\n");
    let before = rss();
    let out = cl.run("L = [s for c in t]");
    assert!(
        out.ends_with(
            "MemoryError: a value of more than 67108864 bytes (this session's budget)\r\n"
        ),
        "{out}"
    );
    let out = cl.run("M = [s, s] + [s, s]");
    assert_eq!(out, "");
    let grown = rss().saturating_sub(before);
    assert!(grown < 200 << 20, "RSS grew by {grown} bytes");
    still_fine(addr);
}

fn a_runaway_line_stops_on_its_budget_on_ctrl_c_and_when_the_client_goes() {
    let c = console();
    let addr = c.addr().unwrap();
    let mut cl = Client::connect(addr);
    cl.login(PASSWORD);
    assert_eq!(cl.run("t = 'abcdefgh'"), "");
    for _ in 0..10 {
        assert_eq!(cl.run("t = t + t"), "");
    }
    assert_eq!(cl.run("len(t)"), "8192\r\n");
    let runaway = "len([len([1 for a in t]) for b in t])";
    // The budget: two seconds of wall time in this console.
    let started = Instant::now();
    let out = cl.run(runaway);
    assert!(
        out.ends_with("TimeoutError: the line ran longer than 2 s\r\n"),
        "{out}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    // Ctrl-C as telnet sends it: the line stops, the timing mark is answered.
    let started = Instant::now();
    cl.send(format!("{runaway}\r\n").as_bytes());
    std::thread::sleep(Duration::from_millis(300));
    cl.send(&[255, 244, 255, 253, 6]);
    let out = cl.expect(b">>> ");
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("KeyboardInterrupt\r\n"), "{text}");
    assert!(out.windows(3).any(|w| w == [255, 252, 6]), "{out:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(cl.run("1 + 1").starts_with('2'));
    // The client sends the line and goes: the line stops with it.
    cl.send(format!("{runaway}\r\n").as_bytes());
    std::thread::sleep(Duration::from_millis(100));
    drop(cl);
    std::thread::sleep(Duration::from_millis(200));
    let (cpu0, t0) = (cpu(), Instant::now());
    std::thread::sleep(Duration::from_secs(1));
    let busy = (cpu() - cpu0).as_secs_f64() / t0.elapsed().as_secs_f64();
    assert!(busy < 0.5, "{busy:.2} CPUs busy after the client left");
    still_fine(addr);
}

/// A connection from another loopback address (127.0.0.2): another source.
fn connect_from(source: [u8; 4], to: SocketAddr) -> TcpStream {
    // SAFETY: plain socket calls on a descriptor we own; sockaddr_in values
    // are filled in full.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        let mut local: libc::sockaddr_in = std::mem::zeroed();
        local.sin_family = libc::AF_INET as libc::sa_family_t;
        local.sin_addr.s_addr = u32::from_ne_bytes(source);
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        assert_eq!(
            libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len),
            0
        );
        let SocketAddr::V4(to) = to else {
            panic!("IPv4 only")
        };
        let mut remote: libc::sockaddr_in = std::mem::zeroed();
        remote.sin_family = libc::AF_INET as libc::sa_family_t;
        remote.sin_port = to.port().to_be();
        remote.sin_addr.s_addr = u32::from_ne_bytes(to.ip().octets());
        assert_eq!(
            libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len),
            0
        );
        TcpStream::from_raw_fd(fd)
    }
}

fn silent_connections_and_password_guessing_lock_nobody_out() {
    let c = console();
    let addr = c.addr().unwrap();
    // Seven silent connections and one that sends a byte a second.
    let silent: Vec<TcpStream> = (0..7).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let dribbling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let dribbler = {
        let go = dribbling.clone();
        let mut s = TcpStream::connect(addr).unwrap();
        std::thread::spawn(move || {
            while go.load(Ordering::Relaxed) {
                let _ = std::io::Write::write_all(&mut s, b"l");
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    still_fine(addr);
    dribbling.store(false, Ordering::Relaxed);
    dribbler.join().unwrap();
    drop(silent);
    // Guessing from another source, across connections: after ten wrong
    // passwords that source is told to wait, whatever it sends.
    let mut wrong = 0;
    let mut refused = String::new();
    while refused.is_empty() {
        let mut g = Client::from_stream(connect_from([127, 0, 0, 2], addr));
        for _ in 0..3 {
            g.expect(b"Username: ");
            g.send(b"leakscope\r\n");
            g.expect(b"Password: ");
            g.send(format!("guess{wrong}\r\n").as_bytes());
            let answer = String::from_utf8_lossy(&g.expect(b"\r\n")).into_owned();
            let answer = answer + &String::from_utf8_lossy(&g.expect(b"\r\n"));
            if answer.contains("Too many wrong passwords") {
                refused = answer;
                break;
            }
            wrong += 1;
            if answer.contains("Login failed; closing.") {
                break;
            }
        }
        assert!(wrong <= 10, "{wrong} wrong passwords were checked");
    }
    assert_eq!(wrong, 10);
    assert!(refused.contains("try again in "), "{refused}");
    // The right password from that source is refused too, for now.
    let mut g = Client::from_stream(connect_from([127, 0, 0, 2], addr));
    g.expect(b"Username: ");
    g.send(b"leakscope\r\n");
    g.expect(b"Password: ");
    g.send(format!("{PASSWORD}\r\n").as_bytes());
    let rest = String::from_utf8_lossy(&g.until_closed()).into_owned();
    assert!(rest.contains("Too many wrong passwords"), "{rest}");
    // Everyone else logs in as before.
    still_fine(addr);
    // The operator's way in is not a TCP address that guesses can lock:
    // this user, on the console's local socket, gets a prompt with no
    // password, while the guessing goes on.
    let socket = c.local_socket().expect("a local socket").to_path_buf();
    let guessing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let guesser = {
        let go = guessing.clone();
        std::thread::spawn(move || {
            while go.load(Ordering::Relaxed) {
                let mut g = Client::from_stream(connect_from([127, 0, 0, 2], addr));
                g.expect(b"Username: ");
                g.send(b"leakscope\r\nguess\r\n");
                g.until_closed();
            }
        })
    };
    // The guesser stops when this test ends, even by a failed assertion,
    // so that no later test meets it.
    struct StopsGuessing(Arc<std::sync::atomic::AtomicBool>);
    impl Drop for StopsGuessing {
        fn drop(&mut self) {
            self.0.store(false, Ordering::Relaxed);
        }
    }
    let _stops = StopsGuessing(guessing.clone());
    let mut longest = Duration::ZERO;
    for _ in 0..3 {
        let started = Instant::now();
        let answer = local_session(&socket, "1 + 41");
        assert!(answer.ends_with("42\r\n>>> "), "{answer:?}");
        longest = longest.max(started.elapsed());
    }
    assert!(longest < Duration::from_secs(2), "{longest:?}");
    eprintln!("    a local session's first answer during the guessing: at most {longest:.2?}");
    guessing.store(false, Ordering::Relaxed);
    guesser.join().unwrap();
    // Only this user can reach it: its directory is private.
    {
        use std::os::unix::fs::PermissionsExt;
        let dir = socket.parent().unwrap();
        let mode = std::fs::metadata(dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{}", dir.display());
    }
    drop(c);
    assert!(
        !socket.exists(),
        "{} outlived its console",
        socket.display()
    );
}

/// One line through the local socket at `path`, and what came back up to
/// the prompt after it (telnet's commands left out).
fn local_session(path: &std::path::Path, line: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(path).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let mut prompts = 0;
    let mut sent = false;
    while prompts < 2 {
        let n = s.read(&mut buf).expect("an answer within 10 s");
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&got));
        got.extend(
            buf[..n]
                .iter()
                .filter(|&&b| b >= 0x20 || b == b'\r' || b == b'\n'),
        );
        prompts = String::from_utf8_lossy(&got).matches(">>> ").count();
        if prompts == 1 && !sent {
            s.write_all(format!("{line}\r\n").as_bytes()).unwrap();
            sent = true;
        }
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    let after = text.find(">>> ").map_or(0, |i| i + 4);
    text[after..].to_string()
}

fn every_http_looking_first_line_is_closed() {
    let c = console();
    let addr = c.addr().unwrap();
    for first in [
        "PROPFIND / HTTP/1.1",
        "QUERY /items HTTP/1.1",
        "get / HTTP/1.1",
        "leakscope / HTTP/1.1",
        "Host: localhost:6023",
    ] {
        let mut cl = Client::connect(addr);
        cl.expect(b"Username: ");
        cl.send(format!("{first}\r\nleakscope\r\n").as_bytes());
        let rest = cl.until_closed();
        assert!(
            !String::from_utf8_lossy(&rest).contains("Password"),
            "{first}: {rest:?}"
        );
    }
    still_fine(addr);
}

fn dumps_never_replace_other_files() {
    let c = console();
    let addr = c.addr().unwrap();
    let dir = std::env::temp_dir().join(format!("leakscope-attacks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let victim = dir.join("passwd");
    std::fs::write(&victim, "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    let link = dir.join("heap.json");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let mut cl = Client::connect(addr);
    cl.login(PASSWORD);
    for (call, path, reason) in [
        (
            "dump_dhat",
            &victim,
            "the file there is not a leakscope dump",
        ),
        (
            "dump_pprof",
            &victim,
            "the file there is not a leakscope dump",
        ),
        (
            "dump_flamegraph",
            &victim,
            "the file there is not a leakscope dump",
        ),
        ("dump_dhat", &link, "it is a symbolic link"),
    ] {
        // (The message wraps at the session's width.)
        let out = cl.run(&format!("{call}('{}')", path.display()));
        let out = out.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            out.contains(&format!(
                "OSError: refusing to write {}: {reason}",
                path.display()
            )),
            "{out}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "root:x:0:0:root:/root:/bin/sh\n"
    );
    // leakscope's own dump is replaced, as often as one likes.
    let own = dir.join("own.json");
    for _ in 0..2 {
        let out = cl.run(&format!("dump_dhat('{}')", own.display()));
        assert!(out.starts_with("Wrote "), "{out}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
    still_fine(addr);
}

/// With leakscope's own memory past the views' budget, a line that would
/// make a snapshot or a heap graph fails with `MemoryError` and says what
/// to free, in any session; other lines, the program's own calls and the
/// views once the budget allows, all go on.
fn views_past_the_process_memory_budget_are_refused() {
    let c = Console::builder()
        .port(0)
        .password(PASSWORD)
        .views_memory(0)
        .spawn()
        .expect("console");
    // leakscope's own memory: the index of this executable's type
    // layouts, read anew and kept while the test runs.
    leakscope::symbols::release_debug_info();
    let layouts = leakscope::symbols::layouts();
    assert!(layouts.memory() > 64 << 10, "{}", layouts.memory());
    let s = leakscope::stats().unwrap();
    assert!(
        s.own_bytes > s.views_budget,
        "the budget of a quarter of {} live bytes should be below leakscope's own {}",
        s.live_bytes,
        s.own_bytes
    );
    let mut cl = Client::connect(c.addr().unwrap());
    cl.login(PASSWORD);
    for view in ["hpy().heap()", "x = hpy().heap()"] {
        let out = cl.run(view);
        assert!(
            out.contains("MemoryError: leakscope's own memory (")
                && out.contains("is past the views' budget (")
                && out.contains("assign None to the heaps sessions keep"),
            "{out}"
        );
    }
    assert_eq!(cl.run("1 + 1"), "2\r\n");
    // The program's own call is never refused: it returns its heap.
    std::hint::black_box(leakscope::hpy().heap());
    let live = leakscope::stats().unwrap().live_bytes;
    assert!(
        cl.run("stats()").contains("  views' budget "),
        "the budget is a quarter of {live} live bytes"
    );
    leakscope::tracker::set_views_memory(leakscope::tracker::DEFAULT_VIEWS_MEMORY);
    let out = cl.run("hpy().heap()");
    assert!(out.starts_with("Partition of a set of "), "{out}");
    drop((c, layouts));
}
