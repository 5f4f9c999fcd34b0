//! What ships besides the binary: alert rules (promtool), the Grafana dashboard, the systemd unit, the Dockerfile,
//! the licence, the changelog and one documentation page per defense, each checked against the code.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const BIN: &str = env!("CARGO_BIN_EXE_stuffgate");

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Every Rust source under src/, for "is this metric registered" checks.
fn sources() -> String {
    fn walk(dir: &Path, out: &mut String) {
        for entry in std::fs::read_dir(dir).unwrap().filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push_str(&std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut out = String::new();
    walk(&Path::new(ROOT).join("src"), &mut out);
    out
}

/// Metric names in a PromQL expression (identifiers followed by `{`, `[` or `)` that look like ours or Prometheus').
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut current = String::new();
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            current.push(c);
            continue;
        }
        if current.starts_with("stuffgate_") || current.starts_with("process_") {
            names.push(std::mem::take(&mut current));
        }
        current.clear();
    }
    names
}

fn registered(name: &str, code: &str) -> bool {
    let base = ["_bucket", "_sum", "_count"].iter().fold(name, |n, suffix| n.strip_suffix(suffix).unwrap_or(n));
    code.contains(&format!("\"{base}\""))
}

#[test]
fn alert_rules_pass_promtool_and_name_only_metrics_the_gateway_exports() {
    let code = sources();
    let rules = read("deploy/prometheus/alerts.yml");
    let mut checked = 0;
    for line in rules.lines() {
        for name in metric_names(line) {
            assert!(registered(&name, &code), "alerts.yml uses `{name}`, which the gateway does not export");
            checked += 1;
        }
    }
    assert!(checked >= 8, "{checked}");
    match Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(Path::new(ROOT).join("deploy/prometheus/alerts.yml"))
        .output()
    {
        Ok(output) => assert!(
            output.status.success(),
            "promtool check rules:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(_) if !ci() => eprintln!("skipping promtool (Debian: apt-get install prometheus)"),
        Err(e) => panic!("CI=true but promtool cannot run: {e}"),
    }
}

#[test]
fn the_grafana_dashboard_is_importable_and_queries_exported_metrics() {
    let code = sources();
    let board: serde_json::Value = serde_json::from_str(&read("deploy/grafana/stuffgate.json")).unwrap();
    assert_eq!(board["__inputs"][0]["pluginId"], "prometheus", "importable with a data source prompt");
    let panels = board["panels"].as_array().unwrap();
    assert!(panels.len() >= 10);
    let mut ids = std::collections::HashSet::new();
    let mut queried = std::collections::HashSet::new();
    for panel in panels {
        assert!(ids.insert(panel["id"].as_u64().unwrap()), "duplicate panel id");
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for name in metric_names(expr) {
                assert!(registered(&name, &code), "panel `{}` queries `{name}`, not exported", panel["title"]);
                queried.insert(name);
            }
        }
    }
    for wanted in [
        "stuffgate_requests_total",
        "stuffgate_defense_findings_total",
        "stuffgate_upstream_errors_total",
        "process_resident_memory_bytes",
    ] {
        assert!(queried.contains(wanted), "the dashboard does not show {wanted}");
    }
}

#[test]
fn the_systemd_unit_reloads_with_sighup_and_is_hardened() {
    let unit = read("deploy/stuffgate.service");
    for line in [
        "ExecReload=/bin/kill -HUP $MAINPID",
        "LimitNOFILE=",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "ExecStart=/usr/local/bin/stuffgate run --config /etc/stuffgate/gateway.toml",
    ] {
        assert!(unit.lines().any(|l| l.starts_with(line)), "the unit lacks `{line}`");
    }
    // The ExecStart command line is one the binary accepts.
    let help = Command::new(BIN).args(["run", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("--config"));
    if let Ok(output) =
        Command::new("systemd-analyze").arg("verify").arg(Path::new(ROOT).join("deploy/stuffgate.service")).output()
    {
        let text = String::from_utf8_lossy(&output.stderr);
        // The binary is not installed at /usr/local/bin here; anything else it reports is a unit error.
        let problems: Vec<&str> =
            text.lines().filter(|l| !l.contains("/usr/local/bin/stuffgate") && !l.trim().is_empty()).collect();
        assert!(problems.is_empty(), "systemd-analyze verify: {problems:?}");
    }
}

#[test]
fn the_dockerfile_builds_the_locked_binary_and_ships_the_data_where_the_binary_looks() {
    let docker = read("Dockerfile");
    assert!(docker.contains("cargo build --locked --release"));
    assert!(docker.contains("cmake"), "the build stage installs cmake (libz-ng-sys)");
    for data in ["policies", "geoip"] {
        let target = format!("COPY {data} {}/{data}", stuffgate::shipped::SHARE_DIRS[0]);
        assert!(docker.contains(&target), "`{target}` missing: the demo would not find its data");
    }
    assert!(read(".dockerignore").contains("target/"));
}

#[test]
fn the_licence_matches_cargo_toml_and_the_changelog_knows_this_version() {
    let manifest = read("Cargo.toml");
    assert!(manifest.contains("license = \"Apache-2.0\""));
    let licence = read("LICENSE");
    assert!(licence.contains("Apache License") && licence.contains("Version 2.0, January 2004"));
    let changelog = read("CHANGELOG.md");
    assert!(changelog.contains(&format!("## [{}]", env!("CARGO_PKG_VERSION"))), "CHANGELOG lacks this version");
    assert!(changelog.contains("## [Unreleased]"));
}

#[test]
fn every_defense_has_a_page_whose_example_passes_check() {
    let dir = tempfile::tempdir().unwrap();
    let index = read("docs/defenses/README.md");
    for name in stuffgate::defense::registry::names() {
        let page = read(&format!("docs/defenses/{name}.md"));
        for section in ["## Configuration", "## What it catches", "## False positives", "## Tuning"] {
            assert!(page.contains(section), "docs/defenses/{name}.md lacks `{section}`");
        }
        assert!(index.contains(&format!("({name}.md)")), "the index does not link {name}");
        let example = page
            .split("```toml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .unwrap_or_else(|| panic!("docs/defenses/{name}.md has no example"));
        assert!(example.contains(&format!("type = \"{name}\"")), "{name}'s example uses another defense");
        let file = dir.path().join(format!("{name}.toml"));
        std::fs::write(&file, example).unwrap();
        let output = Command::new(BIN).arg("check").arg(&file).output().unwrap();
        assert!(
            output.status.success(),
            "docs/defenses/{name}.md's example fails `stuffgate check`:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn the_your_api_guides_gateway_file_and_policy_pass_check() {
    let page = read("docs/your-api.md");
    let blocks: Vec<&str> = page.split("```toml\n").skip(1).map(|rest| rest.split("```").next().unwrap()).collect();
    assert_eq!(blocks.len(), 2, "a gateway file and a policy");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gateway.toml"), blocks[0]).unwrap();
    std::fs::write(dir.path().join("my-api.toml"), blocks[1]).unwrap();
    let output = Command::new(BIN).arg("check").arg("gateway.toml").current_dir(dir.path()).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
}

#[test]
fn the_tls_pages_listener_example_passes_check_with_real_certificates() {
    let page = read("docs/tls.md");
    let example = page.split("```toml\n").nth(1).and_then(|rest| rest.split("```").next()).unwrap();
    let (listen, connections) = example.split_once("[connections]").unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("certs")).unwrap();
    for (cert, key, name) in
        [("fullchain.pem", "key.pem", "example.com"), ("login.pem", "login.key", "login.example.com")]
    {
        let pair = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        std::fs::write(dir.path().join("certs").join(cert), pair.cert.pem()).unwrap();
        std::fs::write(dir.path().join("certs").join(key), pair.key_pair.serialize_pem()).unwrap();
    }
    let data = |file: &str| Path::new(ROOT).join(file).display().to_string();
    let gateway = format!(
        "{listen}upstream = {{ address = \"127.0.0.1:8081\" }}\npolicies = [\"{}\"]\n[connections]{connections}\
         [geoip]\ncountry_db = \"{}\"\n[breach]\npassword_filter = \"{}\"\n",
        data("policies/default.toml"),
        data("geoip/country.mmdb"),
        data("policies/data/common-passwords.bloom"),
    );
    std::fs::write(dir.path().join("gateway.toml"), gateway).unwrap();
    let output = Command::new(BIN).arg("check").arg("gateway.toml").current_dir(dir.path()).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    // A key that does not belong to its certificate is refused, naming the listener entry.
    std::fs::copy(dir.path().join("certs/login.key"), dir.path().join("certs/key.pem")).unwrap();
    let output = Command::new(BIN).arg("check").arg("gateway.toml").current_dir(dir.path()).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("listen[1].tls"), "{stderr}");
}
