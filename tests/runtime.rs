//! The proxy's thread layouts: per-thread services on SO_REUSEPORT listeners (the default) and one shared
//! work-stealing service. Either way the state is the gateway's, not a thread's: a limit holds across every thread.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use common::{demo_api, from_upstream, Gateway, Options};

const POLICY: &str = "[[route]]\nname = \"login\"\nkind = \"login\"\npath = \"/api/login\"\n\
    body = { account = \"email\", password = \"password\" }\n\n[[route.defense]]\ntype = \"ip_rate\"\n\
    limit = 5\nper = \"1m\"\n";

/// Listening sockets (state 0A) on `port` in /proc/net/tcp.
fn listeners_on(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let suffix = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() > 3 && fields[1].ends_with(&suffix) && fields[3] == "0A"
        })
        .count()
}

/// Each login on a new connection, so the kernel spreads them over the listeners.
fn logins_allowed(gateway: &Gateway, count: usize) -> usize {
    (0..count)
        .filter(|_| {
            let client = reqwest::blocking::Client::builder().pool_max_idle_per_host(0).build().unwrap();
            let response = client
                .post(format!("{}/api/login", gateway.url))
                .header("content-type", "application/json")
                .header("x-forwarded-for", "198.51.100.77")
                .body(r#"{"email":"alice@example.com","password":"correct horse battery staple"}"#)
                .send()
                .unwrap();
            from_upstream(&response)
        })
        .count()
}

#[test]
fn per_thread_services_each_listen_with_reuseport_and_share_one_limit() {
    let api = demo_api();
    let gateway = Gateway::start_with(POLICY, api.addr(), Options { threads: 4, ..Options::default() });
    let port: u16 = gateway.url.rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(listeners_on(port), 4, "one SO_REUSEPORT listener per thread");
    assert_eq!(logins_allowed(&gateway, 24), 5, "the limit holds across the four services");
}

#[test]
fn a_shared_service_has_one_listener_and_the_same_limit() {
    let api = demo_api();
    let options = Options { threads: 4, runtime: "shared", ..Options::default() };
    let gateway = Gateway::start_with(POLICY, api.addr(), options);
    let port: u16 = gateway.url.rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(listeners_on(port), 1);
    assert_eq!(logins_allowed(&gateway, 12), 5);
}
