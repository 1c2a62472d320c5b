//! Shared by the test binaries.
//!
//! - A sequential runner for the allocator's test binaries: they check
//!   process-wide figures (live blocks, the recorder's totals), which
//!   libtest's own threads would disturb by allocating while a test
//!   measures. So each such binary has `harness = false` and runs its tests
//!   one after another on the main thread, reporting like libtest does.
//! - Per-site totals of a snapshot, and a telnet client for the console.
//! - The `Widget` fixture ([`widget!`]).
//! - `chosen`: one of two global allocators, chosen by a variable.
//! - `browser`: headless Chromium driven over the DevTools protocol.

#![allow(dead_code)]

pub(crate) mod browser;
pub(crate) mod chosen;
pub(crate) mod shapes;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

/// Declares `Widget`, the typed block several tests count (40 bytes: an
/// id and four words), at the place it is called from: in a test's crate
/// root its full name is `<test>::Widget`, the name the tests assert.
#[allow(unused_macros)]
macro_rules! widget {
    () => {
        #[allow(dead_code)]
        struct Widget {
            id: u64,
            payload: [u64; 4],
        }
    };
}
#[allow(unused_imports)]
pub(crate) use widget;

/// What a test's allocation-site function returns, passed through here so
/// that the call that allocates is not its last act. In an optimised build
/// (`cargo test --release`) that call would otherwise become a tail call,
/// which leaves no frame for the site function: its blocks would be
/// attributed to its caller, as in any stack-based profiler.
#[inline(always)]
pub(crate) fn keep_frame<T>(value: T) -> T {
    std::hint::black_box(value)
}

/// Whether the outside program `program` can be run here. Where it cannot:
/// under CI (`CI=true`) the test fails, since CI must install it; locally
/// the test says in one line what it skipped and how to install it, and
/// passes.
pub(crate) fn have(program: &str, package: &str, test: &str) -> bool {
    let found = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(dir.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    });
    missing_unless(found, program, package, test)
}

/// [`have`] for a file, not a program.
pub(crate) fn have_file(path: &std::path::Path, package: &str, test: &str) -> bool {
    missing_unless(path.is_file(), &path.display().to_string(), package, test)
}

fn missing_unless(found: bool, what: &str, package: &str, test: &str) -> bool {
    if found {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: {what} is missing under CI: .ci/run must install {package}"
    );
    // Straight to stderr: libtest hides what print! writes in passing tests.
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("skipped {test}: it needs {what} (apt-get install {package})\n").as_bytes(),
    );
    false
}

/// Runs `tests` in order (those whose name contains a command-line filter,
/// if any), prints one line per test and libtest's summary line, and exits
/// with 101 when any failed.
pub(crate) fn run(tests: &[(&str, fn())]) {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if std::env::args().any(|a| a == "--list") {
        for (name, _) in tests {
            println!("{name}: test");
        }
        return;
    }
    let chosen: Vec<_> = tests
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .collect();
    let started = Instant::now();
    println!("\nrunning {} tests", chosen.len());
    let mut failed = Vec::new();
    for (name, test) in &chosen {
        let t = Instant::now();
        let ok = catch_unwind(AssertUnwindSafe(test)).is_ok();
        println!(
            "test {name} ... {} ({:.2}s)",
            if ok { "ok" } else { "FAILED" },
            t.elapsed().as_secs_f64()
        );
        if !ok {
            failed.push(*name);
        }
    }
    if !failed.is_empty() {
        println!("\nfailures:");
        for name in &failed {
            println!("    {name}");
        }
    }
    println!(
        "\ntest result: {}. {} passed; {} failed; 0 ignored; 0 measured; {} filtered out; finished in {:.2}s\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        chosen.len() - failed.len(),
        failed.len(),
        tests.len() - chosen.len(),
        started.elapsed().as_secs_f64()
    );
    if !failed.is_empty() {
        std::process::exit(101);
    }
}

/// Sums the totals of the stacks whose allocation site is `function`
/// (closures of `function` included).
pub(crate) fn site_totals(
    snap: &leakscope::tracker::Snapshot,
    function: &str,
) -> leakscope::tracker::SiteStats {
    let mut sum = leakscope::tracker::SiteStats::default();
    for s in &snap.stacks {
        let frames = leakscope::symbols::resolve_stack(&s.frames);
        if let Some(site) = leakscope::symbols::allocation_site(&frames)
            && site.function.split("::{closure").next() == Some(function)
        {
            sum.total_bytes += s.stats.total_bytes;
            sum.total_blocks += s.stats.total_blocks;
            sum.live_bytes += s.stats.live_bytes;
            sum.live_blocks += s.stats.live_blocks;
        }
    }
    sum
}

/// A telnet client for the console's tests: reads until a pattern, within
/// a deadline, keeping what came after it.
pub(crate) struct Client {
    /// The connection.
    pub stream: std::net::TcpStream,
    got: Vec<u8>,
}

impl Client {
    /// Connects to `addr`.
    pub(crate) fn connect(addr: std::net::SocketAddr) -> Client {
        Client::from_stream(std::net::TcpStream::connect(addr).expect("connect"))
    }

    /// A client over a connected stream.
    pub(crate) fn from_stream(stream: std::net::TcpStream) -> Client {
        stream
            .set_read_timeout(Some(std::time::Duration::from_millis(100)))
            .unwrap();
        Client {
            stream,
            got: Vec::new(),
        }
    }

    /// Sends bytes.
    pub(crate) fn send(&mut self, bytes: &[u8]) {
        std::io::Write::write_all(&mut self.stream, bytes).expect("send");
    }

    /// Reads until `pat` arrives (or 10 s pass); returns everything read up
    /// to and including it, and keeps the rest.
    pub(crate) fn expect(&mut self, pat: &[u8]) -> Vec<u8> {
        self.expect_where(pat, 10, |_, _| true)
    }

    /// Reads until the console's prompt arrives at the start of a line (or
    /// 30 s pass: a view that builds the heap graph of a debug build's
    /// heap may take a while); returns everything read up to and including
    /// it. A `>>> ` inside a line, as in a table row naming
    /// `Arc<Mutex<Vec<u8>>> `, is output, not the prompt.
    pub(crate) fn prompt(&mut self) -> Vec<u8> {
        self.expect_where(b">>> ", 30, |got, i| i == 0 || got[i - 1] == b'\n')
    }

    /// Reads until one of `pats` arrives (or 10 s pass); returns which,
    /// and keeps what came after it.
    pub(crate) fn expect_any(&mut self, pats: &[&[u8]]) -> usize {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = (0..self.got.len()).find_map(|i| {
                pats.iter()
                    .position(|p| self.got[i..].starts_with(p))
                    .map(|k| (i, k))
            });
            if let Some((i, k)) = found {
                self.got.drain(..i + pats[k].len());
                return k;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for any of {pats:?}; got {:?}",
                String::from_utf8_lossy(&self.got)
            );
            let mut buf = [0u8; 4096];
            match std::io::Read::read(&mut self.stream, &mut buf) {
                Ok(0) => panic!("closed; got {:?}", String::from_utf8_lossy(&self.got)),
                Ok(n) => self.got.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
        }
    }

    /// Reads until `pat` arrives at a place `accept(got, index)` takes, for
    /// `secs` seconds at most.
    fn expect_where(
        &mut self,
        pat: &[u8],
        secs: u64,
        accept: impl Fn(&[u8], usize) -> bool,
    ) -> Vec<u8> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let found = (0..self.got.len())
                .find(|&i| self.got[i..].starts_with(pat) && accept(&self.got, i));
            if let Some(i) = found {
                let rest = self.got.split_off(i + pat.len());
                return std::mem::replace(&mut self.got, rest);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {:?}; got {:?}",
                String::from_utf8_lossy(pat),
                String::from_utf8_lossy(&self.got)
            );
            let mut buf = [0u8; 4096];
            match std::io::Read::read(&mut self.stream, &mut buf) {
                Ok(0) => panic!(
                    "closed while waiting for {:?}; got {:?}",
                    String::from_utf8_lossy(pat),
                    String::from_utf8_lossy(&self.got)
                ),
                Ok(n) => self.got.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
        }
    }

    /// Reads until the server closes (or 10 s pass); returns what came.
    pub(crate) fn until_closed(&mut self) -> Vec<u8> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            assert!(
                std::time::Instant::now() < deadline,
                "not closed; got {:?}",
                String::from_utf8_lossy(&self.got)
            );
            let mut buf = [0u8; 4096];
            match std::io::Read::read(&mut self.stream, &mut buf) {
                Ok(0) => return std::mem::take(&mut self.got),
                Ok(n) => self.got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    return std::mem::take(&mut self.got);
                }
                Err(_) => {}
            }
        }
    }

    pub(crate) fn login(&mut self, password: &str) {
        self.expect(b"Username: ");
        self.send(b"leakscope\r\n");
        // Echo is switched off before the password prompt (so that nothing
        // typed after the prompt is echoed), and on again after.
        assert_eq!(self.expect(&[255, 251, 1]), [255, 251, 1]);
        assert_eq!(self.expect(b"Password: "), b"Password: ");
        self.send(format!("{password}\r\n").as_bytes());
        self.expect(&[255, 252, 1]);
        self.prompt();
    }

    /// Runs a command; returns its output (between the line and the next
    /// prompt) as text.
    pub(crate) fn run(&mut self, line: &str) -> String {
        self.run_within(line, 30)
    }

    /// [`Client::run`] for a line that may take up to `secs` seconds (the
    /// graph views of a big heap in a debug build).
    pub(crate) fn run_within(&mut self, line: &str, secs: u64) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        let out = self.expect_where(b">>> ", secs, |got, i| i == 0 || got[i - 1] == b'\n');
        String::from_utf8_lossy(&out[..out.len() - 4]).into_owned()
    }
}

/// Whether this process is the fresh child that runs `test` for itself:
/// if not, runs this test binary again with only `test`, the variable
/// `marker` set and `env`, checks that the test passed there, and returns
/// false (the caller returns). For tests that need a process of their own:
/// a mode chosen before the first allocation, a memory limit.
pub(crate) fn in_fresh_process(test: &str, marker: &str, env: &[(&str, &str)]) -> bool {
    if std::env::var_os(marker).is_some() {
        return true;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .arg(test)
        .env(marker, "1")
        .env("RUST_BACKTRACE", "0")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(&format!("test {test} ... ok")),
        "{}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    false
}

/// `tests!(a, b, c)` runs the functions `a`, `b`, `c` with [`run`].
#[macro_export]
macro_rules! tests {
    ($($name:ident),* $(,)?) => {
        fn main() {
            common::run(&[$((stringify!($name), $name as fn())),*]);
        }
    };
}

/// A command run under script(1), so that it has a terminal: type into it,
/// wait for what it prints, wait for it to leave; every wait bounded.
pub(crate) struct Terminal {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    output: std::sync::mpsc::Receiver<Vec<u8>>,
    /// Everything it printed so far.
    pub seen: Vec<u8>,
    /// Where the last [`Terminal::wait_for`] match ended: the next one
    /// looks only at what was printed after it.
    matched: usize,
}

impl Terminal {
    /// Starts `command` (a shell command line) on a terminal. Check first
    /// with [`have`]`("script", "bsdutils", …)`.
    pub(crate) fn start(command: &str) -> Terminal {
        let mut child = std::process::Command::new("script")
            .args(["-q", "-e", "-c", command, "/dev/null"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("script (bsdutils) runs the command on a terminal");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let (tx, output) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = std::io::Read::read(&mut stdout, &mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Terminal {
            child,
            stdin,
            output,
            seen: Vec::new(),
            matched: 0,
        }
    }

    /// Types bytes (`\r` is Enter, 4 is Ctrl-D).
    pub(crate) fn type_bytes(&mut self, bytes: &[u8]) {
        std::io::Write::write_all(&mut self.stdin, bytes).unwrap();
    }

    /// What it printed, as text.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen).into_owned()
    }

    /// Waits (10 s at most) until it prints `pat` after the previous
    /// match: a pattern met earlier (a prompt, a number inside a PID) does
    /// not answer for output still to come.
    pub(crate) fn wait_for(&mut self, pat: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let found = self.seen[self.matched..]
                .windows(pat.len())
                .position(|w| w == pat.as_bytes());
            if let Some(at) = found {
                self.matched += at + pat.len();
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {pat:?} after {:?} in {:?}",
                String::from_utf8_lossy(&self.seen[..self.matched]),
                String::from_utf8_lossy(&self.seen[self.matched..])
            );
            if let Ok(b) = self
                .output
                .recv_timeout(std::time::Duration::from_millis(100))
            {
                self.seen.extend(b);
            }
        }
    }

    /// Types `line` and Enter at a console's prompt; waits (30 s at most)
    /// for the next prompt and returns what was printed between them, the
    /// echoed line left out, with telnet's CRs taken out.
    #[allow(dead_code)]
    pub(crate) fn run(&mut self, line: &str) -> String {
        // The prompt is the one at the start of a line: `>>> ` inside a
        // line, as in a table row naming `Arc<Mutex<Vec<u8>>> `, is output.
        let prompts = self.text().matches("\n>>> ").count();
        let start = self.seen.len();
        self.type_bytes(format!("{line}\r").as_bytes());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while self.text().matches("\n>>> ").count() <= prompts {
            assert!(
                std::time::Instant::now() < deadline,
                "no prompt after {line:?}: {:?}",
                self.text()
            );
            if let Ok(b) = self
                .output
                .recv_timeout(std::time::Duration::from_millis(100))
            {
                self.seen.extend(b);
            }
        }
        self.matched = self.seen.len();
        let out = String::from_utf8_lossy(&self.seen[start..]).replace('\r', "");
        let out = out.strip_suffix(">>> ").unwrap_or(&out);
        match out.split_once('\n') {
            Some((_echo, rest)) => rest.to_string(),
            None => String::new(),
        }
    }

    /// Waits (10 s at most) for it to exit; kills it and fails otherwise.
    pub(crate) fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            while let Ok(b) = self.output.try_recv() {
                self.seen.extend(b);
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("still running: {:?}", self.text());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

/// The ids of the stacks whose allocation site is `function` (closures of
/// `function` included).
pub(crate) fn site_stacks(snap: &leakscope::tracker::Snapshot, function: &str) -> Vec<u32> {
    (0..snap.stacks.len() as u32)
        .filter(|&id| {
            let frames = leakscope::symbols::resolve_stack(&snap.stacks[id as usize].frames);
            leakscope::symbols::allocation_site(&frames)
                .is_some_and(|site| site.function.split("::{closure").next() == Some(function))
        })
        .collect()
}

/// Waits at most 20 s for child `pid` to exit with status 0; kills it and
/// fails if it hangs.
pub(crate) fn wait_child(pid: libc::pid_t, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break;
        }
        if Instant::now() > deadline {
            // SAFETY: killing our own hung child before failing.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("{what}: the child hung");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{what}: the child failed ({status:#x})"
    );
}
