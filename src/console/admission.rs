//! Who may have a session. Connections that have not logged in wait in a
//! pool of their own, and the oldest of them is dropped when it is full, so
//! silent or slow connections can neither take a logged-in user's slot nor
//! keep a new user out. Logged-in sessions have slots of their own. Wrong
//! passwords are counted per source address, across connections.

use std::collections::HashMap;
use std::net::{IpAddr, Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::limits::{GUESS_WINDOW, GUESSES_PER_WINDOW, MAX_GUESS_SOURCES};

struct Waiting {
    id: u64,
    stream: TcpStream,
}

struct Guesses {
    since: Instant,
    wrong: u32,
}

/// The slots and the counts of one console.
pub(super) struct Admission {
    max_sessions: usize,
    max_waiting: usize,
    sessions: AtomicUsize,
    /// Notified when a session's slot is given back.
    slot_freed: (Mutex<()>, Condvar),
    waiting: Mutex<Vec<Waiting>>,
    next_id: AtomicU64,
    guesses: Mutex<HashMap<IpAddr, Guesses>>,
}

/// A connection's place among those waiting to log in; given up when it
/// drops.
pub(super) struct WaitTicket {
    admission: Arc<Admission>,
    id: u64,
}

/// A logged-in session's slot; given back when it drops (a panic too).
pub(super) struct SessionSlot {
    admission: Arc<Admission>,
}

impl Admission {
    pub(super) fn new(max_sessions: usize, max_waiting: usize) -> Arc<Self> {
        Arc::new(Admission {
            max_sessions: max_sessions.max(1),
            max_waiting: max_waiting.max(1),
            sessions: AtomicUsize::new(0),
            slot_freed: (Mutex::new(()), Condvar::new()),
            waiting: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
            guesses: Mutex::new(HashMap::new()),
        })
    }

    /// Whether every logged-in slot is taken.
    pub(super) fn full(&self) -> bool {
        self.sessions.load(Ordering::Relaxed) >= self.max_sessions
    }

    /// Puts a new connection among those waiting to log in; when they are
    /// as many as allowed, the one that has waited longest is disconnected.
    pub(super) fn wait(self: &Arc<Self>, stream: &TcpStream) -> WaitTicket {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if waiting.len() >= self.max_waiting {
            let oldest = waiting.remove(0);
            let _ = oldest.stream.shutdown(Shutdown::Both);
        }
        if let Ok(clone) = stream.try_clone() {
            waiting.push(Waiting { id, stream: clone });
        }
        WaitTicket {
            admission: self.clone(),
            id,
        }
    }

    /// A logged-in slot, when one is free.
    pub(super) fn session(self: &Arc<Self>) -> Option<SessionSlot> {
        self.sessions
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < self.max_sessions).then_some(n + 1)
            })
            .ok()
            .map(|_| SessionSlot {
                admission: self.clone(),
            })
    }

    /// A logged-in slot, waiting up to `patience` for one to be given back
    /// while every slot is taken, and giving up early once `stop` says so.
    pub(super) fn session_within(
        self: &Arc<Self>,
        patience: Duration,
        stop: impl Fn() -> bool,
    ) -> Option<SessionSlot> {
        let deadline = Instant::now() + patience;
        let (lock, freed) = &self.slot_freed;
        let mut held = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            // Tried under the lock: a slot given back after this try is
            // notified only once this thread waits.
            if let Some(slot) = self.session() {
                return Some(slot);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || stop() {
                return None;
            }
            // In slices, so that `stop` is looked at while nothing is freed.
            let slice = left.min(Duration::from_millis(100));
            held = freed
                .wait_timeout(held, slice)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// How long `source` must wait before its next password is checked
    /// (`None`: it may try now).
    pub(super) fn guess_wait(&self, source: IpAddr) -> Option<Duration> {
        let guesses = self.guesses.lock().unwrap_or_else(|e| e.into_inner());
        let g = guesses.get(&source)?;
        let age = g.since.elapsed();
        (g.wrong >= GUESSES_PER_WINDOW && age < GUESS_WINDOW).then(|| GUESS_WINDOW - age)
    }

    /// Counts a wrong password from `source`.
    pub(super) fn wrong_guess(&self, source: IpAddr) {
        let mut guesses = self.guesses.lock().unwrap_or_else(|e| e.into_inner());
        if guesses.len() >= MAX_GUESS_SOURCES {
            guesses.retain(|_, g| g.since.elapsed() < GUESS_WINDOW);
        }
        let g = guesses.entry(source).or_insert(Guesses {
            since: Instant::now(),
            wrong: 0,
        });
        if g.since.elapsed() >= GUESS_WINDOW {
            *g = Guesses {
                since: Instant::now(),
                wrong: 0,
            };
        }
        g.wrong += 1;
    }
}

impl Drop for WaitTicket {
    fn drop(&mut self) {
        let mut waiting = self
            .admission
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        waiting.retain(|w| w.id != self.id);
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.admission.sessions.fetch_sub(1, Ordering::Release);
        let (lock, freed) = &self.admission.slot_freed;
        drop(lock.lock().unwrap_or_else(|e| e.into_inner()));
        freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, TcpListener};

    #[test]
    fn slots_come_back_and_guesses_are_counted_per_source() {
        let a = Admission::new(2, 2);
        let s1 = a.session().unwrap();
        let _s2 = a.session().unwrap();
        assert!(a.session().is_none() && a.full());
        drop(s1);
        assert!(a.session().is_some());
        let me = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        for _ in 0..GUESSES_PER_WINDOW {
            assert_eq!(a.guess_wait(me), None);
            a.wrong_guess(me);
        }
        assert!(a.guess_wait(me).is_some_and(|w| w <= GUESS_WINDOW));
        assert_eq!(a.guess_wait(other), None);
    }

    #[test]
    fn a_slot_given_back_while_one_waits_is_taken() {
        let a = Admission::new(1, 1);
        let taken = a.session().unwrap();
        let giver = std::thread::spawn(move || drop(taken));
        let slot = a.session_within(Duration::from_secs(30), || false);
        giver.join().unwrap();
        assert!(slot.is_some(), "the slot given back is taken");
        // None given back: refused once the patience is spent, or at once
        // when told to stop.
        let started = Instant::now();
        assert!(
            a.session_within(Duration::from_millis(150), || false)
                .is_none()
        );
        assert!(started.elapsed() >= Duration::from_millis(150));
        let started = Instant::now();
        assert!(a.session_within(Duration::from_secs(30), || true).is_none());
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_full_waiting_pool_drops_its_oldest() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = Admission::new(1, 2);
        let conns: Vec<TcpStream> = (0..3)
            .map(|_| TcpStream::connect(l.local_addr().unwrap()).unwrap())
            .collect();
        let tickets: Vec<WaitTicket> = conns.iter().map(|c| a.wait(c)).collect();
        // The first was shut down; the other two wait.
        use std::io::Read;
        let mut buf = [0u8; 1];
        assert_eq!((&conns[0]).read(&mut buf).unwrap(), 0);
        assert_eq!(a.waiting.lock().unwrap().len(), 2);
        drop(tickets);
        assert!(a.waiting.lock().unwrap().is_empty());
    }
}
