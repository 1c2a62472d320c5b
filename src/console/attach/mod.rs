//! Attach by PID: `leakscope attach PID` opens the console in a process
//! that opened no port. The CLI leaves a private rendezvous file (port and
//! one-time token) and signals the process, which checks the file and
//! connects back (diesel's `dconsole`, made safe).
//!
//! A program calls [`enable_attach`]; [`protocol`] is the wire protocol,
//! which the `leakscope` command speaks from the other side.

pub mod protocol;

use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use super::admission::Admission;
use super::server::Builder;
use super::session::{Entry, Session, SessionConfig};
use crate::sys::operator::announce;
use protocol::{ATTACH_SIGNALS, greeting, read_rendezvous, rendezvous_file};

/// The signal `leakscope attach` sends by default.
pub const ATTACH_SIGNAL: i32 = libc::SIGUSR2;

/// Lets `leakscope attach PID` open a console in this process: a signal
/// handler (signal-hook; nothing allocates in the handler) wakes a thread
/// that reads this process's rendezvous file (it must belong to this user
/// and be private), connects to the port it names on 127.0.0.1, presents
/// the token and serves one session with `host`'s names.
pub fn enable_attach(host: Builder) -> io::Result<()> {
    enable_attach_on(ATTACH_SIGNAL, host)
}

/// [`enable_attach`] with another signal, one of [`ATTACH_SIGNALS`]
/// (others are refused with [`io::ErrorKind::InvalidInput`]).
pub fn enable_attach_on(signal: i32, mut host: Builder) -> io::Result<()> {
    if !ATTACH_SIGNALS.iter().any(|&(_, s)| s == signal) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("signal {signal} is not one attach may use (USR1, USR2, WINCH or URG)"),
        ));
    }
    let mut signals = signal_hook::iterator::Signals::new([signal])?;
    let config = Arc::new(SessionConfig {
        host: Arc::new(std::mem::take(&mut host.host)),
        username: String::new(),
        password: String::new(),
        idle_timeout: host.idle_timeout,
        login_timeout: host.login_timeout,
        write_timeout: host.write_timeout,
        limits: host.limits,
        admission: Admission::new(1, 1),
        stop: Arc::new(AtomicBool::new(false)),
    });
    // Returns once the thread runs under its name, which the thread itself
    // sets as it starts: `leakscope attach` looks for that name before it
    // sends the signal.
    let (started, running) = std::sync::mpsc::sync_channel::<()>(1);
    crate::tracker::spawn_own(
        std::thread::Builder::new()
            .name(protocol::ATTACH_THREAD.into())
            .stack_size(8 << 20),
        move || {
            let _ = started.send(());
            for _ in signals.forever() {
                if let Err(e) = attach_once(&config) {
                    announce(&format!("leakscope: attach refused: {e}"));
                }
            }
        },
    )?;
    let _ = running.recv();
    Ok(())
}

fn attach_once(config: &Arc<SessionConfig>) -> io::Result<()> {
    let path = rendezvous_file(std::process::id())?;
    let (port, token) = read_rendezvous(&path)?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(format!("{}\r\n", greeting(&token)).as_bytes())?;
    let Some(slot) = config.admission.session() else {
        stream.write_all(b"An attached console is open already.\r\n")?;
        return Ok(());
    };
    Session::new(stream.into(), config.clone(), Entry::Attached(slot)).run()
}
