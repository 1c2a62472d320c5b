//! Requests, responses, items and the two spiders. Every one of these is
//! tracked by leakscope's trackref, as Scrapy tracks its own.

use leakscope::trackref::{ObjectRef, Tracked};
use serde::Serialize;

/// A request to download; `meta` carries anything along to the callback.
pub(crate) struct Request {
    pub url: String,
    /// Which spider asked for it (index into the engine's spiders).
    pub spider: usize,
    /// What the callback gets along with the response. The nasty spider
    /// puts the previous response here: the leak.
    pub meta: Option<Tracked<HtmlResponse>>,
    _ref: ObjectRef<Request>,
}

impl Request {
    pub(crate) fn new(url: String, spider: usize, meta: Option<Tracked<HtmlResponse>>) -> Self {
        Request {
            url,
            spider,
            meta,
            _ref: ObjectRef::new(),
        }
    }
}

/// A downloaded page. As in Scrapy, it keeps the request that produced it,
/// so a response in a request's meta keeps the whole chain before it alive.
#[derive(Serialize)]
pub(crate) struct HtmlResponse {
    pub url: String,
    pub status: u16,
    pub length: usize,
    #[serde(skip)]
    pub body: String,
    #[serde(skip)]
    pub request: Request,
}

/// A scraped product.
#[derive(Serialize)]
pub(crate) struct Product {
    pub name: String,
    pub price: String,
    pub url: String,
    /// The price on the page before (what the nasty spider keeps the
    /// previous response around for).
    pub previous_price: Option<String>,
    #[serde(skip)]
    _ref: ObjectRef<Product>,
}

/// What a callback yields.
pub(crate) enum Output {
    Request(Request),
    Item(Product),
}

/// A spider: where to start and how to parse what comes back.
pub(crate) trait Spider: Send + Sync {
    fn name(&self) -> &'static str;
    fn start_urls(&self) -> Vec<String>;
    fn parse(&self, index: usize, response: &Tracked<HtmlResponse>) -> Vec<Output>;
}

/// All `href="…"` values with the given class, in order.
fn links<'a>(body: &'a str, class: &str) -> Vec<&'a str> {
    let marker = format!("class=\"{class}\" href=\"");
    body.match_indices(&marker)
        .filter_map(|(i, m)| {
            let rest = &body[i + m.len()..];
            rest.find('"').map(|end| &rest[..end])
        })
        .collect()
}

fn between<'a>(body: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let i = body.find(start)? + start.len();
    let j = body[i..].find(end)? + i;
    Some(&body[i..j])
}

fn product(response: &HtmlResponse) -> Option<Product> {
    Some(Product {
        name: between(&response.body, "<span class=\"name\">", "</span>")?.to_string(),
        price: price(&response.body)?,
        url: response.url.clone(),
        previous_price: None,
        _ref: ObjectRef::new(),
    })
}

fn price(body: &str) -> Option<String> {
    between(body, "<span class=\"price\">", "</span>").map(str::to_string)
}

fn absolute(host: &str, path: &str) -> String {
    format!("http://{host}{path}")
}

/// Follows the product chain, and (unless fixed) carries each response
/// into the next request's meta, "to compare prices with the previous
/// page": every response stays alive, forever.
pub(crate) struct NastySpider {
    pub fixed: bool,
    _ref: ObjectRef<()>,
}

impl NastySpider {
    pub(crate) fn new(fixed: bool) -> Self {
        NastySpider {
            fixed,
            _ref: ObjectRef::with_class("SomeNastySpider", &["Spider"]),
        }
    }
}

const NASTY: &str = "www.somenastyspider.com";
const GOOD: &str = "www.goodspider.com";

impl Spider for NastySpider {
    fn name(&self) -> &'static str {
        "somenastyspider"
    }

    fn start_urls(&self) -> Vec<String> {
        vec![absolute(NASTY, "/")]
    }

    fn parse(&self, index: usize, response: &Tracked<HtmlResponse>) -> Vec<Output> {
        let mut out = Vec::new();
        if let Some(mut p) = product(response) {
            // "Compare with the previous page": the response in meta.
            p.previous_price = response
                .request
                .meta
                .as_ref()
                .and_then(|prev| price(&prev.body));
            out.push(Output::Item(p));
        }
        for link in links(&response.body, "next")
            .into_iter()
            .chain(links(&response.body, "product"))
        {
            let meta = (!self.fixed).then(|| response.clone());
            out.push(Output::Request(Request::new(
                absolute(NASTY, link),
                index,
                meta,
            )));
        }
        out
    }
}

/// A well-behaved spider: categories, their pages, their products; nothing
/// kept in meta.
pub(crate) struct GoodSpider {
    _ref: ObjectRef<()>,
}

impl GoodSpider {
    pub(crate) fn new() -> Self {
        GoodSpider {
            _ref: ObjectRef::with_class("GoodSpider", &["Spider"]),
        }
    }
}

impl Spider for GoodSpider {
    fn name(&self) -> &'static str {
        "goodspider"
    }

    fn start_urls(&self) -> Vec<String> {
        vec![absolute(GOOD, "/")]
    }

    fn parse(&self, index: usize, response: &Tracked<HtmlResponse>) -> Vec<Output> {
        let mut out = Vec::new();
        if let Some(p) = product(response) {
            out.push(Output::Item(p));
        }
        // The queue is LIFO: the next page goes in first, so the products of
        // this page are crawled before it and the queue stays short.
        for class in ["next", "category", "product"] {
            for link in links(&response.body, class) {
                out.push(Output::Request(Request::new(
                    absolute(GOOD, link),
                    index,
                    None,
                )));
            }
        }
        out
    }
}
