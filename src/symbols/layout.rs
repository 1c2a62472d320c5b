//! Type layouts from the executable's DWARF: which field of a type lies at
//! a byte offset (`HtmlResponse` at 0x38 → `body`), for naming the
//! references between heap blocks.
//!
//! Read lazily from the mapped executable. The first use walks every unit
//! once to index where each named type is defined (a hash of its name → the
//! offset of its entry) and in which scope each struct lies (for its full
//! name); a type's layout is read from its entry only when a view asks for
//! it, one level at a time (its fields, not theirs), and kept in a bounded
//! cache. The index and the cache are given back with the rest of the
//! debug information when symbols go idle.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::{Arc, MutexGuard, Once};

use gimli::{AttributeValue, DebugInfoOffset, UnitOffset, constants as dw};

use crate::sys::fork::{ForkSafe, InChild, ResetInChild, on_child};
use crate::sys::mapped::MappedFile;
use crate::tracker::untracked;

use super::dwarf::{Dwarf, Reader, Unit, load_dwarf};

/// Index of a type in the cache of types read.
type TypeId = u32;

/// A member of a struct (or of an enum's variant).
#[derive(Clone, Debug)]
struct Member {
    name: Box<str>,
    offset: u64,
    /// The entry of its type (read when first needed).
    ty: u64,
}

#[derive(Clone, Debug)]
enum Shape {
    /// A struct, union or enum: its members, and each variant's one member
    /// (the variant's own struct) for enums.
    Struct {
        name: Box<str>,
        members: Vec<Member>,
        variants: Vec<Member>,
    },
    /// `[T; n]`: the entry of `T`.
    Array { elem: u64 },
    /// A pointer, a number, or anything without inner fields;
    /// `address`: whether it can hold an address (a pointer, a reference,
    /// or a `usize`/`isize`, where tagged pointers live).
    Leaf { address: bool },
}

#[derive(Clone, Debug)]
struct TypeInfo {
    size: u64,
    shape: Shape,
}

/// One step from a type down to the field at an offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Field `field` of the struct named `owner` (full path, as DWARF names it).
    Field {
        /// The struct's name, with module paths.
        owner: String,
        /// The field.
        field: String,
    },
    /// An element of an array.
    Element,
}

/// A scope types are named in: a module, or a struct (enums hold their
/// variants' structs), inside its parent scope.
struct Scope {
    parent: u32,
    segment: Segment,
}

/// A scope's own part of a full name.
enum Segment {
    /// A module's name.
    Name(Box<str>),
    /// A struct, whose entry holds its name.
    Entry(u64),
}

/// What an entry with children opened, while the index walks a unit: its
/// scope (a struct's is made only when a type inside it needs it), and its
/// part of the path.
struct Open {
    scope: Option<u32>,
    /// A struct's entry, for its scope when made.
    entry: Option<u64>,
    part: Option<String>,
}

/// No scope: the unit's top.
const TOP: u32 = u32::MAX;

/// Where the executable's types are: all that the index keeps.
#[derive(Default)]
struct Index {
    /// Every unit's offset in `.debug_info`, sorted.
    units: Vec<u64>,
    /// The entry defining each named type (structs with a size, named
    /// leaves), by the hash of its full name; the first definition wins.
    by_name: HashMap<u64, u64, BuildHasherDefault<IdentityHasher>>,
    /// The scope of each struct's entry, sorted by entry.
    scope_of: Vec<(u64, u32)>,
    scopes: Vec<Scope>,
}

/// The types read so far, by entry.
#[derive(Default)]
struct Read {
    types: Vec<TypeInfo>,
    at: HashMap<u64, TypeId>,
}

/// The most types kept read; past it the cache starts again empty.
const MAX_READ_TYPES: usize = 1 << 15;

/// Type layouts of the running executable.
#[derive(Default)]
pub struct Layouts {
    exe: Option<MappedFile>,
    index: Index,
    /// Reset by the layouts' [`ResetInChild`] in a forked child.
    read: ForkSafe<Read>,
}

/// A hasher for keys that are hashes already.
#[derive(Default)]
struct IdentityHasher(u64);

impl std::hash::Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | b as u64;
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The hash a full name is indexed by.
fn name_hash(name: &str) -> u64 {
    BuildHasherDefault::<DefaultHasher>::default().hash_one(name)
}

/// The normal form of a type name: std's long paths shortened as block
/// types are ([`super::types`]), so both sides of a lookup agree.
pub(super) fn key(name: &str) -> String {
    super::types::shorten(name).replace("alloc::alloc::Global, ", "")
}

/// A name attribute's text.
fn text(dwarf: &Dwarf<'_>, unit: &Unit<'_>, v: AttributeValue<Reader<'_>>) -> Option<String> {
    dwarf
        .attr_string(unit, v)
        .ok()
        .map(|s| String::from_utf8_lossy(s.slice()).into_owned())
}

/// An entry's type reference as an offset in `.debug_info`.
fn type_ref(unit: &Unit<'_>, v: AttributeValue<Reader<'_>>) -> Option<u64> {
    let base = unit.header.debug_info_offset()?.0 as u64;
    match v {
        AttributeValue::UnitRef(r) => Some(base + r.0 as u64),
        AttributeValue::DebugInfoRef(r) => Some(r.0 as u64),
        _ => None,
    }
}

impl Index {
    /// Walks every unit once: the scopes of structs, and where each named
    /// type is defined.
    fn build(dwarf: &Dwarf<'_>) -> Index {
        let mut index = Index::default();
        // Modules are opened again in unit after unit: one scope each.
        let mut modules: HashMap<(u32, String), u32> = HashMap::new();
        let mut iter = dwarf.units();
        while let Ok(Some(header)) = iter.next() {
            let Some(offset) = header.debug_info_offset() else {
                continue;
            };
            index.units.push(offset.0 as u64);
            let Ok(unit) = dwarf.unit(header) else {
                continue;
            };
            let _ = index.walk_unit(dwarf, &unit, &mut modules);
        }
        index.units.sort_unstable();
        index.scope_of.sort_unstable();
        index.units.shrink_to_fit();
        index.scope_of.shrink_to_fit();
        index.scopes.shrink_to_fit();
        index.by_name.shrink_to_fit();
        index
    }

    fn walk_unit(
        &mut self,
        dwarf: &Dwarf<'_>,
        unit: &Unit<'_>,
        modules: &mut HashMap<(u32, String), u32>,
    ) -> gimli::Result<()> {
        let base = unit.header.debug_info_offset().map_or(0, |o| o.0) as u64;
        let mut stack: Vec<Open> = Vec::new();
        let mut entries = unit.entries_raw(None)?;
        while !entries.is_empty() {
            let depth = entries.next_depth();
            let offset = base + entries.next_offset().0 as u64;
            let Some(abbrev) = entries.read_abbreviation()? else {
                continue;
            };
            stack.truncate(depth.max(0) as usize);
            let tag = abbrev.tag();
            let wanted = matches!(
                tag,
                dw::DW_TAG_namespace
                    | dw::DW_TAG_structure_type
                    | dw::DW_TAG_union_type
                    | dw::DW_TAG_pointer_type
                    | dw::DW_TAG_reference_type
                    | dw::DW_TAG_base_type
                    | dw::DW_TAG_enumeration_type
            );
            let mut name: Option<String> = None;
            let mut sized = false;
            if wanted {
                for spec in abbrev.attributes() {
                    let attr = entries.read_attribute(*spec)?;
                    match attr.name() {
                        dw::DW_AT_name => name = text(dwarf, unit, attr.value()),
                        dw::DW_AT_byte_size => sized = true,
                        _ => {}
                    }
                }
            } else {
                entries.skip_attributes(abbrev.attributes())?;
            }
            let mut opened = Open {
                scope: None,
                entry: None,
                part: None,
            };
            let full = |stack: &[Open], short: &str| {
                let mut parts: Vec<&str> = stack.iter().filter_map(|o| o.part.as_deref()).collect();
                parts.push(short);
                key(&parts.join("::"))
            };
            match tag {
                dw::DW_TAG_namespace => {
                    let short = name.unwrap_or_default();
                    let parent = self.scope(&mut stack);
                    let scope = *modules.entry((parent, short.clone())).or_insert_with(|| {
                        self.scopes.push(Scope {
                            parent,
                            segment: Segment::Name(short.clone().into()),
                        });
                        (self.scopes.len() - 1) as u32
                    });
                    opened = Open {
                        scope: Some(scope),
                        entry: None,
                        part: Some(short),
                    };
                }
                dw::DW_TAG_structure_type | dw::DW_TAG_union_type => {
                    let short = name.unwrap_or_default();
                    let scope = self.scope(&mut stack);
                    self.scope_of.push((offset, scope));
                    if sized {
                        let full = full(&stack, &short);
                        self.by_name.entry(name_hash(&full)).or_insert(offset);
                    }
                    opened = Open {
                        scope: None,
                        entry: Some(offset),
                        part: Some(short),
                    };
                }
                dw::DW_TAG_pointer_type
                | dw::DW_TAG_reference_type
                | dw::DW_TAG_base_type
                | dw::DW_TAG_enumeration_type => {
                    // Named leaves (`Box<T>` is a pointer, `u64` a number)
                    // can be a buffer's elements.
                    if let Some(short) = name {
                        let full = full(&stack, &short);
                        self.by_name.entry(name_hash(&full)).or_insert(offset);
                    }
                }
                _ => {}
            }
            if abbrev.has_children() {
                while stack.len() < depth.max(0) as usize {
                    stack.push(Open {
                        scope: None,
                        entry: None,
                        part: None,
                    });
                }
                stack.push(opened);
            }
        }
        Ok(())
    }

    /// The scope the innermost open entry of `stack` names things in,
    /// making the scopes of open structs as needed.
    fn scope(&mut self, stack: &mut [Open]) -> u32 {
        let mut parent = TOP;
        for open in stack.iter_mut() {
            if let Some(s) = open.scope {
                parent = s;
            } else if let Some(entry) = open.entry {
                self.scopes.push(Scope {
                    parent,
                    segment: Segment::Entry(entry),
                });
                let s = (self.scopes.len() - 1) as u32;
                open.scope = Some(s);
                parent = s;
            }
        }
        parent
    }

    /// The unit that holds the entry at `offset`.
    fn unit_of(&self, offset: u64) -> Option<u64> {
        let i = self.units.partition_point(|&u| u <= offset);
        self.units.get(i.checked_sub(1)?).copied()
    }

    /// The scope of the struct at `entry`.
    fn scope_of(&self, entry: u64) -> u32 {
        match self.scope_of.binary_search_by_key(&entry, |s| s.0) {
            Ok(i) => self.scope_of[i].1,
            Err(_) => TOP,
        }
    }

    /// Bytes the index holds.
    fn bytes(&self) -> usize {
        self.units.capacity() * 8
            + self.by_name.capacity() * 17
            + self.scope_of.capacity() * size_of::<(u64, u32)>()
            + self.scopes.capacity() * size_of::<Scope>()
            + self
                .scopes
                .iter()
                .map(|s| match &s.segment {
                    Segment::Name(n) => n.len(),
                    Segment::Entry(_) => 0,
                })
                .sum::<usize>()
    }
}

/// Reads entries of the mapped executable for one call into [`Layouts`]:
/// the sections are found once, and each unit's abbreviations once.
struct Cursor<'a, 'l> {
    index: &'l Index,
    dwarf: Dwarf<'a>,
    units: HashMap<u64, Unit<'a>>,
}

/// The unit holding `entry` (parsed on first use into `units`) and the
/// entry's offset in it.
fn unit_of<'u, 'a>(
    index: &Index,
    dwarf: &Dwarf<'a>,
    units: &'u mut HashMap<u64, Unit<'a>>,
    entry: u64,
) -> Option<(&'u Unit<'a>, UnitOffset<usize>)> {
    let start = index.unit_of(entry)?;
    let unit = match units.entry(start) {
        std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
        std::collections::hash_map::Entry::Vacant(v) => {
            let header = dwarf
                .debug_info
                .header_from_offset(DebugInfoOffset(start as usize))
                .ok()?;
            v.insert(dwarf.unit(header).ok()?)
        }
    };
    let unit: &Unit<'a> = unit;
    let local = DebugInfoOffset(entry as usize).to_unit_offset(&unit.header)?;
    Some((unit, local))
}

/// What one entry says of its type, before names are made.
enum Entry {
    Struct {
        short: String,
        size: Option<u64>,
        members: Vec<Member>,
        variants: Vec<Member>,
    },
    Array {
        elem: u64,
        size: Option<u64>,
        count: Option<u64>,
    },
    /// A value without inner fields: its size, and whether it can hold
    /// an address.
    Leaf { size: u64, address: bool },
}

impl<'a> Cursor<'a, '_> {
    /// The sections, the unit holding `entry`, and the entry's offset in
    /// it.
    fn locate(&mut self, entry: u64) -> Option<(&Dwarf<'a>, &Unit<'a>, UnitOffset<usize>)> {
        let Cursor {
            index,
            dwarf,
            units,
        } = self;
        let (unit, local) = unit_of(index, dwarf, units, entry)?;
        Some((dwarf, unit, local))
    }

    /// What the entry at `entry` says.
    fn entry(&mut self, entry: u64) -> Option<Entry> {
        let (dwarf, unit, local) = self.locate(entry)?;
        let e = unit.entry(local).ok()?;
        let size = e
            .attr_value(dw::DW_AT_byte_size)
            .and_then(|v| v.udata_value());
        Some(match e.tag() {
            dw::DW_TAG_structure_type | dw::DW_TAG_union_type => {
                let short = e
                    .attr_value(dw::DW_AT_name)
                    .and_then(|v| text(dwarf, unit, v))
                    .unwrap_or_default();
                let (members, variants) = if size.is_some() {
                    fields(dwarf, unit, local)?
                } else {
                    (Vec::new(), Vec::new())
                };
                Entry::Struct {
                    short,
                    size,
                    members,
                    variants,
                }
            }
            dw::DW_TAG_array_type => Entry::Array {
                elem: e
                    .attr_value(dw::DW_AT_type)
                    .and_then(|v| type_ref(unit, v))?,
                size,
                count: array_count(unit, local),
            },
            dw::DW_TAG_pointer_type | dw::DW_TAG_reference_type => Entry::Leaf {
                size: size.unwrap_or(size_of::<usize>() as u64),
                address: true,
            },
            dw::DW_TAG_base_type => {
                let name = e
                    .attr_value(dw::DW_AT_name)
                    .and_then(|v| text(dwarf, unit, v));
                Entry::Leaf {
                    size: size.unwrap_or(0),
                    // A `u64`, an `f64`, a `char` is never a pointer;
                    // `usize` may be one a program tagged or hid.
                    address: matches!(name.as_deref(), Some("usize" | "isize") | None),
                }
            }
            dw::DW_TAG_enumeration_type => Entry::Leaf {
                size: size.unwrap_or(0),
                address: false,
            },
            _ => return None,
        })
    }

    /// The short name (`DW_AT_name`) of the entry at `entry`.
    fn short_name(&mut self, entry: u64) -> Option<String> {
        let (dwarf, unit, local) = self.locate(entry)?;
        let e = unit.entry(local).ok()?;
        text(dwarf, unit, e.attr_value(dw::DW_AT_name)?)
    }

    /// The full name of the struct at `entry`, as the index hashed it.
    fn full_name(&mut self, entry: u64, short: &str) -> String {
        let mut parts = vec![short.to_string()];
        let mut scope = self.index.scope_of(entry);
        for _ in 0..256 {
            let Some(s) = self.index.scopes.get(scope as usize) else {
                break;
            };
            match &s.segment {
                Segment::Name(n) => parts.push(n.to_string()),
                Segment::Entry(e) => {
                    let e = *e;
                    parts.push(self.short_name(e).unwrap_or_default());
                }
            }
            scope = s.parent;
        }
        parts.reverse();
        key(&parts.join("::"))
    }
}

/// The types read so far, and a cursor to read more: what one call into
/// [`Layouts`] works with.
struct Types<'a, 'l> {
    cursor: Cursor<'a, 'l>,
    read: &'l mut Read,
}

impl Types<'_, '_> {
    /// The type at `entry`, read on first use. A struct declared without
    /// its layout reads as its definition, found by name.
    fn id(&mut self, entry: u64) -> Option<TypeId> {
        if let Some(&id) = self.read.at.get(&entry) {
            return Some(id);
        }
        let info = match self.cursor.entry(entry)? {
            Entry::Struct {
                short, size: None, ..
            } => {
                let full = self.cursor.full_name(entry, &short);
                let defined = *self.cursor.index.by_name.get(&name_hash(&full))?;
                if defined == entry {
                    return None;
                }
                let id = self.id(defined)?;
                self.read.at.insert(entry, id);
                return Some(id);
            }
            Entry::Struct {
                short,
                size: Some(size),
                members,
                variants,
            } => TypeInfo {
                size,
                shape: Shape::Struct {
                    name: self.cursor.full_name(entry, &short).into(),
                    members,
                    variants,
                },
            },
            Entry::Array { elem, size, count } => {
                let size = match size {
                    Some(s) => s,
                    None => self.size(elem).unwrap_or(0) * count.unwrap_or(0),
                };
                TypeInfo {
                    size,
                    shape: Shape::Array { elem },
                }
            }
            Entry::Leaf { size, address } => TypeInfo {
                size,
                shape: Shape::Leaf { address },
            },
        };
        self.read.types.push(info);
        let id = (self.read.types.len() - 1) as TypeId;
        self.read.at.insert(entry, id);
        Some(id)
    }

    /// The size of the type at `entry`; `None` when it cannot be read.
    fn size(&mut self, entry: u64) -> Option<u64> {
        let id = self.id(entry)?;
        Some(self.read.types[id as usize].size)
    }

    /// The type named `name` (a full path, std's paths shortened as in
    /// block types), if the debug info describes it.
    fn lookup(&mut self, name: &str) -> Option<TypeId> {
        let entry = *self.cursor.index.by_name.get(&name_hash(&key(name)))?;
        self.id(entry)
    }

    fn size_of(&mut self, name: &str) -> Option<u64> {
        let id = self.lookup(name)?;
        Some(self.read.types[id as usize].size)
    }

    fn knows(&mut self, name: &str) -> bool {
        self.lookup(name).is_some()
    }

    /// Whether member `m` covers byte `off` (a member of size 0 covers
    /// everything from its offset on); `None` when its type is unknown.
    fn covers(&mut self, m: &Member, off: u64) -> Option<bool> {
        let size = self.size(m.ty)?;
        Some(m.offset <= off && (off < m.offset + size || size == 0))
    }

    fn path_to(&mut self, name: &str, repeated: bool, offset: u64) -> Option<Vec<Step>> {
        self.field_at(name, repeated, offset)
            .map(|(steps, _)| steps)
    }

    /// [`Types::path_to`], and whether a pointer can sit at `offset`:
    /// `Some(false)` when the path ends in a value with no inner fields
    /// that cannot hold an address (a number other than `usize`/`isize`, a
    /// `bool`, a C-like enum), or too small to hold a whole word there.
    fn field_at(
        &mut self,
        name: &str,
        repeated: bool,
        offset: u64,
    ) -> Option<(Vec<Step>, Option<bool>)> {
        let mut t = self.lookup(name)?;
        let mut leaf = None;
        let mut off = offset;
        let mut steps = Vec::new();
        if repeated {
            let size = self.read.types[t as usize].size;
            if size == 0 {
                return None;
            }
            off %= size;
            steps.push(Step::Element);
        }
        for _ in 0..64 {
            match self.read.types[t as usize].shape.clone() {
                Shape::Leaf { address } => {
                    leaf = Some((self.read.types[t as usize].size, off, address));
                    break;
                }
                Shape::Array { elem } => {
                    let Some(e) = self.id(elem) else {
                        break;
                    };
                    let size = self.read.types[e as usize].size;
                    if size == 0 {
                        break;
                    }
                    off %= size;
                    t = e;
                    steps.push(Step::Element);
                }
                Shape::Struct {
                    name,
                    members,
                    variants,
                } => {
                    let mut member = None;
                    for m in members.iter().rev() {
                        if self.covers(m, off) == Some(true) {
                            member = Some(m.clone());
                            break;
                        }
                    }
                    if member.is_none() {
                        // An enum: the one variant whose own fields cover
                        // the offset, when only one does.
                        let mut found = Vec::new();
                        for v in &variants {
                            if self.covers(v, off) != Some(true) {
                                continue;
                            }
                            let Some(vt) = self.id(v.ty) else {
                                continue;
                            };
                            let Shape::Struct { members: own, .. } =
                                self.read.types[vt as usize].shape.clone()
                            else {
                                continue;
                            };
                            let mut any = false;
                            for m in &own {
                                let Some(size) = self.size(m.ty) else {
                                    continue;
                                };
                                if v.offset + m.offset <= off
                                    && off < v.offset + m.offset + size.max(1)
                                {
                                    any = true;
                                    break;
                                }
                            }
                            if any {
                                found.push(v.clone());
                            }
                        }
                        if found.len() == 1 {
                            member = found.pop();
                        }
                    }
                    let Some(m) = member else {
                        break;
                    };
                    let Some(next) = self.id(m.ty) else {
                        break;
                    };
                    steps.push(Step::Field {
                        owner: name.to_string(),
                        field: m.name.to_string(),
                    });
                    off -= m.offset;
                    t = next;
                }
            }
        }
        // A value of size 0 says nothing (it covers what follows it).
        let may_point = leaf
            .filter(|&(size, _, _)| size > 0)
            .map(|(size, off, address)| address && off + size_of::<usize>() as u64 <= size);
        Some((steps, may_point))
    }

    /// What a block of type `block` holds: the type's name and whether it
    /// is an array of them.
    fn block_content(&mut self, block: &str, size: u64) -> Option<Content> {
        let (head, inner) = match block.split_once('<') {
            Some((h, rest)) => (h, rest.strip_suffix('>')?),
            None => (block, ""),
        };
        if let Some(elem) = slice_element(inner) {
            // A boxed slice is its elements, back to back; a shared one
            // has its two counts first (two words: a multiple of any
            // element's alignment up to 16).
            let header = match head {
                "Box" => 0,
                "Arc" | "Rc" => 2 * size_of::<usize>() as u64,
                _ => return None,
            };
            return Some(Content {
                ty: elem.to_string(),
                repeated: true,
                header,
            });
        }
        let node =
            |kind: &str, args: &str| format!("alloc::collections::btree::node::{kind}<{args}>");
        let (content, repeated) = match head {
            "Box" => (inner.to_string(), false),
            "Arc" => (format!("alloc::sync::ArcInner<{inner}>"), false),
            "Rc" => {
                let new = format!("alloc::rc::RcInner<{inner}>");
                if self.knows(&new) {
                    (new, false)
                } else {
                    (format!("alloc::rc::RcBox<{inner}>"), false)
                }
            }
            "Vec" | "VecDeque" | "BinaryHeap" | "HashSet" | "RawTable" => (inner.to_string(), true),
            "HashMap" => (format!("({inner})"), true),
            "BTreeMap" | "BTreeSet" => {
                let args = if head == "BTreeSet" {
                    format!("{inner}, alloc::collections::btree::set_val::SetValZST")
                } else {
                    inner.to_string()
                };
                let internal = node("InternalNode", &args);
                if self.size_of(&internal) == Some(size) {
                    (internal, false)
                } else {
                    (node("LeafNode", &args), false)
                }
            }
            _ => return None,
        };
        Some(Content {
            ty: content,
            repeated,
            header: 0,
        })
    }
}

/// What a block holds, as far as its layout goes.
struct Content {
    /// The type of what it holds.
    ty: String,
    /// Whether it holds an array of them.
    repeated: bool,
    /// Bytes before them (an `Arc<[T]>`'s counts).
    header: u64,
}

/// `T` of a slice `[T]` (not of an array `[T; N]`, which has a type of
/// its own).
fn slice_element(inner: &str) -> Option<&str> {
    let elem = inner.strip_prefix('[')?.strip_suffix(']')?;
    let mut depth = 0i32;
    for c in elem.chars() {
        match c {
            '<' | '(' | '[' => depth += 1,
            '>' | ')' | ']' => depth -= 1,
            ';' if depth == 0 => return None,
            _ => {}
        }
    }
    Some(elem)
}

/// The fields of the struct at `local` (sorted by offset), and its
/// variants' (an enum's): the members directly inside it, and the
/// members, not marked artificial, inside its variant parts.
fn fields(
    dwarf: &Dwarf<'_>,
    unit: &Unit<'_>,
    local: UnitOffset<usize>,
) -> Option<(Vec<Member>, Vec<Member>)> {
    let mut members = Vec::new();
    let mut variants = Vec::new();
    let mut tree = unit.entries_tree(Some(local)).ok()?;
    let root = tree.root().ok()?;
    let mut children = root.children();
    while let Ok(Some(child)) = children.next() {
        let e = child.entry();
        match e.tag() {
            dw::DW_TAG_member => {
                if let Some(m) = member(dwarf, unit, e) {
                    members.push(m);
                }
            }
            dw::DW_TAG_variant_part => variant_members(dwarf, unit, child, &mut variants, 0),
            _ => {}
        }
    }
    members.sort_by_key(|m| m.offset);
    Some((members, variants))
}

/// The members (not marked artificial) inside a variant part or variant,
/// into `out`.
fn variant_members(
    dwarf: &Dwarf<'_>,
    unit: &Unit<'_>,
    node: gimli::EntriesTreeNode<'_, '_, Reader<'_>>,
    out: &mut Vec<Member>,
    depth: u32,
) {
    if depth > 8 {
        return;
    }
    let mut children = node.children();
    while let Ok(Some(child)) = children.next() {
        let e = child.entry();
        match e.tag() {
            dw::DW_TAG_member if e.attr(dw::DW_AT_artificial).is_none() => {
                if let Some(m) = member(dwarf, unit, e) {
                    out.push(m);
                }
            }
            dw::DW_TAG_variant | dw::DW_TAG_variant_part => {
                variant_members(dwarf, unit, child, out, depth + 1)
            }
            _ => {}
        }
    }
}

fn member(
    dwarf: &Dwarf<'_>,
    unit: &Unit<'_>,
    e: &gimli::DebuggingInformationEntry<Reader<'_>>,
) -> Option<Member> {
    let ty = e
        .attr_value(dw::DW_AT_type)
        .and_then(|v| type_ref(unit, v))?;
    Some(Member {
        name: e
            .attr_value(dw::DW_AT_name)
            .and_then(|v| text(dwarf, unit, v))
            .unwrap_or_default()
            .into(),
        offset: e
            .attr_value(dw::DW_AT_data_member_location)
            .and_then(|v| v.udata_value())
            .unwrap_or(0),
        ty,
    })
}

/// The element count of the array at `local`, from its subrange.
fn array_count(unit: &Unit<'_>, local: UnitOffset<usize>) -> Option<u64> {
    let mut tree = unit.entries_tree(Some(local)).ok()?;
    let root = tree.root().ok()?;
    let mut children = root.children();
    while let Ok(Some(child)) = children.next() {
        let e = child.entry();
        if e.tag() == dw::DW_TAG_subrange_type {
            if let Some(n) = e.attr_value(dw::DW_AT_count).and_then(|v| v.udata_value()) {
                return Some(n);
            }
            if let Some(n) = e
                .attr_value(dw::DW_AT_upper_bound)
                .and_then(|v| v.udata_value())
            {
                return Some(n + 1);
            }
        }
    }
    None
}

impl Layouts {
    /// Maps `/proc/self/exe` and indexes its types; empty when it has no
    /// DWARF.
    fn load() -> Layouts {
        let Ok(exe) = MappedFile::executable() else {
            return Layouts::default();
        };
        let index = match object::File::parse(&exe[..])
            .ok()
            .as_ref()
            .and_then(load_dwarf)
        {
            Some(dwarf) => Index::build(&dwarf),
            None => return Layouts::default(),
        };
        Layouts {
            exe: Some(exe),
            index,
            read: ForkSafe::reset_by_owner(Read::default(), InChild::Keep),
        }
    }

    /// Runs `f` with a cursor over the executable's entries and the cache of
    /// types read; `None` without DWARF.
    fn with<R>(&self, f: impl FnOnce(&mut Types<'_, '_>) -> Option<R>) -> Option<R> {
        let exe = self.exe.as_ref()?;
        untracked(|| {
            let file = object::File::parse(&exe[..]).ok()?;
            let dwarf = load_dwarf(&file)?;
            let mut read = self.read.lock_owned();
            if read.types.len() >= MAX_READ_TYPES {
                *read = Read::default();
            }
            let mut types = Types {
                cursor: Cursor {
                    index: &self.index,
                    dwarf,
                    units: HashMap::new(),
                },
                read: &mut read,
            };
            f(&mut types)
        })
    }

    /// The size of the type named `name`.
    pub fn size_of(&self, name: &str) -> Option<u64> {
        self.with(|t| t.size_of(name))
    }

    /// True when the debug info describes a type named `name`.
    pub fn knows(&self, name: &str) -> bool {
        self.with(|t| Some(t.knows(name))).unwrap_or(false)
    }

    /// The steps from a value of type `name` (or an array of them, when
    /// `repeated`) down to the field that holds byte `offset`; `None` when
    /// the type is unknown.
    pub fn path_to(&self, name: &str, repeated: bool, offset: u64) -> Option<Vec<Step>> {
        self.with(|t| t.path_to(name, repeated, offset))
    }

    /// The steps from the start of a block of type `block` (a block type's
    /// label: `Box<T>`, `Arc<T>`, `Vec<T>`'s buffer …) of `size` bytes down
    /// to the field at `offset`; `None` when its layout is unknown.
    pub fn block_field(&self, block: &str, size: u64, offset: u64) -> Option<Vec<Step>> {
        self.with(|t| {
            let c = t.block_content(block, size)?;
            t.path_to(&c.ty, c.repeated, offset.checked_sub(c.header)?)
        })
    }

    /// Whether the word at `offset` of a block of type `block` (as for
    /// [`Layouts::block_field`]) can be a reference: `Some(false)` when the
    /// field there cannot hold a pointer (a `u64`, an `f64`, a `bool`, a
    /// C-like enum, or a number too small: a word read there is data or
    /// stale, never a reference); `None` when the layout does not say.
    pub fn block_may_point(&self, block: &str, size: u64, offset: u64) -> Option<bool> {
        self.with(|t| {
            let c = t.block_content(block, size)?;
            t.field_at(&c.ty, c.repeated, offset.checked_sub(c.header)?)?
                .1
        })
    }

    /// Where the elements of a block of type `block` that holds an array
    /// (a `Vec<T>`'s buffer, a `Box<[T]>`, an `Arc<[T]>`) start, and the
    /// size of one (`T`'s), so that offsets in it can be taken to the
    /// first element's; `None` for other blocks or unknown layouts.
    pub fn block_elements(&self, block: &str, size: u64) -> Option<(u64, u64)> {
        self.with(|t| {
            let c = t.block_content(block, size)?;
            if !c.repeated {
                return None;
            }
            let stride = t.size_of(&c.ty).filter(|&s| s > 0)?;
            Some((c.header, stride))
        })
    }

    /// Bytes these layouts hold (an estimate): the index, and the types
    /// read so far.
    pub fn memory(&self) -> usize {
        let read = self.read.lock_owned();
        let mut n = read.types.capacity() * size_of::<TypeInfo>()
            + read.at.capacity() * (size_of::<(u64, TypeId)>() + 1);
        for t in &read.types {
            if let Shape::Struct {
                name,
                members,
                variants,
            } = &t.shape
            {
                n += name.len()
                    + (members.capacity() + variants.capacity()) * size_of::<Member>()
                    + members
                        .iter()
                        .chain(variants)
                        .map(|m| m.name.len())
                        .sum::<usize>();
            }
        }
        n + self.index.bytes()
    }
}

/// The parsed layouts, when loaded; a forked child keeps them (see
/// [`LayoutsInChild`]).
static LAYOUTS: ForkSafe<Option<Arc<Layouts>>> = ForkSafe::reset_by_owner(None, InChild::Keep);

/// Puts the layouts right in a forked child: kept when no thread was
/// loading them at the fork, with the types read so far when no thread was
/// reading one.
struct LayoutsInChild;

impl ResetInChild for LayoutsInChild {
    fn reset_in_child(&self) {
        if !LAYOUTS.reset_now()
            && let Some(l) = LAYOUTS.lock_owned().as_ref()
        {
            l.read.reset_now();
        }
    }
}

/// The slot of the layouts, locked.
fn slot() -> MutexGuard<'static, Option<Arc<Layouts>>> {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| on_child(&LayoutsInChild));
    LAYOUTS.lock_owned()
}

/// The executable's type layouts, parsed on first use (with tracking off:
/// they are leakscope's memory, not the program's).
pub fn layouts() -> Arc<Layouts> {
    untracked(|| {
        let mut slot = slot();
        if let Some(l) = slot.as_ref() {
            return Arc::clone(l);
        }
        let l = Arc::new(Layouts::load());
        *slot = Some(Arc::clone(&l));
        l
    })
}

/// What the layouts hold now, if they are loaded (see [`Layouts::memory`]).
pub(super) fn loaded_memory() -> u64 {
    let slot = slot();
    slot.as_ref().map_or(0, |l| l.memory() as u64)
}

/// Gives the layouts back (with the rest of the debug information).
pub(super) fn release() {
    let old = slot().take();
    untracked(|| drop(old));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(dead_code)]
    struct Inner {
        a: u64,
        b: Box<u32>,
    }
    #[allow(dead_code)]
    struct Outer {
        x: u32,
        inner: Inner,
        opt: Option<Box<u8>>,
    }

    #[test]
    fn fields_at_offsets_of_this_test_binary() {
        let keep = Outer {
            x: 1,
            inner: Inner {
                a: 2,
                b: Box::new(3),
            },
            opt: Some(Box::new(4)),
        };
        let l = layouts();
        let name = "leakscope::symbols::layout::tests::Outer";
        assert!(l.knows(name), "debug info of the test binary names {name}");
        let base = &keep as *const Outer as usize;
        let b_off = (&keep.inner.b as *const Box<u32> as usize - base) as u64;
        let steps = l.path_to(name, false, b_off).unwrap();
        let fields: Vec<&str> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Field { field, .. } => Some(field.as_str()),
                Step::Element => None,
            })
            .collect();
        assert_eq!(&fields[..2], ["inner", "b"]);
        let opt_off = (&keep.opt as *const Option<Box<u8>> as usize - base) as u64;
        let steps = l.path_to(name, false, opt_off).unwrap();
        assert!(matches!(&steps[0], Step::Field { field, .. } if field == "opt"));
        // Repeated: element 3 of a buffer of Outer is the same field.
        let size = l.size_of(name).unwrap();
        assert_eq!(size, size_of::<Outer>() as u64);
        let again = l.path_to(name, true, 3 * size + b_off).unwrap();
        assert_eq!(again[0], Step::Element);
        assert_eq!(again[1..3], l.path_to(name, false, b_off).unwrap()[..2]);
        drop(keep);
    }
}
