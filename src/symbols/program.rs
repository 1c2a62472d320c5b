//! Which code is the program's own, read once from the executable.
//!
//! The crate that holds the binary's `main` is the program's wherever its
//! source lies, and so is every crate built from the same place (the same
//! package or workspace): a server installed from the registry has all its
//! code under the registry's folder, and is still the program. Every crate
//! built from outside the registry, git checkouts and the toolchain is the
//! program's too (a path dependency is the user's code).
//!
//! The executable says all this without configuration: its symbol table
//! names `main`'s crate (`mini_redis_server::main`), and each compilation
//! unit of its DWARF names its crate, its crate root's file and the folder
//! it was built in.

use std::collections::HashSet;

use super::site::is_dependency_file;

/// The program's own code, as the executable describes it.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct ProgramCode {
    /// The crate of the binary's `main` (`leaky_spider`), when the symbol
    /// table names exactly one.
    pub(crate) main_crate: Option<String>,
    /// The folder `main`'s crate was built in, when that folder is a
    /// dependency's (a registry package, a git checkout): files under it
    /// are the program's.
    pub(crate) root: Option<String>,
    /// The crates that are the program's: `main`'s, those built in the
    /// same folder, and those built from the program's own tree.
    crates: HashSet<String>,
}

/// One compilation unit as its DWARF names it: `DW_AT_name`
/// (`src/lib.rs/@/mini_redis.5b8e-cgu.0`) and `DW_AT_comp_dir`.
pub(crate) struct UnitName<'a> {
    /// The unit's name.
    pub(crate) name: &'a str,
    /// The folder it was compiled in.
    pub(crate) dir: &'a str,
}

impl UnitName<'_> {
    /// The Rust crate the unit belongs to, and the absolute path of its
    /// crate root; `None` for a unit that is not Rust's (C code).
    fn crate_and_file(&self) -> Option<(&str, String)> {
        let (file, cgu) = self.name.split_once("/@/")?;
        let krate = cgu.split('.').next().filter(|c| !c.is_empty())?;
        let file = if file.starts_with('/') {
            file.to_string()
        } else {
            format!("{}/{file}", self.dir.trim_end_matches('/'))
        };
        Some((krate, file))
    }
}

impl ProgramCode {
    /// What the units say, given `main`'s crate.
    pub(crate) fn from_units<'a>(
        main_crate: Option<&str>,
        units: impl IntoIterator<Item = UnitName<'a>>,
    ) -> ProgramCode {
        let units: Vec<UnitName<'a>> = units.into_iter().collect();
        let main_dir = main_crate.and_then(|m| {
            units
                .iter()
                .find(|u| u.crate_and_file().is_some_and(|(c, _)| c == m))
                .map(|u| u.dir.trim_end_matches('/'))
        });
        let mut crates = HashSet::new();
        let mut main_is_dependency = false;
        for u in &units {
            let Some((krate, file)) = u.crate_and_file() else {
                continue;
            };
            let same_place = main_dir.is_some_and(|d| d == u.dir.trim_end_matches('/'));
            let dependency = is_dependency_file(&file);
            if Some(krate) == main_crate && dependency {
                main_is_dependency = true;
            }
            if same_place || !dependency || Some(krate) == main_crate {
                crates.insert(krate.to_string());
            }
        }
        if let Some(m) = main_crate {
            crates.insert(m.to_string());
        }
        ProgramCode {
            main_crate: main_crate.map(str::to_string),
            root: main_dir
                .filter(|_| main_is_dependency)
                .map(|d| format!("{d}/")),
            crates,
        }
    }

    /// Whether `krate` is one of the program's crates.
    pub(crate) fn has_crate(&self, krate: &str) -> bool {
        self.crates.contains(krate)
    }

    /// Whether `file` lies in the dependency's folder that holds `main`.
    pub(crate) fn has_file(&self, file: &str) -> bool {
        self.root.as_deref().is_some_and(|r| file.starts_with(r))
    }
}

/// The crate of the binary's `main` among the executable's symbols
/// (demangled, hash removed): the one `krate::main` whose crate is not the
/// standard library's. `None` when none or several are.
pub(crate) fn main_crate_of<'a>(symbols: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut found: Option<String> = None;
    for raw in symbols {
        // Both manglings spell the name's last part as `4main`.
        if !raw.contains("4main") {
            continue;
        }
        let name = format!("{:#}", rustc_demangle::demangle(raw));
        let Some(krate) = name.strip_suffix("::main") else {
            continue;
        };
        let plain = !krate.is_empty()
            && krate
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !matches!(krate, "std" | "core" | "alloc");
        if !plain {
            continue;
        }
        match &found {
            Some(f) if f != krate => return None,
            _ => found = Some(krate.to_string()),
        }
    }
    found
}

/// The running executable's program code (read once; empty when the
/// executable cannot be read or has no DWARF).
pub(crate) fn program_code() -> &'static ProgramCode {
    static CODE: std::sync::OnceLock<ProgramCode> = std::sync::OnceLock::new();
    CODE.get_or_init(|| crate::tracker::untracked(super::dwarf::read_program_code))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGISTRY: &str = "/home/u/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f";

    #[test]
    fn a_server_installed_from_the_registry_is_the_program() {
        let server = format!("{REGISTRY}/mini-redis-0.4.1");
        let bytes = format!("{REGISTRY}/bytes-1.5.0");
        let names = [
            (
                format!("{server}/src/bin/server.rs/@/mini_redis_server.1a2b-cgu.0"),
                server.clone(),
            ),
            (
                format!("{server}/src/lib.rs/@/mini_redis.3c4d-cgu.3"),
                server.clone(),
            ),
            (
                format!("{bytes}/src/lib.rs/@/bytes.5e6f-cgu.1"),
                bytes.clone(),
            ),
            (
                "/rustc/59807616e1fa/library/std/src/lib.rs/@/std.0-cgu.0".into(),
                "/rustc/59807616e1fa".into(),
            ),
            // C code has no crate.
            ("jemalloc.c".into(), "/tmp/build".into()),
        ];
        let code = ProgramCode::from_units(
            Some("mini_redis_server"),
            names.iter().map(|(name, dir)| UnitName { name, dir }),
        );
        assert!(code.has_crate("mini_redis_server"));
        assert!(code.has_crate("mini_redis"));
        assert!(!code.has_crate("bytes"));
        assert!(!code.has_crate("std"));
        assert_eq!(code.root, Some(format!("{server}/")));
        assert!(code.has_file(&format!("{server}/src/db.rs")));
        assert!(!code.has_file(&format!("{bytes}/src/bytes.rs")));
        // A package whose name starts like the server's is another one.
        assert!(!code.has_file(&format!("{REGISTRY}/mini-redis-0.4.10/src/db.rs")));
    }

    #[test]
    fn a_program_built_from_its_own_tree_has_no_root_and_keeps_path_crates() {
        let names = [
            ("examples/spider/main.rs/@/spider.77-cgu.00", "/work/app"),
            ("src/lib.rs/@/helper.88-cgu.1", "/work/app"),
            (
                "/work/vendored/lib.rs/@/local_dep.99-cgu.0",
                "/work/vendored",
            ),
            (
                "/home/u/.cargo/registry/src/index.crates.io-1/tokio-1.0.0/src/lib.rs/@/tokio.1-cgu.0",
                "/home/u/.cargo/registry/src/index.crates.io-1/tokio-1.0.0",
            ),
        ];
        let code = ProgramCode::from_units(
            Some("spider"),
            names.iter().map(|&(name, dir)| UnitName { name, dir }),
        );
        assert_eq!(code.root, None);
        for c in ["spider", "helper", "local_dep"] {
            assert!(code.has_crate(c), "{c}");
        }
        assert!(!code.has_crate("tokio"));
    }

    #[test]
    fn main_is_the_one_plain_crate_main() {
        let legacy = "_ZN17mini_redis_server4main17h0123456789abcdefE";
        let other = "_ZN5tokio7runtime4main17h0123456789abcdefE";
        assert_eq!(
            main_crate_of([
                legacy,
                other,
                "main",
                "_ZN3std2rt10lang_start17h0123456789abcdefE"
            ]),
            Some("mini_redis_server".into())
        );
        let second = "_ZN7another4main17h0123456789abcdefE";
        assert_eq!(main_crate_of([legacy, second]), None);
        assert_eq!(main_crate_of(["main"]), None);
    }

    #[test]
    fn this_test_binary_is_read_from_its_own_debug_info() {
        let code = program_code();
        assert_eq!(code.main_crate.as_deref(), Some("leakscope"));
        assert!(code.has_crate("leakscope"));
        assert!(!code.has_crate("gimli"));
        assert_eq!(code.root, None);
    }
}
