use std::path::Path;

use super::scenario::{ActorKind, Params, Scenario, BUNDLED};
use super::schedule::{follow_ups, generate, Answer, Endpoint, Plan, Verdict, NO_VISIT};
use super::*;

const SMALL: &str = r#"
[scenario]
name = "small"
duration = "1m"
seed = 5

[[actor]]
kind = "stuffer"
addresses = 4
attempts_per_address = 25
valid_ratio = 0.04
known_account_ratio = 0.2
cashout = { topups = 3, amount = 30000, within = "1m" }

[[actor]]
kind = "legit"
users = 30
mistype_ratio = 0.5

[[actor]]
kind = "reset_hijacker"
addresses = 2
attempts_per_address = 3
methods = ["send_to", "email_list"]
"#;

fn small() -> Scenario {
    Scenario::parse(Path::new("small.toml"), SMALL).unwrap()
}

#[test]
fn every_bundled_scenario_parses_and_scales() {
    for (name, source) in BUNDLED {
        let scenario = Scenario::parse(Path::new(name), source).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!scenario.description.is_empty(), "{name} needs a description");
        assert!(scenario.actors.iter().any(|a| a.kind.is_legitimate()), "{name} mixes in legitimate users");
        let scaled = scenario.scaled(0.01);
        assert!(scaled.actors.iter().all(|a| a.pool.count >= 1));
    }
}

#[test]
fn same_seed_same_schedule_and_another_seed_another() {
    let scenario = small();
    let a = generate(&scenario, 1, None).unwrap();
    let b = generate(&scenario, 1, None).unwrap();
    let c = generate(&scenario, 2, None).unwrap();
    assert_eq!(a, b);
    assert_ne!(a.events, c.events);
    assert!(a.events.windows(2).all(|w| w[0].at <= w[1].at), "sorted by virtual time");
    assert!(a.events.iter().all(|e| e.at < scenario.duration));
    // 100 stuffing attempts (4 valid), 30 visits, 6 resets.
    assert_eq!(a.events.len(), 100 + 30 + 6);
    assert_eq!(a.events.iter().filter(|e| e.endpoint == Endpoint::Login && e.valid && e.visit == NO_VISIT).count(), 4);
    assert_eq!(a.visit_actor.len(), 30);
}

#[test]
fn valid_pairs_use_the_demo_passwords_and_failures_do_not() {
    let schedule = generate(&small(), 9, None).unwrap();
    for event in
        schedule.events.iter().filter(|e| e.endpoint == Endpoint::Login && e.account < schedule::SYNTHETIC_ACCOUNTS)
    {
        let body: serde_json::Value = serde_json::from_str(&event.body).unwrap();
        let works = body["email"] == crate::demo_api::demo_account(event.account as usize)
            && body["password"] == crate::demo_api::demo_password(event.account as usize);
        assert_eq!(works, event.valid, "{}", event.body);
    }
}

#[test]
fn a_takeover_cashes_out_with_the_token_and_a_typo_is_corrected() {
    let schedule = generate(&small(), 3, None).unwrap();
    let valid = schedule.events.iter().find(|e| matches!(e.plan, Plan::Cashout(_)) && e.valid).unwrap();
    let ok = Answer { verdict: Verdict::Forwarded, status: 200, token: Some("tok".into()) };
    let topups = follow_ups(valid, &ok);
    assert_eq!(topups.len(), 3);
    assert!(topups
        .iter()
        .all(|t| t.endpoint == Endpoint::Topup && t.bearer.as_deref() == Some("tok") && t.amount == 30000));
    assert!(topups.iter().all(|t| t.at > valid.at && t.at < valid.at + 60_000_000_000));
    let blocked = Answer { verdict: Verdict::Blocked, status: 429, token: None };
    assert!(follow_ups(valid, &blocked).is_empty());

    let typo = schedule.events.iter().find(|e| e.visit != NO_VISIT && !e.valid).unwrap();
    let failed = Answer { verdict: Verdict::Forwarded, status: 401, token: None };
    let retry = follow_ups(typo, &failed);
    assert_eq!(retry.len(), 1);
    assert!(retry[0].valid && retry[0].visit == typo.visit && retry[0].ip == typo.ip);
    // The corrected attempt is retried once after a block, then the user gives up.
    let again = follow_ups(&retry[0], &blocked);
    assert_eq!(again.len(), 1);
    assert!(follow_ups(&again[0], &blocked).is_empty());
}

#[test]
fn errors_name_the_line_and_key() {
    let bad = SMALL.replace("attempts_per_address = 25", "attempts_per_address = 25\npasswords = [\"x\"]");
    let error = Scenario::parse(Path::new("s.toml"), &bad).unwrap_err();
    assert_eq!(error.key.as_deref(), Some("actor[0].passwords"), "{error}");
    assert_eq!(error.line, Some(11), "{error}");
    let bad = SMALL.replace("valid_ratio = 0.04", "valid_ratio = 4");
    let error = Scenario::parse(Path::new("s.toml"), &bad).unwrap_err();
    assert!(error.message.contains("between 0 and 1"), "{error}");
    let bad = SMALL.replace("kind = \"legit\"", "kind = \"legitimate\"");
    let error = Scenario::parse(Path::new("s.toml"), &bad).unwrap_err();
    assert!(error.message.contains("stuffer, sprayer"), "{error}");
    let bad = SMALL.replace("seed = 5", "seed = 5\nspeeed = 2");
    assert!(Scenario::parse(Path::new("s.toml"), &bad).unwrap_err().message.contains("speeed"));
}

#[test]
fn scaling_keeps_own_addresses_and_shrinks_populations() {
    let scenario = Scenario::load("7pay-burst").unwrap().scaled(0.1);
    let stuffer = &scenario.actors[0];
    assert_eq!(stuffer.pool.count, 30);
    let Params::Users { users, .. } = scenario.actors[1].params else { panic!() };
    assert_eq!((users, scenario.actors[1].pool.count), (100, 100));
    assert_eq!(scenario.actors[2].kind, ActorKind::Nat);
}

#[test]
fn offline_decides_with_the_engine_and_observe_forwards_everything() {
    let scenario = small();
    let schedule = generate(&scenario, 4, None).unwrap();
    let dir = std::env::temp_dir().join(format!("stuffgate-replay-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("p.toml");
    let source = include_str!("../../policies/default.toml");
    std::fs::write(&policy, source).unwrap();
    let options = offline::OfflineOptions {
        policy_files: vec![policy.clone()],
        geoip: Some(concat!(env!("CARGO_MANIFEST_DIR"), "/geoip/country.mmdb").into()),
        password_filter: Some(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/data/common-passwords.bloom").into()),
        pair_filter: None,
        speed: 1.0,
        max_tracked_keys: 10_000,
        solvers: false,
        api: Default::default(),
    };
    let enforce = offline_report(&schedule, &options).unwrap();
    // Every stuffer address tries 25 accounts, mostly failing: the distinct-accounts defense stops each after 20.
    let stuffer = &enforce.actors[0];
    // (A tagged distinct-accounts finding makes `new_device` challenge them: turned away as a challenge.)
    assert!(stuffer.counts.blocked + stuffer.counts.challenged >= 8, "{stuffer:?}");
    // E-mail arrays are refused as ambiguous whatever the mode.
    assert_eq!(enforce.actors[2].counts.invalid, 3);
    assert_eq!(enforce.legit.got_in, 30);

    std::fs::write(&policy, source.replace("mode = \"enforce\"", "mode = \"observe\"")).unwrap();
    let observe = offline_report(&schedule, &options).unwrap();
    assert_eq!(observe.totals.blocked + observe.totals.challenged, 0);
    assert!(observe.totals.flagged_in_observe.unwrap() >= 8);
    assert_eq!(observe.harm.valid_pairs_confirmed, 4);
    assert_eq!(observe.harm.fraudulent_topup_yen, 4 * 3 * 30000);
    assert!(enforce.harm.accounts_taken_over <= observe.harm.accounts_taken_over);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn reports_render_as_text_json_and_html() {
    let schedule = generate(&small(), 4, None).unwrap();
    let mut tally = report::Tally::new(&schedule);
    for e in &schedule.events {
        let answer = Answer {
            verdict: if e.valid { Verdict::Forwarded } else { Verdict::Blocked },
            status: if e.valid { 200 } else { 429 },
            token: None,
        };
        tally.record(e, schedule.actors[e.actor as usize].kind, &answer, Some(1500), false);
    }
    let report = Report::build(
        &schedule,
        &tally,
        report::RunInfo {
            mode: "online",
            target: Some("http://127.0.0.1:1".into()),
            policy: None,
            speed: 1.0,
            wall_seconds: 2.0,
            offline: false,
            upstream: None,
            notes: vec!["a <note>".into()],
        },
    );
    let text = report.render_text();
    assert!(text.contains("accounts taken over"), "{text}");
    assert!(text.contains("stuffer-0"), "{text}");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["totals"]["sent"], schedule.events.len() as u64);
    let page = html::render(&report);
    assert!(page.contains("<svg") && page.contains("a &lt;note&gt;") && !page.contains("<script"));
}
