//! A self-contained HTML report: no script, no font, no network; pictures are inline SVG.
//!
//! Two pictures: which identifier went to which destination (a bipartite flow chart, line width
//! by count, colour by severity), and when (a timeline of first sightings per identifier).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::finding::policy::Severity;
use crate::report::diff::Diff;
use crate::report::{Finding, Report};

fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn colour(severity: Severity) -> &'static str {
    match severity {
        Severity::None => "#9e9e9e",
        Severity::Low => "#4caf50",
        Severity::Medium => "#ff9800",
        Severity::High => "#e53935",
        Severity::Critical => "#7b1fa2",
    }
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;color:#222;max-width:1200px}\
h1{margin-bottom:.2em}.rating{padding:1em;border-radius:6px;color:#fff;font-size:1.1em}\
table{border-collapse:collapse;width:100%;font-size:.85em}th,td{border-bottom:1px solid #ddd;padding:4px 6px;text-align:left;vertical-align:top}\
th{background:#f5f5f5}code{font-size:.9em;word-break:break-all}.sev{color:#fff;border-radius:3px;padding:1px 5px}\
svg text{font-size:12px;font-family:inherit}.muted{color:#666}";

fn destination(f: &Finding) -> String {
    let name = f.host.clone().unwrap_or_else(|| f.dst_ip.clone());
    let name = match &f.site {
        Some(site) if *site != name => format!("{name} [{site}]"),
        _ => name,
    };
    match &f.country {
        Some(c) => format!("{name} ({c})"),
        None => name,
    }
}

/// Identifier → destination, one line per pair, as wide as the count (log scale).
fn flow_chart(findings: &[Finding]) -> String {
    let mut left: Vec<String> = Vec::new();
    let mut right: Vec<String> = Vec::new();
    let mut links: BTreeMap<(usize, usize), (u64, Severity)> = BTreeMap::new();
    for f in findings {
        let l = f.identifier.as_str().to_owned();
        let r = destination(f);
        let li = left.iter().position(|x| *x == l).unwrap_or_else(|| {
            left.push(l);
            left.len() - 1
        });
        let ri = right.iter().position(|x| *x == r).unwrap_or_else(|| {
            right.push(r);
            right.len() - 1
        });
        let entry = links.entry((li, ri)).or_insert((0, Severity::None));
        entry.0 += f.count;
        entry.1 = entry.1.max(f.severity);
    }
    let row = 28;
    let height = (left.len().max(right.len()) * row + 20) as u32;
    // Wide enough for the longest destination label (about 7 px a character at this size).
    let label_chars = right.iter().map(|r| r.chars().count()).max().unwrap_or(0);
    let (x1, x2) = (170, 630);
    let width = (x2 + 20 + label_chars * 7).max(900);
    let y = |i: usize| (i * row + 20) as u32;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"identifiers and where they went\">"
    );
    for ((li, ri), (count, severity)) in &links {
        let stroke = 1.5 + (*count as f64).log2().max(0.0) * 1.5;
        let (ya, yb) = (y(*li), y(*ri));
        let _ = write!(
            svg,
            "<path d=\"M{x1} {ya} C{} {ya} {} {yb} {x2} {yb}\" fill=\"none\" stroke=\"{}\" stroke-opacity=\".7\" stroke-width=\"{stroke:.1}\"><title>{} → {}: {count} times, {}</title></path>",
            (x1 + x2) / 2,
            (x1 + x2) / 2,
            colour(*severity),
            esc(&left[*li]),
            esc(&right[*ri]),
            severity
        );
    }
    for (i, l) in left.iter().enumerate() {
        let _ = write!(
            svg,
            "<circle cx=\"{x1}\" cy=\"{}\" r=\"5\" fill=\"#333\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            y(i),
            x1 - 10,
            y(i) + 4,
            esc(l)
        );
    }
    for (i, r) in right.iter().enumerate() {
        let _ = write!(
            svg,
            "<circle cx=\"{x2}\" cy=\"{}\" r=\"5\" fill=\"#333\"/><text x=\"{}\" y=\"{}\">{}</text>",
            y(i),
            x2 + 10,
            y(i) + 4,
            esc(r)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// First sighting of each finding on a time axis, one row per identifier.
fn timeline(findings: &[Finding]) -> String {
    let Some(t0) = findings.iter().map(|f| f.first_seen_us).min() else {
        return String::new();
    };
    let t1 = findings.iter().map(|f| f.first_seen_us).max().unwrap_or(t0);
    let span = (t1 - t0).max(1) as f64;
    let mut rows: Vec<&str> = findings.iter().map(|f| f.identifier.as_str()).collect();
    rows.sort_unstable();
    rows.dedup();
    let row = 26;
    let (x0, x1, width) = (130.0, 860.0, 900);
    let height = rows.len() * row + 50;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"when identifiers were first seen\">"
    );
    let axis_y = rows.len() * row + 20;
    let _ = write!(
        svg,
        "<line x1=\"{x0}\" y1=\"{axis_y}\" x2=\"{x1}\" y2=\"{axis_y}\" stroke=\"#999\"/>\
<text x=\"{x0}\" y=\"{}\" class=\"muted\">{}</text><text x=\"{x1}\" y=\"{}\" text-anchor=\"end\" class=\"muted\">+{:.3} s</text>",
        axis_y + 16,
        esc(&crate::report::rfc3339(t0)),
        axis_y + 16,
        span / 1e6
    );
    for (i, name) in rows.iter().enumerate() {
        let yy = i * row + 14;
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text><line x1=\"{x0}\" y1=\"{yy}\" x2=\"{x1}\" y2=\"{yy}\" stroke=\"#eee\"/>",
            x0 - 10.0,
            yy + 4,
            esc(name)
        );
    }
    for f in findings {
        let Some(i) = rows.iter().position(|r| *r == f.identifier.as_str()) else {
            continue;
        };
        let x = if t1 == t0 {
            (x0 + x1) / 2.0
        } else {
            x0 + (f.first_seen_us - t0) as f64 / span * (x1 - x0)
        };
        let _ = write!(
            svg,
            "<circle cx=\"{x:.1}\" cy=\"{}\" r=\"6\" fill=\"{}\" fill-opacity=\".8\"><title>{} {} → {} at {}</title></circle>",
            i * row + 14,
            colour(f.severity),
            esc(f.identifier.as_str()),
            esc(&f.chain.join(">")),
            esc(&destination(f)),
            esc(&f.first_seen)
        );
    }
    svg.push_str("</svg>");
    svg
}

fn findings_table(findings: &[Finding]) -> String {
    let mut out = String::from(
        "<table><tr><th>Severity</th><th>Identifier</th><th>Decode chain</th><th>Protocol</th><th>Destination</th><th>Border</th><th>Count</th><th>First seen</th><th>Frame</th><th>Evidence</th></tr>",
    );
    for f in findings {
        let _ = write!(
            out,
            "<tr><td><span class=\"sev\" style=\"background:{}\">{}</span></td><td>{}</td><td><code>{}</code></td><td>{}{} {}</td><td>{}<br><span class=\"muted\">{}{}</span></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            colour(f.severity),
            f.severity,
            esc(f.identifier.as_str()),
            esc(&f.chain.join(" › ")),
            esc(&f.protocol),
            f.stream.map(|s| format!(" stream {s}")).unwrap_or_default(),
            esc(&f.direction),
            esc(&destination(f)),
            esc(&f.dst),
            f.site
                .as_deref()
                .map(|s| format!(" · site {}", esc(s)))
                .unwrap_or_default(),
            if f.cross_border { "crossed" } else { "" },
            f.count,
            esc(&f.first_seen),
            f.frame,
            esc(&f.evidence)
        );
    }
    out.push_str("</table>");
    out
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>\n",
        esc(title)
    )
}

pub fn report(report: &Report) -> String {
    let mut body = String::new();
    let device = if report.device.is_empty() {
        "device"
    } else {
        &report.device
    };
    let _ = write!(
        body,
        "<h1>Sovereign scan: {}</h1><p class=\"muted\">Home country {}. Countries from {}.</p>",
        esc(device),
        esc(&report.home_country),
        esc(&report.ip_country_database)
    );
    let _ = write!(
        body,
        "<div class=\"rating\" style=\"background:{}\"><b>Rating: {}</b><br>{}</div>",
        colour(report.rating),
        report.rating_label(),
        esc(&report.advisory)
    );
    if !report.findings.is_empty() {
        let _ = write!(
            body,
            "<h2>Which identifier went where</h2>{}<h2>When</h2>{}<h2>Findings</h2>{}",
            flow_chart(&report.findings),
            timeline(&report.findings),
            findings_table(&report.findings)
        );
    }
    tls_flows(&mut body, &report.tls_flows);
    body.push_str("<h2>Captures</h2><ul>");
    for c in &report.captures {
        let _ = write!(
            body,
            "<li>{} ({:?}): {} frames, {} bytes, {} tcp flows</li>",
            esc(&c.path),
            c.format,
            c.frames,
            c.bytes,
            c.tcp_flows
        );
    }
    body.push_str("</ul>");
    warnings(&mut body, &report.warnings);
    page("Sovereign scan", &body)
}

/// Every TLS connection, and whether its content was visible to the scan.
fn tls_flows(body: &mut String, flows: &[crate::report::TlsFlowReport]) {
    if flows.is_empty() {
        return;
    }
    let hidden = flows.iter().filter(|f| !f.decrypted).count();
    let _ = write!(
        body,
        "<h2>TLS connections</h2><p class=\"muted\">{} connections, {hidden} of them not decrypted: \
         their content was not visible, only where they went.</p>\
         <table><tr><th>content</th><th>host (SNI)</th><th>destination</th><th>country</th>\
         <th>version</th><th>cipher</th><th>bytes out / in</th><th>first seen</th></tr>",
        flows.len()
    );
    for f in flows {
        let content = if f.decrypted {
            "<span class=\"sev\" style=\"background:#4caf50\">decrypted</span>".to_owned()
        } else {
            format!(
                "<span class=\"sev\" style=\"background:#9e9e9e\">not visible</span> <span class=\"muted\">{}</span>",
                esc(f.note.as_deref().unwrap_or(""))
            )
        };
        let _ = write!(
            body,
            "<tr><td>{content}</td><td>{}</td><td><code>{}</code>{}</td><td>{}{}</td><td>{}</td><td>{}</td><td>{} / {}</td><td>{}</td></tr>",
            esc(f.host.as_deref().unwrap_or("-")),
            esc(&f.dst),
            f.site
                .as_deref()
                .map(|s| format!(" <span class=\"muted\">· site {}</span>", esc(s)))
                .unwrap_or_default(),
            esc(f.country.as_deref().unwrap_or("-")),
            if f.cross_border { " (crossed)" } else { "" },
            esc(f.version.as_deref().unwrap_or("-")),
            esc(f.cipher.as_deref().unwrap_or("-")),
            f.bytes_out,
            f.bytes_in,
            esc(f.first_seen.as_deref().unwrap_or("-")),
        );
    }
    body.push_str("</table>");
}

fn warnings(body: &mut String, warnings: &[String]) {
    if warnings.is_empty() {
        return;
    }
    body.push_str("<h2>Warnings</h2><ul>");
    for w in warnings {
        let _ = write!(body, "<li>{}</li>", esc(w));
    }
    body.push_str("</ul>");
}

pub fn diff(diff: &Diff) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>Sovereign scan: before and after</h1><div class=\"rating\" style=\"background:{}\"><b>Before: {} → after: {}</b><br>Worst of what appeared or changed: {}</div>",
        colour(diff.rating),
        diff.before_rating,
        diff.after_rating,
        diff.rating
    );
    let _ = write!(body, "<h2>Appeared ({})</h2>", diff.appeared.len());
    if !diff.appeared.is_empty() {
        body.push_str(&flow_chart(&diff.appeared));
        body.push_str(&findings_table(&diff.appeared));
    }
    let _ = write!(body, "<h2>Disappeared ({})</h2>", diff.disappeared.len());
    if !diff.disappeared.is_empty() {
        body.push_str(&findings_table(&diff.disappeared));
    }
    let _ = write!(body, "<h2>Changed ({})</h2>", diff.changed.len());
    if !diff.changed.is_empty() {
        let after: Vec<Finding> = diff.changed.iter().map(|c| c.after.clone()).collect();
        body.push_str(&findings_table(&after));
    }
    let _ = write!(body, "<p>Unchanged: {}</p>", diff.unchanged);
    warnings(&mut body, &diff.warnings);
    page("Sovereign scan diff", &body)
}
