//! Replays the committed fuzz seeds, corpora and crash regressions (`fuzz/{seeds,corpus,regressions}/<target>/`)
//! through the same entry points the `cargo fuzz` targets call, so that every input the fuzzers kept stays a test.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut replayed = 0;
    for dir in [root.join("seeds"), root.join("corpus"), root.join("regressions")].map(|d| d.join(target)) {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let data = std::fs::read(entry.path()).unwrap_or_else(|e| panic!("{}: {e}", entry.path().display()));
            run(&data);
            replayed += 1;
        }
    }
    assert!(replayed > 0, "no corpus for `{target}` under {}", root.display());
}

#[test]
fn body_corpus() {
    replay("body", stuffgate::fuzzing::body);
}

#[test]
fn path_corpus() {
    replay("path", stuffgate::fuzzing::path);
}

#[test]
fn forwarded_for_corpus() {
    replay("forwarded_for", stuffgate::fuzzing::forwarded_for);
}

#[test]
fn config_corpus() {
    replay("config", stuffgate::fuzzing::config);
}

#[test]
fn token_corpus() {
    replay("token", stuffgate::fuzzing::token);
}

#[test]
fn client_hello_corpus() {
    replay("client_hello", stuffgate::fuzzing::client_hello);
}
