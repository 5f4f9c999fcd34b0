//! Operator experience, end to end with the real binary: the decisions API and its token, readiness, the
//! gateway file re-read on SIGHUP, a busy port, the demo from elsewhere, the replay's population check, quiet logs,
//! `check --dump`, completions and process metrics.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{client, demo_api, free_port, from_upstream, shipped, Gateway, Options};

const TOKEN: &str = "test-admin-token-0123456789";
const BIN: &str = env!("CARGO_BIN_EXE_stuffgate");

fn login_route(defenses: &str) -> String {
    format!(
        "[[route]]\nname = \"login\"\nkind = \"login\"\npath = \"/api/login\"\n\
         body = {{ account = \"email\", password = \"password\" }}\n{defenses}"
    )
}

const FAILURES_3: &str = "[[route.defense]]\ntype = \"failed_logins\"\nkey = \"ip\"\nthreshold = 3\nwindow = \"10m\"\n";

fn with_token() -> Options<'static> {
    Options { env: &[("STUFFGATE_ADMIN_TOKEN", TOKEN)], ..Options::default() }
}

/// Run a command to its end within `limit`; (status, stdout, stderr).
fn run_bounded(command: &mut Command, limit: Duration) -> (std::process::ExitStatus, String, String) {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            let output = child.wait_with_output().unwrap();
            return (
                output.status,
                String::from_utf8_lossy(&output.stdout).into_owned(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "still running after {limit:?}; stdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn admin(
    gateway: &Gateway,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
) -> reqwest::blocking::RequestBuilder {
    let request = client().request(method, format!("{}{path}", gateway.admin));
    match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    }
}

#[test]
fn the_decisions_api_lists_lifts_and_bans_and_refuses_changes_without_the_token() {
    let api = demo_api();
    let gateway = Gateway::start_with(&login_route(FAILURES_3), api.addr(), with_token());
    for _ in 0..3 {
        assert_eq!(gateway.login(Some("203.0.113.7"), "nobody@example.com", "wrong").status(), 401);
    }
    assert_eq!(gateway.login(Some("203.0.113.7"), "alice@example.com", "correct horse battery staple").status(), 429);

    // Listing needs the token once one is set; a wrong one is refused too.
    let refused = admin(&gateway, reqwest::Method::GET, "/decisions", None).send().unwrap();
    assert_eq!(refused.status(), 401);
    assert!(refused.headers().contains_key("www-authenticate"));
    assert_eq!(
        admin(&gateway, reqwest::Method::GET, "/decisions", Some("wrong-token-0123456789")).send().unwrap().status(),
        401
    );
    let list: serde_json::Value =
        admin(&gateway, reqwest::Method::GET, "/decisions", Some(TOKEN)).send().unwrap().json().unwrap();
    let penalties = list["penalties"].as_array().unwrap();
    assert_eq!(penalties.len(), 1, "{list}");
    let penalty = &penalties[0];
    assert_eq!(penalty["address"], "203.0.113.7");
    assert_eq!(penalty["defense"], "ip_failures");
    assert_eq!(penalty["scope"], "address");
    assert_eq!(penalty["route"], "login");
    assert!(penalty["account"].as_str().is_some_and(|a| a.len() == 16), "the account's keyed hash: {penalty}");
    assert!(penalty["until"].as_u64().unwrap() > penalty["since"].as_u64().unwrap());
    let id = penalty["id"].as_str().unwrap().to_string();

    // The CLI shows the same.
    let (status, stdout, stderr) = run_bounded(
        Command::new(BIN).args(["decisions", "list", "--admin", &gateway.admin]).env("STUFFGATE_ADMIN_TOKEN", TOKEN),
        Duration::from_secs(20),
    );
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("203.0.113.7") && stdout.contains("ip_failures") && stdout.contains(&id), "{stdout}");
    let (status, _, stderr) = run_bounded(
        Command::new(BIN)
            .args(["decisions", "delete", &id, "--admin", &gateway.admin])
            .env_remove("STUFFGATE_ADMIN_TOKEN"),
        Duration::from_secs(20),
    );
    assert!(!status.success(), "lifting without the token must fail");
    assert!(stderr.contains("STUFFGATE_ADMIN_TOKEN"), "{stderr}");

    // Lifting really lifts: the address reaches the app again.
    let delete = format!("/decisions/{id}");
    assert_eq!(admin(&gateway, reqwest::Method::DELETE, &delete, None).send().unwrap().status(), 401);
    assert_eq!(gateway.login(Some("203.0.113.7"), "alice@example.com", "correct horse battery staple").status(), 429);
    assert_eq!(admin(&gateway, reqwest::Method::DELETE, &delete, Some(TOKEN)).send().unwrap().status(), 200);
    let after = gateway.login(Some("203.0.113.7"), "alice@example.com", "correct horse battery staple");
    assert_eq!(after.status(), 200);
    assert!(from_upstream(&after));
    assert_eq!(admin(&gateway, reqwest::Method::DELETE, &delete, Some(TOKEN)).send().unwrap().status(), 404);

    // A manual ban: refused without the token, then 403 on protected and unprotected routes, until lifted.
    let ban = serde_json::json!({ "range": "198.51.100.0/24", "duration": "1h", "reason": "test" }).to_string();
    let unauthorized = admin(&gateway, reqwest::Method::POST, "/decisions", None).body(ban.clone()).send().unwrap();
    assert_eq!(unauthorized.status(), 401);
    assert_eq!(gateway.login(Some("198.51.100.9"), "alice@example.com", "correct horse battery staple").status(), 200);
    let created = admin(&gateway, reqwest::Method::POST, "/decisions", Some(TOKEN)).body(ban).send().unwrap();
    assert_eq!(created.status(), 201);
    let created: serde_json::Value = created.json().unwrap();
    let ban_id = created["ban"]["id"].as_str().unwrap().to_string();
    let banned = gateway.login(Some("198.51.100.9"), "alice@example.com", "correct horse battery staple");
    assert_eq!(banned.status(), 403);
    assert!(!from_upstream(&banned));
    let page = client().get(format!("{}/", gateway.url)).header("x-forwarded-for", "198.51.100.10").send().unwrap();
    assert_eq!(page.status(), 403, "a ban holds on unprotected routes too");
    assert_eq!(gateway.login(Some("198.51.101.1"), "alice@example.com", "correct horse battery staple").status(), 200);
    let manual =
        gateway.decisions().into_iter().any(|d| d["reasons"].as_str().is_some_and(|r| r.starts_with("manual_ban")));
    assert!(manual || gateway.wait_for_log("manual_ban:banned", Duration::from_secs(5)), "{}", gateway.logs());
    let bad =
        admin(&gateway, reqwest::Method::POST, "/decisions", Some(TOKEN)).body(r#"{"range":"banana"}"#).send().unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().unwrap().contains("CIDR"));
    let (status, stdout, stderr) = run_bounded(
        Command::new(BIN)
            .args(["decisions", "delete", &ban_id, "--admin", &gateway.admin])
            .env("STUFFGATE_ADMIN_TOKEN", TOKEN),
        Duration::from_secs(20),
    );
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains(&ban_id));
    assert_eq!(gateway.login(Some("198.51.100.9"), "alice@example.com", "correct horse battery staple").status(), 200);
}

#[test]
fn without_a_token_the_admin_api_reads_but_changes_nothing() {
    let api = demo_api();
    let gateway = Gateway::start(&login_route(FAILURES_3), api.addr());
    assert_eq!(admin(&gateway, reqwest::Method::GET, "/decisions", None).send().unwrap().status(), 200);
    let ban =
        admin(&gateway, reqwest::Method::POST, "/decisions", None).body(r#"{"range":"192.0.2.1"}"#).send().unwrap();
    assert_eq!(ban.status(), 403);
    assert!(ban.text().unwrap().contains("STUFFGATE_ADMIN_TOKEN"));
    // Even a guessed token changes nothing when none is configured.
    let guessed = admin(&gateway, reqwest::Method::POST, "/decisions", Some(TOKEN)).body(r#"{"range":"192.0.2.1"}"#);
    assert_eq!(guessed.send().unwrap().status(), 403);
    assert_eq!(admin(&gateway, reqwest::Method::DELETE, "/decisions/p1", None).send().unwrap().status(), 403);
    let (status, _, stderr) = run_bounded(
        Command::new(BIN)
            .args(["decisions", "ban", "192.0.2.1", "--admin", &gateway.admin])
            .env_remove("STUFFGATE_ADMIN_TOKEN"),
        Duration::from_secs(20),
    );
    assert!(!status.success());
    assert!(stderr.contains("STUFFGATE_ADMIN_TOKEN"), "{stderr}");
}

#[test]
fn readiness_follows_the_upstream_while_liveness_stays_ok() {
    // An upstream that answers every request with 404 until told to stop, then closes its socket.
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = upstream.local_addr().unwrap();
    upstream.set_nonblocking(true).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        while !stopped.load(std::sync::atomic::Ordering::SeqCst) {
            match upstream.accept() {
                Ok((mut stream, _)) => {
                    stream.set_nonblocking(false).unwrap();
                    stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                    let mut buffer = [0u8; 4096];
                    let _ = stream.read(&mut buffer);
                    let _ =
                        stream.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    let gateway = Gateway::start(&login_route(""), address);
    let ready = client().get(format!("{}/readyz", gateway.admin)).send().unwrap();
    assert_eq!(ready.status(), 200);
    let ready: serde_json::Value = ready.json().unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["upstream"]["reachable"], true);
    assert_eq!(ready["reload"]["ok"], true);

    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    server.join().unwrap();
    let not_ready = client().get(format!("{}/readyz", gateway.admin)).send().unwrap();
    assert_eq!(not_ready.status(), 503);
    let body: serde_json::Value = not_ready.json().unwrap();
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["upstream"]["reachable"], false);
    assert!(body["upstream"]["error"].as_str().is_some_and(|e| !e.is_empty()), "{body}");
    assert_eq!(client().get(format!("{}/healthz", gateway.admin)).send().unwrap().status(), 200, "liveness");
    // The gateway's own JSON answer and the upstream error counter.
    let answer = gateway.login(Some("192.0.2.1"), "alice@example.com", "x");
    assert_eq!(answer.status(), 502);
    assert_eq!(answer.json::<serde_json::Value>().unwrap()["error"], "upstream_unavailable");
    let metrics = client().get(format!("{}/metrics", gateway.admin)).send().unwrap().text().unwrap();
    assert!(metrics.contains("stuffgate_upstream_errors_total{kind=\"connect_refused\"} 1"), "{metrics}");
}

#[test]
fn sighup_rereads_the_gateway_file_applies_live_settings_and_refuses_restart_ones() {
    let api = demo_api();
    let gateway =
        Gateway::start_with(&login_route(""), api.addr(), Options { watch_interval_secs: 0, ..Options::default() });
    let dir = gateway.policy_path.parent().unwrap().to_path_buf();
    std::fs::write(
        dir.join("strict.toml"),
        login_route("[[route.defense]]\ntype = \"ip_rate\"\nlimit = 1\nper = \"1h\"\n"),
    )
    .unwrap();
    for _ in 0..3 {
        assert_eq!(
            gateway.login(Some("192.0.2.50"), "alice@example.com", "correct horse battery staple").status(),
            200
        );
    }
    let config = std::fs::read_to_string(gateway.config_path()).unwrap();
    let edited = config
        .replace("policies = [\"policy.toml\"]", "policies = [\"strict.toml\"]")
        .replace("threads = 1", "threads = 3")
        .replace("level = \"info\"", "level = \"info,pingora=warn\"");
    assert_ne!(edited, config);
    std::fs::write(gateway.config_path(), edited).unwrap();
    gateway.hangup();
    assert!(gateway.wait_for_log("now serving these policy files", Duration::from_secs(10)), "{}", gateway.logs());
    assert!(gateway.wait_for_log("`threads` changed, but it takes effect only after a restart", Duration::from_secs(5)));
    assert!(gateway.wait_for_log("log level applied", Duration::from_secs(5)));
    // The new policy list serves: one login an hour per address.
    assert_eq!(gateway.login(Some("192.0.2.51"), "alice@example.com", "correct horse battery staple").status(), 200);
    assert_eq!(gateway.login(Some("192.0.2.51"), "alice@example.com", "correct horse battery staple").status(), 429);
    let ready: serde_json::Value = client().get(format!("{}/readyz", gateway.admin)).send().unwrap().json().unwrap();
    assert_eq!(ready["reload"]["pending_restart"], serde_json::json!(["threads"]), "{ready}");
    assert_eq!(ready["status"], "degraded");
    let policy: serde_json::Value = client().get(format!("{}/policy", gateway.admin)).send().unwrap().json().unwrap();
    assert!(policy["files"][0].as_str().unwrap().ends_with("strict.toml"), "{policy}");
    let metrics = client().get(format!("{}/metrics", gateway.admin)).send().unwrap().text().unwrap();
    assert!(metrics.contains("stuffgate_policy_reloads_total{result=\"restart_required\"} 1"), "{metrics}");

    // A policy list that does not compile is refused and the running one stays.
    std::fs::write(dir.join("broken.toml"), "[[route]]\nname = \"x\"\nkind = \"logon\"\npath = \"/x\"\n").unwrap();
    let config = std::fs::read_to_string(gateway.config_path()).unwrap();
    std::fs::write(gateway.config_path(), config.replace("\"strict.toml\"", "\"broken.toml\"")).unwrap();
    gateway.hangup();
    assert!(gateway.wait_for_log("policies refused", Duration::from_secs(10)), "{}", gateway.logs());
    assert_eq!(gateway.login(Some("192.0.2.51"), "alice@example.com", "correct horse battery staple").status(), 429);
    let ready: serde_json::Value = client().get(format!("{}/readyz", gateway.admin)).send().unwrap().json().unwrap();
    assert_eq!(ready["reload"]["ok"], false, "{ready}");
}

#[test]
fn run_on_a_busy_port_exits_non_zero_and_says_why() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.toml"), login_route("")).unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "listen = [\"127.0.0.1:{port}\"]\nadmin = \"127.0.0.1:{}\"\nupstream = {{ address = \"127.0.0.1:9\" }}\npolicies = [\"p.toml\"]\n",
            free_port()
        ),
    )
    .unwrap();
    let (status, _, stderr) =
        run_bounded(Command::new(BIN).args(["run", "--config"]).arg(&config), Duration::from_secs(20));
    assert!(!status.success());
    assert!(stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")), "{stderr}");
    assert!(stderr.contains("in use"), "{stderr}");
    // The admin port too.
    std::fs::write(
        &config,
        format!(
            "listen = [\"127.0.0.1:{}\"]\nadmin = \"127.0.0.1:{port}\"\nupstream = {{ address = \"127.0.0.1:9\" }}\npolicies = [\"p.toml\"]\n",
            free_port()
        ),
    )
    .unwrap();
    let (status, _, stderr) =
        run_bounded(Command::new(BIN).args(["run", "--config"]).arg(&config), Duration::from_secs(20));
    assert!(!status.success());
    assert!(stderr.contains("`admin`"), "{stderr}");
    // A policy error is reported even while the port is busy: the configuration is checked before any bind.
    std::fs::write(dir.path().join("p.toml"), "[[route]]\nname = \"x\"\nkind = \"logon\"\npath = \"/x\"\n").unwrap();
    std::fs::write(
        &config,
        format!(
            "listen = [\"127.0.0.1:{port}\"]\nadmin = \"127.0.0.1:{}\"\nupstream = {{ address = \"127.0.0.1:9\" }}\npolicies = [\"p.toml\"]\n",
            free_port()
        ),
    )
    .unwrap();
    let (status, _, stderr) =
        run_bounded(Command::new(BIN).args(["run", "--config"]).arg(&config), Duration::from_secs(20));
    assert!(!status.success());
    assert!(stderr.contains("p.toml:3") && stderr.contains("logon"), "{stderr}");
    assert!(!stderr.contains("cannot listen"), "{stderr}");
    drop(taken);
}

#[test]
fn demo_and_geoip_lookup_work_from_another_directory_and_leave_no_temp_policy() {
    let elsewhere = tempfile::tempdir().unwrap();
    let (status, stdout, stderr) = run_bounded(
        Command::new(BIN).args(["geoip", "lookup", "8.8.8.8"]).current_dir(elsewhere.path()),
        Duration::from_secs(30),
    );
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("8.8.8.8\tUS"), "{stdout}");

    let temp_policies = || {
        std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("stuffgate-demo-policy"))
            .count()
    };
    let before = temp_policies();
    let (listen, admin_port, api) = (free_port(), free_port(), free_port());
    let mut demo = Command::new(BIN)
        .args(["demo", "--users", "20", "--log-format", "json"])
        .args(["--listen", &format!("127.0.0.1:{listen}")])
        .args(["--admin", &format!("127.0.0.1:{admin_port}")])
        .args(["--api", &format!("127.0.0.1:{api}")])
        .current_dir(elsewhere.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut healthy = false;
    while Instant::now() < deadline && !healthy {
        if let Some(status) = demo.try_wait().unwrap() {
            let output = demo.wait_with_output().unwrap();
            panic!("demo exited ({status}): {}", String::from_utf8_lossy(&output.stderr));
        }
        healthy =
            client().get(format!("http://127.0.0.1:{admin_port}/healthz")).send().is_ok_and(|r| r.status() == 200);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(healthy, "the demo did not start from another directory");
    let login = client()
        .post(format!("http://127.0.0.1:{listen}/api/login"))
        .header("content-type", "application/json")
        .body(r#"{"email":"alice@example.com","password":"correct horse battery staple"}"#)
        .send()
        .unwrap();
    assert_eq!(login.status(), 200);
    // The banner (printed before the gateway listens) says how to reach the decisions API: its token works.
    let mut banner = String::new();
    let mut reader = std::io::BufReader::new(demo.stdout.take().unwrap());
    while !banner.contains("decisions ban") {
        let mut line = String::new();
        assert!(std::io::BufRead::read_line(&mut reader, &mut line).unwrap() > 0, "{banner}");
        banner.push_str(&line);
    }
    let token = banner.split("STUFFGATE_ADMIN_TOKEN=").nth(1).and_then(|t| t.split_whitespace().next()).unwrap();
    let (status, listed, stderr) = run_bounded(
        Command::new(BIN)
            .args(["decisions", "list", "--admin", &format!("http://127.0.0.1:{admin_port}")])
            .env("STUFFGATE_ADMIN_TOKEN", token),
        Duration::from_secs(20),
    );
    assert!(status.success(), "{stderr}");
    assert!(listed.contains("manual bans"), "{listed}");
    // Its stuffing loop (wrong passwords no breach list holds) shows failed logins first and a block in the end.
    assert!(banner.contains("not-their-password") && banner.contains("seq 1 200"), "{banner}");
    let statuses: Vec<u16> = (1..=200)
        .map(|i| {
            client()
                .post(format!("http://127.0.0.1:{listen}/api/login"))
                .header("content-type", "application/json")
                .body(format!(r#"{{"email":"user{i}@example.com","password":"not-their-password"}}"#))
                .send()
                .unwrap()
                .status()
                .as_u16()
        })
        .collect();
    assert_eq!(statuses[0], 401, "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    let _ = demo.kill();
    let output = demo.wait_with_output().unwrap();
    let stdout = banner + &String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("policies/default.toml"), "the shipped policy, found by path: {stdout}");
    assert_eq!(temp_policies(), before, "no temporary policy written");
}

#[test]
fn a_replay_against_a_demo_api_with_too_few_users_is_refused_up_front() {
    let api =
        stuffgate::demo_api::DemoApi::spawn("127.0.0.1:0".parse().unwrap(), stuffgate::demo_api::DemoState::seeded(10))
            .unwrap();
    let gateway = Gateway::start(&login_route(""), api.addr());
    let started = Instant::now();
    let (status, stdout, stderr) = run_bounded(
        Command::new(BIN).args(["replay", "7pay-burst", "--target", &gateway.url]),
        Duration::from_secs(60),
    );
    assert!(!status.success(), "{stdout}");
    let users = 10 + stuffgate::demo_api::NAMED_USERS.len();
    assert!(stderr.contains(&format!("has {users} users")) && stderr.contains("--users 5000"), "{stderr}");
    assert!(stderr.contains("--allow-missing-users"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(30), "refused before replaying");
    let sent =
        client().get(format!("{}/__demo/stats", gateway.url)).send().unwrap().json::<serde_json::Value>().unwrap();
    assert_eq!(sent["logins_failed"], 0, "nothing was replayed: {sent}");
}

#[test]
fn logs_are_json_without_build_paths_and_a_missing_data_file_is_logged_once() {
    let api = demo_api();
    let dir = tempfile::tempdir().unwrap();
    let geo = dir.path().join("country.mmdb");
    std::fs::copy(shipped("geoip/country.mmdb"), &geo).unwrap();
    let extra = format!("[geoip]\ncountry_db = \"{}\"\n", geo.display());
    let gateway = Gateway::start_with(
        &login_route(""),
        api.addr(),
        Options { extra_config: &extra, watch_interval_secs: 1, ..Options::default() },
    );
    // An unusable body: its decision event says why.
    let bad = client()
        .post(format!("{}/api/login", gateway.url))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(gateway.wait_for_log("\"verdict\":\"bad_request\"", Duration::from_secs(5)), "{}", gateway.logs());
    let event = gateway.decisions().into_iter().find(|d| d["verdict"] == "bad_request").unwrap();
    assert!(event["reasons"].as_str().unwrap().starts_with("body:"), "{event}");

    // SIGHUP with the database unchanged: one line about it.
    gateway.hangup();
    assert!(gateway.wait_for_log("GeoIP database unchanged", Duration::from_secs(10)), "{}", gateway.logs());
    let after_hup = gateway.logs();
    let hup_at = after_hup.find("SIGHUP").unwrap();
    let geo_lines = after_hup[hup_at..].lines().filter(|l| l.to_lowercase().contains("geoip")).count();
    assert_eq!(geo_lines, 1, "{}", &after_hup[hup_at..]);

    // The database goes missing: one error, not one per poll. Two policy edits later (each seen by a poll), still one.
    std::fs::remove_file(&geo).unwrap();
    assert!(gateway.wait_for_log("GeoIP database reload refused", Duration::from_secs(10)), "{}", gateway.logs());
    for n in 1..=2 {
        let reloads = gateway.count_log("policy reloaded");
        let mut policy = std::fs::read_to_string(&gateway.policy_path).unwrap();
        policy.push_str(&format!("\n# edit {n}\n"));
        std::fs::write(&gateway.policy_path, policy).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while gateway.count_log("policy reloaded") == reloads && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(gateway.count_log("policy reloaded") > reloads, "poll {n} did not happen");
    }
    assert_eq!(gateway.count_log("reload refused"), 1, "{}", gateway.logs());
    assert_eq!(
        gateway.count_log("\"level\":\"WARN\""),
        gateway.count_log("no privacy.hash_key_env"),
        "{}",
        gateway.logs()
    );

    let logs = gateway.logs();
    assert!(!logs.contains(".cargo/registry") && !logs.contains("log.file"), "{logs}");
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        assert!(serde_json::from_str::<serde_json::Value>(line).is_ok(), "not JSON: {line}");
    }
}

#[test]
fn check_dump_prints_the_merged_configuration_and_completions_are_generated() {
    let (status, stdout, stderr) = run_bounded(
        Command::new(BIN).args(["check", "--dump"]).arg(shipped("examples/gateway.toml")),
        Duration::from_secs(60),
    );
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("listen = [\"127.0.0.1:8080\"]"), "{stdout}");
    assert!(stdout.contains("[[route]]  # from") && stdout.contains("path = \"/api/login\""), "{stdout}");
    assert!(stdout.contains("[[route.defense]]") && stdout.contains("mode = \"enforce\""), "{stdout}");
    assert!(stdout.contains("threshold = "), "parameters as written: {stdout}");
    assert!(stdout.contains("ok: "), "{stdout}");
    // The gateway part is TOML an operator could paste back: no Rust debug text.
    let gateway_part = stdout.split("# policy files").next().unwrap();
    let table: toml::Table = toml::from_str(gateway_part).unwrap_or_else(|e| panic!("{e}:\n{gateway_part}"));
    assert_eq!(table["trusted_proxies"], toml::Value::Array(vec!["127.0.0.1".into()]), "{gateway_part}");
    assert_eq!(table["runtime"].as_str(), Some("per_thread"), "{gateway_part}");
    assert_eq!(table["forwarded_header"].as_str(), Some("x-forwarded-for"), "{gateway_part}");
    assert_eq!(table["connections"]["max_connections_per_client"].as_integer(), Some(64), "{gateway_part}");
    for shell in ["bash", "zsh", "fish"] {
        let (status, stdout, _) = run_bounded(Command::new(BIN).args(["completions", shell]), Duration::from_secs(20));
        assert!(status.success());
        assert!(stdout.contains("decisions") && stdout.contains("replay"), "{shell}: {stdout}");
    }
}

#[test]
fn process_and_build_info_metrics_are_served() {
    let api = demo_api();
    let gateway = Gateway::start(&login_route(""), api.addr());
    let metrics = client().get(format!("{}/metrics", gateway.admin)).send().unwrap().text().unwrap();
    let value = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{name} missing:\n{metrics}"))
    };
    assert!(value("process_resident_memory_bytes") > 1e6);
    assert!(value("process_open_fds") >= 3.0);
    assert!(value("process_start_time_seconds") > 1.7e9);
    assert!(metrics.contains(&format!("stuffgate_build_info{{arch=\"{}\"", std::env::consts::ARCH)), "{metrics}");
    assert!(metrics.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))));
}

#[test]
fn an_offline_replay_reports_which_defense_answered_and_the_policy_it_ran() {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("spray.html");
    let (status, stdout, stderr) = run_bounded(
        Command::new(BIN)
            .args(["replay", "spray", "--offline", "--json", "--policy"])
            .arg(shipped("policies/default.toml"))
            .arg("--html")
            .arg(&html),
        Duration::from_secs(120),
    );
    assert!(status.success(), "{stderr}");
    // The HTML report has what the text one has: who answered, the policy, and challenges apart from blocks.
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<h2>Answered by defense</h2>") && page.contains("<td>new_device</td>"), "{page}");
    assert!(page.contains("<h2>Policy</h2>") && page.contains("policies/default.toml"), "{page}");
    assert!(page.contains("<th>challenged</th>"), "{page}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(report["policy"].as_str().unwrap().ends_with("policies/default.toml"), "{}", report["policy"]);
    let by = report["blocked_by"].as_object().unwrap();
    let blocked: u64 = by.values().map(|n| n.as_u64().unwrap()).sum();
    // A spray of common (breached) passwords from devices no account has used: the default policy challenges it
    // (`new_device`), and the bots of this replay never solve.
    assert!(by.get("new_device").and_then(|n| n.as_u64()).unwrap_or(0) > 0, "{by:?}");
    let totals = &report["totals"];
    assert!(totals["challenged"].as_u64().unwrap() > 0, "a challenge is counted as a challenge: {totals}");
    assert_eq!(
        blocked,
        totals["blocked"].as_u64().unwrap() + totals["challenged"].as_u64().unwrap(),
        "every blocked or challenged request is attributed"
    );
}

/// `stuffgate check FILE`: (success, stderr).
fn check(dir: &std::path::Path, name: &str, text: &str) -> (bool, String) {
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    let (status, _, stderr) = run_bounded(Command::new(BIN).arg("check").arg(&file), Duration::from_secs(60));
    (status.success(), stderr)
}

#[test]
fn check_refuses_each_gateway_file_hole_with_its_line_key_and_the_nearest_valid_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.toml"), login_route("")).unwrap();
    let base = "upstream = { address = \"127.0.0.1:9\" }\npolicies = [\"p.toml\"]\n";
    let cases = [
        // A bare word the log filter would take for a target name, silencing every line.
        (format!("{base}[log]\nlevel = \"warning\"\n"), "g1.toml:4: `log.level`", "did you mean `warn`?"),
        (
            format!("{base}log = {{ format = \"text\", level = \"verbose\" }}\n"),
            "g2.toml:3: `log.level`",
            "warn, error or off",
        ),
        (
            "upstream = { adress = \"127.0.0.1:9\" }\npolicies = [\"p.toml\"]\n".to_string(),
            "g3.toml:1: `upstream.adress`",
            "did you mean `address`?",
        ),
        (
            format!("{base}forwarded_header = \"x-forwarded-fro\"\n"),
            "g4.toml:3: `forwarded_header`",
            "did you mean `x-forwarded-for`?",
        ),
        (
            format!("{base}\n[connections]\nidle_timeout_secs = 0\n"),
            "g5.toml:5: `connections.idle_timeout_secs`",
            "at least 1 second",
        ),
        (format!("{base}thraeds = 2\n"), "g6.toml:3: `thraeds`", "did you mean `threads`?"),
        (format!("{base}[geoip]\ncountry_db = \"missing.mmdb\"\n"), "g7.toml:4: `geoip.country_db`", "missing.mmdb"),
        (base.replace("p.toml", "nope.toml"), "g8.toml:2: `policies`", "nope.toml: cannot read the file"),
    ];
    for (index, (text, located, hint)) in cases.iter().enumerate() {
        let (ok, stderr) = check(dir.path(), &format!("g{}.toml", index + 1), text);
        assert!(!ok, "{text}");
        assert!(stderr.contains(located) && stderr.contains(hint), "want `{located}` and `{hint}` in: {stderr}");
    }
    let (ok, stderr) = check(dir.path(), "good.toml", &format!("{base}[log]\nlevel = \"warn,stuffgate=debug\"\n"));
    assert!(ok, "{stderr}");
    // Shipped data files named relative, from a gateway file elsewhere run from elsewhere: found where the shipped
    // files are searched (as `stuffgate demo` finds them).
    let data = dir.path().join("data.toml");
    std::fs::write(
        &data,
        format!(
            "{base}[geoip]\ncountry_db = \"geoip/country.mmdb\"\n\
             [breach]\npassword_filter = \"policies/data/common-passwords.bloom\"\n"
        ),
    )
    .unwrap();
    let (status, _, stderr) =
        run_bounded(Command::new(BIN).arg("check").arg(&data).current_dir(dir.path()), Duration::from_secs(60));
    assert!(status.success(), "{stderr}");
}

#[test]
fn check_refuses_unknown_defense_names_and_when_references_that_could_never_fire() {
    let dir = tempfile::tempdir().unwrap();
    let new_device = |when: &str| format!("[[route.defense]]\ntype = \"new_device\"\nwhen = [{when}]\n");
    let failures = "[[route.defense]]\ntype = \"failed_logins\"\nkey = \"account\"\nthreshold = 3\nwindow = \"10m\"\n";
    // Every finding the registry knows is accepted in `when` once its defense comes first: user_agent included.
    let (ok, stderr) = check(
        dir.path(),
        "ua.toml",
        &login_route(&format!("[[route.defense]]\ntype = \"user_agent\"\n{}", new_device("\"user_agent\""))),
    );
    assert!(ok, "{stderr}");
    let cases = [
        (
            login_route("[[route.defense]]\ntype = \"failed_login\"\n"),
            "p1.toml:7: `route[login].defense[0].type`",
            "did you mean `failed_logins`?",
        ),
        (
            login_route(&format!("{}{failures}", new_device("\"account_failures\""))),
            "p2.toml:8: `route[login].defense[0].when`",
            "move this defense below it",
        ),
        (
            login_route(&format!("{failures}{}", new_device("\"geo_velocity\""))),
            "p3.toml:13: `route[login].defense[1].when`",
            "add a `type = \"geo_velocity\"` defense above it",
        ),
        (
            login_route(&new_device("\"geo_veloctiy\"")),
            "p4.toml:8: `route[login].defense[0].when`",
            "did you mean `geo_velocity`?",
        ),
        ("[defaults]\nmode = \"obsrve\"\n".to_string(), "p5.toml:2: `defaults.mode`", "did you mean `observe`?"),
    ];
    for (index, (text, located, hint)) in cases.iter().enumerate() {
        let (ok, stderr) = check(dir.path(), &format!("p{}.toml", index + 1), text);
        assert!(!ok, "{text}");
        assert!(stderr.contains(located) && stderr.contains(hint), "want `{located}` and `{hint}` in: {stderr}");
    }
    // A likely misspelt body field compiles (the API may use any name) but is warned about, with its line.
    let (ok, stderr) = check(dir.path(), "w.toml", &login_route("").replace("\"email\"", "\"emial\""));
    assert!(ok, "{stderr}");
    assert!(stderr.contains("warning: ") && stderr.contains("w.toml:5: `route[login].body.account`"), "{stderr}");
    assert!(stderr.contains("misspelling of `email`"), "{stderr}");
}

#[test]
fn an_online_replay_refuses_to_run_when_it_cannot_reach_a_protected_route() {
    let (upstream, _) = common::recording_upstream(401);
    let policy = "[[route]]\nname = \"session\"\nkind = \"generic\"\npath = \"/v2/other\"\n\
                  body = { account = \"user.login\", password = \"secret\" }\n";
    let gateway = Gateway::start(policy, upstream);
    let replay = |extra: &[&str]| {
        run_bounded(
            Command::new(BIN).args(["replay", "7pay-burst", "--target", &gateway.url]).args(extra),
            Duration::from_secs(30),
        )
    };
    // Not the demo API behind it, and nothing names the API: refused before a single request.
    let (status, _, stderr) = replay(&[]);
    assert!(!status.success());
    assert!(stderr.contains("not the demo API") && stderr.contains("--admin"), "{stderr}");
    // With the admin listener the replay reads the gateway's routes: none takes what the scenario sends.
    let (status, _, stderr) = replay(&["--admin", &gateway.admin]);
    assert!(!status.success());
    assert!(
        stderr.contains("matches a protected route") && stderr.contains("login requests to /api/login"),
        "{stderr}"
    );
}
