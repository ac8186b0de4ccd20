//! A throwaway three-member etcd cluster for the tests: each member on free loopback ports
//! with its data in a temp dir, started by the test that needs it and killed when the guard
//! drops; a watchdog kills the members and removes the directory when the test process ends,
//! however it ends. Shared by the cloud's and the CLI's integration tests (`#[path]`).
// Each test binary uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub const ETCD_BIN: &str = "/usr/bin/etcd";
pub const ETCDCTL_BIN: &str = "/usr/bin/etcdctl";
/// Health checks before a starting cluster counts as failed (one per 100 ms).
const HEALTH_CHECKS_MAX: usize = 300;
/// The root password of a cluster with auth on.
pub const ROOT_PASSWORD: &str = "root-test-password";

pub struct EtcdMember {
    pub name: String,
    pub client_url: String,
    child: Option<Child>,
}

pub struct EtcdCluster {
    pub members: Vec<EtcdMember>,
    dir: PathBuf,
    /// Whether auth is on (then etcdctl runs as root).
    auth: bool,
    /// With TLS on the client port: the CA file etcdctl trusts.
    ca_file: Option<PathBuf>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Fails with how to install etcd when it is missing.
fn require_etcd() {
    assert!(
        Path::new(ETCD_BIN).exists() && Path::new(ETCDCTL_BIN).exists(),
        "the directory tests need etcd 3.4 in /usr/bin (apt-get install -y etcd-server \
         etcd-client; scripts/test.sh installs them)"
    );
}

impl EtcdCluster {
    /// Starts three members and waits until every one is healthy.
    pub fn start() -> EtcdCluster {
        EtcdCluster::start_with(None)
    }

    /// Starts three members that speak TLS to clients with a certificate for 127.0.0.1 issued
    /// by a fresh CA (peers still talk plain among themselves on loopback). Returns the CA's
    /// PEM.
    pub fn start_tls() -> (EtcdCluster, String) {
        let (ca, _) = sovereign_crypto::LocalCa::generate("etcd test CA").unwrap();
        let cert = ca.issue_server_cert(&["127.0.0.1"]).unwrap();
        (
            EtcdCluster::start_with(Some((ca.cert_pem().to_owned(), cert))),
            ca.cert_pem().to_owned(),
        )
    }

    // The watchdog is never waited for on purpose: it must outlive this process.
    #[allow(clippy::zombie_processes)]
    fn start_with(tls: Option<(String, sovereign_crypto::IssuedCertificate)>) -> EtcdCluster {
        require_etcd();
        let dir = tempfile::Builder::new()
            .prefix("sovereign-etcd-")
            .tempdir()
            .unwrap()
            .keep();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut ca_file = None;
        let mut tls_args = Vec::new();
        if let Some((ca_pem, cert)) = &tls {
            let (ca, cert_file, key_file) = (
                dir.join("ca.pem"),
                dir.join("server.pem"),
                dir.join("server.key"),
            );
            std::fs::write(&ca, ca_pem).unwrap();
            std::fs::write(&cert_file, &cert.cert_pem).unwrap();
            std::fs::write(&key_file, &cert.key_pem).unwrap();
            tls_args = vec![
                "--cert-file".to_owned(),
                cert_file.display().to_string(),
                "--key-file".to_owned(),
                key_file.display().to_string(),
            ];
            ca_file = Some(ca);
        }
        let names = ["m0", "m1", "m2"];
        let ports: Vec<(u16, u16)> = names.iter().map(|_| (free_port(), free_port())).collect();
        let initial: Vec<String> = names
            .iter()
            .zip(&ports)
            .map(|(name, (_, peer))| format!("{name}=http://127.0.0.1:{peer}"))
            .collect();
        let initial = initial.join(",");
        let token = format!("sovereign-test-{}", uuid::Uuid::new_v4().simple());
        let mut members = Vec::new();
        for (name, (client, peer)) in names.iter().zip(&ports) {
            let client_url = format!("{scheme}://127.0.0.1:{client}");
            let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
            let child = Command::new(ETCD_BIN)
                .args(["--name", name])
                .arg("--data-dir")
                .arg(dir.join(name))
                .args(["--listen-client-urls", &client_url])
                .args(["--advertise-client-urls", &client_url])
                .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
                .args([
                    "--initial-advertise-peer-urls",
                    &format!("http://127.0.0.1:{peer}"),
                ])
                .args(["--initial-cluster", &initial])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", &token])
                .args(["--logger", "zap"])
                .args(&tls_args)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("starting etcd: {e}"));
            members.push(EtcdMember {
                name: (*name).to_owned(),
                client_url,
                child: Some(child),
            });
        }
        let pids: Vec<String> = members
            .iter()
            .map(|m| m.child.as_ref().unwrap().id().to_string())
            .collect();
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; kill -9 {pids} 2>/dev/null; \
             rm -rf '{dir}'",
            pid = std::process::id(),
            pids = pids.join(" "),
            dir = dir.display(),
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let cluster = EtcdCluster {
            members,
            dir,
            auth: false,
            ca_file,
        };
        cluster.wait_healthy();
        cluster
    }

    /// `etcd://host:port,.../prefix`, with `user@` when given.
    pub fn location(&self, user: Option<&str>, prefix: &str) -> String {
        let hosts: Vec<&str> = self
            .members
            .iter()
            .map(|m| {
                m.client_url
                    .trim_start_matches("http://")
                    .trim_start_matches("https://")
            })
            .collect();
        let user = user.map(|u| format!("{u}@")).unwrap_or_default();
        let scheme = if self.ca_file.is_some() {
            "etcds"
        } else {
            "etcd"
        };
        format!("{scheme}://{user}{}/{prefix}", hosts.join(","))
    }

    fn wait_healthy(&self) {
        for _ in 0..HEALTH_CHECKS_MAX {
            let healthy = self
                .etcdctl(&["endpoint", "health"])
                .map(|out| out.status.success())
                .unwrap_or(false);
            if healthy {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let logs: String = self
            .members
            .iter()
            .map(|m| {
                std::fs::read_to_string(self.dir.join(format!("{}.log", m.name)))
                    .unwrap_or_default()
            })
            .collect();
        panic!("the etcd cluster did not become healthy; logs:\n{logs}");
    }

    fn etcdctl(&self, args: &[&str]) -> std::io::Result<std::process::Output> {
        let live: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.child.is_some())
            .map(|m| m.client_url.clone())
            .collect();
        let mut command = Command::new(ETCDCTL_BIN);
        command
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", live.join(",")))
            .arg("--command-timeout=5s");
        if self.auth {
            command.arg(format!("--user=root:{ROOT_PASSWORD}"));
        }
        if let Some(ca) = &self.ca_file {
            command.arg(format!("--cacert={}", ca.display()));
        }
        command.args(args).stdin(Stdio::null()).output()
    }

    /// Runs etcdctl and panics with its output when it fails.
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = self.etcdctl(args).unwrap();
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Turns auth on with a root user; later `ctl` calls run as root.
    pub fn enable_auth(&mut self) {
        self.ctl(&["user", "add", &format!("root:{ROOT_PASSWORD}")]);
        self.ctl(&["auth", "enable"]);
        self.auth = true;
    }

    /// Kills one member at once (SIGKILL), as a crash would.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.members[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills every member.
    pub fn kill_all(&mut self) {
        for index in 0..self.members.len() {
            self.kill(index);
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        self.kill_all();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
