//! The page's addresses for a view of the heap: which rows were chosen,
//! one after another, and how the blocks left are shown. A drill-down is
//! an address, not state in the browser: a reload or a shared link shows
//! the same view of the heap as it is then.
//!
//! `/heap?type=alloc::vec::Vec<u8>&site=crawl&by=via`: the blocks of the
//! row `Vec<u8>` of `bytype`, then of its row `crawl` of `bysite`, shown
//! by the reference that holds them.

use crate::heap::Kind;

/// Where the drill-down pages are served.
pub(crate) const HEAP_PATH: &str = "/heap";

/// The longest a chain of chosen rows may be.
const MAX_STEPS: usize = 8;

/// How the blocks an address chooses are shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum By {
    /// Split by a kind, largest first.
    Kind(Kind),
    /// The shortest paths from the roots (exact mode's graph).
    Paths,
    /// What retains them (exact mode's dominator tree).
    Dominators,
}

/// The views in the order the page's tabs list them, with their names in
/// addresses.
pub(crate) const VIEWS: [(&str, By); 10] = [
    ("type", By::Kind(Kind::Type)),
    ("site", By::Kind(Kind::Site)),
    ("via", By::Kind(Kind::Via)),
    ("sp", By::Paths),
    ("dominators", By::Dominators),
    ("rcs", By::Kind(Kind::Referrers)),
    ("stack", By::Kind(Kind::Stack)),
    ("size", By::Kind(Kind::Size)),
    ("age", By::Kind(Kind::Age)),
    ("thread", By::Kind(Kind::Thread)),
];

impl By {
    /// Its name in an address.
    pub(crate) fn name(self) -> &'static str {
        VIEWS
            .iter()
            .find(|(_, b)| *b == self)
            .map_or("type", |(n, _)| n)
    }

    /// Whether it reads the heap graph (exact mode's references).
    pub(crate) fn needs_graph(self) -> bool {
        matches!(
            self,
            By::Kind(Kind::Via | Kind::Referrers) | By::Paths | By::Dominators
        )
    }
}

fn kind_named(name: &str) -> Option<Kind> {
    match VIEWS.iter().find(|(n, _)| *n == name)?.1 {
        By::Kind(k) => Some(k),
        _ => None,
    }
}

/// A chain of chosen rows and a view of what they leave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Address {
    /// Each chosen row: the kind split by, and the row's label.
    pub(crate) steps: Vec<(Kind, String)>,
    /// How what is left is shown.
    pub(crate) by: By,
}

impl Address {
    /// The whole heap by type.
    pub(crate) fn top() -> Address {
        Address {
            steps: Vec::new(),
            by: By::Kind(Kind::Type),
        }
    }

    /// Reads a query string: `KIND=LABEL` pairs in order, and `by=VIEW`.
    pub(crate) fn parse(query: &str) -> Result<Address, String> {
        let mut address = Address::top();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            if key == "by" {
                address.by = VIEWS
                    .iter()
                    .find(|(n, _)| *n == value)
                    .map(|(_, b)| *b)
                    .ok_or_else(|| {
                        format!("by={value}: one of {}", names(VIEWS.iter().map(|v| v.0)))
                    })?;
                continue;
            }
            let kind = kind_named(&key).ok_or_else(|| {
                format!(
                    "unknown parameter {key}: a row is chosen by one of {}, the view by by=",
                    names(
                        VIEWS
                            .iter()
                            .filter(|(_, b)| matches!(b, By::Kind(_)))
                            .map(|v| v.0)
                    )
                )
            })?;
            if address.steps.len() == MAX_STEPS {
                return Err(format!("at most {MAX_STEPS} rows can be chosen in a row"));
            }
            address.steps.push((kind, value.into_owned()));
        }
        Ok(address)
    }

    /// The address of this page.
    pub(crate) fn href(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (kind, label) in &self.steps {
            q.append_pair(By::Kind(*kind).name(), label);
        }
        q.append_pair("by", self.by.name());
        format!("{HEAP_PATH}?{}", q.finish())
    }

    /// The same blocks shown another way.
    pub(crate) fn shown(&self, by: By) -> Address {
        Address {
            steps: self.steps.clone(),
            by,
        }
    }

    /// The blocks of one more row, shown the way that usually comes next:
    /// a type's sites, a site's types, a holder's sites.
    pub(crate) fn and_row(&self, kind: Kind, label: &str) -> Address {
        let mut steps = self.steps.clone();
        steps.push((kind, label.to_string()));
        let by = match kind {
            Kind::Type => Kind::Site,
            _ => Kind::Type,
        };
        Address {
            steps,
            by: By::Kind(by),
        }
    }

    /// The first `n` steps (a breadcrumb's link back).
    pub(crate) fn first(&self, n: usize) -> Address {
        Address {
            steps: self.steps[..n.min(self.steps.len())].to_vec(),
            by: By::Kind(match self.steps.get(n) {
                Some((kind, _)) => *kind,
                None => Kind::Type,
            }),
        }
    }
}

fn names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names.collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_reads_back_what_it_wrote() {
        let a = Address::top()
            .and_row(Kind::Type, "alloc::vec::Vec<u8>")
            .and_row(Kind::Site, "spider::crawl (main.rs:12) & more");
        assert_eq!(
            a.href(),
            "/heap?type=alloc%3A%3Avec%3A%3AVec%3Cu8%3E&site=spider%3A%3Acrawl+%28main.rs%3A12%29+%26+more&by=type"
        );
        let back = Address::parse(a.href().split_once('?').unwrap().1).unwrap();
        assert_eq!(back, a);
        assert_eq!(a.shown(By::Paths).href().rsplit('&').next(), Some("by=sp"));
        assert_eq!(
            a.first(1).steps,
            vec![(Kind::Type, "alloc::vec::Vec<u8>".into())]
        );
        assert_eq!(a.first(1).by, By::Kind(Kind::Site));
    }

    #[test]
    fn bad_addresses_are_refused_with_the_reason() {
        assert_eq!(Address::parse("").unwrap(), Address::top());
        assert!(
            Address::parse("by=nope")
                .unwrap_err()
                .starts_with("by=nope: one of type, site")
        );
        assert!(
            Address::parse("colour=red")
                .unwrap_err()
                .starts_with("unknown parameter colour")
        );
        assert!(
            Address::parse(&"type=a&".repeat(9))
                .unwrap_err()
                .contains("at most 8")
        );
        // Bytes that are not UTF-8 are read as replacement characters.
        let a = Address::parse("type=%FF").unwrap();
        assert_eq!(a.steps, vec![(Kind::Type, "\u{fffd}".into())]);
    }
}
