//! Progress of a long scan, drawn on stderr only when stderr is a terminal.

use std::io::IsTerminal as _;

/// Files smaller than this finish before a bar is worth drawing.
pub const PROGRESS_BAR_BYTES_MIN: u64 = 64 << 20;

/// What a scan tells about its progress.
pub trait Progress {
    fn begin(&mut self, _label: &str, _total_bytes: u64) {}
    fn advance(&mut self, _done_bytes: u64) {}
    fn end(&mut self) {}
}

/// Progress that is not shown.
#[derive(Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}

/// An indicatif bar on stderr, for files of at least [`PROGRESS_BAR_BYTES_MIN`] when stderr is
/// a terminal.
#[derive(Debug, Default)]
pub struct TerminalProgress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress for TerminalProgress {
    fn begin(&mut self, label: &str, total_bytes: u64) {
        if total_bytes < PROGRESS_BAR_BYTES_MIN || !std::io::stderr().is_terminal() {
            return;
        }
        let bar = indicatif::ProgressBar::new(total_bytes);
        let style = indicatif::ProgressStyle::with_template(
            "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        );
        if let Ok(style) = style {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(label.to_owned());
        self.bar = Some(bar);
    }

    fn advance(&mut self, done_bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done_bytes);
        }
    }

    fn end(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_captures_get_no_bar() {
        let mut progress = TerminalProgress::default();
        progress.begin("small.pcap", PROGRESS_BAR_BYTES_MIN - 1);
        assert!(progress.bar.is_none());
        progress.advance(10);
        progress.end();
    }
}
