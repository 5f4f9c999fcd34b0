//! A real gateway process in front of a real demo login API, on fresh loopback ports.
#![allow(dead_code)]

pub mod browser;
pub mod net;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stuffgate::demo_api::{DemoApi, DemoState};

/// Under CI (`CI=true`) a missing server or tool fails its test instead of skipping it.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The gateway's Prometheus text from its admin listener.
pub fn metrics(gateway: &Gateway) -> String {
    client().get(format!("{}/metrics", gateway.admin)).send().expect("/metrics answers").text().expect("a body")
}

/// A loopback port nothing listens on, for a server this test starts. Ports come from 20000..32000, below Linux's
/// ephemeral range (32768..), so the kernel never hands one to an outgoing connection or to another `bind(:0)`
/// between this check and the server's bind; each test process walks the range from its own offset, so parallel
/// tests (and test binaries) rarely meet, and a port someone holds (a running demo's 8080/9901 included) is skipped.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {FIRST}..{}", FIRST + SPAN)
}

pub fn demo_api() -> DemoApi {
    DemoApi::spawn("127.0.0.1:0".parse().unwrap(), DemoState::seeded(200)).expect("demo API starts")
}

pub struct Gateway {
    child: Child,
    pub url: String,
    pub admin: String,
    pub policy_path: PathBuf,
    _dir: tempfile::TempDir,
    lines: Arc<Mutex<Vec<String>>>,
}

pub struct Options<'a> {
    pub trusted_proxies: &'a [&'a str],
    /// More lines for gateway.toml (e.g. a `[geoip]` table).
    pub extra_config: &'a str,
    /// Seconds between file-change polls; 0 reloads on SIGHUP only.
    pub watch_interval_secs: u64,
    /// More keys for the `upstream` inline table, e.g. `, read_timeout_secs = 1`.
    pub upstream_options: &'a str,
    /// Proxy threads, and how they are laid out (`per_thread` or `shared`).
    pub threads: usize,
    pub runtime: &'a str,
    /// Environment variables for the gateway process (e.g. the admin token).
    pub env: &'a [(&'a str, &'a str)],
    /// `log.level` of the gateway file.
    pub log_level: &'a str,
}

/// The shipped data files, as `stuffgate demo` uses them (the default policy needs both).
pub const SHIPPED_DATA: &str = concat!(
    "[geoip]\ncountry_db = \"",
    env!("CARGO_MANIFEST_DIR"),
    "/geoip/country.mmdb\"\n[breach]\npassword_filter = \"",
    env!("CARGO_MANIFEST_DIR"),
    "/policies/data/common-passwords.bloom\"\n"
);

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            trusted_proxies: &["127.0.0.1"],
            extra_config: SHIPPED_DATA,
            watch_interval_secs: 1,
            upstream_options: "",
            threads: 1,
            runtime: "per_thread",
            env: &[],
            log_level: "info",
        }
    }
}

/// Path of a file shipped in the repository.
pub fn shipped(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

/// Asserts that the upstream behind `gateway` got nothing since `heads` was last read, by a positive signal rather
/// than a quiet interval (which passes vacuously on a slow machine): a marker POST sent now, on an unprotected
/// path, must be the next head recorded. The requests before it were answered already, so had any been forwarded,
/// its head would have arrived first.
pub fn assert_nothing_forwarded(gateway: &Gateway, heads: &std::sync::mpsc::Receiver<String>, what: &str) {
    let marker = format!("marker-{}", std::process::id());
    client()
        .post(format!("{}/test-marker", gateway.url))
        .header("x-test-marker", &marker)
        .body("{}")
        .send()
        .expect("the marker request is answered");
    let next = heads.recv_timeout(Duration::from_secs(10)).expect("the marker reached the upstream");
    assert!(next.contains(&marker), "{what}: the upstream got another request first:\n{next}");
}

/// An upstream that records the head of every POST it gets and answers with `status` and a JSON body.
pub fn recording_upstream(status: u16) -> (SocketAddr, std::sync::mpsc::Receiver<String>) {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(50) {
            let Ok(mut stream) = stream else { continue };
            let mut buffer = vec![0u8; 16 * 1024];
            let mut seen = 0;
            while let Ok(n) = stream.read(&mut buffer[seen..]) {
                if n == 0 {
                    break;
                }
                seen += n;
                let text = String::from_utf8_lossy(&buffer[..seen]).to_string();
                let Some(head_end) = text.find("\r\n\r\n") else {
                    continue;
                };
                let length: usize = text
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0))
                    })
                    .unwrap_or(0);
                if seen >= head_end + 4 + length {
                    if text.starts_with("POST") {
                        let _ = sender.send(text[..head_end].to_ascii_lowercase());
                    }
                    let body = "{}";
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(answer.as_bytes());
                    break;
                }
            }
        }
    });
    (address, receiver)
}

impl Gateway {
    pub fn start(policy: &str, upstream: SocketAddr) -> Gateway {
        Gateway::start_with(policy, upstream, Options::default())
    }

    pub fn start_with(policy: &str, upstream: SocketAddr, options: Options<'_>) -> Gateway {
        // Another process may take a port between `free_port` and the gateway's bind: the gateway then refuses to
        // start ("cannot listen on"), and it is started again on other ports.
        for _ in 0..3 {
            match Gateway::try_start(policy, upstream, &options) {
                Ok(gateway) => return gateway,
                Err(logs) if logs.contains("cannot listen on") => continue,
                Err(logs) => panic!("gateway exited; its output:\n{logs}"),
            }
        }
        panic!("gateway found no free ports in three tries")
    }

    fn try_start(policy: &str, upstream: SocketAddr, options: &Options<'_>) -> Result<Gateway, String> {
        let dir = tempfile::tempdir().expect("temp dir");
        let policy_path = dir.path().join("policy.toml");
        std::fs::write(&policy_path, policy).expect("write policy");
        let (port, admin_port) = (free_port(), free_port());
        let trusted: Vec<String> = options.trusted_proxies.iter().map(|t| format!("\"{t}\"")).collect();
        let config = format!(
            "listen = [\"127.0.0.1:{port}\"]\nadmin = \"127.0.0.1:{admin_port}\"\nupstream = {{ address = \"{upstream}\"{} }}\n\
             policies = [\"policy.toml\"]\ntrusted_proxies = [{}]\nthreads = {}\nruntime = \"{}\"\nwatch_interval_secs = {}\n\
             log = {{ format = \"json\", level = \"{}\" }}\n{}\n",
            options.upstream_options,
            trusted.join(", "),
            options.threads,
            options.runtime,
            options.watch_interval_secs,
            options.log_level,
            options.extra_config
        );
        let config_path = dir.path().join("gateway.toml");
        std::fs::write(&config_path, config).expect("write gateway config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_stuffgate"))
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .envs(options.env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("gateway starts");
        let lines = capture_output(&mut child);
        let mut gateway = Gateway {
            child,
            url: format!("http://127.0.0.1:{port}"),
            admin: format!("http://127.0.0.1:{admin_port}"),
            policy_path,
            _dir: dir,
            lines,
        };
        gateway.wait_ready()?;
        Ok(gateway)
    }

    /// Wait until both listeners answer; `Err(output)` when the process exited instead.
    fn wait_ready(&mut self) -> Result<(), String> {
        let client = client();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                // The output threads read to the end of the closed pipes.
                std::thread::sleep(Duration::from_millis(100));
                return Err(format!("({status})\n{}", self.logs()));
            }
            let admin_ok = client.get(format!("{}/healthz", self.admin)).send().is_ok_and(|r| r.status() == 200);
            let proxy_ok = client.get(format!("{}/", self.url)).send().is_ok();
            if admin_ok && proxy_ok {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("gateway did not become ready; its output:\n{}", self.logs());
    }

    /// The gateway file the process was started with.
    pub fn config_path(&self) -> PathBuf {
        self._dir.path().join("gateway.toml")
    }

    /// Count of log lines containing `needle`.
    pub fn count_log(&self, needle: &str) -> usize {
        self.lines.lock().unwrap().iter().filter(|l| l.contains(needle)).count()
    }

    /// Send SIGHUP (reload) to the gateway process.
    pub fn hangup(&self) {
        let status = Command::new("kill").arg("-HUP").arg(self.child.id().to_string()).status().expect("kill runs");
        assert!(status.success());
    }

    pub fn logs(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Wait (bounded) until a log line contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.lines.lock().unwrap().iter().any(|l| l.contains(needle)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Decision events (JSON lines of target stuffgate::decision).
    pub fn decisions(&self) -> Vec<serde_json::Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("stuffgate::decision"))
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn login(&self, from: Option<&str>, email: &str, password: &str) -> reqwest::blocking::Response {
        let mut request = client()
            .post(format!("{}/api/login", self.url))
            .header("content-type", "application/json")
            .body(serde_json::json!({ "email": email, "password": password }).to_string());
        if let Some(ip) = from {
            request = request.header("x-forwarded-for", ip);
        }
        request.send().expect("gateway answers")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every line a child process writes to stdout and stderr, collected as it arrives (the pipes must be `piped()`).
pub fn capture_output(child: &mut Child) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    for stream in [
        child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child.stderr.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
    }
    lines
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().expect("http client")
}

/// True when the answer came from the demo API rather than from the gateway.
pub fn from_upstream(response: &reqwest::blocking::Response) -> bool {
    response.headers().contains_key("x-demo-upstream")
}
