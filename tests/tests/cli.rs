//! The command-line uploader (`cli/`) as a user runs it: the real `chunked-upload` binary against the real
//! `local-server` binary on the emulators. Files of 1 byte, of a size that is no multiple of the chunk size, and of
//! 64 MiB in each mode; Ctrl-C then the same command; a wrong token; a server that stops answering; a file changed
//! between runs. Every object is checked byte for byte, and the state directory is empty once a file is uploaded.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use integration_tests::lambda_runtime::build_functions;
use integration_tests::{KIB, MIB, Service, User, data};
use serde_json::Value;
use tokio::process::{Child, Command};

fn binaries() -> &'static HashMap<String, PathBuf> {
    static BINARIES: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();
    BINARIES.get_or_init(|| build_functions(&["local-server", "chunked-upload"], false).expect("build the binaries"))
}

/// A local API server of its own, a state directory of its own, and a token.
struct Setup {
    svc: Service,
    server: Child,
    endpoint: String,
    dir: PathBuf,
    token: String,
}

/// What one run of the tool did.
struct Run {
    code: i32,
    /// The `--json` lines it printed.
    lines: Vec<Value>,
    stderr: String,
}

impl Setup {
    async fn start(name: &str) -> Setup {
        let binaries = binaries();
        let svc = Service::default().await;
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a port").local_addr().expect("addr").port();
        let server = Command::new(&binaries["local-server"])
            .envs(svc.env(&[("PORT", &port.to_string())]))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start local-server");
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(Instant::now() < deadline, "local-server did not listen within 30 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let dir = std::env::temp_dir().join(format!("cli-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("state")).expect("a state directory");
        let token = shared::local::dev_token(&format!("cli-{name}"));
        Setup { svc, server, endpoint: format!("http://127.0.0.1:{port}"), dir, token }
    }

    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, bytes).expect("write the file");
        path
    }

    /// The tool with this setup's endpoint, state directory and token (unless `token` says otherwise), printing
    /// JSON.
    fn command(&self, token: Option<&str>, args: &[&str]) -> Command {
        self.text_command(token, &[&["--json"], args].concat())
    }

    /// The tool, printing text.
    fn text_command(&self, token: Option<&str>, args: &[&str]) -> Command {
        let mut command = Command::new(&binaries()["chunked-upload"]);
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CHUNKED_UPLOAD_ENDPOINT", &self.endpoint)
            .env("CHUNKED_UPLOAD_STATE_DIR", self.dir.join("state"))
            .env("CHUNKED_UPLOAD_TOKEN", token.unwrap_or(&self.token))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    async fn run(&self, token: Option<&str>, args: &[&str]) -> Run {
        let output = self.command(token, args).output().await.expect("run chunked-upload");
        finished(output)
    }

    async fn put(&self, file: &Path, args: &[&str]) -> Run {
        let file = file.display().to_string();
        self.run(None, &[&["put"], args, &[file.as_str()]].concat()).await
    }

    /// The object a result names holds exactly `bytes`, with the file's full-object CRC64NVME.
    async fn assert_stored(&self, result: &Value, bytes: &[u8]) {
        let key = result["key"].as_str().unwrap_or_else(|| panic!("no key in {result}"));
        assert!(self.svc.object(key).await == bytes, "the object {key} is not the file");
        assert_eq!(result["crc64nvme"], integration_tests::crc64(bytes), "{result}");
        assert!(self.states().is_empty(), "state left after completion: {:?}", self.states());
    }

    fn states(&self) -> Vec<PathBuf> {
        let entries = std::fs::read_dir(self.dir.join("state")).expect("the state directory");
        entries.flatten().map(|e| e.path()).collect()
    }

    /// Pieces the one state file records as accepted.
    fn recorded(&self) -> usize {
        self.states()
            .first()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map_or(0, |s| s.lines().count().saturating_sub(1))
    }

    /// Starts a put and interrupts it (SIGINT, as Ctrl-C) once `pieces` pieces are recorded.
    async fn interrupted_put(&self, file: &Path, args: &[&str], pieces: usize) -> Run {
        let file = file.display().to_string();
        let mut child = self.command(None, &[&["put"], args, &[file.as_str()]].concat()).spawn().expect("spawn");
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.recorded() < pieces {
            assert!(Instant::now() < deadline, "{pieces} pieces were not sent within 120 s");
            assert!(child.try_wait().expect("poll").is_none(), "the upload ended before it was interrupted");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        signal(&child, libc::SIGINT);
        finished(child.wait_with_output().await.expect("wait"))
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = self.server.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn signal(child: &Child, signal: i32) {
    let pid = child.id().expect("a running process") as i32;
    // SAFETY: kill only sends a signal to the process we started.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill");
}

fn finished(output: std::process::Output) -> Run {
    let lines = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON on stdout ({e}): {l}")))
        .collect();
    Run { code: output.status.code().unwrap_or(-1), lines, stderr: String::from_utf8_lossy(&output.stderr).into() }
}

impl Run {
    fn result(&self) -> &Value {
        assert_eq!(self.code, 0, "exit code; stderr: {}", self.stderr);
        assert_eq!(self.lines.len(), 1, "{:?}", self.lines);
        &self.lines[0]
    }
}

#[tokio::test]
async fn files_of_every_shape_upload_in_every_mode() {
    let setup = Setup::start("shapes").await;
    let files = [("one.bin", data(1, 50)), ("odd.bin", data(9 * MIB + 12_345, 51)), ("big.bin", data(64 * MIB, 52))];
    for mode in ["sequential", "parallel", "direct"] {
        for (name, bytes) in &files {
            let path = setup.file(name, bytes);
            let run = setup.put(&path, &["--mode", mode, "--chunk-size", "2MiB"]).await;
            let result = run.result();
            assert_eq!((result["mode"].as_str(), result["size"].as_u64()), (Some(mode), Some(bytes.len() as u64)));
            setup.assert_stored(result, bytes).await;
        }
    }
    // Auto picks direct for large files, parallel for small ones.
    let big = setup.file("auto.bin", &files[2].1);
    let result = setup.put(&big, &["--direct-threshold", "32MiB"]).await.result().clone();
    assert_eq!(result["mode"], "direct");
    let small = setup.file("auto-small.bin", &files[1].1);
    assert_eq!(setup.put(&small, &["--direct-threshold", "32MiB"]).await.result()["mode"], "parallel");
}

#[tokio::test]
async fn ctrl_c_then_the_same_command_completes_the_exact_file() {
    let setup = Setup::start("sigint").await;
    let bytes = data(48 * MIB + 7, 53);
    for (mode, pieces) in [("sequential", 3), ("parallel", 5), ("direct", 2)] {
        let path = setup.file(&format!("{mode}.bin"), &bytes);
        let args = ["--mode", mode, "--chunk-size", "2MiB", "--part-size", "5MiB"];
        let interrupted = setup.interrupted_put(&path, &args, pieces).await;
        assert_eq!(interrupted.code, 130, "{mode}: {}", interrupted.stderr);
        assert!(interrupted.stderr.contains("run the same command again"), "{}", interrupted.stderr);
        assert_eq!(setup.states().len(), 1, "{mode}: the state is kept");
        let resumed = setup.put(&path, &args).await;
        assert!(resumed.stderr.contains("resuming at"), "{mode}: {}", resumed.stderr);
        setup.assert_stored(resumed.result(), &bytes).await;
    }
}

#[tokio::test]
async fn a_wrong_token_is_refused_and_never_printed() {
    let setup = Setup::start("token").await;
    let path = setup.file("f.bin", &data(3 * MIB, 54));
    let wrong = "not-a-token-but-a-secret-string";
    let run = setup.run(Some(wrong), &["put", "--mode", "parallel", &path.display().to_string()]).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("authentication refused"), "{}", run.stderr);
    let printed = format!("{}{:?}", run.stderr, run.lines);
    assert!(!printed.contains(wrong), "the token was printed: {printed}");
    assert_eq!(run.lines[0]["error"]["kind"], "auth");
    // And from a command, for a token that must not sit in the environment.
    let mut command = setup.command(None, &["put", "--mode", "parallel", &path.display().to_string()]);
    command.env_remove("CHUNKED_UPLOAD_TOKEN").env("CHUNKED_UPLOAD_TOKEN_COMMAND", format!("echo {}", setup.token));
    let run = finished(command.output().await.expect("run"));
    setup.assert_stored(run.result(), &data(3 * MIB, 54)).await;
}

#[tokio::test]
async fn a_server_that_stops_answering_ends_the_run_and_the_next_one_goes_on() {
    let mut setup = Setup::start("stalled").await;
    let bytes = data(24 * MIB, 55);
    let path = setup.file("f.bin", &bytes);
    let args = ["--timeout", "2", "--retries", "1", "put", "--mode", "sequential", "--chunk-size", "2MiB"];
    let mut child =
        setup.command(None, &[&args[..], &[path.display().to_string().as_str()]].concat()).spawn().expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(120);
    while setup.recorded() < 3 {
        assert!(Instant::now() < deadline && child.try_wait().expect("poll").is_none(), "no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The server freezes: connections are accepted by the kernel, and nothing answers.
    signal(&setup.server, libc::SIGSTOP);
    let stalled = finished(child.wait_with_output().await.expect("wait"));
    signal(&setup.server, libc::SIGCONT);
    assert_eq!(stalled.code, 8, "{}", stalled.stderr);
    assert!(stalled.stderr.contains("server unreachable"), "{}", stalled.stderr);
    let resumed = setup.put(&path, &["--mode", "sequential", "--chunk-size", "2MiB"]).await;
    setup.assert_stored(resumed.result(), &bytes).await;
    let _ = setup.server.start_kill();
}

#[tokio::test]
async fn a_file_changed_between_runs_is_started_over_and_never_mixed() {
    let setup = Setup::start("changed").await;
    for mode in ["sequential", "parallel", "direct"] {
        let mut bytes = data(30 * MIB, 56);
        let path = setup.file(&format!("{mode}.bin"), &bytes);
        let args = ["--mode", mode, "--chunk-size", "2MiB", "--part-size", "5MiB", "--parallel", "1"];
        let interrupted = setup.interrupted_put(&path, &args, 2).await;
        assert_eq!(interrupted.code, 130, "{}", interrupted.stderr);
        // Bytes already sent change, and the file keeps its size and modification time: only the bytes tell.
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).expect("mtime");
        bytes[1000] ^= 0xff;
        std::fs::write(&path, &bytes).expect("rewrite");
        std::fs::File::options().write(true).open(&path).and_then(|f| f.set_modified(modified)).expect("mtime");
        let run = setup.put(&path, &args).await;
        assert!(run.stderr.contains("changed since they were sent; starting over"), "{mode}: {}", run.stderr);
        setup.assert_stored(run.result(), &bytes).await;
        // A file whose size or time changed is started over without reading anything back.
        let interrupted = setup.interrupted_put(&path, &args, 1).await;
        assert_eq!(interrupted.code, 130);
        std::fs::write(&path, &bytes[..bytes.len() - 1]).expect("truncate");
        let run = setup.put(&path, &args).await;
        assert!(run.stderr.contains("the file changed since the interrupted upload"), "{}", run.stderr);
        setup.assert_stored(run.result(), &bytes[..bytes.len() - 1]).await;
    }
}

#[tokio::test]
async fn ls_lists_the_callers_uploads_newest_first_across_pages() {
    // An owner of its own: the listing holds this test's uploads only.
    let name = format!("ls-{}", shared::protocol::UploadId::new());
    let setup = Setup::start(&name).await;
    let user = User::named(&format!("cli-{name}")); // the sub of the setup's token
    let done = setup.put(&setup.file("done.bin", &data(3 * KIB, 80)), &["--mode", "sequential"]).await;
    let done = done.result()["upload_id"].as_str().expect("upload_id").to_string();
    // More than a page of the server's (100) unfinished ones, so ls follows the cursor.
    let file = data(20 * KIB, 81);
    let mut unfinished = Vec::new();
    for _ in 0..102 {
        unfinished.push(setup.svc.start_upload(&user, &file, 10 * KIB).await);
    }
    let expected: Vec<String> = unfinished.iter().rev().cloned().chain([done.clone()]).collect();

    let all = setup.run(None, &["ls"]).await;
    assert_eq!(all.code, 0, "{}", all.stderr);
    let listed: Vec<String> = all.lines.iter().map(|u| u["upload_id"].as_str().expect("upload_id").into()).collect();
    assert_eq!(listed, expected);
    assert_eq!(all.lines.last().expect("done")["status"], "complete");
    assert!(all.lines.iter().take(102).all(|u| u["status"] == "uploading" && u["offset"] == 10 * KIB));

    let some = setup.run(None, &["ls", "--limit", "3"]).await;
    let listed: Vec<&str> = some.lines.iter().map(|u| u["upload_id"].as_str().expect("upload_id")).collect();
    assert_eq!(listed, expected[..3].iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(setup.run(None, &["ls", "--limit", "0"]).await.code, 2, "a usage error");

    // On a terminal or not, without --json: a table, a header and a row an upload.
    let output = setup.text_command(None, &["ls", "--limit", "2"]).output().await.expect("run");
    let table = String::from_utf8_lossy(&output.stdout);
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows.len(), 3, "{table}");
    assert!(rows[0].starts_with("UPLOAD ID") && rows[0].contains("STATUS"), "{table}");
    assert!(rows[1].starts_with(&expected[0]) && rows[1].contains("uploading"), "{table}");
    assert!(rows[1].contains(&format!("{}/{}", 10 * KIB, 20 * KIB)), "{table}");
}

/// S3 refuses a part URL whose signing credentials expired before it was used (400 ExpiredToken, the strict layer's
/// answer): the tool asks for a fresh URL, as it does on a 403, and completes the exact file.
#[tokio::test]
async fn a_part_url_signed_with_expired_credentials_is_asked_for_again() {
    let setup = Setup::start("expired-token").await;
    let bytes = data(11 * MIB + 3, 58);
    let path = setup.file("direct.bin", &bytes);
    setup.svc.s3_proxy.arm("UploadPart", integration_tests::proxy::Fault::ExpiredToken);
    let run = setup.put(&path, &["--mode", "direct", "--part-size", "5MiB"]).await;
    assert!(setup.svc.s3_proxy.all_fired(), "a part's PUT met an expired session");
    setup.assert_stored(run.result(), &bytes).await;
}
