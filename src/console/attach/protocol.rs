//! The wire protocol of attach, the CLI's side of it and what both sides
//! share: which signals may be sent, the rendezvous file (`PORT TOKEN`,
//! private to the user, in a 0700 per-user directory) and the greeting the
//! process presents when it connects back (`LEAKSCOPE-ATTACH TOKEN`).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::console::server::random_hex;
use crate::console::session::same;

/// The line the process sends first when it connects back, without its
/// line end.
pub(crate) fn greeting(token: &str) -> String {
    format!("LEAKSCOPE-ATTACH {token}")
}

/// Whether process `pid` catches `signal` (its `SigCgt` mask in
/// `/proc/PID/status`): a process that does not would be killed by it.
pub fn catches_signal(pid: u32, signal: i32) -> io::Result<bool> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("/proc/{pid}/status has no SigCgt line"),
            )
        })?;
    Ok((1..=64).contains(&signal) && mask & (1 << (signal - 1)) != 0)
}

/// The signals attach may use, by name: those no program takes as an
/// order to stop (`TERM`, `INT`, `HUP`, `QUIT` are often handled by
/// shutting down, so a handler proves nothing about what they would do).
pub const ATTACH_SIGNALS: &[(&str, i32)] = &[
    ("USR1", libc::SIGUSR1),
    ("USR2", libc::SIGUSR2),
    ("WINCH", libc::SIGWINCH),
    ("URG", libc::SIGURG),
];

/// The signal `name` stands for, when attach may use it: a name of
/// [`ATTACH_SIGNALS`] with or without `SIG`, in any case, or its number.
pub fn attach_signal(name: &str) -> Option<i32> {
    let name = name.trim();
    let bare = name
        .get(..3)
        .filter(|p| p.eq_ignore_ascii_case("SIG"))
        .map_or(name, |_| &name[3..]);
    ATTACH_SIGNALS
        .iter()
        .find(|(n, number)| bare.eq_ignore_ascii_case(n) || bare.parse() == Ok(*number))
        .map(|&(_, number)| number)
}

/// The name of the thread [`enable_attach`](super::enable_attach) starts
/// to wait for the signal.
pub const ATTACH_THREAD: &str = "leakscope-attach";

/// Whether process `pid` runs leakscope's attach thread, which only
/// [`enable_attach`](super::enable_attach) starts: a process that merely
/// catches the signal (a shell script's `trap`, a server that reopens its
/// logs or upgrades itself on `USR2`) would act on it instead.
pub fn listens_for_attach(pid: u32) -> io::Result<bool> {
    // The kernel keeps 15 bytes of a thread's name.
    let name = &ATTACH_THREAD.as_bytes()[..ATTACH_THREAD.len().min(15)];
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let Ok(task) = task else { continue };
        // A thread that ended meanwhile has no name to read.
        if let Ok(comm) = std::fs::read(task.path().join("comm"))
            && comm.strip_suffix(b"\n").unwrap_or(&comm) == name
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The per-user directory holding rendezvous files: `$XDG_RUNTIME_DIR/
/// leakscope` when set, else `/tmp/leakscope-<uid>`; created 0700.
pub fn rendezvous_dir() -> io::Result<std::path::PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let dir = match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => std::path::PathBuf::from(d).join("leakscope"),
        _ => std::path::PathBuf::from(format!("/tmp/leakscope-{uid}")),
    };
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = std::fs::symlink_metadata(&dir)?;
    if !meta.is_dir() || meta.uid() != uid || meta.permissions().mode() & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} is not a private directory of this user", dir.display()),
        ));
    }
    Ok(dir)
}

/// The rendezvous file for process `pid`.
pub fn rendezvous_file(pid: u32) -> io::Result<std::path::PathBuf> {
    Ok(rendezvous_dir()?.join(format!("{pid}.attach")))
}

/// Reads and checks a rendezvous file: owned by this user, readable by no
/// one else, holding `PORT TOKEN`.
pub fn read_rendezvous(path: &std::path::Path) -> io::Result<(u16, String)> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::symlink_metadata(path)?;
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    if !meta.is_file() || meta.uid() != uid || meta.permissions().mode() & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is not a private file of this user; refused",
                path.display()
            ),
        ));
    }
    let text = std::fs::read_to_string(path)?;
    let mut parts = text.split_whitespace();
    let port = parts.next().and_then(|p| p.parse().ok());
    let token = parts.next().filter(|t| t.len() >= 16).map(str::to_string);
    match (port, token) {
        (Some(port), Some(token)) => Ok((port, token)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "malformed rendezvous file",
        )),
    }
}

/// Writes a rendezvous file (0600) for `pid`: `PORT TOKEN`.
pub fn write_rendezvous(pid: u32, port: u16, token: &str) -> io::Result<std::path::PathBuf> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = rendezvous_file(pid)?;
    let _ = std::fs::remove_file(&path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    writeln!(f, "{port} {token}")?;
    Ok(path)
}

/// A fresh one-time token.
pub fn new_token() -> String {
    random_hex(16)
}

/// The CLI's side of attach: waits on `listener` (up to `timeout`) for the
/// process to connect and present `token`. A peer with a wrong or missing
/// token is dropped and waiting goes on, so nobody who merely saw the port
/// can stand in for the process.
pub fn accept_attached(
    listener: &TcpListener,
    token: &str,
    timeout: Duration,
) -> io::Result<TcpStream> {
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + timeout;
    let expected = greeting(token);
    while Instant::now() < deadline {
        match listener.accept() {
            Ok((mut stream, _)) => {
                stream.set_nonblocking(false)?;
                // The whole greeting within what is left of the timeout: a
                // peer that sends a byte now and then cannot hold us longer.
                let mut line = Vec::new();
                let mut byte = [0u8; 1];
                while line.len() < 200 && !line.ends_with(b"\r\n") {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    stream.set_read_timeout(Some(left.min(Duration::from_secs(2))))?;
                    match stream.read(&mut byte) {
                        Ok(1) => line.push(byte[0]),
                        _ => break,
                    }
                }
                if same(
                    line.strip_suffix(b"\r\n").unwrap_or(&line),
                    expected.as_bytes(),
                ) {
                    stream.set_read_timeout(None)?;
                    return Ok(stream);
                }
                let _ = stream.shutdown(Shutdown::Both);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        "the process did not connect back (did it call leakscope::console::enable_attach()?)",
    ))
}
