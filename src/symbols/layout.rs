//! Type layouts from the executable's DWARF: which field of a type lies at
//! a byte offset (`HtmlResponse` at 0x38 → `body`), for naming the
//! references between heap blocks.
//!
//! Parsed once from `/proc/self/exe` when first asked, kept (one entry per
//! distinct type name) and given back with the rest of the debug
//! information when symbols go idle.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use gimli::{AttributeValue, EndianSlice, LittleEndian, constants as dw};
use object::{Object, ObjectSection};

use crate::sys::mapped::MappedFile;
use crate::tracker::untracked;

/// Index of a type in [`Layouts`].
type TypeId = u32;

/// A member of a struct (or of an enum's variant).
#[derive(Clone, Debug)]
struct Member {
    name: Box<str>,
    offset: u64,
    ty: TypeId,
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
    /// `[T; n]`.
    Array { elem: TypeId, count: u64 },
    /// A pointer, a number, or anything without inner fields.
    Leaf,
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

/// Type layouts of the running executable.
#[derive(Default)]
pub struct Layouts {
    types: Vec<TypeInfo>,
    by_name: HashMap<Box<str>, TypeId>,
}

/// What a raw reference read from DWARF points to, before every unit is read.
enum Pending {
    Member {
        of: TypeId,
        variant: bool,
        name: Box<str>,
        offset: u64,
        ty: usize,
    },
    Elem {
        array: TypeId,
        ty: usize,
    },
}

/// The normal form of a type name: std's long paths shortened as block
/// types are ([`super::types`]), so both sides of a lookup agree.
pub(super) fn key(name: &str) -> String {
    super::types::shorten(name).replace("alloc::alloc::Global, ", "")
}

impl Layouts {
    /// Reads the layouts of `/proc/self/exe`; empty when it has no DWARF.
    fn load() -> Layouts {
        // Mapped, not read: the sections are parsed in place, and what
        // leakscope holds on the heap is the layouts alone.
        let Ok(exe) = MappedFile::executable() else {
            return Layouts::default();
        };
        Self::parse(&exe).unwrap_or_default()
    }

    fn parse(bytes: &[u8]) -> Option<Layouts> {
        let file = object::File::parse(bytes).ok()?;
        let empty: &[u8] = &[];
        let section = |id: gimli::SectionId| -> Result<EndianSlice<'_, LittleEndian>, ()> {
            let data = file
                .section_by_name(id.name())
                .and_then(|s| s.data().ok())
                .unwrap_or(empty);
            Ok(EndianSlice::new(data, LittleEndian))
        };
        let dwarf = gimli::Dwarf::load(section).ok()?;
        let mut out = Layouts::default();
        let mut offsets: HashMap<usize, TypeId> = HashMap::new();
        let mut pending: Vec<Pending> = Vec::new();
        let mut units = dwarf.units();
        while let Ok(Some(header)) = units.next() {
            let Ok(unit) = dwarf.unit(header) else {
                continue;
            };
            let _ = out.read_unit(&dwarf, &unit, &mut offsets, &mut pending);
        }
        for p in pending {
            match p {
                Pending::Member {
                    of,
                    variant,
                    name,
                    offset,
                    ty,
                } => {
                    let Some(&ty) = offsets.get(&ty) else {
                        continue;
                    };
                    if let Shape::Struct {
                        members, variants, ..
                    } = &mut out.types[of as usize].shape
                    {
                        let list = if variant { variants } else { members };
                        list.push(Member { name, offset, ty });
                    }
                }
                Pending::Elem { array, ty } => {
                    if let Some(&t) = offsets.get(&ty)
                        && let Shape::Array { elem, .. } = &mut out.types[array as usize].shape
                    {
                        *elem = t;
                    }
                }
            }
        }
        // Arrays whose element size was unknown while reading: size now.
        for i in 0..out.types.len() {
            if let Shape::Array { elem, count } = out.types[i].shape
                && out.types[i].size == 0
            {
                out.types[i].size = out.types[elem as usize].size * count;
            }
            if let Shape::Struct { members, .. } = &mut out.types[i].shape {
                members.sort_by_key(|m| m.offset);
            }
        }
        out.types.shrink_to_fit();
        out.by_name.shrink_to_fit();
        Some(out)
    }

    fn add(&mut self, info: TypeInfo) -> TypeId {
        self.types.push(info);
        (self.types.len() - 1) as TypeId
    }

    fn read_unit(
        &mut self,
        dwarf: &gimli::Dwarf<EndianSlice<'_, LittleEndian>>,
        unit: &gimli::Unit<EndianSlice<'_, LittleEndian>>,
        offsets: &mut HashMap<usize, TypeId>,
        pending: &mut Vec<Pending>,
    ) -> gimli::Result<()> {
        /// What an entry with children opened.
        #[derive(Clone)]
        enum Ctx {
            Namespace(String),
            /// A struct being read (`None`: one already read elsewhere).
            Struct(Option<TypeId>, String),
            /// Inside an enum's `variant_part` or `variant`: members are
            /// the enum's variants.
            Variant(Option<TypeId>),
            Array(TypeId),
            Other,
        }
        let base = unit.header.offset().0;
        let mut stack: Vec<Ctx> = Vec::new();
        let mut entries = unit.entries_raw(None)?;
        while !entries.is_empty() {
            let depth = entries.next_depth();
            let offset = base + entries.next_offset().0;
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
                    | dw::DW_TAG_member
                    | dw::DW_TAG_variant_part
                    | dw::DW_TAG_variant
                    | dw::DW_TAG_array_type
                    | dw::DW_TAG_subrange_type
                    | dw::DW_TAG_pointer_type
                    | dw::DW_TAG_reference_type
                    | dw::DW_TAG_base_type
                    | dw::DW_TAG_enumeration_type
                    | dw::DW_TAG_typedef
            );
            let mut name: Option<String> = None;
            let mut size: Option<u64> = None;
            let mut location: Option<u64> = None;
            let mut ty: Option<usize> = None;
            let mut count: Option<u64> = None;
            let mut artificial = false;
            if wanted {
                for spec in abbrev.attributes() {
                    let attr = entries.read_attribute(*spec)?;
                    match attr.name() {
                        dw::DW_AT_name => {
                            name = dwarf
                                .attr_string(unit, attr.value())
                                .ok()
                                .map(|s| String::from_utf8_lossy(s.slice()).into_owned());
                        }
                        dw::DW_AT_byte_size => size = attr.udata_value(),
                        dw::DW_AT_data_member_location => location = attr.udata_value(),
                        dw::DW_AT_count => count = attr.udata_value(),
                        dw::DW_AT_upper_bound => count = attr.udata_value().map(|u| u + 1),
                        dw::DW_AT_artificial => artificial = true,
                        dw::DW_AT_type => {
                            ty = match attr.value() {
                                AttributeValue::UnitRef(r) => Some(base + r.0),
                                AttributeValue::DebugInfoRef(r) => Some(r.0),
                                _ => None,
                            }
                        }
                        _ => {}
                    }
                }
            } else {
                entries.skip_attributes(abbrev.attributes())?;
            }
            let parent = stack.last().cloned();
            let path = || {
                stack
                    .iter()
                    .filter_map(|c| match c {
                        Ctx::Namespace(n) | Ctx::Struct(_, n) => Some(n.as_str()),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
            };
            let mut opened = Ctx::Other;
            match tag {
                dw::DW_TAG_namespace => {
                    opened = Ctx::Namespace(name.unwrap_or_default());
                }
                dw::DW_TAG_structure_type | dw::DW_TAG_union_type => {
                    let short = name.unwrap_or_default();
                    let mut full = path();
                    full.push(&short);
                    let full = key(&full.join("::"));
                    match self.by_name.get(full.as_str()) {
                        Some(&id) => {
                            offsets.insert(offset, id);
                            opened = Ctx::Struct(None, short);
                        }
                        None => {
                            let id = self.add(TypeInfo {
                                size: size.unwrap_or(0),
                                shape: Shape::Struct {
                                    name: full.clone().into(),
                                    members: Vec::new(),
                                    variants: Vec::new(),
                                },
                            });
                            offsets.insert(offset, id);
                            if size.is_some() {
                                self.by_name.insert(full.into(), id);
                            }
                            opened = Ctx::Struct(Some(id), short);
                        }
                    }
                }
                dw::DW_TAG_variant_part | dw::DW_TAG_variant => {
                    if let Some(Ctx::Struct(id, _) | Ctx::Variant(id)) = parent {
                        opened = Ctx::Variant(id);
                    }
                }
                dw::DW_TAG_member => match (parent, ty) {
                    (Some(Ctx::Struct(Some(of), _)), Some(ty)) => pending.push(Pending::Member {
                        of,
                        variant: false,
                        name: name.unwrap_or_default().into(),
                        offset: location.unwrap_or(0),
                        ty,
                    }),
                    (Some(Ctx::Variant(Some(of))), Some(ty)) if !artificial => {
                        pending.push(Pending::Member {
                            of,
                            variant: true,
                            name: name.unwrap_or_default().into(),
                            offset: location.unwrap_or(0),
                            ty,
                        })
                    }
                    _ => {}
                },
                dw::DW_TAG_array_type => {
                    let id = self.add(TypeInfo {
                        size: size.unwrap_or(0),
                        shape: Shape::Array { elem: 0, count: 0 },
                    });
                    offsets.insert(offset, id);
                    if let Some(ty) = ty {
                        pending.push(Pending::Elem { array: id, ty });
                    }
                    opened = Ctx::Array(id);
                }
                dw::DW_TAG_subrange_type => {
                    if let (Some(Ctx::Array(id)), Some(n)) = (parent, count)
                        && let Shape::Array { count, .. } = &mut self.types[id as usize].shape
                    {
                        *count = n;
                    }
                }
                dw::DW_TAG_pointer_type
                | dw::DW_TAG_reference_type
                | dw::DW_TAG_base_type
                | dw::DW_TAG_enumeration_type => {
                    let size = match tag {
                        dw::DW_TAG_pointer_type | dw::DW_TAG_reference_type => {
                            size.unwrap_or(size_of::<usize>() as u64)
                        }
                        _ => size.unwrap_or(0),
                    };
                    let id = self.add(TypeInfo {
                        size,
                        shape: Shape::Leaf,
                    });
                    offsets.insert(offset, id);
                    // Named leaves (`Box<T>` is a pointer, `u64` a number)
                    // can be a buffer's elements.
                    if let Some(short) = name {
                        let mut full = path();
                        full.push(&short);
                        self.by_name
                            .entry(key(&full.join("::")).into())
                            .or_insert(id);
                    }
                }
                _ => {}
            }
            if abbrev.has_children() {
                while stack.len() < depth.max(0) as usize {
                    stack.push(Ctx::Other);
                }
                stack.push(opened);
            }
        }
        Ok(())
    }

    /// The type named `name` (a full path, std's paths shortened as in
    /// block types), if the debug info describes it.
    fn lookup(&self, name: &str) -> Option<TypeId> {
        self.by_name.get(key(name).as_str()).copied()
    }

    /// The size of the type named `name`.
    pub fn size_of(&self, name: &str) -> Option<u64> {
        self.lookup(name).map(|t| self.types[t as usize].size)
    }

    /// True when the debug info describes a type named `name`.
    pub fn knows(&self, name: &str) -> bool {
        self.lookup(name).is_some()
    }

    /// The steps from a value of type `name` (or an array of them, when
    /// `repeated`) down to the field that holds byte `offset`; `None` when
    /// the type is unknown.
    pub fn path_to(&self, name: &str, repeated: bool, offset: u64) -> Option<Vec<Step>> {
        let mut t = self.lookup(name)?;
        let mut off = offset;
        let mut steps = Vec::new();
        if repeated {
            let size = self.types[t as usize].size;
            if size == 0 {
                return None;
            }
            off %= size;
            steps.push(Step::Element);
        }
        for _ in 0..64 {
            let info = &self.types[t as usize];
            match &info.shape {
                Shape::Leaf => break,
                Shape::Array { elem, .. } => {
                    let size = self.types[*elem as usize].size;
                    if size == 0 {
                        break;
                    }
                    off %= size;
                    t = *elem;
                    steps.push(Step::Element);
                }
                Shape::Struct {
                    name,
                    members,
                    variants,
                } => {
                    let covers = |m: &&Member| {
                        let size = self.types[m.ty as usize].size;
                        m.offset <= off && (off < m.offset + size || size == 0)
                    };
                    let member = members.iter().rev().find(covers).or_else(|| {
                        // An enum: the one variant whose own fields cover
                        // the offset, when only one does.
                        let mut found = variants.iter().filter(covers).filter(|v| {
                            match &self.types[v.ty as usize].shape {
                                Shape::Struct { members, .. } => members.iter().any(|m| {
                                    let size = self.types[m.ty as usize].size;
                                    v.offset + m.offset <= off
                                        && off < v.offset + m.offset + size.max(1)
                                }),
                                _ => false,
                            }
                        });
                        let one = found.next();
                        match found.next() {
                            None => one,
                            Some(_) => None,
                        }
                    });
                    let Some(m) = member else {
                        break;
                    };
                    steps.push(Step::Field {
                        owner: name.to_string(),
                        field: m.name.to_string(),
                    });
                    off -= m.offset;
                    t = m.ty;
                }
            }
        }
        Some(steps)
    }

    /// The steps from the start of a heap block of type `block` (a block
    /// type's name: `Box<T>`, `Vec<T>`, `Arc<T>` …) and `size` bytes down
    /// to the field at `offset`; `None` when its layout is unknown.
    pub fn block_field(&self, block: &str, size: u64, offset: u64) -> Option<Vec<Step>> {
        let (content, repeated) = self.block_content(block, size)?;
        self.path_to(&content, repeated, offset)
    }

    /// The size of one element of a block of type `block` that holds an
    /// array (a `Vec<T>`'s buffer: `T`'s size), so that offsets in it can be
    /// taken modulo it; `None` for other blocks or unknown layouts.
    pub fn block_stride(&self, block: &str, size: u64) -> Option<u64> {
        match self.block_content(block, size)? {
            (content, true) => self.size_of(&content).filter(|&s| s > 0),
            (_, false) => None,
        }
    }

    /// What a block of type `block` holds: the type's name and whether it
    /// is an array of them.
    fn block_content(&self, block: &str, size: u64) -> Option<(String, bool)> {
        let (head, inner) = match block.split_once('<') {
            Some((h, rest)) => (h, rest.strip_suffix('>')?),
            None => (block, ""),
        };
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
        Some((content, repeated))
    }

    /// Bytes these layouts hold (an estimate).
    pub fn memory(&self) -> usize {
        let mut n = self.types.capacity() * size_of::<TypeInfo>();
        for t in &self.types {
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
        n + self.by_name.capacity() * (size_of::<(Box<str>, TypeId)>() + 1)
            + self.by_name.keys().map(|k| k.len()).sum::<usize>()
    }
}

static LAYOUTS: Mutex<Option<Arc<Layouts>>> = Mutex::new(None);

/// The executable's type layouts, parsed on first use (with tracking off:
/// they are leakscope's memory, not the program's).
pub fn layouts() -> Arc<Layouts> {
    untracked(|| {
        let mut slot = LAYOUTS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = slot.as_ref() {
            return Arc::clone(l);
        }
        let l = Arc::new(Layouts::load());
        *slot = Some(Arc::clone(&l));
        l
    })
}

/// Gives the layouts back (with the rest of the debug information).
pub(super) fn release() {
    let old = LAYOUTS.lock().unwrap_or_else(|e| e.into_inner()).take();
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
