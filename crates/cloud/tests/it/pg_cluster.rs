//! A throwaway PostgreSQL 15 cluster for the tests: one per test process, started on first use
//! (initdb in a temp dir, a free loopback port, its socket in that dir, fsync on), with a fresh
//! database per caller. A watchdog stops it and removes its directory when the process ends,
//! however it ends. Shared by the cloud's and the CLI's integration tests (`#[path]`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// Runs `f` on a thread of its own: the synchronous PostgreSQL client must not run on a thread
/// that drives async tasks.
pub fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().unwrap())
}

const POSTGRES_BIN: &str = "/usr/lib/postgresql/15/bin";

/// One throwaway PostgreSQL cluster per test process.
struct PgCluster {
    port: u16,
}

static CLUSTER: OnceLock<PgCluster> = OnceLock::new();

fn running_as_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// Runs a PostgreSQL program, as the `postgres` user when we are root (initdb refuses root).
fn pg_command(root: bool, program: &str) -> Command {
    let path = format!("{POSTGRES_BIN}/{program}");
    if root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--", &path]);
        command
    } else {
        Command::new(path)
    }
}

fn run_quietly(mut command: Command, what: &str, log: &Path) {
    let status = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    if !status.success() {
        let log = std::fs::read_to_string(log).unwrap_or_default();
        panic!("{what} failed ({status}); log:\n{log}");
    }
}

// The watchdog is never waited for on purpose: it must outlive this process to stop the cluster.
#[allow(clippy::zombie_processes)]
fn start_cluster() -> PgCluster {
    assert!(
        Path::new(POSTGRES_BIN).join("initdb").exists(),
        "SOVEREIGN_TEST_BACKEND=postgres needs PostgreSQL 15 in {POSTGRES_BIN} \
         (apt-get install -y postgresql-15; scripts/test.sh installs it)"
    );
    let root = running_as_root();
    // Kept by hand (not a TempDir guard): statics are never dropped, so the watchdog below
    // removes it once this process is gone.
    let dir = tempfile::Builder::new()
        .prefix("sovereign-pg-")
        .tempdir()
        .unwrap()
        .keep();
    if root {
        run_quietly(
            {
                let mut c = Command::new("chown");
                c.args(["-R", "postgres:postgres"]).arg(&dir);
                c
            },
            "chown the cluster directory",
            &dir.join("none"),
        );
    }
    let data = dir.join("data");
    let log = dir.join("server.log");
    let mut initdb = pg_command(root, "initdb");
    initdb
        .arg("-D")
        .arg(&data)
        .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"]);
    run_quietly(initdb, "initdb", &log);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // fsync stays on (the default): commits are as durable as in production.
    let options = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=500",
        dir.display()
    );
    let mut start = pg_command(root, "pg_ctl");
    start
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(&log)
        .args(["-o", &options, "-w", "-t", "60", "start"]);
    run_quietly(start, "pg_ctl start", &log);
    // The cluster must not outlive this process, however it ends (statics are not dropped,
    // and a test may abort): a watchdog stops it and removes its directory once we are gone.
    let pg_ctl = format!("{POSTGRES_BIN}/pg_ctl");
    let stop = if root {
        format!("runuser -u postgres -- {pg_ctl}")
    } else {
        pg_ctl
    };
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
         {stop} -D '{data}' -m immediate -w stop; rm -rf '{dir}'",
        pid = std::process::id(),
        data = data.display(),
        dir = dir.display(),
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    PgCluster { port }
}

fn cluster() -> &'static PgCluster {
    CLUSTER.get_or_init(start_cluster)
}

/// A new, empty database in the test cluster; its URL.
pub fn fresh_database() -> String {
    let port = cluster().port;
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    off_runtime(|| {
        let mut admin = postgres::Client::connect(
            &format!("host=127.0.0.1 port={port} user=postgres dbname=postgres"),
            postgres::NoTls,
        )
        .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
    });
    format!("postgres://postgres@127.0.0.1:{port}/{name}")
}
