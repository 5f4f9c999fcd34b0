//! Reloads that would quietly weaken the gateway: a policy file emptied by a truncating save, a challenge key
//! retired or a shared store added by SIGHUP (which only a restart applies), and a refused gateway file hidden by
//! the policy reload that follows it. Real gateway process, real demo API.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{client, demo_api, Gateway, Options, SHIPPED_DATA};

const BIN: &str = env!("CARGO_BIN_EXE_stuffgate");

/// A login route that refuses one address outright, so "checked" is visible as a 403.
fn guarded_policy() -> String {
    "[[route]]\nname = \"login\"\nkind = \"login\"\npath = \"/api/login\"\n\
     body = { account = \"email\", password = \"password\" }\n\
     [[route.defense]]\ntype = \"ip_list\"\ndeny = [\"198.51.100.66\"]\n"
        .to_string()
}

fn readyz(gateway: &Gateway) -> serde_json::Value {
    client().get(format!("{}/readyz", gateway.admin)).send().unwrap().json().unwrap()
}

fn metrics(gateway: &Gateway) -> String {
    client().get(format!("{}/metrics", gateway.admin)).send().unwrap().text().unwrap()
}

/// Wait (bounded) until `/readyz` satisfies `done`.
fn wait_readyz(gateway: &Gateway, done: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready = readyz(gateway);
        if done(&ready) || Instant::now() > deadline {
            return ready;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The probe: `stuffgate check empty.toml` printed `ok: … 0 route(s)` and exited 0, for an empty file and for one
/// holding only a comment.
#[test]
fn check_refuses_a_policy_without_routes_unless_it_says_so() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [("empty.toml", ""), ("comment.toml", "# routes to come\n"), ("defaults.toml", "[defaults]\n")]
    {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let out = Command::new(BIN).arg("check").arg(&path).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: {stderr}");
        assert!(stderr.contains(name) && stderr.contains("no [[route]]"), "{name}: {stderr}");
        assert!(stderr.contains("allow_no_routes"), "the error names the way out: {stderr}");
    }
    let path = dir.path().join("proxy-only.toml");
    std::fs::write(&path, "# A plain proxy, on purpose.\nallow_no_routes = true\n").unwrap();
    let out = Command::new(BIN).arg("check").arg(&path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The probe: `: > policy.toml; kill -HUP $GW` → `INFO policy reloaded routes: 0`, `/readyz` ready, and 12
/// guesses at alice from one address all forwarded (`401×12`) with no decision logged.
#[test]
fn a_reload_to_an_empty_policy_is_refused_and_the_routes_keep_serving() {
    let api = demo_api();
    let gateway =
        Gateway::start_with(&guarded_policy(), api.addr(), Options { watch_interval_secs: 0, ..Options::default() });
    assert!(metrics(&gateway).contains("\nstuffgate_routes 1\n"));
    assert_eq!(gateway.login(Some("198.51.100.66"), "alice@example.com", "x").status(), 403);
    std::fs::write(&gateway.policy_path, "").unwrap();
    gateway.hangup();
    assert!(gateway.wait_for_log("policy reload refused", Duration::from_secs(10)), "{}", gateway.logs());
    assert!(gateway.logs().contains("no [[route]]"));
    assert_eq!(gateway.login(Some("198.51.100.66"), "alice@example.com", "x").status(), 403, "still checked");
    let ready = wait_readyz(&gateway, |r| r["reload"]["ok"] == false);
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["routes"], 1);
    assert!(metrics(&gateway).contains("\nstuffgate_routes 1\n"));
    // Said explicitly, it is served: the gauge (and the StuffgateNoRoutes alert) shows it.
    std::fs::write(&gateway.policy_path, "allow_no_routes = true\n").unwrap();
    gateway.hangup();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !metrics(&gateway).contains("\nstuffgate_routes 0\n") {
        assert!(Instant::now() < deadline, "{}", gateway.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The probe: with `secrets_env = ["STUFFGATE_HASH_KEY"]` written over the signing key and SIGHUP, a device token
/// signed by the retired key was still accepted, with no log line and `/readyz` ready; `[shared_state]` added by
/// SIGHUP was ignored the same way.
#[test]
fn challenge_and_shared_state_changes_on_sighup_are_refused_loudly() {
    let api = demo_api();
    // A shared store needs the account-hash key set; it is set from the start so that only `[shared_state]` changes.
    let extra = format!(
        "privacy = {{ hash_key_env = \"SG_RELOAD_HASH\" }}\n{SHIPPED_DATA}[challenge]\nsecrets_env = [\"SG_RELOAD_KEY_OLD\"]\n"
    );
    let env = [
        ("SG_RELOAD_KEY_OLD", "o".repeat(32)),
        ("SG_RELOAD_KEY_NEW", "n".repeat(32)),
        ("SG_RELOAD_HASH", "h".repeat(32)),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let gateway = Gateway::start_with(
        &guarded_policy(),
        api.addr(),
        Options { watch_interval_secs: 0, extra_config: &extra, env: &env, ..Options::default() },
    );
    let config = std::fs::read_to_string(gateway.config_path()).unwrap();
    let rotated = config.replace("[\"SG_RELOAD_KEY_OLD\"]", "[\"SG_RELOAD_KEY_NEW\"]");
    assert_ne!(rotated, config);
    std::fs::write(gateway.config_path(), rotated).unwrap();
    gateway.hangup();
    let refused = "`challenge` changed, but it takes effect only after a restart";
    assert!(gateway.wait_for_log(refused, Duration::from_secs(10)), "{}", gateway.logs());
    let line = gateway.logs().lines().find(|l| l.contains(refused)).unwrap().to_string();
    assert!(line.contains("ERROR"), "{line}");
    assert!(!line.contains(&"n".repeat(32)) && !line.contains(&"o".repeat(32)), "no secret in the log: {line}");
    let ready = wait_readyz(&gateway, |r| r["reload"]["pending_restart"] == serde_json::json!(["challenge"]));
    assert_eq!(ready["reload"]["pending_restart"], serde_json::json!(["challenge"]), "{ready}");
    assert_eq!(ready["status"], "degraded");
    assert!(metrics(&gateway).contains("stuffgate_policy_reloads_total{result=\"restart_required\"} 1"));

    let with_store = std::fs::read_to_string(gateway.config_path()).unwrap()
        + "[shared_state]\nurl = \"redis://:hunter2-secret@127.0.0.1:1/0\"\n";
    std::fs::write(gateway.config_path(), with_store).unwrap();
    gateway.hangup();
    assert!(gateway.wait_for_log("`shared_state` changed", Duration::from_secs(10)), "{}", gateway.logs());
    let ready = wait_readyz(&gateway, |r| r["reload"]["pending_restart"].as_array().is_some_and(|a| a.len() == 2));
    assert_eq!(ready["reload"]["pending_restart"], serde_json::json!(["challenge", "shared_state"]), "{ready}");
    assert!(!gateway.logs().contains("hunter2"), "the store's password is not logged");
}

/// The probe: after each refused gateway file, `/readyz` said `ready … "policy reloaded"` (the policy reload that runs
/// right after overwrote the failure); and a pending `max_tracked_keys` change still said `"status": "ready"`.
#[test]
fn readyz_shows_a_refused_gateway_file_and_a_pending_restart_as_degraded() {
    let api = demo_api();
    let gateway =
        Gateway::start_with(&guarded_policy(), api.addr(), Options { watch_interval_secs: 0, ..Options::default() });
    let config = std::fs::read_to_string(gateway.config_path()).unwrap();
    std::fs::write(gateway.config_path(), format!("bogus_key = 1\n{config}")).unwrap();
    gateway.hangup();
    assert!(gateway.wait_for_log("gateway file reload refused", Duration::from_secs(10)), "{}", gateway.logs());
    assert!(gateway.wait_for_log("policy reloaded", Duration::from_secs(10)));
    let ready = wait_readyz(&gateway, |r| r["reload"]["message"].as_str().is_some_and(|m| m.contains("policy")));
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["reload"]["ok"], false);
    assert!(ready["reload"]["message"].as_str().unwrap().contains("gateway file refused"), "{ready}");

    // Fixed, but with a setting only a restart applies: still degraded, and says which.
    std::fs::write(gateway.config_path(), format!("max_tracked_keys = 5000\n{config}")).unwrap();
    gateway.hangup();
    let ready = wait_readyz(&gateway, |r| r["reload"]["pending_restart"] == serde_json::json!(["max_tracked_keys"]));
    assert_eq!(ready["reload"]["pending_restart"], serde_json::json!(["max_tracked_keys"]), "{ready}");
    assert_eq!(ready["status"], "degraded");
    // Back to the running file: ready again.
    std::fs::write(gateway.config_path(), &config).unwrap();
    gateway.hangup();
    let ready = wait_readyz(&gateway, |r| r["status"] == "ready");
    assert_eq!(ready["status"], "ready", "{ready}");
}
