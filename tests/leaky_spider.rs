//! leaky_spider end to end: the example runs as a child process and is
//! diagnosed through its telnet console, as a user would.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use common::Client;

/// Each test runs a whole crawler: one at a time, so that two CPUs are not
/// shared by four crawlers and every timing window is the crawler's own.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The example, built next to this test by `cargo test`.
fn example() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join("examples").join("leaky_spider");
    assert!(
        path.exists(),
        "{} is missing: `cargo test` builds the examples",
        path.display()
    );
    path
}

struct Spider {
    child: Child,
    lines: Receiver<String>,
    port: u16,
}

impl Spider {
    fn start(args: &[&str], mode: &str) -> Spider {
        Spider::start_with(args, mode, &[])
    }

    /// [`Spider::start`] with more environment variables.
    fn start_with(args: &[&str], mode: &str, env: &[(&str, &str)]) -> Spider {
        let mut child = Command::new(example())
            .args(args)
            .args(["--console-port", "0"])
            .env("LEAKSCOPE_CONSOLE_PASSWORD", "pw")
            .env("LEAKSCOPE_MODE", mode)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("leaky_spider");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut s = Spider {
            child,
            lines,
            port: 0,
        };
        let line = s.wait_line("Telnet console listening on 127.0.0.1:");
        s.port = line.rsplit(':').next().unwrap().trim().parse().unwrap();
        s
    }

    fn wait_line(&mut self, pat: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no line with {pat:?} from leaky_spider");
            if let Ok(l) = self
                .lines
                .recv_timeout(left.min(Duration::from_millis(500)))
                && l.contains(pat)
            {
                return l;
            }
        }
    }

    /// Where its HTTP endpoint listens (it was started with `--http`).
    fn http(&mut self) -> std::net::SocketAddr {
        let line = self.wait_line("pprof and metrics on http://");
        let addr = line
            .split("pprof and metrics on http://")
            .nth(1)
            .and_then(|s| s.split('/').next())
            .unwrap();
        addr.parse().unwrap()
    }

    /// A session whose lines may run for two minutes: the graph views of
    /// a debug build's heap take longer than the console's 10 s on a busy
    /// machine.
    fn console(&self) -> Client {
        let mut c = Client::connect(([127, 0, 0, 1], self.port).into());
        c.login("pw");
        assert_eq!(
            c.run("line_timeout(120)").replace('\r', ""),
            "Lines of this session now stop after 120 s.\n"
        );
        c
    }

    fn exit_status(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "leaky_spider did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Spider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pympler's table of a sampled heap says under it that its figures are
/// estimates.
fn pympler_says_sampled_figures_are_estimates(c: &mut Client) {
    let table = run(c, "summary.print_(summary.summarize(muppy.get_objects()))");
    assert!(
        table.contains("types | # objects | total size\n"),
        "{table}"
    );
    assert!(
        table.ends_with(
            "\nEstimated from samples (unbiased); set_mode('exact') for exact figures.\n"
        ),
        "{table}"
    );
}

/// A console line's output, without the CRs telnet puts before each LF.
fn run(c: &mut Client, line: &str) -> String {
    c.run(line).replace('\r', "")
}

fn int(c: &mut Client, expr: &str) -> u64 {
    let out = run(c, expr);
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{expr}: {out}"))
}

/// (live, oldest age in s) of a class in prefs(), if listed.
fn prefs_row(c: &mut Client, class: &str) -> Option<(u64, u64)> {
    let out = run(c, "prefs()");
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(class))
        .map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            (
                cells[1].parse().unwrap(),
                cells[2].trim_end_matches('s').parse().unwrap(),
            )
        })
}

#[test]
fn the_leak_is_found_through_the_console() {
    let _serial = serial();
    let mut spider = Spider::start(&["--pages", "2000"], "exact");
    let done = spider.wait_line("Crawled ");
    assert!(done.starts_with("Crawled 2000 pages"), "{done}");
    let mut c = spider.console();
    let nasty = int(&mut c, "engine.spider_pages['somenastyspider']");
    assert!(nasty >= 10, "the nasty spider crawled {nasty} pages");
    let (live, age) = prefs_row(&mut c, "HtmlResponse").expect("responses are alive");
    // Every response of the nasty spider is kept alive by the chain of
    // requests' meta; the good spider's are gone.
    assert!(
        live.abs_diff(nasty) <= 2,
        "{live} live responses, {nasty} nasty pages"
    );
    std::thread::sleep(Duration::from_millis(2100));
    let (_, later) = prefs_row(&mut c, "HtmlResponse").unwrap();
    assert!(
        later >= age + 2,
        "the oldest response grows older: {age}s then {later}s"
    );
    let url = run(&mut c, "get_oldest('HtmlResponse').url");
    assert!(url.contains("www.somenastyspider.com"), "{url}");
    let without = run(&mut c, "prefs(ignore=Spider)");
    assert!(without.contains("HtmlResponse"), "{without}");
    assert!(!without.contains("Spider "), "no spider rows: {without}");
    let with = run(&mut c, "prefs()");
    assert!(
        with.contains("SomeNastySpider") && with.contains("GoodSpider"),
        "{with}"
    );
    let by_type = run(&mut c, "hpy().heap().bytype()");
    let top: Vec<&str> = by_type.lines().skip(3).take(10).collect();
    assert!(
        top.iter().any(|l| l.contains("HtmlResponse")),
        "a response type among the top rows:\n{by_type}"
    );
    let stopped = run(&mut c, "engine.stop()");
    assert!(stopped.contains("Stopping the crawl"), "{stopped}");
    assert!(spider.exit_status().success());
}

/// The index of the row whose label contains `pat` in a partition's text.
fn row_index(table: &str, pat: &str) -> usize {
    let line = table
        .lines()
        .find(|l| l.contains(pat))
        .unwrap_or_else(|| panic!("no row with {pat:?} in\n{table}"));
    line.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn the_real_telnet_finds_who_holds_the_responses() {
    let test = "the_real_telnet_finds_who_holds_the_responses";
    if !common::have("telnet", "inetutils-telnet", test)
        || !common::have("script", "bsdutils", test)
    {
        return;
    }
    let _serial = serial();
    let mut spider = Spider::start(&["--pages", "1500"], "exact");
    spider.wait_line("Crawled ");
    // Which rows are the bodies and the responses (the crawl is over: the
    // heap no longer changes).
    let mut c = spider.console();
    let by_type = run(&mut c, "hpy().heap().bytype().all");
    let bodies = row_index(&by_type, " Vec<u8>");
    let responses = row_index(&by_type, "HtmlResponse>>");
    let mut t = common::Terminal::start(&format!(
        "stty cols 80 rows 24; telnet 127.0.0.1 {}",
        spider.port
    ));
    t.wait_for("Username: ");
    t.type_bytes(b"leakscope\r");
    t.wait_for("Password: ");
    t.type_bytes(b"pw\r");
    t.wait_for(">>> ");
    // The bodies are held by the responses' `body`, the responses by the
    // requests' `meta`: the culprit. The first view builds the heap graph
    // of a debug build's heap, which may take more than the console's 10 s
    // on a busy machine: the session gives its lines longer, and `run`
    // waits for the prompt for 30 s.
    assert_eq!(
        t.run("line_timeout(30)"),
        "Lines of this session now stop after 30 s.\n"
    );
    let bodies_via = t.run(&format!("hpy().heap().bytype()[{bodies}].byvia"));
    assert!(bodies_via.contains("HtmlResponse.body"), "{bodies_via}");
    let via = t.run(&format!("hpy().heap().bytype()[{responses}].byvia"));
    assert_eq!(t.run("1 + 1"), "2\n");
    let first = top_row(&via);
    assert!(
        first.ends_with("Request.meta"),
        "the top row: {first}\n{via}"
    );
    let text = t.text();
    let wide: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_end().chars().count() > 80)
        .collect();
    assert!(wide.is_empty(), "lines wider than the terminal: {wide:#?}");
    t.type_bytes(&[4]);
    t.wait_exit();
}

/// The first row (index 0) of a partition's text.
/// The first row of a `byvia` table that names a referrer: rows in
/// brackets stand for referrers the graph cannot see (blocks known only by
/// samples from before a switch to exact mode), and may be the largest
/// when the crawl ran longer before the switch than after it.
fn top_named_row(table: &str) -> &str {
    table
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .find(|l| !l.trim_end().ends_with(']'))
        .unwrap_or_else(|| panic!("no named row in\n{table}"))
}

fn top_row(table: &str) -> &str {
    table
        .lines()
        .find(|l| l.trim_start().starts_with("0 "))
        .unwrap_or_else(|| panic!("no row 0 in\n{table}"))
}

/// `text`'s words with one space between them (a console answer is
/// wrapped to the client's width).
fn words(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A figure's bytes in `stats()`'s table: the row that starts with `name`.
fn stats_bytes(stats: &str, name: &str) -> u64 {
    let row = stats
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no {name:?} row in\n{stats}"));
    row[name.len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.trim_start_matches('~').parse().ok())
        .unwrap_or_else(|| panic!("no figure in {row:?}"))
}

/// Runs `line`, then checks in `stats()` that leakscope's own memory is
/// within its bound (plus `per_block` bytes per live block: the exact
/// recorder's share).
fn within_bound_after(c: &mut Client, line: &str, per_block: u64) {
    let out = run(c, line);
    // An exception's line (`MemoryError: …`), not a type named `Error`.
    assert!(
        !out.lines().any(|l| l.contains("Error: ")) && !out.contains("needs exact mode"),
        "{line}: {out}"
    );
    let stats = run(c, "stats()");
    let own = stats_bytes(&stats, "leakscope itself");
    let bound = stats_bytes(&stats, "  bound (16 MiB + 5% live)");
    let live_blocks: u64 = stats
        .lines()
        .find(|l| l.starts_with("live "))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        own <= bound + per_block * live_blocks,
        "after {line}: leakscope's own memory {own} B is above its bound {bound} B \
         (+{per_block} B for each of {live_blocks} live blocks)\n{stats}"
    );
}

/// A spider started in the default mode is switched to exact from the
/// console, with no restart: what it allocates from then on is known
/// exactly, and the graph views name who holds the responses.
#[test]
fn a_sampled_spider_switched_to_exact_names_who_holds_the_responses() {
    let _serial = serial();
    // A crawl that goes on while the test runs, at a bounded rate.
    let spider = Spider::start(&["--rate", "300"], "sampled");
    let mut c = spider.console();
    // The walkthrough's views in the default mode, each leaving leakscope
    // within its own memory's bound.
    let dir = std::env::temp_dir().join(format!("leakscope-bound-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dhat = dir.join("spider.json");
    let pprof = dir.join("spider.pb.gz");
    for line in [
        "x = hpy().heap()".to_string(),
        "x.bytype".into(),
        "x.bysite".into(),
        "x.bytype[0].stacks()".into(),
        "x.bytype[0].byvia".into(),
        format!("dump_dhat('{}')", dhat.display()),
        format!("dump_pprof('{}')", pprof.display()),
    ] {
        within_bound_after(&mut c, &line, 0);
    }
    std::fs::remove_dir_all(&dir).unwrap();
    let mode = run(&mut c, "mode()");
    assert!(mode.starts_with("sampled: counts everything"), "{mode}");
    let switched = run(&mut c, "set_mode('exact')");
    assert!(
        switched.starts_with("Mode exact: every block allocated"),
        "{switched}"
    );
    assert!(
        words(&switched).contains("predates the switch and is known only by its samples."),
        "{switched}"
    );
    assert!(
        switched.lines().all(|l| l.chars().count() <= 80),
        "fits 80 columns: {switched}"
    );
    assert!(run(&mut c, "mode()").starts_with("exact: "));
    let bad = run(&mut c, "set_mode('fast')");
    assert!(
        bad.contains(
            "ValueError: unknown mode 'fast': one of 'off', 'counters', 'sampled', 'exact'"
        ),
        "{bad}"
    );
    // Let the nasty spider crawl 200 more pages in exact mode.
    let nasty = "engine.spider_pages['somenastyspider']";
    let from = int(&mut c, nasty);
    let deadline = Instant::now() + Duration::from_secs(60);
    while int(&mut c, nasty) < from + 200 {
        assert!(
            Instant::now() < deadline,
            "the crawl stalled at {from} pages"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // One heap for every view below: the crawl goes on, and a new heap's
    // rows may come in another order.
    assert_eq!(run(&mut c, "x = hpy().heap()"), "");
    let by_type = run(&mut c, "x.bytype.all");
    let bodies = row_index(&by_type, " Vec<u8>");
    let responses = row_index(&by_type, "HtmlResponse>>");
    let bodies_via = run(&mut c, &format!("x.bytype[{bodies}].byvia"));
    assert!(bodies_via.contains("HtmlResponse.body"), "{bodies_via}");
    let via = run(&mut c, &format!("x.bytype[{responses}].byvia"));
    let first = top_named_row(&via);
    assert!(
        first.ends_with("Request.meta"),
        "the top row: {first}\n{via}"
    );
    // In exact mode the recorder adds at most 48 bytes per live block.
    within_bound_after(&mut c, &format!("x.bytype[{responses}].sp"), 48);
    within_bound_after(&mut c, "y = hpy().heap()", 48);
    // What the graph cannot see is said: the samples from before the
    // switch, and why unreachable() cannot answer yet.
    let sp = words(&run(&mut c, &format!("x.bytype[{bodies}].sp")));
    assert!(
        sp.contains("recorded as samples before exact mode: not in the graph"),
        "{sp}"
    );
    let lost = words(&run(&mut c, "hpy().unreachable()"));
    assert!(
        lost.contains("of the live heap predate the switch to exact mode and are not in the graph"),
        "{lost}"
    );
    let back = run(&mut c, "set_mode('sampled')");
    assert!(
        words(&back).contains("Blocks recorded in exact mode stay recorded, exactly"),
        "{back}"
    );
}

#[test]
fn every_scrapy_and_guppy_session_runs_verbatim_through_telnet() {
    let test = "every_scrapy_and_guppy_session_runs_verbatim_through_telnet";
    if !common::have("telnet", "inetutils-telnet", test)
        || !common::have("script", "bsdutils", test)
    {
        return;
    }
    let _serial = serial();
    let mut spider = Spider::start(&["--pages", "1500"], "exact");
    spider.wait_line("Crawled ");
    let pid = spider.child.id();
    let mut t = common::Terminal::start(&format!(
        "stty cols 80 rows 24; telnet 127.0.0.1 {}",
        spider.port
    ));
    t.wait_for("Username: ");
    t.type_bytes(b"leakscope\r");
    t.wait_for("Password: ");
    t.type_bytes(b"pw\r");
    t.wait_for(">>> ");
    let mut ask = |line: &str| {
        let out = t.run(line);
        assert!(!out.contains("Error"), "{line}: {out}");
        out
    };
    // (A debug build's graph views may take longer than 10 s.)
    ask("line_timeout(30)");
    // Scrapy's memory-leak guide and its Guppy session: `hpy` is Guppy's
    // session object, and the engine answers to its older status name.
    assert_eq!(ask("x = hpy.heap()"), "");
    let by_type = ask("x.bytype");
    assert!(by_type.starts_with("Partition of a set of "), "{by_type}");
    assert_eq!(
        by_type
            .lines()
            .nth(1)
            .map(str::split_whitespace)
            .unwrap()
            .collect::<Vec<_>>(),
        [
            "Index",
            "Count",
            "%",
            "Size",
            "%",
            "Cumulative",
            "%",
            "Type"
        ]
    );
    assert!(
        by_type.lines().nth(3).unwrap().ends_with(" Vec<u8>"),
        "{by_type}"
    );
    let via = ask("x.bytype[0].byvia");
    assert!(via.contains("  Referred to via\n"), "{via}");
    assert!(
        via.lines()
            .find(|l| l.trim_start().starts_with("0 "))
            .unwrap()
            .ends_with("HtmlResponse.body"),
        "{via}"
    );
    assert!(ask("engine.st()").starts_with("Execution engine status\n"));
    assert_eq!(ask("from scrapy.utils.trackref import get_oldest"), "");
    assert_eq!(ask("r = get_oldest('HtmlResponse')"), "");
    assert_eq!(ask("r.url"), "'http://www.somenastyspider.com/'\n");
    // diesel's console: the process id and the collector's counts.
    assert_eq!(ask("import os"), "");
    assert_eq!(ask("os.getpid()"), format!("{pid}\n"));
    assert_eq!(ask("import gc"), "");
    let count = ask("gc.get_count()");
    let n: Vec<u64> = count
        .trim()
        .trim_matches(|c| c == '(' || c == ')')
        .split(", ")
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(n.len(), 3, "{count}");
    assert_eq!(n[0], n[1] - n[2], "live = allocated - freed: {count}");
    // Pympler's muppy, summary and tracker.
    assert_eq!(ask("from pympler import muppy"), "");
    assert_eq!(ask("all_objects = muppy.get_objects()"), "");
    let len: u64 = ask("len(all_objects)").trim().parse().unwrap();
    assert!(len > 100, "the leaked responses and their bodies: {len}");
    assert_eq!(ask("from pympler import summary"), "");
    assert_eq!(ask("suml = summary.summarize(all_objects)"), "");
    let table = ask("summary.print_(suml)");
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].ends_with("types | # objects | total size"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("====") && lines[1].contains(" | ==="),
        "{table}"
    );
    assert!(lines[2].trim_start().starts_with("Vec<u8> | "), "{table}");
    assert!(lines[2].ends_with(" MB"), "{table}");
    let rows = lines[2..].iter().take_while(|l| l.contains(" | ")).count();
    assert_eq!(rows, 15, "Pympler's 15 rows: {table}");
    assert!(lines.iter().all(|l| l.chars().count() <= 80), "{table}");
    assert!(!table.contains("Estimated from samples"), "exact: {table}");
    assert_eq!(ask("from pympler import tracker"), "");
    assert_eq!(ask("tr = tracker.SummaryTracker()"), "");
    let diff = ask("tr.print_diff()");
    assert!(
        diff == "No change since the last call.\n"
            || diff.contains("types | # objects | total size"),
        "{diff}"
    );
    t.type_bytes(&[4]);
    t.wait_exit();
}

#[test]
fn fixed_keeps_responses_at_or_below_the_download_concurrency() {
    let _serial = serial();
    let spider = Spider::start(
        &["--fixed", "--pages", "3000", "--concurrency", "8"],
        "sampled",
    );
    let mut c = spider.console();
    let mut seen = 0;
    for _ in 0..10 {
        let live = prefs_row(&mut c, "HtmlResponse").map_or(0, |r| r.0);
        assert!(live <= 8, "{live} live responses with 8 downloads at most");
        seen += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(seen, 10);
    run(&mut c, "engine.stop()");
}

#[test]
fn a_blocking_pipeline_makes_the_engine_back_out_then_resume() {
    let _serial = serial();
    let spider = Spider::start(&["--blocking-pipeline", "5"], "sampled");
    let mut c = spider.console();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let est = run(&mut c, "est()");
        // Backing out, and the downloads under way when it began are done:
        // nothing is downloading.
        if est.contains("engine.scraper.slot.needs_backout()             : True")
            && est.contains("len(engine.downloader.active)                   : 0")
        {
            break;
        }
        assert!(Instant::now() < deadline, "never backed out: {est}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let blocked = int(&mut c, "engine.pages");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        int(&mut c, "engine.pages"),
        blocked,
        "no pages while backing out"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while int(&mut c, "engine.pages") < blocked + 100 {
        assert!(Instant::now() < deadline, "the crawl never resumed");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(run(&mut c, "est()").contains("needs_backout()             : False"));
    run(&mut c, "engine.stop()");
}

#[test]
fn the_spider_can_be_attached_to_and_answers_scrapys_older_names() {
    let _serial = serial();
    let spider = Spider::start(&[], "sampled");
    // `leakscope attach PID` checks this before it sends anything (the
    // handler comes just after the console's first line).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !leakscope::console::attach::protocol::catches_signal(
        spider.child.id(),
        leakscope::console::ATTACH_SIGNAL,
    )
    .unwrap()
    {
        assert!(
            Instant::now() < deadline,
            "the spider never handled SIGUSR2"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut c = spider.console();
    let st = run(&mut c, "engine.st()");
    assert!(st.starts_with("Execution engine status"), "{st}");
    // The same table: the same checks in the same order (values move on).
    let checks = |t: &str| -> Vec<String> {
        t.lines()
            .map(|l| l.split(" : ").next().unwrap_or("").trim_end().to_string())
            .collect()
    };
    assert_eq!(checks(&st), checks(&run(&mut c, "est()")));
    run(&mut c, "engine.stop()");
}

#[test]
fn pause_unpause_and_stop() {
    let _serial = serial();
    let mut spider = Spider::start(&[], "sampled");
    let mut c = spider.console();
    assert!(run(&mut c, "engine.pause()").contains("paused"));
    std::thread::sleep(Duration::from_millis(500));
    let paused = int(&mut c, "engine.pages");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        int(&mut c, "engine.pages"),
        paused,
        "page count flat for a second"
    );
    run(&mut c, "engine.unpause()");
    std::thread::sleep(Duration::from_millis(500));
    assert!(int(&mut c, "engine.pages") > paused, "downloads resumed");
    assert!(run(&mut c, "engine.stop()").contains("Stopping the crawl"));
    assert!(spider.exit_status().success());
}

/// One HTTP request, as a client sends it; the status line and the body.
fn http_get(addr: std::net::SocketAddr, request: &[u8]) -> (String, Vec<u8>) {
    http_get_within(addr, request, 20)
}

/// [`http_get`], waiting up to `secs` for the answer (a graph view of a
/// big exact heap in a debug build takes a while).
fn http_get_within(addr: std::net::SocketAddr, request: &[u8], secs: u64) -> (String, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(secs))).unwrap();
    s.write_all(request).unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(all.len(), |i| i + 4);
    let head = String::from_utf8_lossy(&all[..split]).into_owned();
    let status = head.lines().next().unwrap_or("").to_string();
    (status, all[split..].to_vec())
}

fn get(addr: std::net::SocketAddr, path: &str) -> (String, Vec<u8>) {
    http_get(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
    )
}

/// Asks `ask` every second until `done` accepts its answer, for at most
/// `secs` seconds; the last answer either way.
fn poll(secs: u64, mut ask: impl FnMut() -> String, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let answer = ask();
        if done(&answer) || Instant::now() > deadline {
            return answer;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn the_leak_report_names_the_bodies_the_crawl_site_and_request_meta() {
    let _serial = serial();
    let every_second = [("LEAKSCOPE_WATCH_INTERVAL", "1")];
    // Sampled (the default), through the HTTP endpoint.
    let mut spider = Spider::start_with(&["--http", "127.0.0.1:0"], "sampled", &every_second);
    let addr = spider.http();
    let bodies = |report: &serde_json::Value| {
        report["suspects"].as_array().and_then(|all| {
            all.iter()
                .find(|s| {
                    s["type"] == "Vec<u8>" && s["site"].as_str().unwrap().contains("Engine>::crawl")
                })
                .cloned()
        })
    };
    let json = poll(
        60,
        || String::from_utf8(get(addr, "/debug/leaks?format=json").1).unwrap(),
        |j| {
            serde_json::from_str(j)
                .ok()
                .and_then(|r| bodies(&r))
                .is_some()
        },
    );
    let report: serde_json::Value =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    let suspect = bodies(&report).unwrap_or_else(|| panic!("{json}"));
    assert_eq!(report["mode"], "sampled");
    assert_eq!(report["estimated"], true);
    assert!(report["points"].as_u64().unwrap() >= 6, "{json}");
    assert!(
        suspect["bytes_per_minute"].as_f64().unwrap() > 0.0,
        "{json}"
    );
    assert!(suspect["held_by"].is_null(), "{json}");
    // The same report as text, and as a metric.
    let (status, text) = get(addr, "/debug/leaks");
    let text = String::from_utf8(text).unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        text.contains(": Vec<u8>\n    site     Engine::crawl"),
        "{text}"
    );
    let metrics = String::from_utf8(get(addr, "/metrics").1).unwrap();
    let site = suspect["site"].as_str().unwrap();
    assert!(
        metrics.contains(&format!(
            "leakscope_leak_suspect_bytes{{type=\"Vec<u8>\",site=\"{site}\"}} "
        )),
        "{metrics}"
    );
    assert_eq!(
        get(addr, "/debug/leaks?format=xml"),
        (
            "HTTP/1.1 400 Bad Request".to_string(),
            b"format=xml: text or json\n".to_vec()
        )
    );
    // deep=True finds the holders in a few seconds of exact mode, then
    // switches back.
    let mut c = spider.console();
    let deep = c
        .run_within("leaks(deep=True, secs=3)", 120)
        .replace('\r', "");
    assert!(deep.contains("held by  HtmlResponse.body ("), "{deep}");
    assert!(
        words(&deep).contains("(switched on for this report, then back to sampled)"),
        "{deep}"
    );
    assert!(run(&mut c, "mode()").starts_with("sampled: "));
    run(&mut c, "engine.stop()");
    drop(spider);
    // Exact mode adds who holds the response: the next request's meta.
    let mut spider = Spider::start_with(&["--http", "127.0.0.1:0"], "exact", &every_second);
    let addr = spider.http();
    let mut c = spider.console();
    // (A point of an exact-mode heap takes a while in a debug build, and
    // the history waits nine times that between points.)
    let held = |r: &str| {
        r.contains("held by  HtmlResponse.body (")
            && r.contains("← Request.meta")
            && r.contains("    kept by  ")
    };
    // (In a debug build the graph of this heap and the holders of its
    // suspects take seconds; the console's line limit is the program's.)
    let report = poll(150, || c.run_within("leaks()", 120).replace('\r', ""), held);
    assert!(held(&report), "{report}");
    // The page drills down the same way: the bodies' row leads to them by
    // site, and from there to what holds them, their paths from the roots
    // and what retains them.
    let (status, page) = http_get_within(
        addr,
        format!("GET /heap?by=type HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
        120,
    );
    let page = String::from_utf8(page).unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK");
    let at = page
        .find(">Vec&lt;<wbr>u8&gt;</a>")
        .unwrap_or_else(|| panic!("no Vec<u8> row: {page}"));
    let bodies = page[..at]
        .rsplit("href=\"")
        .next()
        .and_then(|h| h.split('"').next())
        .unwrap()
        .replace("&amp;", "&");
    assert!(
        bodies.ends_with("&by=site") || bodies.ends_with("?type=Vec%3Cu8%3E&by=site"),
        "{bodies}"
    );
    for (by, want) in [
        ("via", "HtmlResponse.body"),
        ("sp", "Request.meta"),
        (
            "dominators",
            "<th scope=\"col\" class=\"num\">Retained</th>",
        ),
    ] {
        let path = bodies.replace("by=site", &format!("by={by}"));
        let (status, body) = http_get_within(
            addr,
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
            120,
        );
        let body = String::from_utf8(body).unwrap();
        assert_eq!(status, "HTTP/1.1 200 OK", "{path}");
        assert!(body.contains(want), "{path}: {body}");
        assert!(!body.contains("class=\"refused\""), "{path}: {body}");
    }
    run(&mut c, "engine.stop()");
    drop(spider);
    // Without the leak, nothing is named once the report has 12 points.
    let spider = Spider::start_with(&["--fixed"], "sampled", &every_second);
    let mut c = spider.console();
    let points = |r: &str| {
        r.split(" points every ")
            .next()
            .and_then(|head| head.rsplit('(').next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let report = poll(60, || run(&mut c, "leaks()"), |r| points(r) >= 12);
    assert!(report.starts_with("No suspects: nothing grew"), "{report}");
    run(&mut c, "engine.stop()");
}

/// The page's text colours against what is behind them: the elements
/// whose contrast is under WCAG's 4.5:1 for text (3:1 for large text),
/// as `tag: text ratio`.
const LOW_CONTRAST: &str = r#"(() => {
  const rgb = (c) => (c.match(/[\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const ground = (e) => {
    for (; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || c[3] > 0) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const low = [];
  for (const e of document.querySelectorAll('body *')) {
    const own = [...e.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || e.closest('svg')) continue;
    const s = getComputedStyle(e);
    const a = lum(rgb(s.color)), b = lum(ground(e));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const large = parseFloat(s.fontSize) >= 24 || (parseFloat(s.fontSize) >= 18.66 && +s.fontWeight >= 700);
    if (ratio < (large ? 3 : 4.5)) low.push(e.tagName + ': ' + e.textContent.trim().slice(0, 40) + ' ' + ratio.toFixed(2));
  }
  return low;
})()"#;

/// What an accessibility check reads off the page: tables without column
/// headers, images and pictures without a text alternative, links without
/// text.
const UNLABELLED: &str = r#"(() => {
  const bad = [];
  for (const t of document.querySelectorAll('table'))
    if (!t.querySelector('thead th[scope=col]')) bad.push('table without headers: ' + t.textContent.slice(0, 40));
  for (const i of document.querySelectorAll('img'))
    if (!i.hasAttribute('alt')) bad.push('img without alt: ' + i.src);
  for (const g of document.querySelectorAll('svg[role=img]')) {
    const ids = (g.getAttribute('aria-labelledby') || '').split(' ').filter(Boolean);
    const text = ids.map((id) => (document.getElementById(id) || {}).textContent || '').join('').trim();
    if (!text && !g.getAttribute('aria-label')) bad.push('picture without text: ' + g.outerHTML.slice(0, 60));
  }
  for (const o of document.querySelectorAll('object'))
    if (!o.getAttribute('aria-label')) bad.push('object without label');
  for (const a of document.querySelectorAll('a'))
    if (!a.textContent.trim()) bad.push('link without text: ' + a.href);
  return bad;
})()"#;

/// The text of the section headed `id`.
fn section_text(b: &mut common::browser::Browser, id: &str) -> String {
    b.eval(&format!(
        "document.querySelector('section[aria-labelledby={id}]').innerText"
    ))
    .as_str()
    .unwrap_or("")
    .to_string()
}

#[test]
fn the_page_shows_memory_climbing_the_suspect_and_its_flamegraph() {
    let test = "the_page_shows_memory_climbing_the_suspect_and_its_flamegraph";
    if !common::have("chromium", "chromium", test) {
        return;
    }
    let _serial = serial();
    let every_second = [("LEAKSCOPE_WATCH_INTERVAL", "1")];
    let mut spider = Spider::start_with(&["--http", "127.0.0.1:0"], "sampled", &every_second);
    let addr = spider.http();
    let base = format!("http://{addr}");
    // Half a minute of history, and the leak judged.
    poll(
        120,
        || String::from_utf8(get(addr, "/debug/leaks?format=json").1).unwrap(),
        |j| {
            serde_json::from_str::<serde_json::Value>(j).is_ok_and(|r| {
                r["watched_seconds"].as_f64().unwrap_or(0.0) >= 31.0
                    && r["suspects"]
                        .as_array()
                        .is_some_and(|s| s.iter().any(|s| s["type"] == "Vec<u8>"))
            })
        },
    );
    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    let mut b = common::browser::Browser::start("chromium", 1280, 800);
    b.open(&format!("{base}/"));
    // The chart: drawn from the history, over at least 30 s.
    b.wait_until(
        "+document.getElementById('chart').dataset.spanSeconds >= 30",
        Duration::from_secs(60),
    );
    let points = b.eval("+document.getElementById('chart').dataset.points");
    assert!(points.as_u64().unwrap() >= 10, "{points}");
    let areas = b.eval("document.querySelectorAll('#chart path').length");
    assert!(
        areas.as_u64().unwrap() >= 2,
        "one area per row and the rest: {areas}"
    );
    let legend = b.eval("document.getElementById('chart-legend').innerText");
    assert!(legend.as_str().unwrap().contains("Vec<u8>"), "{legend}");
    // It follows the history by itself, and hovering shows a point's
    // figures.
    b.wait_until(
        &format!("+document.getElementById('chart').dataset.points > {points}"),
        Duration::from_secs(30),
    );
    b.hover("#chart");
    let tip = b.eval(
        "(() => { const t = document.getElementById('chart-tip'); \
         return t.hidden ? '' : t.innerText; })()",
    );
    let tip = tip.as_str().unwrap();
    assert!(tip.contains(" live\n") && tip.contains("Vec<u8>"), "{tip}");
    let desc = b.eval("document.getElementById('chart-desc').textContent");
    assert!(
        desc.as_str().unwrap().starts_with("Live bytes went from "),
        "{desc}"
    );
    // The leak report names the response bodies and where the crawl made
    // them.
    let leaks = section_text(&mut b, "leaks-h");
    assert!(leaks.contains("suspect"), "{leaks}");
    let first = b.eval(
        "[...document.querySelectorAll('section[aria-labelledby=leaks-h] tbody tr')]\
         .map((r) => r.innerText)",
    );
    assert!(
        first
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().starts_with("Vec<u8>\tEngine::crawl")),
        "{first}"
    );
    // The heap now: the bodies by type, the crawl by site.
    let heap = section_text(&mut b, "heap-h");
    assert!(heap.contains("\nVec<u8>\t"), "{heap}");
    assert!(heap.contains("\nEngine::crawl"), "{heap}");
    // The flamegraph, drawn in the page, has the crawl's frames.
    b.wait_until(
        "(() => { const d = document.getElementById('flamegraph').contentDocument; \
         return d && [...d.querySelectorAll('#frames title')].some((t) => t.textContent.includes('crawl')); })()",
        Duration::from_secs(60),
    );
    b.screenshot(&shots.join("page.png"));
    // Nothing came from outside the endpoint, and nothing went wrong.
    let outside: Vec<&String> = b
        .requests
        .iter()
        .filter(|u| !u.starts_with(&format!("{base}/")) && !u.starts_with("data:"))
        .collect();
    assert!(
        outside.is_empty(),
        "requests outside the endpoint: {outside:?}"
    );
    assert!(b.errors.is_empty(), "errors in the page: {:?}", b.errors);
    assert_eq!(b.eval(LOW_CONTRAST), serde_json::json!([]));
    assert_eq!(b.eval(UNLABELLED), serde_json::json!([]));
    // A row of the heap leads to its blocks by site: a link, so a reload
    // shows the same.
    b.click("section[aria-labelledby=heap-h] tbody th a");
    b.wait_until("location.pathname === '/heap'", Duration::from_secs(60));
    b.wait_until(
        "document.readyState === 'complete'",
        Duration::from_secs(60),
    );
    let drilled = b.eval("document.querySelector('main').innerText");
    let drilled = drilled.as_str().unwrap();
    assert!(drilled.contains("type: Vec<u8>"), "{drilled}");
    assert!(drilled.contains("By site"), "{drilled}");
    assert!(drilled.contains("\nEngine::crawl"), "{drilled}");
    b.screenshot(&shots.join("page-drilled.png"));
    assert_eq!(b.eval(LOW_CONTRAST), serde_json::json!([]));
    assert_eq!(b.eval(UNLABELLED), serde_json::json!([]));
    let again = b.eval("location.href");
    b.open(again.as_str().unwrap());
    let reloaded = b.eval("document.querySelector('main').innerText");
    assert!(
        reloaded.as_str().unwrap().contains("type: Vec<u8>"),
        "{reloaded}"
    );
    // On a phone's width nothing runs off the side.
    b.resize(390, 844, true);
    b.open(&format!("{base}/"));
    b.wait_until(
        "+document.getElementById('chart').dataset.points > 0",
        Duration::from_secs(60),
    );
    // Its script ran: the drawing fits the page's width.
    b.wait_until(
        "(() => { const d = document.getElementById('flamegraph').contentDocument; \
         return d && d.querySelector('#frames') && !d.documentElement.hasAttribute('width'); })()",
        Duration::from_secs(60),
    );
    let overflow = b.eval("document.documentElement.scrollWidth");
    assert!(overflow.as_u64().unwrap() <= 390, "{overflow} px wide");
    b.screenshot(&shots.join("page-phone.png"));
    assert!(b.errors.is_empty(), "errors in the page: {:?}", b.errors);
    run(&mut spider.console(), "engine.stop()");
}

#[test]
fn go_tool_pprof_reads_the_spiders_heap() {
    let test = "go_tool_pprof_reads_the_spiders_heap";
    if !common::have("go", "golang-go", test) {
        return;
    }
    let _serial = serial();
    let mut spider = Spider::start(&["--http", "127.0.0.1:0"], "sampled");
    let addr = spider.http();
    std::thread::sleep(Duration::from_secs(2));
    let tmp = std::env::temp_dir().join(format!("leakscope-pprof-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let out = Command::new("go")
        .args(["tool", "pprof", "-top"])
        .arg(format!("http://{addr}/debug/pprof/heap"))
        .env("HOME", &tmp)
        .env("PPROF_TMPDIR", &tmp)
        .env("GOCACHE", tmp.join("cache"))
        .output()
        .expect("go tool pprof");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Type: inuse_space"), "{text}");
    let functions: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("flat"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(5))
        .collect();
    assert!(
        functions.iter().any(|f| f.starts_with("leaky_spider::")),
        "{text}"
    );
    assert!(
        !functions.iter().any(|f| f.starts_with("::")
            || f.contains("leakscope::tracker")
            || *f == "alloc::alloc::alloc"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&tmp);
    let mut c = spider.console();
    pympler_says_sampled_figures_are_estimates(&mut c);
    run(&mut c, "engine.stop()");
}

#[test]
fn prometheus_scrapes_the_spider_and_sees_the_leak_grow() {
    let test = "prometheus_scrapes_the_spider_and_sees_the_leak_grow";
    if !common::have("prometheus", "prometheus", test)
        || !common::have("promtool", "prometheus", test)
    {
        return;
    }
    let _serial = serial();
    let mut spider = Spider::start(&["--http", "127.0.0.1:0", "--rate", "300"], "sampled");
    let addr = spider.http();
    // promtool accepts the page.
    let (status, page) = get(addr, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut check.stdin.take().unwrap(), &page).unwrap();
    let checked = check.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    // A real Prometheus scraping every second.
    let tmp = std::env::temp_dir().join(format!("leakscope-prometheus-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let config = tmp.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  \
             - job_name: spider\n    static_configs:\n      - targets: ['{addr}']\n"
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _prometheus = Killed(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                tmp.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus"),
    );
    let api: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let query =
        "/api/v1/query?query=leakscope_trackref_live%7Bclass%3D%22HtmlResponse%22%7D%5B1m%5D";
    let deadline = Instant::now() + Duration::from_secs(60);
    let values = loop {
        assert!(
            Instant::now() < deadline,
            "Prometheus never had five samples"
        );
        std::thread::sleep(Duration::from_millis(500));
        if std::net::TcpStream::connect(api).is_err() {
            continue;
        }
        let (status, body) = get(api, query);
        if status != "HTTP/1.1 200 OK" {
            continue;
        }
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let values: Vec<f64> = json["data"]["result"][0]["values"]
            .as_array()
            .map(|v| {
                v.iter()
                    .filter_map(|p| p[1].as_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        if values.len() >= 5 {
            break values;
        }
    };
    assert!(
        values.last() > values.first(),
        "the leaking class did not grow: {values:?}"
    );
    let _ = std::fs::remove_dir_all(&tmp);
    let mut c = spider.console();
    pympler_says_sampled_figures_are_estimates(&mut c);
    run(&mut c, "engine.stop()");
}

#[test]
fn the_http_endpoint_survives_bad_clients() {
    let _serial = serial();
    // Every interface: said on stderr, with the address, before the
    // endpoint answers.
    let mut spider = Spider::start(&["--http", "0.0.0.0:0"], "sampled");
    let warning = spider.wait_line("leakscope: warning: the HTTP endpoint listens on 0.0.0.0:");
    let port: u16 = warning
        .split("0.0.0.0:")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {warning:?}"));
    assert_eq!(
        warning,
        format!(
            "leakscope: warning: the HTTP endpoint listens on 0.0.0.0:{port}, which is \
             not a loopback address: anyone who can reach it reads the program's heap \
             profile and metrics"
        )
    );
    assert_eq!(spider.http().port(), port);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let (status, body) = get(addr, "/");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(String::from_utf8_lossy(&body).contains("href=\"/debug/pprof/heap\""));
    // Malformed, oversized, the wrong method, what Go asks that is not
    // served, an unknown path.
    for (request, want) in [
        (b"garbage\r\n\r\n".to_vec(), "HTTP/1.1 400 Bad Request"),
        (
            format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000)).into_bytes(),
            "HTTP/1.1 431 Request Header Fields Too Large",
        ),
        (
            b"POST /metrics HTTP/1.1\r\n\r\n".to_vec(),
            "HTTP/1.1 405 Method Not Allowed",
        ),
        (
            b"GET /debug/pprof/heap?debug=1 HTTP/1.1\r\n\r\n".to_vec(),
            "HTTP/1.1 400 Bad Request",
        ),
        (
            b"GET /nope HTTP/1.1\r\n\r\n".to_vec(),
            "HTTP/1.1 404 Not Found",
        ),
        (vec![0xff; 300], "HTTP/1.1 400 Bad Request"),
    ] {
        let (status, _) = http_get(addr, &request);
        assert_eq!(
            status,
            want,
            "{:?}",
            String::from_utf8_lossy(&request[..40.min(request.len())])
        );
    }
    // The page's addresses refuse what they do not know, saying why, as a
    // page (with the header).
    for (path, want, why) in [
        (
            "/heap?by=nope",
            "HTTP/1.1 400 Bad Request",
            "by=nope: one of type, site, via",
        ),
        (
            "/heap?colour=red",
            "HTTP/1.1 400 Bad Request",
            "unknown parameter colour",
        ),
        (
            "/heap?type=no%20such%20type",
            "HTTP/1.1 404 Not Found",
            "No row no such type by type in the heap now",
        ),
        (
            "/?chart=pie",
            "HTTP/1.1 400 Bad Request",
            "chart=pie: types or sites",
        ),
        (
            "/debug/history?x=1",
            "HTTP/1.1 400 Bad Request",
            "unknown parameter x",
        ),
        (
            &format!("/heap?{}", "type=a&".repeat(9)),
            "HTTP/1.1 400 Bad Request",
            "at most 8 rows",
        ),
    ] {
        let (status, body) = get(addr, path);
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, want, "{path}");
        assert!(body.contains("<dt>process</dt>"), "{path}: {body}");
        assert!(body.contains(why), "{path}: {body}");
    }
    // The page's files: the flamegraph with the runtime's runs folded,
    // the DHAT file Valgrind's viewer reads, the history the chart draws.
    let (status, svg) = get(addr, "/debug/flamegraph.svg");
    let svg = String::from_utf8(svg).unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(svg.contains("<!-- leakscope flamegraph -->"), "{svg}");
    assert!(svg.contains("Frames in [brackets]"), "{svg}");
    let (status, json) = get(addr, "/debug/dhat.json");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let dhat: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(dhat["dhatFileVersion"], 2);
    let (status, json) = get(addr, "/debug/history");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let history: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(history["running"], true);
    // gc=1 is accepted, as Go does.
    let (status, body) = get(addr, "/debug/pprof/heap?gc=1");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(&body[..2], &[0x1f, 0x8b], "gzip");
    // Clients that send slowly take no complete request's place: while
    // twelve drip their headers a byte at a time, /metrics is answered
    // every time.
    let connect = || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        std::io::Write::write_all(&mut s, b"GET / HTTP/1.1\r\nX-Drip: ").unwrap();
        s
    };
    let mut slow: Vec<std::net::TcpStream> = (0..12).map(|_| connect()).collect();
    for _ in 0..10 {
        for s in &mut slow {
            std::io::Write::write_all(s, b"a").unwrap();
        }
        assert_eq!(get(addr, "/metrics").0, "HTTP/1.1 200 OK", "while 12 drip");
    }
    // A slow request that ends is answered.
    let read_all = |s: &mut std::net::TcpStream| {
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut got = Vec::new();
        let _ = std::io::Read::read_to_end(s, &mut got);
        String::from_utf8_lossy(&got).into_owned()
    };
    for s in &mut slow {
        std::io::Write::write_all(s, b"\r\n\r\n").unwrap();
        assert!(read_all(s).starts_with("HTTP/1.1 200 OK\r\n"));
    }
    // More connections that send nothing than there are places for them:
    // the one that has waited longest is closed at once, unanswered (one
    // that runs out of time gets 408), and complete requests still get in.
    let mut flood: Vec<std::net::TcpStream> = (0..leakscope::http::MAX_READING + 1)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    assert_eq!(
        read_all(&mut flood[0]),
        "",
        "the oldest is closed unanswered"
    );
    assert_eq!(get(addr, "/metrics").0, "HTTP/1.1 200 OK", "during a flood");
    drop((slow, flood));
    let deadline = Instant::now() + Duration::from_secs(10);
    let ok_soon = || {
        while get(addr, "/").0 != "HTTP/1.1 200 OK" {
            assert!(
                Instant::now() < deadline,
                "the slow clients' places came back"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    ok_soon();
    // A hundred connections in a row (each answered, none keeping its
    // place), then both endpoints work.
    for _ in 0..100 {
        ok_soon();
    }
    assert_eq!(get(addr, "/metrics").0, "HTTP/1.1 200 OK");
    assert_eq!(get(addr, "/debug/pprof/heap").0, "HTTP/1.1 200 OK");
    let mut c = spider.console();
    assert!(run(&mut c, "engine.pages").trim().parse::<u64>().unwrap() > 0);
    run(&mut c, "engine.stop()");
}
