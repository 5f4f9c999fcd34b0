//! The `stuffgate` command: a thin layer over the library.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use stuffgate::clock::Clock;
use stuffgate::config::{self, FileKind, GatewayConfig, LogFormat, Services, Upstream};
use stuffgate::ip_ranges::IpRanges;
use stuffgate::server::{Purpose, StartError};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The breached-password filter built from Django's common-password list (see policies/data/).
const SHIPPED_PASSWORD_FILTER: &str = "policies/data/common-passwords.bloom";
/// The environment variable holding the admin token (see `admin::ops`).
const ADMIN_TOKEN_ENV: &str = "STUFFGATE_ADMIN_TOKEN";
/// The policy `demo` runs when none is given.
const SHIPPED_POLICY: &str = "policies/default.toml";

#[derive(Parser)]
#[command(name = "stuffgate", version, about = "Credential-stuffing defense gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Run {
        #[arg(long, short, default_value = "gateway.toml")]
        config: PathBuf,
    },
    /// Validate gateway and policy files (like `nginx -t`); exit status 1 if any is invalid.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Also print the merged, compiled configuration (like `nginx -T`).
        #[arg(long)]
        dump: bool,
    },
    /// List, lift and add decisions (penalties in force, manual bans) through a running gateway's admin API.
    Decisions(stuffgate::admin_client::DecisionsArgs),
    /// Show the site-wide attack mode, or hold it on or off (auto: the detector decides).
    AttackMode(stuffgate::admin_client::AttackModeArgs),
    /// Print a shell completion script, e.g. `stuffgate completions bash > /etc/bash_completion.d/stuffgate`.
    Completions { shell: clap_complete::Shell },
    /// Run the bundled demo login API with the gateway in front of it.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin: SocketAddr,
        #[arg(long, default_value = "127.0.0.1:8081")]
        api: SocketAddr,
        /// Policy file; default policies/default.toml, or the copy built into the binary.
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Generated demo users (user00000@example.com …) besides the named ones.
        #[arg(long, default_value_t = 1000)]
        users: usize,
        #[arg(long, default_value = "text")]
        log_format: String,
        /// Also serve HTTPS (HTTP/2 and HTTP/1.1) with a self-signed certificate drawn at start; each login's
        /// client_fingerprint (JA4) shows in the decision log.
        #[arg(long)]
        tls: bool,
        #[arg(long, default_value = "127.0.0.1:8443")]
        tls_listen: SocketAddr,
        /// Replay an attack scenario (e.g. 7pay-burst) through the demo on fresh ports, print the report, and exit.
        #[arg(long, value_name = "SCENARIO")]
        replay: Option<String>,
    },
    /// Replay an attack scenario against a gateway or offline, or flood logins with --load.
    Replay(Box<stuffgate::replay::cli::ReplayArgs>),
    /// Build and query breached-password and leaked-pair filters.
    Breach {
        #[command(subcommand)]
        command: stuffgate::breach::cli::BreachCommand,
    },
    /// Look up addresses in a GeoIP database.
    Geoip {
        #[command(subcommand)]
        command: GeoipCommand,
    },
    /// Run only the demo login API (an upstream for tests and benchmarks).
    DemoApi {
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: SocketAddr,
        #[arg(long, default_value_t = 1000)]
        users: usize,
    },
}

#[derive(Subcommand)]
enum GeoipCommand {
    /// Print country (and ASN where known) for each address, and which database answered.
    Lookup(stuffgate::geoip::cli::LookupArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => run(&config),
        Command::Check { files, dump } => check(&files, dump),
        Command::Decisions(args) => report_failure(stuffgate::admin_client::run(&args)),
        Command::AttackMode(args) => report_failure(stuffgate::admin_client::attack_mode(&args)),
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            clap_complete::generate(shell, &mut Cli::command(), "stuffgate", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Demo { listen, admin, api, policy, users, log_format, tls, tls_listen, replay: None } => {
            demo(listen, admin, api, policy, users, &log_format, tls.then_some(tls_listen))
        }
        Command::Demo { policy, users, replay: Some(scenario), .. } => {
            report_failure(stuffgate::replay::cli::run_demo(&scenario, policy.as_deref(), users))
        }
        Command::Replay(args) => report_failure(stuffgate::replay::cli::run(&args)),
        Command::DemoApi { listen, users } => demo_api(listen, users),
        Command::Breach { command } => ExitCode::from(stuffgate::breach::cli::run(&command).clamp(0, 255) as u8),
        Command::Geoip { command: GeoipCommand::Lookup(args) } => match stuffgate::geoip::cli::run_lookup(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("stuffgate: {error:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn report_failure(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("stuffgate: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(path: &Path) -> ExitCode {
    let config = match config::load_gateway(path) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("stuffgate: {error}");
            return ExitCode::FAILURE;
        }
    };
    start(config)
}

/// Build everything the configuration names, then check the listen addresses, then serve: a configuration error
/// is reported before a busy port could hide it.
fn start(config: GatewayConfig) -> ExitCode {
    let _log_guard = stuffgate::telemetry::init(config.log_format, &config.log_level);
    let state = match stuffgate::server::build_state(&config, Clock::system(), Purpose::Serve) {
        Ok(state) => state,
        Err(error) => {
            eprintln!("stuffgate: {error}");
            return ExitCode::FAILURE;
        }
    };
    for warning in &state.policy.current().warnings {
        tracing::warn!("{warning}");
    }
    if let Err(error) = stuffgate::server::preflight(&config) {
        eprintln!("stuffgate: {error}");
        return ExitCode::FAILURE;
    }
    if config.hash_secret.is_none() {
        tracing::warn!("no privacy.hash_key_env set: account hashes in logs change at every restart");
    }
    stuffgate::server::run(config, state)
}

fn check(files: &[PathBuf], dump: bool) -> ExitCode {
    let mut failed = false;
    for file in files {
        match check_one(file, dump) {
            Ok(summary) => println!("ok: {}: {summary}", file.display()),
            Err(error) => {
                failed = true;
                eprintln!("error: {error}");
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn check_one(file: &Path, dump: bool) -> Result<String, config::ConfigError> {
    let source = std::fs::read_to_string(file)
        .map_err(|e| config::ConfigError::new(file, None, None, format!("cannot read the file: {e}")))?;
    match config::sniff_kind(&source) {
        FileKind::Gateway => {
            let gateway = config::load_gateway(file)?;
            // The same set-up `run` does, so `check` refuses whatever `run` would.
            let state =
                stuffgate::server::build_state(&gateway, Clock::system(), Purpose::Check).map_err(|e| match e {
                    StartError::Config(error) => error,
                    other => config::ConfigError::new(file, None, None, other.to_string()),
                })?;
            let policy = state.policy.current();
            print_warnings(&policy);
            if dump {
                println!("{}\n{}", stuffgate::dump::gateway(&gateway), stuffgate::dump::policy(&policy));
            }
            Ok(format!(
                "gateway file; its {} policy file(s) give {} route(s)",
                gateway.policy_files.len(),
                policy.routes.len()
            ))
        }
        FileKind::Policy => {
            // A lone policy file is checked without the gateway's data files (GeoIP, breach filters).
            let mut env = Services::new(Clock::system(), 1024);
            env.require_data = false;
            let policy = config::compile_policies(&[file.to_path_buf()], &env, None)?;
            print_warnings(&policy);
            if dump {
                println!("{}", stuffgate::dump::policy(&policy));
            }
            let defenses: usize = policy.routes.iter().map(|r| r.slots.len()).sum();
            Ok(format!("policy with {} route(s), {} defense(s)", policy.routes.len(), defenses))
        }
    }
}

/// What compiles but looks like a mistake, one line each on stderr; the file is still valid.
fn print_warnings(policy: &config::Policy) {
    for warning in &policy.warnings {
        eprintln!("warning: {warning}");
    }
}

fn demo(
    listen: SocketAddr,
    admin: SocketAddr,
    api: SocketAddr,
    policy: Option<PathBuf>,
    users: usize,
    log_format: &str,
    tls: Option<SocketAddr>,
) -> ExitCode {
    // Bans and lifts (`stuffgate decisions`) need the admin token: the demo draws one when none is set
    // (before any thread starts: the environment is read at start-up).
    let token = match std::env::var(ADMIN_TOKEN_ENV) {
        Ok(token) if !token.trim().is_empty() => token,
        _ => {
            use rand::Rng as _;
            let token: String = (0..24).map(|_| format!("{:02x}", rand::rng().random::<u8>())).collect();
            std::env::set_var(ADMIN_TOKEN_ENV, &token);
            token
        }
    };
    // The shipped files are found from any working directory (see `stuffgate::shipped`).
    let policy_file = match policy {
        Some(path) => path,
        None => match stuffgate::shipped::find(SHIPPED_POLICY) {
            Some(path) => path,
            None => {
                eprintln!("stuffgate: {}", missing_shipped(SHIPPED_POLICY));
                return ExitCode::FAILURE;
            }
        },
    };
    let geoip = stuffgate::shipped::find(stuffgate::geoip::DEFAULT_COUNTRY_DB);
    let password_filter = stuffgate::shipped::find(SHIPPED_PASSWORD_FILTER);
    if password_filter.is_none() {
        eprintln!("stuffgate: {}", missing_shipped(SHIPPED_PASSWORD_FILTER));
        return ExitCode::FAILURE;
    }
    let api_server = match stuffgate::demo_api::DemoApi::spawn(api, stuffgate::demo_api::DemoState::seeded(users)) {
        Ok(server) => server,
        Err(error) => {
            eprintln!("stuffgate: the demo API cannot listen on {api}: {error} (choose another with --api)");
            return ExitCode::FAILURE;
        }
    };
    let loopback: ipnet::IpNet = ipnet::IpNet::from(std::net::IpAddr::from([127, 0, 0, 1]));
    let config = GatewayConfig {
        path: PathBuf::from("(demo)"),
        source: String::new(),
        listen: vec![listen.to_string()],
        admin: admin.to_string(),
        tls_listen: match tls {
            None => Vec::new(),
            Some(address) => match demo_certificate() {
                Ok(files) => vec![stuffgate::config::TlsListener { address: address.to_string(), files }],
                Err(error) => {
                    eprintln!("stuffgate: cannot write the demo's certificate: {error}");
                    return ExitCode::FAILURE;
                }
            },
        },
        fingerprint_header: None,
        upstream: Upstream {
            address: api_server.addr().to_string(),
            tls: false,
            sni: String::new(),
            ca: None,
            forward_fingerprint: false,
        },
        policy_files: vec![policy_file.clone()],
        // The bundled attack replays send client addresses in X-Forwarded-For from loopback.
        trusted_proxies: IpRanges::new(&[loopback]),
        threads: 2,
        runtime: Default::default(),
        max_tracked_keys: 1_000_000,
        watch_interval: Some(std::time::Duration::from_secs(2)),
        log_format: if log_format == "json" { LogFormat::Json } else { LogFormat::Text },
        log_level: "info".to_string(),
        hash_secret: None,
        geoip: geoip.map(|country| (country, None)),
        password_filter,
        pair_filter: None,
        hardening: Default::default(),
        challenge: None,
        shared_state: None,
    };
    let (name, password) = stuffgate::demo_api::NAMED_USERS[0];
    println!(
        "stuffgate demo\n  gateway   http://{listen}   (policy {})\n  demo API  http://{}   (direct, unprotected)\n  admin     http://{admin}/dashboard  /metrics  /healthz  /readyz  /policy  /decisions\n\nTry it:\n  curl -i http://{listen}/api/login -H 'content-type: application/json' -d '{{\"email\":\"{name}\",\"password\":\"{password}\"}}'\n  open http://{listen}/ in a browser for the login page\n\nStuffing from one address (wrong, non-breached passwords): 401s, then challenges (428) once the address looks like\nstuffing, then blocks (429) once it is over its rate:\n  for i in $(seq 1 200); do curl -s -o /dev/null -w '%{{http_code}}\\n' http://{listen}/api/login -H 'content-type: application/json' -d '{{\"email\":\"user'$i'@example.com\",\"password\":\"not-their-password\"}}'; done | sort | uniq -c\n\nA challenge (a breached password from a device the account has not used; docs/challenge-protocol.md):\n  curl -s http://{api_addr}/api/signup -H 'content-type: application/json' -d '{{\"email\":\"eve@example.com\",\"password\":\"password1\"}}'\n  curl -i http://{listen}/api/login -H 'content-type: application/json' -d '{{\"email\":\"eve@example.com\",\"password\":\"password1\"}}'\n  or sign in as eve@example.com / password1 at http://{listen}/ in a browser\n\nBans and decisions (the admin token; set {ADMIN_TOKEN_ENV} yourself to choose it):\n  export {ADMIN_TOKEN_ENV}={token}\n  stuffgate decisions list --admin http://{admin}\n  stuffgate decisions ban 192.0.2.1 --admin http://{admin}\n",
        policy_file.display(),
        api_server.addr(),
        api_addr = api_server.addr(),
    );
    if let Some(address) = tls {
        println!(
            "HTTPS (self-signed for localhost; HTTP/2 and HTTP/1.1):\n  curl -sk https://localhost:{port}/api/login --resolve localhost:{port}:{ip} -H 'content-type: application/json' -d '{{\"email\":\"{name}\",\"password\":\"guess\"}}'\n  the decision log line shows this client's JA4 as client_fingerprint=...; try --http1.1, --http2, or a browser\n",
            port = address.port(),
            ip = address.ip(),
        );
    }
    // The API thread must outlive the gateway, which never returns.
    std::mem::forget(api_server);
    start(config)
}

/// A self-signed certificate for `localhost`, drawn now and written to a directory of this process.
fn demo_certificate() -> Result<stuffgate::certs::TlsFiles, Box<dyn std::error::Error>> {
    let key = rcgen::KeyPair::generate()?;
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let cert = rcgen::CertificateParams::new(names)?.self_signed(&key)?;
    let dir = std::env::temp_dir().join(format!("stuffgate-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let files = stuffgate::certs::CertFiles { cert: dir.join("cert.pem"), key: dir.join("key.pem") };
    std::fs::write(&files.cert, cert.pem())?;
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut key_file =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&files.key)?;
    key_file.write_all(key.serialize_pem().as_bytes())?;
    Ok(stuffgate::certs::TlsFiles { default: files, sni: Vec::new() })
}

/// Where the demo looked for a shipped file it did not find, and what to do.
fn missing_shipped(relative: &str) -> String {
    let searched: Vec<String> =
        stuffgate::shipped::candidates(relative).iter().map(|p| p.display().to_string()).collect();
    format!(
        "the demo needs the shipped file {relative}, found in none of: {}. Run it from a clone of the repository, \
         or copy the repository's policies/ and geoip/ to {}",
        searched.join(", "),
        stuffgate::shipped::SHARE_DIRS[0]
    )
}

fn demo_api(listen: SocketAddr, users: usize) -> ExitCode {
    match stuffgate::demo_api::DemoApi::spawn(listen, stuffgate::demo_api::DemoState::seeded(users)) {
        Ok(server) => {
            println!("demo API on http://{}", server.addr());
            loop {
                std::thread::park();
            }
        }
        Err(error) => {
            eprintln!("stuffgate: the demo API cannot listen on {listen}: {error}");
            ExitCode::FAILURE
        }
    }
}
