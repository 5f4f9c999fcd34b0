//! The one rule by which account identifiers are compared, counted and hashed.
//!
//! Upstreams disagree on how they read an account field: some apply Unicode NFKC (so `ｃａｒｏｌ` is `carol`),
//! some strip NUL or invisible characters, most trim and lower-case. If the gateway counted such spellings
//! separately, an attacker could give every guess against one account its own counter. So the gateway folds every
//! spelling any of them would fold: NFKC, then drop control and default-ignorable characters (zero-width spaces,
//! joiners, BOM, soft hyphen, bidi controls, variation selectors), trim, and lower-case. Over-folding only merges
//! counters, which protects more.

use std::borrow::Cow;

use unicode_normalization::UnicodeNormalization;

/// Fold an account identifier to the form it is counted and hashed under.
/// Allocation-free for ASCII input that is already in that form (the common case: `alice@example.com`).
pub fn normalise_account(raw: &str) -> Cow<'_, str> {
    if is_normal_ascii(raw) {
        return Cow::Borrowed(raw);
    }
    let folded = fold(raw);
    // Lower-casing can produce a sequence that NFKC composes differently (e.g. U+0130 → `i` + U+0307); fold once
    // more so that the result is a fixed point and normalising twice never changes a key.
    let again = fold(&folded);
    Cow::Owned(if again == folded { folded } else { again })
}

/// ASCII with no upper case, no control character and no surrounding whitespace: nothing to fold.
fn is_normal_ascii(s: &str) -> bool {
    let bytes = s.as_bytes();
    let edge_ok = |b: Option<&u8>| b.is_none_or(|b| !b.is_ascii_whitespace());
    edge_ok(bytes.first())
        && edge_ok(bytes.last())
        && bytes.iter().all(|&b| b.is_ascii() && !b.is_ascii_uppercase() && !b.is_ascii_control())
}

fn fold(s: &str) -> String {
    let stripped: String = s.nfkc().filter(|&c| !is_invisible(c)).collect();
    stripped.trim().chars().flat_map(char::to_lowercase).collect()
}

/// Control characters (Cc) and Unicode's Default_Ignorable_Code_Point set: characters that render as nothing, so
/// that `carol\u{200B}@example.com` and `carol@example.com` look, and on many upstreams are, the same account.
fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(
            c as u32,
            0x00AD
                | 0x034F
                | 0x061C
                | 0x115F..=0x1160
                | 0x17B4..=0x17B5
                | 0x180B..=0x180F
                | 0x200B..=0x200F
                | 0x202A..=0x202E
                | 0x2060..=0x206F
                | 0x3164
                | 0xFE00..=0xFE0F
                | 0xFEFF
                | 0xFFA0
                | 0xFFF0..=0xFFF8
                | 0x1BCA0..=0x1BCA3
                | 0x1D173..=0x1D17A
                | 0xE0000..=0xE0FFF
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_ascii_is_borrowed() {
        assert!(matches!(normalise_account("alice@example.com"), Cow::Borrowed(_)));
        assert!(matches!(normalise_account(""), Cow::Borrowed(_)));
        assert!(matches!(normalise_account("Alice@example.com"), Cow::Owned(_)));
        assert!(matches!(normalise_account(" alice@example.com"), Cow::Owned(_)));
    }

    #[test]
    fn spellings_upstreams_fold_become_one_key() {
        let carol = "carol@example.com";
        for spelling in [
            "carol@example.com",
            "CAROL@EXAMPLE.COM",
            "  carol@example.com\t",
            "\u{a0}\u{3000}carol@example.com",
            "ｃａｒｏｌ@example.com",
            "ＣＡＲＯＬ＠ＥＸＡＭＰＬＥ．ＣＯＭ",
            "carol@example.com\0",
            "car\0ol@example.com",
            "carol\u{200b}@example.com",
            "\u{feff}carol@example.com",
            "ca\u{00ad}rol@exam\u{200d}ple.com",
            "carol@example.com\u{202e}",
        ] {
            assert_eq!(normalise_account(spelling), carol, "{spelling:?}");
        }
    }

    #[test]
    fn distinct_accounts_stay_distinct() {
        assert_ne!(normalise_account("carol@example.com"), normalise_account("caro1@example.com"));
        assert_ne!(normalise_account("élodie@exemple.fr"), normalise_account("elodie@exemple.fr"));
        // Composed and decomposed é are one account (NFKC composes).
        assert_eq!(normalise_account("e\u{301}lodie@exemple.fr"), normalise_account("ÉLODIE@exemple.fr"));
    }

    #[test]
    fn normalising_twice_changes_nothing() {
        for raw in ["İstanbul@example.com", "ǅ@x", "ﬁ@x", "Ⅻ@x", "\u{1e9e}@x", "ß@x", "K@x", "Ω@x"] {
            let once = normalise_account(raw).into_owned();
            assert_eq!(normalise_account(&once), once, "{raw:?}");
        }
    }
}
