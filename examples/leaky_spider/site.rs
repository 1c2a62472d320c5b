//! The crawled site: a product catalogue served over real HTTP on
//! 127.0.0.1, generated deterministically from `fixtures/site/catalogue.txt`
//! (the same URL always gives the same page). Each spider has its own host
//! name, all resolved to this server, so a URL says which spider it is for.
//!
//! - `www.somenastyspider.com`: `/` links to `/product/1`; `/product/N`
//!   shows product N and links to `/product/N+1` (an endless chain).
//! - `www.goodspider.com`: `/` links to ten categories; `/category/K/P`
//!   lists twenty products and the next page; `/item/K/P/I` shows one.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// The words pages are made of.
pub(crate) struct Catalogue {
    words: Vec<String>,
}

impl Catalogue {
    /// Reads the fixture.
    pub(crate) fn load() -> std::io::Result<Catalogue> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/site/catalogue.txt");
        let text = std::fs::read_to_string(path)?;
        let words: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect();
        if words.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "empty catalogue",
            ));
        }
        Ok(Catalogue { words })
    }

    fn word(&self, n: u64) -> &str {
        &self.words[(n % self.words.len() as u64) as usize]
    }

    fn product(&self, n: u64) -> (String, String) {
        let name = format!("{} {} no. {n}", self.word(n * 7 + 3), self.word(n));
        let price = format!("{}.{:02}", 5 + n % 95, (n * 37) % 100);
        (name, price)
    }

    /// A description of `len` bytes: what makes pages heavy.
    fn description(&self, n: u64, len: usize) -> String {
        let mut s = String::with_capacity(len + 16);
        let mut i = n;
        while s.len() < len {
            s.push_str(self.word(i));
            s.push(' ');
            i = i
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407)
                >> 33;
        }
        s.truncate(len);
        s
    }

    fn page(title: &str, body: &str) -> String {
        format!(
            "<!DOCTYPE html>\n<html><head><title>{title}</title></head>\n<body>\n<h1>{title}</h1>\n{body}\n</body></html>\n"
        )
    }

    fn product_page(&self, id: u64, next: Option<String>) -> String {
        let (name, price) = self.product(id);
        let mut body = format!(
            "<div class=\"product\"><span class=\"name\">{name}</span> <span class=\"price\">{price}</span></div>\n<p>{}</p>\n",
            self.description(id, 40_000)
        );
        if let Some(next) = next {
            body.push_str(&format!("<a class=\"next\" href=\"{next}\">next</a>\n"));
        }
        Self::page(&name, &body)
    }

    /// The page at `host` `path`, or `None` for 404.
    pub(crate) fn render(&self, host: &str, path: &str) -> Option<String> {
        let parts: Vec<&str> = path
            .trim_matches('/')
            .split('/')
            .filter(|p| !p.is_empty())
            .collect();
        let num = |s: &str| s.parse::<u64>().ok();
        match (host, parts.as_slice()) {
            ("www.somenastyspider.com", []) => Some(Self::page(
                "Nasty catalogue",
                "<a class=\"product\" href=\"/product/1\">first product</a>",
            )),
            ("www.somenastyspider.com", ["product", n]) => {
                let n = num(n)?;
                Some(self.product_page(n, Some(format!("/product/{}", n + 1))))
            }
            ("www.goodspider.com", []) => {
                let links: String = (0..10)
                    .map(|k| {
                        format!(
                            "<a class=\"category\" href=\"/category/{k}/0\">{}</a>\n",
                            self.word(k)
                        )
                    })
                    .collect();
                Some(Self::page("Good catalogue", &links))
            }
            ("www.goodspider.com", ["category", k, p]) => {
                let (k, p) = (num(k)?, num(p)?);
                let mut links: String = (0..20)
                    .map(|i| {
                        format!("<a class=\"product\" href=\"/item/{k}/{p}/{i}\">item {i}</a>\n")
                    })
                    .collect();
                links.push_str(&format!(
                    "<a class=\"next\" href=\"/category/{k}/{}\">next</a>\n",
                    p + 1
                ));
                Some(Self::page(
                    &format!("Category {} page {p}", self.word(k)),
                    &links,
                ))
            }
            ("www.goodspider.com", ["item", k, p, i]) => {
                let id = num(k)? * 1_000_000 + num(p)? * 100 + num(i)?;
                Some(self.product_page(id, None))
            }
            _ => None,
        }
    }
}

async fn serve(
    cat: Arc<Catalogue>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| h.split(':').next().unwrap_or(h).to_string())
        .unwrap_or_default();
    Ok(match cat.render(&host, req.uri().path()) {
        Some(page) => Response::builder()
            .header("content-type", "text/html; charset=utf-8")
            .body(Full::new(Bytes::from(page)))
            .unwrap_or_default(),
        None => Response::builder()
            .status(404)
            .body(Full::new(Bytes::from_static(b"not found")))
            .unwrap_or_default(),
    })
}

/// Starts the server on an ephemeral loopback port; returns its address.
pub(crate) async fn start(cat: Arc<Catalogue>) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let cat = cat.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| serve(cat.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}
