//! One client (`fred` or `redis`), one redis-server it starts on a free port, and a call every 5 ms (INCR + EXPIRE
//! in one pipeline) under a 3 ms caller deadline, through four phases:
//!
//! healthy (1 s) → `kill -9` (2 s down) → restarted on the same port (2 s) → `CLIENT PAUSE 1000 ALL` (1.5 s)
//!
//! For each phase: calls, how many answered, failed fast (under 1 ms), or waited out the deadline, and the slowest
//! call; plus the time from the restart to the first answered call.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_millis(3);
const PACE: Duration = Duration::from_millis(5);

enum Probe {
    Fred(fred::prelude::Client),
    Redis(redis::aio::ConnectionManager),
}

impl Probe {
    async fn new(kind: &str, port: u16) -> Probe {
        let url = format!("redis://127.0.0.1:{port}/0");
        match kind {
            "fred" => {
                use fred::prelude::*;
                let mut builder = Builder::from_config(Config::from_url(&url).unwrap());
                builder
                    .with_connection_config(|c| {
                        c.connection_timeout = Duration::from_secs(1);
                        c.internal_command_timeout = Duration::from_secs(1);
                        c.max_command_attempts = 1;
                    })
                    .set_policy(ReconnectPolicy::new_exponential(0, 50, 500, 2));
                let client = builder.build().unwrap();
                client.init().await.unwrap();
                Probe::Fred(client)
            }
            _ => {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_response_timeout(Some(DEADLINE))
                    .set_connection_timeout(Some(Duration::from_millis(200)))
                    .set_number_of_retries(2)
                    .set_min_delay(Duration::from_millis(50))
                    .set_max_delay(Duration::from_millis(500));
                let client = redis::Client::open(url).unwrap();
                Probe::Redis(client.get_connection_manager_with_config(config).await.unwrap())
            }
        }
    }

    async fn call(&mut self) -> Result<(), String> {
        match self {
            Probe::Fred(client) => {
                use fred::prelude::*;
                let options =
                    Options { fail_fast: true, max_attempts: Some(1), timeout: Some(DEADLINE), ..Default::default() };
                let pipeline = client.pipeline().with_options(&options);
                let _: () = pipeline.incr("probe").await.map_err(|e| e.to_string())?;
                let _: () = pipeline.expire("probe", 60, None).await.map_err(|e| e.to_string())?;
                let answers: Vec<Result<Value, Error>> = pipeline.try_all().await;
                answers.into_iter().find_map(Result::err).map_or(Ok(()), |e| Err(e.to_string()))
            }
            Probe::Redis(manager) => {
                let mut pipe = redis::pipe();
                pipe.incr("probe", 1).expire("probe", 60);
                pipe.query_async::<(i64, i64)>(manager).await.map(|_| ()).map_err(|e| e.to_string())
            }
        }
    }
}

fn redis_server(port: u16) -> Child {
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server is installed");
    std::thread::sleep(Duration::from_millis(300));
    child
}

#[derive(Default)]
struct Phase {
    calls: u32,
    answered: u32,
    fast_failures: u32,
    deadline_waits: u32,
    other_failures: u32,
    slowest: Duration,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let kind = std::env::args().nth(1).unwrap_or_else(|| "fred".into());
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = redis_server(port);
    let mut client = Probe::new(&kind, port).await;
    let phases = [("healthy", 1000), ("killed", 2000), ("restarted", 2000), ("paused", 1500)];
    let mut restarted_at = None;
    let mut first_answer_after_restart = None;
    for (n, (name, millis)) in phases.iter().enumerate() {
        match n {
            1 => {
                server.kill().unwrap();
                server.wait().unwrap();
            }
            2 => {
                server = redis_server(port);
                restarted_at = Some(Instant::now());
            }
            3 => {
                let status = Command::new("redis-cli")
                    .args(["-p", &port.to_string(), "CLIENT", "PAUSE", "1000", "ALL"])
                    .stdout(Stdio::null())
                    .status()
                    .unwrap();
                assert!(status.success());
            }
            _ => {}
        }
        let mut phase = Phase::default();
        let until = Instant::now() + Duration::from_millis(*millis);
        while Instant::now() < until {
            let started = Instant::now();
            let result = tokio::time::timeout(DEADLINE, client.call()).await;
            let took = started.elapsed();
            phase.calls += 1;
            phase.slowest = phase.slowest.max(took);
            match result {
                Ok(Ok(())) => {
                    phase.answered += 1;
                    if let (Some(at), None) = (restarted_at, first_answer_after_restart) {
                        first_answer_after_restart = Some(at.elapsed());
                    }
                }
                Ok(Err(_)) if took < Duration::from_millis(1) => phase.fast_failures += 1,
                Ok(Err(_)) if took < DEADLINE => phase.other_failures += 1,
                Ok(Err(_)) | Err(_) => phase.deadline_waits += 1,
            }
            tokio::time::sleep(PACE).await;
        }
        println!(
            "{kind:>5} {name:<9} calls {:>4}  answered {:>4}  failed fast (<1 ms) {:>4}  failed later {:>3}  waited the \
             {DEADLINE:?} deadline {:>4}  slowest {:?}",
            phase.calls, phase.answered, phase.fast_failures, phase.other_failures, phase.deadline_waits, phase.slowest
        );
    }
    println!("{kind:>5} first answer {:?} after the restart", first_answer_after_restart);
    let _ = server.kill();
}
