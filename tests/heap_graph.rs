//! Who holds it, in exact mode, on shapes known in advance: references
//! named by field (`Order.customer`), a B-tree map's values, a static by
//! name, the shortest path to a static, an `Rc` cycle found unreachable
//! and nothing else; retained sizes and the dominator tree of bags of
//! items; and scans while 16 threads allocate, free and purge.

// Boxes in vectors are the point: each box is one heap block.
#![allow(clippy::vec_box)]

mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leakscope::heap::{Heap, Partition};
use leakscope::{Alloc, Mode, hpy};

#[global_allocator]
static ALLOC: Alloc = Alloc::with_default_mode(Mode::Exact);

tests!(
    byvia_names_fields_map_values_and_statics_exactly,
    sp_of_a_plugin_starts_at_the_static,
    sp_takes_a_word_of_unknown_layout_only_where_no_field_leads,
    sp_of_a_long_chain_names_each_link_once,
    an_rc_cycle_is_unreachable_and_nothing_else_is,
    scans_while_16_threads_allocate_free_and_purge,
    numbers_that_spell_an_address_are_not_references,
    retained_sizes_and_dominators_of_bags_of_items,
    views_of_a_big_heap_stop_at_the_deadline_ctrl_c_and_a_client_leaving,
);

#[allow(dead_code)]
struct Customer {
    name: String,
    id: u64,
}

#[allow(dead_code)]
struct Order {
    id: u64,
    customer: Arc<Customer>,
    quantity: u32,
}

#[allow(dead_code)]
struct Session {
    user: u64,
    token: [u8; 24],
}

#[allow(dead_code)]
struct Plugin {
    name: &'static str,
    hits: u64,
}

static REGISTRY: Mutex<Vec<Box<Plugin>>> = Mutex::new(Vec::new());

#[allow(dead_code)]
struct Page {
    id: u64,
    next: Option<Rc<RefCell<Page>>>,
    prev: Option<Weak<RefCell<Page>>>,
}

#[inline(never)]
fn orders(customers: u64, n: u64) -> Vec<Order> {
    let cs: Vec<Arc<Customer>> = (0..customers)
        .map(|id| {
            Arc::new(Customer {
                name: format!("customer {id}"),
                id,
            })
        })
        .collect();
    common::keep_frame(
        (0..n)
            .map(|id| Order {
                id,
                customer: cs[(id % customers) as usize].clone(),
                quantity: 1,
            })
            .collect(),
    )
}

#[inline(never)]
fn new_session(user: u64) -> Box<Session> {
    common::keep_frame(Box::new(Session {
        user,
        token: [7; 24],
    }))
}

#[inline(never)]
fn sessions(n: u64) -> BTreeMap<u64, Box<Session>> {
    common::keep_frame((0..n).map(|u| (u, new_session(u))).collect())
}

#[inline(never)]
fn new_plugin(hits: u64) -> Box<Plugin> {
    common::keep_frame(Box::new(Plugin {
        name: "plugin",
        hits,
    }))
}

#[inline(never)]
fn register_plugins(n: u64) {
    let mut r = REGISTRY.lock().unwrap();
    r.reserve(16);
    for i in 0..n {
        r.push(new_plugin(i));
    }
}

/// Overwrites the dead part of the stack below the caller, where earlier
/// calls left addresses that a conservative scan would take for references.
/// Numbers that spell the address of a [`Target`]: two whose bytes, read
/// as one word, are the address (a conservative scan sees a reference at
/// offset 0), a `u64` that is the address, and an `f64` whose bits are.
#[allow(dead_code)]
struct Spelled {
    low: u32,
    high: u32,
    whole: u64,
    bits: f64,
}

#[allow(dead_code)]
struct Target {
    value: [u64; 5],
}

/// What really holds the targets.
#[allow(dead_code)]
struct Keeper {
    target: Box<Target>,
}

#[inline(never)]
fn keepers(n: u64) -> (Vec<Box<Keeper>>, Vec<Box<Spelled>>) {
    let keepers: Vec<Box<Keeper>> = (0..n)
        .map(|i| {
            Box::new(Keeper {
                target: Box::new(Target { value: [i; 5] }),
            })
        })
        .collect();
    let spelled = keepers
        .iter()
        .map(|k| {
            let addr = &*k.target as *const Target as usize as u64;
            Box::new(Spelled {
                low: addr as u32,
                high: (addr >> 32) as u32,
                whole: addr,
                bits: f64::from_bits(addr),
            })
        })
        .collect();
    common::keep_frame((keepers, spelled))
}

#[inline(never)]
fn scrub_stack() {
    let junk = [0u8; 256 << 10];
    black_box(&junk);
}

fn row<'a>(p: &'a Partition, label: &str) -> &'a leakscope::heap::Row {
    p.rows()
        .iter()
        .find(|r| r.label == label)
        .unwrap_or_else(|| panic!("no row {label:?} in\n{}", p.all().render(200)))
}

fn of_type(heap: &Heap, label: &str) -> Heap {
    let by = heap.bytype();
    // A type read from a generic frame carries ` (?)`: the same type here.
    let i = by
        .rows()
        .iter()
        .position(|r| r.label.trim_end_matches(" (?)") == label)
        .unwrap_or_else(|| panic!("no type {label:?} in\n{}", by.all().render(200)));
    by.row(i)
}

/// A message a ring's slot holds.
#[allow(dead_code)]
struct Message([u8; 48]);

/// One slot of a ring buffer, as a broadcast channel keeps them.
#[allow(dead_code)]
struct Slot {
    seq: u64,
    value: Option<Box<Message>>,
}

/// A post a shared slice holds, and what it holds.
#[allow(dead_code)]
struct Post {
    seq: u64,
    echo: Box<Echo>,
}

#[allow(dead_code)]
struct Echo([u8; 40]);

#[allow(dead_code)]
struct Note([u8; 24]);

/// Buffers that are slices: a boxed ring of 64 slots, a shared slice of
/// 32 posts, and a boxed slice of 16 optional notes.
type Rings = (Box<[Slot]>, Arc<[Post]>, Box<[Option<Box<Note>>]>);

#[inline(never)]
fn rings() -> Rings {
    let ring = (0..64)
        .map(|seq| Slot {
            seq,
            value: Some(Box::new(Message([1; 48]))),
        })
        .collect();
    let posts = (0..32)
        .map(|seq| Post {
            seq,
            echo: Box::new(Echo([2; 40])),
        })
        .collect();
    let notes = (0..16).map(|_| Some(Box::new(Note([3; 24])))).collect();
    common::keep_frame((ring, posts, notes))
}

fn byvia_names_fields_map_values_and_statics_exactly() {
    let orders = orders(3, 300);
    let sessions = sessions(100);
    register_plugins(5);
    let rings = rings();
    scrub_stack();
    let heap = hpy().heap();

    // A slice's elements are named alike, whatever their index, in a
    // boxed slice and in a shared one (after its counts).
    for (ty, via_name, n) in [
        ("Box<heap_graph::Message>", "Slot.value", 64),
        ("Box<heap_graph::Echo>", "Post.echo", 32),
        ("Box<heap_graph::Note>", "Box<[Option<Box<Note>>]>[*]", 16),
    ] {
        let blocks = of_type(&heap, ty);
        assert_eq!(blocks.count(), n, "{ty}");
        let via = blocks.byvia();
        assert_eq!(via.rows().len(), 1, "{ty}: {}", via.all().render(200));
        assert_eq!(row(&via, via_name).count, n, "{ty}");
    }

    // Three customers, each held by the orders' `customer` field.
    let customers = of_type(&heap, "Arc<heap_graph::Customer>");
    assert_eq!(customers.count(), 3);
    let via = customers.byvia();
    let r = row(&via, "Order.customer");
    assert_eq!((r.count, r.size), (3, customers.size()), "{via}");
    // One step up: the orders' buffer, one block.
    let up = customers.referrers();
    assert_eq!(up.count(), 1, "{}", up.bytype());
    assert_eq!(up.size(), (300 * size_of::<Order>()) as u64);

    // A hundred sessions, the values of a B-tree map.
    let boxes = of_type(&heap, "Box<heap_graph::Session>");
    assert_eq!(boxes.count(), 100);
    let via = boxes.byvia();
    let r = row(&via, "BTreeMap<u64, Box<Session>>.vals[*]");
    assert_eq!(
        (r.count, r.size),
        (100, 100 * size_of::<Session>() as u64),
        "{via}"
    );
    // Their names: the session's own fields hold nothing.
    assert_eq!(boxes.referents().count(), 0);

    // Five plugins in the static's vector; the vector's buffer held by the
    // static itself.
    let plugins = of_type(&heap, "Box<heap_graph::Plugin>");
    assert_eq!(plugins.count(), 5);
    let via = plugins.byvia();
    let r = row(&via, "Vec<Box<Plugin>>[*]");
    assert_eq!(r.count, 5, "{via}");
    let buffer = plugins.referrers();
    assert_eq!(buffer.count(), 1);
    let via = buffer.byvia();
    assert_eq!(row(&via, "static REGISTRY").count, 1, "{via}");
    // byrcs: each block once, under its referrers' types.
    let rcs = plugins.byrcs();
    assert_eq!(rcs.rows().len(), 1, "{rcs}");
    assert_eq!(rcs.rows()[0].count, 5);
    assert_eq!(
        rcs.rows()[0].label.trim_end_matches(" (?)"),
        "Vec<Box<Plugin>>"
    );
    let text = via.render(80);
    assert!(
        text.starts_with("Partition of a set of 1 object."),
        "{text}"
    );
    assert!(
        text.contains("A block held by several references is counted under each."),
        "{text}"
    );
    drop((orders, sessions, rings));
}

fn sp_of_a_plugin_starts_at_the_static() {
    scrub_stack();
    let plugins = of_type(&hpy().heap(), "Box<heap_graph::Plugin>");
    let sp = plugins.sp().unwrap();
    assert_eq!(sp.unreachable, 0);
    assert_eq!(sp.rows.len(), 1, "{sp}");
    assert_eq!(
        sp.rows[0].steps,
        ["static REGISTRY", "Vec<Box<Plugin>>[*]", "Box<Plugin>"],
        "{sp}"
    );
    assert_eq!(sp.rows[0].count, 5);
    let text = sp.render(80);
    assert!(
        text.starts_with("Shortest paths from a root to a set of 5 objects."),
        "{text}"
    );
    assert!(
        text.contains("   static REGISTRY\n   → Vec<Box<Plugin>>[*]\n"),
        "{text}"
    );
}

/// What the shelf and the raw block below both lead to.
#[allow(dead_code)]
struct Treasure(u64);

/// A shelf's slot: a field the debug info names.
#[allow(dead_code)]
struct Holder {
    treasure: Box<Treasure>,
}

static SHELF: Mutex<Vec<Box<Holder>>> = Mutex::new(Vec::new());
/// The address of a block of words no type describes.
static RAW: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A block of four words, allocated with no type (its layout is unknown),
/// holding `words`.
#[inline(never)]
fn raw_words(words: [usize; 4]) -> usize {
    let layout = std::alloc::Layout::new::<[usize; 4]>();
    // SAFETY: the layout is not zero-sized; the block is written whole
    // before anything reads it, and is never freed (the test's static
    // keeps it).
    let p = unsafe { std::alloc::alloc(layout) } as *mut [usize; 4];
    assert!(!p.is_null());
    // SAFETY: p is a fresh, aligned block of that layout.
    unsafe { p.write(words) };
    common::keep_frame(p as usize)
}

#[inline(never)]
fn treasure(n: u64) -> Box<Treasure> {
    common::keep_frame(Box::new(Treasure(n)))
}

/// One treasure on the shelf, also named by a word of the raw block (one
/// step shorter from a static); another named by the raw block alone. No
/// address stays in this frame, which the next call overwrites.
#[inline(never)]
fn shelve_and_hide() {
    let shelved = treasure(1);
    let at = &*shelved as *const Treasure as usize;
    SHELF
        .lock()
        .unwrap()
        .push(Box::new(Holder { treasure: shelved }));
    let alone = Box::into_raw(treasure(2)) as usize;
    RAW.store(raw_words([at, alone, 0, 0]), Ordering::Relaxed);
}

fn sp_takes_a_word_of_unknown_layout_only_where_no_field_leads() {
    shelve_and_hide();
    scrub_stack();
    let treasures = of_type(&hpy().heap(), "Box<heap_graph::Treasure>");
    let sp = treasures.sp().unwrap();
    assert_eq!(sp.unreachable, 0, "{sp}");
    assert_eq!(sp.rows.len(), 2, "{sp}");
    assert_eq!(
        sp.rows[0].steps,
        [
            "static SHELF",
            "Vec<Box<Holder>>[*]",
            "Holder.treasure",
            "Box<Treasure>"
        ],
        "{sp}"
    );
    // The raw block's static (a word of the executable's data, which its
    // symbol table may not name).
    assert!(sp.rows[1].steps[0].starts_with("static "), "{sp}");
    assert_eq!(
        sp.rows[1].steps[1..],
        ["fn raw_words (unknown layout)", "Box<Treasure>"],
        "{sp}"
    );
    assert_eq!((sp.rows[0].count, sp.rows[1].count), (1, 1), "{sp}");
}

/// One link of a singly linked list.
#[allow(dead_code)]
struct Link {
    next: Option<Box<Link>>,
    id: u64,
}

#[inline(never)]
fn chain(n: u64) -> Box<Link> {
    let mut head = Box::new(Link { next: None, id: 0 });
    for id in 1..n {
        head = Box::new(Link {
            next: Some(head),
            id,
        });
    }
    common::keep_frame(head)
}

/// An item of a bag: 1000 bytes of its own.
#[allow(dead_code)]
struct Item([u8; 1000]);

/// A bag of items, and one item it shares with another bag.
#[allow(dead_code)]
struct Bag {
    items: Vec<Box<Item>>,
    shared: Arc<Item>,
}

#[inline(never)]
fn bags(n: usize) -> Vec<Box<Bag>> {
    let shared = Arc::new(Item([7; 1000]));
    let bags = (0..2)
        .map(|_| {
            Box::new(Bag {
                items: (0..n).map(|_| Box::new(Item([1; 1000]))).collect(),
                shared: shared.clone(),
            })
        })
        .collect();
    common::keep_frame(bags)
}

fn retained_sizes_and_dominators_of_bags_of_items() {
    scrub_stack();
    let bags = bags(500);
    let heap = hpy().heap();
    let boxes = of_type(&heap, "Box<heap_graph::Bag>");
    assert_eq!(boxes.count(), 2);
    // A bag alone frees itself, its buffer and its 500 items; the shared
    // item only with both bags.
    let one_bag = (size_of::<Bag>() + 500 * size_of::<Box<Item>>() + 500 * 1000) as u64;
    let shared = (2 * size_of::<usize>() + 1000) as u64;
    let items = of_type(&heap, "Box<heap_graph::Item>");
    assert_eq!(items.count(), 1000);
    // Freeing every item frees exactly them.
    assert_eq!(items.retained().unwrap(), 1_000_000);
    // The scan is conservative: a stale word elsewhere that happens to
    // hold an item's or a bag's buffer's address (on a stack, in an
    // earlier test's block) keeps what it reaches out of what the bags
    // retain, never in. So: no more than exact, and at least one bag's
    // worth, nine in ten of it.
    let near = |got: u64, exact: u64, least: u64| got <= exact && got * 10 >= least * 9;
    let bags_retain = boxes.retained().unwrap();
    assert!(
        near(bags_retain, 2 * one_bag + shared, one_bag),
        "{bags_retain}"
    );
    // The tree of these blocks: each bag on top, retaining its own items.
    let d = boxes.dominators().unwrap();
    assert_eq!(d.rows().len(), 1, "{d}");
    let r = &d.rows()[0];
    assert_eq!(
        (r.ty.as_str(), r.count, r.shallow),
        ("Box<heap_graph::Bag>", 2, 2 * size_of::<Bag>() as u64),
        "{d}"
    );
    assert!(near(r.retained, 2 * one_bag, one_bag), "{d}");
    // One level down: the buffers (two, unless a stale word holds one),
    // each retaining its 500 items.
    let below = d.row(0);
    let buffers = below
        .rows()
        .iter()
        .find(|r| r.ty.trim_end_matches(" (?)") == "Vec<Box<heap_graph::Item>>")
        .unwrap_or_else(|| panic!("{below}"));
    let one_buffer = 500 * 8 + 500 * 1000;
    assert!(buffers.count >= 1 && buffers.count <= 2, "{below}");
    assert!(
        near(buffers.retained, buffers.count * one_buffer, one_buffer),
        "{below}"
    );
    // Of the whole heap, the vector of bags is on top: it alone holds
    // both, so it retains them and the item they share. (A stale word on
    // a stack may hold a bag or an item directly, which puts it on top of
    // its own: the rows of these types share the bytes between them.)
    let whole = heap.dominators().unwrap();
    let ours = |r: &leakscope::heap::RetainerRow| {
        [
            "Vec<Box<heap_graph::Bag>>",
            "Box<heap_graph::Bag>",
            "Box<heap_graph::Item>",
            "Arc<heap_graph::Item>",
            "Vec<Box<heap_graph::Item>>",
        ]
        .contains(&r.ty.trim_end_matches(" (?)"))
    };
    let on_top: u64 = whole
        .rows()
        .iter()
        .filter(|r| ours(r))
        .map(|r| r.retained)
        .sum();
    let exact = (2 * size_of::<usize>()) as u64 + 2 * one_bag + shared;
    assert_eq!(on_top, exact, "{whole}");
    // The bags' items are found under a bag's row, the vector's, or (a
    // stale word holding it) one bag's buffer of items.
    let (row, under) = whole.dominating_row(&items).unwrap();
    assert!(
        ours(&whole.rows()[row]) && under >= 450,
        "{row} {under}\n{whole}"
    );
    let text = whole.render(80);
    assert!(
        text.starts_with("Dominator tree: the blocks that retain the most"),
        "{text}"
    );
    assert!(text.lines().all(|l| l.chars().count() <= 80), "{text}");
    drop(black_box(bags));
}

fn sp_of_a_long_chain_names_each_link_once() {
    // Every link's path goes through all the links before it: a path
    // walked per block would take 60 000 × 30 000 steps. The paths share
    // their prefixes, so each link is named once.
    scrub_stack();
    let head = chain(60_000);
    let links = of_type(&hpy().heap(), "Box<heap_graph::Link>");
    let sp = links.sp().unwrap();
    assert_eq!(sp.unreachable, 0, "{sp}");
    assert_eq!(sp.count, 60_000);
    // The head from this thread's stack, then the rest through `next`.
    let total: u64 = sp.rows.iter().map(|r| r.count).sum();
    assert_eq!(total, 60_000, "{sp}");
    // A stale word on a stack may reach a link directly (the scan is
    // conservative): nearly all are reached through `next` nonetheless.
    let through = sp
        .rows
        .iter()
        .find(|r| r.steps.iter().any(|s| s == "Link.next (repeated)"))
        .unwrap_or_else(|| panic!("{sp}"));
    assert!(through.count >= 59_000, "{sp}");
    drop(black_box(head));
}

fn numbers_that_spell_an_address_are_not_references() {
    // A u32, a u64, an f64 (or a bool, a u16) cannot hold a pointer: a
    // word read where the referrer's layout has one is not a reference, in
    // byvia, byrcs, referrers or sp, however much it looks like an address.
    scrub_stack();
    let (keepers, spelled) = keepers(50);
    let heap = hpy().heap();
    let targets = of_type(&heap, "Box<heap_graph::Target>");
    assert_eq!(targets.count(), 50);
    // (A stale copy of an address on a stack is a root, as ever: the
    // scan is conservative.)
    let via = targets.byvia();
    let shown = via.all().render(200);
    assert_eq!(row(&via, "Keeper.target").count, 50, "{shown}");
    assert!(
        via.rows().iter().all(|r| !r.label.starts_with("Spelled")),
        "{shown}"
    );
    let up = targets.referrers();
    assert_eq!(of_type(&up, "Box<heap_graph::Keeper>").count(), 50);
    assert!(
        up.bytype()
            .rows()
            .iter()
            .all(|r| !r.label.contains("Spelled")),
        "{}",
        up.bytype()
    );
    let rcs = targets.byrcs();
    assert!(
        rcs.rows().iter().all(|r| !r.label.contains("Spelled")),
        "{rcs}"
    );
    let sp = targets.sp().unwrap();
    assert!(
        sp.rows
            .iter()
            .all(|r| r.steps.iter().all(|s| !s.starts_with("Spelled"))),
        "{sp}"
    );
    assert!(
        sp.rows
            .iter()
            .any(|r| r.steps.iter().any(|s| s == "Keeper.target")),
        "{sp}"
    );
    drop(black_box((keepers, spelled)));
}

#[inline(never)]
fn linked_pages(n: u64) -> Rc<RefCell<Page>> {
    let head = Rc::new(RefCell::new(Page {
        id: 0,
        next: None,
        prev: None,
    }));
    let mut tail = head.clone();
    for id in 1..n {
        let page = Rc::new(RefCell::new(Page {
            id,
            next: None,
            prev: Some(Rc::downgrade(&tail)),
        }));
        tail.borrow_mut().next = Some(page.clone());
        tail = page;
    }
    common::keep_frame(head)
}

/// A ring of `n` pages, each holding the next strongly; dropped here, so
/// nothing outside the ring refers to it.
#[inline(never)]
fn drop_a_ring(n: u64) {
    let first = linked_pages(n);
    let mut last = first.clone();
    loop {
        let next = last.borrow().next.clone();
        match next {
            Some(p) => last = p,
            None => break,
        }
    }
    last.borrow_mut().next = Some(first);
}

fn an_rc_cycle_is_unreachable_and_nothing_else_is() {
    let owned = linked_pages(200);
    // Nothing before this test's cycle: earlier blocks are not the subject.
    scrub_stack();
    let before = hpy().unreachable().unwrap();
    assert_eq!(before.count(), 0, "{}", before.bytype().all().render(200));
    // The ring is made and let go on a thread of its own, gone before the
    // heap is read: the scan is conservative, and a stale copy of any one
    // page's address on a live stack would keep the whole ring.
    std::thread::spawn(|| drop_a_ring(500)).join().unwrap();
    scrub_stack();
    let lost = hpy().unreachable().unwrap();
    if lost.count() == 0 {
        let all = hpy().heap();
        let pages = of_type(&all, "Rc<RefCell<heap_graph::Page>>");
        panic!("something reaches the ring: {}", pages.sp().unwrap());
    }
    let by = lost.bytype();
    assert_eq!(by.rows().len(), 1, "{by}");
    let pages = &by.rows()[0];
    assert_eq!(
        pages.label.trim_end_matches(" (?)"),
        "Rc<RefCell<heap_graph::Page>>"
    );
    assert_eq!(pages.count, 500, "{}", by.all().render(200));
    assert_eq!(
        pages.size,
        500 * (size_of::<RefCell<Page>>() + 2 * size_of::<usize>()) as u64
    );
    assert_eq!(lost.count(), 500, "only the ring: {}", by.all().render(200));
    // The Weak-linked list, still owned, is reachable.
    let all = hpy().heap();
    let pages = of_type(&all, "Rc<RefCell<heap_graph::Page>>");
    assert_eq!(pages.count(), 700);
    let via = pages.byvia();
    assert_eq!(row(&via, "Page.next").count, 699, "{via}");
    // Their paths: from the list's owner on this stack, a run of `next`
    // steps shown once; the ring has none. The scan is conservative: a
    // stale copy of a page's address (in a stack slot, or in the unused
    // words of a static written from the stack) is a root too, and gives
    // the pages after it a shorter path from there. So every owned page
    // has a path, all of them end at the page type, and the most common
    // one runs along `next`; which root it starts at depends on what
    // stale words the stacks hold.
    let sp = pages.sp().unwrap();
    assert_eq!(sp.unreachable, 500, "{sp}");
    let counts: Vec<u64> = sp.rows.iter().map(|r| r.count).collect();
    assert_eq!(counts.iter().sum::<u64>(), 200, "{sp}");
    let ty = pages.bytype().rows()[0].label.clone();
    let ty = leakscope::symbols::short_type(&ty);
    for r in &sp.rows {
        assert_eq!(r.steps.last(), Some(&ty), "{sp}");
        let root = &r.steps[0];
        assert!(
            root.starts_with("stack of ") || root.starts_with("static "),
            "{sp}"
        );
    }
    assert_eq!(
        sp.rows[0].steps[1..],
        ["Page.next (repeated)", ty.as_str()],
        "{sp}"
    );
    drop(owned);
}

fn churn(seed: u64, stop: &AtomicBool) {
    let mut x = seed | 1;
    let mut kept: Vec<Vec<u8>> = Vec::new();
    let mut rounds = 0u64;
    while !stop.load(Ordering::Relaxed) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Some blocks large enough to get pages of their own, given back
        // when they are freed.
        let size = if x.is_multiple_of(64) {
            (1 << 20) + (x % 4096) as usize
        } else {
            16 + (x % 2048) as usize
        };
        kept.push(vec![(x & 0xff) as u8; size]);
        if kept.len() > 256 {
            let i = (x as usize / 7) % kept.len();
            kept.swap_remove(i);
        }
        rounds += 1;
        if rounds.is_multiple_of(512) {
            let _ = leakscope::purge();
        }
    }
    black_box(kept);
}

fn scans_while_16_threads_allocate_free_and_purge() {
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let stop = stop.clone();
            std::thread::spawn(move || churn(t * 7919 + 1, &stop))
        })
        .collect();
    let mut edges = 0;
    for round in 0..4 {
        let t = std::time::Instant::now();
        let heap = hpy().heap();
        let g = heap.graph();
        edges += g.stats().edges;
        assert!(g.stats().blocks > 0);
        black_box(heap.byvia().render(80));
        eprintln!(
            "scan {round} while allocating: {:?}, {:?}",
            t.elapsed(),
            g.stats()
        );
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    assert!(edges > 0);
    // Still exact afterwards: a fresh known shape reads right.
    let plugins = of_type(&hpy().heap(), "Box<heap_graph::Plugin>");
    assert_eq!(plugins.count(), 5);
}

/// The blocks `byvia` starts with in the test of stopping views; doubled
/// until a view of them takes at least 2 s, however fast the naming
/// becomes.
const GRAINS: u64 = 400_000;

/// One of many small blocks: a heap whose views take a while.
#[allow(dead_code)]
struct Grain([u64; 4]);

/// A console on a free port (password `pw`) with this line limit and one
/// session at a time.
fn one_session_console(line_timeout: Duration) -> leakscope::console::Console {
    leakscope::console::Console::builder()
        .port(0)
        .password("pw")
        .line_timeout(line_timeout)
        .max_sessions(1)
        .spawn()
        .expect("console")
}

fn views_of_a_big_heap_stop_at_the_deadline_ctrl_c_and_a_client_leaving() {
    // The views are native code, not interpreter steps: they stop in the
    // middle of their work at the line's deadline, at Ctrl-C and when the
    // client leaves, and the session (or the next one) goes on at once.
    let mut grains: Vec<Box<Grain>> = (0..GRAINS).map(|i| Box::new(Grain([i; 4]))).collect();
    // What one view costs here, unwatched: the stops below come well
    // before it would end (a loaded machine only makes it longer).
    let unwatched = loop {
        let began = Instant::now();
        let rows = hpy().heap().byvia().rows().len();
        let unwatched = began.elapsed();
        assert!(rows >= 1);
        if unwatched >= Duration::from_secs(2) {
            break unwatched;
        }
        assert!(
            grains.len() < 32 * GRAINS as usize,
            "byvia of {} blocks took only {unwatched:?}: too little to show it stopping",
            grains.len()
        );
        let more = grains.len() as u64;
        grains.extend((more..2 * more).map(|i| Box::new(Grain([i; 4]))));
    };

    // The deadline: a line of 1 s (this session's choice) ends 1 s in, as
    // TimeoutError.
    let console = one_session_console(Duration::from_secs(600));
    let addr = console.addr().unwrap();
    let mut c = common::Client::connect(addr);
    c.login("pw");
    assert_eq!(
        c.run("line_timeout()").trim(),
        "Lines of this session stop after 600 s (the console's limit)."
    );
    assert!(
        c.run("line_timeout(0)")
            .contains("ValueError: line_timeout(secs) takes")
    );
    assert_eq!(
        c.run("line_timeout(1)").trim(),
        "Lines of this session now stop after 1 s."
    );
    let began = Instant::now();
    let out = c.run("hpy().heap().byvia");
    let took = began.elapsed();
    // It says what it was doing then, and how to give it longer.
    assert!(
        out.contains("TimeoutError: the line ran longer than 1 s, while "),
        "{out}"
    );
    assert!(out.contains("line_timeout(secs)"), "{out}");
    assert!(took < Duration::from_secs(1) + unwatched / 2, "{took:?}");
    let at_deadline = took;
    // The session goes on.
    assert_eq!(c.run("1 + 1").trim(), "2");

    // Ctrl-C and leaving, with time enough for the view to end by itself.
    c.run("line_timeout(600)");
    c.send(b"hpy().heap().byvia\r\n");
    // (Sent with the line, the Ctrl-C would be read before the line runs,
    // and answered after it: it goes a moment later.)
    std::thread::sleep(Duration::from_millis(300));
    let began = Instant::now();
    c.send(&[255, 244]);
    let out = String::from_utf8_lossy(&c.prompt()).into_owned();
    let took = began.elapsed();
    assert!(out.contains("KeyboardInterrupt"), "{out}");
    assert!(took < unwatched / 2, "{took:?}");
    let at_interrupt = took;
    assert_eq!(c.run("2 + 2").trim(), "4");

    // A client that leaves mid-view gives its place back at once: the
    // only session's place is free for the next client.
    c.send(b"hpy().heap().byvia\r\n");
    std::thread::sleep(Duration::from_millis(300));
    drop(c);
    let left = Instant::now();
    let mut next = loop {
        let mut next = common::Client::connect(addr);
        let k = next.expect_any(&[b"Username: ", b"Too many"]);
        assert!(
            left.elapsed() < unwatched / 2,
            "the place was not given back in {:?}",
            left.elapsed()
        );
        if k == 0 {
            break next;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!(
        "byvia of {} blocks: {unwatched:?} unwatched; a 1 s line ended after \
         {at_deadline:?}, Ctrl-C answered in {at_interrupt:?}, a leaving client's place \
         free in {:?}",
        grains.len(),
        left.elapsed()
    );
    next.send(b"leakscope\r\npw\r\n");
    next.prompt();
    assert_eq!(next.run("3 + 3").trim(), "6");

    // The page's views stop at their own limit too: 503, saying what the
    // view was doing, and the endpoint answers on.
    let endpoint = leakscope::http::Endpoint::builder()
        .addr(([127, 0, 0, 1], 0).into())
        .view_timeout(Duration::from_secs(1))
        .spawn()
        .unwrap();
    let get = |path: &str| {
        let mut s = std::net::TcpStream::connect(endpoint.addr().unwrap()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        std::io::Write::write_all(&mut s, format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes())
            .unwrap();
        let mut got = String::new();
        std::io::Read::read_to_string(&mut s, &mut got).unwrap();
        got
    };
    let began = Instant::now();
    let answer = get("/heap?by=via");
    assert!(
        answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{answer}"
    );
    assert!(
        answer.contains("The view ran longer than 1 s, while "),
        "{answer}"
    );
    assert!(began.elapsed() < Duration::from_secs(1) + unwatched / 2);
    // The endpoint answers on: the metrics, or (on a machine so loaded
    // that they take longer than this endpoint's 1 s) the same limit's
    // answer.
    let began = Instant::now();
    let metrics = get("/metrics");
    assert!(
        metrics.starts_with("HTTP/1.1 200 OK\r\n")
            || (metrics.contains("The view ran longer than 1 s")
                && began.elapsed() >= Duration::from_secs(1)),
        "{metrics}"
    );
    drop(black_box(grains));
}
