//! The run report as text for a terminal (JSON is the report's serde form). The pieces are
//! separate so that a caller can print each step as soon as it is done.

use std::fmt::Write as _;

use crate::journal::RequestRecord;
use crate::sim::{Behaviour, Phase, RunReport, StepReport};

fn request_line(request: &RequestRecord) -> String {
    let status = request
        .status
        .map_or_else(|| "no answer".to_owned(), |s| s.to_string());
    let carried = if request.identifiers.is_empty() {
        "no profile identifier".to_owned()
    } else {
        let items: Vec<String> = request
            .identifiers
            .iter()
            .map(|c| format!("{} ({})", c.kind, c.encoding.as_str()))
            .collect();
        format!("carries {}", items.join(", "))
    };
    format!(
        "{} {} [{}, {}] -> {status}; {carried}",
        request.method,
        request.url,
        if request.tls { "TLS" } else { "cleartext" },
        request.connect,
    )
}

/// The first line of a run.
pub fn render_header(phone: &str, behaviour: Behaviour) -> String {
    format!("phone {phone} runs the 2014 procedure, behaviour {behaviour}\n")
}

/// One step: its number, name, what it did, and each request with what it carried, or
/// "nothing sent". `previous` is the step before it, to mark where the update happened.
pub fn render_step(step: &StepReport, previous: Option<&StepReport>) -> String {
    let mut out = String::new();
    let crossed =
        step.phase == Phase::AfterUpdate && previous.is_none_or(|p| p.phase == Phase::BeforeUpdate);
    // Invariant: writing to a String cannot fail, here and below.
    if crossed {
        let _ = writeln!(out, "-- after the update --");
    }
    let _ = writeln!(out, "{:>2}. {}: {}", step.number, step.step, step.summary);
    if step.requests.is_empty() {
        let _ = writeln!(out, "      nothing sent");
    }
    for request in &step.requests {
        let _ = writeln!(out, "      {}", request_line(request));
    }
    out
}

/// The closing summary of a run.
pub fn render_footer(report: &RunReport) -> String {
    let mut out = String::new();
    let total: usize = report.steps.iter().map(|s| s.requests.len()).sum();
    let before_sign_in = report
        .steps
        .iter()
        .take_while(|s| s.step != crate::sim::Step::SignIn)
        .map(|s| s.requests.len())
        .sum::<usize>();
    let _ = write!(
        out,
        "{total} requests in {} steps, {before_sign_in} of them before sign-in",
        report.steps.len()
    );
    if let (Some(region), Some(url)) = (&report.region, &report.home_url) {
        let _ = write!(out, "; home region {region} at {url}");
    }
    if !report.backup.is_empty() {
        let kinds: Vec<&str> = report.backup.iter().map(|k| k.as_str()).collect();
        let _ = write!(out, "; backed up: {}", kinds.join(", "));
    }
    if let Some(endpoint) = &report.legacy_endpoint {
        let _ = write!(
            out,
            "; the legacy endpoint (http://{}, https://{}) received {} requests",
            endpoint.http,
            endpoint.https,
            endpoint.received.len()
        );
    }
    out.push('\n');
    out
}

/// The whole report as text.
pub fn render_text(report: &RunReport) -> String {
    let mut out = render_header(&report.phone, report.behaviour);
    let mut previous = None;
    for step in &report.steps {
        out.push_str(&render_step(step, previous));
        previous = Some(step);
    }
    out.push_str(&render_footer(report));
    out
}
