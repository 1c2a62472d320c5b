//! The console's responsiveness: the round trip of a trivial command over
//! loopback, alone, and with 8 sessions at once while the host allocates at
//! full speed on another thread.
//!
//! Run: `cargo bench --bench console`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use leakscope::console::Console;

#[global_allocator]
static ALLOC: leakscope::Alloc = leakscope::Alloc::new();

fn read_until(s: &mut TcpStream, pat: &[u8]) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(pat) {
        let n = s.read(&mut buf).expect("read");
        assert!(n > 0, "closed");
        got.extend_from_slice(&buf[..n]);
    }
}

fn session(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    read_until(&mut s, b"Username: ");
    s.write_all(b"leakscope\r\n").unwrap();
    read_until(&mut s, &[255, 251, 1]);
    s.write_all(b"pw\r\n").unwrap();
    read_until(&mut s, b">>> ");
    s
}

/// Round trips of `1 + 1`, in µs, sorted.
fn round_trips(s: &mut TcpStream, n: usize) -> Vec<f64> {
    let mut v: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            s.write_all(b"1 + 1\r\n").unwrap();
            read_until(s, b"2\r\n>>> ");
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let c = Console::builder().port(0).password("pw").spawn().unwrap();
    let addr = c.addr().unwrap();
    let mut one = session(addr);
    round_trips(&mut one, 50);
    let alone = round_trips(&mut one, 1000);
    // The console allows 8 sessions: this one leaves first.
    one.write_all(&[4]).unwrap();
    drop(one);
    std::thread::sleep(Duration::from_millis(300));

    let stop = Arc::new(AtomicBool::new(false));
    let host = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut ring: Vec<Option<Vec<u8>>> = (0..64).map(|_| None).collect();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                ring[i % 64] = Some(vec![1u8; 16 + i % 2000]);
                i += 1;
            }
            i
        })
    };
    let sessions: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = session(addr);
                round_trips(&mut s, 300)
            })
        })
        .collect();
    let mut busy: Vec<f64> = sessions
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    stop.store(true, Ordering::Relaxed);
    let allocations = host.join().unwrap();
    busy.sort_by(|a, b| a.total_cmp(b));
    let pct = |v: &[f64], p: f64| v[((v.len() as f64 - 1.0) * p) as usize];
    println!("# console\n");
    println!("| measure | median | p99 | target |");
    println!("|---|---:|---:|---:|");
    println!(
        "| `1 + 1` round trip, one session | {:.0} µs | {:.0} µs | ≤ 1 ms median |",
        pct(&alone, 0.5),
        pct(&alone, 0.99)
    );
    println!(
        "| same, 8 sessions at once, host allocating flat out ({allocations} allocations meanwhile) | {:.0} µs | {:.0} µs | answers |",
        pct(&busy, 0.5),
        pct(&busy, 0.99)
    );
    drop(c);
}
