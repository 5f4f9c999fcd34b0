//! "Did you mean …?" for a name that is not one of a known set (a defense type, a key, a log level), as ripgrep
//! suggests a flag: the nearest known name by Jaro-Winkler similarity, when it is near enough to be the intent.

/// Similarity from which a known name is offered: keeps `warning`→`warn` and `treshold`→`threshold`, drops
/// unrelated words.
const NEAR_ENOUGH: f64 = 0.8;

/// The known name nearest to `word`, if it is near enough to be what was meant.
pub(crate) fn nearest<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    known
        .into_iter()
        .map(|name| (strsim::jaro_winkler(&word, &name.to_ascii_lowercase()), name))
        .filter(|(score, _)| *score >= NEAR_ENOUGH)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, name)| name)
}

/// `"; did you mean `x`?"`, or nothing: appended to an error that already lists the choices.
pub(crate) fn did_you_mean<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    nearest(word, known).map(|name| format!("; did you mean `{name}`?")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_misses_get_the_intended_name_and_unrelated_words_get_none() {
        let levels = ["trace", "debug", "info", "warn", "error", "off"];
        assert_eq!(nearest("warning", levels), Some("warn"));
        assert_eq!(nearest("treshold", ["key", "threshold", "per"]), Some("threshold"));
        assert_eq!(nearest("failed_login", ["failed_logins", "ip_rate"]), Some("failed_logins"));
        assert_eq!(nearest("verbose", levels), None);
        assert_eq!(did_you_mean("adress", ["address", "tls"]), "; did you mean `address`?");
        assert_eq!(did_you_mean("zzz", ["address", "tls"]), "");
    }
}
