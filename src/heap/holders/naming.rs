//! Names of references: the field a pointer sits in, read from the
//! executable's debug info and named at the program's level (see the
//! module above), through std's wrappers; roots by what they are
//! (`static NAME`, `stack of thread 'name' (N)`).

use std::collections::HashMap;
use std::sync::Arc;

use super::Heap;
use crate::graph::{Graph, Referrer, RootKind, Trust};
use crate::symbols::{self, Layouts, Step};

/// How the name of a reference from a block of unknown layout ends.
const UNKNOWN_LAYOUT: &str = " (unknown layout)";

/// Wrappers the naming looks through: a field of theirs names nothing the
/// user wrote.
fn is_std(owner: &str) -> bool {
    let first = owner.split(['<', ':']).next().unwrap_or("");
    matches!(
        first,
        "core"
            | "alloc"
            | "std"
            | "hashbrown"
            | "leakscope"
            | "String"
            | "Vec"
            | "Box"
            | "Arc"
            | "Rc"
            | "VecDeque"
            | "BTreeMap"
            | "HashMap"
            | "HashSet"
            | "Option"
            | "RefCell"
            | "Mutex"
    ) || owner.starts_with('(')
        || owner.starts_with('[')
}

/// The name of a reference from a block of type `ty` (its label), given
/// the steps to the reference's offset, if the debug info had them, and
/// which types are the program's own (`is_program`).
///
/// A reference is named at the program's level: the field of the
/// innermost struct the program declares on the way to the pointer, with
/// a dependency's struct inside it after it, in parentheses
/// (`Entry.data(Bytes.ptr)`); without a program struct, the innermost
/// dependency's field (`Bytes.ptr`).
fn via_label(ty: &str, steps: Option<&[Step]>, is_program: impl Fn(&str) -> bool) -> String {
    let short = symbols::short_type(ty);
    // Every offset of a block the debug info does not describe reads
    // alike: one row per type, not one per offset (an async block's
    // future holds dozens of words).
    let Some(steps) = steps.filter(|s| !s.is_empty()) else {
        return format!("{short}{UNKNOWN_LAYOUT}");
    };
    // The innermost struct outside std on the way to the pointer, and the
    // innermost of the program's own.
    let named = |k: usize| match &steps[k] {
        Step::Field { owner, field } => {
            format!("{}.{}", symbols::short_type(owner), field_name(field))
        }
        Step::Element => String::new(),
    };
    let own = |want_program: bool| {
        steps.iter().rposition(|s| match s {
            Step::Field { owner, .. } => !is_std(owner) && (!want_program || is_program(owner)),
            Step::Element => false,
        })
    };
    match (own(true), own(false)) {
        (Some(p), Some(inner)) if inner > p => {
            return format!("{}({})", named(p), named(inner));
        }
        (_, Some(inner)) => return named(inner),
        _ => {}
    }
    if let Step::Element = steps[0] {
        return match steps.get(1) {
            Some(Step::Field { field, owner }) if owner.starts_with('(') => {
                format!("{short}[*].{}", field_name(field))
            }
            _ => format!("{short}[*]"),
        };
    }
    // Only std's types: the last field that is not a wrapper's own.
    let last = steps.iter().enumerate().rev().find_map(|(k, s)| match s {
        Step::Field { owner, field } if !is_wrapper(owner) => Some((k, owner, field)),
        _ => None,
    });
    let Some((k, owner, field)) = last else {
        return short;
    };
    let index = if matches!(steps.get(k + 1), Some(Step::Element)) {
        "[*]"
    } else {
        ""
    };
    // A B-tree's nodes are the map's own: name the map.
    let owner = if owner.starts_with("alloc::collections::btree::node::") {
        short
    } else {
        symbols::short_type(owner)
    };
    format!("{owner}.{}{index}", field_name(field))
}

/// A field as Rust code names it: DWARF names a tuple's fields (and a
/// tuple struct's) `__0`, `__1` …, Rust `0`, `1` ….
fn field_name(field: &str) -> &str {
    match field.strip_prefix("__") {
        Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => field,
    }
}

/// Types that only wrap a value: their field is not what a user would
/// name (`Arc`'s inner value, `RefCell`'s, a `MaybeUninit` slot's).
fn is_wrapper(owner: &str) -> bool {
    let head = owner.split('<').next().unwrap_or("");
    let last = head.rsplit("::").next().unwrap_or("");
    matches!(
        last,
        "ArcInner"
            | "RcInner"
            | "RcBox"
            | "MaybeUninit"
            | "ManuallyDrop"
            | "MaybeDangling"
            | "UnsafeCell"
            | "Cell"
            | "RefCell"
            | "Mutex"
            | "RwLock"
            | "Option"
            | "Some"
            | "InternalNode"
    )
}

/// Names references, caching by (stack, offset): blocks of one stack share
/// a type.
pub(super) struct Namer<'a> {
    heap: &'a Heap,
    layouts: Arc<Layouts>,
    cache: HashMap<(u32, u32), Arc<str>>,
    /// The kernel's names of threads, by index.
    thread_names: HashMap<u32, Option<String>>,
    /// Whether a word can be a reference, by (stack, offset).
    pointers: HashMap<(u32, u32), bool>,
    /// Where an array block's elements start and the size of one, by
    /// stack.
    strides: HashMap<u32, Option<(u64, u64)>>,
    statics: HashMap<usize, Arc<str>>,
}

impl<'a> Namer<'a> {
    pub(super) fn new(heap: &'a Heap) -> Self {
        Namer {
            heap,
            layouts: symbols::layouts(),
            cache: HashMap::new(),
            pointers: HashMap::new(),
            thread_names: HashMap::new(),
            strides: HashMap::new(),
            statics: HashMap::new(),
        }
    }

    /// Whether the word at `offset` of block `block` can be a reference:
    /// false when the referrer's layout has a field there that cannot hold
    /// a pointer: a number other than `usize`/`isize`, a `bool`, a C-like
    /// enum (what the scan read there is data or stale, however much it
    /// looks like an address). True when the layout does not say.
    pub(super) fn may_point(&mut self, graph: &Graph, block: u32, offset: u32) -> bool {
        if let Some(y) = graph.young(block) {
            let ty = y.ty.trim_end_matches(" (?)");
            return self
                .layouts
                .block_may_point(ty, y.block.size, offset as u64)
                != Some(false);
        }
        let b = &self.heap.data.snapshot.blocks[block as usize];
        let (stack, size) = (b.stack, b.size);
        let offset = self.in_element(block, offset);
        if let Some(&may) = self.pointers.get(&(stack, offset)) {
            return may;
        }
        let ty = self.heap.data.facts(stack).ty.name.clone();
        let ty = ty.trim_end_matches(" (?)");
        let may = self.layouts.block_may_point(ty, size, offset as u64) != Some(false);
        self.pointers.insert((stack, offset), may);
        may
    }

    /// How far a path may trust the word at `offset` of block `block`: not
    /// at all where the layout says it holds no pointer; doubtfully where
    /// the block's layout is unknown (a word there may be stale, as in a
    /// channel's slot already read); surely otherwise.
    pub(super) fn trust(&mut self, graph: &Graph, block: u32, offset: u32) -> Trust {
        if !self.may_point(graph, block, offset) {
            return Trust::Never;
        }
        let r = Referrer::Block { block, offset };
        if self.name(graph, r).ends_with(UNKNOWN_LAYOUT) {
            Trust::Doubtful
        } else {
            Trust::Sure
        }
    }

    /// The referrers of block `j` that can be references (see
    /// [`Namer::may_point`]).
    pub(super) fn referrers(&mut self, graph: &Graph, j: u32) -> Vec<Referrer> {
        graph
            .referrers(j)
            .filter(|&r| match r {
                Referrer::Block { block, offset } => self.may_point(graph, block, offset),
                Referrer::Root(_) => true,
            })
            .collect()
    }

    /// `offset` in block `block` of the snapshot, taken modulo its element
    /// size when the block holds an array: every element is named alike.
    fn in_element(&mut self, block: u32, offset: u32) -> u32 {
        let b = &self.heap.data.snapshot.blocks[block as usize];
        let elements = match self.strides.get(&b.stack) {
            Some(&e) => e,
            None => {
                let ty = self.heap.data.facts(b.stack).ty.name.clone();
                let e = self
                    .layouts
                    .block_elements(ty.trim_end_matches(" (?)"), b.size);
                self.strides.insert(b.stack, e);
                e
            }
        };
        match elements {
            Some((start, stride))
                if u64::from(offset) >= start && stride <= u64::from(u32::MAX) =>
            {
                let start = start as u32;
                start + (offset - start) % stride as u32
            }
            _ => offset,
        }
    }

    /// The name of one reference into a block.
    pub(super) fn name(&mut self, graph: &Graph, r: Referrer) -> Arc<str> {
        match r {
            Referrer::Block { block, offset } => {
                if let Some(y) = graph.young(block) {
                    let ty = y.ty.trim_end_matches(" (?)");
                    let steps = self.layouts.block_field(ty, y.block.size, offset as u64);
                    return via_label(ty, steps.as_deref(), symbols::is_program_type).into();
                }
                // Every element of an array block is named alike: one
                // cache entry per field, not per element.
                let offset = self.in_element(block, offset);
                let b = &self.heap.data.snapshot.blocks[block as usize];
                let key = (b.stack, offset);
                if let Some(n) = self.cache.get(&key) {
                    return n.clone();
                }
                let ty = self.heap.data.facts(b.stack).ty.name.clone();
                let ty = ty.trim_end_matches(" (?)");
                let steps = self.layouts.block_field(ty, b.size, offset as u64);
                let n: Arc<str> = via_label(ty, steps.as_deref(), symbols::is_program_type).into();
                self.cache.insert(key, n.clone());
                n
            }
            Referrer::Root(i) => {
                let rr = graph.root_ref(i);
                match &graph.regions()[rr.region as usize].kind {
                    RootKind::Statics(file) => {
                        if let Some(n) = self.statics.get(&rr.addr) {
                            return n.clone();
                        }
                        let n: Arc<str> = match symbols::static_name(rr.addr) {
                            Some(s) => format!("static {}", symbols::short_type(&s)).into(),
                            None => format!("static data of {file}").into(),
                        };
                        self.statics.insert(rr.addr, n.clone());
                        n
                    }
                    RootKind::MainStack => "stack of the main thread".into(),
                    &RootKind::Thread(t) => match self
                        .thread_names
                        .entry(t)
                        .or_insert_with(|| crate::tracker::thread_name(t))
                    {
                        Some(name) => format!("stack of thread '{name}' ({t})").into(),
                        None => format!("stack of thread {t}").into(),
                    },
                    RootKind::OtherThread => "stack of a thread".into(),
                    RootKind::Brk => "the C library's brk heap".into(),
                }
            }
        }
    }

    /// The referrers' type (`byrcs`): a block's type, or what root it is.
    pub(super) fn kind_of(&mut self, graph: &Graph, r: Referrer) -> String {
        match r {
            Referrer::Block { block, .. } => match graph.young(block) {
                Some(y) => symbols::short_type(&y.ty),
                None => {
                    let b = &self.heap.data.snapshot.blocks[block as usize];
                    symbols::short_type(&self.heap.data.facts(b.stack).ty.name)
                }
            },
            Referrer::Root(i) => {
                let rr = graph.root_ref(i);
                match &graph.regions()[rr.region as usize].kind {
                    RootKind::Statics(_) => "static".into(),
                    RootKind::Brk => "the C library's brk heap".into(),
                    _ => "stack".into(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(owner: &str, field: &str) -> Step {
        Step::Field {
            owner: owner.into(),
            field: field.into(),
        }
    }

    /// The program of these tests is crate `app`.
    fn app(ty: &str) -> bool {
        ty.starts_with("app::")
    }

    #[test]
    fn the_innermost_program_struct_names_a_reference() {
        let steps = [
            field(
                "alloc::sync::ArcInner<leakscope::trackref::tracked::TrackedInner<app::HtmlResponse>>",
                "data",
            ),
            field(
                "leakscope::trackref::tracked::TrackedInner<app::HtmlResponse>",
                "value",
            ),
            field("app::HtmlResponse", "request"),
            field("app::Request", "meta"),
            field(
                "core::option::Option<leakscope::trackref::Tracked<app::HtmlResponse>>",
                "Some",
            ),
        ];
        assert_eq!(via_label("Arc<x>", Some(&steps), app), "Request.meta");
        let buffer = [Step::Element];
        assert_eq!(
            via_label("Vec<Box<app::Plugin>>", Some(&buffer), app),
            "Vec<Box<Plugin>>[*]"
        );
        let node = [
            field(
                "alloc::collections::btree::node::LeafNode<u64, Box<app::Session>>",
                "vals",
            ),
            Step::Element,
        ];
        assert_eq!(
            via_label("BTreeMap<u64, Box<app::Session>>", Some(&node), app),
            "BTreeMap<u64, Box<Session>>.vals[*]"
        );
        let mutex = [
            field("alloc::sync::ArcInner<Mutex<Vec<u8>>>", "data"),
            field("Mutex<Vec<u8>>", "data"),
        ];
        assert_eq!(
            via_label("Arc<Mutex<Vec<u8>>>", Some(&mutex), app),
            "Arc<Mutex<Vec<u8>>>"
        );
        assert_eq!(
            via_label("fn app::load", None, app),
            "fn load (unknown layout)"
        );
        // Tuple fields read as Rust writes them.
        let tuple = [
            Step::Element,
            field("(alloc::string::String, app::Entry)", "__1"),
        ];
        assert_eq!(
            via_label("HashMap<String, Entry>", Some(&tuple), app),
            "HashMap<String, Entry>[*].1"
        );
        // A dependency's struct inside the program's: the program's field
        // first, the dependency's after it.
        let bytes = [
            Step::Element,
            field("(alloc::string::String, app::db::Entry)", "__1"),
            field("app::db::Entry", "data"),
            field("bytes::bytes::Bytes", "ptr"),
        ];
        assert_eq!(
            via_label("HashMap<String, Entry>", Some(&bytes), app),
            "Entry.data(Bytes.ptr)"
        );
        // Without a program struct on the way, the dependency's field.
        assert_eq!(via_label("Vec<Bytes>", Some(&bytes[3..]), app), "Bytes.ptr");
        // With no program type known, the innermost struct outside std.
        assert_eq!(
            via_label("HashMap<String, Entry>", Some(&bytes), |_| false),
            "Bytes.ptr"
        );
        assert_eq!(field_name("__12"), "12");
        assert_eq!(field_name("__"), "__");
        assert_eq!(field_name("__x"), "__x");
    }
}
