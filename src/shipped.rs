//! Finding the files the project ships (the default policy, the GeoIP database, the common-password filter) from any
//! working directory: `stuffgate demo` and `stuffgate geoip lookup` must not depend on being run from the checkout.

use std::path::{Path, PathBuf};

/// Where a packaged install puts the shipped files (the Dockerfile copies them there).
pub const SHARE_DIRS: [&str; 2] = ["/usr/share/stuffgate", "/usr/local/share/stuffgate"];

/// The places searched for a shipped file, in order: the working directory, the directories above the running
/// binary (a `target/debug/stuffgate` finds its checkout), the packaged share directories, and the checkout the binary
/// was built from (what `cargo install --path .` leaves).
pub fn candidates(relative: &str) -> Vec<PathBuf> {
    let mut out = vec![PathBuf::from(relative)];
    if let Ok(exe) = std::env::current_exe() {
        out.extend(exe.ancestors().skip(1).take(4).map(|dir| dir.join(relative)));
    }
    out.extend(SHARE_DIRS.iter().map(|dir| Path::new(dir).join(relative)));
    out.push(Path::new(env!("CARGO_MANIFEST_DIR")).join(relative));
    out
}

/// The first existing copy of a shipped file, e.g. `find("policies/default.toml")`.
pub fn find(relative: &str) -> Option<PathBuf> {
    candidates(relative).into_iter().find(|p| p.is_file())
}

/// `path` when it exists; when it does not and is the shipped default written relative, the shipped copy found
/// elsewhere.
pub fn resolve(path: &Path, default: &str) -> PathBuf {
    if path.exists() || path != Path::new(default) {
        return path.to_path_buf();
    }
    find(default).unwrap_or_else(|| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    #[test]
    fn shipped_files_are_found_from_another_directory_by_their_checkout() {
        let found = super::find("geoip/country.mmdb").expect("the checkout's database");
        assert!(found.is_file());
        assert!(super::find("no/such/file").is_none());
    }
}
