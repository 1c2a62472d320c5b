//! Attach by PID end to end, against a child process (this test binary run
//! again as the target), with the real `leakscope` command; `leakscope
//! connect` against an in-process console; and every refusal: a wrong
//! token, a rendezvous file others could read, a file owned by someone else.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use leakscope::console::{self, Console};

#[global_allocator]
static ALLOC: leakscope::Alloc = leakscope::Alloc::new();

const LEAKSCOPE: &str = env!("CARGO_BIN_EXE_leakscope");

fn main() {
    if std::env::var_os("ATTACH_TARGET").is_some() {
        return target();
    }
    common::run(&[
        (
            "attach_opens_a_console_in_a_running_process",
            attach_opens_a_console_in_a_running_process,
        ),
        (
            "connect_logs_in_and_runs_lines",
            connect_logs_in_and_runs_lines,
        ),
        (
            "connect_local_needs_no_password_and_only_this_process",
            connect_local_needs_no_password_and_only_this_process,
        ),
        (
            "connect_on_a_terminal_hides_the_password_and_edits_lines",
            connect_on_a_terminal_hides_the_password_and_edits_lines,
        ),
        (
            "a_wrong_token_is_refused_and_the_right_one_accepted",
            a_wrong_token_is_refused_and_the_right_one_accepted,
        ),
        (
            "rendezvous_files_others_can_read_or_own_are_refused",
            rendezvous_files_others_can_read_or_own_are_refused,
        ),
        (
            "a_process_ignores_a_rendezvous_file_that_is_not_private",
            a_process_ignores_a_rendezvous_file_that_is_not_private,
        ),
        (
            "attach_refuses_a_process_that_would_die_of_the_signal",
            attach_refuses_a_process_that_would_die_of_the_signal,
        ),
        (
            "attach_refuses_a_process_that_handles_the_signal_itself",
            attach_refuses_a_process_that_handles_the_signal_itself,
        ),
        (
            "a_dribbling_peer_cannot_hold_attach_past_its_timeout",
            a_dribbling_peer_cannot_hold_attach_past_its_timeout,
        ),
    ]);
}

/// The process to attach to: enables attach, says so, waits to be killed.
fn target() {
    console::enable_attach(Console::builder().func("answer", || 42i64)).expect("enable_attach");
    println!("ready");
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

struct Target(Child);

impl Target {
    fn start() -> Target {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env("ATTACH_TARGET", "1")
            .stdout(Stdio::piped())
            .spawn()
            .expect("target");
        let mut out = child.stdout.take().unwrap();
        let mut buf = [0u8; 6];
        out.read_exact(&mut buf).expect("target ready");
        assert_eq!(&buf, b"ready\n");
        Target(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the leakscope command with `input` on stdin; returns its stdout,
/// within 20 s.
fn run_cli(args: &[&str], input: &str) -> (bool, String) {
    let mut child = Command::new(LEAKSCOPE)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("leakscope");
    // A command that refuses and exits before reading its input closes
    // the pipe: what it printed is the answer, not the write's error.
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("leakscope {args:?} hung");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn attach_opens_a_console_in_a_running_process() {
    let t = Target::start();
    // diesel's dconsole session, typed as its documentation prints it.
    let (ok, out) = run_cli(
        &["attach", &t.pid().to_string()],
        "answer()\nprefs()\n1 +\nimport os\nos.getpid()\nimport gc\ngc.get_count()\n",
    );
    assert!(ok, "{out}");
    let pid = t.pid();
    assert!(
        out.starts_with(&format!("Remote console PID={pid}\n")),
        "{out}"
    );
    assert!(out.contains(&format!("\n{pid}\n")), "os.getpid(): {out}");
    let count = out
        .lines()
        .find(|l| l.starts_with('(') && l.ends_with(')') && l.matches(", ").count() == 2)
        .unwrap_or_else(|| panic!("gc.get_count(): {out}"));
    let n: Vec<u64> = count
        .trim_matches(|c| c == '(' || c == ')')
        .split(", ")
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(n[0], n[1] - n[2], "live = allocated - freed: {count}");
    for error in ["ImportError", "AttributeError", "NameError"] {
        assert!(!out.contains(error), "{out}");
    }
    assert!(out.contains("leakscope console"), "{out}");
    assert!(out.contains("42\n"), "{out}");
    assert!(out.contains("Live References"), "{out}");
    assert!(out.contains("SyntaxError"), "{out}");
    // The rendezvous file is gone, and attaching again works.
    assert!(
        !console::attach::protocol::rendezvous_file(t.pid())
            .unwrap()
            .exists()
    );
    let (ok, out) = run_cli(&["attach", &t.pid().to_string()], "answer() + 1\n");
    assert!(ok && out.contains("43\n"), "{out}");
}

fn connect_logs_in_and_runs_lines() {
    let c = Console::builder()
        .port(0)
        .password("pw")
        .func("answer", || 42i64)
        .spawn()
        .unwrap();
    let addr = c.addr().unwrap().to_string();
    let (ok, out) = run_cli(
        &["connect", &addr, "--password", "pw"],
        "answer()\n21 * 2\n",
    );
    assert!(ok, "{out}");
    assert_eq!(out.matches("42\n").count(), 2, "{out}");
    assert!(
        !out.contains(">>> "),
        "the client shows its own prompt, not the server's"
    );
    // A bare port means 127.0.0.1.
    let port = c.addr().unwrap().port().to_string();
    let (ok, out) = run_cli(&["connect", &port, "--password", "pw"], "answer()\n");
    assert!(ok && out.contains("42\n"), "{out}");
    // A wrong password fails the command, and says why.
    let (ok, out) = run_cli(&["connect", &port, "--password", "nope"], "answer()\n");
    assert!(!ok, "{out}");
    assert!(
        out.contains(
            "leakscope: the console closed the session before it logged in (wrong password?)"
        ),
        "{out}"
    );
}

/// `connect --local PID`: the console's local socket, no password asked
/// (none is given here), the lines run; a process with no console is a
/// clear error.
fn connect_local_needs_no_password_and_only_this_process() {
    let c = Console::builder()
        .port(0)
        .password("never-typed")
        .func("answer", || 42i64)
        .spawn()
        .unwrap();
    let pid = std::process::id().to_string();
    assert_eq!(
        c.local_socket(),
        Some(console::local_socket(std::process::id()).unwrap().as_path())
    );
    let (ok, out) = run_cli(&["connect", "--local", &pid], "answer()\n21 * 2\n");
    assert!(ok, "{out}");
    assert_eq!(out.matches("42\n").count(), 2, "{out}");
    assert!(!out.contains("Password"), "{out}");
    drop(c);
    // With the console gone, so is its socket.
    let (ok, out) = run_cli(&["connect", "--local", &pid], "answer()\n");
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!("is process {pid} running a console as this user?")),
        "{out}"
    );
}

/// The interactive path: a terminal (from `script`), the password asked for
/// without echo, the line editor's prompt, Ctrl-D to leave.
fn connect_on_a_terminal_hides_the_password_and_edits_lines() {
    if !common::have(
        "script",
        "bsdutils",
        "connect_on_a_terminal_hides_the_password_and_edits_lines",
    ) {
        return;
    }
    let c = Console::builder()
        .port(0)
        .password("s3cret")
        .spawn()
        .unwrap();
    let addr = c.addr().unwrap().to_string();
    let mut t = common::Terminal::start(&format!("{LEAKSCOPE} connect {addr}"));
    t.wait_for("Password: ");
    t.type_bytes(b"s3cret\r");
    t.wait_for(">>> ");
    t.type_bytes(b"21 * 2\r");
    t.wait_for("\r\n42\r\n");
    assert!(!t.text().contains("s3cret"), "the password was not echoed");
    // Ctrl-D at the next prompt, once the line editor reads keys again: a
    // Ctrl-D typed ahead, while the terminal is between lines, is the
    // terminal's end-of-file mark and never reaches the editor as a key.
    t.wait_for(">>> ");
    t.type_bytes(&[4]);
    let status = t.wait_exit();
    assert!(status.success(), "{:?}", t.text());
}

fn a_wrong_token_is_refused_and_the_right_one_accepted() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let token = console::attach::protocol::new_token();
    let right = token.clone();
    let peers = std::thread::spawn(move || {
        let mut impostor = std::net::TcpStream::connect(addr).unwrap();
        impostor
            .write_all(b"LEAKSCOPE-ATTACH 0123456789abcdef0123456789abcdef\r\n")
            .unwrap();
        let mut buf = [0u8; 16];
        // Dropped without a word.
        let n = impostor.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0);
        let mut real = std::net::TcpStream::connect(addr).unwrap();
        real.write_all(format!("LEAKSCOPE-ATTACH {right}\r\n").as_bytes())
            .unwrap();
        real.write_all(b"hello").unwrap();
        real
    });
    let mut s =
        console::attach::protocol::accept_attached(&listener, &token, Duration::from_secs(10))
            .expect("the real one");
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    drop(peers.join().unwrap());
    let none =
        console::attach::protocol::accept_attached(&listener, &token, Duration::from_millis(300));
    assert_eq!(none.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
}

fn rendezvous_files_others_can_read_or_own_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let path = console::attach::protocol::write_rendezvous(
        4_000_000_001,
        1234,
        &console::attach::protocol::new_token(),
    )
    .unwrap();
    let (port, token) = console::attach::protocol::read_rendezvous(&path).unwrap();
    assert_eq!((port, token.len()), (1234, 32));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = console::attach::protocol::read_rendezvous(&path).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // As root (CI), hand the file to `nobody`: no longer ours.
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: chown on a path we own.
        assert_eq!(unsafe { libc::chown(c.as_ptr(), 65534, 65534) }, 0);
        let e = console::attach::protocol::read_rendezvous(&path).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
    }
    std::fs::remove_file(&path).unwrap();
}

fn a_process_ignores_a_rendezvous_file_that_is_not_private() {
    use std::os::unix::fs::PermissionsExt;
    let t = Target::start();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let token = console::attach::protocol::new_token();
    let path = console::attach::protocol::write_rendezvous(
        t.pid(),
        listener.local_addr().unwrap().port(),
        &token,
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(t.pid() as i32, libc::SIGUSR2) }, 0);
    let r = console::attach::protocol::accept_attached(&listener, &token, Duration::from_secs(2));
    assert_eq!(
        r.unwrap_err().kind(),
        std::io::ErrorKind::TimedOut,
        "the process did not come"
    );
    std::fs::remove_file(&path).unwrap();
}

fn attach_refuses_a_process_that_would_die_of_the_signal() {
    // A process that never called enable_attach: SIGUSR2 would kill it.
    let mut victim = Command::new("sleep").arg("30").spawn().expect("sleep");
    let started = Instant::now();
    let (ok, out) = run_cli(&["attach", &victim.id().to_string()], "");
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!(
            "leakscope: process {} does not handle SIGUSR2: it must call \
             leakscope::console::enable_attach(Console::builder()…) first",
            victim.id()
        )) && out.contains("nothing was sent"),
        "{out}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(victim.try_wait().unwrap().is_none(), "the process died");
    assert!(
        !console::attach::protocol::rendezvous_file(victim.id())
            .unwrap()
            .exists()
    );
    let _ = victim.kill();
    let _ = victim.wait();
    // The target that did call enable_attach shows it handles the signal.
    let t = Target::start();
    assert!(console::attach::protocol::catches_signal(t.pid(), console::ATTACH_SIGNAL).unwrap());
}

fn a_dribbling_peer_cannot_hold_attach_past_its_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        // A byte every 0.5 s, never a whole greeting.
        for _ in 0..12 {
            if s.write_all(b"L").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    let started = Instant::now();
    let r = console::attach::protocol::accept_attached(
        &listener,
        &console::attach::protocol::new_token(),
        Duration::from_secs(2),
    );
    let took = started.elapsed();
    assert_eq!(r.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
    assert!(took < Duration::from_millis(2600), "held for {took:?}");
    peer.join().unwrap();
}

fn attach_refuses_a_process_that_handles_the_signal_itself() {
    // A shell script that traps USR2 (as servers that reopen their logs or
    // upgrade themselves on it do): it would run its trap, not a console.
    let dir = std::env::temp_dir().join(format!("leakscope-trap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ran = dir.join("trap-ran");
    let mut script = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "trap 'touch {}' USR2; echo ready; while :; do sleep 0.05; done",
            ran.display()
        ))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("bash");
    // Wait for the trap to be set: the script says so.
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(script.stdout.take().unwrap()),
        &mut ready,
    )
    .unwrap();
    assert_eq!(ready, "ready\n");
    let pid = script.id();
    assert!(console::attach::protocol::catches_signal(pid, console::ATTACH_SIGNAL).unwrap());
    let (ok, out) = run_cli(&["attach", &pid.to_string()], "");
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!(
            "leakscope: process {pid} handles SIGUSR2 but runs no leakscope attach thread"
        )) && out.contains("nothing was sent"),
        "{out}"
    );
    // Had the signal gone, the trap would have run within a few of the
    // script's 50 ms sleeps.
    std::thread::sleep(Duration::from_millis(300));
    assert!(!ran.exists(), "the script got the signal");
    assert!(script.try_wait().unwrap().is_none(), "the script ended");
    let _ = script.kill();
    let _ = script.wait();
    let _ = std::fs::remove_dir_all(&dir);
    // The target that did call enable_attach runs the thread.
    let t = Target::start();
    assert!(console::attach::protocol::listens_for_attach(t.pid()).unwrap());
}
