//! A newcomer's path, as the README gives it: `kraftd` with no arguments (what `cargo run
//! --release` runs) brings up a self-formatting node that answers `kraftd quorum status`,
//! and `kraftd dev` brings up three. Both run in a scratch directory as their working
//! directory; ports are moved off the defaults (by `KRAFTD_API_ADDR`/`KRAFTD_PEER_ADDR` and
//! `--port-base`) so the test never collides with a quorum someone runs by hand.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const EXE: &str = env!("CARGO_BIN_EXE_kraftd");

/// Stops a child with SIGTERM (as Ctrl-C would), then waits (bounded); kills it otherwise.
struct Stop(Child);

impl Stop {
    fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        // SAFETY: kill(2) on a pid we own.
        unsafe {
            libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.0.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Stop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `kraftd quorum status --output json` against `api`, until it answers with a leader.
fn wait_status(api: &str, cwd: &Path, within: Duration) -> serde_json::Value {
    let deadline = Instant::now() + within;
    let mut last = String::new();
    while Instant::now() < deadline {
        let out = Command::new(EXE)
            .current_dir(cwd)
            .args(["quorum", "status", "--api", api, "--output", "json"])
            .output()
            .unwrap();
        if out.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            if v["leader_id"].is_u64() {
                return v;
            }
            last = String::from_utf8_lossy(&out.stdout).into_owned();
        } else {
            last = String::from_utf8_lossy(&out.stderr).into_owned();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("kraftd quorum status --api {api} gave no leader within {within:?}; last: {last}");
}

fn port_free(p: u16) -> bool {
    TcpListener::bind(("127.0.0.1", p)).is_ok()
}

#[test]
fn kraftd_with_no_arguments_starts_a_node_that_answers_quorum_status() {
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..2)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect::<Vec<_>>()
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    let api = format!("127.0.0.1:{}", ports[0]);
    eprintln!("step 1: `kraftd` in {} (API {api})", dir.path().display());
    let mut node = Stop(
        Command::new(EXE)
            .current_dir(dir.path())
            .env("KRAFTD_API_ADDR", &api)
            .env("KRAFTD_PEER_ADDR", format!("127.0.0.1:{}", ports[1]))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    eprintln!("step 2: `kraftd quorum status` answers with node 1 as the leader");
    let st = wait_status(&api, dir.path(), Duration::from_secs(30));
    assert_eq!(st["leader_id"], 1, "{st}");
    assert!(dir.path().join("kraftd-data/meta.properties").exists());
    eprintln!("step 3: SIGTERM stops it cleanly");
    let status = node
        .terminate(Duration::from_secs(15))
        .expect("the node did not stop");
    assert!(status.success(), "{status:?}");
}

/// The error lines of a failed `kraftd serve` (its log's own lines left out).
fn serve_errors(args: &[&str], cwd: &Path) -> Vec<String> {
    let out = Command::new(EXE)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "kraftd {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.contains(" WARN ") && !l.contains(" INFO "))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_serve_that_cannot_start_says_why_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    eprintln!("step 1: an unformatted directory: one line, naming the command to run");
    let errors = serve_errors(
        &[
            "serve",
            "--data-dir",
            "nowhere",
            "--api-addr",
            "127.0.0.1:0",
            "--peer-addr",
            "127.0.0.1:1",
        ],
        dir.path(),
    );
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].starts_with(
            "kraftd serve: nowhere is not formatted: run `kraftd format --data-dir nowhere"
        ),
        "{errors:#?}"
    );
    assert_eq!(errors[0].matches("not formatted").count(), 1, "{errors:#?}");
    eprintln!("step 2: an API port already taken: one line, naming the address");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let cluster = String::from_utf8_lossy(
        &Command::new(EXE)
            .arg("random-uuid")
            .output()
            .unwrap()
            .stdout,
    )
    .trim()
    .to_string();
    let formatted = Command::new(EXE)
        .current_dir(dir.path())
        .args([
            "format",
            "--data-dir",
            "d",
            "--node-id",
            "1",
            "--voters",
            "1@127.0.0.1:1",
        ])
        .arg(format!("--cluster-id={cluster}"))
        .output()
        .unwrap();
    assert!(formatted.status.success(), "{formatted:?}");
    let errors = serve_errors(
        &[
            "serve",
            "--data-dir",
            "d",
            "--api-addr",
            &addr,
            "--peer-addr",
            "127.0.0.1:0",
        ],
        dir.path(),
    );
    assert_eq!(
        errors,
        [format!(
            "kraftd serve: binding the API listener {addr}: Address already in use (os error 98)"
        )]
    );
}

#[test]
fn kraftd_dev_brings_up_three_nodes_and_stops_them() {
    let dir = tempfile::tempdir().unwrap();
    // A base whose six ports (base, base+1, base+100, ...) are free right now.
    let base = (0..200)
        .map(|i| 20_000 + 211 * i as u16)
        .find(|b| {
            [0u16, 1, 100, 101, 200, 201]
                .iter()
                .all(|o| port_free(b + o))
        })
        .expect("no free port base");
    eprintln!(
        "step 1: `kraftd dev --port-base {base}` in {}",
        dir.path().display()
    );
    let mut dev = Stop(
        Command::new(EXE)
            .current_dir(dir.path())
            .args(["dev", "--port-base", &base.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = dev.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                eprintln!("  | {line}");
                let ready = line.starts_with("ready:");
                seen.push(line);
                if ready {
                    break;
                }
            }
            Err(_) => panic!("kraftd dev printed no ready line within 60 s: {seen:?}"),
        }
    }
    eprintln!("step 2: `kraftd quorum status` against each node shows three voters and one leader");
    let mut leaders = Vec::new();
    for i in 0..3u16 {
        let api = format!("127.0.0.1:{}", base + 100 * i);
        let st = wait_status(&api, dir.path(), Duration::from_secs(30));
        assert_eq!(st["voters"].as_array().map(Vec::len), Some(3), "{st}");
        leaders.push(st["leader_id"].clone());
    }
    assert!(leaders.iter().all(|l| *l == leaders[0]), "{leaders:?}");
    eprintln!("step 2b: a second `kraftd dev` is refused at once and writes nothing into the running quorum's logs");
    let other = tempfile::tempdir().unwrap();
    for (cwd, what) in [
        // The same directory: it holds dev.lock.
        (dir.path(), "another `kraftd dev` (pid "),
        // Another directory, the same ports.
        (other.path(), "on 127.0.0.1 is in use (another `kraftd dev`"),
    ] {
        let started = Instant::now();
        let out = Command::new(EXE)
            .current_dir(cwd)
            .args(["dev", "--port-base", &base.to_string()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        eprintln!("  | {}", err.trim());
        assert!(!out.status.success(), "a second dev started: {err}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "refused only after {:?}",
            started.elapsed()
        );
        assert!(
            err.starts_with("kraftd dev: ") && err.contains(what),
            "{err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
    assert!(
        !other.path().join("kraftd-dev").join("node1").exists(),
        "the refused dev formatted a node"
    );
    // The second dev started no node: each log holds the one start of the running quorum
    // (a node's first line, before it opens anything, warns that nobody is authenticated).
    for id in 1..=3usize {
        let p = dir.path().join("kraftd-dev").join(format!("node{id}.log"));
        let log = std::fs::read_to_string(&p).unwrap();
        for line in ["authenticates nobody", "kraftd node serving"] {
            assert_eq!(
                log.matches(line).count(),
                1,
                "node {id} was started twice ({line:?}): {}",
                p.display()
            );
        }
    }
    eprintln!("step 3: SIGTERM stops all three");
    let status = dev
        .terminate(Duration::from_secs(30))
        .expect("kraftd dev did not stop");
    assert!(status.success(), "{status:?}");
    for o in [0u16, 1, 100, 101, 200, 201] {
        assert!(
            port_free(base + o),
            "port {} still taken after dev stopped",
            base + o
        );
    }
    eprintln!("step 4: the nodes' log files are plain text, without terminal colour codes");
    for id in 1..=3 {
        let path = dir.path().join("kraftd-dev").join(format!("node{id}.log"));
        let log = std::fs::read_to_string(&path).unwrap();
        assert!(
            log.contains("kraftd node serving"),
            "{}: {log}",
            path.display()
        );
        assert!(
            !log.contains('\u{1b}'),
            "{} holds ANSI escape codes:\n{log}",
            path.display()
        );
    }
}

/// The README's run command on a machine without libclang: `cargo run --release` must stop
/// at once with the one command that installs it, never with bindgen's panic. The test hides
/// libclang in a mount namespace of its own (an overlay, its upper layer on a tmpfs so that it
/// works whatever the disk's filesystem, whites out the shared libraries; the LLVM directory
/// is emptied; the loader cache is blanked) and builds into a fresh target
/// directory, where cargo's first question to rustc goes through `scripts/rustc-wrapper`.
/// Needs root (mount namespaces); outside CI it says why it skipped.
#[test]
fn cargo_run_without_libclang_stops_at_once_with_the_command_to_install_it() {
    let root = std::env::var("USER").map(|u| u == "root").unwrap_or(false)
        || unsafe { libc::geteuid() } == 0;
    let have = |tool: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !root || !have("unshare") || !have("cargo") {
        let why = "needs root, unshare and cargo to hide libclang in a mount namespace";
        if std::env::var_os("CI").is_some() {
            panic!("the newcomer build check cannot run: {why}; under CI it must run");
        }
        eprintln!("SKIPPED: {why}");
        return;
    }
    let repo = env!("CARGO_MANIFEST_DIR");
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path().display();
    // Step 1: a namespace in which this machine has no libclang.
    // Step 2: `cargo run --release`, the README's command, into an empty target directory.
    let script = format!(
        r#"set -e
mount --make-rprivate /
lib=/usr/lib/$(uname -m)-linux-gnu
mkdir -p {s}/ovl {s}/empty {s}/target
mount -t tmpfs none {s}/ovl
mkdir {s}/ovl/up {s}/ovl/work
for f in "$lib"/libclang*; do [ -e "$f" ] && mknod "{s}/ovl/up/$(basename "$f")" c 0 0; done
mount -t overlay overlay -o "lowerdir=$lib,upperdir={s}/ovl/up,workdir={s}/ovl/work" "$lib"
for d in /usr/lib/llvm-*; do [ -d "$d" ] && mount --bind {s}/empty "$d"; done
[ -e /etc/ld.so.cache ] && mount --bind /dev/null /etc/ld.so.cache
unset LIBCLANG_PATH RUSTC_WRAPPER KRAFTD_SKIP_PREREQS
cd {repo}
CARGO_TARGET_DIR={s}/target timeout 120 cargo run --release
"#
    );
    let started = Instant::now();
    let out = Command::new("unshare")
        .args(["-m", "bash", "-c", &script])
        .output()
        .unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("cargo run --release without libclang ({took:?}):\n{stderr}");
    assert!(
        !out.status.success(),
        "the build cannot succeed without libclang"
    );
    assert!(
        stderr.contains("apt-get install -y libclang-dev"),
        "the one command to run is printed: {stderr}"
    );
    for noise in [
        "bindgen",
        "panicked",
        "Unable to find libclang",
        "Compiling",
    ] {
        assert!(
            !stderr.contains(noise),
            "no build ran before the check (found {noise:?}): {stderr}"
        );
    }
}
