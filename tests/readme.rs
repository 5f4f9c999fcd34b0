//! The README's commands and samples, run as written.
//!
//! * Fenced blocks tagged `toml test file=NAME` are written to NAME in a scratch directory that looks like the
//!   repository root (its `policies/` and `geoip/` are links to the real ones) and checked with `stuffgate check`.
//! * Blocks tagged `sh test` are run in order, as one bash script, in that directory, with the built `stuffgate` first
//!   on `PATH` — the README's fixed ports (8080, 8081, 9901) replaced by free ones in the script and the samples, so
//!   the test never collides with a running demo.
//! * Every `stuffgate …` line of a shell block must be in a tested block.
//! * The two commands: `examples/demo.sh` and `examples/test.sh` run with `cargo` stood in for by a recorder (a test
//!   cannot run cargo on its own build directory); the recorder runs the built binary for `cargo run -- ARGS`. CI runs
//!   `examples/test.sh` for real, from a clean clone.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::io::Read as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{client, free_port};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const BIN: &str = env!("CARGO_BIN_EXE_stuffgate");

struct Block {
    info: Vec<String>,
    text: String,
}

fn blocks() -> Vec<Block> {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    let mut out = Vec::new();
    let mut current: Option<Block> = None;
    for line in readme.lines() {
        match (&mut current, line.trim_start().strip_prefix("```")) {
            (None, Some(info)) => {
                current =
                    Some(Block { info: info.split_whitespace().map(str::to_string).collect(), text: String::new() })
            }
            (Some(_), Some(_)) => out.extend(current.take()),
            (Some(block), None) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(current.is_none(), "an unclosed code block in README.md");
    out
}

fn tagged(block: &Block, tag: &str) -> bool {
    block.info.iter().any(|i| i == tag)
}

/// Run `command` to its end within `limit` (killed after), returning (success, stdout + stderr).
fn run_bounded(command: &mut Command, limit: Duration) -> (bool, String) {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = out.read_to_string(&mut text);
        text
    });
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = format!("{}\n--- stderr ---\n{}", reader.join().unwrap(), err_reader.join().unwrap());
    match status {
        Some(status) => (status.success(), text),
        None => panic!("still running after {limit:?}:\n{text}"),
    }
}

/// A directory shaped like the repository root: the shipped data linked in.
fn scratch() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for shared in ["policies", "geoip"] {
        std::os::unix::fs::symlink(Path::new(ROOT).join(shared), dir.path().join(shared)).unwrap();
    }
    dir
}

fn path_with(dir: &Path) -> String {
    format!("{}:{}", dir.display(), std::env::var("PATH").unwrap_or_default())
}

#[test]
fn every_stuffgate_command_in_the_readme_is_in_a_tested_block() {
    let all = blocks();
    assert!(all.iter().any(|b| tagged(b, "test")), "no tested block found");
    for block in &all {
        let shell = block.info.first().is_some_and(|lang| lang == "sh");
        if !shell || tagged(block, "test") {
            continue;
        }
        for line in block.text.lines() {
            assert!(!line.trim_start().starts_with("stuffgate "), "README line not run by a test: {line}");
        }
    }
    // The install instructions name what they should.
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    for needle in ["cargo install --locked --path .", "Rust ≥ 1.85", "cmake build-essential pkg-config"] {
        assert!(readme.contains(needle), "README lacks `{needle}`");
    }
}

#[test]
fn the_readme_samples_pass_check_and_its_commands_run_as_written() {
    let dir = scratch();
    let ports = [("8080", free_port()), ("8081", free_port()), ("9901", free_port())];
    let respell = |text: &str| ports.iter().fold(text.to_string(), |t, (from, to)| t.replace(from, &to.to_string()));
    let mut script =
        String::from("set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true' EXIT\n");
    let mut samples = 0;
    for block in blocks() {
        if !tagged(&block, "test") {
            continue;
        }
        if let Some(file) = block.info.iter().find_map(|i| i.strip_prefix("file=")) {
            std::fs::write(dir.path().join(file), respell(&block.text)).unwrap();
            samples += 1;
            // The sample alone passes `stuffgate check` (its hash key variable set, as the README says to).
            let (ok, output) = run_bounded(
                Command::new(BIN)
                    .arg("check")
                    .arg(file)
                    .current_dir(dir.path())
                    .env("STUFFGATE_HASH_KEY", "a-key-of-at-least-16-characters"),
                Duration::from_secs(60),
            );
            assert!(ok, "README sample {file} fails `stuffgate check`:\n{output}");
        } else if block.info.first().is_some_and(|l| l == "sh") {
            script.push_str(&respell(&block.text));
            script.push('\n');
        }
    }
    assert!(samples >= 1, "the gateway sample is tested");
    let bin_dir = Path::new(BIN).parent().unwrap();
    let (ok, output) = run_bounded(
        Command::new("bash")
            .arg("-c")
            .arg(&script)
            .current_dir(dir.path())
            .env("PATH", path_with(bin_dir))
            .env_remove("STUFFGATE_ADMIN_TOKEN")
            .env_remove("RUST_LOG"),
        Duration::from_secs(180),
    );
    assert!(ok, "the README's commands failed:\n{script}\n--- output ---\n{output}");
    for expected in [
        "ok: gateway.toml",
        "\"status\":\"ready\"",
        "\"account\":\"alice@example.com\"",
        "banned 203.0.113.0/24 as b1",
        "403",
        "1 manual ban",
        "lifted b1",
    ] {
        assert!(output.contains(expected), "`{expected}` not in the output:\n{output}");
    }
    let routes = output.lines().any(|l| l.trim() == "4");
    assert!(routes, "the dump's route count:\n{output}");
}

/// A `cargo` that records its arguments and, for `cargo run … -- ARGS`, runs the built binary with ARGS.
fn recording_cargo(dir: &Path) -> PathBuf {
    let log = dir.join("cargo-args");
    let shim = dir.join("cargo");
    std::fs::write(
        &shim,
        format!(
            "#!/usr/bin/env bash\necho \"$@\" >> {log}\nif [ \"$1\" = run ]; then\n  while [ \"$#\" -gt 0 ] && [ \"$1\" != -- ]; do shift; done\n  shift\n  exec {BIN} \"$@\"\nfi\n",
            log = log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
    log
}

#[test]
fn the_two_commands_build_what_the_readme_says() {
    let readme = blocks();
    let two = readme.iter().find(|b| b.text.contains("./examples/demo.sh")).expect("the two commands");
    assert!(two.text.contains("./examples/test.sh"), "{}", two.text);
    for script in ["examples/demo.sh", "examples/test.sh", "examples/prereqs.sh"] {
        let mode = std::fs::metadata(Path::new(ROOT).join(script)).unwrap().permissions().mode();
        assert!(mode & 0o111 != 0, "{script} is not executable");
    }
    let ci = std::fs::read_to_string(Path::new(ROOT).join(".ci/run")).unwrap();
    assert!(ci.contains("./examples/test.sh"), "CI runs the README's test command");

    let shims = tempfile::tempdir().unwrap();
    let log = recording_cargo(shims.path());
    // test.sh: the install check passes here (cmake, cc, pkg-config, Rust present), then `cargo test --locked ARGS`.
    let (ok, output) = run_bounded(
        Command::new(Path::new(ROOT).join("examples/test.sh"))
            .arg("--test")
            .arg("x")
            .env("PATH", path_with(shims.path())),
        Duration::from_secs(60),
    );
    assert!(ok, "{output}");
    assert_eq!(std::fs::read_to_string(&log).unwrap().trim(), "test --locked --test x");

    // demo.sh from another directory: it changes to the repository, builds and runs `stuffgate demo ARGS`.
    let (listen, admin, api) = (free_port(), free_port(), free_port());
    let elsewhere = tempfile::tempdir().unwrap();
    let mut demo = Command::new(Path::new(ROOT).join("examples/demo.sh"))
        .args(["--users", "20"])
        .args(["--listen", &format!("127.0.0.1:{listen}")])
        .args(["--admin", &format!("127.0.0.1:{admin}")])
        .args(["--api", &format!("127.0.0.1:{api}")])
        .current_dir(elsewhere.path())
        .env("PATH", path_with(shims.path()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut ready = false;
    while !ready && Instant::now() < deadline {
        assert!(demo.try_wait().unwrap().is_none(), "demo.sh exited early");
        ready = client().get(format!("http://127.0.0.1:{admin}/readyz")).send().is_ok_and(|r| r.status() == 200);
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = demo.kill();
    let _ = demo.wait();
    assert!(ready, "the demo did not come up through examples/demo.sh");
    let args = std::fs::read_to_string(&log).unwrap();
    assert!(args.lines().any(|l| l.starts_with("run --profile release -- demo --users 20")), "{args}");
}
