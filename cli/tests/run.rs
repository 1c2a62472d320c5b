//! `leakscope run` end to end: programs that know nothing of leakscope
//! (`fixtures/preload/`), built here, run under the real command with the
//! preload library, and asked through their console what they leak.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const LEAKSCOPE: &str = env!("CARGO_BIN_EXE_leakscope");

fn main() {
    common::run(&[
        (
            "a_rust_program_without_leakscope_shows_its_leak",
            a_rust_program_without_leakscope_shows_its_leak,
        ),
        ("a_c_program_shows_its_leak", a_c_program_shows_its_leak),
        (
            "a_program_with_its_own_allocator_is_told_apart",
            a_program_with_its_own_allocator_is_told_apart,
        ),
        (
            "run_without_the_library_or_a_program_says_why",
            run_without_the_library_or_a_program_says_why,
        ),
    ]);
}

/// The workspace's root.
fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// Builds the preload library beside the `leakscope` command, where `run`
/// looks for it (`cargo test` builds the command, not the library).
fn build_library() {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-j2", "-p", "leakscope-preload"])
        .current_dir(root())
        .status()
        .expect("cargo builds the preload library");
    assert!(status.success());
    let library = Path::new(LEAKSCOPE).with_file_name("libleakscope_preload.so");
    assert!(library.is_file(), "{} was not built", library.display());
}

/// A scratch folder for this test's programs.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("leakscope-run-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs a build command to its end; it must succeed.
fn build(command: &mut Command) {
    let out = command.output().expect("the compiler runs");
    assert!(
        out.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds `fixtures/preload/SOURCE` into `out` with rustc and `flags`.
fn rustc(flags: &[&str], source: &str, out: &Path) {
    build(
        Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
            .args(["--edition", "2024"])
            .args(flags)
            .arg("-o")
            .arg(out)
            .arg(root().join("fixtures/preload").join(source)),
    );
}

/// A program running under `leakscope run`, with its console logged in.
struct Run {
    child: Child,
    console: common::Client,
    /// What it printed on stderr up to its `ready` line.
    said: String,
}

impl Run {
    fn start(program: &Path, mode: &str) -> Run {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(LEAKSCOPE)
            .args([
                "run",
                "--mode",
                mode,
                "--console-port",
                &port.to_string(),
                "--",
            ])
            .arg(program)
            .env("LEAKSCOPE_CONSOLE_PASSWORD", "pw")
            // A sample every 64 KiB on average: about 300 of the bodies.
            .env("LEAKSCOPE_SAMPLE_BYTES", "65536")
            .env_remove("LEAKSCOPE_MODE")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("leakscope run");
        let (tx, lines) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut said = String::new();
        while !(said.contains("Telnet console listening on ") && said.contains("\nready")) {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    said.push_str(&line);
                    said.push('\n');
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("no console and ready line within 60 s: {said}");
                }
            }
        }
        let mut console = common::Client::connect(([127, 0, 0, 1], port).into());
        console.login("pw");
        Run {
            child,
            console,
            said,
        }
    }

    /// A console line's answer, with the terminal's line ends made plain.
    fn ask(&mut self, line: &str) -> String {
        self.console.run_within(line, 120).replace('\r', "")
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        // Its input closes: it ends by itself.
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The (count, size) of the row of a partition table whose label starts
/// with `label`.
fn row(table: &str, label: &str) -> Option<(u64, u64)> {
    table.lines().find_map(|line| {
        // Columns are two spaces apart; a label has single spaces only.
        let text = line.rsplit("  ").next()?.trim();
        let cells: Vec<&str> = line.split_whitespace().collect();
        if !text.starts_with(label) || cells.first()?.parse::<u64>().is_err() {
            return None;
        }
        let number = |s: &str| s.trim_start_matches('~').parse::<u64>().ok();
        Some((number(cells.get(1)?)?, number(cells.get(3)?)?))
    })
}

/// jemalloc's size class for `size` bytes: what a block is counted as.
fn class(size: u64) -> u64 {
    match size {
        0..=16 => size.next_multiple_of(8).max(8),
        _ => {
            // Four classes per doubling above 16 bytes (jemalloc's default).
            let group = (size - 1).ilog2().saturating_sub(2).max(4);
            size.next_multiple_of(1 << group)
        }
    }
}

fn a_rust_program_without_leakscope_shows_its_leak() {
    build_library();
    let dir = scratch("rust");
    let program = dir.join("leaky");
    // Built as its README asks a program to be: types in the symbols,
    // debug info for the fields.
    rustc(
        &["-g", "-C", "symbol-mangling-version=v0"],
        "leaky.rs",
        &program,
    );
    // Sampled (the default): the bodies by type and by site, estimated.
    let mut run = Run::start(&program, "sampled");
    assert!(run.said.contains("leakscope: running "), "{}", run.said);
    run.ask("x = hpy().heap()");
    let bytype = run.ask("x.bytype");
    assert!(bytype.contains("(estimated from samples)"), "{bytype}");
    // Built with types and debug info: no build note.
    assert!(!bytype.contains("note: built without"), "{bytype}");
    let (_, bytes) = row(&bytype, "Vec<u8>").unwrap_or_else(|| panic!("{bytype}"));
    // 2 000 bodies of 10 240 bytes: an estimate from about 300 samples
    // (a standard error of 6 %) is within a half of it.
    let bodies = 2_000 * class(10_000);
    assert!(
        bytes > bodies / 2 && bytes < bodies * 3 / 2,
        "{bytes} of {bodies}: {bytype}"
    );
    let bysite = run.ask("x.bysite");
    assert!(
        bysite.contains("  keep_responses (leaky.rs:"),
        "the program's function, where it allocated: {bysite}"
    );
    drop(run);
    // Exact: every block, who holds it, and what nothing holds.
    let mut run = Run::start(&program, "exact");
    run.ask("x = hpy().heap()");
    let bodies_by_site = run.ask("x['Vec<u8>'].bysite");
    assert_eq!(
        row(&bodies_by_site, "keep_responses (leaky.rs:"),
        Some((2_000, 2_000 * class(10_000))),
        "{bodies_by_site}"
    );
    let responses = run.ask("x['Box<Response>'].bysite");
    assert_eq!(
        row(&responses, "keep_responses (leaky.rs:"),
        Some((2_000, 2_000 * class(32))),
        "{responses}"
    );
    let via = run.ask("x['Vec<u8>'].byvia");
    let (held, _) = row(&via, "Response.body").unwrap_or_else(|| panic!("{via}"));
    assert_eq!(held, 2_000, "{via}");
    // The lost buffers, all of them but those a stale word on the stack
    // still points to (the scan is conservative: a word that looks like an
    // address holds its block).
    let lost = run.ask("hpy().unreachable().bysite");
    let (count, size) = row(&lost, "lose_buffers (leaky.rs:").unwrap_or_else(|| panic!("{lost}"));
    assert!((5..=10).contains(&count), "{lost}");
    assert_eq!(size, count * class(5_000), "{lost}");
    // The preload library's own start is not the program's.
    let everything = run.ask("x.bysite");
    assert!(!everything.contains("start"), "{everything}");
    drop(run);
    // Built plainly: the headings say the types are missing, and the leak
    // is still found by its allocating function.
    let plain = dir.join("leaky-plain");
    rustc(&[], "leaky.rs", &plain);
    let mut run = Run::start(&plain, "exact");
    run.ask("x = hpy().heap()");
    let bysite = run.ask("x.bysite");
    let words = bysite.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        words.contains(
            "note: built without -C symbol-mangling-version=v0 (types are unknown: blocks are \
             shown by allocating function, generics as (?))"
        ),
        "{bysite}"
    );
    assert!(
        row(&bysite, "keep_responses").is_some_and(|(count, _)| count >= 2_000),
        "{bysite}"
    );
    drop(run);
    let _ = std::fs::remove_dir_all(&dir);
}

fn a_c_program_shows_its_leak() {
    let test = "a_c_program_shows_its_leak";
    if !common::have("cc", "gcc", test) {
        return;
    }
    build_library();
    let dir = scratch("c");
    let program = dir.join("leaky-c");
    build(
        Command::new("cc")
            .args(["-g", "-O1", "-o"])
            .arg(&program)
            .arg(root().join("fixtures/preload/leaky.c")),
    );
    let mut run = Run::start(&program, "exact");
    // Small blocks aligned beyond their size, a child forked without exec,
    // a command run through the shell (whose processes get the library
    // too) and a library loaded and unloaded all went as they do without
    // leakscope.
    assert!(
        run.said
            .contains("ready: 5000 nodes; alignment ok, fork ok, exec ok, dlopen ok"),
        "{}",
        run.said
    );
    run.ask("x = hpy().heap()");
    let bysite = run.ask("x.bysite");
    // 5 000 nodes of 208 bytes (a class of 224), at the C function.
    assert_eq!(
        row(&bysite, "remember (leaky.c:"),
        Some((5_000, 5_000 * class(208))),
        "{bysite}"
    );
    // What it freed (a block a node, a grown string, an aligned block) is
    // gone: nothing else of the program's is alive.
    assert!(!bysite.contains("main (leaky.c:"), "{bysite}");
    drop(run);
    let _ = std::fs::remove_dir_all(&dir);
}

fn a_program_with_its_own_allocator_is_told_apart() {
    build_library();
    let dir = scratch("own");
    let program = dir.join("own_allocator");
    rustc(&[], "own_allocator.rs", &program);
    let out = Command::new(LEAKSCOPE)
        .args(["run", "--"])
        .arg(&program)
        .env("LEAKSCOPE_CONSOLE", "off")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    // Said before the program's first line, and the program runs on.
    let line = format!(
        "leakscope: {} declares its own #[global_allocator]: unless that allocator calls \
         the C library's malloc (std's System does), its blocks never reach leakscope",
        program.display()
    );
    let at = said.find(&line).unwrap_or_else(|| panic!("{said}"));
    assert!(said[at..].contains("\nready: 10 buffers\n"), "{said}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn run_without_the_library_or_a_program_says_why() {
    // No program: clap says what is missing.
    let out = Command::new(LEAKSCOPE).arg("run").output().unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("<PROGRAM>..."), "{said}");
    // A program that does not exist: said, with the command's failure.
    build_library();
    let out = Command::new(LEAKSCOPE)
        .args(["run", "--", "/nonexistent/program"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("leakscope: cannot run /nonexistent/program: No such file or directory"),
        "{said}"
    );
    // A command copied away from its library: where it looked, and how to
    // build it.
    let dir = scratch("alone");
    let alone = dir.join("leakscope");
    std::fs::copy(LEAKSCOPE, &alone).unwrap();
    let out = Command::new(&alone)
        .args(["run", "--", "true"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("libleakscope_preload.so is not there")
            && said.contains("cargo build -p leakscope-preload"),
        "{said}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
