//! Valgrind's DHAT viewer (`dh_view.html`) as one self-contained page with
//! a file loaded, for `leakscope view`.

use std::path::Path;

use super::DhatFile;
use crate::export::Error;

/// Where Valgrind's viewer may be installed.
const VIEWER_DIRS: &[&str] = &[
    "/usr/libexec/valgrind",
    "/usr/lib/x86_64-linux-gnu/valgrind",
    "/usr/lib/valgrind",
    "/usr/local/libexec/valgrind",
];

/// The directory holding `dh_view.html`, `dh_view.js` and `dh_view.css`
/// (`$VALGRIND_LIB` first), if installed.
pub fn viewer_dir() -> Option<std::path::PathBuf> {
    let env = std::env::var_os("VALGRIND_LIB").map(std::path::PathBuf::from);
    env.into_iter()
        .chain(VIEWER_DIRS.iter().map(std::path::PathBuf::from))
        .find(|d| d.join("dh_view.js").is_file() && d.join("dh_view.css").is_file())
}

/// How a page [`viewer_page`] made begins: [`write_viewer_page`] replaces
/// only a file that begins so.
const VIEWER_PAGE_HEAD: &str =
    "<!DOCTYPE html>\n<!-- leakscope view: Valgrind's DHAT viewer with a file loaded -->";

/// Writes `page` (from [`viewer_page`]) to `path` by the rules of every
/// dump: through a temporary file renamed into place, never following a
/// symbolic link, and replacing only a page written the same way, never
/// another file (not the DHAT file it shows, whatever it is named).
pub fn write_viewer_page(path: impl AsRef<Path>, page: &str) -> Result<(), Error> {
    crate::export::write_atomically(path.as_ref(), page.as_bytes(), |head| {
        head.starts_with(VIEWER_PAGE_HEAD.as_bytes())
    })
}

/// A self-contained HTML page: Valgrind's viewer with `file` already
/// loaded (its script and style inlined, the data embedded and handed to
/// the viewer's own `buildTree`/`displayTree` once the page has loaded).
pub fn viewer_page(file: &DhatFile, name: &str, viewer: &Path) -> Result<String, Error> {
    let read = |f: &str| {
        let path = viewer.join(f);
        std::fs::read_to_string(&path).map_err(|source| Error::Read { path, source })
    };
    let js = read("dh_view.js")?;
    let css = read("dh_view.css")?;
    // "</" cannot appear inside a <script>: escape it in the data.
    let data = serde_json::to_string(file)
        .unwrap_or_default()
        .replace("</", "<\\/");
    let name = serde_json::to_string(name)
        .unwrap_or_default()
        .replace("</", "<\\/");
    Ok(format!(
        "{VIEWER_PAGE_HEAD}\n<html>\n<head>\n<meta charset=\"UTF-8\">\n<style>\n{css}\n</style>\n\
         <script>\n{js}\n</script>\n</head>\n<body onload=\"onLoad()\">\n<script>\n\
         window.addEventListener('load', function() {{\n  tryFunc(function() {{\n    \
         gFilename = {name};\n    document.title = kDocumentTitle + ' - ' + gFilename;\n    \
         gData = {data};\n    buildTree();\n    displayTree(0, 0, 0);\n  }});\n}});\n\
         </script>\n</body>\n</html>\n"
    ))
}
