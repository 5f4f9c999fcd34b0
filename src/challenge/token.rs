//! Signed tokens in a fixed binary layout (never re-serialised JSON: ALTCHA's CVE-2025-68113 came from a MAC over
//! fields that could be re-arranged), base64url without padding.
//!
//! ```text
//! challenge  ver=1 | kid | 'C' | issued_ms u64 | expires u32 | bits u8 | id[16] | bind[8] | mac[16]   56 bytes
//! device     ver=1 | kid | 'D' | issued u32    | expires u32 | id[16]                     | mac[16]   43 bytes
//! ```
//!
//! Integers are little-endian; times are seconds (milliseconds for `issued_ms`) since the UNIX epoch. `mac` is
//! HMAC-SHA256 under the key named by `kid` over every byte before it, truncated to 16 bytes and compared in
//! constant time. `kid` is a key's own fingerprint (not its position in the list), so keys can be reordered,
//! prepended (rotation: the first signs) and retired without invalidating what the others signed.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub const VERSION: u8 = 1;
const MAC_LEN: usize = 16;
const CHALLENGE: u8 = b'C';
const DEVICE: u8 = b'D';
pub const CHALLENGE_LEN: usize = 3 + 8 + 4 + 1 + 16 + 8 + MAC_LEN;
pub const DEVICE_LEN: usize = 3 + 4 + 4 + 16 + MAC_LEN;

/// One signing key: its id byte, its MAC key and the key that seals bodies into challenge pages.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: u8,
    mac: Hmac<Sha256>,
    pub(super) seal: [u8; 32],
}

impl SigningKey {
    /// Derive the purpose keys from a secret (HMAC-SHA256 as a KDF, one label per purpose).
    pub fn from_secret(secret: &[u8]) -> SigningKey {
        let derive = |label: &[u8]| -> [u8; 32] {
            // HMAC takes keys of any length; this cannot fail.
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
            mac.update(label);
            mac.finalize().into_bytes().into()
        };
        let id = derive(b"stuffgate challenge key id v1");
        SigningKey {
            kid: id[0],
            mac: <Hmac<Sha256> as Mac>::new_from_slice(&derive(b"stuffgate token mac v1"))
                .unwrap_or_else(|_| unreachable!()),
            seal: derive(b"stuffgate body seal v1"),
        }
    }
}

/// The keys tokens are signed and checked with: the first signs, all verify.
#[derive(Clone)]
pub struct TokenKeys {
    keys: Vec<SigningKey>,
}

/// Why a token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// Not base64url, wrong length, wrong version or kind.
    Malformed,
    /// Signed by a key this gateway does not hold (retired, or never ours).
    UnknownKey,
    BadMac,
    Expired,
}

/// What a challenge token says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChallengeClaims {
    pub issued_ms: u64,
    pub expires: u32,
    pub bits: u8,
    pub id: [u8; 16],
    /// Binds the token to a route and an account (see `bind`): a token solved for one login is no use for another.
    pub bind: [u8; 8],
}

/// What a device token says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceClaims {
    pub issued: u32,
    pub expires: u32,
    pub id: [u8; 16],
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<u8> = self.keys.iter().map(|k| k.kid).collect();
        f.debug_struct("TokenKeys").field("key_ids", &ids).finish_non_exhaustive()
    }
}

impl TokenKeys {
    /// The same secrets in the same order (compared by their derived keys; nothing is shown).
    pub fn same_keys(&self, other: &TokenKeys) -> bool {
        self.keys.len() == other.keys.len()
            && self.keys.iter().zip(&other.keys).all(|(a, b)| a.kid == b.kid && a.seal == b.seal)
    }

    /// `Err` when two secrets derive the same key id (astronomically rare for distinct secrets: draw another).
    pub fn new(keys: Vec<SigningKey>) -> Result<TokenKeys, String> {
        if keys.is_empty() {
            return Err("at least one key is needed".into());
        }
        for (i, key) in keys.iter().enumerate() {
            if keys[..i].iter().any(|k| k.kid == key.kid) {
                return Err(format!("keys {} and another share the key id {}: use another secret", i + 1, key.kid));
            }
        }
        Ok(TokenKeys { keys })
    }

    pub fn random() -> TokenKeys {
        let secret: [u8; 32] = rand::random();
        TokenKeys { keys: vec![SigningKey::from_secret(&secret)] }
    }

    pub(super) fn signer(&self) -> &SigningKey {
        &self.keys[0]
    }

    pub(super) fn by_kid(&self, kid: u8) -> Option<&SigningKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    fn sign(&self, mut bytes: Vec<u8>) -> String {
        let mut mac = self.signer().mac.clone();
        mac.update(&bytes);
        bytes.extend_from_slice(&mac.finalize().into_bytes()[..MAC_LEN]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Decode and check the MAC; returns the bytes before the MAC.
    fn open(&self, text: &str, kind: u8, len: usize) -> Result<Vec<u8>, TokenError> {
        if text.len() != (len * 4).div_ceil(3) {
            return Err(TokenError::Malformed);
        }
        let mut bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| TokenError::Malformed)?;
        if bytes.len() != len || bytes[0] != VERSION || bytes[2] != kind {
            return Err(TokenError::Malformed);
        }
        let key = self.by_kid(bytes[1]).ok_or(TokenError::UnknownKey)?;
        let (body, tag) = bytes.split_at(len - MAC_LEN);
        let mut mac = key.mac.clone();
        mac.update(body);
        mac.verify_truncated_left(tag).map_err(|_| TokenError::BadMac)?;
        bytes.truncate(len - MAC_LEN);
        Ok(bytes)
    }

    pub fn issue_challenge(&self, claims: &ChallengeClaims) -> String {
        let mut bytes = Vec::with_capacity(CHALLENGE_LEN);
        bytes.extend_from_slice(&[VERSION, self.signer().kid, CHALLENGE]);
        bytes.extend_from_slice(&claims.issued_ms.to_le_bytes());
        bytes.extend_from_slice(&claims.expires.to_le_bytes());
        bytes.push(claims.bits);
        bytes.extend_from_slice(&claims.id);
        bytes.extend_from_slice(&claims.bind);
        self.sign(bytes)
    }

    /// Check a challenge token's MAC and expiry (`now` in nanoseconds).
    pub fn verify_challenge(&self, text: &str, now: u64) -> Result<ChallengeClaims, TokenError> {
        let b = self.open(text, CHALLENGE, CHALLENGE_LEN)?;
        let claims = ChallengeClaims {
            issued_ms: u64::from_le_bytes(array(&b[3..11])),
            expires: u32::from_le_bytes(array(&b[11..15])),
            bits: b[15],
            id: array(&b[16..32]),
            bind: array(&b[32..40]),
        };
        if secs(now) >= u64::from(claims.expires) {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }

    pub fn issue_device(&self, claims: &DeviceClaims) -> String {
        let mut bytes = Vec::with_capacity(DEVICE_LEN);
        bytes.extend_from_slice(&[VERSION, self.signer().kid, DEVICE]);
        bytes.extend_from_slice(&claims.issued.to_le_bytes());
        bytes.extend_from_slice(&claims.expires.to_le_bytes());
        bytes.extend_from_slice(&claims.id);
        self.sign(bytes)
    }

    pub fn verify_device(&self, text: &str, now: u64) -> Result<DeviceClaims, TokenError> {
        let b = self.open(text, DEVICE, DEVICE_LEN)?;
        let claims = DeviceClaims {
            issued: u32::from_le_bytes(array(&b[3..7])),
            expires: u32::from_le_bytes(array(&b[7..11])),
            id: array(&b[11..27]),
        };
        if secs(now) >= u64::from(claims.expires) {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    out
}

pub(super) fn secs(nanos: u64) -> u64 {
    nanos / 1_000_000_000
}

/// What a challenge token binds: the route and the account (keyed), not the address (dual-stack clients move
/// between IPv4 and IPv6 while solving: Anubis #564).
pub fn bind(route: &str, account: Option<u64>) -> [u8; 8] {
    let mut hash = Sha256::new();
    hash.update(route.as_bytes());
    hash.update([0]);
    hash.update(account.unwrap_or(0).to_le_bytes());
    array(&hash.finalize()[..8])
}

/// Whether `SHA-256(token ":" nonce)` begins with `bits` zero bits; `nonce` must be a decimal integer.
pub fn pow_ok(token: &str, nonce: &str, bits: u8) -> bool {
    if nonce.is_empty() || nonce.len() > 20 || !nonce.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let mut hash = Sha256::new();
    hash.update(token.as_bytes());
    hash.update(b":");
    hash.update(nonce.as_bytes());
    leading_zero_bits(&hash.finalize()) >= u32::from(bits)
}

pub fn leading_zero_bits(digest: &[u8]) -> u32 {
    let mut zeros = 0;
    for &byte in digest {
        if byte == 0 {
            zeros += 8;
        } else {
            return zeros + byte.leading_zeros();
        }
    }
    zeros
}

/// Find a nonce for a token (what a client does; the replay's solver bot and the tests use it).
pub fn solve(token: &str, bits: u8) -> u64 {
    let mut prefix = Sha256::new();
    prefix.update(token.as_bytes());
    prefix.update(b":");
    let mut text = [0u8; 20];
    (0u64..)
        .find(|n| {
            let mut hash = prefix.clone();
            hash.update(format_u64(&mut text, *n));
            leading_zero_bits(&hash.finalize()) >= u32::from(bits)
        })
        .unwrap_or(0)
}

fn format_u64(buffer: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut at = buffer.len();
    loop {
        at -= 1;
        buffer[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buffer[at..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;
    const NOW: u64 = 1_767_225_600 * S;

    fn keys(secret: &[u8]) -> TokenKeys {
        TokenKeys::new(vec![SigningKey::from_secret(secret)]).unwrap()
    }

    fn claims() -> ChallengeClaims {
        ChallengeClaims {
            issued_ms: NOW / 1_000_000,
            expires: (NOW / S) as u32 + 120,
            bits: 16,
            id: [7; 16],
            bind: bind("login", Some(42)),
        }
    }

    #[test]
    fn tokens_round_trip_with_their_fixed_lengths() {
        let k = keys(b"a secret of thirty-two bytes....");
        let text = k.issue_challenge(&claims());
        assert_eq!(text.len(), 75);
        assert_eq!(k.verify_challenge(&text, NOW), Ok(claims()));
        let device = DeviceClaims { issued: 1, expires: (NOW / S) as u32 + 10, id: [9; 16] };
        let text = k.issue_device(&device);
        assert_eq!(text.len(), 58);
        assert_eq!(k.verify_device(&text, NOW), Ok(device));
        // A device token is not a challenge token, nor the other way round.
        assert_eq!(k.verify_challenge(&text, NOW), Err(TokenError::Malformed));
    }

    #[test]
    fn every_single_byte_tamper_is_refused() {
        let k = keys(b"a secret of thirty-two bytes....");
        for text in
            [k.issue_challenge(&claims()), k.issue_device(&DeviceClaims { issued: 1, expires: u32::MAX, id: [3; 16] })]
        {
            let bytes = URL_SAFE_NO_PAD.decode(&text).unwrap();
            for at in 0..bytes.len() {
                for flip in [0x01u8, 0x80, 0xff] {
                    let mut tampered = bytes.clone();
                    tampered[at] ^= flip;
                    let tampered = URL_SAFE_NO_PAD.encode(&tampered);
                    assert!(k.verify_challenge(&tampered, NOW).is_err(), "challenge byte {at} ^ {flip:#x} accepted");
                    assert!(k.verify_device(&tampered, NOW).is_err(), "device byte {at} ^ {flip:#x} accepted");
                }
            }
            // Every character of the text too (the last one carries unused bits: they must be zero).
            for at in 0..text.len() {
                let mut chars: Vec<char> = text.chars().collect();
                chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
                let tampered: String = chars.into_iter().collect();
                assert!(k.verify_challenge(&tampered, NOW).is_err() && k.verify_device(&tampered, NOW).is_err());
            }
            assert!(k.verify_challenge(&text[..text.len() - 1], NOW).is_err());
            assert!(k.verify_challenge(&format!("{text}A"), NOW).is_err());
        }
    }

    #[test]
    fn tokens_expire() {
        let k = keys(b"a secret of thirty-two bytes....");
        let text = k.issue_challenge(&claims());
        assert!(k.verify_challenge(&text, NOW + 119 * S).is_ok());
        assert_eq!(k.verify_challenge(&text, NOW + 120 * S), Err(TokenError::Expired));
        let device = k.issue_device(&DeviceClaims { issued: 1, expires: (NOW / S) as u32 + 10, id: [9; 16] });
        assert_eq!(k.verify_device(&device, NOW + 10 * S), Err(TokenError::Expired));
    }

    #[test]
    fn rotation_the_first_key_signs_and_every_listed_key_verifies() {
        let old = SigningKey::from_secret(b"the old secret, thirty-two bytes");
        let new = SigningKey::from_secret(b"the new secret, thirty-two bytes");
        let before = TokenKeys::new(vec![old.clone()]).unwrap();
        let during = TokenKeys::new(vec![new.clone(), old.clone()]).unwrap();
        let after = TokenKeys::new(vec![new]).unwrap();
        let old_token = before.issue_challenge(&claims());
        let new_token = during.issue_challenge(&claims());
        assert_ne!(old_token[..4], new_token[..4], "the key id is in the token");
        assert!(during.verify_challenge(&old_token, NOW).is_ok(), "a token of the retiring key still verifies");
        assert!(during.verify_challenge(&new_token, NOW).is_ok());
        assert!(after.verify_challenge(&new_token, NOW).is_ok());
        assert_eq!(after.verify_challenge(&old_token, NOW), Err(TokenError::UnknownKey), "retired key refused");
        assert_eq!(before.verify_challenge(&new_token, NOW), Err(TokenError::UnknownKey));
        assert!(TokenKeys::new(vec![old.clone(), old]).is_err(), "the same key twice is a configuration error");
    }

    #[test]
    fn a_splice_of_fields_from_two_tokens_fails() {
        let k = keys(b"a secret of thirty-two bytes....");
        let easy = k.issue_challenge(&ChallengeClaims { bits: 1, ..claims() });
        let long_lived = k.issue_challenge(&ChallengeClaims {
            issued_ms: 1,
            expires: u32::MAX,
            id: [8; 16],
            bind: bind("login", Some(7)),
            ..claims()
        });
        let (a, b) = (URL_SAFE_NO_PAD.decode(&easy).unwrap(), URL_SAFE_NO_PAD.decode(&long_lived).unwrap());
        // Each field of one with the rest of the other (ALTCHA CVE-2025-68113: a later expiry on a solved challenge).
        for range in [3..11, 11..15, 15..16, 16..32, 32..40, 40..56] {
            let mut spliced = a.clone();
            spliced[range.clone()].copy_from_slice(&b[range.clone()]);
            let text = URL_SAFE_NO_PAD.encode(&spliced);
            assert_eq!(k.verify_challenge(&text, NOW), Err(TokenError::BadMac), "{range:?}");
        }
        // A token of another key with this one's MAC: unknown key or bad MAC, never accepted.
        let other = keys(b"another secret, thirty-two bytes").issue_challenge(&claims());
        assert!(k.verify_challenge(&other, NOW).is_err());
        assert_ne!(bind("login", Some(7)), bind("login", Some(8)));
        assert_ne!(bind("login", Some(7)), bind("signup", Some(7)));
    }

    #[test]
    fn proof_of_work_is_found_and_checked() {
        let token = keys(b"a secret of thirty-two bytes....").issue_challenge(&claims());
        let nonce = solve(&token, 12).to_string();
        assert!(pow_ok(&token, &nonce, 12));
        let digest = Sha256::digest(format!("{token}:{nonce}").as_bytes());
        assert!(leading_zero_bits(&digest) >= 12);
        for bad in ["", "-1", "+5", "1.0", "0x10", "123456789012345678901", " 1"] {
            assert!(!pow_ok(&token, bad, 0), "{bad:?}");
        }
        assert!(pow_ok(&token, "0", 0));
        assert_eq!(leading_zero_bits(&[0, 0x0f, 0xff]), 12);
        assert_eq!(leading_zero_bits(&[0; 4]), 32);
    }
}
