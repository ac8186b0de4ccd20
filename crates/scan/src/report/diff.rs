//! Comparing two scans: what appeared, disappeared or changed between a capture before and one
//! after (an update, an opt-in), the way the 2014 findings were checked.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::finding::policy::Severity;
use crate::report::{Finding, Report};

/// A finding present in both scans whose rating or destination facts differ.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub before: Finding,
    pub after: Finding,
    /// What differs: `severity`, `country`, `cross_border`, `cleartext`.
    pub fields: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diff {
    pub before_rating: Severity,
    pub after_rating: Severity,
    /// The highest severity among findings that appeared or changed.
    pub rating: Severity,
    pub appeared: Vec<Finding>,
    pub disappeared: Vec<Finding>,
    pub changed: Vec<Change>,
    pub unchanged: usize,
    pub warnings: Vec<String>,
}

type Key = (String, Vec<String>, String, String, String);

/// Findings are the same across the two scans when they are the same identifier, written the
/// same way, over the same protocol and direction, to the same remote party (host, or address
/// when there is no host). Ports and counts are not compared: they change between any two runs.
fn key(f: &Finding) -> Key {
    let remote = f.host.clone().unwrap_or_else(|| {
        if f.direction == "outbound" {
            f.dst_ip.clone()
        } else {
            f.src.clone()
        }
    });
    (
        f.identifier.as_str().to_owned(),
        f.chain.clone(),
        f.protocol.clone(),
        f.direction.clone(),
        remote,
    )
}

fn by_key(report: &Report) -> BTreeMap<Key, &Finding> {
    let mut map = BTreeMap::new();
    // Findings are sorted by severity first, so the first one per key is the worst.
    for f in &report.findings {
        map.entry(key(f)).or_insert(f);
    }
    map
}

pub fn diff(before: &Report, after: &Report) -> Diff {
    let old = by_key(before);
    let new = by_key(after);
    let mut appeared = Vec::new();
    let mut changed = Vec::new();
    let mut unchanged = 0;
    for (k, a) in &new {
        match old.get(k) {
            None => appeared.push((*a).clone()),
            Some(b) => {
                let mut fields = Vec::new();
                if a.severity != b.severity {
                    fields.push("severity".to_owned());
                }
                if a.country != b.country {
                    fields.push("country".to_owned());
                }
                if a.cross_border != b.cross_border {
                    fields.push("cross_border".to_owned());
                }
                if a.cleartext != b.cleartext {
                    fields.push("cleartext".to_owned());
                }
                if fields.is_empty() {
                    unchanged += 1;
                } else {
                    changed.push(Change {
                        before: (*b).clone(),
                        after: (*a).clone(),
                        fields,
                    });
                }
            }
        }
    }
    let disappeared: Vec<Finding> = old
        .iter()
        .filter(|(k, _)| !new.contains_key(*k))
        .map(|(_, f)| (*f).clone())
        .collect();
    let rating = appeared
        .iter()
        .map(|f| f.severity)
        .chain(changed.iter().map(|c| c.after.severity))
        .max()
        .unwrap_or(Severity::None);
    let mut warnings = before.warnings.clone();
    warnings.extend(after.warnings.iter().cloned());
    Diff {
        before_rating: before.rating,
        after_rating: after.rating,
        rating,
        appeared,
        disappeared,
        changed,
        unchanged,
        warnings,
    }
}

impl Diff {
    /// # Errors
    /// Never in practice: every field serialises.
    pub fn to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }

    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Rating before: {}  after: {}  of what appeared or changed: {}",
            self.before_rating, self.after_rating, self.rating
        );
        let line = |f: &Finding| {
            format!(
                "{:<8} {:<14} {:<40} {:<5} {} ({}) {}",
                f.severity.as_str(),
                f.identifier.as_str(),
                f.chain.join(">"),
                f.protocol,
                f.host.as_deref().unwrap_or(&f.dst_ip),
                f.country.as_deref().unwrap_or("-"),
                f.direction
            )
        };
        let _ = writeln!(out, "\nAppeared ({}):", self.appeared.len());
        for f in &self.appeared {
            let _ = writeln!(out, "+ {}", line(f));
        }
        let _ = writeln!(out, "\nDisappeared ({}):", self.disappeared.len());
        for f in &self.disappeared {
            let _ = writeln!(out, "- {}", line(f));
        }
        let _ = writeln!(out, "\nChanged ({}):", self.changed.len());
        for c in &self.changed {
            let _ = writeln!(out, "~ {}  [{}]", line(&c.after), c.fields.join(", "));
            let _ = writeln!(out, "    was {}", line(&c.before));
        }
        let _ = writeln!(out, "\nUnchanged: {}", self.unchanged);
        if !self.warnings.is_empty() {
            let _ = writeln!(out, "\nWarnings:");
            for w in &self.warnings {
                let _ = writeln!(out, "  {w}");
            }
        }
        out
    }
}
