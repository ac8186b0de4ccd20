//! TLS key logs in the NSS `SSLKEYLOGFILE` format: what `--keylog FILE` and a pcapng Decryption
//! Secrets Block hold.
//!
//! Each line is `LABEL <client random, 64 hex digits> <secret, hex>`; `#` starts a comment. We keep
//! the labels that decrypt TLS 1.2 (`CLIENT_RANDOM`, the master secret) and TLS 1.3 (the
//! handshake and first application traffic secrets of both sides, and the client's 0-RTT early
//! traffic secret). Other labels (`EXPORTER_SECRET`, `RSA`, ...) are skipped.
//!
//! A line we cannot read is an error naming its origin and line number, not a warning: a key
//! log with a typo would otherwise silently turn into "content not visible" for every flow, and
//! a clean-looking report from an instrument whose keys did not load is the wrong answer.
//! Secrets embedded in a capture are the capture's data, so there the caller turns the same
//! error into a report warning and keeps the lines that did parse (see [`KeyLog::add_text`]).
//!
//! ```
//! use sovereign_scan::tls::keylog::KeyLog;
//!
//! let mut keys = KeyLog::default();
//! let line = format!("CLIENT_RANDOM {} {}\n", "ab".repeat(32), "cd".repeat(48));
//! keys.add_text(&line, "sslkeys.txt").unwrap();
//! assert_eq!(keys.len(), 1);
//! ```

use std::collections::HashMap;

use zeroize::Zeroizing;

/// Largest key log file we read.
pub const KEYLOG_BYTES_MAX: u64 = 64 << 20;
/// Most TLS sessions (client randoms) one run keeps keys for.
pub const KEYLOG_SESSIONS_MAX: usize = 1 << 20;
/// Longest line of a key log: a label, 64 hex digits and a secret of at most 64 bytes.
pub const KEYLOG_LINE_BYTES_MAX: usize = 512;
/// Bytes of a TLS client random.
pub const CLIENT_RANDOM_BYTES: usize = 32;

/// The secrets logged for one TLS session, found by its client random.
#[derive(Clone, Default)]
pub struct Secrets {
    /// TLS 1.2: the 48-byte master secret (`CLIENT_RANDOM`).
    pub master: Option<Zeroizing<Vec<u8>>>,
    /// TLS 1.3 0-RTT early data.
    pub client_early: Option<Zeroizing<Vec<u8>>>,
    pub client_handshake: Option<Zeroizing<Vec<u8>>>,
    pub server_handshake: Option<Zeroizing<Vec<u8>>>,
    pub client_traffic_0: Option<Zeroizing<Vec<u8>>>,
    pub server_traffic_0: Option<Zeroizing<Vec<u8>>>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a secret.
        f.debug_struct("Secrets")
            .field("master", &self.master.is_some())
            .field("client_early", &self.client_early.is_some())
            .field("client_handshake", &self.client_handshake.is_some())
            .field("server_handshake", &self.server_handshake.is_some())
            .field("client_traffic_0", &self.client_traffic_0.is_some())
            .field("server_traffic_0", &self.server_traffic_0.is_some())
            .finish()
    }
}

/// A line of a key log that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key log {origin}, line {line}: {message}")]
pub struct KeyLogError {
    /// The file (or capture block) the line came from.
    pub origin: String,
    /// From 1.
    pub line: usize,
    pub message: String,
}

/// Secrets by client random.
#[derive(Debug, Clone, Default)]
pub struct KeyLog {
    sessions: HashMap<[u8; CLIENT_RANDOM_BYTES], Secrets>,
}

#[derive(Clone, Copy)]
enum Label {
    Master,
    ClientEarly,
    ClientHandshake,
    ServerHandshake,
    ClientTraffic0,
    ServerTraffic0,
}

impl KeyLog {
    /// Adds every line of `text`; `origin` names it in errors.
    ///
    /// # Errors
    /// At the first line that is neither blank, a comment, nor `LABEL HEX HEX` with a client
    /// random of 32 bytes, and, for the labels we use, a secret of the right length (48 bytes
    /// for `CLIENT_RANDOM`, 32 or 48 for TLS 1.3). Lines before it are kept.
    pub fn add_text(&mut self, text: &str, origin: &str) -> Result<(), KeyLogError> {
        for (index, line) in text.lines().enumerate() {
            self.add_line(line).map_err(|message| KeyLogError {
                origin: origin.to_owned(),
                line: index + 1,
                message,
            })?;
        }
        Ok(())
    }

    /// Adds every line of `text` that reads, skipping the others: for secrets found inside a
    /// capture, where a bad line is the capture's problem and becomes a warning. Returns how
    /// many lines were skipped and the first error.
    pub fn add_text_skipping_bad_lines(
        &mut self,
        text: &str,
        origin: &str,
    ) -> (usize, Option<KeyLogError>) {
        let mut skipped = 0;
        let mut first = None;
        for (index, line) in text.lines().enumerate() {
            if let Err(message) = self.add_line(line) {
                skipped += 1;
                first.get_or_insert(KeyLogError {
                    origin: origin.to_owned(),
                    line: index + 1,
                    message,
                });
            }
        }
        (skipped, first)
    }

    fn add_line(&mut self, line: &str) -> Result<(), String> {
        // As Wireshark reads a key log: a byte-order mark (Notepad), CR line ends (`lines`
        // leaves a lone `\r`), surrounding whitespace and a trailing `\` (a line pasted from a
        // shell continuation) are not part of the line, and anything after the secret is
        // ignored.
        let line = line.trim_start_matches('\u{feff}').trim();
        let line = line.strip_suffix('\\').unwrap_or(line).trim_end();
        if line.is_empty() || line.starts_with('#') {
            return Ok(());
        }
        if line.len() > KEYLOG_LINE_BYTES_MAX {
            return Err(format!(
                "line is {} bytes long, more than {KEYLOG_LINE_BYTES_MAX}",
                line.len()
            ));
        }
        let mut fields = line.split_ascii_whitespace();
        let (Some(label), Some(random), Some(secret)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return Err(
                "expected three fields: LABEL CLIENT_RANDOM SECRET (NSS SSLKEYLOGFILE format)"
                    .to_owned(),
            );
        };
        // Every NSS label is upper case: a line of prose is a mistake to report, not a
        // future label to skip.
        if !label
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(format!(
                "{label:?} is not a key log label; expected LABEL CLIENT_RANDOM SECRET (NSS SSLKEYLOGFILE format)"
            ));
        }
        let label = match label {
            "CLIENT_RANDOM" => Label::Master,
            "CLIENT_EARLY_TRAFFIC_SECRET" => Label::ClientEarly,
            "CLIENT_HANDSHAKE_TRAFFIC_SECRET" => Label::ClientHandshake,
            "SERVER_HANDSHAKE_TRAFFIC_SECRET" => Label::ServerHandshake,
            "CLIENT_TRAFFIC_SECRET_0" => Label::ClientTraffic0,
            "SERVER_TRAFFIC_SECRET_0" => Label::ServerTraffic0,
            // Labels we do not decrypt with (EXPORTER_SECRET, RSA, ...) and future ones are
            // skipped without looking at their values.
            _ => return Ok(()),
        };
        let random = hex(random).ok_or_else(|| format!("client random {random:?} is not hex"))?;
        let random: [u8; CLIENT_RANDOM_BYTES] = random.try_into().map_err(|r: Vec<u8>| {
            format!(
                "client random is {} bytes, expected {CLIENT_RANDOM_BYTES}",
                r.len()
            )
        })?;
        // The secret is not quoted back: an error message may end up in a shared log.
        let secret = Zeroizing::new(hex(secret).ok_or("secret is not hex")?);
        match (label, secret.len()) {
            (Label::Master, 48) => {}
            (Label::Master, n) => return Err(format!("master secret is {n} bytes, expected 48")),
            (_, 32 | 48) => {}
            (_, n) => {
                return Err(format!(
                    "traffic secret is {n} bytes, expected 32 (SHA-256) or 48 (SHA-384)"
                ));
            }
        }
        if !self.sessions.contains_key(&random) && self.sessions.len() >= KEYLOG_SESSIONS_MAX {
            return Err(format!(
                "more than {KEYLOG_SESSIONS_MAX} tls sessions in the key logs"
            ));
        }
        let entry = self.sessions.entry(random).or_default();
        let slot = match label {
            Label::Master => &mut entry.master,
            Label::ClientEarly => &mut entry.client_early,
            Label::ClientHandshake => &mut entry.client_handshake,
            Label::ServerHandshake => &mut entry.server_handshake,
            Label::ClientTraffic0 => &mut entry.client_traffic_0,
            Label::ServerTraffic0 => &mut entry.server_traffic_0,
        };
        *slot = Some(secret);
        Ok(())
    }

    /// The secrets logged for the session with this client random.
    pub fn get(&self, client_random: &[u8; CLIENT_RANDOM_BYTES]) -> Option<&Secrets> {
        self.sessions.get(client_random)
    }

    /// How many sessions have secrets.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

fn hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 == 1 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    text.as_bytes()
        .chunks_exact(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_read_or_rejected_with_their_number() {
        let random = "0a".repeat(32);
        let ok = [
            format!("CLIENT_RANDOM {random} {}", "11".repeat(48)),
            format!("  CLIENT_TRAFFIC_SECRET_0 {random} {}  ", "22".repeat(32)),
            format!(
                "SERVER_HANDSHAKE_TRAFFIC_SECRET {random} {}",
                "33".repeat(48)
            ),
            format!("EXPORTER_SECRET {random} {}", "44".repeat(32)),
            format!("SOMETHING_NEW whatever {}", "zz"),
            "# a comment".to_owned(),
            String::new(),
        ];
        let mut keys = KeyLog::default();
        keys.add_text(&ok.join("\n"), "k.txt").unwrap();
        // Lines as Wireshark takes them (issue 11): CRLF, a BOM, a trailing backslash, lowercase
        // hex, trailing whitespace, a field after the secret.
        let wireshark = format!(
            "\u{feff}# written by notepad\r\nCLIENT_HANDSHAKE_TRAFFIC_SECRET {random} {}\\\r\nSERVER_TRAFFIC_SECRET_0 {} {} \t\r\nCLIENT_EARLY_TRAFFIC_SECRET {random} {} extra\n",
            "ab".repeat(32),
            random.to_uppercase(),
            "cd".repeat(48),
            "ef".repeat(32),
        );
        keys.add_text(&wireshark, "w.txt").unwrap();
        let s = keys.get(&[0x0a; 32]).unwrap();
        assert!(s.client_handshake.is_some());
        assert_eq!(s.server_traffic_0.as_deref().map(Vec::len), Some(48));
        assert!(s.client_early.is_some());
        let mut keys = KeyLog::default();
        keys.add_text(&ok.join("\n"), "k.txt").unwrap();
        assert_eq!(keys.len(), 1);
        let s = keys.get(&[0x0a; 32]).unwrap();
        assert_eq!(s.master.as_deref().map(Vec::len), Some(48));
        assert_eq!(s.client_traffic_0.as_deref().map(Vec::len), Some(32));
        assert!(s.server_traffic_0.is_none());

        let bad = [
            ("CLIENT_RANDOM abc", "three fields"),
            ("not a key log line", "not a key log label"),
            (&*format!("CLIENT_RANDOM {random} 1122"), "expected 48"),
            (
                &*format!("CLIENT_RANDOM {} {}", "0a".repeat(31), "11".repeat(48)),
                "31 bytes",
            ),
            (
                &*format!("CLIENT_RANDOM {random} {}x", "11".repeat(48)),
                "not hex",
            ),
            (
                &*format!("CLIENT_TRAFFIC_SECRET_0 {random} {}", "11".repeat(40)),
                "40 bytes",
            ),
            (
                &*format!("CLIENT_RANDOM {random} {}", "1".repeat(600)),
                "more than 512",
            ),
        ];
        for (line, expected) in bad {
            let text = format!("# first\n{line}\n");
            let err = KeyLog::default().add_text(&text, "k.txt").unwrap_err();
            assert_eq!(err.line, 2, "{line}");
            let message = err.to_string();
            assert!(message.starts_with("key log k.txt, line 2: "), "{message}");
            assert!(message.contains(expected), "{line}: {message}");
            assert!(
                !message.contains(&"11".repeat(48)),
                "secret quoted: {message}"
            );
        }
    }
}
