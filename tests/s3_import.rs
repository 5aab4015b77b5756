//! `cairn storage import` from a local S3 server into a 3-node cairn, driven
//! through the CLI on a follower (the user path) and once through REST.
//!
//! Method: a `moto_server` (moto 5.2.6, pinned in `tests/import/requirements.txt`,
//! in the venv `CAIRN_IMPORT_VENV`, default `<repo>/target/import-venv`, created
//! when missing) on a free loopback port, with auth on
//! (`INITIAL_NO_AUTH_ACTION_COUNT=3`: `tests/import/populate.py` spends those
//! three actions on an IAM user, its policy and its key). The script fills one
//! bucket — nested keys, an empty object, a 65 MiB + 123 B random object
//! uploaded in 8 MiB parts, non-ASCII and `%`/`+` keys, a directory marker,
//! 1,005 more keys (so the listing takes two pages), keys outside the prefix
//! and keys that cannot be paths — and prints each object's size, SHA-256 and
//! ETag. Every imported file is read back through cairn and compared.
//!
//! Needs python3 (with venv) and, once, PyPI for the venv.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use cairn::client::{FileKind, FsClient};
use common::http::request;
use common::python::{create_token, read_lossy, repo};
use common::{free_port, TestCluster, TestNode, CAIRN};

const BUCKET: &str = "cairn-import";
/// 65 MiB and 123 bytes: 9 ranges of at most 8 MiB, the last one short.
const BIG_BYTES: u64 = 65 * 1024 * 1024 + 123;
/// One more than fits a page (1,000) is enough; a few more cost little.
const MANY_KEYS: usize = 1_005;
const ETAG_XATTR: &str = "user.cairn.import.etag";
const ELECTION_WAIT: Duration = Duration::from_secs(60);
const MOTO_START_WAIT: Duration = Duration::from_secs(60);
const POPULATE_WAIT: Duration = Duration::from_secs(5 * 60);
const CLI_WAIT: Duration = Duration::from_secs(5 * 60);
const REST_JOB_WAIT: Duration = Duration::from_secs(60);

/// What a bounded run of a command left.
struct Ran {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `command` (stdin from `input`), killing it after `timeout`.
fn run_bounded(mut command: Command, input: &[u8], timeout: Duration, what: &str) -> Ran {
    let work = tempfile::tempdir().expect("temp dir");
    let (out, err) = (work.path().join("out"), work.path().join("err"));
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(&out).expect("create stdout file"))
        .stderr(std::fs::File::create(&err).expect("create stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        // A command that reads no stdin may have exited already.
        let _ = stdin.write_all(input);
    }
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill(); // this child only, by its handle
            let _ = child.wait();
            panic!(
                "{what} did not finish within {timeout:?}:\n{}\n{}",
                read_lossy(&out),
                read_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Ran {
        status,
        stdout: read_lossy(&out),
        stderr: read_lossy(&err),
    }
}

/// A running `moto_server`, stopped (by its own handle) when dropped.
struct Moto {
    child: Child,
    endpoint: String,
    log: PathBuf,
}

impl Moto {
    fn start(venv: &Path, work: &Path) -> Moto {
        let port = free_port();
        let log = work.join("moto.log");
        let file = std::fs::File::create(&log).expect("create moto log");
        let child = Command::new(venv.join("bin").join("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            // Auth on after the three setup actions of populate.py.
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "3")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone log"))
            .stderr(file)
            .spawn()
            .expect("start moto_server");
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            log,
        };
        let deadline = Instant::now() + MOTO_START_WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen within {MOTO_START_WAIT:?}:\n{}",
                read_lossy(&moto.log)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill(); // may have exited; this child only
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone, serde::Deserialize)]
struct Object {
    key: String,
    size: u64,
    sha256: String,
    etag: String,
}

#[derive(Debug, serde::Deserialize)]
struct Bucket {
    access_key_id: String,
    secret_access_key: String,
    objects: Vec<Object>,
}

fn populate(venv: &Path, endpoint: &str) -> Bucket {
    let mut script = Command::new(venv.join("bin").join("python"));
    script
        .arg(repo().join("tests/import/populate.py"))
        .args([endpoint, BUCKET])
        .arg(BIG_BYTES.to_string())
        .arg(MANY_KEYS.to_string())
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let ran = run_bounded(script, b"", POPULATE_WAIT, "populate.py");
    assert!(ran.status.success(), "populate.py failed:\n{}", ran.stderr);
    serde_json::from_str(&ran.stdout).expect("populate.py prints JSON")
}

/// `cairn --endpoints GRPC storage ARGS…` with the token and `env`; no AWS_*
/// variables but those given.
fn cairn(grpc: &str, token: &str, args: &[&str], env: &[(&str, &str)], input: &[u8]) -> Ran {
    let mut command = Command::new(CAIRN);
    command
        .args(["--endpoints", grpc, "--token", token, "storage"])
        .args(args)
        .env_remove("CAIRN_TOKEN")
        .env_remove("CAIRN_ENDPOINTS");
    for name in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
        "AWS_ENDPOINT_URL",
    ] {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    run_bounded(command, input, CLI_WAIT, &format!("cairn storage {args:?}"))
}

/// The counts of the CLI's closing line `import ID STATE: C copied, S skipped,
/// F failed of L objects; B bytes copied …`, by name.
fn summary(stdout: &str) -> BTreeMap<&'static str, u64> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("import ") && l.contains(" copied, "))
        .unwrap_or_else(|| panic!("no summary line in {stdout:?}"));
    let number_before = |word: &str| -> u64 {
        let at = line
            .find(word)
            .unwrap_or_else(|| panic!("{word:?} not in {line:?}"));
        line[..at]
            .split_whitespace()
            .last()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no number before {word:?} in {line:?}"))
    };
    BTreeMap::from([
        ("copied", number_before(" copied,")),
        ("skipped", number_before(" skipped,")),
        ("failed", number_before(" failed of")),
        ("listed", number_before(" objects;")),
        ("bytes", number_before(" bytes copied")),
    ])
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// What every step uses: the S3 server and its bucket, the cluster, the node
/// the CLI talks to (a follower) and an SDK view of the file system.
struct World {
    moto: Moto,
    bucket: Bucket,
    cluster: TestCluster,
    /// Index in `cluster.nodes` of the follower the CLI talks to.
    follower: usize,
    token: String,
    fs: FsClient,
}

impl World {
    async fn start(work: &Path) -> World {
        let venv = common::python::venv(
            "CAIRN_IMPORT_VENV",
            "import-venv",
            "tests/import/requirements.txt",
            "moto_server",
            work,
        );
        let moto = Moto::start(&venv, work);
        // The nodes start while the bucket fills.
        let cluster = TestCluster::start(3, &[]);
        let bucket = populate(&venv, &moto.endpoint);
        let leader = cluster.wait_for_leader(ELECTION_WAIT).await;
        let follower = cluster
            .nodes
            .iter()
            .position(|n| n.id != leader)
            .expect("a 3-node cluster has followers");
        let token = create_token(&cluster.nodes[follower].grpc, "import", work);
        let client = cluster.client().with_token(&token).expect("token");
        let fs = client.fs("default");
        World {
            moto,
            bucket,
            cluster,
            follower,
            token,
            fs,
        }
    }

    fn node(&self) -> &TestNode {
        &self.cluster.nodes[self.follower]
    }

    /// The keys as the environment gives them.
    fn keys(&self) -> [(&'static str, &str); 2] {
        [
            ("AWS_ACCESS_KEY_ID", self.bucket.access_key_id.as_str()),
            (
                "AWS_SECRET_ACCESS_KEY",
                self.bucket.secret_access_key.as_str(),
            ),
        ]
    }

    /// `cairn storage import SOURCE --endpoint MOTO --dest DEST EXTRA…`.
    fn import(&self, source: &str, dest: &str, extra: &[&str], env: &[(&str, &str)]) -> Ran {
        let mut args = vec!["import", source, "--endpoint", &self.moto.endpoint];
        args.extend(["--dest", dest]);
        args.extend(extra);
        self.storage(&args, env, b"")
    }

    fn storage(&self, args: &[&str], env: &[(&str, &str)], input: &[u8]) -> Ran {
        cairn(&self.node().grpc, &self.token, args, env, input)
    }

    fn under_data(&self) -> Vec<&Object> {
        let objects = self.bucket.objects.iter();
        objects.filter(|o| o.key.starts_with("data/")).collect()
    }

    /// Bad credentials and a missing bucket are refused at once, naming the
    /// cause, and make nothing.
    async fn refusals_name_their_cause_and_import_nothing(&self) {
        let source = format!("s3://{BUCKET}/data");
        let wrong = [self.keys()[0], ("AWS_SECRET_ACCESS_KEY", "not-the-secret")];
        let ran = self.import(&source, "/bad-creds", &[], &wrong);
        assert!(
            !ran.status.success(),
            "bad credentials passed: {}",
            ran.stdout
        );
        assert!(
            ran.stderr.contains("credentials") && ran.stderr.contains("SignatureDoesNotMatch"),
            "the error does not name the cause: {}",
            ran.stderr
        );
        let ran = self.import("s3://no-such-bucket/data", "/missing", &[], &self.keys());
        assert!(
            !ran.status.success(),
            "a missing bucket passed: {}",
            ran.stdout
        );
        assert!(
            ran.stderr.contains("NoSuchBucket") && ran.stderr.contains("no-such-bucket"),
            "the error does not name the cause: {}",
            ran.stderr
        );
        for dest in ["/bad-creds", "/missing"] {
            assert!(
                self.fs.stat(dest).await.is_err(),
                "a refused import made {dest}"
            );
        }
    }

    /// The whole prefix in one run: every object copied, none skipped or failed.
    fn import_copies_every_key_under_the_prefix(&self) {
        let under_data = self.under_data();
        let t = Instant::now();
        let ran = self.import(
            &format!("s3://{BUCKET}/data"),
            "/imported",
            &[],
            &self.keys(),
        );
        assert!(
            ran.status.success(),
            "the import failed:\n{}\n{}",
            ran.stdout,
            ran.stderr
        );
        let counts = summary(&ran.stdout);
        eprintln!("import took {:?}: {counts:?}", t.elapsed());
        let all = under_data.len() as u64;
        assert_eq!(counts["listed"], all, "{}", ran.stdout);
        assert_eq!(counts["copied"], all, "{}", ran.stdout);
        assert_eq!(counts["skipped"], 0, "{}", ran.stdout);
        assert_eq!(counts["failed"], 0, "{}", ran.stdout);
        let bytes: u64 = under_data.iter().map(|o| o.size).sum();
        assert_eq!(counts["bytes"], bytes, "{}", ran.stdout);
        assert!(
            ran.stdout.contains("\nlisted "),
            "no progress line: {}",
            ran.stdout
        );
    }

    /// Every file reads back with its object's SHA-256 and carries its ETag;
    /// the marker is a directory; nothing outside the prefix came along.
    async fn every_object_landed_byte_exact(&self) {
        let under_data = self.under_data();
        for object in &under_data {
            let rest = object.key.strip_prefix("data/").expect("under data/");
            let path = format!("/imported/{}", rest.trim_end_matches('/'));
            let attr = self
                .fs
                .stat(&path)
                .await
                .unwrap_or_else(|e| panic!("{path}: {e}"));
            if object.key.ends_with('/') {
                assert_eq!(attr.kind, FileKind::Dir, "{path}");
                continue;
            }
            assert_eq!(
                (attr.kind, attr.size),
                (FileKind::File, object.size),
                "{path}"
            );
            let data = self
                .fs
                .read_file(&path)
                .await
                .unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(
                sha256_hex(&data),
                object.sha256,
                "{path} differs from its object"
            );
            let etag = self
                .fs
                .get_xattr(&path, ETAG_XATTR)
                .await
                .expect("ETag recorded");
            assert_eq!(etag, object.etag.as_bytes(), "{path}");
        }
        let big = self
            .fs
            .stat("/imported/big.bin")
            .await
            .expect("the big object");
        assert_eq!(big.size, BIG_BYTES);
        let empty = self
            .fs
            .stat("/imported/empty")
            .await
            .expect("the empty object");
        assert_eq!((empty.kind, empty.size), (FileKind::File, 0));
        let non_ascii = self
            .fs
            .read_file("/imported/ünï/ß 🙂.txt")
            .await
            .expect("non-ASCII");
        assert_eq!(non_ascii, "grüße 🙂\n".as_bytes());
        let many = self.fs.list("/imported/many").await.expect("list many");
        assert_eq!(many.len(), MANY_KEYS, "both listing pages were imported");
        // `other/` and `data-extra/` (which shares the prefix's letters) stay out.
        let expected: BTreeSet<String> = under_data
            .iter()
            .map(|o| {
                o.key["data/".len()..]
                    .split('/')
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(
            self.names("/imported").await,
            expected,
            "only keys under data/"
        );
        let root = BTreeSet::from(["imported".to_string()]);
        assert_eq!(self.names("/").await, root, "nothing else was made");
    }

    async fn names(&self, dir: &str) -> BTreeSet<String> {
        let entries = self
            .fs
            .list(dir)
            .await
            .unwrap_or_else(|e| panic!("{dir}: {e}"));
        entries.into_iter().map(|e| e.name).collect()
    }

    /// A second run finds every file with its size and ETag and copies nothing.
    async fn rerun_skips_everything(&self) {
        let before = self
            .fs
            .stat("/imported/big.bin")
            .await
            .expect("the big object");
        let ran = self.import(
            &format!("s3://{BUCKET}/data"),
            "/imported",
            &[],
            &self.keys(),
        );
        assert!(
            ran.status.success(),
            "the rerun failed:\n{}\n{}",
            ran.stdout,
            ran.stderr
        );
        let counts = summary(&ran.stdout);
        assert_eq!(
            counts["skipped"],
            self.under_data().len() as u64,
            "{}",
            ran.stdout
        );
        assert_eq!(counts["copied"], 0, "{}", ran.stdout);
        assert_eq!(counts["bytes"], 0, "{}", ran.stdout);
        let after = self
            .fs
            .stat("/imported/big.bin")
            .await
            .expect("the big object");
        assert_eq!(
            after.version, before.version,
            "the rerun rewrote a skipped file"
        );
    }

    /// A write in place keeps the attributes but moves the content version:
    /// the next run copies that file, and only it, back.
    async fn a_file_changed_in_cairn_is_copied_again(&self) {
        let original = self.fs.read_file("/imported/a.txt").await.expect("a.txt");
        let scribbled = vec![b'x'; original.len()];
        self.fs
            .write_at("/imported/a.txt", 0, &scribbled)
            .await
            .expect("write in place");
        let ran = self.import(
            &format!("s3://{BUCKET}/data"),
            "/imported",
            &[],
            &self.keys(),
        );
        assert!(
            ran.status.success(),
            "the run failed:\n{}\n{}",
            ran.stdout,
            ran.stderr
        );
        let counts = summary(&ran.stdout);
        assert_eq!(counts["copied"], 1, "{}", ran.stdout);
        assert_eq!(
            counts["skipped"],
            self.under_data().len() as u64 - 1,
            "{}",
            ran.stdout
        );
        assert_eq!(counts["bytes"], original.len() as u64, "{}", ran.stdout);
        let restored = self.fs.read_file("/imported/a.txt").await.expect("a.txt");
        assert_eq!(restored, original, "the object's bytes are back");
    }

    /// Keys that cannot be paths fail one by one, each named with its reason,
    /// and fail the command; the good key lands. The secret comes from stdin.
    async fn odd_keys_fail_alone_with_their_reason(&self) {
        let source = format!("s3://{BUCKET}/odd");
        let args = [
            "import",
            &source,
            "--endpoint",
            &self.moto.endpoint,
            "--dest",
            "/odd",
            "--access-key-id",
            &self.bucket.access_key_id,
            "--secret-access-key-stdin",
        ];
        let secret_line = format!("{}\n", self.bucket.secret_access_key);
        let ran = self.storage(&args, &[], secret_line.as_bytes());
        assert!(
            !ran.status.success(),
            "failed objects must fail the command: {}",
            ran.stdout
        );
        let counts = summary(&ran.stdout);
        assert_eq!(
            (counts["copied"], counts["failed"]),
            (1, 5),
            "{}",
            ran.stdout
        );
        for (key, reason) in [
            ("odd/a//b", "empty segment"),
            ("odd/./dot", "\".\" segment"),
            ("odd/x/../dotdot", "\"..\" segment"),
            ("odd/full-dir/", "holds 31 bytes"),
            (
                "odd/nnnn",
                "ENAMETOOLONG: name is 256 bytes; the limit is 255",
            ),
        ] {
            let named =
                |l: &&str| l.starts_with("failed: ") && l.contains(key) && l.contains(reason);
            assert!(
                ran.stdout.lines().any(|l| named(&l)),
                "no failure line for {key:?} ({reason}) in {}",
                ran.stdout
            );
        }
        let good = self
            .fs
            .read_file("/odd/good.txt")
            .await
            .expect("the good key");
        assert_eq!(good, b"the one good key among the odd ones");
        assert_eq!(
            self.names("/odd").await.len(),
            1,
            "only the good key landed"
        );
    }

    /// What the dashboard calls, on another node than the CLI's: start (202),
    /// status until done, list; a missing bucket is a 404 naming it. No status
    /// carries a credential.
    async fn rest_starts_and_reports_a_job(&self) {
        let node = &self.cluster.nodes[(self.follower + 1) % self.cluster.nodes.len()];
        let bearer = format!("Bearer {}", self.token);
        let auth = [("Authorization", bearer.as_str())];
        let mut body = serde_json::json!({
            "source": {
                "url": format!("s3://{BUCKET}/data/nested"),
                "endpoint": self.moto.endpoint,
                "region": "us-east-1",
                "access_key_id": self.bucket.access_key_id,
                "secret_access_key": self.bucket.secret_access_key,
            },
            "dest": "/rest",
            "fs": "default",
        });
        let path = "/api/v1/cairn/imports";
        let posted = request("POST", &node.http, path, &auth, body.to_string().as_bytes()).await;
        assert_eq!(
            posted.status,
            202,
            "{}",
            String::from_utf8_lossy(&posted.body)
        );
        let id = posted.json()["id"].as_str().expect("an id").to_string();
        assert_eq!(posted.json()["state"], "running");
        let deadline = Instant::now() + REST_JOB_WAIT;
        let status = loop {
            let got = request("GET", &node.http, &format!("{path}/{id}"), &auth, b"").await;
            let text = String::from_utf8_lossy(&got.body).into_owned();
            assert_eq!(got.status, 200, "{text}");
            self.assert_no_credentials(&text, "a status");
            if got.json()["state"] != "running" {
                break got.json();
            }
            assert!(
                Instant::now() < deadline,
                "the REST import still runs: {text}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(status["state"], "succeeded", "{status}");
        assert_eq!(status["objects_copied"], 2, "{status}");
        let c = self.fs.read_file("/rest/c.txt").await.expect("c.txt");
        assert_eq!(c, vec![b'c'; 1024]);
        let listed = request("GET", &node.http, path, &auth, b"").await;
        let text = String::from_utf8_lossy(&listed.body).into_owned();
        assert!(text.contains(&id), "the list has the job: {text}");
        self.assert_no_credentials(&text, "the list");
        body["source"]["url"] = "s3://no-such-bucket".into();
        let refused = request("POST", &node.http, path, &auth, body.to_string().as_bytes()).await;
        assert_eq!(
            refused.status,
            404,
            "{}",
            String::from_utf8_lossy(&refused.body)
        );
        assert_eq!(refused.json()["code"], "not_found");
        let message = refused.json()["message"].as_str().unwrap_or("").to_string();
        assert!(message.contains("NoSuchBucket"), "{message}");
    }

    fn assert_no_credentials(&self, text: &str, what: &str) {
        assert!(
            !text.contains(&self.bucket.secret_access_key),
            "{what} shows the secret"
        );
        assert!(
            !text.contains(&self.bucket.access_key_id),
            "{what} shows the key id"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_s3_bucket_imports_byte_exact_resumes_and_refuses_bad_sources() {
    let started = Instant::now();
    let work = tempfile::tempdir().expect("temp dir");
    let world = World::start(work.path()).await;
    eprintln!("setup took {:?}", started.elapsed());

    world.refusals_name_their_cause_and_import_nothing().await;
    world.import_copies_every_key_under_the_prefix();
    world.every_object_landed_byte_exact().await;
    world.rerun_skips_everything().await;
    world.a_file_changed_in_cairn_is_copied_again().await;
    world.odd_keys_fail_alone_with_their_reason().await;
    world.rest_starts_and_reports_a_job().await;

    // `--status` lists the follower's jobs: the four CLI imports that started.
    let ran = world.storage(&["import", "--status"], &[], b"");
    assert!(ran.status.success(), "{}", ran.stderr);
    let jobs = ran
        .stdout
        .lines()
        .filter(|l| l.contains("s3://cairn-import/"));
    assert_eq!(jobs.count(), 4, "{}", ran.stdout);
    // The credentials reached no node's log.
    for node in &world.cluster.nodes {
        world.assert_no_credentials(&node.logs(), &format!("node {}'s log", node.id));
    }
    eprintln!("the whole test took {:?}", started.elapsed());
}
