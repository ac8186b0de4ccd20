//! Live capture of loopback traffic with tcpdump, for `sovereign demo`.
//!
//! tcpdump is started with a filter on the ports the demo's servers listen on, and is trusted to
//! be capturing once it says "listening on". Stopping is exact rather than timed: a UDP datagram
//! carrying a random marker is sent through the filter, and the capture is stopped only once the
//! marker is in the file, so every packet sent before it is in the file too (`-U` writes each
//! packet as it is captured).

use std::io::{BufRead as _, BufReader};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long tcpdump may take to start capturing, or to write the end marker.
const WAIT_MAX: Duration = Duration::from_secs(20);
/// How often the capture file is read while waiting for the end marker.
const POLL_EVERY: Duration = Duration::from_millis(20);

/// Why a capture could not be made, each with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(
        "tcpdump is not installed; install it (Debian/Ubuntu: `sudo apt-get install tcpdump`) and run again"
    )]
    Missing,
    #[error(
        "tcpdump may not capture here: {detail}\n  fix: run as root (sudo sovereign demo), or let tcpdump capture as this user: \
         `sudo setcap cap_net_raw,cap_net_admin=eip $(command -v tcpdump)`"
    )]
    NotPermitted { detail: String },
    #[error("tcpdump failed: {0}")]
    Failed(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A running tcpdump writing to `path`.
pub struct Capture {
    child: Option<Child>,
    path: PathBuf,
    marker: UdpSocket,
    marker_port: u16,
    stderr: mpsc::Receiver<String>,
}

impl Capture {
    /// Starts capturing TCP traffic to or from `ports` on the loopback interface into `path`
    /// (pcap), and returns once tcpdump is capturing.
    ///
    /// # Errors
    /// [`CaptureError::Missing`] and [`CaptureError::NotPermitted`] say how to fix the machine;
    /// anything else tcpdump reported comes back as [`CaptureError::Failed`].
    pub fn start(path: &Path, ports: &[u16]) -> Result<Capture, CaptureError> {
        let marker = UdpSocket::bind("127.0.0.1:0")?;
        let marker_port = marker.local_addr()?.port();
        let tcp = ports
            .iter()
            .map(|port| format!("port {port}"))
            .collect::<Vec<_>>()
            .join(" or ");
        let filter = if tcp.is_empty() {
            format!("udp and port {marker_port}")
        } else {
            format!("(tcp and ({tcp})) or (udp and port {marker_port})")
        };
        let mut command = Command::new("tcpdump");
        command
            .args(["-i", "lo", "-n", "-U", "-s", "0", "-w"])
            .arg(path)
            .arg(&filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if rustix::process::geteuid().is_root() {
            // As root, Debian's tcpdump switches to its own user before opening the file, which
            // then cannot write into a directory that only root may write.
            command.args(["-Z", "root"]);
        }
        let mut child = command.spawn().map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => CaptureError::Missing,
            _ => CaptureError::Io(error),
        })?;
        let stderr = child.stderr.take().expect("stderr was piped");
        let (lines_tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut capture = Capture {
            child: Some(child),
            path: path.to_owned(),
            marker,
            marker_port,
            stderr: lines,
        };
        capture.wait_until_listening()?;
        Ok(capture)
    }

    fn wait_until_listening(&mut self) -> Result<(), CaptureError> {
        let deadline = Instant::now() + WAIT_MAX;
        let mut said = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self
                .stderr
                .recv_timeout(left.min(Duration::from_millis(100)))
            {
                Ok(line) if line.contains("listening on") => return Ok(()),
                Ok(line) => said.push(line),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // tcpdump closed its stderr: it has exited.
                    let _ = self.reap();
                    return Err(classify(&said.join("\n")));
                }
            }
            if Instant::now() >= deadline {
                let _ = self.reap();
                return Err(CaptureError::Failed(format!(
                    "not capturing after {}s: {}",
                    WAIT_MAX.as_secs(),
                    said.join("; ")
                )));
            }
        }
    }

    /// Stops the capture once everything sent so far is in the file, and returns its path.
    ///
    /// # Errors
    /// When the end marker never reached the file or tcpdump failed.
    pub fn stop(mut self) -> Result<PathBuf, CaptureError> {
        let nonce = format!("sovereign-demo-end-{}", uuid::Uuid::new_v4().simple());
        self.marker
            .send_to(nonce.as_bytes(), ("127.0.0.1", self.marker_port))?;
        let deadline = Instant::now() + WAIT_MAX;
        loop {
            let written = std::fs::read(&self.path).unwrap_or_default();
            if memchr::memmem::find(&written, nonce.as_bytes()).is_some() {
                break;
            }
            if Instant::now() >= deadline {
                let _ = self.reap();
                return Err(CaptureError::Failed(format!(
                    "the end marker did not reach {} within {}s",
                    self.path.display(),
                    WAIT_MAX.as_secs()
                )));
            }
            std::thread::sleep(POLL_EVERY);
        }
        self.interrupt()?;
        Ok(self.path.clone())
    }

    /// Asks tcpdump to finish (SIGINT, as Ctrl-C would) and waits for it.
    fn interrupt(&mut self) -> Result<(), CaptureError> {
        if let Some(child) = &self.child {
            let pid = i32::try_from(child.id())
                .ok()
                .and_then(rustix::process::Pid::from_raw);
            if let Some(pid) = pid {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
            }
        }
        let status = self.reap()?;
        match status {
            // tcpdump exits 0 on SIGINT; killed by the signal is fine too.
            Some(status) if status.success() || status.code().is_none() => Ok(()),
            Some(status) => Err(CaptureError::Failed(format!(
                "tcpdump exited with {status}"
            ))),
            None => Ok(()),
        }
    }

    fn reap(&mut self) -> std::io::Result<Option<std::process::ExitStatus>> {
        match self.child.take() {
            Some(mut child) => child.wait().map(Some),
            None => Ok(None),
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn classify(said: &str) -> CaptureError {
    let lower = said.to_ascii_lowercase();
    if lower.contains("permission") || lower.contains("not permitted") {
        CaptureError::NotPermitted {
            detail: said.trim().to_owned(),
        }
    } else {
        CaptureError::Failed(if said.trim().is_empty() {
            "exited without saying why".to_owned()
        } else {
            said.trim().to_owned()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_messages_become_a_fix() {
        let error = classify(
            "tcpdump: lo: You don't have permission to perform this capture on that device\n(socket: Operation not permitted)",
        );
        assert!(matches!(error, CaptureError::NotPermitted { .. }));
        assert!(error.to_string().contains("setcap"));
        assert!(matches!(classify(""), CaptureError::Failed(_)));
    }
}
