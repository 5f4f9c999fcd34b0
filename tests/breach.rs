//! Breached-password and leaked-pair checks through the real gateway, with the shipped filter and one built by the CLI.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{client, demo_api, from_upstream, recording_upstream, shipped, Gateway, Options};

fn stuffgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stuffgate"))
}

/// `stuffgate breach query`, password on stdin; returns the exit code.
fn query(filter: &str, password: &str, account: Option<&str>) -> i32 {
    let mut command = stuffgate();
    command.args(["breach", "query", "--filter", filter]);
    if let Some(account) = account {
        command.args(["--account", account]);
    }
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(password.as_bytes()).unwrap();
    child.wait().unwrap().code().unwrap()
}

#[test]
fn the_shipped_filter_knows_common_passwords_and_the_cli_answers_like_grep() {
    let filter = shipped("policies/data/common-passwords.bloom");
    for common in ["password", "123456", "qwerty", "letmein"] {
        assert_eq!(query(&filter, common, None), 0, "{common}");
    }
    assert_eq!(query(&filter, "correct horse battery staple", None), 1);
    let dir = tempfile::tempdir().unwrap();
    let truncated = dir.path().join("truncated.bloom");
    let bytes = std::fs::read(&filter).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert_eq!(query(truncated.to_str().unwrap(), "password", None), 2, "a truncated filter is an error, not a miss");
}

fn policy() -> &'static str {
    "[[route]]\nname = \"login\"\nkind = \"login\"\npath = \"/api/login\"\n\
     body = { account = \"email\", password = \"password\" }\n\
     [[route.defense]]\ntype = \"breached_password\"\n\
     [[route]]\nname = \"signup\"\nkind = \"signup\"\npath = \"/api/signup\"\n\
     body = { account = \"email\", password = \"password\" }\n\
     [[route.defense]]\ntype = \"breached_password\"\n"
}

#[test]
fn a_login_with_a_breached_password_is_tagged_and_an_exactly_leaked_pair_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let combo = dir.path().join("combo.txt");
    std::fs::write(&combo, "Victim@Example.com:Summer2019!\nother@example.com:hunter3\nbroken line without colon\n")
        .unwrap();
    let pairs = dir.path().join("pairs.bloom");
    let built = stuffgate()
        .args(["breach", "build", "--format", "pairs", "--fp-rate", "0.001", "--input"])
        .arg(&combo)
        .arg("--out")
        .arg(&pairs)
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    assert!(String::from_utf8_lossy(&built.stderr).contains(":3"), "the bad line is reported with its number");
    assert_eq!(query(pairs.to_str().unwrap(), "Summer2019!", Some(" victim@example.com")), 0);
    assert_eq!(query(pairs.to_str().unwrap(), "Summer2019?", Some("victim@example.com")), 1);

    let (upstream, heads) = recording_upstream(401);
    let config = format!(
        "[breach]\npassword_filter = \"{}\"\npair_filter = \"{}\"\n",
        shipped("policies/data/common-passwords.bloom"),
        pairs.display()
    );
    let with_pairs = policy().replacen(
        "[[route]]\nname = \"signup\"",
        "[[route.defense]]\ntype = \"leaked_pair\"\n[[route]]\nname = \"signup\"",
        1,
    );
    let gateway = Gateway::start_with(&with_pairs, upstream, Options { extra_config: &config, ..Options::default() });
    assert_eq!(gateway.login(None, "someone@example.com", "qwerty").status(), 401, "tagged, still forwarded");
    let head = heads.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(head.contains("x-stuffgate-breached: password"), "{head}");
    gateway.login(None, "VICTIM@example.com", "Summer2019!");
    let head = heads.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(head.contains("x-stuffgate-breached: pair"), "{head}");
    assert!(!head.contains("x-stuffgate-breached: password"), "{head}");
    gateway.login(None, "someone@example.com", "a long and unusual passphrase");
    let head = heads.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(!head.contains("x-stuffgate-breached"), "{head}");
    assert!(!gateway.logs().contains("qwerty") && !gateway.logs().contains("Summer2019"), "no password in any log");
}

#[test]
fn a_signup_with_a_breached_password_is_refused_before_the_app_sees_it() {
    let api = demo_api();
    let config = format!("[breach]\npassword_filter = \"{}\"\n", shipped("policies/data/common-passwords.bloom"));
    let gateway = Gateway::start_with(policy(), api.addr(), Options { extra_config: &config, ..Options::default() });
    let signup = |password: &str| {
        client()
            .post(format!("{}/api/signup", gateway.url))
            .header("content-type", "application/json")
            .body(serde_json::json!({ "email": "new@example.com", "password": password }).to_string())
            .send()
            .unwrap()
    };
    let refused = signup("letmein");
    assert_eq!(refused.status(), 422);
    assert!(!from_upstream(&refused));
    assert_eq!(refused.json::<serde_json::Value>().unwrap()["error"], "breached_password");
    let accepted = signup("a long and unusual passphrase");
    assert_eq!(accepted.status(), 201);
    assert!(from_upstream(&accepted));
}

#[test]
fn a_breach_defense_without_a_filter_refuses_to_start_and_says_what_to_do() {
    let api = demo_api();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.toml"), policy()).unwrap();
    let config = dir.path().join("gateway.toml");
    let (listen, admin) = (common::free_port(), common::free_port());
    std::fs::write(
        &config,
        format!(
            "listen = [\"127.0.0.1:{listen}\"]\nadmin = \"127.0.0.1:{admin}\"\nupstream = {{ address = \"{}\" }}\n\
             policies = [\"policy.toml\"]\n",
            api.addr()
        ),
    )
    .unwrap();
    let output = stuffgate().args(["run", "--config"]).arg(&config).output().unwrap();
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("password_filter") && message.contains("policy.toml:"), "{message}");
}
