//! Allocation sites and types of known shapes, each exact: a block
//! allocated in `main` itself, in a thread's closure, one and eight frames
//! below `main`, through a dependency crate, and by `vec![…]`; and no
//! stack in a view or an export holds a frame of leakscope's or of the
//! allocator's.
//!
//! `LEAKSCOPE_APP_CRATES=sites` makes the fixture crate
//! (`fixtures/dep`, a path dependency whose source is not in the cargo
//! registry) a dependency rather than the program's own code.

mod common;

use std::sync::OnceLock;

use leakscope::export::dhat;
use leakscope::{Alloc, Mode, symbols, tracker};

#[global_allocator]
static ALLOC: Alloc = Alloc::with_default_mode(Mode::Exact);

#[allow(dead_code)]
struct InMain {
    a: u64,
    b: u64,
}

#[allow(dead_code)]
struct Gear {
    teeth: u32,
}

#[allow(dead_code)]
struct One(u64, u64, u64);

#[allow(dead_code)]
struct Deep {
    level: [u64; 5],
}

/// Where `main` put each block, and the line it allocated it on.
struct Shapes {
    in_main: (usize, u32),
    gears: (usize, u32),
    one_below: (usize, u32),
    eight_below: (usize, u32),
    through_dep: (usize, u32),
}

static SHAPES: OnceLock<Shapes> = OnceLock::new();

fn shapes() -> &'static Shapes {
    SHAPES.get().expect("main placed the blocks")
}

#[inline(never)]
fn one_below_main() -> (Box<One>, u32) {
    common::keep_frame((Box::new(One(1, 2, 3)), line!()))
}

macro_rules! level {
    ($name:ident, $next:ident) => {
        #[inline(never)]
        fn $name() -> (Box<Deep>, u32) {
            common::keep_frame($next())
        }
    };
}
level!(level1, level2);
level!(level2, level3);
level!(level3, level4);
level!(level4, level5);
level!(level5, level6);
level!(level6, level7);
level!(level7, level8);

#[inline(never)]
fn level8() -> (Box<Deep>, u32) {
    common::keep_frame((Box::new(Deep { level: [8; 5] }), line!()))
}

fn main() {
    // SAFETY: set before any thread of this program starts and before any
    // stack is resolved (the variable is read once).
    unsafe { std::env::set_var("LEAKSCOPE_APP_CRATES", "sites") };
    let (in_main, in_main_at) = (Box::new(InMain { a: 1, b: 2 }), line!());
    let (gears, gears_at) = (vec![Gear { teeth: 12 }, Gear { teeth: 30 }], line!());
    let (one, one_at) = one_below_main();
    let (deep, deep_at) = level1();
    let (buffer, buffer_at) = (leakscope_fixture_dep::make_buffer(100), line!());
    let addr = |p: *const u8| p as usize;
    let placed = SHAPES.set(Shapes {
        in_main: (addr(&*in_main as *const InMain as *const u8), in_main_at),
        gears: (addr(gears.as_ptr() as *const u8), gears_at),
        one_below: (addr(&*one as *const One as *const u8), one_at),
        eight_below: (addr(&*deep as *const Deep as *const u8), deep_at),
        through_dep: (addr(buffer.as_ptr()), buffer_at),
    });
    assert!(placed.is_ok());
    common::run(&[
        (
            "a_block_allocated_in_main_itself",
            a_block_allocated_in_main_itself,
        ),
        ("vec_literals_are_vecs", vec_literals_are_vecs),
        (
            "one_and_eight_frames_below_main",
            one_and_eight_frames_below_main,
        ),
        (
            "a_threads_closure_is_the_site",
            a_threads_closure_is_the_site,
        ),
        (
            "a_dependency_is_named_after_the_programs_line",
            a_dependency_is_named_after_the_programs_line,
        ),
        (
            "no_view_or_export_shows_an_allocator_frame",
            no_view_or_export_shows_an_allocator_frame,
        ),
    ]);
    drop((in_main, gears, one, deep, buffer));
}

/// The site label and block type of the live block at `addr`.
fn site_and_type(addr: usize) -> (String, String) {
    let snap = tracker::snapshot();
    let b = snap
        .blocks
        .iter()
        .find(|b| b.addr == addr)
        .expect("the block is recorded");
    let frames = symbols::resolve_stack(&snap.stacks[b.stack as usize].frames);
    let ty = symbols::block_type(&frames);
    let name = if ty.ambiguous {
        format!("{} (?)", ty.name)
    } else {
        ty.name
    };
    (symbols::site_label(&frames), name)
}

fn a_block_allocated_in_main_itself() {
    let (addr, line) = shapes().in_main;
    assert_eq!(
        site_and_type(addr),
        (
            format!("sites::main (sites.rs:{line})"),
            "Box<sites::InMain>".to_string()
        )
    );
}

fn vec_literals_are_vecs() {
    let (addr, line) = shapes().gears;
    assert_eq!(
        site_and_type(addr),
        (
            format!("sites::main (sites.rs:{line})"),
            "Vec<sites::Gear>".to_string()
        )
    );
}

fn one_and_eight_frames_below_main() {
    let (addr, line) = shapes().one_below;
    assert_eq!(
        site_and_type(addr),
        (
            format!("sites::one_below_main (sites.rs:{line})"),
            "Box<sites::One>".to_string()
        )
    );
    let (addr, line) = shapes().eight_below;
    assert_eq!(
        site_and_type(addr),
        (
            format!("sites::level8 (sites.rs:{line})"),
            "Box<sites::Deep>".to_string()
        )
    );
}

fn a_threads_closure_is_the_site() {
    let (boxed, line) = std::thread::spawn(|| common::keep_frame((Box::new([7u8; 48]), line!())))
        .join()
        .unwrap();
    let (site, ty) = site_and_type(&*boxed as *const [u8; 48] as usize);
    assert_eq!(
        (site, ty.as_str()),
        (
            format!("sites::a_threads_closure_is_the_site::{{closure#0}} (sites.rs:{line})"),
            "Box<[u8; 48]>"
        )
    );
}

fn a_dependency_is_named_after_the_programs_line() {
    let (addr, line) = shapes().through_dep;
    assert_eq!(
        site_and_type(addr),
        (
            format!("sites::main (sites.rs:{line}) via leakscope_fixture_dep::make_buffer"),
            "Vec<u8>".to_string()
        )
    );
}

/// Whether a function is leakscope's or the allocator's plumbing.
fn is_plumbing(function: &str) -> bool {
    function.contains("leakscope::")
        || function.contains("__rust_alloc")
        || function.contains("__rust_realloc")
        || function.contains("__rg_")
        || function.contains("__rdl_")
        || function.starts_with("alloc::alloc::alloc")
        || function.starts_with("alloc::alloc::realloc")
        || function.starts_with("<alloc::alloc::Global")
}

fn no_view_or_export_shows_an_allocator_frame() {
    let heap = leakscope::hpy().heap();
    let stacks = heap.stacks();
    assert!(stacks.len() >= 6, "{} stacks", stacks.len());
    for (frames, _) in &stacks {
        assert!(!frames.is_empty());
        for f in frames {
            assert!(!is_plumbing(&f.function), "{frames:#?}");
        }
    }
    for p in [heap.bysite(), heap.bystack()] {
        for r in p.rows() {
            assert!(!is_plumbing(&r.label), "{}", r.label);
        }
    }
    let path = std::env::temp_dir().join(format!("leakscope-sites-{}.json", std::process::id()));
    let file = dhat::write(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    // ftbl[0] is the viewer's root, "[root]".
    for (i, text) in file.ftbl.iter().enumerate().skip(1) {
        let function = text.split_once(": ").map_or(text.as_str(), |(_, f)| f);
        if is_plumbing(function) {
            let pp = file.pps.iter().find(|pp| pp.fs.contains(&i)).unwrap();
            let all: Vec<&String> = pp.fs.iter().map(|&f| &file.ftbl[f]).collect();
            panic!("ftbl[{i}] = {text}: {all:#?}");
        }
    }
    // The program point of main's box starts at std's box, then main.
    let in_main: Vec<Vec<&str>> = file
        .pps
        .iter()
        .map(|pp| {
            pp.fs
                .iter()
                .take(3)
                .map(|&f| file.ftbl[f].split_once(": ").map_or("", |(_, t)| t))
                .collect()
        })
        .filter(|top: &Vec<&str>| {
            top.get(1)
                .is_some_and(|f| f.starts_with("<alloc::boxed::Box<sites::InMain>>::new "))
        })
        .collect();
    assert_eq!(in_main.len(), 1, "{in_main:#?}");
    assert!(
        in_main[0][0].starts_with("alloc::boxed::box_new_uninit ")
            && in_main[0][2].starts_with("sites::main (/"),
        "{in_main:#?}"
    );
}
