//! A gzipped pprof profile (`profile.proto`) with `alloc_objects`,
//! `alloc_space`, `inuse_objects` and `inuse_space`: the format `go tool
//! pprof`, Pyroscope and Parca read, which is how a fleet of services is
//! profiled beyond one machine. The messages below are profile.proto's
//! (github.com/google/pprof/proto/profile.proto), field numbers included.

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::Path;

use prost::Message;

use super::Error;
use crate::tracker::{self, Snapshot};

/// profile.proto's `Profile`.
#[derive(Clone, PartialEq, Message)]
#[non_exhaustive]
pub struct Profile {
    /// What each value of a sample means.
    #[prost(message, repeated, tag = "1")]
    pub sample_type: Vec<ValueType>,
    /// The samples: one per stack.
    #[prost(message, repeated, tag = "2")]
    pub sample: Vec<Sample>,
    /// Mappings (one: the program).
    #[prost(message, repeated, tag = "3")]
    pub mapping: Vec<Mapping>,
    /// Locations (one per return address).
    #[prost(message, repeated, tag = "4")]
    pub location: Vec<Location>,
    /// Functions.
    #[prost(message, repeated, tag = "5")]
    pub function: Vec<Function>,
    /// Strings; `string_table[0]` is "".
    #[prost(string, repeated, tag = "6")]
    pub string_table: Vec<String>,
    /// When the profile was taken (ns since the epoch).
    #[prost(int64, tag = "9")]
    pub time_nanos: i64,
    /// What one sampling period is.
    #[prost(message, optional, tag = "11")]
    pub period_type: Option<ValueType>,
    /// The sampling period.
    #[prost(int64, tag = "12")]
    pub period: i64,
    /// Comments (string table indices).
    #[prost(int64, repeated, tag = "13")]
    pub comment: Vec<i64>,
    /// The sample type shown by default (string table index).
    #[prost(int64, tag = "14")]
    pub default_sample_type: i64,
}

/// profile.proto's `ValueType`.
#[derive(Clone, PartialEq, Message)]
#[non_exhaustive]
pub struct ValueType {
    /// Type name (string table index).
    #[prost(int64, tag = "1")]
    pub r#type: i64,
    /// Unit (string table index).
    #[prost(int64, tag = "2")]
    pub unit: i64,
}

/// profile.proto's `Sample`.
#[derive(Clone, PartialEq, Message)]
#[non_exhaustive]
pub struct Sample {
    /// Locations, leaf first.
    #[prost(uint64, repeated, tag = "1")]
    pub location_id: Vec<u64>,
    /// One value per sample type.
    #[prost(int64, repeated, tag = "2")]
    pub value: Vec<i64>,
}

/// profile.proto's `Mapping`.
#[derive(Clone, PartialEq, Message)]
#[non_exhaustive]
pub struct Mapping {
    /// Id (from 1).
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Start address.
    #[prost(uint64, tag = "2")]
    pub memory_start: u64,
    /// End address.
    #[prost(uint64, tag = "3")]
    pub memory_limit: u64,
    /// File offset.
    #[prost(uint64, tag = "4")]
    pub file_offset: u64,
    /// The binary (string table index).
    #[prost(int64, tag = "5")]
    pub filename: i64,
    /// Functions are resolved.
    #[prost(bool, tag = "7")]
    pub has_functions: bool,
    /// Files are resolved.
    #[prost(bool, tag = "8")]
    pub has_filenames: bool,
    /// Lines are resolved.
    #[prost(bool, tag = "9")]
    pub has_line_numbers: bool,
    /// Inlined frames are resolved.
    #[prost(bool, tag = "10")]
    pub has_inline_frames: bool,
}

/// profile.proto's `Location`.
#[derive(Clone, PartialEq, Message)]
#[non_exhaustive]
pub struct Location {
    /// Id (from 1).
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Its mapping.
    #[prost(uint64, tag = "2")]
    pub mapping_id: u64,
    /// The return address.
    #[prost(uint64, tag = "3")]
    pub address: u64,
    /// Lines, innermost inlined function first.
    #[prost(message, repeated, tag = "4")]
    pub line: Vec<Line>,
}

/// profile.proto's `Line`.
#[derive(Clone, PartialEq, Message)]
#[non_exhaustive]
pub struct Line {
    /// Its function.
    #[prost(uint64, tag = "1")]
    pub function_id: u64,
    /// Line number.
    #[prost(int64, tag = "2")]
    pub line: i64,
    /// Column.
    #[prost(int64, tag = "3")]
    pub column: i64,
}

/// profile.proto's `Function`.
#[derive(Clone, PartialEq, Message)]
#[non_exhaustive]
pub struct Function {
    /// Id (from 1).
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Name (string table index).
    #[prost(int64, tag = "2")]
    pub name: i64,
    /// System name (string table index).
    #[prost(int64, tag = "3")]
    pub system_name: i64,
    /// Source file (string table index).
    #[prost(int64, tag = "4")]
    pub filename: i64,
}

#[derive(Default)]
struct Strings {
    table: Vec<String>,
    index: HashMap<String, i64>,
}

impl Strings {
    fn id(&mut self, s: &str) -> i64 {
        if self.table.is_empty() {
            self.table.push(String::new());
            self.index.insert(String::new(), 0);
        }
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        self.table.push(s.to_string());
        let i = self.table.len() as i64 - 1;
        self.index.insert(s.to_string(), i);
        i
    }
}

/// Whether a frame is the allocator's own (leakscope's tracker, Rust's
/// allocation functions and the global allocator's shims): left out of the
/// top of every stack, so the profile's leaf is the code that asked for
/// memory.
fn allocator_entry(function: &str) -> bool {
    crate::symbols::in_tracker(function)
        || function.starts_with("alloc::alloc::")
        || function.starts_with("<alloc::alloc::Global")
        || function.starts_with("__rust_")
        || function.starts_with("__rg_")
        || function.starts_with("__rdl_")
}

/// The executable mappings of this process, from `/proc/self/maps`.
fn mappings(strings: &mut Strings) -> Vec<Mapping> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let mut out = Vec::new();
    for line in maps.lines() {
        let mut fields = line.split_ascii_whitespace();
        let (Some(range), Some(perms), Some(offset)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let path = fields.nth(2).unwrap_or("");
        if !perms.contains('x') || !path.starts_with('/') {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let hex = |s: &str| u64::from_str_radix(s, 16).unwrap_or(0);
        out.push(Mapping {
            id: out.len() as u64 + 1,
            memory_start: hex(start),
            memory_limit: hex(end),
            file_offset: hex(offset),
            filename: strings.id(path),
            has_functions: true,
            has_filenames: true,
            has_line_numbers: true,
            has_inline_frames: true,
        });
    }
    out
}

/// The profile of a snapshot.
pub fn from_snapshot(snap: &Snapshot) -> Profile {
    let mut strings = Strings::default();
    strings.id("");
    let sample_type = [
        "alloc_objects:count",
        "alloc_space:bytes",
        "inuse_objects:count",
        "inuse_space:bytes",
    ]
    .iter()
    .map(|t| {
        let (name, unit) = t.split_once(':').unwrap_or((t, ""));
        ValueType {
            r#type: strings.id(name),
            unit: strings.id(unit),
        }
    })
    .collect();
    let mapping = mappings(&mut strings);
    let mapping_of = |addr: u64| {
        mapping
            .iter()
            .find(|m| m.memory_start <= addr && addr < m.memory_limit)
            .map_or(0, |m| m.id)
    };
    let mut functions: Vec<Function> = Vec::new();
    let mut function_ids: HashMap<(String, String), u64> = HashMap::new();
    let mut locations: Vec<Location> = Vec::new();
    let mut location_ids: HashMap<usize, u64> = HashMap::new();
    let mut samples = Vec::new();
    for mut pp in super::program_stacks(snap) {
        // The leaf is the code that asked for memory: past the allocator's
        // entry, and past the standard library's containers that grew
        // (`RawVec::grow_one`, `Vec::push`), whose names would otherwise
        // fill a flat `-top` ahead of every program function. A stack of
        // the runtime only keeps its frames.
        let entry = pp
            .frames
            .iter()
            .take_while(|f| allocator_entry(&f.function))
            .count();
        let runtime = pp.frames[entry.min(pp.frames.len())..]
            .iter()
            .take_while(|f| crate::symbols::is_runtime_function(&f.function))
            .count();
        if entry + runtime < pp.frames.len() {
            pp.frames.drain(..entry + runtime);
        } else if entry < pp.frames.len() {
            pp.frames.drain(..entry);
        }
        let mut ids = Vec::new();
        // Frames of one return address are consecutive: one location each.
        let mut i = 0;
        while i < pp.frames.len() {
            let addr = pp.frames[i].addr;
            let mut j = i;
            while j < pp.frames.len() && pp.frames[j].addr == addr {
                j += 1;
            }
            let id = match location_ids.get(&addr) {
                Some(&id) => id,
                None => {
                    let lines = pp.frames[i..j]
                        .iter()
                        .map(|f| {
                            let file = f.file.clone().unwrap_or_default();
                            let key = (f.function.clone(), file.clone());
                            let function_id = match function_ids.get(&key) {
                                Some(&id) => id,
                                None => {
                                    let id = functions.len() as u64 + 1;
                                    functions.push(Function {
                                        id,
                                        name: strings.id(&crate::symbols::plain_name(&f.function)),
                                        system_name: strings.id(&f.function),
                                        filename: strings.id(&file),
                                    });
                                    function_ids.insert(key, id);
                                    id
                                }
                            };
                            Line {
                                function_id,
                                line: f.line.unwrap_or(0) as i64,
                                column: f.column.unwrap_or(0) as i64,
                            }
                        })
                        .collect();
                    let id = locations.len() as u64 + 1;
                    locations.push(Location {
                        id,
                        mapping_id: mapping_of(addr as u64),
                        address: addr as u64,
                        line: lines,
                    });
                    location_ids.insert(addr, id);
                    id
                }
            };
            ids.push(id);
            i = j;
        }
        let s = pp.stats;
        samples.push(Sample {
            location_id: ids,
            value: vec![
                s.total_blocks as i64,
                s.total_bytes as i64,
                s.live_blocks as i64,
                s.live_bytes as i64,
            ],
        });
    }
    let mut comment = if snap.estimated {
        vec![strings.id(&format!(
            "leakscope sampled mode: figures are unbiased estimates (mean {} bytes between samples)",
            crate::sample_bytes()
        ))]
    } else {
        vec![strings.id("leakscope exact mode: every block recorded")]
    };
    if let Some(note) = crate::symbols::build_info().note() {
        comment.push(strings.id(&note));
    }
    let space = strings.id("space");
    let bytes = strings.id("bytes");
    let default_sample_type = strings.id("inuse_space");
    Profile {
        sample_type,
        sample: samples,
        mapping,
        location: locations,
        function: functions,
        time_nanos: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64),
        period_type: Some(ValueType {
            r#type: space,
            unit: bytes,
        }),
        period: if snap.estimated {
            crate::sample_bytes() as i64
        } else {
            1
        },
        comment,
        default_sample_type,
        string_table: strings.table,
    }
}

/// The gzipped encoding of a profile.
pub fn encode(profile: &Profile) -> io::Result<Vec<u8>> {
    let mut gz = flate2::GzBuilder::new()
        .comment(GZIP_COMMENT)
        .write(Vec::new(), flate2::Compression::default());
    gz.write_all(&profile.encode_to_vec())?;
    gz.finish()
}

/// The gzip header comment that marks leakscope's profiles.
const GZIP_COMMENT: &[u8] = b"leakscope pprof";

/// Whether a file's first bytes are one of leakscope's profiles: gzip whose
/// header carries [`GZIP_COMMENT`].
pub(super) fn is_ours(head: &[u8]) -> bool {
    const FEXTRA: u8 = 4;
    const FNAME: u8 = 8;
    const FCOMMENT: u8 = 16;
    if head.len() < 10 || head[..3] != [0x1f, 0x8b, 8] || head[3] & FCOMMENT == 0 {
        return false;
    }
    let flags = head[3];
    let mut at = 10;
    if flags & FEXTRA != 0 {
        let Some(len) = head.get(10..12) else {
            return false;
        };
        at += 2 + u16::from_le_bytes([len[0], len[1]]) as usize;
    }
    let rest = head.get(at..).unwrap_or_default();
    let rest = if flags & FNAME != 0 {
        match rest.iter().position(|&b| b == 0) {
            Some(end) => &rest[end + 1..],
            None => return false,
        }
    } else {
        rest
    };
    rest.strip_prefix(GZIP_COMMENT)
        .is_some_and(|r| r.first() == Some(&0))
}

/// Decodes a (gzipped or plain) profile.
pub fn decode(bytes: &[u8]) -> Result<Profile, Error> {
    let raw = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        io::Read::read_to_end(&mut flate2::read::GzDecoder::new(bytes), &mut out)
            .map_err(Error::NotGzip)?;
        out
    } else {
        bytes.to_vec()
    };
    Profile::decode(raw.as_slice()).map_err(Error::NotPprof)
}

/// Writes a gzipped pprof profile of everything the recorder knows now.
pub fn write(path: impl AsRef<Path>) -> Result<Profile, Error> {
    let profile = from_snapshot(&tracker::try_snapshot()?);
    // Compressing into memory cannot fail.
    let bytes = encode(&profile).unwrap_or_default();
    super::write_atomically(path.as_ref(), &bytes, is_ours)?;
    Ok(profile)
}
