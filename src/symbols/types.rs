//! The Rust type of a heap block, read from the container frames of its
//! stack.

use super::Frame;

/// How a block's type was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TypeSource {
    /// From a container frame (`Box<T>`, `Vec<T>` …).
    Container,
    /// No container frame: the allocating function stands in for the type.
    AllocatingFunction,
    /// The stack could not be resolved.
    Unknown,
}

/// The Rust type of a heap block, as far as the stack tells.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BlockType {
    /// Short type (`Box<app::Widget>`, `Vec<u8>`, `String`) or, without a
    /// container frame, `fn app::load` naming the allocating function.
    pub name: String,
    /// True when the type came only from a non-inlined generic frame, which
    /// LLVM may have merged with another instantiation.
    pub ambiguous: bool,
    /// Where the name came from.
    pub source: TypeSource,
}

const CONTAINERS: &[(&str, &str)] = &[
    ("alloc::boxed::Box<", "Box"),
    ("alloc::sync::Arc<", "Arc"),
    ("alloc::rc::Rc<", "Rc"),
    ("alloc::vec::Vec<", "Vec"),
    ("alloc::raw_vec::RawVec<", "Vec"),
    ("alloc::collections::vec_deque::VecDeque<", "VecDeque"),
    ("alloc::collections::btree::map::BTreeMap<", "BTreeMap"),
    ("alloc::collections::btree::set::BTreeSet<", "BTreeSet"),
    ("alloc::collections::binary_heap::BinaryHeap<", "BinaryHeap"),
    ("std::collections::hash::map::HashMap<", "HashMap"),
    ("std::collections::hash::set::HashSet<", "HashSet"),
    ("hashbrown::map::HashMap<", "HashMap"),
    ("hashbrown::raw::RawTable<", "RawTable"),
    ("alloc::string::String", "String"),
];

/// Long std paths shown by their short names inside type names.
const SHORT_PATHS: &[(&str, &str)] = &[
    ("alloc::string::String", "String"),
    ("alloc::vec::Vec", "Vec"),
    ("alloc::boxed::Box", "Box"),
    ("alloc::sync::Arc", "Arc"),
    ("alloc::rc::Rc", "Rc"),
    ("alloc::collections::vec_deque::VecDeque", "VecDeque"),
    ("alloc::collections::btree::map::BTreeMap", "BTreeMap"),
    ("std::collections::hash::map::HashMap", "HashMap"),
    ("std::collections::hash::set::HashSet", "HashSet"),
    ("core::option::Option", "Option"),
    ("core::cell::RefCell", "RefCell"),
    ("std::sync::poison::mutex::Mutex", "Mutex"),
    (", alloc::alloc::Global", ""),
    (", std::hash::random::RandomState", ""),
];

/// Cuts the self type out of `<Type as Trait>::f` or `<Type>::f`.
fn self_type(function: &str) -> Option<&str> {
    super::names::split_self_type(function).map(|(ty, _)| ty)
}

pub(super) fn shorten(ty: &str) -> String {
    let mut s = ty.to_string();
    for (long, short) in SHORT_PATHS {
        s = s.replace(long, short);
    }
    s
}

/// `vec![a, b]` allocates through `Box::<[T; N]>::new_uninit` and turns
/// the box into a `Vec<T>`: the block is that vector's buffer. `T` of the
/// array type `[T; N]`.
fn vec_literal_element(ty: &str, function: &str) -> Option<String> {
    if !function.ends_with(">::new_uninit") {
        return None;
    }
    let array = ty.strip_prefix("alloc::boxed::Box<[")?.strip_suffix("]>")?;
    let (element, _len) = array.rsplit_once("; ")?;
    Some(format!("Vec<{}>", shorten(element)))
}

/// The container type a frame names, if any.
pub(super) fn container_type(function: &str) -> Option<String> {
    let ty = self_type(function)?;
    if let Some(v) = vec_literal_element(ty, function) {
        return Some(v);
    }
    for (prefix, short) in CONTAINERS {
        if let Some(rest) = ty.strip_prefix(prefix) {
            if prefix.ends_with('<') {
                return Some(format!("{short}<{}", shorten(rest)));
            } else if rest.is_empty() {
                return Some(short.to_string());
            }
        }
    }
    None
}

/// The type of a block allocated at this (resolved, trimmed) stack.
pub fn block_type(frames: &[Frame]) -> BlockType {
    let user = frames
        .iter()
        .position(|f| !f.is_runtime())
        .unwrap_or(frames.len());
    let found = frames[..user]
        .iter()
        .rev()
        .find_map(|f| container_type(&f.function).map(|t| (t, f.inlined)));
    match found {
        Some((name, inlined)) => BlockType {
            name,
            ambiguous: !inlined,
            source: TypeSource::Container,
        },
        None => match frames.get(user).or_else(|| frames.first()) {
            Some(f) if f.function != "?" => BlockType {
                name: format!("fn {}", f.function),
                ambiguous: false,
                source: TypeSource::AllocatingFunction,
            },
            _ => BlockType {
                name: "?".to_string(),
                ambiguous: false,
                source: TypeSource::Unknown,
            },
        },
    }
}
