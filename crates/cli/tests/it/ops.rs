//! Issue 5 through the binary: operator keys, k-of-n approval over HTTPS, the ledger check, and
//! the retention report, as an operator types them.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

fn sovereign() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sovereign"))
}

struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(args: &[&str], dir: &Path) -> Output {
    sovereign().args(args).current_dir(dir).output().unwrap()
}

/// `run` for a command that opens the region's store: with `--database URL` when the region is
/// on PostgreSQL.
fn run_on_store(args: &[&str], dir: &Path, database: Option<&str>) -> Output {
    let mut command = sovereign();
    command.args(args).current_dir(dir);
    if let Some(url) = database {
        command.args(["--database", url]);
    }
    command.output().unwrap()
}

/// With `SOVEREIGN_TEST_BACKEND=postgres`, a fresh database of the test's throwaway cluster.
fn test_database() -> Option<String> {
    match std::env::var("SOVEREIGN_TEST_BACKEND").as_deref() {
        Ok("postgres") => Some(crate::pg_cluster::fresh_database()),
        _ => None,
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

async fn sign_up(client: &reqwest::Client, url: &str, dir: &Path) -> String {
    let phone = "+919812345678";
    let reply: Value = client
        .post(format!("{url}/v1/accounts"))
        .json(&json!({"phone": phone, "password": "correct horse battery"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let outbox = std::fs::read_to_string(dir.join("data/sms-outbox.jsonl"))
        .unwrap_or_else(|e| panic!("{e}: signup said {reply}"));
    let sms: Value = serde_json::from_str(outbox.lines().last().unwrap()).unwrap();
    let created: Value = client
        .post(format!("{url}/v1/accounts/verify"))
        .json(&json!({"verification_id": reply["verification_id"], "code": sms["code"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    created["user_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn operators_need_two_others_and_the_ledger_names_a_changed_entry() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let database = test_database();
    let database = database.as_deref();
    let mut serve = sovereign();
    serve.args([
        "serve",
        "--region",
        "in-mumbai",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        "data",
    ]);
    if let Some(url) = database {
        serve.args(["--database", url]);
    }
    let child = serve
        .current_dir(root)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut server = Running(child);
    // Keep reading the server's stdout open for the whole test: it prints more lines.
    let mut lines = BufReader::new(server.0.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first.split_whitespace().last().unwrap().to_owned();
    let ca = std::fs::read(root.join("data/tls/ca.pem")).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let user = sign_up(&client, &url, root).await;

    for name in ["ana", "ben", "cat"] {
        let made = run(&["ops", "keygen", "--out", &format!("{name}.key")], root);
        assert!(made.status.success(), "{}", stderr(&made));
        let mode = std::fs::metadata(root.join(format!("{name}.key")))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let registered = run_on_store(
            &[
                "ops",
                "register",
                "--data-dir",
                "data",
                "--region",
                "in-mumbai",
                "--name",
                name,
                "--public-key",
                &format!("{name}.key.pub"),
            ],
            root,
            database,
        );
        assert!(registered.status.success(), "{}", stderr(&registered));
    }
    let again = run(&["ops", "keygen", "--out", "ana.key"], root);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stderr(&again).contains("refusing to overwrite"),
        "{}",
        stderr(&again)
    );

    let client_args = |name: &str| -> Vec<String> {
        [
            "--server",
            &url,
            "--ca",
            "data/tls/ca.pem",
            "--key",
            &format!("{name}.key"),
            "--operator",
            name,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let ops = |action: &str, name: &str, extra: &[&str]| {
        let mut args: Vec<String> = vec!["ops".into(), action.into()];
        args.extend(client_args(name));
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args, root)
    };
    let requested = ops(
        "request",
        "ana",
        &[
            "--user",
            &user,
            "--scopes",
            "messaging",
            "--reason",
            "ticket 12",
            "--duration",
            "30m",
        ],
    );
    assert!(requested.status.success(), "{}", stderr(&requested));
    let text = stdout(&requested);
    assert!(text.contains("is pending (0 of 2 approvals"), "{text}");
    let id = text.split_whitespace().nth(1).unwrap().to_owned();

    let own = ops("approve", "ana", &["--request", &id]);
    assert_eq!(own.status.code(), Some(2));
    assert!(stderr(&own).contains("self_approval"), "{}", stderr(&own));
    let early = ops("read", "ana", &["--request", &id, "--scope", "messaging"]);
    assert!(
        stderr(&early).contains("quorum_not_met"),
        "{}",
        stderr(&early)
    );

    let ben = ops("approve", "ben", &["--request", &id]);
    assert!(
        stdout(&ben).contains("is pending (1 of 2"),
        "{}",
        stderr(&ben)
    );
    let cat = ops("approve", "cat", &["--request", &id]);
    assert!(
        stdout(&cat).contains("is open (2 of 2 approvals: ben, cat)"),
        "{}{}",
        stdout(&cat),
        stderr(&cat)
    );
    let read = ops("read", "ana", &["--request", &id, "--scope", "messaging"]);
    assert!(read.status.success(), "{}", stderr(&read));
    let data: Value = serde_json::from_str(&stdout(&read)).unwrap();
    assert_eq!(data["approved_by"], json!(["ben", "cat"]));
    let other = ops("read", "ana", &["--request", &id, "--scope", "backup.sms"]);
    assert!(
        stderr(&other).contains("scope_not_granted"),
        "{}",
        stderr(&other)
    );

    // Bad input is a clear error.
    let bad_duration = ops(
        "request",
        "ana",
        &[
            "--user",
            &user,
            "--scopes",
            "messaging",
            "--reason",
            "x",
            "--duration",
            "soon",
        ],
    );
    assert!(
        stderr(&bad_duration).contains("--duration"),
        "{}",
        stderr(&bad_duration)
    );
    let bad_scope = ops(
        "request",
        "ana",
        &["--user", &user, "--scopes", "imei", "--reason", "x"],
    );
    assert!(
        stderr(&bad_scope).contains("\"imei\" is not a consent scope"),
        "{}",
        stderr(&bad_scope)
    );
    std::fs::set_permissions(root.join("cat.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let loose = ops("approve", "cat", &["--request", &id]);
    assert!(stderr(&loose).contains("chmod 600"), "{}", stderr(&loose));
    std::fs::write(root.join("junk.key"), b"not a key").unwrap();
    std::fs::set_permissions(
        root.join("junk.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let junk = ops("approve", "junk", &["--request", &id]);
    assert!(
        stderr(&junk).contains("not an Ed25519 PKCS#8 key"),
        "{}",
        stderr(&junk)
    );

    let report = run_on_store(
        &[
            "retention",
            "report",
            "--data-dir",
            "data",
            "--region",
            "in-mumbai",
        ],
        root,
        database,
    );
    assert!(report.status.success(), "{}", stderr(&report));
    assert!(
        stdout(&report)
            .lines()
            .any(|l| l.starts_with("verification_codes") && l.contains(" 1 ")),
        "{}",
        stdout(&report)
    );

    let verified = run_on_store(
        &[
            "ledger",
            "verify",
            "--data-dir",
            "data",
            "--region",
            "in-mumbai",
        ],
        root,
        database,
    );
    assert!(
        verified.status.success(),
        "{}{}",
        stdout(&verified),
        stderr(&verified)
    );
    assert!(
        stdout(&verified).contains("verifies: 8 entries"),
        "{}",
        stdout(&verified)
    );

    // An outsider's check: a copy of the region's store and its published public key, nothing
    // of the region's secrets.
    let copy = root.join("copy");
    std::fs::create_dir_all(copy.join("regions/in-mumbai")).unwrap();
    for file in ["store.sqlite", "store.sqlite-wal", "store.sqlite-shm"] {
        let from = root.join("data/regions/in-mumbai").join(file);
        if from.exists() {
            std::fs::copy(&from, copy.join("regions/in-mumbai").join(file)).unwrap();
        }
    }
    std::fs::copy(
        root.join("data/keys/in-mumbai.ledger.pub"),
        root.join("in-mumbai.ledger.pub"),
    )
    .unwrap();
    let outsider = |key: &str, dir: &str| {
        run_on_store(
            &[
                "ledger",
                "verify",
                "--data-dir",
                dir,
                "--region",
                "in-mumbai",
                "--public-key",
                key,
            ],
            root,
            database,
        )
    };
    let checked = outsider("in-mumbai.ledger.pub", "copy");
    assert!(
        checked.status.success(),
        "{}{}",
        stdout(&checked),
        stderr(&checked)
    );
    assert!(
        stdout(&checked).contains("verifies: 8 entries (8 sealed)"),
        "{}",
        stdout(&checked)
    );
    // The wrong file, a key that is not the region's, a truncated copy: each said plainly.
    let private = outsider("data/keys/in-mumbai.ledger.p8", "copy");
    assert_eq!(private.status.code(), Some(2));
    assert!(
        stderr(&private).contains("is not a ledger public key"),
        "{}",
        stderr(&private)
    );
    std::fs::write(root.join("other.pub"), format!("{}\n", "ab".repeat(32))).unwrap();
    let other = outsider("other.pub", "copy");
    assert_eq!(other.status.code(), Some(1), "{}", stderr(&other));
    assert!(
        stdout(&other).contains("with this public key"),
        "{}",
        stdout(&other)
    );
    if database.is_none() {
        let store = copy.join("regions/in-mumbai/store.sqlite");
        for file in ["store.sqlite-wal", "store.sqlite-shm"] {
            let _ = std::fs::remove_file(copy.join("regions/in-mumbai").join(file));
        }
        let bytes = std::fs::read(&store).unwrap();
        std::fs::write(&store, &bytes[..bytes.len() / 3]).unwrap();
        let truncated = outsider("in-mumbai.ledger.pub", "copy");
        assert_eq!(truncated.status.code(), Some(2), "{}", stdout(&truncated));
        assert!(
            stderr(&truncated).contains("copy/regions/in-mumbai/store.sqlite"),
            "{}",
            stderr(&truncated)
        );
        let nowhere = outsider("in-mumbai.ledger.pub", "nowhere");
        assert_eq!(nowhere.status.code(), Some(2));
        assert!(
            stderr(&nowhere).contains("no store at"),
            "{}",
            stderr(&nowhere)
        );
    }

    // Stop the server and change one byte of the request entry's detail (its JSON is the only
    // text that starts with {"not_after_ms":), in the store file or in the database.
    drop(server);
    match database {
        Some(url) => change_detail_in_postgres(url),
        None => change_detail_in_file(root),
    }
    let broken = run_on_store(
        &[
            "ledger",
            "verify",
            "--data-dir",
            "data",
            "--region",
            "in-mumbai",
        ],
        root,
        database,
    );
    assert_eq!(broken.status.code(), Some(1));
    assert!(
        stdout(&broken)
            .contains("does NOT verify: entry 3: its detail does not match the detail hash"),
        "{}",
        stdout(&broken)
    );

    let missing = run(
        &[
            "ledger",
            "verify",
            "--data-dir",
            "nowhere",
            "--region",
            "in-mumbai",
        ],
        root,
    );
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).contains("ledger key"),
        "{}",
        stderr(&missing)
    );
}

/// Changes the first digit after `{"not_after_ms":` in entry 0's detail, in the database, as
/// someone with the server's superuser could (the append-only triggers turned off).
fn change_detail_in_postgres(url: &str) {
    crate::pg_cluster::off_runtime(|| {
        let mut db = postgres::Client::connect(url, postgres::NoTls).unwrap();
        let detail: String = db
            .query_one(
                "SELECT detail FROM ledger_entries WHERE kind = 'request'",
                &[],
            )
            .unwrap()
            .get(0);
        let changed = bump_digit_after_marker(detail.into_bytes());
        let changed = String::from_utf8(changed).unwrap();
        db.execute("ALTER TABLE ledger_entries DISABLE TRIGGER USER", &[])
            .unwrap();
        db.execute(
            "UPDATE ledger_entries SET detail = $1 WHERE kind = 'request'",
            &[&changed],
        )
        .unwrap();
        db.execute("ALTER TABLE ledger_entries ENABLE TRIGGER USER", &[])
            .unwrap();
    });
}

/// The first digit after `{"not_after_ms":`, one up (9 becomes 8).
fn bump_digit_after_marker(mut bytes: Vec<u8>) -> Vec<u8> {
    let marker = b"{\"not_after_ms\":";
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker)
        .unwrap()
        + marker.len();
    assert!(bytes[at].is_ascii_digit());
    bytes[at] = if bytes[at] == b'9' {
        b'8'
    } else {
        bytes[at] + 1
    };
    bytes
}

fn change_detail_in_file(root: &Path) {
    let db = root.join("data/regions/in-mumbai/store.sqlite");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    drop(conn);
    let bytes = bump_digit_after_marker(std::fs::read(&db).unwrap());
    std::fs::write(&db, &bytes).unwrap();
}

#[test]
fn new_commands_explain_themselves_and_refuse_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let help = stdout(&run(&["ops", "--help"], root));
    for command in [
        "keygen", "register", "request", "approve", "deny", "revoke", "read",
    ] {
        assert!(
            help.contains(command),
            "ops --help lacks {command}:\n{help}"
        );
    }
    assert!(stdout(&run(&["ledger", "verify", "--help"], root)).contains("--region"));
    assert!(stdout(&run(&["retention", "report", "--help"], root)).contains("--config"));

    let no_store = run(
        &[
            "retention",
            "report",
            "--data-dir",
            "nowhere",
            "--region",
            "in-mumbai",
        ],
        root,
    );
    assert_eq!(no_store.status.code(), Some(2));
    assert!(
        stderr(&no_store).contains("no store at"),
        "{}",
        stderr(&no_store)
    );
    let bad_region = run(
        &[
            "ops",
            "register",
            "--data-dir",
            "d",
            "--region",
            "mars-base",
            "--name",
            "ana",
            "--public-key",
            "x",
        ],
        root,
    );
    assert_eq!(bad_region.status.code(), Some(2));
    std::fs::write(root.join("bad.pub"), "abcd\n").unwrap();
    let short_key = run(
        &[
            "ops",
            "register",
            "--data-dir",
            "d",
            "--region",
            "in-mumbai",
            "--name",
            "ana",
            "--public-key",
            "bad.pub",
        ],
        root,
    );
    assert!(
        stderr(&short_key).contains("must hold 32 bytes in hex"),
        "{}",
        stderr(&short_key)
    );
    let bad_name = run(
        &[
            "ops",
            "register",
            "--data-dir",
            "d",
            "--region",
            "in-mumbai",
            "--name",
            "Ana!",
            "--public-key",
            "bad.pub",
        ],
        root,
    );
    assert!(
        stderr(&bad_name).contains("--name"),
        "{}",
        stderr(&bad_name)
    );
    assert!(
        run(&["ops", "keygen", "--out", "ana.key"], root)
            .status
            .success()
    );
    let twice = run(
        &[
            "ops",
            "register",
            "--data-dir",
            "d",
            "--region",
            "in-mumbai",
            "--name",
            "ana",
            "--public-key",
            "ana.key.pub",
        ],
        root,
    );
    assert!(twice.status.success(), "{}", stderr(&twice));
    let again = run(
        &[
            "ops",
            "register",
            "--data-dir",
            "d",
            "--region",
            "in-mumbai",
            "--name",
            "ana",
            "--public-key",
            "ana.key.pub",
        ],
        root,
    );
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stderr(&again).contains("already has this name or key"),
        "{}",
        stderr(&again)
    );
    let http = run(
        &[
            "ops",
            "show",
            "--server",
            "http://127.0.0.1:1",
            "--ca",
            "ana.key.pub",
            "--key",
            "ana.key",
            "--operator",
            "ana",
            "--request",
            "x",
        ],
        root,
    );
    assert!(
        stderr(&http).contains("PEM") || stderr(&http).contains("https://"),
        "{}",
        stderr(&http)
    );
}
