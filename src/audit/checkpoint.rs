//! Signed checkpoints (docs/FORMAT.md, "Signed checkpoints"): a stream head (stream
//! name, seq and hash of the last event covered) signed with Ed25519, so that anyone
//! holding the public key can prove later that the stream still holds that event at
//! that place.
//!
//! Pure, like the rest of `audit`: keys come in as bytes, checkpoints go out as
//! values. The signed bytes are [`DOMAIN`] followed by the RFC 8785 canonical JSON of
//! `{"hash","kid","seq","stream"}`, so an implementation in any language with a JSON
//! writer and an Ed25519 library can check them.

use super::canon::write_string;
use super::json::{self, Number, Value};
use super::{hex_lower, sha256};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

/// Prefix of every signed message: keeps a checkpoint signature from meaning anything
/// in another protocol that uses the same key.
pub const DOMAIN: &[u8] = b"auditship checkpoint v1\n";

/// The `resource` and `metadata.source_event` of a checkpoint event.
pub const RESOURCE: &str = "checkpoint";

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410); the 32 key bytes
/// follow.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// A signed stream head, as it appears in `metadata.checkpoint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The stream's name (in the sealer: the user name).
    pub stream: String,
    /// Seq of the last event covered.
    pub seq: u64,
    /// Hash of that event: 64 lowercase hex digits.
    pub hash: String,
    /// Which key signed it ([`PublicKey::kid`]).
    pub kid: String,
    /// The Ed25519 signature: 128 lowercase hex digits.
    pub sig: String,
}

/// An Ed25519 public key and its key id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    raw: [u8; 32],
    kid: String,
}

impl PublicKey {
    pub fn from_raw(raw: [u8; 32]) -> Self {
        let digest = hex_lower(&sha256(&raw));
        let kid = format!("ed25519:{}", String::from_utf8_lossy(&digest[..16]));
        PublicKey { raw, kid }
    }

    /// Reads a DER SubjectPublicKeyInfo holding an Ed25519 key.
    pub fn from_spki_der(der: &[u8]) -> Option<Self> {
        let raw = der.strip_prefix(&SPKI_PREFIX[..])?;
        Some(Self::from_raw(raw.try_into().ok()?))
    }

    /// The key as a DER SubjectPublicKeyInfo.
    pub fn to_spki_der(&self) -> Vec<u8> {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.raw);
        der
    }

    /// `ed25519:` and the first 16 hex digits of the SHA-256 of the raw key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn raw(&self) -> &[u8; 32] {
        &self.raw
    }
}

/// An Ed25519 private key.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    public: PublicKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.public.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Reads a PKCS#8 document (v1, as `openssl genpkey -algorithm ed25519` writes,
    /// or v2 with the public key).
    pub fn from_pkcs8(der: &[u8]) -> Option<Self> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).ok()?;
        Some(Self::from_pair(pair))
    }

    /// The key of a 32-byte seed (RFC 8032).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed).expect("any 32 bytes are a seed");
        Self::from_pair(pair)
    }

    /// A new random key, as a PKCS#8 v2 document.
    pub fn generate_pkcs8() -> Option<Vec<u8>> {
        let rng = ring::rand::SystemRandom::new();
        Ed25519KeyPair::generate_pkcs8(&rng)
            .ok()
            .map(|d| d.as_ref().to_vec())
    }

    fn from_pair(pair: Ed25519KeyPair) -> Self {
        let raw: [u8; 32] = pair
            .public_key()
            .as_ref()
            .try_into()
            .expect("Ed25519 public keys are 32 bytes");
        SigningKey {
            pair,
            public: PublicKey::from_raw(raw),
        }
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// Signs the head `seq`/`hash` of `stream`.
    pub fn sign(&self, stream: &str, seq: u64, hash: &str) -> Checkpoint {
        let kid = self.public.kid.clone();
        let message = signing_input(stream, seq, hash, &kid);
        let sig = self.pair.sign(&message);
        Checkpoint {
            stream: stream.to_owned(),
            seq,
            hash: hash.to_owned(),
            kid,
            sig: hex(sig.as_ref()),
        }
    }
}

/// The bytes a checkpoint's signature is over: [`DOMAIN`], then the canonical JSON
/// object `{"hash":…,"kid":…,"seq":…,"stream":…}` (members in this order, strings
/// escaped as RFC 8785 does, `seq` a plain integer).
pub fn signing_input(stream: &str, seq: u64, hash: &str, kid: &str) -> Vec<u8> {
    let mut out = DOMAIN.to_vec();
    out.extend_from_slice(b"{\"hash\":");
    write_string(hash, &mut out);
    out.extend_from_slice(b",\"kid\":");
    write_string(kid, &mut out);
    out.extend_from_slice(format!(",\"seq\":{seq},\"stream\":").as_bytes());
    write_string(stream, &mut out);
    out.push(b'}');
    out
}

/// Why a checkpoint's signature does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadSignature {
    /// Signed by a key not given.
    UnknownKey,
    /// `sig` is not 128 hex digits, or does not verify under the key of its `kid`.
    Invalid,
}

impl Checkpoint {
    /// Checks the signature with the key whose kid the checkpoint names.
    pub fn verify(&self, keys: &[PublicKey]) -> Result<(), BadSignature> {
        let key = keys
            .iter()
            .find(|k| k.kid == self.kid)
            .ok_or(BadSignature::UnknownKey)?;
        let sig = super::decode_hex(&self.sig)
            .filter(|s| s.len() == 64)
            .ok_or(BadSignature::Invalid)?;
        let message = signing_input(&self.stream, self.seq, &self.hash, &self.kid);
        UnparsedPublicKey::new(&ED25519, &key.raw[..])
            .verify(&message, &sig)
            .map_err(|_| BadSignature::Invalid)
    }

    /// The `metadata.checkpoint` object of a checkpoint event.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "stream": self.stream,
            "seq": self.seq,
            "hash": self.hash,
            "kid": self.kid,
            "sig": self.sig,
        })
    }

    /// Reads a `metadata.checkpoint` object; says what is wrong with it otherwise.
    pub fn from_object(obj: &json::Object<'_>) -> Result<Checkpoint, String> {
        let text = |key: &str| {
            json::get(obj, key)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("checkpoint without a string {key:?}"))
        };
        let seq = match json::get(obj, "seq") {
            Some(Value::Number(Number::Int(n))) if *n >= 0 => *n as u64,
            _ => return Err("checkpoint without a non-negative integer \"seq\"".into()),
        };
        let hash = text("hash")?;
        if hash.len() != 64 || !hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err("checkpoint \"hash\" is not 64 lowercase hex digits".into());
        }
        Ok(Checkpoint {
            stream: text("stream")?,
            seq,
            hash,
            kid: text("kid")?,
            sig: text("sig")?,
        })
    }

    /// The checkpoint an event carries: `None` when the event is not a checkpoint
    /// event (`metadata.source_event` is not "checkpoint"), else what its
    /// `metadata.checkpoint` holds or what is wrong with it.
    pub fn of_event(event: &json::Object<'_>) -> Option<Result<Checkpoint, String>> {
        let meta = json::get(event, "metadata")?.as_object()?;
        if json::get(meta, "source_event")?.as_str()? != RESOURCE {
            return None;
        }
        Some(
            match json::get(meta, "checkpoint").and_then(Value::as_object) {
                Some(obj) => Self::from_object(obj),
                None => Err("checkpoint event without a \"checkpoint\" object".into()),
            },
        )
    }
}

fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector of docs/FORMAT.md.
    pub const VECTOR_SEED: [u8; 32] = [
        0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c,
        0xc4, 0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae,
        0x7f, 0x60,
    ];

    #[test]
    fn the_published_test_vector_is_what_this_implementation_signs() {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/checkpoint_vector.json")).unwrap();
        let seed: [u8; 32] = super::super::decode_hex(v["seed"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        assert_eq!(seed, VECTOR_SEED);
        let key = SigningKey::from_seed(&seed);
        assert_eq!(hex(key.public().raw()), v["public_key"]);
        let c = &v["checkpoint"];
        let (stream, seq, hash) = (
            c["stream"].as_str().unwrap(),
            c["seq"].as_u64().unwrap(),
            c["hash"].as_str().unwrap(),
        );
        let input = signing_input(stream, seq, hash, key.public().kid());
        assert_eq!(
            String::from_utf8(input.clone()).unwrap(),
            v["signing_input"]
        );
        assert_eq!(hex(&input), v["signing_input_hex"]);
        let signed = key.sign(stream, seq, hash);
        assert_eq!(signed.to_json(), *c);
    }

    #[test]
    fn signing_input_is_the_domain_and_canonical_json() {
        let got = signing_input("al\"ice", 7, "ab", "ed25519:00");
        assert_eq!(
            String::from_utf8(got).unwrap(),
            "auditship checkpoint v1\n{\"hash\":\"ab\",\"kid\":\"ed25519:00\",\"seq\":7,\"stream\":\"al\\\"ice\"}"
        );
    }

    #[test]
    fn a_signed_checkpoint_verifies_and_any_change_breaks_it() {
        let key = SigningKey::from_seed(&VECTOR_SEED);
        let keys = [key.public().clone()];
        let hash = "a".repeat(64);
        let c = key.sign("alice", 41, &hash);
        assert_eq!(c.verify(&keys), Ok(()));
        for changed in [
            Checkpoint {
                seq: 42,
                ..c.clone()
            },
            Checkpoint {
                stream: "bob".into(),
                ..c.clone()
            },
            Checkpoint {
                hash: "b".repeat(64),
                ..c.clone()
            },
            Checkpoint {
                sig: format!("{}00", &c.sig[..126]),
                ..c.clone()
            },
            Checkpoint {
                sig: "zz".into(),
                ..c.clone()
            },
        ] {
            assert_eq!(
                changed.verify(&keys),
                Err(BadSignature::Invalid),
                "{changed:?}"
            );
        }
        let other = SigningKey::from_seed(&[7; 32]);
        assert_eq!(
            c.verify(&[other.public().clone()]),
            Err(BadSignature::UnknownKey)
        );
    }

    #[test]
    fn the_public_key_round_trips_through_spki() {
        let key = SigningKey::from_seed(&VECTOR_SEED);
        let der = key.public().to_spki_der();
        assert_eq!(der.len(), 44);
        assert_eq!(PublicKey::from_spki_der(&der).as_ref(), Some(key.public()));
        assert!(PublicKey::from_spki_der(&der[..43]).is_none());
        let pkcs8 = SigningKey::generate_pkcs8().unwrap();
        assert!(SigningKey::from_pkcs8(&pkcs8).is_some());
    }

    #[test]
    fn checkpoint_objects_are_read_strictly() {
        let key = SigningKey::from_seed(&VECTOR_SEED);
        let c = key.sign("alice", 3, &"0".repeat(64));
        let event = serde_json::json!({
            "action": "agent_event",
            "resource": RESOURCE,
            "metadata": {"source_event": RESOURCE, "checkpoint": c.to_json()},
        })
        .to_string();
        let v = json::parse(&event).unwrap();
        assert_eq!(Checkpoint::of_event(v.as_object().unwrap()), Some(Ok(c)));
        let plain = json::parse(r#"{"metadata":{"source_event":"PreToolUse"}}"#).unwrap();
        assert_eq!(Checkpoint::of_event(plain.as_object().unwrap()), None);
        for bad in [
            r#"{"metadata":{"source_event":"checkpoint"}}"#,
            r#"{"metadata":{"source_event":"checkpoint","checkpoint":{"stream":"a","seq":-1,"hash":"00","kid":"k","sig":"s"}}}"#,
            r#"{"metadata":{"source_event":"checkpoint","checkpoint":{"stream":"a","seq":1,"hash":"00","kid":"k","sig":"s"}}}"#,
        ] {
            let v = json::parse(bad).unwrap();
            assert!(
                matches!(Checkpoint::of_event(v.as_object().unwrap()), Some(Err(_))),
                "{bad}"
            );
        }
    }
}
