//! Property tests: path normalisation is idempotent, every spelling an upstream may route to a protected path
//! matches it, and account normalisation is idempotent.

use proptest::prelude::*;
use stuffgate::config::policy::normalise_path;
use stuffgate::config::PathMatch;

/// One way an upstream router may spell a segment: case, escapes of unreserved characters, path parameters, blanks.
fn respell(segment: String) -> impl Strategy<Value = String> {
    let len = segment.len();
    (
        proptest::collection::vec((any::<bool>(), 0u8..4), len),
        proptest::option::of("[a-z0-9=]{0,6}"),
        prop_oneof![Just(""), Just("%20"), Just("%09"), Just(" ")],
    )
        .prop_map(move |(choices, parameter, blank)| {
            let mut out = String::new();
            for (c, (upper, escape)) in segment.chars().zip(choices) {
                let c = if upper { c.to_ascii_uppercase() } else { c };
                match escape {
                    0 => out.push_str(&format!("%{:02X}", c as u32)),
                    1 => out.push_str(&format!("%{:02x}", c as u32)),
                    _ => out.push(c),
                }
            }
            out.push_str(blank);
            if let Some(parameter) = parameter {
                out.push(';');
                out.push_str(&parameter);
            }
            out
        })
}

/// Separators routers treat as one `/`: `/`, `//`, `/./`, `/x/../`, `\`, `%2F`, `%5C`, `/..;/x/..;/`-free forms.
fn separator() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("/"),
        Just("//"),
        Just("/./"),
        Just("/zz/../"),
        Just("\\"),
        Just("%2F"),
        Just("%5c"),
        Just("/%2e/")
    ]
}

fn protected_path() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec("[a-z0-9_-]{1,8}", 1..4)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn normalisation_is_idempotent(raw in "[/a-zA-Z0-9%;.\\\\ \\x00-\\x1f~_-]{0,40}") {
        let once = normalise_path(&raw).into_owned();
        prop_assert_eq!(normalise_path(&once).into_owned(), once.clone(), "raw {:?}", raw);
        prop_assert!(once.starts_with('/'));
    }

    #[test]
    fn normalisation_of_any_text_is_idempotent(raw in any::<String>()) {
        let once = normalise_path(&raw).into_owned();
        prop_assert_eq!(normalise_path(&once).into_owned(), once);
    }

    #[test]
    fn every_spelling_an_upstream_may_route_to_a_protected_path_matches_it(
        (segments, spelled, separators, suffix, trailer) in protected_path().prop_flat_map(|segments| {
            let n = segments.len();
            (
                Just(segments.clone()),
                segments.into_iter().map(respell).collect::<Vec<_>>(),
                proptest::collection::vec(separator(), n),
                prop_oneof![Just(""), Just(".json"), Just(".xml"), Just(".")],
                prop_oneof![Just(""), Just("/"), Just("%00"), Just("%00.jpg"), Just(";x=1"), Just(";")],
            )
        })
    ) {
        let protected = format!("/{}", segments.join("/"));
        let mut spelling = String::new();
        for (separator, segment) in separators.iter().zip(&spelled) {
            spelling.push_str(separator);
            spelling.push_str(segment);
        }
        spelling.push_str(suffix);
        spelling.push_str(trailer);
        let exact = PathMatch::exact(&protected);
        prop_assert!(exact.matches(&spelling), "{} should match {}", spelling, protected);
        let prefix = PathMatch::prefix(&format!("{protected}/"));
        prop_assert!(prefix.matches(&spelling), "{} should fall under {}/", spelling, protected);
    }

    #[test]
    fn account_normalisation_is_idempotent(raw in any::<String>()) {
        let once = stuffgate::account::normalise_account(&raw).into_owned();
        prop_assert_eq!(stuffgate::account::normalise_account(&once).into_owned(), once);
    }
}
