//! What Valgrind's `dh_view.js` refuses when it loads a DHAT document.

/// Why Valgrind's viewer would refuse a DHAT document (see [`check`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// A required field is absent (of the document or a program point).
    #[error("data file is missing a field: {0}")]
    MissingField(&'static str),
    /// `dhatFileVersion` is not 2.
    #[error("data file has version number {0}, expected 2")]
    Version(String),
    /// `ftbl`, `pps` or a program point's `fs` is not an array.
    #[error("{0} is not an array")]
    NotAnArray(&'static str),
    /// `ftbl[0]` is not `"[root]"`.
    #[error("ftbl[0] is not \"[root]\"")]
    NoRoot,
    /// A program point's `fs` holds something other than an index.
    #[error("fs holds a non-index")]
    NotAnIndex,
    /// A program point with an empty `fs`.
    #[error("a program point has no frames")]
    NoFrames,
    /// A frame index that is 0 or past the end of `ftbl`.
    #[error("frame index {0} out of range")]
    FrameOutOfRange(u64),
    /// Two program points with the same frames.
    #[error("data file contains a repeated location")]
    RepeatedLocation,
}

/// Checks a DHAT document the way `dh_view.js` does when it loads one:
/// every required field, version 2, `ftbl[0] == "[root]"`, frame indices in
/// range, and no repeated location. Returns the first problem found.
pub fn check(json: &serde_json::Value) -> Result<(), Refusal> {
    let has = |obj: &serde_json::Value, fields: &[&'static str]| -> Result<(), Refusal> {
        match fields.iter().find(|f| obj.get(**f).is_none()) {
            Some(f) => Err(Refusal::MissingField(f)),
            None => Ok(()),
        }
    };
    has(
        json,
        &[
            "dhatFileVersion",
            "mode",
            "verb",
            "bklt",
            "bkacc",
            "tu",
            "Mtu",
            "cmd",
            "pid",
            "te",
            "pps",
            "ftbl",
        ],
    )?;
    if json["dhatFileVersion"] != 2 {
        return Err(Refusal::Version(json["dhatFileVersion"].to_string()));
    }
    let bklt = json["bklt"].as_bool() == Some(true);
    let bkacc = json["bkacc"].as_bool() == Some(true);
    if bklt {
        has(json, &["tg", "tuth"])?;
    }
    let ftbl = json["ftbl"].as_array().ok_or(Refusal::NotAnArray("ftbl"))?;
    if ftbl.first().and_then(|f| f.as_str()) != Some("[root]") {
        return Err(Refusal::NoRoot);
    }
    let pps = json["pps"].as_array().ok_or(Refusal::NotAnArray("pps"))?;
    let mut seen = std::collections::HashSet::new();
    for pp in pps {
        has(pp, &["tb", "tbk", "fs"])?;
        if bklt {
            has(pp, &["mb", "mbk", "gb", "gbk", "eb", "ebk"])?;
        }
        if bkacc {
            has(pp, &["rb", "wb"])?;
        }
        let fs: Vec<u64> = pp["fs"]
            .as_array()
            .ok_or(Refusal::NotAnArray("fs"))?
            .iter()
            .map(|i| i.as_u64().ok_or(Refusal::NotAnIndex))
            .collect::<Result<_, _>>()?;
        if fs.is_empty() {
            return Err(Refusal::NoFrames);
        }
        if let Some(&bad) = fs.iter().find(|&&i| i == 0 || i as usize >= ftbl.len()) {
            return Err(Refusal::FrameOutOfRange(bad));
        }
        if !seen.insert(fs) {
            return Err(Refusal::RepeatedLocation);
        }
    }
    Ok(())
}
