//! The crawl engine, Scrapy's shape in small: a scheduler (LIFO, as
//! Scrapy's default), a downloader with a concurrency limit, a scraper slot
//! that counts the bytes of responses being processed (`active_size`) and
//! backs out above `max_active_size`, and an item pipeline that handles one
//! item at a time.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leakscope::console::{Call, Error, HostObject, Value};
use leakscope::trackref::Tracked;

use crate::spiders::{HtmlResponse, Output, Product, Request, Spider};

/// One LIFO queue per spider (Scrapy's default order), taken in turn so one
/// spider's many links never starve another.
#[derive(Default)]
struct Scheduler {
    queues: Vec<VecDeque<Request>>,
    turn: usize,
}

impl Scheduler {
    fn push(&mut self, r: Request) {
        if self.queues.len() <= r.spider {
            self.queues.resize_with(r.spider + 1, VecDeque::new);
        }
        self.queues[r.spider].push_back(r);
    }

    fn pop(&mut self) -> Option<Request> {
        for _ in 0..self.queues.len() {
            self.turn = (self.turn + 1) % self.queues.len();
            if let Some(r) = self.queues[self.turn].pop_back() {
                return Some(r);
            }
        }
        None
    }

    fn len(&self) -> usize {
        self.queues.iter().map(VecDeque::len).sum()
    }
}

/// Scrapy's `RETRY_TIMES`: a download that fails is tried this many times
/// more before the request is given up.
const RETRY_TIMES: u32 = 2;

/// Scrapy's `SCRAPER_SLOT_MAX_ACTIVE_SIZE`.
pub(crate) const MAX_ACTIVE_SIZE: usize = 5_000_000;

pub(crate) struct Settings {
    pub concurrency: usize,
    pub max_pages: Option<u64>,
    /// A pipeline step that blocks its worker thread this long, then lets it
    /// run as long, over and over (a database that hangs now and then).
    pub blocking_pipeline: Option<Duration>,
    /// Pages per second at most.
    pub rate: Option<f64>,
}

pub(crate) struct Engine {
    client: reqwest::Client,
    spiders: Vec<Box<dyn Spider>>,
    scheduler: Mutex<Scheduler>,
    settings: Settings,
    started: Instant,
    pub pages: AtomicU64,
    /// Pages per spider.
    spider_pages: Vec<AtomicU64>,
    pub items: AtomicU64,
    /// Downloads that failed, retried or not.
    pub errors: AtomicU64,
    /// Requests given up after `RETRY_TIMES` retries.
    pub given_up: AtomicU64,
    /// The first download error, as the closing line reports it.
    first_error: Mutex<Option<String>>,
    /// Retries so far of the URLs whose download failed and that wait for
    /// another try.
    retries: Mutex<HashMap<String, u32>>,
    /// Requests handed to the downloader that did not fail (what `--pages`
    /// counts).
    dispatched: AtomicU64,
    /// Requests downloading or being parsed: what the concurrency limit counts.
    downloading: AtomicUsize,
    /// Responses in the scraper slot, and the bytes of their bodies.
    slot_active: AtomicUsize,
    active_size: AtomicUsize,
    /// Items waiting for or in the pipeline.
    itemproc_size: AtomicUsize,
    /// The item pipeline's queue: a worker thread of its own takes items
    /// one at a time and acknowledges each.
    pipeline: Mutex<std::sync::mpsc::Sender<(Product, tokio::sync::oneshot::Sender<()>)>>,
    paused: AtomicBool,
    stopped: AtomicBool,
}

impl Engine {
    pub(crate) fn new(
        server: SocketAddr,
        spiders: Vec<Box<dyn Spider>>,
        settings: Settings,
    ) -> std::io::Result<Arc<Engine>> {
        let client = reqwest::Client::builder()
            .resolve("www.somenastyspider.com", server)
            .resolve("www.goodspider.com", server)
            .pool_max_idle_per_host(settings.concurrency)
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(std::io::Error::other)?;
        let (tx, rx) = std::sync::mpsc::channel::<(Product, tokio::sync::oneshot::Sender<()>)>();
        let block = settings.blocking_pipeline;
        std::thread::Builder::new()
            .name("item-pipeline".into())
            .spawn(move || {
                // Free until the 20th item, then blocked for `block`, free
                // for as long, and so on: a user who looks at any moment
                // sees one state or the other within `block`.
                let mut free_since: Option<std::time::Instant> = None;
                for (stored, (item, done)) in rx.into_iter().enumerate() {
                    if let Some(block) = block
                        && stored >= 20
                        && free_since.is_none_or(|t| t.elapsed() >= block)
                    {
                        // Scrapy's blocked-pipeline bug: a synchronous call
                        // (a database that hangs) inside the pipeline. Items
                        // queue up, responses wait in the scraper slot for
                        // theirs, and the engine backs out.
                        std::thread::sleep(block);
                        free_since = Some(std::time::Instant::now());
                    }
                    drop(item);
                    let _ = done.send(());
                }
            })?;
        let mut queue = Scheduler::default();
        for (i, s) in spiders.iter().enumerate() {
            for url in s.start_urls() {
                queue.push(Request::new(url, i, None));
            }
        }
        Ok(Arc::new(Engine {
            client,
            spider_pages: spiders.iter().map(|_| AtomicU64::new(0)).collect(),
            spiders,
            scheduler: Mutex::new(queue),
            settings,
            started: Instant::now(),
            pages: AtomicU64::new(0),
            items: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            given_up: AtomicU64::new(0),
            first_error: Mutex::new(None),
            retries: Mutex::new(HashMap::new()),
            dispatched: AtomicU64::new(0),
            downloading: AtomicUsize::new(0),
            slot_active: AtomicUsize::new(0),
            active_size: AtomicUsize::new(0),
            itemproc_size: AtomicUsize::new(0),
            pipeline: Mutex::new(tx),
            paused: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
        }))
    }

    pub(crate) fn needs_backout(&self) -> bool {
        self.active_size.load(Ordering::Relaxed) > MAX_ACTIVE_SIZE
    }

    fn has_capacity(&self) -> bool {
        self.downloading.load(Ordering::Relaxed) < self.settings.concurrency
    }

    fn done(&self) -> bool {
        self.settings
            .max_pages
            .is_some_and(|m| self.dispatched.load(Ordering::Relaxed) >= m)
    }

    pub(crate) fn pause(&self) {
        self.paused.store(true, Ordering::Relaxed);
    }

    pub(crate) fn unpause(&self) {
        self.paused.store(false, Ordering::Relaxed);
    }

    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    pub(crate) fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    /// The crawl is over: `--pages` reached, or no request left (every
    /// chain ended), and nothing downloading or in the scraper slot.
    pub(crate) fn finished(&self) -> bool {
        // `downloading` counts a request from before it leaves the
        // scheduler, so an empty scheduler with nothing downloading has no
        // request in between.
        self.downloading.load(Ordering::SeqCst) == 0
            && self.slot_active.load(Ordering::SeqCst) == 0
            && (self.done() || self.queued() == 0)
    }

    fn queued(&self) -> usize {
        self.scheduler
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// The first download error and how many requests were given up, for
    /// the closing line; `None` when every download succeeded.
    pub(crate) fn failures(&self) -> Option<String> {
        let first = self
            .first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        Some(format!(
            "{} downloads failed, {} requests given up after {RETRY_TIMES} retries; the first: {first}",
            self.errors.load(Ordering::Relaxed),
            self.given_up.load(Ordering::Relaxed),
        ))
    }

    /// Takes requests from the scheduler while there is capacity, the
    /// scraper does not need to back out, and nobody paused or stopped it.
    pub(crate) async fn run(self: Arc<Self>) {
        let mut next_at = Instant::now();
        while !self.stopped() {
            if self.paused.load(Ordering::Relaxed)
                || self.needs_backout()
                || !self.has_capacity()
                || self.done()
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
            // Counted as downloading before it leaves the scheduler, so
            // `finished` never sees it in neither.
            self.downloading.fetch_add(1, Ordering::SeqCst);
            let next = self
                .scheduler
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop();
            let Some(req) = next else {
                self.downloading.fetch_sub(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            };
            if let Some(rate) = self.settings.rate {
                let now = Instant::now();
                if next_at > now {
                    tokio::time::sleep(next_at - now).await;
                }
                next_at = Instant::now() + Duration::from_secs_f64(1.0 / rate.max(0.001));
            }
            self.dispatched.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(self.clone().crawl(req));
        }
    }

    async fn crawl(self: Arc<Self>, req: Request) {
        let fetched = async {
            let resp = self.client.get(&req.url).send().await?;
            let status = resp.status().as_u16();
            let body = resp.text().await?;
            Ok::<_, reqwest::Error>((status, body))
        }
        .await;
        let (status, body) = match fetched {
            Ok(r) => r,
            Err(e) => {
                self.failed(req, &e);
                return;
            }
        };
        self.retries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&req.url);
        let spider = req.spider;
        let length = body.len();
        let response = Tracked::with_fields(HtmlResponse {
            url: req.url.clone(),
            status,
            length,
            body,
            request: req,
        });
        // The scraper slot counts the response's bytes until its items are
        // through the pipeline.
        self.slot_active.fetch_add(1, Ordering::SeqCst);
        self.active_size.fetch_add(length, Ordering::Relaxed);
        let outputs = self.spiders[spider].parse(spider, &response);
        // Parsed: the response itself goes (unless a callback kept it, as
        // the nasty spider does), and with it the request's slot, so at
        // most `concurrency` responses are alive in a well-behaved crawl.
        drop(response);
        self.downloading.fetch_sub(1, Ordering::SeqCst);
        for out in outputs {
            match out {
                Output::Request(r) => self
                    .scheduler
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(r),
                Output::Item(item) => self.process_item(item).await,
            }
        }
        self.active_size.fetch_sub(length, Ordering::Relaxed);
        // Counted before the slot empties, so a finished crawl's count is
        // whole.
        self.spider_pages[spider].fetch_add(1, Ordering::Relaxed);
        self.pages.fetch_add(1, Ordering::SeqCst);
        self.slot_active.fetch_sub(1, Ordering::SeqCst);
    }

    /// A download failed: the request goes back to the scheduler for
    /// another try, as Scrapy's retry middleware does, or is given up after
    /// `RETRY_TIMES` retries. Either way it is not a page: `--pages` counts
    /// downloads that succeeded, so one failure does not end the crawl early.
    fn failed(&self, req: Request, e: &reqwest::Error) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(|| format!("{}: {e}", req.url));
        let retry = {
            let mut retries = self.retries.lock().unwrap_or_else(|e| e.into_inner());
            let n = retries.entry(req.url.clone()).or_insert(0);
            *n += 1;
            let retry = *n <= RETRY_TIMES;
            if !retry {
                retries.remove(&req.url);
            }
            retry
        };
        if retry {
            self.scheduler
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(req);
        } else {
            self.given_up.fetch_add(1, Ordering::Relaxed);
        }
        self.dispatched.fetch_sub(1, Ordering::Relaxed);
        // Last, so `finished` sees the request back in the scheduler first.
        self.downloading.fetch_sub(1, Ordering::SeqCst);
    }

    /// Pages crawled per spider, by name.
    pub(crate) fn spider_pages(&self) -> serde_json::Value {
        self.spiders
            .iter()
            .zip(&self.spider_pages)
            .map(|(s, n)| (s.name().to_string(), n.load(Ordering::Relaxed).into()))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }

    /// Hands an item to the pipeline and waits until it is through.
    async fn process_item(&self, item: Product) {
        self.itemproc_size.fetch_add(1, Ordering::Relaxed);
        let (done, through) = tokio::sync::oneshot::channel();
        let sent = self
            .pipeline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send((item, done))
            .is_ok();
        if sent {
            let _ = through.await;
            self.items.fetch_add(1, Ordering::Relaxed);
        }
        self.itemproc_size.fetch_sub(1, Ordering::Relaxed);
    }

    /// Scrapy's `est()`: the engine status, one check per line.
    pub(crate) fn status(&self) -> String {
        let b = |v: bool| if v { "True" } else { "False" }.to_string();
        let queued = self
            .scheduler
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len();
        let names: Vec<&str> = self.spiders.iter().map(|s| s.name()).collect();
        let downloading = self.downloading.load(Ordering::Relaxed);
        let slot = self.slot_active.load(Ordering::Relaxed);
        let checks: Vec<(&str, String)> = vec![
            (
                "time()-engine.start_time",
                format!("{:.2}", self.started.elapsed().as_secs_f64()),
            ),
            ("engine.has_capacity()", b(self.has_capacity())),
            ("len(engine.downloader.active)", downloading.to_string()),
            ("engine.scraper.is_idle()", b(slot == 0)),
            ("engine.spider.name", names.join(", ")),
            (
                "engine.spider_is_idle()",
                b(queued == 0 && downloading == 0 && slot == 0),
            ),
            ("engine.slot.closing", b(self.stopped())),
            (
                "len(engine.slot.inprogress)",
                (downloading + slot).to_string(),
            ),
            ("len(engine.slot.scheduler.dqs or [])", "0".to_string()),
            ("len(engine.slot.scheduler.mqs)", queued.to_string()),
            ("len(engine.scraper.slot.queue)", "0".to_string()),
            ("len(engine.scraper.slot.active)", slot.to_string()),
            (
                "engine.scraper.slot.active_size",
                self.active_size.load(Ordering::Relaxed).to_string(),
            ),
            (
                "engine.scraper.slot.itemproc_size",
                self.itemproc_size.load(Ordering::Relaxed).to_string(),
            ),
            (
                "engine.scraper.slot.needs_backout()",
                b(self.needs_backout()),
            ),
            ("engine.paused", b(self.paused.load(Ordering::Relaxed))),
            (
                "engine.pages",
                self.pages.load(Ordering::Relaxed).to_string(),
            ),
            (
                "engine.items",
                self.items.load(Ordering::Relaxed).to_string(),
            ),
        ];
        let mut out = String::from("Execution engine status\n\n");
        // One line per spider: a map on one line outgrows an 80-column
        // terminal as soon as the counts grow.
        let per_spider = self.spiders.iter().zip(&self.spider_pages).map(|(s, n)| {
            (
                format!("engine.spider_pages['{}']", s.name()),
                n.load(Ordering::Relaxed).to_string(),
            )
        });
        let mut checks: Vec<(String, String)> = checks
            .into_iter()
            .map(|(e, v)| (e.to_string(), v))
            .collect();
        let at = checks.len().saturating_sub(1);
        checks.splice(at..at, per_spider);
        for (expr, value) in checks {
            out.push_str(&format!("{expr:<47} : {value}\n"));
        }
        out
    }
}

/// The engine as the console sees it: `engine.pause()`, `engine.pages` …
pub(crate) struct Handle(pub Arc<Engine>);

impl HostObject for Handle {
    fn type_name(&self) -> &str {
        "engine"
    }

    fn attribute(&self, name: &str) -> Option<Value> {
        let e = &self.0;
        Some(match name {
            "pages" => e.pages.load(Ordering::Relaxed).into(),
            "spider_pages" => e.spider_pages().into(),
            "items" => e.items.load(Ordering::Relaxed).into(),
            "paused" => e.paused.load(Ordering::Relaxed).into(),
            "active_size" => e.active_size.load(Ordering::Relaxed).into(),
            "max_active_size" => MAX_ACTIVE_SIZE.into(),
            _ => return None,
        })
    }

    fn call(&self, method: &str, call: &Call<'_>) -> Result<Value, Error> {
        call.arity(0)?;
        let e = &self.0;
        match method {
            "pause" => {
                e.pause();
                Ok(Value::text(
                    "Engine paused: no new downloads until engine.unpause().",
                ))
            }
            "unpause" => {
                e.unpause();
                Ok(Value::text("Engine running."))
            }
            "stop" => {
                e.stop();
                Ok(Value::text(format!(
                    "Stopping the crawl after {} pages and {} items; the process exits.",
                    e.pages.load(Ordering::Relaxed),
                    e.items.load(Ordering::Relaxed)
                )))
            }
            "needs_backout" => Ok(e.needs_backout().into()),
            // `st()` is Scrapy's older name for the status.
            "status" | "st" => Ok(Value::text(e.status())),
            _ => Err(Error::no_attribute(self.type_name(), method)),
        }
    }

    fn methods(&self) -> Vec<&'static str> {
        vec!["pause", "unpause", "stop", "needs_backout", "status", "st"]
    }
}
