//! Attack replays against a real gateway process in front of the real demo API: the default policy must cut the
//! 7pay burst's takeovers far below what observe mode lets through while real users still get in, and the offline
//! engine run must predict the online one.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Gateway;
use stuffgate::demo_api::{DemoApi, DemoState};
use stuffgate::replay::http::Target;
use stuffgate::replay::offline::OfflineOptions;
use stuffgate::replay::online::OnlineOptions;
use stuffgate::replay::{cli, offline_report, online_report, Report, Schedule};

/// Scaled so one online run takes ~12 s: 30 stuffing addresses × 100 attempts, 100 users, 200 behind one NAT.
const SCALE: f64 = 0.1;
const SPEED: f64 = 10.0;

fn default_policy() -> String {
    std::fs::read_to_string(common::shipped("policies/default.toml")).unwrap()
}

fn observe_policy() -> String {
    let policy = default_policy();
    assert!(policy.contains("mode = \"enforce\""), "the default policy sets its mode in [defaults]");
    policy.replace("mode = \"enforce\"", "mode = \"observe\"")
}

/// A demo API holding the schedule's accounts, a gateway in front of it, and the replay's report.
fn replay_online(schedule: &Arc<Schedule>, policy: &str) -> Report {
    let api = DemoApi::spawn("127.0.0.1:0".parse().unwrap(), DemoState::seeded(schedule.accounts as usize)).unwrap();
    let gateway = Gateway::start(policy, api.addr());
    let options = OnlineOptions {
        target: Target::parse(&gateway.url).unwrap(),
        speed: SPEED,
        concurrency: 32,
        request_timeout: Duration::from_secs(10),
        max_time: Duration::from_secs(60),
        progress: false,
        upstream_stats: Some(format!("{}/__demo/stats", api.base_url())),
        api: Default::default(),
    };
    let report = online_report(schedule, &options).unwrap();
    drop(gateway);
    report
}

#[test]
fn same_seed_same_schedule_different_seed_different() {
    let (_, a) = cli::prepare("7pay-burst", Some(7), Some(SCALE)).unwrap();
    let (_, b) = cli::prepare("7pay-burst", Some(7), Some(SCALE)).unwrap();
    let (_, c) = cli::prepare("7pay-burst", Some(8), Some(SCALE)).unwrap();
    assert_eq!(a.events, b.events);
    assert_ne!(a.events, c.events);
    assert!(a.events.windows(2).all(|w| w[0].at <= w[1].at));
}

#[test]
fn the_default_policy_stops_most_7pay_takeovers_lets_users_in_and_offline_predicts_it() {
    let (_, schedule) = cli::prepare("7pay-burst", None, Some(SCALE)).unwrap();
    // Enforce and observe side by side: two demo APIs, two gateways, two replays.
    let enforce_run = {
        let schedule = schedule.clone();
        std::thread::spawn(move || replay_online(&schedule, &default_policy()))
    };
    let observe_run = {
        let schedule = schedule.clone();
        std::thread::spawn(move || replay_online(&schedule, &observe_policy()))
    };
    let enforce = enforce_run.join().unwrap();
    let observe = observe_run.join().unwrap();
    let summary = format!("enforce:{}\nobserve:{}", enforce.render_text(), observe.render_text());

    // Nothing got lost on the way.
    for report in [&enforce, &observe] {
        assert_eq!(report.totals.errors, 0, "{summary}");
        assert!(report.totals.sent >= schedule.events.len() as u64, "{summary}");
        let upstream = report.upstream.as_ref().expect("the demo API's counters were read");
        assert_eq!(upstream.topup_yen, report.harm.fraudulent_topup_yen, "{summary}");
    }
    // Observe mode forwards everything: every valid pair in the list becomes a takeover, each cashed out.
    assert_eq!(observe.totals.blocked + observe.totals.challenged, 0, "{summary}");
    assert!(observe.harm.accounts_taken_over >= 25, "{summary}");
    assert!(observe.harm.fraudulent_topup_yen >= 25 * 90_000, "{summary}");
    // The default policy: far fewer takeovers and far less money…
    assert!(enforce.harm.accounts_taken_over * 4 <= observe.harm.accounts_taken_over, "{summary}");
    assert!(enforce.harm.fraudulent_topup_yen * 4 <= observe.harm.fraudulent_topup_yen, "{summary}");
    assert!(enforce.totals.blocked + enforce.totals.challenged > enforce.totals.sent / 2, "{summary}");
    // …while ordinary users, users behind a carrier NAT and travellers still get in.
    assert!(enforce.legit.got_in_percent >= 95.0, "{summary}");
    for actor in enforce.actors.iter().filter(|a| a.legit.is_some()) {
        assert!(actor.legit.as_ref().unwrap().got_in_percent >= 95.0, "{}: {summary}", actor.name);
    }

    // Offline, the same schedule through the same engine with the time compressed the same way.
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, default_policy()).unwrap();
    let offline = offline_report(
        &schedule,
        &OfflineOptions {
            policy_files: vec![policy],
            geoip: Some(common::shipped("geoip/country.mmdb").into()),
            password_filter: Some(common::shipped("policies/data/common-passwords.bloom").into()),
            pair_filter: None,
            speed: SPEED,
            max_tracked_keys: 100_000,
            solvers: false,
            api: Default::default(),
        },
    )
    .unwrap();
    let tolerance = enforce.totals.sent / 50 + 10;
    let close = |a: u64, b: u64| a.abs_diff(b) <= tolerance;
    let both = format!("online:{}\noffline:{}", enforce.render_text(), offline.render_text());
    assert!(close(enforce.totals.sent, offline.totals.sent), "{both}");
    assert!(close(enforce.totals.forwarded, offline.totals.forwarded), "{both}");
    assert!(close(enforce.totals.blocked, offline.totals.blocked), "{both}");
    assert!(close(enforce.totals.challenged, offline.totals.challenged), "{both}");
    assert!(close(enforce.totals.invalid, offline.totals.invalid), "{both}");
    assert!(enforce.harm.accounts_taken_over.abs_diff(offline.harm.accounts_taken_over) <= 3, "{both}");
    assert!((enforce.legit.got_in_percent - offline.legit.got_in_percent).abs() <= 2.0, "{both}");
}

/// A policy for an API that is not the demo's: another path, nested and renamed body fields.
const OTHER_API: &str = "[[route]]\nname = \"session\"\nkind = \"login\"\npath = \"/v2/session\"\n\
    body = { account = \"user.login\", password = \"secret\" }\n\
    [[route.defense]]\ntype = \"failed_logins\"\nkey = \"ip\"\nthreshold = 5\nwindow = \"10m\"\n";

fn offline(schedule: &Schedule, policy: &str, api: stuffgate::replay::api::ApiFlags) -> anyhow::Result<Report> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.toml");
    std::fs::write(&file, policy).unwrap();
    offline_report(
        schedule,
        &OfflineOptions {
            policy_files: vec![file],
            geoip: None,
            password_filter: None,
            pair_filter: None,
            speed: SPEED,
            max_tracked_keys: 100_000,
            solvers: false,
            api,
        },
    )
}

#[test]
fn a_replay_speaks_the_policys_paths_and_fields_and_refuses_when_no_request_matches_a_route() {
    let (_, schedule) = cli::prepare("7pay-burst", None, Some(SCALE)).unwrap();
    // The same defense on the demo's names and on another API's: the replay adapts, so the results are the same.
    let demo =
        OTHER_API.replace("/v2/session", "/api/login").replace("user.login", "email").replace("secret", "password");
    let on_demo = offline(&schedule, &demo, Default::default()).unwrap();
    let on_other = offline(&schedule, OTHER_API, Default::default()).unwrap();
    let both = format!("demo names:{}\nother API:{}", on_demo.render_text(), on_other.render_text());
    assert!(on_other.totals.blocked > 0, "{both}");
    assert_eq!(on_demo.totals, on_other.totals, "{both}");
    assert_eq!(on_demo.harm.accounts_taken_over, on_other.harm.accounts_taken_over, "{both}");

    // Nothing the scenario sends reaches a protected route: refused, with what it sends and how to fix it.
    // (A generic route counts 401 as a failed login only when told.)
    let elsewhere = OTHER_API
        .replace("kind = \"login\"", "kind = \"generic\"\noutcome = { failure = [401] }")
        .replace("/v2/session", "/v2/other");
    let refused = offline(&schedule, &elsewhere, Default::default()).expect_err("refused").to_string();
    assert!(
        refused.contains("matches a protected route") && refused.contains("login requests to /api/login"),
        "{refused}"
    );
    assert!(refused.contains("--login-path"), "{refused}");
    // The flags name the API when the policy cannot: the refusal is gone.
    let flags = stuffgate::replay::api::ApiFlags {
        login_path: Some("/v2/other".into()),
        account_field: Some("user.login".into()),
        password_field: Some("secret".into()),
        ..Default::default()
    };
    let flagged = offline(&schedule, &elsewhere, flags).unwrap();
    assert!(flagged.totals.blocked > 0, "{}", flagged.render_text());
}
