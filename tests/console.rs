//! The console over real TCP on 127.0.0.1: login, the shell's commands,
//! every telnet behaviour real clients show, at the byte level, every
//! limit, the real `telnet` program, and attach by PID's file checks.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::Client;

use leakscope::console::{self, Call, Console, Error, HostObject, Value};
use leakscope::trackref::Tracked;

#[global_allocator]
static ALLOC: leakscope::Alloc = leakscope::Alloc::new();

const IAC: u8 = 255;
const WONT: u8 = 252;
const DO: u8 = 253;
const IP: u8 = 244;
const TM: u8 = 6;

struct Engine {
    paused: std::sync::atomic::AtomicBool,
}

impl HostObject for Engine {
    fn type_name(&self) -> &str {
        "engine"
    }
    fn attribute(&self, name: &str) -> Option<Value> {
        (name == "paused").then(|| {
            self.paused
                .load(std::sync::atomic::Ordering::Relaxed)
                .into()
        })
    }
    fn call(&self, method: &str, _call: &Call<'_>) -> Result<Value, Error> {
        match method {
            "pause" => {
                self.paused
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                Ok(Value::nothing())
            }
            "unpause" => {
                self.paused
                    .store(false, std::sync::atomic::Ordering::Relaxed);
                Ok(Value::nothing())
            }
            _ => Err(Error::no_attribute(self.type_name(), method)),
        }
    }
    fn methods(&self) -> Vec<&'static str> {
        vec!["pause", "unpause"]
    }
}

fn console() -> Console {
    Console::builder()
        .port(0)
        .password("s3cret")
        .var(
            "engine",
            Engine {
                paused: std::sync::atomic::AtomicBool::new(false),
            },
        )
        .func("est", || {
            "Execution engine status\n\nengine.paused : False".to_string()
        })
        .spawn()
        .expect("console")
}

#[derive(serde::Serialize)]
struct ConsoleResponse {
    url: String,
    status: u16,
}

#[test]
fn login_and_the_scrapy_session_commands() {
    // Exact mode, so this small program's heap has rows to index.
    leakscope::set_mode(leakscope::Mode::Exact);
    let c = console();
    let mut cl = Client::connect(c.addr().unwrap());
    cl.login("s3cret");
    let kept = Tracked::with_fields(ConsoleResponse {
        url: "http://www.somenastyspider.com/product?id=1".into(),
        status: 200,
    });
    let out = cl.run("prefs()");
    assert!(out.contains("Live References"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("ConsoleResponse") && l.split_whitespace().nth(1) == Some("1")),
        "{out}"
    );
    assert_eq!(
        cl.run("get_oldest('ConsoleResponse').url"),
        "'http://www.somenastyspider.com/product?id=1'\r\n"
    );
    // An instance too wide for the terminal shows a field a line.
    let long = Tracked::with_fields(ConsoleResponse {
        url: format!("http://www.somenastyspider.com/{}", "p".repeat(100)),
        status: 404,
    });
    let shown = cl.run("[r for r in iter_all('ConsoleResponse') if r.status == 404][0]");
    let shown = format!(
        "<ConsoleResponse 0s old{}",
        shown.split_once("s old").unwrap().1
    );
    // 80 columns: the url's line breaks after its 80th character.
    assert_eq!(
        shown,
        format!(
            "<ConsoleResponse 0s old\r\n  status: 404\r\n  \
             url: \"http://www.somenastyspider.com/{}\r\n    {}\">\r\n",
            "p".repeat(41),
            "p".repeat(59)
        )
    );
    // `_` held it: a new result lets it go.
    assert_eq!(cl.run("0"), "0\r\n");
    drop(long);
    assert_eq!(
        cl.run("[r.status for r in iter_all('ConsoleResponse')]"),
        "[200]\r\n"
    );
    assert_eq!(cl.run("len(iter_all('ConsoleResponse'))"), "1\r\n");
    assert_eq!(
        cl.run("from leakscope.trackref import get_oldest, iter_all"),
        ""
    );
    let out = cl.run("prefs(ignore=ConsoleResponse)");
    assert!(!out.contains("ConsoleResponse"), "{out}");
    let out = cl.run("hpy().heap().bytype()");
    assert!(out.starts_with("Partition of a set of "), "{out}");
    // The columns' widths follow the figures: the words are the heading.
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().take(2).eq(["Index", "Count"])),
        "{out}"
    );
    let out = cl.run("x = hpy().heap()");
    assert_eq!(out, "");
    let out = cl.run("x.bytype[0].bysite");
    assert!(out.starts_with("Partition of a set of "), "{out}");
    // One page only: `_.more` says there is no more, and `_.all` shows it.
    let out = cl.run("_.more");
    assert!(
        out.starts_with("<No more rows: that was the last page. Type e.g. '_.all' to view all "),
        "{out}"
    );
    let out = cl.run("_.all");
    assert!(out.starts_with("Partition of a set of "), "{out}");
    // Stacks folded, and every frame with full=True.
    let folded = cl.run("x.bytype[0].stacks()");
    let full = cl.run("x.bytype[0].stacks(full=True)");
    assert!(folded.starts_with("Stack 0: "), "{folded}");
    assert!(full.starts_with("Stack 0: "), "{full}");
    assert!(!full.contains(" frames in "), "{full}");
    assert!(
        full.lines().count() >= folded.lines().count(),
        "{folded}\n{full}"
    );
    assert!(
        cl.run("x.bytype[0].stacks(wide=1)")
            .ends_with("TypeError: stacks() takes one keyword argument: full=True\r\n")
    );
    let out = cl.run("stats()");
    assert!(out.contains("jemalloc resident"), "{out}");
    // (A line on the growth history follows once it has points.)
    assert!(
        out.lines()
            .any(|l| l.starts_with("Longest wait for leakscope's lock: ") && l.ends_with(" ms")),
        "{out}"
    );
    let out = cl.run("est()");
    assert_eq!(
        out,
        "Execution engine status\r\n\r\nengine.paused : False\r\n"
    );
    assert_eq!(cl.run("engine.paused"), "False\r\n");
    assert_eq!(cl.run("engine.pause()"), "");
    assert_eq!(cl.run("engine.paused"), "True\r\n");
    let out = cl.run("help()");
    assert!(
        out.contains("prefs(ignore=")
            && out.contains("engine: .pause() .unpause()")
            && out.contains("est()"),
        "{out}"
    );
    drop(kept);
    cl.send(&[4]);
    cl.until_closed();
}

#[test]
fn errors_point_a_caret_at_the_column() {
    let c = console();
    let mut cl = Client::connect(c.addr().unwrap());
    cl.login("s3cret");
    assert_eq!(
        cl.run("prefs("),
        "  prefs(\r\n        ^\r\nSyntaxError: unexpected end of line\r\n"
    );
    assert_eq!(
        cl.run("nosuch + 1"),
        "  nosuch + 1\r\n  ^\r\nNameError: name 'nosuch' is not defined\r\n"
    );
    assert_eq!(
        cl.run("1 / 0"),
        "  1 / 0\r\n  ^\r\nZeroDivisionError: division by zero\r\n"
    );
    // No such instance: the answer is None, and it is shown.
    assert_eq!(cl.run("get_oldest('NoSuchClass')"), "None\r\n");
    assert_eq!(cl.run("x = 41"), "");
    assert_eq!(cl.run("x + 1"), "42\r\n");
    assert_eq!(cl.run("_ * 2"), "84\r\n");
}

#[test]
fn nc_style_bare_lf_and_ctrl_c_and_split_crlf() {
    let c = console();
    let mut cl = Client::connect(c.addr().unwrap());
    cl.expect(b"Username: ");
    cl.send(b"leakscope\n");
    cl.expect(b"Password: ");
    cl.send(b"s3cret\n");
    cl.expect(b">>> ");
    cl.send(b"1 + 1\n");
    assert!(cl.expect(b">>> ").starts_with(b"2\r\n"));
    // A CR at the end of one read, its LF in the next: one line, not two.
    cl.send(b"2 + 2\r");
    std::thread::sleep(Duration::from_millis(50));
    cl.send(b"\n3 + 3\r\n");
    assert_eq!(cl.expect(b">>> "), b"4\r\n>>> ");
    assert_eq!(cl.expect(b">>> "), b"6\r\n>>> ");
    // telnet's Ctrl-C: IAC IP IAC DO TIMING-MARK; the mark is answered.
    cl.send(b"half a li");
    cl.send(&[IAC, IP, IAC, DO, TM]);
    let got = cl.expect(b">>> ");
    assert!(got.windows(3).any(|w| w == [IAC, WONT, TM]), "{got:?}");
    assert!(String::from_utf8_lossy(&got).contains("KeyboardInterrupt"));
    // A \r\0 line ending (telnet after SGA) and a doubled 0xFF.
    cl.send(b"'a' + 'b'\r\0");
    assert_eq!(cl.expect(b">>> "), b"'ab'\r\n>>> ");
    // Ctrl-D on an empty line ends the session.
    cl.send(&[4]);
    cl.until_closed();
}

#[test]
fn an_http_first_line_closes_the_connection() {
    let c = console();
    let mut cl = Client::connect(c.addr().unwrap());
    cl.expect(b"Username: ");
    cl.send(b"POST / HTTP/1.1\r\nHost: localhost:6023\r\n\r\nprefs()\r\n");
    let rest = cl.until_closed();
    assert!(rest.is_empty(), "nothing answered: {rest:?}");
}

#[test]
fn three_wrong_passwords_close_and_each_waits() {
    let c = console();
    let mut cl = Client::connect(c.addr().unwrap());
    let started = Instant::now();
    for i in 0..3 {
        cl.expect(b"Username: ");
        cl.send(b"leakscope\r\n");
        cl.expect(b"Password: ");
        cl.send(format!("wrong{i}\r\n").as_bytes());
    }
    let rest = cl.until_closed();
    assert!(
        String::from_utf8_lossy(&rest).contains("Login failed; closing."),
        "{rest:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "each failure waited a second"
    );
}

#[test]
fn login_must_finish_in_time_and_idle_sessions_close() {
    let c = Console::builder()
        .port(0)
        .password("pw")
        .login_timeout(Duration::from_millis(500))
        .idle_timeout(Duration::from_millis(800))
        .spawn()
        .unwrap();
    let mut slow = Client::connect(c.addr().unwrap());
    slow.expect(b"Username: ");
    let rest = slow.until_closed();
    assert!(
        String::from_utf8_lossy(&rest).contains("Login timed out."),
        "{rest:?}"
    );
    let mut idle = Client::connect(c.addr().unwrap());
    idle.login("pw");
    let rest = idle.until_closed();
    assert!(
        String::from_utf8_lossy(&rest).contains("Idle too long; closing."),
        "{rest:?}"
    );
}

#[test]
fn at_most_eight_sessions() {
    let c = console();
    let mut clients: Vec<Client> = (0..8)
        .map(|_| {
            let mut cl = Client::connect(c.addr().unwrap());
            cl.login("s3cret");
            cl
        })
        .collect();
    let mut ninth = Client::connect(c.addr().unwrap());
    let rest = ninth.until_closed();
    assert_eq!(rest, b"Too many console sessions; try again later.\r\n");
    // One leaves; a new one gets in.
    drop(clients.pop());
    std::thread::sleep(Duration::from_millis(500));
    let mut again = Client::connect(c.addr().unwrap());
    again.login("s3cret");
    assert!(again.run("1 + 1").starts_with('2'));
}

#[test]
fn connections_that_never_log_in_take_no_ones_place() {
    let c = console();
    // Eight that never log in, then sixteen more: the oldest waiting are
    // closed as new ones come; a real user still gets in at once, and a
    // logged-in user is never closed for them.
    let mut first = Client::connect(c.addr().unwrap());
    first.login("s3cret");
    let silent: Vec<Client> = (0..24)
        .map(|_| {
            let mut cl = Client::connect(c.addr().unwrap());
            cl.expect(b"Username: ");
            cl
        })
        .collect();
    let started = Instant::now();
    let mut user = Client::connect(c.addr().unwrap());
    user.login("s3cret");
    assert!(user.run("prefs()").starts_with("Live References"));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(first.run("1 + 1").starts_with('2'));
    // The waiting pool holds eight: of the twenty-five that waited (the
    // silent ones, then the user), the seventeen oldest were closed.
    let closed: Vec<bool> = silent
        .into_iter()
        .map(|mut cl| {
            let mut b = [0u8; 16];
            matches!(std::io::Read::read(&mut cl.stream, &mut b), Ok(0))
        })
        .collect();
    assert_eq!(closed.iter().filter(|c| **c).count(), 17, "{closed:?}");
    assert!(
        closed[..17].iter().all(|c| *c),
        "the oldest go first: {closed:?}"
    );
}

#[test]
fn a_line_over_64_kib_is_an_error_and_closes() {
    let c = console();
    let mut cl = Client::connect(c.addr().unwrap());
    cl.login("s3cret");
    let long = vec![b'1'; console::MAX_LINE + 10];
    let _ = cl.stream.write_all(&long);
    let rest = cl.until_closed();
    assert!(
        String::from_utf8_lossy(&rest).contains("line longer than 65536 bytes"),
        "{rest:?}"
    );
}

#[test]
fn binary_garbage_gets_errors_not_a_dead_console() {
    let c = console();
    let mut cl = Client::connect(c.addr().unwrap());
    cl.login("s3cret");
    cl.send(&[0xC3, 0x28, b'\r', b'\n']);
    let got = String::from_utf8_lossy(&cl.expect(b">>> ")).into_owned();
    assert!(got.contains("input is not UTF-8"), "{got}");
    cl.send(b"\x01\x02)(][\r\n");
    let got = String::from_utf8_lossy(&cl.expect(b">>> ")).into_owned();
    assert!(got.contains("SyntaxError"), "{got}");
    assert_eq!(cl.run("1"), "1\r\n", "still answering");
}

#[test]
fn a_client_that_stops_reading_is_dropped_and_one_that_vanishes_costs_nothing() {
    let c = Console::builder()
        .port(0)
        .password("pw")
        .write_timeout(Duration::from_millis(500))
        .spawn()
        .unwrap();
    let mut stuck = Client::connect(c.addr().unwrap());
    stuck.login("pw");
    // Ask for a lot of output and never read it: the server's write times
    // out and the session ends instead of blocking forever.
    for _ in 0..200 {
        let _ = stuck.stream.write_all(b"help()\r\n");
    }
    std::thread::sleep(Duration::from_secs(3));
    // It was dropped: others still get in and are served.
    let mut ok = Client::connect(c.addr().unwrap());
    ok.login("pw");
    assert_eq!(ok.run("2 * 21"), "42\r\n");
    // A client that vanishes mid-output costs nothing.
    let mut gone = Client::connect(c.addr().unwrap());
    gone.login("pw");
    gone.send(b"help()\r\nhelp()\r\n");
    drop(gone);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(ok.run("1 + 1"), "2\r\n");
}

/// Sets `vars` (name, value or `None` to clear), runs `f`, and clears them
/// again. Only [`the_environment_opens_no_door`] calls it, so no other
/// test of this binary reads these variables meanwhile.
fn with_env<T>(vars: &[(&str, Option<&str>)], f: impl FnOnce() -> T) -> T {
    for (name, value) in vars {
        // SAFETY: one test of this binary sets `LEAKSCOPE_CONSOLE*` and
        // `LEAKSCOPE_APP_CRATES`, and no other reads them.
        unsafe {
            match value {
                Some(v) => std::env::set_var(name, v),
                None => std::env::remove_var(name),
            }
        }
    }
    let out = f();
    for (name, _) in vars {
        // SAFETY: as above.
        unsafe { std::env::remove_var(name) };
    }
    out
}

/// The error `spawn` gives with these variables set, or `None` when the
/// console started (or stayed off).
fn spawn_error(vars: &[(&str, Option<&str>)]) -> Option<String> {
    with_env(vars, || {
        Console::builder()
            .port(0)
            .with_default_env()
            .spawn()
            .err()
            .map(|e| e.to_string())
    })
}

#[test]
fn the_environment_opens_no_door() {
    // Every way of saying no turns the console off; anything else is
    // refused with the words it takes.
    for off in ["0", "false", "No", "OFF", " off "] {
        let c = with_env(&[("LEAKSCOPE_CONSOLE", Some(off))], || {
            Console::builder().port(0).with_default_env().spawn()
        });
        assert!(c.unwrap().addr().is_none(), "LEAKSCOPE_CONSOLE={off:?}");
    }
    for on in ["1", "true", "YES", "on"] {
        let c = with_env(&[("LEAKSCOPE_CONSOLE", Some(on))], || {
            Console::builder().port(0).with_default_env().spawn()
        });
        assert!(c.unwrap().addr().is_some(), "LEAKSCOPE_CONSOLE={on:?}");
    }
    for bad in ["disabled", "2", ""] {
        assert_eq!(
            spawn_error(&[("LEAKSCOPE_CONSOLE", Some(bad))]).as_deref(),
            Some(
                format!(
                    "LEAKSCOPE_CONSOLE={bad:?} is not a flag: 0, 1, false, true, no, \
                     yes, off or on"
                )
                .as_str()
            )
        );
    }
    // Without `with_default_env` the environment does not apply.
    let d = with_env(&[("LEAKSCOPE_CONSOLE", Some("0"))], || {
        Console::builder().port(0).spawn()
    });
    assert!(d.unwrap().addr().is_some());

    // An empty password, from the environment or the builder, would let
    // anyone in: refused before anything listens.
    let empty = "the console's password is empty, so anyone could log in: set a \
                 password or leave LEAKSCOPE_CONSOLE_PASSWORD unset for a random one";
    for blank in ["", "  "] {
        assert_eq!(
            spawn_error(&[("LEAKSCOPE_CONSOLE_PASSWORD", Some(blank))]).as_deref(),
            Some(empty)
        );
        let builder = Console::builder().port(0).password(blank).spawn();
        assert_eq!(builder.err().map(|e| e.to_string()).as_deref(), Some(empty));
    }

    // A crate list with no crate in it is refused, not taken as a rule.
    for bad in [",,,", " ", ""] {
        assert_eq!(
            spawn_error(&[("LEAKSCOPE_APP_CRATES", Some(bad))]).as_deref(),
            Some(
                format!(
                    "LEAKSCOPE_APP_CRATES={bad:?} is not a comma-separated list of at \
                     least one name"
                )
                .as_str()
            )
        );
    }
    assert_eq!(
        spawn_error(&[("LEAKSCOPE_APP_CRATES", Some("console, leaky-spider"))]),
        None
    );

    // The builder's settings made after the environment win.
    let vars = [
        ("LEAKSCOPE_CONSOLE_PASSWORD", Some("from-env")),
        ("LEAKSCOPE_CONSOLE_PORT", Some("not-a-port")),
    ];
    assert_eq!(
        spawn_error(&vars).as_deref(),
        Some("LEAKSCOPE_CONSOLE_PORT=\"not-a-port\" is not a port number")
    );
    let (from_env, mine) = with_env(&[("LEAKSCOPE_CONSOLE_PASSWORD", Some("from-env"))], || {
        let from_env = Console::builder().port(0).with_default_env().spawn();
        let mine = Console::builder()
            .port(0)
            .with_default_env()
            .password("mine")
            .spawn();
        (from_env.unwrap(), mine.unwrap())
    });
    assert_eq!(from_env.password(), "from-env");
    assert_eq!(mine.password(), "mine");
}

#[test]
fn the_default_password_is_16_hex_digits() {
    let c = Console::builder().port(0).spawn().unwrap();
    assert_eq!(c.password().len(), 16);
    assert!(c.password().chars().all(|ch| ch.is_ascii_hexdigit()));
    let d = Console::builder().port(0).spawn().unwrap();
    assert_ne!(c.password(), d.password());
}

#[test]
fn the_real_telnet_program_logs_in_runs_prefs_and_leaves_with_ctrl_d() {
    let test = "the_real_telnet_program_logs_in_runs_prefs_and_leaves_with_ctrl_d";
    if !common::have("telnet", "inetutils-telnet", test)
        || !common::have("script", "bsdutils", test)
    {
        return;
    }
    let c = console();
    let port = c.addr().unwrap().port();
    // telnet wants a terminal: `script` gives it one; 60 columns wide, so
    // that fitting it shows the width came from telnet (80 is the default).
    let mut t = common::Terminal::start(&format!("stty cols 60 rows 24; telnet 127.0.0.1 {port}"));
    t.wait_for("Username: ");
    t.type_bytes(b"leakscope\r");
    t.wait_for("Password: ");
    t.type_bytes(b"s3cret\r");
    t.wait_for(">>> ");
    t.type_bytes(b"prefs()\r");
    t.wait_for("Live References");
    t.type_bytes(b"21 * 2\r");
    t.wait_for("\r\n42\r\n");
    assert!(!t.text().contains("s3cret"), "the password was not echoed");
    // telnet tells the window's size (NAWS): help() and tables fit it.
    t.type_bytes(b"help()\r");
    t.wait_for("keeps one.");
    t.type_bytes(b"hpy().heap().bysite\r");
    t.wait_for("Allocation site");
    t.type_bytes(b"1 + 1\r");
    t.wait_for("2\r\n>>> ");
    let wide: Vec<String> = t
        .text()
        .lines()
        .filter(|l| l.trim_end().chars().count() > 60)
        .map(str::to_string)
        .collect();
    assert!(wide.is_empty(), "lines wider than the terminal: {wide:#?}");
    // Ctrl-D on an empty line: the console closes, telnet leaves.
    t.type_bytes(&[4]);
    t.wait_exit();
}

#[derive(serde::Serialize)]
struct Many {
    n: u64,
}

#[test]
fn the_console_reads_as_a_newcomer_expects() {
    leakscope::set_mode(leakscope::Mode::Exact);
    let c = console();
    let mut cl = Client::connect(c.addr().unwrap());
    cl.login("s3cret");
    // What is read here is the answers, not their time: a line over
    // 150 000 instances takes seconds on an idle machine and more than the
    // default 10 s on an overloaded one.
    assert_eq!(
        cl.run("line_timeout(300)"),
        "Lines of this session now stop after 300 s.\r\n"
    );
    // A heap shows as its partition by type, so `_.more` pages that.
    assert!(cl.run("hpy().heap()").starts_with("Partition of a set of "));
    let more = cl.run("_.more");
    assert!(
        more.starts_with("Partition of a set of ") || more.starts_with("<No more rows"),
        "{more}"
    );
    // Indexing and slicing, as in Python.
    assert!(
        cl.run("hpy().heap()[0]")
            .starts_with("Partition of a set of ")
    );
    assert_eq!(cl.run("x = hpy().heap()"), "");
    assert!(cl.run("x.bytype[0:3]").starts_with("[<heap: "));
    assert_eq!(cl.run("[1, 2, 3, 4][1:3]"), "[2, 3]\r\n");
    assert_eq!(cl.run("'abcdef'[-3:]"), "'def'\r\n");
    assert_eq!(cl.run("(1, 2, 3)[:1]"), "(1,)\r\n");
    // More instances than a list used to hold, sliced, counted, filtered.
    let many: Vec<Tracked<Many>> = (0..150_000)
        .map(|n| Tracked::with_fields(Many { n }))
        .collect();
    assert_eq!(cl.run("len(iter_all('Many'))"), "150000\r\n");
    assert_eq!(
        cl.run("[m.n for m in iter_all('Many') if m.n < 3]"),
        "[0, 1, 2]\r\n"
    );
    assert!(cl.run("iter_all('Many')[:2]").starts_with("[<Many "));
    // Types without module paths by default; whole with full=True and in
    // a row's name.
    let tracked = "Arc<leakscope::trackref::tracked::TrackedInner<console::Many>>";
    assert_eq!(cl.run("h = hpy().heap()"), "");
    let short = cl.run("h.bytype");
    assert!(short.contains("  Arc<TrackedInner<Many>>"), "{short}");
    assert!(!short.contains(tracked), "{short}");
    let full = cl.run("h.bytype.all(full=True)");
    let row = full
        .lines()
        .find(|l| l.contains(tracked))
        .unwrap_or_else(|| panic!("{full}"));
    let i = row.split_whitespace().next().unwrap();
    let label = &row[row.find(tracked).unwrap()..];
    assert_eq!(
        cl.run(&format!("h.bytype[{i}].name")),
        format!("'{label}'\r\n")
    );
    // Rows chosen by name: the same blocks as by number, whichever place
    // the row has in this run.
    assert_eq!(
        cl.run(&format!(
            "len(h.bytype['Arc<TrackedInner<Many>>']) == len(h.bytype[{i}])"
        )),
        "True\r\n"
    );
    assert_eq!(
        cl.run("h.bytype['TrackedInner<console::Many>'].name"),
        format!("'{label}'\r\n")
    );
    // (The heap may hold samples from before this test's switch to exact
    // mode, and then says its figures are estimates: these blocks are
    // recorded one by one either way.)
    let sites = cl.run("h['Arc<TrackedInner<Many>>'].bysite");
    assert!(
        sites.starts_with("Partition of a set of ") && sites.contains(" 150000 objects"),
        "{sites}"
    );
    // A text that only part of a label is takes every row containing it.
    assert!(
        cl.run("len(h.bytype['Many']) > len(h.bytype['Arc<TrackedInner<Many>>'])") == "True\r\n"
    );
    assert_eq!(
        cl.run("h.bytype['NoSuchType']"),
        "  h.bytype['NoSuchType']\r\n          ^\r\n\
         KeyError: no row of this partition is or contains 'NoSuchType'\r\n"
    );
    assert_eq!(
        cl.run("h.bytype.all(wide=1)"),
        "  h.bytype.all(wide=1)\r\n              ^\r\n\
         TypeError: a partition takes no keyword argument 'wide' (only full=True)\r\n"
    );
    drop(many);
    // A long list shows a page and says how to see the rest.
    assert_eq!(cl.run("t = 'ab'"), "");
    for _ in 0..8 {
        assert_eq!(cl.run("t = t + t"), "");
    }
    let page = cl.run("[c for c in t]");
    assert!(
        page.ends_with("\r\n<412 more items. Type e.g. '_[100:200]' to view.>\r\n"),
        "{page}"
    );
    assert_eq!(cl.run("len(_[100:200])"), "100\r\n");
    // The names the README uses, and answers instead of silence.
    assert_eq!(
        cl.run("clear_relheap()"),
        "Later heaps show every live block again.\r\n"
    );
    // The console started the growth history: the report waits for it.
    let report = cl.run("leaks()");
    assert!(report.starts_with("Watched "), "{report}");
    assert!(report.contains(": the report needs 6 points;"), "{report}");
    assert_eq!(cl.run("engine"), "<engine object>\r\n");
    // A relative dump path is reported as the absolute path written.
    let rel = format!("leakscope-console-test-{}.json", std::process::id());
    let out = cl.run(&format!("dump_dhat('{rel}')"));
    let abs = std::env::current_dir().unwrap().join(&rel);
    // Wrapped to the window (80 columns without a window size).
    let words = out.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        words.contains(&format!("to {}; open it", abs.display())),
        "{out}"
    );
    assert!(out.lines().all(|l| l.chars().count() <= 80), "{out}");
    std::fs::remove_file(&abs).unwrap();
    // Arrow keys are not text.
    assert_eq!(cl.run("1 +\x1b[A 1\x1b[D"), "2\r\n");
    // Without a window size (nc), help fits 80 columns; with NAWS, the
    // window's width.
    assert!(
        cl.run("help()").lines().all(|l| l.chars().count() <= 80),
        "help wider than 80 columns"
    );
    cl.send(&[255, 251, 31, 255, 250, 31, 0, 60, 0, 24, 255, 240]);
    let help = cl.run("help()");
    assert!(
        help.lines().all(|l| l.chars().count() <= 60),
        "help wider than the window:\n{help}"
    );
    let table = cl.run("hpy().heap().bytype");
    assert!(
        table.lines().all(|l| l.chars().count() <= 60),
        "a table wider than the window:\n{table}"
    );
}

#[test]
fn the_password_prompt_follows_the_clients_answer_to_the_echo_offer() {
    let c = console();
    // A client that answers, as telnet does: the prompt comes right after.
    let mut cl = Client::connect(c.addr().unwrap());
    cl.expect(b"Username: ");
    cl.send(b"leakscope\r\n");
    cl.expect(&[IAC, 251, 1]);
    let answered = Instant::now();
    cl.send(&[IAC, DO, 1]);
    let got = cl.expect(b"Password: ");
    assert_eq!(
        got, b"Password: ",
        "nothing between the offer and the prompt"
    );
    assert!(
        answered.elapsed() < Duration::from_millis(240),
        "{:?}",
        answered.elapsed()
    );
    // One that never answers, as nc: the prompt comes after a short wait.
    let mut nc = Client::connect(c.addr().unwrap());
    nc.expect(b"Username: ");
    nc.send(b"leakscope\n");
    nc.expect(&[IAC, 251, 1]);
    let offered = Instant::now();
    nc.expect(b"Password: ");
    let waited = offered.elapsed();
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_secs(1),
        "{waited:?}"
    );
    nc.send(b"s3cret\n");
    nc.expect(b">>> ");
}

#[derive(serde::Serialize)]
struct PerSession {
    n: u32,
}

#[test]
fn each_session_has_its_own_change_column() {
    let c = console();
    let mut a = Client::connect(c.addr().unwrap());
    a.login("s3cret");
    let mut b = Client::connect(c.addr().unwrap());
    b.login("s3cret");
    let change = |out: &str| -> String {
        out.lines()
            .find(|l| l.starts_with("PerSession "))
            .and_then(|l| l.split_whitespace().last())
            .unwrap_or("")
            .to_string()
    };
    let first: Vec<Tracked<PerSession>> = (0..3).map(|n| Tracked::new(PerSession { n })).collect();
    assert_eq!(change(&a.run("prefs()")), "+3");
    // b has not looked yet: it sees the same growth, not a's zero.
    assert_eq!(change(&b.run("prefs()")), "+3");
    let more: Vec<Tracked<PerSession>> = (3..5).map(|n| Tracked::new(PerSession { n })).collect();
    assert_eq!(change(&a.run("prefs()")), "+2");
    assert_eq!(change(&a.run("prefs()")), "0");
    assert_eq!(change(&b.run("prefs()")), "+2");
    assert_eq!(first.len() + more.len(), 5);
}

#[test]
fn heaps_kept_in_names_count_against_the_session_budget() {
    // In exact mode a heap's snapshot holds every live block: 200 000
    // boxes take at least 200 000 entries of it.
    leakscope::set_mode(leakscope::Mode::Exact);
    let kept: Vec<Box<u64>> = (0..200_000).map(Box::new).collect();
    let unit = 200_000 * size_of::<leakscope::tracker::LiveBlock>();
    let c = Console::builder()
        .port(0)
        .password("s3cret")
        .session_memory(3 * unit)
        .spawn()
        .expect("console");
    let mut cl = Client::connect(c.addr().unwrap());
    cl.login("s3cret");
    assert_eq!(cl.run("h0 = hpy().heap()"), "");
    // Partitions and rows of one heap share its snapshot: counted once.
    assert_eq!(cl.run("p = h0.bytype"), "");
    assert_eq!(cl.run("r = h0.bytype[0]"), "");
    // Each new heap is a snapshot of its own: the third cannot be kept.
    let mut refused = None;
    for i in 1..10 {
        let out = cl.run(&format!("h{i} = hpy().heap()"));
        if out.contains("MemoryError: this session's values would take more than") {
            refused = Some(i);
            break;
        }
        assert_eq!(out, "", "h{i}");
    }
    assert!(matches!(refused, Some(1..=2)), "refused at {refused:?}");
    // Giving a name back makes room again.
    assert_eq!(cl.run("h0 = None"), "");
    assert_eq!(cl.run("p = None"), "");
    assert_eq!(cl.run("r = None"), "");
    assert_eq!(cl.run("h9 = hpy().heap()"), "");
    drop(kept);
}

/// An instance whose fields are long: a repr that must fold to fit.
#[derive(serde::Serialize)]
struct WideFields {
    url: String,
    referer: String,
    body_preview: String,
}

#[test]
fn every_command_fits_80_and_60_columns() {
    // Every built-in, attribute and view a session can ask for, at the
    // width the client says (NAWS): no line of any answer is wider.
    leakscope::set_mode(leakscope::Mode::Exact);
    let kept: Vec<Tracked<WideFields>> = (0..3)
        .map(|i| {
            Tracked::with_fields(WideFields {
                url: format!("http://www.example.com/a/rather/long/path/to/page/{i}"),
                referer: "http://www.example.com/another/rather/long/referring/page".into(),
                body_preview: "<html><head><title>A page</title></head><body>".repeat(3),
            })
        })
        .collect();
    let boxes: Vec<Box<[u64; 8]>> = (0..500).map(|i| Box::new([i; 8])).collect();
    let c = console();
    let dir = std::env::temp_dir().join(format!("ls-w-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let commands = [
        "help()",
        "mode()",
        "stats()",
        "line_timeout()",
        "prefs()",
        "print_live_refs()",
        "iter_all('WideFields')",
        "get_oldest('WideFields')",
        "x = hpy().heap()",
        "x",
        "x.bytype",
        "x.bysite",
        "x.bystack",
        "x.bysize",
        "x.byage",
        "x.bythread",
        "y = x.bytype['[u64; 8]']",
        "y.byvia",
        "y.byrcs",
        "y.sp",
        "y.stacks()",
        "y.referrers",
        "y.dominators",
        "y.retained",
        "hpy().unreachable()",
        "hpy().heap() - x",
        "leaks()",
        "hpy().watch()",
        "dump_dhat('DIR/a.json')",
        "dump_flamegraph('DIR/a.svg')",
        "dump_pprof('DIR/a.pb.gz')",
        "purge()",
        "import gc",
        "gc.get_count()",
        "gc.collect()",
        "from pympler import muppy, summary, tracker",
        "summary.print_(summary.summarize(muppy.get_objects()))",
        "tr = tracker.SummaryTracker()",
        "tr.print_diff()",
        "set_sample_bytes(524288)",
        "set_mode('sampled')",
        "set_mode('exact')",
        "est()",
        "nonsense(1, 2)",
        "x.nothing",
    ];
    for width in [80u8, 60] {
        let mut cl = Client::connect(c.addr().unwrap());
        cl.login("s3cret");
        // (The graph views of this test build's heap take a while, the
        // more so beside the other tests.)
        cl.run("line_timeout(600)");
        // The window's size, as telnet tells it: width × 24.
        cl.send(&[IAC, 250, 31, 0, width, 0, 24, IAC, 240]);
        let mut wide = Vec::new();
        for command in commands {
            let line = command.replace("DIR", &dir.display().to_string());
            let out = cl.run_within(&line, 600).replace('\r', "");
            // Each answers (the last two with the error they are for).
            let error = out.contains("Error:") || out.contains("Error\n");
            let meant = ["nonsense(1, 2)", "x.nothing"].contains(&command);
            assert_eq!(error, meant, "{line}: {out}");
            for l in out.lines() {
                if l.chars().count() > usize::from(width) {
                    wide.push(format!("{line} ({} > {width}): {l}", l.chars().count()));
                }
            }
        }
        assert!(wide.is_empty(), "{wide:#?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
    drop((kept, boxes));
}
