//! An opt-in HTTP endpoint for people and for the engines a fleet already
//! runs: `GET /` is a page (live memory over time, the leak report, the
//! heap's rows to drill into, the flamegraph; every asset embedded),
//! `GET /debug/pprof/heap` serves the live heap as Go's heap profile
//! (gzipped pprof: `go tool pprof http://HOST/debug/pprof/heap`, Pyroscope,
//! Parca), `GET /metrics` serves Prometheus' text format (counters,
//! jemalloc's figures, leakscope's own memory, live instances per tracked
//! class, live bytes and blocks of the top types and sites).
//!
//! ```no_run
//! # fn main() -> Result<(), leakscope::http::SpawnError> {
//! let endpoint = leakscope::http::Endpoint::builder()
//!     .addr("127.0.0.1:6060".parse().unwrap())
//!     .with_default_env() // LEAKSCOPE_HTTP=127.0.0.1:6060 also turns it on
//!     .spawn()?;
//! println!("serving on {:?}", endpoint.addr());
//! # Ok(()) }
//! ```
//!
//! It runs on its own OS threads (never on the program's async runtime),
//! answers at most [`DEFAULT_MAX_CONNECTIONS`] requests at once (more get
//! `503`), reads a request within [`DEFAULT_READ_TIMEOUT`] and at most
//! [`MAX_REQUEST`] bytes of it, and changes nothing in the process: every
//! endpoint only reads. Labels are bounded: the top [`DEFAULT_TOP`] types
//! and sites, the first 100 classes, values cut to
//! 120 characters.

#![doc = include_str!("../../docs/http.md")]

mod metrics;
mod page;
mod server;

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

pub use metrics::render as metrics;

/// The address the endpoint listens on unless told otherwise.
pub const DEFAULT_ADDR: &str = "127.0.0.1:6060";
/// Clients answered at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4;
/// Time a client has to send its request.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client has to take the answer, from its first byte.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a request's view of the heap may take (a graph view of a big heap
/// takes a while); past it the request gets `503` saying what the view
/// was doing. A view also stops when its client goes away.
pub const DEFAULT_VIEW_TIMEOUT: Duration = Duration::from_secs(120);
/// Types and sites given a series of their own in `/metrics`.
pub const DEFAULT_TOP: usize = 20;
/// The longest request accepted (bytes of request line and headers).
pub const MAX_REQUEST: usize = 8 * 1024;
/// Connections whose request is still arriving, each with up to
/// [`DEFAULT_READ_TIMEOUT`] to finish it; these do not take the places of
/// requests being answered. One more closes the one that has waited
/// longest.
pub const MAX_READING: usize = 32;

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// `LEAKSCOPE_HTTP` is not an address.
    #[error("LEAKSCOPE_HTTP={0} is not an address (HOST:PORT)")]
    BadAddress(String),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The server's thread could not start.
    #[error("cannot start the endpoint's thread: {0}")]
    Thread(#[source] io::Error),
}

/// Configures and starts an [`Endpoint`].
#[derive(Clone, Debug)]
pub struct Builder {
    addr: Option<SocketAddr>,
    env_error: Option<String>,
    settings: Settings,
}

/// What the server's threads share.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    pub(crate) max_connections: usize,
    pub(crate) read_timeout: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) view_timeout: Duration,
    pub(crate) top: usize,
}

/// A running endpoint (or none, when nothing asked for one). Dropping it
/// stops the server.
#[derive(Debug)]
pub struct Endpoint {
    addr: Option<SocketAddr>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Endpoint {
    /// A builder: no address until [`Builder::addr`] or
    /// [`Builder::with_default_env`] gives one.
    pub fn builder() -> Builder {
        Builder {
            addr: None,
            env_error: None,
            settings: Settings {
                max_connections: DEFAULT_MAX_CONNECTIONS,
                read_timeout: DEFAULT_READ_TIMEOUT,
                write_timeout: DEFAULT_WRITE_TIMEOUT,
                view_timeout: DEFAULT_VIEW_TIMEOUT,
                top: DEFAULT_TOP,
            },
        }
    }

    /// Where it listens (`None`: not started).
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(addr) = self.addr {
            // Wake the blocking accept.
            let _ = TcpStream::connect_timeout(&addr, Duration::from_millis(200));
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Builder {
    /// Listens on `addr` (port 0: any free port).
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = Some(addr);
        self
    }

    /// Applies `LEAKSCOPE_HTTP` (see [`config`](crate::config)): when set,
    /// the endpoint listens there. Settings made after this call win.
    pub fn with_default_env(mut self) -> Self {
        if let Some(v) = crate::config::HTTP.value() {
            match v.trim().parse() {
                Ok(addr) => self.addr = Some(addr),
                Err(_) => self.env_error = Some(v),
            }
        }
        self
    }

    /// Answers at most `n` clients at once (default 4); more get `503`.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.settings.max_connections = n.max(1);
        self
    }

    /// Types and sites given series of their own in `/metrics` (default 20).
    pub fn top(mut self, n: usize) -> Self {
        self.settings.top = n;
        self
    }

    /// The time a client has to send its request (default 5 s).
    pub fn read_timeout(mut self, t: Duration) -> Self {
        self.settings.read_timeout = t;
        self
    }

    /// The time a request's view may take (default
    /// [`DEFAULT_VIEW_TIMEOUT`]); past it the request gets `503`.
    pub fn view_timeout(mut self, t: Duration) -> Self {
        self.settings.view_timeout = t;
        self
    }

    /// Starts the server on its own thread; an endpoint without an address
    /// (none given, none in the environment) does nothing.
    pub fn spawn(self) -> Result<Endpoint, SpawnError> {
        let stop = Arc::new(AtomicBool::new(false));
        if let Some(v) = self.env_error {
            return Err(SpawnError::BadAddress(v));
        }
        let Some(addr) = self.addr else {
            return Ok(Endpoint {
                addr: None,
                stop,
                thread: None,
            });
        };
        let listener =
            TcpListener::bind(addr).map_err(|source| SpawnError::Bind { addr, source })?;
        let addr = listener.local_addr().map_err(SpawnError::Thread)?;
        if !addr.ip().is_loopback() {
            crate::sys::operator::warn(&format!(
                "leakscope: warning: the HTTP endpoint listens on {addr}, which is not a \
                 loopback address: anyone who can reach it reads the program's heap \
                 profile and metrics"
            ));
        }
        let settings = self.settings;
        let thread_stop = stop.clone();
        let thread = crate::tracker::spawn_own(
            std::thread::Builder::new().name("leakscope-http".into()),
            move || server::serve(listener, settings, thread_stop),
        )
        .map_err(SpawnError::Thread)?;
        crate::leaks::start();
        Ok(Endpoint {
            addr: Some(addr),
            stop,
            thread: Some(thread),
        })
    }
}
