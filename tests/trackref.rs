//! trackref: the semantics of Scrapy's own trackref tests, then further:
//! no resurrection, exact counts under 8 threads, the change column, and
//! switching registration off.
//!
//! The registry is process-wide, so the tests take turns (SERIAL) and each
//! leaves nothing alive behind it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use leakscope::trackref::{self, ObjectRef, Tracked};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

struct Foo {
    _r: ObjectRef<Foo>,
}

struct Bar {
    _r: ObjectRef<Bar>,
}

fn foo() -> Foo {
    Foo {
        _r: ObjectRef::new(),
    }
}

fn bar() -> Bar {
    Bar {
        _r: ObjectRef::new(),
    }
}

/// The report's lines without the Oldest column's values (ages vary).
fn rows(report: &str) -> Vec<Vec<String>> {
    report
        .lines()
        .skip(4)
        .map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            // Class, Live, "Ns", "ago", Change
            vec![
                cells[0].to_string(),
                cells[1].to_string(),
                cells[4].to_string(),
            ]
        })
        .collect()
}

#[test]
fn format_live_refs_counts_per_class_sorted_by_name() {
    let _g = serial();
    // The Change column counts from the last report, which an earlier
    // test may have made with its own instances alive: report once with
    // none, so that this test's baseline is 0 whatever ran before.
    assert_eq!(trackref::format_live_refs(&[]), "Live References\n");
    let (_a, _b, _c) = (foo(), bar(), foo());
    let report = trackref::format_live_refs(&[]);
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines[0], "Live References");
    assert_eq!(lines[1], "");
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        ["Class", "Live", "Oldest", "Change"]
    );
    assert!(lines[3].chars().all(|c| c == '-'));
    assert_eq!(rows(&report), [["Bar", "1", "+1"], ["Foo", "2", "+2"]]);
    assert!(lines[4].contains("0s ago"), "{report}");
}

#[test]
fn ignore_by_class_base_and_several() {
    let _g = serial();
    struct ExampleSpider {
        _r: ObjectRef<ExampleSpider>,
    }
    struct OtherSpider {
        _r: ObjectRef<OtherSpider>,
    }
    let _s = ExampleSpider {
        _r: ObjectRef::with_class("ExampleSpider", &["Spider"]),
    };
    let _o = OtherSpider {
        _r: ObjectRef::with_class("OtherSpider", &["Spider"]),
    };
    let (_a, _b) = (foo(), bar());
    let names = |ignore: &[&str]| -> Vec<String> {
        rows(&trackref::format_live_refs(ignore))
            .into_iter()
            .map(|r| r[0].clone())
            .collect()
    };
    assert_eq!(names(&[]), ["Bar", "ExampleSpider", "Foo", "OtherSpider"]);
    assert_eq!(names(&["Foo"]), ["Bar", "ExampleSpider", "OtherSpider"]);
    assert_eq!(
        names(&["Spider"]),
        ["Bar", "Foo"],
        "a base name skips its subclasses"
    );
    assert_eq!(names(&["Foo", "Spider"]), ["Bar"]);
    assert_eq!(names(&["Foo", "Bar", "Spider"]), Vec::<String>::new());
}

#[test]
fn nothing_alive_prints_the_heading_only() {
    let _g = serial();
    drop((foo(), bar()));
    assert_eq!(trackref::format_live_refs(&[]), "Live References\n");
}

#[derive(serde::Serialize, Debug)]
struct HtmlResponse {
    url: String,
    status: u16,
}

#[test]
fn get_oldest_returns_the_first_then_the_next() {
    let _g = serial();
    let r1 = Tracked::with_fields(HtmlResponse {
        url: "http://a/1".into(),
        status: 200,
    });
    std::thread::sleep(Duration::from_millis(2));
    let r2 = Tracked::with_fields(HtmlResponse {
        url: "http://a/2".into(),
        status: 404,
    });
    let o = trackref::get_oldest("HtmlResponse").expect("two alive");
    assert_eq!(o.fields().unwrap()["url"], "http://a/1");
    assert_eq!(o.fields().unwrap()["status"], 200);
    assert!(Tracked::ptr_eq(&o.downcast::<HtmlResponse>().unwrap(), &r1));
    drop(o);
    drop(r1);
    let o = trackref::get_oldest("HtmlResponse").expect("one alive");
    assert_eq!(o.fields().unwrap()["url"], "http://a/2");
    assert_eq!(
        trackref::oldest::<HtmlResponse>().unwrap().url,
        "http://a/2"
    );
    drop(o);
    drop(r2);
    assert!(trackref::get_oldest("HtmlResponse").is_none(), "all dead");
    assert!(trackref::get_oldest("NoSuchClass").is_none(), "unknown");
}

#[test]
fn iter_all_yields_exactly_the_live_ones_oldest_first() {
    let _g = serial();
    let mut v: Vec<Tracked<HtmlResponse>> = (0..10)
        .map(|i| {
            Tracked::with_fields(HtmlResponse {
                url: format!("http://a/{i}"),
                status: 200,
            })
        })
        .collect();
    v.retain(|r| !r.url.ends_with(['1', '3', '5']));
    let urls: Vec<String> = trackref::iter_all("HtmlResponse")
        .iter()
        .map(|o| o.fields().unwrap()["url"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        urls,
        [
            "http://a/0",
            "http://a/2",
            "http://a/4",
            "http://a/6",
            "http://a/7",
            "http://a/8",
            "http://a/9"
        ]
    );
    assert_eq!(trackref::all::<HtmlResponse>().len(), 7);
    assert!(trackref::iter_all("NoSuchClass").is_empty());
    // Bare ObjectRefs are listed too, without fields.
    let f = foo();
    let all = trackref::iter_all("Foo");
    assert_eq!(all.len(), 1);
    assert!(all[0].fields().is_none());
    drop(f);
}

static DROPS: AtomicUsize = AtomicUsize::new(0);

#[derive(serde::Serialize)]
struct Counted(u32);

impl Drop for Counted {
    fn drop(&mut self) {
        DROPS.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_value_dropped_everywhere_is_gone_and_never_comes_back() {
    let _g = serial();
    let before = DROPS.load(Ordering::SeqCst);
    let a = Tracked::new(Counted(1));
    let b = a.clone();
    assert_eq!(
        trackref::iter_all("Counted").len(),
        1,
        "one value, two handles"
    );
    drop(a);
    assert_eq!(trackref::iter_all("Counted").len(), 1, "still held by b");
    drop(b);
    assert_eq!(
        DROPS.load(Ordering::SeqCst),
        before + 1,
        "the registry kept nothing alive"
    );
    assert!(trackref::iter_all("Counted").is_empty());
    assert!(trackref::get_oldest("Counted").is_none());
    assert!(trackref::oldest::<Counted>().is_none());
}

#[test]
fn eight_threads_create_and_drop_a_million_objects_exactly() {
    let _g = serial();
    struct Item {
        _r: ObjectRef<Item>,
    }
    let handles: Vec<_> = (0..8)
        .map(|t| {
            std::thread::spawn(move || {
                let mut kept = Vec::new();
                for i in 0..125_000 {
                    let it = Item {
                        _r: ObjectRef::new(),
                    };
                    if i % 12_500 == t {
                        kept.push(it);
                    }
                }
                kept
            })
        })
        .collect();
    let kept: Vec<Vec<Item>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let live = trackref::live_refs();
    let item = live.iter().find(|c| c.name == "Item").expect("items alive");
    assert_eq!(item.live, 8 * 10, "exactly the kept ones");
    drop(kept);
    assert!(
        !trackref::live_refs().iter().any(|c| c.name == "Item"),
        "back to zero"
    );
}

#[test]
fn change_column_shows_growth_since_the_previous_report() {
    let _g = serial();
    struct Grower {
        _r: ObjectRef<Grower>,
    }
    let mut v: Vec<Grower> = (0..3)
        .map(|_| Grower {
            _r: ObjectRef::new(),
        })
        .collect();
    assert_eq!(
        rows(&trackref::format_live_refs(&[])),
        [["Grower", "3", "+3"]]
    );
    v.extend((0..5).map(|_| Grower {
        _r: ObjectRef::new(),
    }));
    assert_eq!(
        rows(&trackref::format_live_refs(&[])),
        [["Grower", "8", "+5"]]
    );
    v.truncate(6);
    assert_eq!(
        rows(&trackref::format_live_refs(&[])),
        [["Grower", "6", "-2"]]
    );
    assert_eq!(
        rows(&trackref::format_live_refs(&[])),
        [["Grower", "6", "0"]]
    );
    drop(v);
}

#[test]
fn oldest_age_grows() {
    let _g = serial();
    let f = foo();
    let first = trackref::live_refs()
        .into_iter()
        .find(|c| c.name == "Foo")
        .unwrap();
    std::thread::sleep(Duration::from_millis(30));
    let later = trackref::live_refs()
        .into_iter()
        .find(|c| c.name == "Foo")
        .unwrap();
    // Ages come from the coarse clock: each reading may lag by one tick.
    let mut res = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_getres writes into the timespec we own.
    unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut res) };
    let tick = Duration::new(res.tv_sec as u64, res.tv_nsec as u32);
    assert!(later.oldest.unwrap() + tick >= first.oldest.unwrap() + Duration::from_millis(30));
    drop(f);
}

#[test]
fn registration_can_be_switched_off() {
    let _g = serial();
    trackref::set_enabled(false);
    let off = foo();
    assert!(off._r.class_name().is_none());
    trackref::set_enabled(true);
    let on = foo();
    assert_eq!(on._r.class_name(), Some("Foo"));
    assert_eq!(
        trackref::iter_all("Foo").len(),
        1,
        "only the one made while on"
    );
    drop((off, on));
}
