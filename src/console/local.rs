//! The operator's way in: beside its TCP port, a console listens on a Unix
//! socket in the user's private directory (the one attach uses, 0700), and
//! serves it with no password to connections from the process's own user
//! only (the kernel says who connected: `SO_PEERCRED`). No guessing on the
//! TCP port can lock this door, and it has sessions of its own, so a full
//! TCP console does not close it either. `leakscope connect --local PID`
//! uses it.

use std::io::{self, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::admission::Admission;
use super::attach::protocol::rendezvous_dir;
use super::limits::{LOCAL_PLACE_WAIT, MAX_LOCAL_SESSIONS};
use super::session::{Entry, SessionConfig, spawn_session};

/// The path of process `pid`'s local console socket.
pub fn local_socket(pid: u32) -> io::Result<PathBuf> {
    Ok(rendezvous_dir()?.join(format!("{pid}.console")))
}

/// The local socket while it listens; its file goes when this drops.
pub(super) struct LocalConsole {
    path: PathBuf,
    thread: Option<JoinHandle<()>>,
    config: Arc<SessionConfig>,
    /// Whether it listens at [`local_socket`] (given back when it drops).
    primary: bool,
}

/// Whether a console of this process listens at [`local_socket`].
static PRIMARY_TAKEN: AtomicBool = AtomicBool::new(false);

/// Starts listening on this process's local socket, for sessions with
/// `config`'s names and limits (and sessions of their own). A console
/// listens at [`local_socket`] when no other console of the process does;
/// one started beside it (tests start many) at `PID.N.console`.
pub(super) fn start(config: &SessionConfig) -> io::Result<LocalConsole> {
    static CONSOLES: AtomicUsize = AtomicUsize::new(0);
    let pid = std::process::id();
    let primary = !PRIMARY_TAKEN.swap(true, Ordering::AcqRel);
    let path = if primary {
        local_socket(pid)
    } else {
        let n = CONSOLES.fetch_add(1, Ordering::Relaxed) + 1;
        rendezvous_dir().map(|d| d.join(format!("{pid}.{n}.console")))
    };
    let path = match path {
        Ok(p) => p,
        Err(e) => {
            if primary {
                PRIMARY_TAKEN.store(false, Ordering::Release);
            }
            return Err(e);
        }
    };
    let local = listen_at(path, config);
    if primary && local.is_err() {
        PRIMARY_TAKEN.store(false, Ordering::Release);
    }
    local.map(|mut l| {
        l.primary = primary;
        l
    })
}

/// Listens at `path`.
fn listen_at(path: PathBuf, config: &SessionConfig) -> io::Result<LocalConsole> {
    // A file left by an ended process that had the same id.
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    let config = Arc::new(SessionConfig {
        host: config.host.clone(),
        username: String::new(),
        password: String::new(),
        idle_timeout: config.idle_timeout,
        login_timeout: config.login_timeout,
        write_timeout: config.write_timeout,
        limits: config.limits,
        admission: Admission::new(MAX_LOCAL_SESSIONS, 1),
        stop: config.stop.clone(),
    });
    let for_thread = config.clone();
    let thread = crate::tracker::spawn_own(
        std::thread::Builder::new().name("leakscope-local".into()),
        move || listen(listener, for_thread),
    );
    match thread {
        Ok(t) => Ok(LocalConsole {
            path,
            thread: Some(t),
            config,
            primary: false,
        }),
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            Err(e)
        }
    }
}

impl LocalConsole {
    /// Where it listens.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LocalConsole {
    fn drop(&mut self) {
        self.config.stop.store(true, Ordering::Relaxed);
        // Wake the blocking accept.
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
        if self.primary {
            PRIMARY_TAKEN.store(false, Ordering::Release);
        }
    }
}

/// The user of the process at the other end of `stream`.
fn peer_uid(stream: &UnixStream) -> io::Result<u32> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, which we
    // own and which is that large.
    let r = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cred.uid)
}

fn listen(listener: UnixListener, config: Arc<SessionConfig>) {
    let mut sessions: Vec<JoinHandle<()>> = Vec::new();
    // SAFETY: getuid has no preconditions.
    let me = unsafe { libc::getuid() };
    for conn in listener.incoming() {
        if config.stop.load(Ordering::Relaxed) {
            break;
        }
        let Ok(mut stream) = conn else { continue };
        let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
        match peer_uid(&stream) {
            Ok(uid) if uid == me => {}
            Ok(uid) => {
                let _ = writeln!(
                    stream,
                    "This console is user {me}'s; user {uid} is refused.\r"
                );
                continue;
            }
            Err(e) => {
                let _ = writeln!(stream, "Cannot tell who connected ({e}); refused.\r");
                continue;
            }
        }
        let stop = || config.stop.load(Ordering::Relaxed);
        let Some(slot) = config.admission.session_within(LOCAL_PLACE_WAIT, stop) else {
            let _ = stream.write_all(b"Too many local console sessions; try again later.\r\n");
            continue;
        };
        spawn_session(
            stream.into(),
            config.clone(),
            Entry::Attached(slot),
            &mut sessions,
        );
    }
    for h in sessions {
        let _ = h.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_says_who_connected() {
        let (a, _b) = UnixStream::pair().unwrap();
        // SAFETY: getuid has no preconditions.
        assert_eq!(peer_uid(&a).unwrap(), unsafe { libc::getuid() });
    }
}
