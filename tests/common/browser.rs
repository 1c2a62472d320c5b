//! Headless Chromium driven over the DevTools protocol, on the pipe
//! Chromium offers for it (`--remote-debugging-pipe`: commands on its fd 3,
//! answers and events on its fd 4, each a JSON message ended by a NUL).
//! No port, no WebSocket: the browser is this test's child and dies with it.
//!
//! It loads a page, evaluates expressions in it, clicks, takes screenshots,
//! and keeps every request the page made and every error it logged.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How the tests start Chromium: headless, as root, with none of the
/// background connections a closed network refuses.
pub(crate) const HEADLESS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
];

/// The longest any one command may take.
const COMMAND_TIME: Duration = Duration::from_secs(60);

/// A running headless Chromium with one page open.
pub(crate) struct Browser {
    child: Child,
    commands: std::io::PipeWriter,
    messages: Receiver<Value>,
    next_id: u64,
    session: String,
    profile: PathBuf,
    /// Every URL the page asked for, in order.
    pub(crate) requests: Vec<String>,
    /// Every error the page logged: exceptions, `console.error`, failed
    /// loads and refusals by its security policy.
    pub(crate) errors: Vec<String>,
}

impl Browser {
    /// Starts Chromium (`program`) headless with a new profile and a page
    /// `width` × `height` CSS pixels.
    pub(crate) fn start(program: &str, width: u32, height: u32) -> Browser {
        let profile = std::env::temp_dir().join(format!(
            "leakscope-chromium-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        let (to_browser, commands) = std::io::pipe().unwrap();
        let (answers, from_browser) = std::io::pipe().unwrap();
        let (child_in, child_out) = (to_browser.as_raw_fd(), from_browser.as_raw_fd());
        let mut command = Command::new(program);
        command
            .args(HEADLESS)
            .args([
                "--remote-debugging-pipe",
                &format!("--window-size={width},{height}"),
                &format!("--user-data-dir={}", profile.display()),
                "about:blank",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                if std::env::var_os("LEAKSCOPE_TEST_BROWSER_LOG").is_some() {
                    Stdio::inherit()
                } else {
                    Stdio::null()
                },
            );
        // SAFETY: between fork and exec only dup2, which is async-signal-safe,
        // runs; it puts the pipes' ends where Chromium looks for them (and
        // clears their close-on-exec flag, as dup2 does).
        unsafe {
            command.pre_exec(move || {
                // Out of the way first: either end may itself be fd 3 or 4.
                let a = libc::fcntl(child_in, libc::F_DUPFD, 10);
                let b = libc::fcntl(child_out, libc::F_DUPFD, 10);
                if a < 0 || b < 0 || libc::dup2(a, 3) < 0 || libc::dup2(b, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("chromium");
        drop(to_browser);
        drop(from_browser);
        let (tx, messages) = channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(answers);
            let mut buf = Vec::new();
            while r.read_until(0, &mut buf).is_ok_and(|n| n > 0) {
                if buf.last() == Some(&0) {
                    buf.pop();
                }
                if let Ok(v) = serde_json::from_slice::<Value>(&buf)
                    && tx.send(v).is_err()
                {
                    break;
                }
                buf.clear();
            }
        });
        let mut b = Browser {
            child,
            commands,
            messages,
            next_id: 0,
            session: String::new(),
            profile,
            requests: Vec::new(),
            errors: Vec::new(),
        };
        let target = b.call("Target.createTarget", json!({ "url": "about:blank" }));
        let target = target["targetId"].as_str().unwrap().to_string();
        let attached = b.call(
            "Target.attachToTarget",
            json!({ "targetId": target, "flatten": true }),
        );
        b.session = attached["sessionId"].as_str().unwrap().to_string();
        for domain in ["Page", "Runtime", "Network", "Log"] {
            b.call(&format!("{domain}.enable"), json!({}));
        }
        b.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
        );
        b
    }

    /// Sends a command (to the page, once one is attached) and waits for
    /// its answer, keeping the events that come meanwhile.
    pub(crate) fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.commands
            .write_all(&bytes)
            .expect("chromium took no command");
        let deadline = Instant::now() + COMMAND_TIME;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = self
                .messages
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("chromium did not answer {method} in time"));
            if m["id"].as_u64() == Some(id) {
                if let Some(e) = m.get("error") {
                    panic!("{method}: {e}");
                }
                return m["result"].clone();
            }
            self.keep(&m);
        }
    }

    /// Takes in the events that came without a command.
    fn drain(&mut self) {
        while let Ok(m) = self.messages.try_recv() {
            self.keep(&m);
        }
    }

    fn keep(&mut self, m: &Value) {
        let p = &m["params"];
        match m["method"].as_str().unwrap_or("") {
            "Network.requestWillBeSent" => {
                self.requests
                    .push(p["request"]["url"].as_str().unwrap_or("").to_string());
            }
            "Runtime.exceptionThrown" => self.errors.push(format!(
                "exception: {}",
                p["exceptionDetails"]["exception"]["description"]
                    .as_str()
                    .or(p["exceptionDetails"]["text"].as_str())
                    .unwrap_or("?")
            )),
            "Runtime.consoleAPICalled" if p["type"] == "error" => {
                self.errors.push(format!("console.error: {}", p["args"]))
            }
            "Log.entryAdded" if p["entry"]["level"] == "error" => self.errors.push(format!(
                "{}: {} {}",
                p["entry"]["source"].as_str().unwrap_or("log"),
                p["entry"]["text"].as_str().unwrap_or("?"),
                p["entry"]["url"].as_str().unwrap_or("")
            )),
            _ => {}
        }
    }

    /// Loads `url` and waits for its load event.
    pub(crate) fn open(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url }));
        self.wait_until(
            "document.readyState === 'complete'",
            Duration::from_secs(60),
        );
    }

    /// The value of `expr` in the page (a promise is awaited).
    pub(crate) fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{expr}: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Waits until `expr` is true in the page, polling; panics with the
    /// expression after `limit`.
    pub(crate) fn wait_until(&mut self, expr: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if self.eval(&format!("!!({expr})")) == json!(true) {
                self.drain();
                return;
            }
            assert!(
                Instant::now() < deadline,
                "never true in the page: {expr}\nerrors: {:?}\nrequests: {:?}",
                self.errors,
                self.requests
            );
            // Events that arrive while waiting are kept as they come.
            if let Ok(m) = self.messages.recv_timeout(Duration::from_millis(100)) {
                self.keep(&m);
            }
        }
    }

    /// Clicks the middle of the element `selector` finds, as a mouse does.
    pub(crate) fn click(&mut self, selector: &str) {
        let (x, y) = self.middle(selector);
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({ "type": kind, "x": x, "y": y, "button": "left", "clickCount": 1 }),
            );
        }
    }

    /// Moves the mouse over the middle of the element `selector` finds.
    pub(crate) fn hover(&mut self, selector: &str) {
        let (x, y) = self.middle(selector);
        self.call(
            "Input.dispatchMouseEvent",
            json!({ "type": "mouseMoved", "x": x, "y": y }),
        );
    }

    /// The middle of an element, in the window, scrolled into view.
    fn middle(&mut self, selector: &str) -> (f64, f64) {
        let at = self.eval(&format!(
            "(() => {{ const e = document.querySelector({s}); e.scrollIntoView({{block: 'center'}}); \
             const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()",
            s = json!(selector)
        ));
        (at[0].as_f64().unwrap(), at[1].as_f64().unwrap())
    }

    /// A PNG of the whole page (beyond the window, down to its end).
    pub(crate) fn screenshot(&mut self, path: &Path) {
        let r = self.call(
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": true }),
        );
        let png = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            r["data"].as_str().unwrap(),
        )
        .expect("a screenshot in base64");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }

    /// Makes the page `width` × `height` CSS pixels (a phone's, say).
    pub(crate) fn resize(&mut self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile }),
        );
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
