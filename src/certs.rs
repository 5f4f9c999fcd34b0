//! The certificates a TLS listener serves: loaded and checked from PEM files, picked by the client's SNI, and
//! swapped whole when the files change, so a handshake in progress keeps the set it started with and none is
//! dropped.
//!
//! The set is read by rustls through [`Resolver`] (its `ResolvesServerCert`), which pingora's TLS listener calls
//! during each handshake.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Certificates expiring sooner than this are warned about (logs, `/readyz`).
pub const EXPIRY_WARNING_SECS: i64 = 14 * 86_400;

/// One certificate chain and its private key, as files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A listener's certificates: the default one (no SNI, or an SNI no certificate names) and others, each served for
/// the names its certificate lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub default: CertFiles,
    pub sni: Vec<CertFiles>,
}

impl TlsFiles {
    pub fn all(&self) -> impl Iterator<Item = &CertFiles> {
        std::iter::once(&self.default).chain(self.sni.iter())
    }
}

/// Why a certificate or key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", file.display())]
pub struct CertError {
    pub file: PathBuf,
    /// `cert` or `key`: which of the pair's files is at fault.
    pub which: &'static str,
    pub message: String,
}

/// A loaded certificate, ready to serve.
pub struct Loaded {
    pub key: Arc<CertifiedKey>,
    /// DNS names from the subject alternative names (or the common name when there are none), lower case.
    pub names: Vec<String>,
    /// Unix seconds at which the certificate expires.
    pub not_after: i64,
    pub files: CertFiles,
}

impl fmt::Debug for Loaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loaded").field("names", &self.names).field("not_after", &self.not_after).finish()
    }
}

impl Loaded {
    /// The name to show for this certificate: its first DNS name, or its file.
    pub fn label(&self) -> String {
        self.names.first().cloned().unwrap_or_else(|| self.files.cert.display().to_string())
    }
}

fn read(path: &Path, which: &'static str) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|e| CertError {
        file: path.to_path_buf(),
        which,
        message: format!("cannot read the {which} file: {e}"),
    })
}

/// Load and check one certificate chain and its key: both parse, the key is one rustls can sign with, and it is the
/// key of the chain's first certificate.
pub fn load_pair(files: &CertFiles) -> Result<Loaded, CertError> {
    let cert_error = |message: String| CertError { file: files.cert.clone(), which: "cert", message };
    let key_error = |message: String| CertError { file: files.key.clone(), which: "key", message };
    let pem = read(&files.cert, "cert")?;
    let chain: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| cert_error(format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(cert_error("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into()));
    }
    let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0])
        .map_err(|e| cert_error(format!("the first certificate does not parse: {e}")))?;
    let not_after = leaf.validity().not_after.timestamp();
    let mut names: Vec<String> = match leaf.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                x509_parser::extensions::GeneralName::DNSName(dns) => Some(dns.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if names.is_empty() {
        names.extend(leaf.subject().iter_common_name().filter_map(|cn| cn.as_str().ok()).map(str::to_ascii_lowercase));
    }
    let pem = read(&files.key, "key")?;
    let key = rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| key_error(format!("not a PEM private key: {e}")))?
        .ok_or_else(|| key_error("holds no PEM private key (PKCS#8, PKCS#1 or SEC1)".into()))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| key_error(format!("not a usable private key (RSA, ECDSA P-256/P-384 or Ed25519): {e}")))?;
    let certified = CertifiedKey::new(chain, signing);
    if let Err(e) = certified.keys_match() {
        return Err(key_error(format!("is not the key of the certificate in {}: {e}", files.cert.display())));
    }
    Ok(Loaded { key: Arc::new(certified), names, not_after, files: files.clone() })
}

/// The certificates of one listener, indexed by the names they serve.
#[derive(Debug)]
pub struct CertSet {
    default: Arc<Loaded>,
    all: Vec<Arc<Loaded>>,
    exact: HashMap<String, usize>,
    /// `*.example.com` is kept under `example.com`.
    wildcard: HashMap<String, usize>,
}

impl CertSet {
    /// Load every pair of `files`; the first error refuses the whole set.
    pub fn load(files: &TlsFiles) -> Result<CertSet, CertError> {
        let default = Arc::new(load_pair(&files.default)?);
        let mut all = vec![default.clone()];
        for pair in &files.sni {
            all.push(Arc::new(load_pair(pair)?));
        }
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        // The default certificate first: an SNI certificate that names the same host wins.
        for (index, loaded) in all.iter().enumerate() {
            for name in &loaded.names {
                match name.strip_prefix("*.") {
                    Some(parent) => wildcard.insert(parent.to_string(), index),
                    None => exact.insert(name.clone(), index),
                };
            }
        }
        Ok(CertSet { default, all, exact, wildcard })
    }

    /// The certificate for a client's SNI: an exact name, then a wildcard one level up, then the default.
    pub fn pick(&self, sni: Option<&str>) -> &Arc<Loaded> {
        let Some(name) = sni else {
            return &self.default;
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(index) = self.exact.get(&name) {
            return &self.all[*index];
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(index) = self.wildcard.get(parent) {
                return &self.all[*index];
            }
        }
        &self.default
    }

    pub fn certificates(&self) -> &[Arc<Loaded>] {
        &self.all
    }
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// A listener's certificates as rustls reads them, swappable while handshakes run.
pub struct Resolver {
    address: String,
    files: parking_lot::Mutex<TlsFiles>,
    current: ArcSwap<CertSet>,
    /// Modification stamps of the files last loaded (or last refused), to notice a change.
    stamps: parking_lot::Mutex<Vec<Option<(SystemTime, u64)>>>,
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver").field("address", &self.address).finish()
    }
}

fn stamps_of(files: &TlsFiles) -> Vec<Option<(SystemTime, u64)>> {
    files.all().flat_map(|pair| [stamp(&pair.cert), stamp(&pair.key)]).collect()
}

/// What a reload did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reloaded {
    Unchanged,
    Swapped,
    Refused(CertError),
}

impl Resolver {
    pub fn new(address: &str, files: TlsFiles, set: CertSet) -> Arc<Resolver> {
        let stamps = stamps_of(&files);
        Arc::new(Resolver {
            address: address.to_string(),
            files: parking_lot::Mutex::new(files),
            current: ArcSwap::from_pointee(set),
            stamps: parking_lot::Mutex::new(stamps),
        })
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// The files the serving set was loaded from.
    pub fn files(&self) -> TlsFiles {
        self.files.lock().clone()
    }

    pub fn current(&self) -> Arc<CertSet> {
        self.current.load_full()
    }

    /// Load `files` (new paths, or the same ones re-read) and swap them in; a refused set leaves the serving one.
    pub fn replace(&self, files: &TlsFiles) -> Reloaded {
        *self.stamps.lock() = stamps_of(files);
        match CertSet::load(files) {
            Ok(set) => {
                self.current.store(Arc::new(set));
                *self.files.lock() = files.clone();
                Reloaded::Swapped
            }
            Err(error) => Reloaded::Refused(error),
        }
    }

    /// Re-read the files when one of them changed since the last load (or refusal).
    pub fn reload_if_changed(&self) -> Reloaded {
        let files = self.files.lock().clone();
        if *self.stamps.lock() == stamps_of(&files) {
            return Reloaded::Unchanged;
        }
        self.replace(&files)
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load().pick(hello.server_name()).key.clone())
    }
}

/// Seconds from now until `not_after` (negative once expired).
pub fn seconds_left(not_after: i64) -> i64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    not_after - now
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path, stem: &str, names: &[&str]) -> CertFiles {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let files = CertFiles { cert: dir.join(format!("{stem}.pem")), key: dir.join(format!("{stem}.key")) };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }

    #[test]
    fn sni_picks_exact_then_wildcard_then_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles {
            default: pair(dir.path(), "default", &["gateway.example"]),
            sni: vec![
                pair(dir.path(), "shop", &["shop.example", "*.shop.example"]),
                pair(dir.path(), "api", &["api.example"]),
            ],
        };
        let set = CertSet::load(&files).unwrap();
        let label = |sni: Option<&str>| set.pick(sni).label();
        assert_eq!(label(None), "gateway.example");
        assert_eq!(label(Some("API.example.")), "api.example");
        assert_eq!(label(Some("shop.example")), "shop.example");
        assert_eq!(label(Some("eu.shop.example")), "shop.example");
        assert_eq!(label(Some("a.eu.shop.example")), "gateway.example");
        assert_eq!(label(Some("unknown.example")), "gateway.example");
        assert!(seconds_left(set.pick(None).not_after) > EXPIRY_WARNING_SECS);
    }

    #[test]
    fn a_mismatched_key_and_broken_files_are_refused_with_the_file_at_fault() {
        let dir = tempfile::tempdir().unwrap();
        let a = pair(dir.path(), "a", &["a.example"]);
        let b = pair(dir.path(), "b", &["b.example"]);
        let mismatched = CertFiles { cert: a.cert.clone(), key: b.key.clone() };
        let error = load_pair(&mismatched).unwrap_err();
        assert_eq!((error.which, &error.file), ("key", &b.key), "{error}");
        assert!(error.message.contains("is not the key of the certificate"), "{error}");
        let swapped = CertFiles { cert: a.key.clone(), key: a.cert.clone() };
        assert_eq!(load_pair(&swapped).unwrap_err().which, "cert");
        let missing = CertFiles { cert: dir.path().join("nope.pem"), key: a.key.clone() };
        assert!(load_pair(&missing).unwrap_err().message.contains("cannot read"));
    }

    #[test]
    fn a_reload_swaps_a_good_set_and_keeps_serving_the_old_one_when_refused() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles { default: pair(dir.path(), "site", &["one.example"]), sni: vec![] };
        let resolver = Resolver::new("127.0.0.1:0", files.clone(), CertSet::load(&files).unwrap());
        assert_eq!(resolver.reload_if_changed(), Reloaded::Unchanged);
        // A new certificate written over the old files is picked up.
        let fresh = pair(dir.path(), "fresh", &["two.example"]);
        std::fs::copy(&fresh.cert, &files.default.cert).unwrap();
        std::fs::copy(&fresh.key, &files.default.key).unwrap();
        assert_eq!(resolver.reload_if_changed(), Reloaded::Swapped);
        assert_eq!(resolver.current().pick(None).label(), "two.example");
        // Half-written (a key from elsewhere): refused, the last good set serves on, and it is not retried until
        // the files change again.
        let other = pair(dir.path(), "other", &["three.example"]);
        std::fs::copy(&other.cert, &files.default.cert).unwrap();
        assert!(matches!(resolver.reload_if_changed(), Reloaded::Refused(_)));
        assert_eq!(resolver.current().pick(None).label(), "two.example");
        assert_eq!(resolver.reload_if_changed(), Reloaded::Unchanged);
        std::fs::copy(&other.key, &files.default.key).unwrap();
        assert_eq!(resolver.reload_if_changed(), Reloaded::Swapped);
        assert_eq!(resolver.current().pick(None).label(), "three.example");
    }
}
