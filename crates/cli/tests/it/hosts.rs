//! Issue 10, item 4: the hostile-site suite on real separate hosts. Every region runs as its own
//! `sovereign serve --region` process in its own network namespace, with its own data
//! directory, reached over a veth pair and a bridge at its own 10.213.0.x address; so do the
//! three etcd members of the directory, a rogue site that holds sg-singapore's real keys (copied
//! from that site's data directory), and the phone (every client request is `curl` run in the
//! phone's namespace). Each run's namespaces form a network of their own that no other
//! namespace, the machine's own included, is connected to, so the fixed addresses never meet
//! anything else. One test shares the hosts across named steps; destructive faults come last.
//!
//! The rogue is this test binary run again in the rogue's namespace with [`ROGUE_JOB_ENV`]
//! naming a job file ([`rogue_role`]): it signs requests with the stolen key through the
//! federation's own signing code, or builds them by hand to replay or tamper with them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sovereign_cloud::federation::{
    Federation, PEER_CALL_TIMEOUT, PEER_REQUEST_WINDOW_MS, load_or_create_identity,
};
use sovereign_cloud::placement::{
    USER_ACCESS_PATH, USER_DELETE_PATH, USER_EXPORT_PATH, USER_STATS_PATH,
};
use sovereign_cloud::routes::messages::FORWARD_PATH;
use sovereign_cloud::sites::FederationFile;
use sovereign_model::RegionId;

/// Set (to a job file) when this test binary runs as the rogue site.
const ROGUE_JOB_ENV: &str = "SOVEREIGN_HOSTS_ROGUE_JOB";
/// The network every run builds for itself (`/24`, one bridge).
const NET: &str = "10.213.0";
/// Each site's port at its own address.
const SITE_PORT: u16 = 8443;
/// Health checks before a starting host counts as failed (one per 100 ms).
const HEALTH_CHECKS_MAX: usize = 300;
/// How long past the federation's deadline a request that needs a dead site may take: the
/// caller's own work and the phone's connection, not a second deadline.
const DEAD_SITE_MARGIN: Duration = Duration::from_secs(3);
const PASSWORD: &str = "correct horse battery";
/// How long the sites stay idle to show their directory watch survives: longer than etcd
/// takes to close a connection that pings too often (three pings at the old 2 s, then 8 s).
const IDLE_WATCH: Duration = Duration::from_secs(10);

const BOB: &str = "+919876543210";
const CAROL: &str = "+919811122233";
const PRIYA: &str = "+919822233344";
const RAVI: &str = "+919833344455";
const DAVE: &str = "+6591234567";
const MEI: &str = "+6598765432";
const OLIVIA: &str = "+15035550123";
const NOBODY: &str = "+919800000001";
const ASHA: &str = "+919844455566";
/// The etcd password of the operator's migration user (README: moves write both homes' keys).
const MIGRATOR_PASSWORD: &str = "pw-migrator";

fn region(id: &str) -> RegionId {
    RegionId::parse(id).unwrap()
}

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// Runs a command to completion and panics with its output when it fails.
fn run(command: &mut Command) -> String {
    let out = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ip(args: &[&str]) -> String {
    run(Command::new("ip").args(args))
}

/// Fails, saying how to get it, when something this suite needs is missing. Never a skip: CI
/// runs as root with everything installed by scripts/test.sh.
fn require_hosts() {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    assert!(
        root,
        "the separate-hosts suite creates network namespaces and must run as root \
         (CI does; run `sudo -E cargo test -p sovereign --test it hosts`)"
    );
    for (tool, package) in [
        ("ip", "iproute2"),
        ("curl", "curl"),
        ("etcd", "etcd-server"),
        ("etcdctl", "etcd-client"),
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "the separate-hosts suite needs `{tool}` (apt-get install -y {package}; \
             scripts/test.sh installs it)"
        );
    }
}

/// The root password of the directory's etcd.
const ETCD_ROOT_PASSWORD: &str = "root-hosts-password";

/// A site's etcd password (each site has its own user, `site-<region>`).
fn etcd_password(region: &str) -> String {
    format!("pw-{region}")
}

/// `etcdctl` run on host `ns` against `endpoints`, as `user` (`name:password`) when given.
fn etcdctl(ns: &str, endpoints: &str, user: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut command = Net::command(ns, "etcdctl");
    command
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .arg("--command-timeout=5s");
    if let Some(user) = user {
        command.arg(format!("--user={user}"));
    }
    command.args(args).stdin(Stdio::null()).output().unwrap()
}

/// As [`etcdctl`], as root, panicking when it fails.
fn etcd_root(ns: &str, endpoints: &str, args: &[&str]) -> String {
    let root = format!("root:{ETCD_ROOT_PASSWORD}");
    let out = etcdctl(ns, endpoints, Some(&root), args);
    assert!(
        out.status.success(),
        "etcdctl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Users and roles as README gives them: each site reads `/sovereign/dir/` and writes only
/// `/sovereign/dir/<its region>/`; then auth on.
fn grant_site_roles(ns: &str, endpoints: &str, regions: &[&str]) {
    let ctl = |args: &[&str]| {
        let out = etcdctl(ns, endpoints, None, args);
        assert!(out.status.success(), "etcdctl {args:?}: {out:?}");
    };
    for region in regions {
        let name = format!("site-{region}");
        ctl(&["role", "add", &name]);
        ctl(&[
            "role",
            "grant-permission",
            &name,
            "--prefix=true",
            "read",
            "/sovereign/dir/",
        ]);
        let own = format!("/sovereign/dir/{region}/");
        ctl(&[
            "role",
            "grant-permission",
            &name,
            "--prefix=true",
            "readwrite",
            &own,
        ]);
        ctl(&["user", "add", &format!("{name}:{}", etcd_password(region))]);
        ctl(&["user", "grant-role", &name, &name]);
    }
    // The operator's migration user: a move rewrites the user's keys from the old home's
    // prefix to the new one's, and keeps its journal beside them.
    ctl(&["role", "add", "migrator"]);
    ctl(&[
        "role",
        "grant-permission",
        "migrator",
        "--prefix=true",
        "readwrite",
        "/sovereign/",
    ]);
    ctl(&["user", "add", &format!("migrator:{MIGRATOR_PASSWORD}")]);
    ctl(&["user", "grant-role", "migrator", "migrator"]);
    ctl(&["user", "add", &format!("root:{ETCD_ROOT_PASSWORD}")]);
    ctl(&["auth", "enable"]);
}

/// One run's network: a hub namespace holding the bridge, and one namespace per host with a
/// veth pair to it. Dropping it ends every process started in it and deletes the namespaces;
/// a watchdog does the same if this process dies first.
struct Net {
    prefix: String,
    hub: String,
    hosts: Vec<String>,
    children: Vec<(String, Child)>,
}

impl Net {
    // The watchdog is never waited for on purpose: it must outlive this process.
    #[allow(clippy::zombie_processes)]
    fn new() -> Net {
        let prefix = format!("sv{}", std::process::id());
        let hub = format!("{prefix}-hub");
        ip(&["netns", "add", &hub]);
        let net = Net {
            prefix: prefix.clone(),
            hub: hub.clone(),
            hosts: Vec::new(),
            children: Vec::new(),
        };
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &hub, "link", "set", "br0", "up"]);
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             for ns in $(ip netns list | cut -d' ' -f1 | grep '^{prefix}-'); do \
             ip netns pids $ns | xargs -r kill -9; ip netns del $ns; done",
            pid = std::process::id(),
        );
        // In a session of its own, so a signal to the test's process group (a timeout, ^C)
        // does not take the watchdog with it.
        Command::new("setsid")
            .args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        net
    }

    /// A new host `name` at `NET.last`; returns its namespace.
    fn host(&mut self, name: &str, last: u8) -> String {
        let ns = format!("{}-{name}", self.prefix);
        ip(&["netns", "add", &ns]);
        self.hosts.push(ns.clone());
        let port = format!("h{last}");
        ip(&[
            "-n", &self.hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
            &ns,
        ]);
        ip(&["-n", &self.hub, "link", "set", &port, "master", "br0", "up"]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{NET}.{last}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ns
    }

    /// `program args` run inside `ns`.
    fn command(ns: &str, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", ns, program]);
        command
    }

    fn spawn(&mut self, name: &str, mut command: Command, log: &Path) -> usize {
        let file = std::fs::File::create(log).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("{command:?}: {e}"));
        self.children.push((name.to_owned(), child));
        self.children.len() - 1
    }

    /// Kills a process this net started (SIGKILL, as a crash would).
    fn kill(&mut self, name: &str) {
        for (n, child) in &mut self.children {
            if n == name {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in self.hosts.iter().chain(std::iter::once(&self.hub)) {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// What a site answered the phone.
#[derive(Debug)]
struct Reply {
    status: u16,
    content_type: String,
    body: Value,
    took: Duration,
}

impl Reply {
    fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
}

/// The phone: `curl` in its own namespace. It trusts each site through that site's own CA
/// (every local CA has the same name, so one bundle of all of them would not do for OpenSSL).
struct Phone {
    ns: String,
    /// Every site's CA, for the rogue's client (rustls tries each root of a name).
    ca_bundle: PathBuf,
}

impl Phone {
    fn call(
        &self,
        ca: &Path,
        url: &str,
        method: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        let mut command = Net::command(&self.ns, "curl");
        command
            .args(["-sS", "--max-time", "30", "-X", method, "--cacert"])
            .arg(ca)
            .args(["-H", "content-type: application/json"])
            .args(["-w", "\n%{content_type}\n%{http_code}"]);
        if let Some(token) = token {
            command.args(["-H", &format!("authorization: Bearer {token}")]);
        }
        if let Some(body) = body {
            command.args(["--data-binary", &body.to_string()]);
        }
        command.arg(url);
        let started = Instant::now();
        let out = run(&mut command);
        let took = started.elapsed();
        let mut parts = out.rsplitn(3, '\n');
        let status = parts.next().unwrap().trim().parse().unwrap();
        let content_type = parts.next().unwrap_or("").to_owned();
        let body = serde_json::from_str(parts.next().unwrap_or("")).unwrap_or(Value::Null);
        Reply {
            status,
            content_type,
            body,
            took,
        }
    }
}

struct Site {
    region: &'static str,
    ns: String,
    addr: String,
    dir: PathBuf,
}

impl Site {
    fn url(&self) -> String {
        format!("https://{}:{SITE_PORT}", self.addr)
    }

    fn code_for(&self, phone: &str) -> String {
        let outbox = std::fs::read_to_string(self.dir.join("sms-outbox.jsonl")).unwrap();
        outbox
            .lines()
            .rev()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .find(|m| m["to"] == phone)
            .map(|m| m["code"].as_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("no SMS to {phone}"))
    }
}

/// The whole world of one run.
struct World {
    net: Net,
    root: tempfile::TempDir,
    etcd: Vec<String>,
    sites: Vec<Site>,
    phone: Phone,
    rogue_ns: String,
}

impl World {
    fn site(&self, region: &str) -> &Site {
        self.sites.iter().find(|s| s.region == region).unwrap()
    }

    fn call(
        &self,
        region: &str,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let site = self.site(region);
        let url = format!("{}{path}", site.url());
        self.phone.call(
            &site.dir.join("tls/ca.pem"),
            &url,
            method,
            token,
            body.as_ref(),
        )
    }

    /// Signs up `phone` at `region`, signs in, grants messaging; returns the token.
    fn user(&self, region: &str, phone: &str) -> String {
        let reply = self.call(
            region,
            "POST",
            "/v1/accounts",
            None,
            Some(json!({"phone": phone, "password": PASSWORD})),
        );
        assert_eq!(reply.status, 202, "sign-up {phone}: {reply:?}");
        let code = self.site(region).code_for(phone);
        let body = json!({"verification_id": reply.body["verification_id"], "code": code});
        let reply = self.call(region, "POST", "/v1/accounts/verify", None, Some(body));
        assert_eq!(reply.status, 201, "verify {phone}: {reply:?}");
        let token = self.sign_in(region, phone);
        let reply = self.call(
            region,
            "PUT",
            "/v1/consents/messaging",
            Some(&token),
            Some(json!({"notice_version": 1})),
        );
        assert_eq!(reply.status, 200, "{reply:?}");
        token
    }

    fn sign_in(&self, region: &str, phone: &str) -> String {
        let body = json!({"phone": phone, "password": PASSWORD, "device_name": "phone"});
        let reply = self.call(region, "POST", "/v1/sessions", None, Some(body));
        assert_eq!(reply.status, 201, "sign-in {phone}: {reply:?}");
        reply.body["token"].as_str().unwrap().to_owned()
    }

    fn inbox(&self, region: &str, token: &str) -> Vec<(String, String)> {
        let reply = self.call(region, "GET", "/v1/messages", Some(token), None);
        assert_eq!(reply.status, 200, "{reply:?}");
        reply.body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["box"] == "inbox")
            .map(|m| {
                (
                    m["from"].as_str().unwrap_or("").to_owned(),
                    m["body"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    }

    /// The etcd members' client endpoints.
    fn etcd_endpoints(&self) -> String {
        self.etcd
            .iter()
            .map(|addr| format!("http://{addr}:2379"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Which member (index) leads the etcd cluster now.
    fn etcd_leader(&self) -> usize {
        let out = etcd_root(
            &self.phone.ns,
            &self.etcd_endpoints(),
            &["endpoint", "status", "-w", "json"],
        );
        let status: Value = serde_json::from_str(&out).unwrap();
        let members = status.as_array().unwrap();
        let leader = members[0]["Status"]["leader"].as_u64().unwrap();
        let endpoint = members
            .iter()
            .find(|m| m["Status"]["header"]["member_id"].as_u64() == Some(leader))
            .and_then(|m| m["Endpoint"].as_str())
            .unwrap_or_else(|| panic!("no leader in {out}"))
            .to_owned();
        self.etcd
            .iter()
            .position(|addr| endpoint == format!("http://{addr}:2379"))
            .unwrap()
    }

    /// Sends the rogue's attempts from the rogue's host; returns what each was answered.
    fn rogue(&self, attempts: &[Attempt]) -> Vec<Value> {
        let job = self.root.path().join("rogue-job.json");
        let results = self.root.path().join("rogue-results.json");
        let _ = std::fs::remove_file(&results);
        let spec = json!({
            "site_dir": self.root.path().join("rogue"),
            "federation": self.root.path().join("federation.toml"),
            "ca_bundle": self.phone.ca_bundle,
            "results": results,
            "attempts": attempts.iter().map(Attempt::to_json).collect::<Vec<_>>(),
        });
        std::fs::write(&job, spec.to_string()).unwrap();
        let mut command = Net::command(
            &self.rogue_ns,
            &std::env::current_exe().unwrap().to_string_lossy(),
        );
        command
            .args([
                "--exact",
                "hosts::rogue_role",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(ROGUE_JOB_ENV, &job);
        run(&mut command);
        let answers: Value = serde_json::from_slice(&std::fs::read(&results).unwrap()).unwrap();
        answers.as_array().unwrap().clone()
    }
}

impl World {
    /// Takes sg-singapore off the network and puts the rogue at its address, answering session
    /// questions; `vouch` maps tokens to the user the rogue claims they belong to.
    fn rogue_in_place_of_singapore(&mut self, vouch: &[(&str, &str)], hang: &[&str]) -> PathBuf {
        let singapore = self.site("sg-singapore");
        let (sg_ns, sg_addr, sg_ca) = (
            singapore.ns.clone(),
            singapore.addr.clone(),
            singapore.dir.join("tls/ca.pem"),
        );
        ip(&["-n", &sg_ns, "link", "set", "eth0", "down"]);
        ip(&[
            "-n",
            &self.rogue_ns,
            "addr",
            "add",
            &format!("{sg_addr}/24"),
            "dev",
            "eth0",
        ]);
        self.forget_neighbours();
        let asked = self.root.path().join("rogue-asked.json");
        let job = self.root.path().join("rogue-serve.json");
        let vouch: serde_json::Map<String, Value> = vouch
            .iter()
            .map(|(token, user)| (digest(token), json!(user)))
            .collect();
        let spec = json!({
            "site_dir": self.root.path().join("rogue"),
            "federation": self.root.path().join("federation.toml"),
            "ca_bundle": self.phone.ca_bundle,
            "serve": {
                "listen": format!("{sg_addr}:{SITE_PORT}"),
                "vouch": vouch,
                "hang": hang.iter().map(|t| digest(t)).collect::<Vec<_>>(),
                "asked": asked,
            },
        });
        std::fs::write(&job, spec.to_string()).unwrap();
        let mut command = Net::command(
            &self.rogue_ns,
            &std::env::current_exe().unwrap().to_string_lossy(),
        );
        command
            .args([
                "--exact",
                "hosts::rogue_role",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(ROGUE_JOB_ENV, &job);
        let log = self.root.path().join("rogue-serve.log");
        self.net.spawn("rogue", command, &log);
        for _ in 0..HEALTH_CHECKS_MAX {
            let up = Net::command(&self.phone.ns, "curl")
                .args(["-s", "--max-time", "2", "--cacert"])
                .arg(&sg_ca)
                .arg(format!("https://{sg_addr}:{SITE_PORT}/"))
                .output()
                .is_ok_and(|o| o.status.success());
            if up {
                return asked;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "the rogue did not come up: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Every host forgets which link address answered for which IP address, as it would
    /// after a while; the rogue has taken an address, or given it back.
    fn forget_neighbours(&self) {
        for ns in self.net.hosts.iter() {
            ip(&["-n", ns, "neigh", "flush", "all"]);
        }
    }

    /// Stops the rogue and puts sg-singapore back on the network.
    fn singapore_back(&mut self) {
        self.net.kill("rogue");
        let singapore = self.site("sg-singapore");
        let (sg_ns, sg_addr) = (singapore.ns.clone(), singapore.addr.clone());
        ip(&[
            "-n",
            &self.rogue_ns,
            "addr",
            "del",
            &format!("{sg_addr}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &sg_ns, "link", "set", "eth0", "up"]);
        self.forget_neighbours();
    }
}

/// One thing the rogue tries against a site.
struct Attempt {
    /// Which site the rogue claims to be (its key is always the stolen sg-singapore key).
    as_region: &'static str,
    /// Whose name the request is signed over, and where it is sent.
    sign_to: &'static str,
    send_to: &'static str,
    path: &'static str,
    body: Value,
    /// Sent with this body instead of the signed one.
    tampered: Option<Value>,
    /// Added to the signing time.
    skew_ms: i64,
    /// How many times the same signed bytes are sent.
    times: usize,
}

impl Attempt {
    fn post(to: &'static str, path: &'static str, body: Value) -> Attempt {
        Attempt {
            as_region: "sg-singapore",
            sign_to: to,
            send_to: to,
            path,
            body,
            tampered: None,
            skew_ms: 0,
            times: 1,
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "as_region": self.as_region,
            "sign_to": self.sign_to,
            "send_to": self.send_to,
            "path": self.path,
            "body": self.body,
            "tampered": self.tampered,
            "skew_ms": self.skew_ms,
            "times": self.times,
        })
    }
}

/// The rogue site, when this binary runs with [`ROGUE_JOB_ENV`] set; otherwise nothing.
#[test]
fn rogue_role() {
    let Ok(job) = std::env::var(ROGUE_JOB_ENV) else {
        return;
    };
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let job: Value = serde_json::from_slice(&std::fs::read(job).unwrap()).unwrap();
    let site_dir = PathBuf::from(job["site_dir"].as_str().unwrap());
    let file = FederationFile::read(Path::new(job["federation"].as_str().unwrap())).unwrap();
    let bundle = std::fs::read(job["ca_bundle"].as_str().unwrap()).unwrap();
    // The stolen identity: sg-singapore's federation key from (a copy of) its data directory.
    let stolen = load_or_create_identity(&site_dir, &region("sg-singapore")).unwrap();
    let peers = Arc::new(file.peer_table());
    if let Some(serve) = job.get("serve") {
        serve_in_place(&site_dir, stolen, peers, serve);
        return;
    }
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&bundle).unwrap())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut answers = Vec::new();
    for attempt in job["attempts"].as_array().unwrap() {
        let text = |k: &str| attempt[k].as_str().unwrap().to_owned();
        let federation = Federation::new(
            region(&text("as_region")),
            load_or_create_identity(&site_dir, &region("sg-singapore")).unwrap(),
            peers.clone(),
            b"",
        )
        .unwrap();
        let (sign_to, send_to, path) = (
            region(&text("sign_to")),
            region(&text("send_to")),
            text("path"),
        );
        let signed = serde_json::to_vec(&attempt["body"]).unwrap();
        let sent = if attempt["tampered"].is_null() {
            signed.clone()
        } else {
            serde_json::to_vec(&attempt["tampered"]).unwrap()
        };
        let time = now_ms() + attempt["skew_ms"].as_i64().unwrap();
        let (headers, _) = federation
            .request_headers(&sign_to, "POST", &path, &signed, time)
            .unwrap();
        let url = format!("{}{path}", peers.url(&send_to).unwrap());
        let mut statuses = Vec::new();
        let mut last = Value::Null;
        for _ in 0..attempt["times"].as_u64().unwrap() {
            let (status, body) = runtime.block_on(async {
                let response = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .headers(headers.clone())
                    .body(sent.clone())
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                (
                    status,
                    response.json::<Value>().await.unwrap_or(Value::Null),
                )
            });
            statuses.push(status);
            last = body;
        }
        answers.push(json!({"statuses": statuses, "answer": last}));
    }
    drop(stolen);
    std::fs::write(
        job["results"].as_str().unwrap(),
        Value::Array(answers).to_string(),
    )
    .unwrap();
}

/// The rogue answering "whose session is this token?" in sg-singapore's place, at its address,
/// with its TLS certificate and its answers signed with its key: "it is this user's" for the
/// digests in `vouch`, never anything for those in `hang`, "not mine" for the rest. Counts
/// how often each digest was asked in the file `asked`. Runs until killed.
fn serve_in_place(
    site_dir: &Path,
    stolen: sovereign_crypto::PeerIdentity,
    peers: Arc<sovereign_cloud::federation::PeerTable>,
    serve: &Value,
) {
    use axum::routing::post;
    let federation = Arc::new(Federation::new(region("sg-singapore"), stolen, peers, b"").unwrap());
    let tls = sovereign_cloud::tls::load_or_create(site_dir).unwrap();
    let vouch = serve["vouch"].clone();
    let hang: Vec<Value> = serve["hang"].as_array().unwrap().clone();
    let asked_file = PathBuf::from(serve["asked"].as_str().unwrap());
    let asked = Arc::new(std::sync::Mutex::new(serde_json::Map::new()));
    let app = axum::Router::new()
        .route(
            sovereign_cloud::placement::SESSION_VERIFY_PATH,
            post(move |body: axum::Json<Value>| {
                let (vouch, hang, asked, asked_file) = (
                    vouch.clone(),
                    hang.clone(),
                    asked.clone(),
                    asked_file.clone(),
                );
                async move {
                    let digest = body["token_digest"].as_str().unwrap_or("").to_owned();
                    {
                        let mut asked = asked.lock().unwrap();
                        let count = asked.get(&digest).and_then(Value::as_u64).unwrap_or(0);
                        asked.insert(digest.clone(), json!(count + 1));
                        std::fs::write(&asked_file, Value::Object(asked.clone()).to_string())
                            .unwrap();
                    }
                    if hang.contains(&json!(digest)) {
                        std::future::pending::<()>().await;
                    }
                    match vouch.get(&digest) {
                        Some(user) => (
                            axum::http::StatusCode::OK,
                            axum::Json(json!({"user_id": user, "expires_at_ms": i64::MAX / 2})),
                        ),
                        None => (axum::http::StatusCode::NOT_FOUND, axum::Json(json!({}))),
                    }
                }
            }),
        )
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let federation = federation.clone();
                async move {
                    sovereign_cloud::federation::sign_answers_as(&federation, request, next).await
                }
            },
        ));
    let listener = std::net::TcpListener::bind(serve["listen"].as_str().unwrap()).unwrap();
    listener.set_nonblocking(true).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let config = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(
            tls.server_config().unwrap(),
        ));
        axum_server::from_tcp_rustls(listener, config)
            .unwrap()
            .serve(app.into_make_service())
            .await
            .unwrap();
    });
}

fn digest(token: &str) -> String {
    sovereign_crypto::hex(&sovereign_crypto::token_digest(token))
}

fn start_world() -> World {
    require_hosts();
    let root = tempfile::Builder::new()
        .prefix("sovereign-hosts-")
        .tempdir()
        .unwrap();
    let mut net = Net::new();
    let phone_ns = net.host("phone", 100);
    let rogue_ns = net.host("rogue", 66);

    // The directory: three etcd members, each on its own host.
    let etcd: Vec<String> = (0..3).map(|i| format!("{NET}.{}", 11 + i)).collect();
    let initial: Vec<String> = etcd
        .iter()
        .enumerate()
        .map(|(i, addr)| format!("m{i}=http://{addr}:2380"))
        .collect();
    let initial = initial.join(",");
    for (i, addr) in etcd.iter().enumerate() {
        let ns = net.host(&format!("etcd{i}"), 11 + u8::try_from(i).unwrap());
        let mut command = Net::command(&ns, "etcd");
        let client = format!("http://{addr}:2379");
        let peer = format!("http://{addr}:2380");
        command
            .args(["--name", &format!("m{i}")])
            .arg("--data-dir")
            .arg(root.path().join(format!("etcd{i}")))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial])
            .args(["--initial-cluster-state", "new"])
            .args([
                "--initial-cluster-token",
                &format!("sovereign-{}", net.prefix),
            ])
            .args(["--logger", "zap"]);
        net.spawn(
            &format!("etcd{i}"),
            command,
            &root.path().join(format!("etcd{i}.log")),
        );
    }
    let mut world_etcd_ok = false;
    let endpoints: Vec<String> = etcd.iter().map(|a| format!("http://{a}:2379")).collect();
    for _ in 0..HEALTH_CHECKS_MAX {
        let healthy = Net::command(&phone_ns, "etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", endpoints.join(",")))
            .args(["--command-timeout=2s", "endpoint", "health"])
            .output()
            .is_ok_and(|o| o.status.success());
        if healthy {
            world_etcd_ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        world_etcd_ok,
        "etcd did not become healthy; logs in {}",
        root.path().display()
    );

    // Each site: its own host, its own data directory, published by the README's procedure.
    let regions = [("in-mumbai", 21u8), ("sg-singapore", 22), ("us-oregon", 23)];
    grant_site_roles(
        &phone_ns,
        &endpoints.join(","),
        &regions.map(|(name, _)| name),
    );
    let mut file = String::new();
    let mut bundle = String::new();
    let mut sites = Vec::new();
    let index_key: [u8; 32] = rand_bytes();
    for (name, last) in regions {
        let ns = net.host(name, last);
        let addr = format!("{NET}.{last}");
        let dir = root.path().join(name);
        let url = format!("https://{addr}:{SITE_PORT}");
        let out = run(Command::new(env!("CARGO_BIN_EXE_sovereign"))
            .args([
                "federation",
                "publish",
                "--region",
                name,
                "--url",
                &url,
                "--data-dir",
            ])
            .arg(&dir));
        file.push_str(&out);
        bundle.push_str(&std::fs::read_to_string(dir.join("tls/ca.pem")).unwrap());
        // The directory's phone-index key is the same at every site (README step 3).
        write_private(&dir.join("keys/phone-index.key"), &index_key);
        sites.push(Site {
            region: name,
            ns,
            addr,
            dir,
        });
    }
    let federation = root.path().join("federation.toml");
    std::fs::write(&federation, &file).unwrap();
    // Every site's policies: the defaults, except that Indian users may also live in Singapore
    // (a move there is tried below). Their home stays Mumbai, listed first.
    let config = root.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    let residency = include_str!("../../../../config/residency.toml");
    assert!(residency.contains("\nIN = [\"in-mumbai\"]\n"));
    std::fs::write(
        config.join("residency.toml"),
        residency.replace(
            "\nIN = [\"in-mumbai\"]\n",
            "\nIN = [\"in-mumbai\", \"sg-singapore\"]\n",
        ),
    )
    .unwrap();
    let ca_bundle = root.path().join("ca-bundle.pem");
    std::fs::write(&ca_bundle, &bundle).unwrap();
    let members = etcd
        .iter()
        .map(|a| format!("{a}:2379"))
        .collect::<Vec<_>>()
        .join(",");
    for site in &sites {
        let mut command = Net::command(&site.ns, env!("CARGO_BIN_EXE_sovereign"));
        command
            .args(["serve", "--region", site.region, "--listen"])
            .arg(format!("{}:{SITE_PORT}", site.addr))
            .arg("--data-dir")
            .arg(&site.dir)
            .arg("--federation")
            .arg(&federation)
            .arg("--config")
            .arg(&config)
            .arg("--directory")
            .arg(format!("etcd://site-{}@{members}/sovereign", site.region))
            .env("SOVEREIGN_DIRECTORY_PASSWORD", etcd_password(site.region));
        net.spawn(site.region, command, &site.dir.join("serve.log"));
    }
    let phone = Phone {
        ns: phone_ns,
        ca_bundle,
    };
    for site in &sites {
        let mut up = false;
        for _ in 0..HEALTH_CHECKS_MAX {
            let out = Net::command(&phone.ns, "curl")
                .args(["-s", "--max-time", "2", "--cacert"])
                .arg(site.dir.join("tls/ca.pem"))
                .arg(format!("{}/healthz", site.url()))
                .output()
                .unwrap();
            if out.status.success() && String::from_utf8_lossy(&out.stdout).contains(site.region) {
                up = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = std::fs::read_to_string(site.dir.join("serve.log")).unwrap_or_default();
        assert!(up, "{} did not come up:\n{log}", site.region);
    }
    World {
        net,
        root,
        etcd,
        sites,
        phone,
        rogue_ns,
    }
}

/// Staff of `region` read `user`'s messages: three operators' keys made and registered on the
/// region's host, the first asks with `reason`, the other two approve, and the first reads;
/// every call over HTTPS from the phone's namespace, as an operator's laptop would.
fn staff_read(world: &World, region: &str, user: &str, reason: &str) {
    let site = world.site(region);
    let keys = world.root.path().join(format!("operators-{region}"));
    std::fs::create_dir_all(&keys).unwrap();
    let key = |name: &str| keys.join(format!("{name}.key"));
    for name in ["ana", "ben", "cat"] {
        run(Command::new(env!("CARGO_BIN_EXE_sovereign"))
            .args(["ops", "keygen", "--out"])
            .arg(key(name)));
        run(Command::new(env!("CARGO_BIN_EXE_sovereign"))
            .args(["ops", "register", "--data-dir"])
            .arg(&site.dir)
            .args(["--region", region, "--name", name, "--public-key"])
            .arg(keys.join(format!("{name}.key.pub"))));
    }
    let ops = |action: &str, name: &str, extra: &[&str]| {
        run(
            Net::command(&world.phone.ns, env!("CARGO_BIN_EXE_sovereign"))
                .args(["ops", action, "--server", &site.url(), "--ca"])
                .arg(site.dir.join("tls/ca.pem"))
                .arg("--key")
                .arg(key(name))
                .args(["--operator", name])
                .args(extra),
        )
    };
    let requested = ops(
        "request",
        "ana",
        &[
            "--user",
            user,
            "--scopes",
            "messaging",
            "--reason",
            reason,
            "--duration",
            "30m",
        ],
    );
    let id = requested.split_whitespace().nth(1).unwrap().to_owned();
    ops("approve", "ben", &["--request", &id]);
    ops("approve", "cat", &["--request", &id]);
    ops("read", "ana", &["--request", &id, "--scope", "messaging"]);
}

fn rand_bytes() -> [u8; 32] {
    let mut key = [0; 32];
    let a = uuid::Uuid::new_v4();
    let b = uuid::Uuid::new_v4();
    key[..16].copy_from_slice(a.as_bytes());
    key[16..].copy_from_slice(b.as_bytes());
    key
}

fn write_private(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    file.write_all(bytes).unwrap();
}

/// Copies what a coerced operator would hand over: the site's keys (the per-scope key store
/// too) and TLS files.
fn steal(from: &Path, to: &Path) {
    fn copy_tree(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                copy_tree(&entry.path(), &to.join(entry.file_name()));
            } else {
                std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
            }
        }
    }
    for sub in ["keys", "tls"] {
        copy_tree(&from.join(sub), &to.join(sub));
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(to.join("keys"), std::fs::Permissions::from_mode(0o700)).unwrap();
}

fn step(name: &str) {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let since = START.get_or_init(Instant::now).elapsed();
    eprintln!("==> [{:>5.1} s] {name}", since.as_secs_f64());
}

#[test]
fn hostile_sites_on_separate_hosts() {
    if std::env::var("SOVEREIGN_TEST_BACKEND").is_ok_and(|b| b == "postgres") {
        // Every site here keeps its store in SQLite: this suite is about hosts, and one run
        // of it is enough.
        eprintln!("hosts: runs once, with the default backend");
        return;
    }
    step("start the hosts");
    let mut world = start_world();

    step("each region serves its own users on its own host");
    let bob = world.user("in-mumbai", BOB);
    let carol = world.user("in-mumbai", CAROL);
    let dave = world.user("sg-singapore", DAVE);
    let olivia = world.user("us-oregon", OLIVIA);
    let wrong = world.call(
        "in-mumbai",
        "POST",
        "/v1/accounts",
        None,
        Some(json!({"phone": MEI, "password": PASSWORD})),
    );
    assert_eq!(wrong.status, 307, "{wrong:?}");
    assert_eq!(wrong.code(), "wrong_region");

    step("a message crosses hosts through the federation");
    let sent = world.call(
        "sg-singapore",
        "POST",
        "/v1/messages",
        Some(&dave),
        Some(json!({"to": BOB, "body": "hello from Singapore"})),
    );
    assert_eq!(sent.status, 202, "{sent:?}");
    let dave_id = sent.body["id"].as_str().unwrap().to_owned();
    let bob_sent = world.call(
        "in-mumbai",
        "POST",
        "/v1/messages",
        Some(&bob),
        Some(json!({"to": CAROL, "body": "bob's own"})),
    );
    assert_eq!(bob_sent.status, 202, "{bob_sent:?}");
    let bob_sent_id = bob_sent.body["id"].as_str().unwrap().to_owned();
    let hello = vec![(DAVE.to_owned(), "hello from Singapore".to_owned())];
    assert_eq!(world.inbox("in-mumbai", &bob), hello);
    let bob_me = world.call("in-mumbai", "GET", "/v1/me", Some(&bob), None);
    assert_eq!(bob_me.status, 200, "{bob_me:?}");
    let bob_id = bob_me.body["user_id"].as_str().unwrap().to_owned();

    step("a rogue host with sg-singapore's real keys");
    steal(
        &world.site("sg-singapore").dir,
        &world.root.path().join("rogue"),
    );
    let log_before = world.call("in-mumbai", "GET", "/v1/me/access-log", Some(&bob), None);
    assert_eq!(log_before.status, 200, "{log_before:?}");
    let now = now_ms();
    let forward = |id: &str, from: &str, body: &str, at: i64| json!({"id": id, "from": from, "to": BOB, "body": body, "sent_at_ms": at});
    let fresh = || uuid::Uuid::new_v4().to_string();
    let replayed = forward(&fresh(), DAVE, "from Dave, once", now);
    let mut attempts = vec![
        // Finding 3: a message from Carol, whose messaging is in Mumbai, not Singapore.
        Attempt::post(
            "in-mumbai",
            FORWARD_PATH,
            forward(&fresh(), CAROL, "forged carol", now),
        ),
        // Reusing an id: Dave's own earlier message, or Bob's.
        Attempt::post(
            "in-mumbai",
            FORWARD_PATH,
            forward(&dave_id, DAVE, "overwritten?", now),
        ),
        Attempt::post(
            "in-mumbai",
            FORWARD_PATH,
            forward(&bob_sent_id, DAVE, "shadow", now),
        ),
        // A sending time outside the window.
        Attempt::post(
            "in-mumbai",
            FORWARD_PATH,
            forward(&fresh(), DAVE, "from the past", now - 86_400_000),
        ),
        // Finding 2: an export of Bob's data without proof, or with a made-up one.
        Attempt::post("in-mumbai", USER_EXPORT_PATH, json!({"user_id": bob_id})),
        Attempt::post(
            "in-mumbai",
            USER_EXPORT_PATH,
            json!({"user_id": bob_id, "session_token": "sv1.sg-singapore.made-up"}),
        ),
        // Finding 5: deleting, or reading the numbers of, a user Singapore is not home of,
        // or whom the directory does not know.
        Attempt::post("in-mumbai", USER_DELETE_PATH, json!({"user_id": bob_id})),
        Attempt::post("in-mumbai", USER_DELETE_PATH, json!({"user_id": "nobody"})),
        Attempt::post("in-mumbai", USER_STATS_PATH, json!({"user_id": bob_id})),
        // Finding 6: the ledger entries about a user are told to that user's home alone (a
        // region the user left answers their new home, and nobody else).
        Attempt::post("in-mumbai", USER_ACCESS_PATH, json!({"user_id": bob_id})),
    ];
    // Finding 5: a captured signed request sent again; the same signature over another body;
    // a request signed for another site; one signed outside the window.
    attempts.push(Attempt {
        times: 2,
        ..Attempt::post("in-mumbai", FORWARD_PATH, replayed.clone())
    });
    attempts.push(Attempt {
        tampered: Some(forward(&fresh(), DAVE, "tampered", now)),
        ..Attempt::post(
            "in-mumbai",
            FORWARD_PATH,
            forward(&fresh(), DAVE, "signed", now),
        )
    });
    attempts.push(Attempt {
        sign_to: "us-oregon",
        ..Attempt::post(
            "in-mumbai",
            FORWARD_PATH,
            forward(&fresh(), DAVE, "for oregon", now),
        )
    });
    attempts.push(Attempt {
        skew_ms: -2 * PEER_REQUEST_WINDOW_MS,
        ..Attempt::post(
            "in-mumbai",
            FORWARD_PATH,
            forward(&fresh(), DAVE, "stale", now),
        )
    });
    // Answering for a region it is not: claiming to be us-oregon with Singapore's key.
    attempts.push(Attempt {
        as_region: "us-oregon",
        ..Attempt::post(
            "in-mumbai",
            FORWARD_PATH,
            forward(&fresh(), OLIVIA, "from oregon?", now),
        )
    });
    let answers = world.rogue(&attempts);
    let statuses: Vec<Vec<u64>> = answers
        .iter()
        .map(|a| {
            a["statuses"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_u64().unwrap())
                .collect()
        })
        .collect();
    let expected: Vec<Vec<u64>> = vec![
        vec![401],
        vec![409],
        vec![409],
        vec![422],
        // No proof at all is a malformed request; a made-up one is refused.
        vec![422],
        vec![401],
        vec![401],
        vec![401],
        vec![401],
        vec![401],
        vec![202, 401],
        vec![401],
        vec![401],
        vec![401],
        vec![401],
    ];
    assert_eq!(statuses, expected, "{answers:#?}");
    for answer in &answers[4..6] {
        assert!(answer["answer"].get("messages").is_none(), "{answer}");
    }
    assert!(
        answers[9]["answer"].get("entries").is_none(),
        "{}",
        answers[9]
    );
    // Nothing the rogue tried was written: Bob's account, inbox (the one message Singapore may
    // send for Dave, once) and access log are as they were.
    let mut expected_inbox = hello.clone();
    expected_inbox.push((DAVE.to_owned(), "from Dave, once".to_owned()));
    let mut inbox = world.inbox("in-mumbai", &bob);
    inbox.sort();
    expected_inbox.sort();
    assert_eq!(inbox, expected_inbox);
    let me = world.call("in-mumbai", "GET", "/v1/me", Some(&bob), None);
    assert_eq!(me.status, 200, "{me:?}");
    let log_after = world.call("in-mumbai", "GET", "/v1/me/access-log", Some(&bob), None);
    assert_eq!(log_after.body, log_before.body);
    assert!(
        world
            .inbox("in-mumbai", &carol)
            .iter()
            .any(|(_, b)| b == "bob's own")
    );

    step("the rogue answers in sg-singapore's place: its word opens no account elsewhere");
    let dave_id = {
        let me = world.call("sg-singapore", "GET", "/v1/me", Some(&dave), None);
        me.body["user_id"].as_str().unwrap().to_owned()
    };
    let (forged, forged_old, forged_dave) = (
        "sv1.sg-singapore.forged-for-bob",
        "forged-old-format-token",
        "sv1.sg-singapore.forged-for-dave",
    );
    let (unknown, slow, mumbai_own, oregon_own) = (
        "sv1.sg-singapore.unknown",
        "sv1.sg-singapore.never-answered",
        "sv1.in-mumbai.mine-but-unknown",
        "sv1.us-oregon.unknown-there",
    );
    let asked = world.rogue_in_place_of_singapore(
        &[
            (forged, &bob_id),
            (forged_old, &bob_id),
            (forged_dave, &dave_id),
        ],
        &[slow],
    );
    // Finding 1: "that token is Bob's" from a site that is not Bob's home opens nothing.
    for token in [forged, forged_old] {
        for path in ["/v1/me", "/v1/messages", "/v1/me/export"] {
            let reply = world.call("in-mumbai", "GET", path, Some(token), None);
            assert_eq!(reply.status, 401, "{path}: {reply:?}");
            assert!(!reply.body.to_string().contains(&BOB[3..]), "{reply:?}");
        }
    }
    // Nor for Dave, who is Singapore's, for a service path: Dave has nothing in Mumbai, so
    // Mumbai serves nothing and at most points at his home, which the rogue claims to be.
    let reply = world.call("in-mumbai", "GET", "/v1/messages", Some(forged_dave), None);
    assert!(
        reply.status == 401 || (reply.status == 307 && reply.code() == "wrong_region"),
        "{reply:?}"
    );
    assert!(reply.body.get("messages").is_none(), "{reply:?}");
    // Finding 4: a token is asked of the site it names only, once per miss; one that names
    // no other site is asked of nobody; an issuer that never answers costs one deadline.
    for _ in 0..3 {
        let reply = world.call("in-mumbai", "GET", "/v1/messages", Some(unknown), None);
        assert_eq!(reply.status, 401, "{reply:?}");
    }
    for token in ["old-format-token", mumbai_own, oregon_own] {
        let reply = world.call("in-mumbai", "GET", "/v1/messages", Some(token), None);
        assert_eq!(reply.status, 401, "{reply:?}");
    }
    let reply = world.call("in-mumbai", "GET", "/v1/messages", Some(slow), None);
    assert_eq!(reply.status, 503, "{reply:?}");
    assert_eq!(reply.code(), "region_unavailable");
    assert!(
        reply.took <= PEER_CALL_TIMEOUT + DEAD_SITE_MARGIN,
        "took {:?}",
        reply.took
    );
    let counts: Value =
        serde_json::from_slice(&std::fs::read(&asked).unwrap_or_else(|_| b"{}".to_vec())).unwrap();
    assert_eq!(counts[digest(unknown)], 1, "{counts}");
    for token in [forged_old, "old-format-token", mumbai_own, oregon_own] {
        assert!(counts.get(digest(token)).is_none(), "{token}: {counts}");
    }
    world.singapore_back();
    // The real sg-singapore is back: Mumbai reaches it again.
    let back = world.call(
        "in-mumbai",
        "POST",
        "/v1/messages",
        Some(&bob),
        Some(json!({"to": DAVE, "body": "welcome back"})),
    );
    assert_eq!(back.status, 202, "{back:?}");
    assert_eq!(
        world
            .call("in-mumbai", "GET", "/v1/me", Some(&bob), None)
            .status,
        200
    );

    step("the rogue uses sg-singapore's etcd credentials outside its role");
    let endpoints = world.etcd_endpoints();
    let bob_key = format!("/sovereign/dir/in-mumbai/user/{bob_id}");
    let before = etcd_root(&world.phone.ns, &endpoints, &["get", &bob_key]);
    assert!(before.contains(&bob_key), "{before}");
    let stolen = format!("site-sg-singapore:{}", etcd_password("sg-singapore"));
    let taken = format!("/sovereign/dir/in-mumbai/phone/{}", "ab".repeat(32));
    for args in [
        vec!["put", bob_key.as_str(), "{}"],
        vec!["del", bob_key.as_str()],
        vec!["put", taken.as_str(), "{}"],
        vec!["put", "/sovereign/journal/m", "{}"],
    ] {
        let out = etcdctl(&world.rogue_ns, &endpoints, Some(&stolen), &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("permission denied"),
            "{args:?}: {out:?}"
        );
    }
    // What the role does allow: reading the routing keys (that keeps reads local).
    let own = etcdctl(
        &world.rogue_ns,
        &endpoints,
        Some(&stolen),
        &["get", &bob_key],
    );
    assert!(own.status.success(), "{own:?}");
    assert_eq!(
        etcd_root(&world.phone.ns, &endpoints, &["get", &bob_key]),
        before
    );
    assert!(etcd_root(&world.phone.ns, &endpoints, &["get", &taken]).is_empty());
    assert_eq!(
        world
            .call("in-mumbai", "GET", "/v1/me", Some(&bob), None)
            .status,
        200
    );
    // Inside its role it can claim Bob's number again, under its own region: every cache
    // keeps the oldest claim, so a message to Bob still reaches the real Bob in Mumbai.
    let bob_hash = before.lines().nth(1).unwrap().trim().to_owned();
    let fake = "rogue-claimed-bob";
    for (key, value) in [
        (
            format!("/sovereign/dir/sg-singapore/phone/{bob_hash}"),
            fake.to_owned(),
        ),
        (
            format!("/sovereign/dir/sg-singapore/user/{fake}"),
            bob_hash.clone(),
        ),
    ] {
        let out = etcdctl(
            &world.rogue_ns,
            &endpoints,
            Some(&stolen),
            &["put", &key, &value],
        );
        assert!(out.status.success(), "{out:?}");
    }
    let to_bob = world.call(
        "sg-singapore",
        "POST",
        "/v1/messages",
        Some(&dave),
        Some(json!({"to": BOB, "body": "after the second claim"})),
    );
    assert_eq!(to_bob.status, 202, "{to_bob:?}");
    assert!(
        world
            .inbox("in-mumbai", &bob)
            .contains(&(DAVE.to_owned(), "after the second claim".to_owned()))
    );
    let _ = world.sign_in("in-mumbai", BOB);

    step("sign-in does not tell whether a number is registered");
    let wrong_password = json!({"phone": BOB, "password": "not bob's", "device_name": "x"});
    let unknown = json!({"phone": NOBODY, "password": "not bob's", "device_name": "x"});
    let a = world.call(
        "in-mumbai",
        "POST",
        "/v1/sessions",
        None,
        Some(wrong_password),
    );
    let b = world.call("in-mumbai", "POST", "/v1/sessions", None, Some(unknown));
    assert_eq!(a.status, 401, "{a:?}");
    assert_eq!((a.status, a.code()), (b.status, b.code()), "{a:?} {b:?}");

    step("an idle site keeps its watch on the directory");
    // etcd closes a connection whose keep-alive pings come more often than its
    // --grpc-keepalive-min-time (5 s by default) once a few have come while no data flowed:
    // the watch then broke every 8 s and each site re-read the whole prefix. Idle long
    // enough for that to happen (this waits for idleness; it measures nothing).
    let broken = |world: &World| -> Vec<usize> {
        ["in-mumbai", "us-oregon"]
            .iter()
            .map(|region| {
                let log = std::fs::read_to_string(world.site(region).dir.join("serve.log"))
                    .unwrap_or_default();
                log.matches("directory watch broke").count()
            })
            .collect()
    };
    let before = broken(&world);
    std::thread::sleep(IDLE_WATCH);
    assert_eq!(
        broken(&world),
        before,
        "a watch broke while the site was idle"
    );

    step("a user moves between hosts: migrate runs on the source's host only");
    let asha = world.user("in-mumbai", ASHA);
    let to_asha = world.call(
        "in-mumbai",
        "POST",
        "/v1/messages",
        Some(&bob),
        Some(json!({"to": ASHA, "body": "before the move"})),
    );
    assert_eq!(to_asha.status, 202, "{to_asha:?}");
    // Finding 6: what Mumbai's staff read before she moves stays in her log after.
    let asha_id = world
        .call("in-mumbai", "GET", "/v1/me", Some(&asha), None)
        .body["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    staff_read(
        &world,
        "in-mumbai",
        &asha_id,
        "ticket 14: Mumbai staff read Asha's messages",
    );
    let users = world.root.path().join("move-users.txt");
    std::fs::write(&users, format!("{ASHA}\n")).unwrap();
    let members = world
        .etcd
        .iter()
        .map(|a| format!("{a}:2379"))
        .collect::<Vec<_>>()
        .join(",");
    let mumbai = world.site("in-mumbai");
    // Only Mumbai's data directory: Singapore does its side itself, asked over the federation.
    let moved = Net::command(&mumbai.ns, env!("CARGO_BIN_EXE_sovereign"))
        .args(["migrate", "--region", "in-mumbai", "--from", "in-mumbai"])
        .args(["--to", "sg-singapore", "--users"])
        .arg(&users)
        .arg("--data-dir")
        .arg(&mumbai.dir)
        .arg("--federation")
        .arg(world.root.path().join("federation.toml"))
        .arg("--config")
        .arg(world.root.path().join("config"))
        .arg("--directory")
        .arg(format!("etcd://migrator@{members}/sovereign"))
        .env("SOVEREIGN_DIRECTORY_PASSWORD", MIGRATOR_PASSWORD)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&moved.stdout);
    assert!(
        moved.status.success() && report.contains("moved 1 users"),
        "{report}{}",
        String::from_utf8_lossy(&moved.stderr)
    );
    // Her token works at her new home, her message went with her, Mumbai sends her on.
    assert_eq!(
        world.inbox("sg-singapore", &asha),
        vec![(BOB.to_owned(), "before the move".to_owned())]
    );
    let stale = world.call("in-mumbai", "GET", "/v1/me", Some(&asha), None);
    assert_eq!(stale.status, 307, "{stale:?}");
    let moved_back = world.call("sg-singapore", "GET", "/v1/me", Some(&asha), None);
    assert_eq!(moved_back.status, 200, "{moved_back:?}");
    // Her new home asks Mumbai, which answers it (her home now) with its ledger entries.
    let log = world.call(
        "sg-singapore",
        "GET",
        "/v1/me/access-log",
        Some(&asha),
        None,
    );
    assert_eq!(log.status, 200, "{log:?}");
    let mumbai_part = log.body["former"]
        .as_array()
        .and_then(|parts| parts.iter().find(|p| p["region"] == "in-mumbai"))
        .unwrap_or_else(|| panic!("Mumbai is not among her former regions: {log:?}"));
    let reads: Vec<&Value> = mumbai_part["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "read")
        .collect();
    assert_eq!(reads.len(), 1, "{mumbai_part}");
    assert!(
        reads[0]["inclusion_proof"].is_array()
            && mumbai_part["checkpoint"]["signature"].is_string(),
        "{mumbai_part}"
    );

    step("the etcd leader dies: the directory keeps working");
    let leader = world.etcd_leader();
    world.net.kill(&format!("etcd{leader}"));
    let _priya = world.user("in-mumbai", PRIYA);
    let _mei = world.user("sg-singapore", MEI);

    step("sg-singapore goes down: calls to it fail fast, the others serve their users");
    world.net.kill("sg-singapore");
    ip(&[
        "-n",
        &world.site("sg-singapore").ns,
        "link",
        "set",
        "eth0",
        "down",
    ]);
    let to_dead = world.call(
        "in-mumbai",
        "POST",
        "/v1/messages",
        Some(&bob),
        Some(json!({"to": DAVE, "body": "are you there?"})),
    );
    assert_eq!(to_dead.status, 503, "{to_dead:?}");
    assert_eq!(to_dead.code(), "region_unavailable");
    assert!(
        to_dead.took <= PEER_CALL_TIMEOUT + DEAD_SITE_MARGIN,
        "took {:?}",
        to_dead.took
    );
    assert_eq!(
        world
            .call("in-mumbai", "GET", "/v1/me", Some(&bob), None)
            .status,
        200
    );
    assert_eq!(
        world
            .call("us-oregon", "GET", "/v1/me", Some(&olivia), None)
            .status,
        200
    );

    step("all of etcd stops: sites serve their signed-in users, the directory's work is 503");
    for i in 0..world.etcd.len() {
        world.net.kill(&format!("etcd{i}"));
    }
    let endpoints = world.etcd_endpoints();
    let down = Net::command(&world.phone.ns, "etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .args(["--command-timeout=1s", "endpoint", "health"])
        .output()
        .unwrap();
    assert!(!down.status.success(), "etcd is still up");
    let me = world.call("in-mumbai", "GET", "/v1/me", Some(&bob), None);
    assert_eq!(me.status, 200, "{me:?}");
    let local = world.call(
        "in-mumbai",
        "POST",
        "/v1/messages",
        Some(&bob),
        Some(json!({"to": CAROL, "body": "etcd is down"})),
    );
    assert_eq!(local.status, 202, "{local:?}");
    assert_eq!(
        world
            .call("us-oregon", "GET", "/v1/me", Some(&olivia), None)
            .status,
        200
    );
    let _ = world.sign_in("in-mumbai", CAROL);
    // A sign-up is accepted, but its claim on the number needs the directory.
    let sign_up = world.call(
        "in-mumbai",
        "POST",
        "/v1/accounts",
        None,
        Some(json!({"phone": RAVI, "password": PASSWORD})),
    );
    assert_eq!(sign_up.status, 202, "{sign_up:?}");
    let code = world.site("in-mumbai").code_for(RAVI);
    let body = json!({"verification_id": sign_up.body["verification_id"], "code": code});
    let verify = world.call("in-mumbai", "POST", "/v1/accounts/verify", None, Some(body));
    assert_eq!(verify.status, 503, "{verify:?}");
    assert_eq!(verify.code(), "directory_unavailable");
    assert!(
        verify.content_type.starts_with("application/problem+json"),
        "{verify:?}"
    );
}
