//! A program built without the flags leakscope asks for (v0 mangling,
//! frame pointers) says so: the console's greeting, a heap view's heading
//! and the DHAT file's mode carry the build note. The program
//! (`fixtures/plain`) is built here with `RUSTFLAGS` cleared, into a
//! target directory of its own (the first run builds leakscope again,
//! about a minute and a half on two cores; later runs reuse it).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `cmd` to its end, within `limit`; its stdout, or a failure with
/// what it printed.
fn run_bounded(cmd: &mut Command, limit: Duration) -> String {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let read = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let (out, err) = (read(Box::new(out)), read(Box::new(err)));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} took more than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    assert!(status.success(), "{cmd:?}: {status}\n{out}\n{err}");
    out
}

#[test]
fn a_build_without_the_flags_prints_the_note() {
    let root = env!("CARGO_MANIFEST_DIR");
    let target = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("plain");
    // Without the repository's flags every dependency builds again: minutes
    // the first time, on 2 cores. Said on stderr itself, which the test
    // harness does not capture (it captures `eprintln!`).
    let _ = writeln!(
        std::io::stderr(),
        "a_build_without_the_flags_prints_the_note: building fixtures/plain without the \
         flags into {} (every dependency again, once)",
        target.display()
    );
    run_bounded(
        Command::new(env!("CARGO"))
            .args(["build", "--locked", "-j2", "--manifest-path"])
            .arg(format!("{root}/fixtures/plain/Cargo.toml"))
            .env("CARGO_TARGET_DIR", &target)
            // Set and empty: the repository's own flags (.cargo/config.toml)
            // do not apply.
            .env("RUSTFLAGS", "")
            .env_remove("CARGO_ENCODED_RUSTFLAGS"),
        Duration::from_secs(20 * 60),
    );
    let out = run_bounded(
        &mut Command::new(target.join("debug").join("leakscope-fixture-plain")),
        Duration::from_secs(60),
    );
    let note = "note: built without -C symbol-mangling-version=v0 (types are unknown: \
                blocks are shown by allocating function, generics as (?)) and without \
                frame pointers (stacks are taken by the slower unwinder);";
    for what in ["greeting: ", "heading: ", "mode: "] {
        let line = out
            .lines()
            .find(|l| l.starts_with(what))
            .unwrap_or_else(|| panic!("no {what:?} line in {out}"));
        assert!(line.contains(note), "{line}");
    }
    let greeting = out.lines().find(|l| l.starts_with("greeting: ")).unwrap();
    assert!(
        greeting.contains("help() lists what it knows. note: built without"),
        "the note follows the greeting: {greeting}"
    );
}
