//! `leakscope attach PID` opens a console in a running process that called
//! `leakscope::console::enable_attach()`; `leakscope connect [ADDR]` is a
//! line-editing client for a console's TCP port.

use std::io::{self, BufRead, IsTerminal};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use leakscope::console::{self, Client, Prompt};
use leakscope::export::dhat;

/// Whatever a command can fail with, shown after `leakscope: `.
type Failure = Box<dyn std::error::Error>;

#[derive(Parser)]
#[command(
    name = "leakscope",
    version,
    about = "Find memory leaks in running Rust programs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Open a console in process PID (it must have called
    /// leakscope::console::enable_attach()).
    Attach {
        /// The process.
        pid: u32,
        /// The signal it listens for: USR1, USR2, WINCH or URG (never one
        /// a program may take as an order to stop).
        #[arg(long, default_value = "USR2", value_parser = parse_signal)]
        signal: i32,
        /// Seconds to wait for it to connect back (1 to 3600).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
        timeout: u64,
    },
    /// The top program points of a DHAT file (live, at peak, total,
    /// short-lived).
    Report {
        /// The DHAT file.
        file: std::path::PathBuf,
        /// How many sites.
        #[arg(long, default_value_t = 20)]
        top: usize,
        /// Columns to fit (default: the terminal's, else 80).
        #[arg(long)]
        width: Option<usize>,
        #[command(flatten)]
        limit: ReadLimit,
    },
    /// What grew between two DHAT files, by program point and by type.
    Diff {
        /// The earlier file.
        old: std::path::PathBuf,
        /// The later file.
        new: std::path::PathBuf,
        /// How many rows.
        #[arg(long, default_value_t = 20)]
        top: usize,
        /// Columns to fit (default: the terminal's, else 80).
        #[arg(long)]
        width: Option<usize>,
        #[command(flatten)]
        limit: ReadLimit,
    },
    /// Write a self-contained HTML page of Valgrind's viewer with the file
    /// loaded (or say where the viewer is when it is not installed).
    View {
        /// The DHAT file.
        file: std::path::PathBuf,
        /// The page to write (default: FILE with .html). An existing file
        /// there is replaced only if it is a page this command wrote.
        #[arg(short, long)]
        output: Option<std::path::PathBuf>,
        #[command(flatten)]
        limit: ReadLimit,
    },
    /// Run a program with leakscope preloaded: its `malloc` is tracked and
    /// it gets the console, without a change to its code. For programs
    /// that allocate through the C library (a Rust program without a
    /// `#[global_allocator]`, C and C++ programs).
    Run {
        /// The mode: off, counters, sampled or exact (LEAKSCOPE_MODE;
        /// default sampled).
        #[arg(long, value_parser = ["off", "counters", "sampled", "exact"])]
        mode: Option<String>,
        /// The console's port (LEAKSCOPE_CONSOLE_PORT; default the first
        /// free one from 6023).
        #[arg(long)]
        console_port: Option<u16>,
        /// Serve the page, /debug/leaks, pprof and metrics at HOST:PORT
        /// (LEAKSCOPE_HTTP).
        #[arg(long, value_name = "HOST:PORT")]
        http: Option<String>,
        /// The program and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        program: Vec<std::ffi::OsString>,
    },
    /// Connect to a console's TCP port, with line editing; or, with
    /// `--local PID`, to the local socket of a process of this user, with
    /// no password.
    Connect {
        /// Where the console listens: HOST:PORT, HOST (port 6023) or PORT
        /// (on 127.0.0.1).
        #[arg(default_value = "127.0.0.1:6023")]
        addr: String,
        /// Connect to process PID's local console socket instead: only its
        /// own user may, and no password is asked (no password guessing on
        /// the TCP port can lock this way in).
        #[arg(long, value_name = "PID")]
        local: Option<u32>,
        /// The username.
        #[arg(long, default_value = "leakscope")]
        user: String,
        /// The password (asked for, unechoed, when not given).
        #[arg(long, env = "LEAKSCOPE_CONSOLE_PASSWORD")]
        password: Option<String>,
    },
}

/// How much of a DHAT file the file commands read.
#[derive(clap::Args)]
struct ReadLimit {
    /// Read at most this many bytes of a file (only regular files are
    /// read).
    #[arg(long, default_value_t = leakscope::export::DEFAULT_MAX_READ)]
    max_bytes: u64,
}

/// `--signal`'s value: one attach may use.
fn parse_signal(name: &str) -> Result<i32, String> {
    console::attach::protocol::attach_signal(name).ok_or_else(|| {
        format!(
            "{name} is not a signal attach may use: one of USR1, USR2, WINCH, URG \
             (a program may stop on any other it handles)"
        )
    })
}

/// The name attach's signal number goes by.
fn signal_name(number: i32) -> &'static str {
    console::attach::protocol::ATTACH_SIGNALS
        .iter()
        .find(|&&(_, n)| n == number)
        .map_or("?", |&(name, _)| name)
}

/// `text` with control characters written as escapes (`\u{1b}`), so that a
/// file's strings cannot move the cursor, retitle or clear the terminal.
fn printable(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A DHAT file's strings made [`printable`], before a table shows them.
fn printable_file(mut file: dhat::DhatFile) -> dhat::DhatFile {
    for s in [
        &mut file.cmd,
        &mut file.mode,
        &mut file.verb,
        &mut file.tu,
        &mut file.Mtu,
    ]
    .into_iter()
    .chain(file.ftbl.iter_mut())
    {
        *s = printable(s);
    }
    file
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Attach {
            pid,
            signal,
            timeout,
        } => attach(pid, signal, Duration::from_secs(timeout)),
        Command::Run {
            mode,
            console_port,
            http,
            program,
        } => run(mode, console_port, http, &program),
        Command::Connect {
            local: Some(pid), ..
        } => connect_local(pid),
        Command::Connect {
            addr,
            user,
            password,
            local: None,
        } => connect(&addr, &user, password),
        Command::Report {
            file,
            top,
            width,
            limit,
        } => report(&file, top, columns(width), limit.max_bytes),
        Command::Diff {
            old,
            new,
            top,
            width,
            limit,
        } => diff(&old, &new, top, columns(width), limit.max_bytes),
        Command::View {
            file,
            output,
            limit,
        } => view(&file, output, limit.max_bytes),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("leakscope: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The width tables fit: `--width`, else the terminal's, else 80.
fn columns(width: Option<usize>) -> usize {
    width
        .or_else(|| {
            let mut size = libc::winsize {
                ws_row: 0,
                ws_col: 0,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            // SAFETY: TIOCGWINSZ writes a winsize into the one given.
            let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
            (ok && size.ws_col > 0).then_some(usize::from(size.ws_col))
        })
        .unwrap_or(80)
        .clamp(40, 1000)
}

/// A read error, with the flag that raises the limit when that was why.
fn read_failure(e: leakscope::export::Error) -> Failure {
    match e {
        leakscope::export::Error::TooLarge { .. } => format!("{e} (--max-bytes raises it)").into(),
        e => e.into(),
    }
}

fn report(path: &std::path::Path, top: usize, width: usize, limit: u64) -> Result<(), Failure> {
    let file = printable_file(dhat::read_checked(path, limit).map_err(read_failure)?);
    print!("{}", dhat::DhatReport::new(&file, top).render(width));
    Ok(())
}

fn diff(
    old: &std::path::Path,
    new: &std::path::Path,
    top: usize,
    width: usize,
    limit: u64,
) -> Result<(), Failure> {
    let read = |p| {
        dhat::read_limited(p, limit)
            .map(printable_file)
            .map_err(read_failure)
    };
    let d = dhat::DhatDiff::new(&read(old)?, &read(new)?, top);
    print!("{}", d.render(width));
    Ok(())
}

fn view(
    path: &std::path::Path,
    output: Option<std::path::PathBuf>,
    limit: u64,
) -> Result<(), Failure> {
    let file = dhat::read_limited(path, limit).map_err(read_failure)?;
    let Some(dir) = dhat::viewer_dir() else {
        println!(
            "Valgrind's viewer (dh_view.html) is not installed here. Install valgrind \
             (e.g. apt-get install valgrind), or open dh_view.html from a valgrind install \
             elsewhere and load {} with its Load… button.",
            path.display()
        );
        return Ok(());
    };
    let name = path
        .file_name()
        .map_or_else(|| "dhat.json".into(), |n| n.to_string_lossy().into_owned());
    let page = dhat::viewer_page(&file, &name, &dir)?;
    let out = output.unwrap_or_else(|| path.with_extension("html"));
    if same_file(path, &out) {
        return Err(format!(
            "the page would replace its input {}: choose another with --output",
            path.display()
        )
        .into());
    }
    dhat::write_viewer_page(&out, &page)?;
    println!(
        "Wrote {}: open it in a browser (Valgrind's viewer, {} loaded).",
        printable(&out.display().to_string()),
        printable(&name)
    );
    Ok(())
}

/// Whether `a` and `b` name the same file (through links or not).
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn attach(pid: u32, sig: i32, timeout: Duration) -> Result<(), Failure> {
    let signal = signal_name(sig);
    // A process that does not handle the signal would die of it.
    match console::attach::protocol::catches_signal(pid, sig) {
        Ok(true) => {}
        Ok(false) => {
            return Err(format!(
                "process {pid} does not handle SIG{}: it must call \
                 leakscope::console::enable_attach(Console::builder()…) first \
                 (sending the signal would kill it); nothing was sent",
                signal
            )
            .into());
        }
        Err(e) => return Err(format!("cannot inspect process {pid}: {e}").into()),
    }
    // One that handles it without leakscope's attach thread would act on it
    // in its own way (a script's trap, a server reopening its logs).
    match console::attach::protocol::listens_for_attach(pid) {
        Ok(true) => {}
        Ok(false) => {
            return Err(format!(
                "process {pid} handles SIG{signal} but runs no leakscope attach thread (it \
                 never called leakscope::console::enable_attach); nothing was sent"
            )
            .into());
        }
        Err(e) => return Err(format!("cannot inspect process {pid}: {e}").into()),
    }
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let token = console::attach::protocol::new_token();
    let path =
        console::attach::protocol::write_rendezvous(pid, listener.local_addr()?.port(), &token)?;
    let result = (|| {
        // SAFETY: kill with a pid and a signal number; errors come back.
        if unsafe { libc::kill(pid as i32, sig) } != 0 {
            return Err(io::Error::other(format!(
                "cannot signal process {pid}: {}",
                io::Error::last_os_error()
            )));
        }
        console::attach::protocol::accept_attached(&listener, &token, timeout)
    })();
    let _ = std::fs::remove_file(&path);
    let stream = result?;
    // As diesel's dconsole greets.
    println!("Remote console PID={pid}");
    session(stream.into(), None)?;
    Ok(())
}

/// `HOST:PORT`, `HOST` (the console's first port) or `PORT` (on 127.0.0.1).
fn console_address(addr: &str) -> String {
    let port = console::DEFAULT_PORT;
    if !addr.is_empty() && addr.bytes().all(|b| b.is_ascii_digit()) {
        format!("127.0.0.1:{addr}")
    } else if addr.starts_with('[') || addr.matches(':').count() == 1 {
        addr.to_string()
    } else if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    }
}

fn connect(addr: &str, user: &str, password: Option<String>) -> Result<(), Failure> {
    let addr = console_address(addr);
    let stream = TcpStream::connect(&addr).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    match session(stream.into(), Some((user.to_string(), password)))? {
        true => Ok(()),
        false => Err("the console closed the session before it logged in (wrong password?)".into()),
    }
}

fn connect_local(pid: u32) -> Result<(), Failure> {
    let path = console::local_socket(pid).map_err(|e| format!("no local console socket: {e}"))?;
    let stream = std::os::unix::net::UnixStream::connect(&path).map_err(|e| {
        format!(
            "cannot connect to {} (is process {pid} running a console as this user?): {e}",
            path.display()
        )
    })?;
    match session(stream.into(), None)? {
        true => Ok(()),
        false => Err("the console closed the session before its prompt".into()),
    }
}

/// Reads a password from the terminal without echo.
fn read_hidden(prompt: &str) -> io::Result<String> {
    eprint!("{prompt}");
    let stdin = io::stdin();
    let fd = 0;
    // SAFETY: termios calls on stdin with a zeroed struct tcgetattr fills.
    let saved = unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut t) != 0 {
            None
        } else {
            let old = t;
            t.c_lflag &= !libc::ECHO;
            libc::tcsetattr(fd, libc::TCSANOW, &t);
            Some(old)
        }
    };
    let mut line = String::new();
    let r = stdin.lock().read_line(&mut line);
    if let Some(old) = saved {
        // SAFETY: restores the settings read above.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &old) };
    }
    eprintln!();
    r?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// A session until the server closes it or input ends; returns whether it
/// ever reached the console's prompt (false: the login failed).
fn session(stream: console::Conn, login: Option<(String, Option<String>)>) -> io::Result<bool> {
    let mut client = Client::new(stream)?;
    let mut prompted = false;
    let interactive = io::stdin().is_terminal();
    let mut editor = if interactive {
        Some(rustyline::DefaultEditor::new().map_err(io::Error::other)?)
    } else {
        None
    };
    // Piped input is read line by line; on a terminal the line editor and
    // the password prompt read it, so the lock is only taken when piped.
    let mut piped = (!interactive).then(|| io::stdin().lock().lines());
    let mut next_piped = || -> io::Result<Option<String>> {
        match piped.as_mut() {
            Some(lines) => lines.next().transpose(),
            None => Ok(None),
        }
    };
    let mut stdout = io::stdout();
    // A password given on the command line or in the environment is sent
    // once: asked again, it was wrong, and sending it again only spends
    // the console's tries.
    let mut given_sent = false;
    loop {
        let prompt = client.read_until_prompt(&mut stdout)?;
        prompted |= prompt == Prompt::Line;
        let given = login.as_ref().and_then(|(_, p)| p.clone());
        if given_sent && matches!(prompt, Prompt::Username | Prompt::Password) {
            let _ = client.end(&mut stdout);
            return Ok(false);
        }
        let line = match prompt {
            Prompt::Closed => return Ok(prompted),
            Prompt::Username => login.as_ref().map_or_else(String::new, |(u, _)| u.clone()),
            Prompt::Password => match given {
                Some(p) => {
                    given_sent = true;
                    p
                }
                None if interactive => read_hidden("Password: ")?,
                None => next_piped()?.unwrap_or_default(),
            },
            Prompt::Line => match editor.as_mut() {
                Some(ed) => match ed.readline(">>> ") {
                    Ok(l) => {
                        let _ = ed.add_history_entry(l.as_str());
                        l
                    }
                    Err(rustyline::error::ReadlineError::Interrupted) => {
                        client.interrupt()?;
                        continue;
                    }
                    Err(_) => {
                        let _ = client.end(&mut stdout);
                        return Ok(true);
                    }
                },
                None => match next_piped()? {
                    Some(l) => l,
                    None => {
                        let _ = client.end(&mut stdout);
                        return Ok(true);
                    }
                },
            },
        };
        client.send_line(&line)?;
    }
}

/// The preload library's file name, beside this command's executable.
const PRELOAD_LIBRARY: &str = "libleakscope_preload.so";

/// `leakscope run`: replaces this process with `program`, leakscope's
/// preload library first in its `LD_PRELOAD`. Returns only on failure.
fn run(
    mode: Option<String>,
    console_port: Option<u16>,
    http: Option<String>,
    program: &[std::ffi::OsString],
) -> Result<(), Failure> {
    use std::os::unix::process::CommandExt;
    let here = std::env::current_exe()?;
    let library = here.with_file_name(PRELOAD_LIBRARY);
    if !library.is_file() {
        return Err(format!(
            "{} is not there: it is built with this command (cargo build -p \
             leakscope-preload, in the same profile)",
            library.display()
        )
        .into());
    }
    let mut preload = library.into_os_string();
    if let Some(others) = std::env::var_os("LD_PRELOAD").filter(|v| !v.is_empty()) {
        preload.push(":");
        preload.push(others);
    }
    let (name, args) = program.split_first().ok_or("no program to run")?;
    let mut command = std::process::Command::new(name);
    command.args(args).env("LD_PRELOAD", preload);
    if let Some(mode) = mode {
        command.env(leakscope::config::MODE.name(), mode);
    }
    if let Some(port) = console_port {
        command.env(leakscope::config::CONSOLE_PORT.name(), port.to_string());
    }
    if let Some(addr) = http {
        command.env(leakscope::config::HTTP.name(), addr);
    }
    eprintln!(
        "leakscope: running {} (process {}); the console's address and password \
         follow, or: leakscope connect --local {}",
        name.to_string_lossy(),
        std::process::id(),
        std::process::id()
    );
    // exec keeps this process's id, so the id above is the program's.
    let e = command.exec();
    Err(format!("cannot run {}: {e}", name.to_string_lossy()).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_addresses_in_every_form() {
        assert_eq!(console_address("localhost"), "localhost:6023");
        assert_eq!(console_address("6024"), "127.0.0.1:6024");
        assert_eq!(console_address("127.0.0.1:6030"), "127.0.0.1:6030");
        assert_eq!(console_address("::1"), "[::1]:6023");
        assert_eq!(console_address("[::1]:6025"), "[::1]:6025");
    }

    #[test]
    fn only_signals_that_cannot_stop_a_program_are_sent() {
        for (name, want) in [
            ("USR2", libc::SIGUSR2),
            ("SIGUSR1", libc::SIGUSR1),
            ("sigwinch", libc::SIGWINCH),
            ("23", libc::SIGURG),
        ] {
            assert_eq!(parse_signal(name), Ok(want), "{name}");
        }
        for name in ["TERM", "15", "SIGINT", "HUP", "KILL", "9", "0", "", "SIG"] {
            assert_eq!(
                parse_signal(name),
                Err(format!(
                    "{name} is not a signal attach may use: one of USR1, USR2, WINCH, URG \
                     (a program may stop on any other it handles)"
                ))
            );
        }
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            printable("main \u{1b}]0;owned\u{7}\u{1b}[2J(x.rs:1)"),
            "main \\u{1b}]0;owned\\u{7}\\u{1b}[2J(x.rs:1)"
        );
        assert_eq!(printable("résumé (a.rs:3)"), "résumé (a.rs:3)");
    }
}
