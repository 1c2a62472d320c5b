//! Return addresses of the running executable resolved from its DWARF in
//! place, with bounded memory.
//!
//! A general symbolizer parses a compilation unit's whole line table and
//! function tree the first time one of its addresses is asked for, and
//! keeps them: for a program whose code is mostly in one large unit (a
//! binary that inlines tokio, hyper and its own crate together) that is a
//! hundred MiB of leakscope's memory for one view. Here the executable is
//! mapped, what stays on the heap between lookups is only where each unit's
//! code lies ([`ExeIndex`]), and a batch of addresses is resolved with one
//! pass over each unit it touches: its entries (for the functions and the
//! inlined calls that contain each address) and its line program (for the
//! innermost location), keeping nothing but the frames found. The frames
//! read as `addr2line` gives them: innermost inlined call first, then
//! outwards, each outer frame at the call site of the one inside it.

use std::collections::{BTreeMap, HashMap};

use gimli::{AttributeValue, DebugInfoOffset, EndianSlice, LittleEndian, UnitOffset, constants};
use object::{Object, ObjectSection};

use super::Frame;
use crate::sys::mapped::MappedFile;

/// How the mapped executable's sections are read.
pub(super) type Reader<'a> = EndianSlice<'a, LittleEndian>;
/// The executable's DWARF, borrowed from its mapping.
pub(super) type Dwarf<'a> = gimli::Dwarf<Reader<'a>>;
/// One compilation unit of it.
pub(super) type Unit<'a> = gimli::Unit<Reader<'a>>;

/// Where the running executable's code lies, and in which compilation unit
/// each address range is: all that stays loaded between lookups.
pub(super) struct ExeIndex {
    exe: MappedFile,
    /// What to subtract from a runtime address for its address in the file.
    bias: usize,
    /// The runtime ranges of the executable's code, `[start, end)`.
    text: Vec<(usize, usize)>,
    /// Address ranges in the file, each with its unit's offset in
    /// `.debug_info`: `(begin, end, unit)`, sorted by `begin`.
    spans: Vec<(u64, u64, u64)>,
    /// The longest span (a lookup scans back this far for spans that
    /// contain its address).
    longest: u64,
    /// Every unit's offset in `.debug_info`, sorted (for references from
    /// one unit into another).
    units: Vec<u64>,
}

/// A function or an inlined call that contains an address.
#[derive(Clone, Copy)]
struct Link {
    offset: UnitOffset<usize>,
    subprogram: bool,
    call_file: Option<u64>,
    call_line: u32,
    call_column: u32,
}

/// A row of the line table: the file index, line and column.
#[derive(Clone, Copy)]
struct RowPlace {
    file: u64,
    line: u32,
    column: u32,
}

impl ExeIndex {
    /// Maps the executable and indexes its units' address ranges; `None`
    /// when it has no DWARF or its code cannot be located.
    pub(super) fn load() -> Option<ExeIndex> {
        let (bias, text) = exe_segments()?;
        let exe = MappedFile::executable().ok()?;
        let (spans, units) = {
            let file = object::File::parse(&exe[..]).ok()?;
            let dwarf = load_dwarf(&file)?;
            index_units(&dwarf)?
        };
        if spans.is_empty() {
            return None;
        }
        let longest = spans.iter().map(|s| s.1 - s.0).max().unwrap_or(0);
        Some(ExeIndex {
            exe,
            bias,
            text,
            spans,
            longest,
            units,
        })
    }

    /// Whether `addr` lies in the executable's code.
    pub(super) fn contains(&self, addr: usize) -> bool {
        self.text.iter().any(|&(s, e)| addr >= s && addr < e)
    }

    /// Bytes the index holds on the heap.
    pub(super) fn bytes(&self) -> u64 {
        (self.spans.capacity() * size_of::<(u64, u64, u64)>()
            + self.units.capacity() * size_of::<u64>()
            + self.text.capacity() * size_of::<(usize, usize)>()) as u64
    }

    /// The frames of each return address in `addrs` (all in the
    /// executable's code) that its DWARF knows; the others are missing from
    /// the answer.
    pub(super) fn resolve(&self, addrs: &[usize]) -> HashMap<usize, Vec<Frame>> {
        let mut out = HashMap::new();
        let Ok(file) = object::File::parse(&self.exe[..]) else {
            return out;
        };
        let Some(dwarf) = load_dwarf(&file) else {
            return out;
        };
        // The call instruction before each return address (looked up two
        // bytes back: inside any call instruction, and where the frames of
        // `resolve`'s general fallback are looked up too), and the units
        // that may hold it: each address is looked up in its first unit,
        // and in the next only when that one knows nothing of it.
        let mut pending: Vec<(u64, usize, Vec<u64>)> = addrs
            .iter()
            .map(|&addr| {
                let at = (addr.wrapping_sub(self.bias) as u64).saturating_sub(2);
                (at, addr, self.units_at(at))
            })
            .collect();
        let mut symbols = None;
        for round in 0.. {
            let mut by_unit: BTreeMap<u64, Vec<(u64, usize)>> = BTreeMap::new();
            for (at, addr, units) in &pending {
                if let Some(&unit) = units.get(round) {
                    by_unit.entry(unit).or_default().push((*at, *addr));
                }
            }
            if by_unit.is_empty() {
                break;
            }
            for (unit_offset, mut wanted) in by_unit {
                wanted.sort_unstable();
                wanted.dedup();
                self.resolve_in_unit(&dwarf, &file, unit_offset, &wanted, &mut symbols, &mut out);
            }
            pending.retain(|(_, addr, _)| !out.contains_key(addr));
        }
        // Code no unit describes: its symbol, with no place.
        for (at, addr, _) in pending {
            if let Some(raw) = symtab_name(&file, &mut symbols, at) {
                out.insert(addr, vec![symbol_frame(addr, &raw)]);
            }
        }
        out
    }

    /// Resolves `wanted` (`(address in the file, return address)`, sorted)
    /// in the unit at `unit_offset`, adding to `out` the frames of those it
    /// knows.
    fn resolve_in_unit<'a>(
        &self,
        dwarf: &Dwarf<'a>,
        file: &object::File<'a>,
        unit_offset: u64,
        wanted: &[(u64, usize)],
        symbols: &mut Option<Symtab<'a>>,
        out: &mut HashMap<usize, Vec<Frame>>,
    ) {
        let Ok(header) = dwarf
            .debug_info
            .header_from_offset(DebugInfoOffset(unit_offset as usize))
        else {
            return;
        };
        let Ok(unit) = dwarf.unit(header) else {
            return;
        };
        let at: Vec<u64> = wanted.iter().map(|w| w.0).collect();
        let chains = chains(dwarf, &unit, &at);
        let (places, mut files) = places(dwarf, &unit, &at);
        add_call_files(dwarf, &unit, &chains, &mut files);
        for (i, &(at, addr)) in wanted.iter().enumerate() {
            let frames = self.frames(dwarf, &unit, addr, &chains[i], places[i], &files, || {
                symtab_name(file, symbols, at)
            });
            if !frames.is_empty() {
                out.insert(addr, frames);
            }
        }
    }

    /// The units whose ranges contain `at` (an address in the file), in
    /// the order `addr2line` tries them: by the end of the range that
    /// contains it, then by the unit's place in `.debug_info`.
    fn units_at(&self, at: u64) -> Vec<u64> {
        let end = self.spans.partition_point(|s| s.0 <= at);
        let mut found: Vec<(u64, u64)> = self.spans[..end]
            .iter()
            .rev()
            .take_while(|s| at - s.0 <= self.longest)
            .filter(|s| at < s.1)
            .map(|s| (s.1, s.2))
            .collect();
        found.sort_unstable();
        let mut units: Vec<u64> = Vec::with_capacity(found.len());
        for (_, unit) in found {
            if !units.contains(&unit) {
                units.push(unit);
            }
        }
        units
    }

    /// The frames of one address, innermost first: each function or inlined
    /// call of `chain` (outermost first), at the line table's place for the
    /// innermost and at the call site of the one inside for the others.
    #[allow(clippy::too_many_arguments)]
    fn frames(
        &self,
        dwarf: &Dwarf<'_>,
        unit: &Unit<'_>,
        addr: usize,
        chain: &[Link],
        place: Option<RowPlace>,
        files: &HashMap<u64, String>,
        symtab: impl FnOnce() -> Option<String>,
    ) -> Vec<Frame> {
        // From the innermost function on (an address is in one function;
        // anything outside it is a malformed nesting).
        let first = chain.iter().rposition(|l| l.subprogram).unwrap_or(0);
        let chain = &chain[first..];
        if chain.is_empty() {
            let Some(p) = place else {
                return Vec::new();
            };
            let (function, v0) = match symtab() {
                Some(raw) => (demangled(&raw), raw.starts_with("_R")),
                None => ("?".to_string(), false),
            };
            let (line, column) = line_column(p.line, p.column);
            return vec![Frame {
                addr,
                function,
                file: files.get(&p.file).cloned(),
                line,
                column,
                inlined: false,
                v0,
            }];
        }
        let mut frames = Vec::with_capacity(chain.len());
        for k in (0..chain.len()).rev() {
            let (file, line, column) = if k + 1 == chain.len() {
                match place {
                    Some(p) => {
                        let (line, column) = line_column(p.line, p.column);
                        (files.get(&p.file).cloned(), line, column)
                    }
                    None => (None, None, None),
                }
            } else {
                let inner = &chain[k + 1];
                (
                    inner.call_file.and_then(|f| files.get(&f).cloned()),
                    (inner.call_line != 0).then_some(inner.call_line),
                    (inner.call_column != 0).then_some(inner.call_column),
                )
            };
            let raw = self.name(dwarf, unit, chain[k].offset, 16);
            let (function, v0) = match raw {
                Some(raw) => (demangled(&raw), raw.starts_with("_R")),
                None => ("?".to_string(), false),
            };
            frames.push(Frame {
                addr,
                function,
                file,
                line,
                column,
                inlined: k != 0,
                v0,
            });
        }
        frames
    }

    /// The name of the entry at `offset`: its linkage name, else its name,
    /// else that of its abstract origin or specification.
    fn name(
        &self,
        dwarf: &Dwarf<'_>,
        unit: &Unit<'_>,
        offset: UnitOffset<usize>,
        depth: u32,
    ) -> Option<String> {
        let entry = unit.entry(offset).ok()?;
        let text = |v: AttributeValue<Reader<'_>>| {
            dwarf
                .attr_string(unit, v)
                .ok()
                .map(|s| s.to_string_lossy().into_owned())
        };
        for at in [
            constants::DW_AT_linkage_name,
            constants::DW_AT_MIPS_linkage_name,
        ] {
            if let Some(name) = entry.attr_value(at).and_then(text) {
                return Some(name);
            }
        }
        if let Some(name) = entry.attr_value(constants::DW_AT_name).and_then(text) {
            return Some(name);
        }
        if depth == 0 {
            return None;
        }
        let next = entry
            .attr_value(constants::DW_AT_abstract_origin)
            .or_else(|| entry.attr_value(constants::DW_AT_specification))?;
        match next {
            AttributeValue::UnitRef(o) => self.name(dwarf, unit, o, depth - 1),
            AttributeValue::DebugInfoRef(DebugInfoOffset(o)) => {
                // In another unit: the last unit that starts at or before it.
                let i = self.units.partition_point(|&u| u <= o as u64);
                let start = *self.units.get(i.checked_sub(1)?)?;
                let header = dwarf
                    .debug_info
                    .header_from_offset(DebugInfoOffset(start as usize))
                    .ok()?;
                let other = dwarf.unit(header).ok()?;
                let local = DebugInfoOffset(o).to_unit_offset(&other.header)?;
                self.name(dwarf, &other, local, depth - 1)
            }
            _ => None,
        }
    }
}

/// A line and column as `addr2line` reports them: no line for line 0, and
/// then no column either.
fn line_column(line: u32, column: u32) -> (Option<u32>, Option<u32>) {
    if line == 0 {
        (None, None)
    } else {
        (Some(line), Some(column))
    }
}

/// `raw` demangled without its hash (Rust's legacy and v0 manglings), or as
/// it is.
fn demangled(raw: &str) -> String {
    match rustc_demangle::try_demangle(raw) {
        Ok(d) => format!("{d:#}"),
        Err(_) => raw.to_string(),
    }
}

/// The executable's function and data symbols, sorted by address: the
/// names of code its DWARF does not describe.
struct Symtab<'a>(Vec<(u64, u64, &'a str)>);

impl<'a> Symtab<'a> {
    fn read(file: &object::File<'a>) -> Symtab<'a> {
        use object::{ObjectSymbol, SymbolKind};
        let mut symbols: Vec<_> = file.symbols().collect();
        if symbols.is_empty() {
            symbols = file.dynamic_symbols().collect();
        }
        let mut list: Vec<(u64, u64, &'a str)> = symbols
            .iter()
            .filter(|s| matches!(s.kind(), SymbolKind::Text | SymbolKind::Data))
            .filter(|s| !s.is_undefined())
            .filter_map(|s| Some((s.address(), s.size(), s.name().ok()?)))
            .collect();
        list.sort_unstable_by_key(|s| s.0);
        Symtab(list)
    }

    /// The symbol whose span holds `at` (its end included), if the last
    /// one to start at or before it does.
    fn name(&self, at: u64) -> Option<&'a str> {
        let i = self.0.partition_point(|s| s.0 <= at).checked_sub(1)?;
        let (start, size, name) = self.0[i];
        (at <= start + size).then_some(name)
    }
}

/// The symbol table's name for `at`, reading the table on first use.
fn symtab_name<'a>(
    file: &object::File<'a>,
    table: &mut Option<Symtab<'a>>,
    at: u64,
) -> Option<String> {
    table
        .get_or_insert_with(|| Symtab::read(file))
        .name(at)
        .map(str::to_string)
}

/// Which code is the program's (see `program`), from the running
/// executable's symbol table and its units' names; empty when the
/// executable cannot be read.
pub(super) fn read_program_code() -> super::program::ProgramCode {
    use super::program::{ProgramCode, UnitName, main_crate_of};
    use object::ObjectSymbol;
    let Ok(exe) = MappedFile::executable() else {
        return ProgramCode::default();
    };
    let Ok(file) = object::File::parse(&exe[..]) else {
        return ProgramCode::default();
    };
    let mut main = main_crate_of(file.symbols().filter_map(|s| s.name().ok()));
    if main.is_none() {
        main = main_crate_of(file.dynamic_symbols().filter_map(|s| s.name().ok()));
    }
    let Some(dwarf) = load_dwarf(&file) else {
        return ProgramCode::from_units(main.as_deref(), []);
    };
    let mut names: Vec<(String, String)> = Vec::new();
    let mut headers = dwarf.units();
    while let Ok(Some(header)) = headers.next() {
        let Ok(unit) = dwarf.unit(header) else {
            continue;
        };
        if let (Some(name), Some(dir)) = (unit.name, unit.comp_dir) {
            names.push((
                name.to_string_lossy().into_owned(),
                dir.to_string_lossy().into_owned(),
            ));
        }
    }
    ProgramCode::from_units(
        main.as_deref(),
        names.iter().map(|(name, dir)| UnitName { name, dir }),
    )
}

/// The DWARF sections of `file`, borrowed in place.
pub(super) fn load_dwarf<'a>(file: &object::File<'a>) -> Option<Dwarf<'a>> {
    let empty: &[u8] = &[];
    gimli::Dwarf::load(|id: gimli::SectionId| -> Result<Reader<'a>, ()> {
        let data = file
            .section_by_name(id.name())
            .and_then(|s| s.data().ok())
            .unwrap_or(empty);
        Ok(EndianSlice::new(data, LittleEndian))
    })
    .ok()
}

type Spans = Vec<(u64, u64, u64)>;

/// The most bytes between two ranges of one unit that are kept as one
/// range (functions are aligned to at most 64 bytes).
const MERGE_GAP: u64 = 64;

/// Every unit's address ranges and every unit's offset. A unit's ranges
/// are, in order of preference (as `addr2line` takes them): its own
/// `DW_AT_ranges`, its `.debug_aranges` entries, its `DW_AT_low_pc` and
/// `DW_AT_high_pc`.
fn index_units(dwarf: &Dwarf<'_>) -> Option<(Spans, Vec<u64>)> {
    let mut aranges: HashMap<u64, Vec<(u64, u64)>> = HashMap::new();
    let mut headers = dwarf.debug_aranges.headers();
    while let Ok(Some(h)) = headers.next() {
        let unit = h.debug_info_offset().0 as u64;
        let mut entries = h.entries();
        while let Ok(Some(e)) = entries.next() {
            let r = e.range();
            if r.begin < r.end {
                aranges.entry(unit).or_default().push((r.begin, r.end));
            }
        }
    }
    let mut spans = Vec::new();
    let mut units = Vec::new();
    let mut iter = dwarf.units();
    while let Ok(Some(header)) = iter.next() {
        let Some(offset) = header.debug_info_offset() else {
            continue;
        };
        let offset = offset.0 as u64;
        let Ok(unit) = dwarf.unit(header) else {
            continue;
        };
        let own_ranges = unit
            .entry(unit.header.root_offset())
            .is_ok_and(|root| root.attr(constants::DW_AT_ranges).is_some());
        match aranges.get(&offset) {
            Some(list) if !own_ranges => {
                spans.extend(list.iter().map(|&(b, e)| (b, e, offset)));
            }
            _ => {
                if let Ok(mut ranges) = dwarf.unit_ranges(&unit) {
                    while let Ok(Some(r)) = ranges.next() {
                        if r.begin < r.end {
                            spans.push((r.begin, r.end, offset));
                        }
                    }
                }
            }
        }
        units.push(offset);
    }
    // A unit's functions mostly lie side by side, each a range of its own
    // (hundreds of thousands of ranges in a large program): ranges of one
    // unit with no more than alignment padding between them are kept as
    // one. An address in that padding is in no function and on no line,
    // so the unit knows nothing of it and the next one is asked, as before.
    spans.sort_unstable_by_key(|s| (s.2, s.0));
    let mut merged: Spans = Vec::with_capacity(spans.len() / 8);
    for s in spans {
        match merged.last_mut() {
            Some(last) if last.2 == s.2 && s.0 <= last.1 + MERGE_GAP => last.1 = last.1.max(s.1),
            _ => merged.push(s),
        }
    }
    let mut spans = merged;
    spans.sort_unstable();
    spans.shrink_to_fit();
    units.sort_unstable();
    units.shrink_to_fit();
    Some((spans, units))
}

/// For each address of `at` (sorted), the functions and inlined calls of
/// `unit` that contain it, outermost first: one pass over the unit's
/// entries.
fn chains(dwarf: &Dwarf<'_>, unit: &Unit<'_>, at: &[u64]) -> Vec<Vec<Link>> {
    let mut chains = vec![Vec::new(); at.len()];
    let mut cursor = unit.entries();
    while let Ok(Some(entry)) = cursor.next_dfs() {
        let tag = entry.tag();
        let subprogram = tag == constants::DW_TAG_subprogram;
        if !subprogram && tag != constants::DW_TAG_inlined_subroutine {
            continue;
        }
        let Ok(mut ranges) = dwarf.die_ranges(unit, entry) else {
            continue;
        };
        let mut link = None;
        while let Ok(Some(r)) = ranges.next() {
            let lo = at.partition_point(|&a| a < r.begin);
            let hi = at.partition_point(|&a| a < r.end);
            if lo >= hi {
                continue;
            }
            let link = *link.get_or_insert_with(|| {
                let udata = |name| {
                    entry
                        .attr_value(name)
                        .and_then(|v| v.udata_value())
                        .unwrap_or(0) as u32
                };
                let call_file = match entry.attr_value(constants::DW_AT_call_file) {
                    // Index 0 names no file before DWARF 5.
                    Some(AttributeValue::FileIndex(f)) if f > 0 || unit.header.version() >= 5 => {
                        Some(f)
                    }
                    _ => None,
                };
                Link {
                    offset: entry.offset(),
                    subprogram,
                    call_file,
                    call_line: udata(constants::DW_AT_call_line),
                    call_column: udata(constants::DW_AT_call_column),
                }
            });
            for chain in &mut chains[lo..hi] {
                chain.push(link);
            }
        }
    }
    chains
}

/// For each address of `at` (sorted), the line table's row that covers it
/// (the last row at or before it in its sequence), with the paths of the
/// files those rows and the inlined calls name: one pass over the unit's
/// line program.
fn places(
    dwarf: &Dwarf<'_>,
    unit: &Unit<'_>,
    at: &[u64],
) -> (Vec<Option<RowPlace>>, HashMap<u64, String>) {
    let mut places = vec![None; at.len()];
    let mut files = HashMap::new();
    let Some(program) = unit.line_program.clone() else {
        return (places, files);
    };
    let mut rows = program.rows();
    let mut prev: Option<(u64, RowPlace)> = None;
    while let Ok(Some((_, row))) = rows.next_row() {
        let address = row.address();
        if let Some((start, place)) = prev
            && address > start
        {
            let lo = at.partition_point(|&a| a < start);
            let hi = at.partition_point(|&a| a < address);
            for p in &mut places[lo..hi] {
                *p = Some(place);
            }
        }
        prev = (!row.end_sequence()).then(|| {
            let column = match row.column() {
                gimli::ColumnType::LeftEdge => 0,
                gimli::ColumnType::Column(c) => c.get() as u32,
            };
            let line = row.line().map_or(0, |l| l.get() as u32);
            (
                address,
                RowPlace {
                    file: row.file_index(),
                    line,
                    column,
                },
            )
        });
    }
    let header = rows.header();
    for p in places.iter().flatten() {
        files.entry(p.file).or_insert_with(|| {
            header
                .file(p.file)
                .map(|f| file_path(dwarf, unit, f, header))
                .unwrap_or_default()
        });
    }
    (places, files)
}

/// Adds the paths of the files the inlined calls of `chains` name.
fn add_call_files(
    dwarf: &Dwarf<'_>,
    unit: &Unit<'_>,
    chains: &[Vec<Link>],
    files: &mut HashMap<u64, String>,
) {
    let Some(program) = unit.line_program.as_ref() else {
        return;
    };
    let header = program.header();
    for link in chains.iter().flatten() {
        if let Some(f) = link.call_file {
            files.entry(f).or_insert_with(|| {
                header
                    .file(f)
                    .map(|e| file_path(dwarf, unit, e, header))
                    .unwrap_or_default()
            });
        }
    }
}

/// A file's path as `addr2line` renders it: the unit's directory, the
/// file's directory and its name, each replacing what came before when it
/// is absolute.
fn file_path(
    dwarf: &Dwarf<'_>,
    unit: &Unit<'_>,
    file: &gimli::FileEntry<Reader<'_>>,
    header: &gimli::LineProgramHeader<Reader<'_>>,
) -> String {
    let text = |v: AttributeValue<Reader<'_>>| {
        dwarf
            .attr_string(unit, v)
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let mut path = unit
        .comp_dir
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_default();
    if file.directory_index() != 0
        && let Some(dir) = file.directory(header)
    {
        push_path(&mut path, &text(dir));
    }
    push_path(&mut path, &text(file.path_name()));
    path
}

fn push_path(path: &mut String, part: &str) {
    if part.starts_with('/') {
        *path = part.to_string();
    } else {
        if !path.is_empty() && !path.ends_with('/') {
            path.push('/');
        }
        path.push_str(part);
    }
}

/// One object the dynamic loader has loaded: the executable or a shared
/// library.
struct LoadedObject {
    /// Its file ("" for the executable).
    path: String,
    /// What to subtract from a runtime address for its address in the file.
    bias: usize,
    /// The runtime ranges of its code, `[start, end)`.
    text: Vec<(usize, usize)>,
}

/// Every loaded object, the executable first, from the dynamic loader's
/// list.
fn loaded_objects() -> Vec<LoadedObject> {
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: `data` is the list passed to dl_iterate_phdr below, and
        // `info` is valid for this call, with `dlpi_phnum` program headers
        // and a NUL-terminated (or null) name.
        unsafe {
            let list = &mut *(data as *mut Vec<LoadedObject>);
            let info = &*info;
            let path = if info.dlpi_name.is_null() {
                String::new()
            } else {
                std::ffi::CStr::from_ptr(info.dlpi_name)
                    .to_string_lossy()
                    .into_owned()
            };
            let bias = info.dlpi_addr as usize;
            let mut text = Vec::new();
            for i in 0..info.dlpi_phnum as usize {
                let ph = &*info.dlpi_phdr.add(i);
                if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_X != 0 {
                    let start = bias + ph.p_vaddr as usize;
                    text.push((start, start + ph.p_memsz as usize));
                }
            }
            list.push(LoadedObject { path, bias, text });
            0
        }
    }
    let mut list: Vec<LoadedObject> = Vec::new();
    // SAFETY: `visit` only reads what the loader hands it and pushes to
    // `list`, which outlives the call.
    unsafe {
        libc::dl_iterate_phdr(
            Some(visit),
            &mut list as *mut Vec<LoadedObject> as *mut libc::c_void,
        );
    }
    list
}

/// The executable's load bias and the runtime ranges of its code.
fn exe_segments() -> Option<(usize, Vec<(usize, usize)>)> {
    let exe = loaded_objects().into_iter().next()?;
    (!exe.text.is_empty()).then_some((exe.bias, exe.text))
}

/// The frame of a return address in a shared library, named from the
/// library's symbol table, or from that of its separate debug file when one
/// is installed (where the library's own table lacks its internal
/// functions, such as libc's `start_thread`). A library's debug information
/// is not read: it would cost tens of MiB for such a frame. `None` when no
/// loaded library's code holds the address; `Some(None)` when no symbol
/// names it.
pub(super) fn library_frame(addr: usize) -> Option<Option<Frame>> {
    let objects = loaded_objects();
    let lib = objects
        .iter()
        .skip(1)
        .find(|o| o.text.iter().any(|&(s, e)| addr >= s && addr < e))?;
    let at = (addr.wrapping_sub(lib.bias) as u64).saturating_sub(2);
    let raw = library_symbol(&lib.path, at);
    Some(raw.map(|raw| symbol_frame(addr, &raw)))
}

/// The frame of `addr` named by symbol `raw` alone (no place known).
fn symbol_frame(addr: usize, raw: &str) -> Frame {
    Frame {
        addr,
        function: demangled(raw),
        file: None,
        line: None,
        column: None,
        inlined: false,
        v0: raw.starts_with("_R"),
    }
}

/// The name of the symbol at `at` in the library at `path`: from its own
/// symbol table, else from its separate debug file's (found by build id).
fn library_symbol(path: &str, at: u64) -> Option<String> {
    let file = MappedFile::loaded_library(path).ok()?;
    let parsed = object::File::parse(&file[..]).ok()?;
    if let Some(name) = Symtab::read(&parsed).name(at) {
        return Some(name.to_string());
    }
    let id = parsed.build_id().ok()??;
    let (first, rest) = id.split_first()?;
    let hex: String = rest.iter().map(|b| format!("{b:02x}")).collect();
    let debug = format!("/usr/lib/debug/.build-id/{first:02x}/{hex}.debug");
    let file = MappedFile::loaded_library(&debug).ok()?;
    let parsed = object::File::parse(&file[..]).ok()?;
    Symtab::read(&parsed).name(at).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The frames the `backtrace` crate gives for `addr` (a general
    /// symbolizer that keeps whole units parsed): what this one must match.
    fn by_backtrace(addr: usize) -> Vec<Frame> {
        let mut out = super::super::resolve_uncached(addr);
        if out.len() == 1 && out[0].function == "?" {
            out.clear();
        }
        out
    }

    #[test]
    fn frames_match_a_general_symbolizer_across_the_executable() {
        let index = ExeIndex::load().expect("the test binary has DWARF");
        // Addresses spread over all the executable's code: every 997th
        // byte (a prime, so that they fall at every offset within
        // functions), resolved in one batch.
        let addrs: Vec<usize> = index
            .text
            .iter()
            .flat_map(|&(s, e)| (s + 1..e).step_by(997))
            .collect();
        assert!(addrs.len() > 1000, "{} addresses", addrs.len());
        let batch = index.resolve(&addrs);
        let (mut placed, mut inlined) = (0, 0);
        for &addr in &addrs {
            let expected = by_backtrace(addr);
            let got = batch.get(&addr).cloned().unwrap_or_default();
            assert_eq!(got, expected, "{addr:#x}");
            placed += expected.iter().any(|f| f.line.is_some()) as usize;
            inlined += (expected.len() > 1) as usize;
        }
        // Most addresses have a line (not all: code without line tables),
        // so the comparison above is not between two empty answers.
        assert!(
            placed * 4 > addrs.len() * 3,
            "{placed} of {} placed",
            addrs.len()
        );
        assert!(inlined > 100, "inlined chains checked: {inlined}");
        // One at a time gives the same as in a batch.
        for &addr in addrs.iter().step_by(101) {
            assert_eq!(
                index.resolve(&[addr]).remove(&addr),
                batch.get(&addr).cloned(),
                "{addr:#x}"
            );
        }
    }
}
