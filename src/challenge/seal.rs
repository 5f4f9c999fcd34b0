//! The original login body, sealed into the challenge page so the page can re-submit it unchanged.
//!
//! The page never holds the password in clear: it holds `kid | nonce[24] | XChaCha20-Poly1305(content type, body)`
//! under a key only the gateway has, with the challenge token as associated data (a sealed body cannot be moved
//! to another challenge, account or route). On the re-submit the gateway opens it and forwards the original bytes
//! with their own `Content-Type` and a fixed `Content-Length`.
//!
//! The re-submit is a form POST of the page's fields: `_sg_c` (challenge token), `_sg_n` (nonce, empty on the
//! no-JavaScript path), `_sg_s` (the sealed body) and `_sg_f` (device signals as JSON).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use super::token::TokenKeys;

/// The page's re-submit, as read from a form body.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Envelope {
    pub token: String,
    pub nonce: String,
    pub sealed: String,
    pub signals: String,
}

/// The body the client first sent, unsealed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Original {
    pub content_type: Option<String>,
    pub body: Bytes,
}

/// Largest re-submit read on a route whose own bodies are at most `max_body`: base64 of the sealed body, the
/// token and the signals. pingora's replay buffer holds 64 KiB, which is the cap.
pub fn envelope_limit(max_body: usize) -> usize {
    (max_body.div_ceil(3) * 4 + 4096).min(64 * 1024)
}

/// The page's fields, when `body` is a form whose first field is `_sg_c`; `None` for any other body.
pub fn detect(content_type: Option<&[u8]>, body: &[u8]) -> Option<Envelope> {
    let form = content_type.is_some_and(|ct| {
        let essence = ct.split(|&b| b == b';').next().unwrap_or(b"");
        essence.trim_ascii().eq_ignore_ascii_case(b"application/x-www-form-urlencoded")
    });
    if !form || !body.starts_with(b"_sg_c=") {
        return None;
    }
    let mut envelope = Envelope::default();
    for (key, value) in form_urlencoded::parse(body) {
        let slot = match key.as_ref() {
            "_sg_c" => &mut envelope.token,
            "_sg_n" => &mut envelope.nonce,
            "_sg_s" => &mut envelope.sealed,
            "_sg_f" => &mut envelope.signals,
            _ => continue,
        };
        *slot = value.into_owned();
    }
    Some(envelope)
}

pub fn seal(keys: &TokenKeys, token: &str, original: &Original) -> String {
    let key = keys.signer();
    let content_type = original.content_type.as_deref().unwrap_or("").as_bytes();
    let content_type = &content_type[..content_type.len().min(255)];
    let mut plain = Vec::with_capacity(1 + content_type.len() + original.body.len());
    plain.push(content_type.len() as u8);
    plain.extend_from_slice(content_type);
    plain.extend_from_slice(&original.body);
    let nonce: [u8; 24] = rand::random();
    let cipher = XChaCha20Poly1305::new(&key.seal.into());
    let sealed = cipher
        .encrypt(XNonce::from_slice(&nonce), Payload { msg: &plain, aad: token.as_bytes() })
        // Encryption fails only for messages over 256 GiB.
        .unwrap_or_default();
    let mut out = Vec::with_capacity(1 + 24 + sealed.len());
    out.push(key.kid);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    URL_SAFE_NO_PAD.encode(out)
}

/// Open a sealed body; `None` when it was not sealed by one of our keys for this token, or was changed.
pub fn open(keys: &TokenKeys, token: &str, sealed: &str) -> Option<Original> {
    let bytes = URL_SAFE_NO_PAD.decode(sealed).ok()?;
    if bytes.len() < 1 + 24 + 16 {
        return None;
    }
    let key = keys.by_kid(bytes[0])?;
    let cipher = XChaCha20Poly1305::new(&key.seal.into());
    let plain =
        cipher.decrypt(XNonce::from_slice(&bytes[1..25]), Payload { msg: &bytes[25..], aad: token.as_bytes() }).ok()?;
    let length = usize::from(*plain.first()?);
    let content_type = plain.get(1..1 + length)?;
    let content_type = (!content_type.is_empty()).then(|| String::from_utf8_lossy(content_type).into_owned());
    Some(Original { content_type, body: Bytes::copy_from_slice(&plain[1 + length..]) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_body_opens_byte_identical_only_for_its_token() {
        let keys = TokenKeys::random();
        let body = Bytes::from_static(b"email=a%40b.c&password=p+w%2B%26%3D&submit=x&note=\"quoted\"");
        let original = Original { content_type: Some("application/x-www-form-urlencoded".into()), body };
        let sealed = seal(&keys, "token-one", &original);
        assert!(!sealed.contains("password"), "nothing readable in the page");
        assert_eq!(open(&keys, "token-one", &sealed), Some(original.clone()));
        assert_eq!(open(&keys, "token-two", &sealed), None, "moved to another challenge");
        assert_eq!(open(&TokenKeys::random(), "token-one", &sealed), None, "another gateway's key");
        let mut raw = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        for at in 0..raw.len() {
            raw[at] ^= 1;
            assert_eq!(open(&keys, "token-one", &URL_SAFE_NO_PAD.encode(&raw)), None, "byte {at}");
            raw[at] ^= 1;
        }
        let empty = Original { content_type: None, body: Bytes::new() };
        assert_eq!(open(&keys, "t", &seal(&keys, "t", &empty)), Some(empty));
    }

    #[test]
    fn only_a_form_starting_with_the_token_field_is_an_envelope() {
        let form = Some(&b"application/x-www-form-urlencoded"[..]);
        let got = detect(form, b"_sg_c=abc&_sg_n=12&_sg_s=xyz&_sg_f=%7B%7D").unwrap();
        assert_eq!((got.token.as_str(), got.nonce.as_str(), got.signals.as_str()), ("abc", "12", "{}"));
        assert_eq!(detect(form, b"email=a&_sg_c=abc"), None);
        assert_eq!(detect(Some(b"application/json"), b"_sg_c=abc"), None);
        assert!(envelope_limit(16 * 1024) > 16 * 1024 * 4 / 3 && envelope_limit(64 * 1024) == 64 * 1024);
    }
}
