//! Live instances per class: Scrapy's `trackref` for Rust.
//!
//! Embed an [`ObjectRef`] in a struct to have its instances counted, or wrap
//! values in [`Tracked`] to also reach them later (from the console or with
//! [`oldest`] / [`all`]). Each instance is recorded with its creation time;
//! its record goes when it drops. The registry never keeps an instance
//! alive: [`Tracked`] values are held weakly, so a value dropped everywhere
//! else is gone, and can never come back through the registry.
//!
//! ```
//! use leakscope::trackref::{self, ObjectRef, Tracked};
//!
//! #[derive(serde::Serialize)]
//! struct HtmlResponse {
//!     url: String,
//!     #[serde(skip)]
//!     _ref: ObjectRef<HtmlResponse>,
//! }
//!
//! // `with_fields`: the value is `Serialize`, so its fields can be read.
//! let kept = Tracked::with_fields(HtmlResponse { url: "http://a/".into(), _ref: ObjectRef::untracked() });
//! // `new` takes any value; its class and age are shown.
//! struct Opaque(std::fs::File);
//! let _file = Tracked::new(Opaque(std::fs::File::open("/dev/null").unwrap()));
//! assert!(trackref::get_oldest("Opaque").unwrap().fields().is_none());
//! let report = trackref::live_refs();
//! assert!(report.iter().any(|c| c.name == "HtmlResponse" && c.live >= 1));
//! let oldest = trackref::get_oldest("HtmlResponse").unwrap();
//! assert_eq!(oldest.fields().unwrap()["url"], "http://a/");
//! # drop(kept);
//! ```
//!
//! Registration costs a clock read and an uncontended lock on one of 16
//! shards (threads are spread over the shards), so it can stay on in
//! production; `LEAKSCOPE_TRACK_REFS=0` (or [`set_enabled`]) turns it into a
//! near-free no-op, as Scrapy's `TRACK_REFS`.

mod object_ref;
mod registry;
mod report;
mod tracked;

pub use object_ref::ObjectRef;
pub use report::{
    Baseline, ClassLive, LiveRefs, format_live_refs, live_refs, print_live_refs, report,
    report_since,
};
pub use tracked::{LiveObject, Tracked};

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use registry::{CLASSES, Class, SHARDS, created_ns, now_ns};

const ENABLED_UNKNOWN: u8 = 0;
const ENABLED_ON: u8 = 1;
const ENABLED_OFF: u8 = 2;
static ENABLED: AtomicU8 = AtomicU8::new(ENABLED_UNKNOWN);

/// Whether registration is on (`LEAKSCOPE_TRACK_REFS=off`, or `0`, turns
/// it off).
pub fn enabled() -> bool {
    match ENABLED.load(Ordering::Relaxed) {
        ENABLED_ON => true,
        ENABLED_OFF => false,
        _ => {
            let on = match crate::config::TRACK_REFS.flag() {
                Ok(on) => on.unwrap_or(true),
                Err(e) => {
                    eprintln!("leakscope: {e}; trackref stays on");
                    true
                }
            };
            set_enabled(on);
            on
        }
    }
}

/// Turns registration on or off for objects created from now on (objects
/// already registered stay until they drop).
pub fn set_enabled(on: bool) {
    ENABLED.store(if on { ENABLED_ON } else { ENABLED_OFF }, Ordering::Relaxed);
}

/// The short name of a type: `app::HtmlResponse` → `HtmlResponse`,
/// `app::Cache<u32>` → `Cache<u32>`.
pub fn short_type_name(full: &str) -> &str {
    let generics = full.find('<').unwrap_or(full.len());
    match full[..generics].rfind("::") {
        Some(i) => &full[i + 2..],
        None => full,
    }
}

fn find_class(name: &str) -> Option<&'static Class> {
    CLASSES.lock().iter().find(|c| c.name == name).copied()
}

/// Visits every live instance of a class (strong handles taken while its
/// shard is locked, so none can die half-way), oldest order not guaranteed.
fn collect(class: &'static Class, keep: impl Fn(u64) -> bool) -> Vec<LiveObject> {
    let now = now_ns();
    let mut out = Vec::new();
    for i in 0..SHARDS {
        let s = class.shard(i);
        for e in s
            .entries
            .iter()
            .filter(|e| e.created != 0 && keep(e.created))
        {
            let object = match &e.object {
                Some((weak, fields)) => match weak.upgrade() {
                    Some(strong) => Some((strong, *fields)),
                    // Dying right now: its drop is waiting for this shard.
                    None => continue,
                },
                None => None,
            };
            out.push(LiveObject {
                class: class.name,
                age: Duration::from_nanos(now.saturating_sub(created_ns(e.created))),
                created: e.created,
                object,
            });
        }
    }
    out
}

/// The oldest live instance of class `name`: `None` for an unknown class or
/// when all its instances are gone.
pub fn get_oldest(name: &str) -> Option<LiveObject> {
    let class = find_class(name)?;
    collect(class, |_| true)
        .into_iter()
        .min_by_key(|o| o.created)
}

/// Every live instance of class `name`, oldest first (empty for an unknown
/// class).
pub fn iter_all(name: &str) -> Vec<LiveObject> {
    let Some(class) = find_class(name) else {
        return Vec::new();
    };
    let mut all = collect(class, |_| true);
    all.sort_by_key(|o| o.created);
    all
}

/// The oldest live [`Tracked<T>`] of `T`'s class.
pub fn oldest<T: Send + Sync + 'static>() -> Option<Tracked<T>> {
    iter_all(short_type_name(std::any::type_name::<T>()))
        .iter()
        .find_map(|o| o.downcast::<T>())
}

/// Every live [`Tracked<T>`] of `T`'s class, oldest first.
pub fn all<T: Send + Sync + 'static>() -> Vec<Tracked<T>> {
    iter_all(short_type_name(std::any::type_name::<T>()))
        .iter()
        .filter_map(|o| o.downcast::<T>())
        .collect()
}

/// This module's path, as frames of its functions begin.
#[cfg(test)]
pub(crate) const MODULE: &str = module_path!();
