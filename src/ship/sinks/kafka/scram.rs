//! The client side of SASL SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677),
//! without channel binding, as Kafka uses it: client-first, server-first,
//! client-final with the proof, server-final with the signature we verify. Pure.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::{hmac, pbkdf2};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha512,
}

impl Hash {
    fn hmac(self) -> hmac::Algorithm {
        match self {
            Hash::Sha256 => hmac::HMAC_SHA256,
            Hash::Sha512 => hmac::HMAC_SHA512,
        }
    }
    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            Hash::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            Hash::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }
    fn digest(self, data: &[u8]) -> Vec<u8> {
        let alg = match self {
            Hash::Sha256 => &ring::digest::SHA256,
            Hash::Sha512 => &ring::digest::SHA512,
        };
        ring::digest::digest(alg, data).as_ref().to_vec()
    }
    fn len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha512 => 64,
        }
    }
}

/// Fewer iterations than this is a server trying to make the password cheap to
/// guess; Kafka's own minimum is 4096.
const MIN_ITERATIONS: u32 = 4096;
/// More than this would hold the sink for minutes.
const MAX_ITERATIONS: u32 = 1_000_000;

/// A SCRAM exchange in progress.
pub struct Scram {
    hash: Hash,
    password: String,
    client_first_bare: String,
    nonce: String,
    server_signature: Option<Vec<u8>>,
}

impl Scram {
    /// Starts an exchange: the client-first message to send.
    pub fn start(hash: Hash, user: &str, password: &str, nonce: &str) -> (Scram, Vec<u8>) {
        let user = user.replace('=', "=3D").replace(',', "=2C");
        let bare = format!("n={user},r={nonce}");
        let first = format!("n,,{bare}").into_bytes();
        (
            Scram {
                hash,
                password: password.to_string(),
                client_first_bare: bare,
                nonce: nonce.to_string(),
                server_signature: None,
            },
            first,
        )
    }

    /// Reads server-first, gives client-final.
    pub fn answer(&mut self, server_first: &[u8]) -> Result<Vec<u8>, String> {
        let text = std::str::from_utf8(server_first).map_err(|_| "server-first is not UTF-8")?;
        let attr = |k: &str| {
            text.split(',')
                .find_map(|p| p.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
        };
        if let Some(e) = attr("e") {
            return Err(format!("server refused: {e}"));
        }
        let nonce = attr("r").ok_or("server-first without a nonce")?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err("server nonce does not extend ours".into());
        }
        let salt = B64
            .decode(attr("s").ok_or("server-first without a salt")?)
            .map_err(|_| "salt is not base64")?;
        let iterations: u32 = attr("i")
            .and_then(|i| i.parse().ok())
            .ok_or("server-first without an iteration count")?;
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(format!(
                "iteration count {iterations} outside {MIN_ITERATIONS}..={MAX_ITERATIONS}"
            ));
        }
        let mut salted = vec![0u8; self.hash.len()];
        pbkdf2::derive(
            self.hash.pbkdf2(),
            std::num::NonZeroU32::new(iterations).expect("checked above"),
            &salt,
            self.password.as_bytes(),
            &mut salted,
        );
        let key = hmac::Key::new(self.hash.hmac(), &salted);
        let client_key = hmac::sign(&key, b"Client Key");
        let stored_key = self.hash.digest(client_key.as_ref());
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{text},{without_proof}", self.client_first_bare);
        let client_sig = hmac::sign(
            &hmac::Key::new(self.hash.hmac(), &stored_key),
            auth_message.as_bytes(),
        );
        let proof: Vec<u8> = client_key
            .as_ref()
            .iter()
            .zip(client_sig.as_ref())
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = hmac::sign(&key, b"Server Key");
        self.server_signature = Some(
            hmac::sign(
                &hmac::Key::new(self.hash.hmac(), server_key.as_ref()),
                auth_message.as_bytes(),
            )
            .as_ref()
            .to_vec(),
        );
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks server-final: the server proved it knows the password too.
    pub fn finish(&self, server_final: &[u8]) -> Result<(), String> {
        let text = std::str::from_utf8(server_final).map_err(|_| "server-final is not UTF-8")?;
        if let Some(e) = text.strip_prefix("e=") {
            return Err(format!("server refused: {e}"));
        }
        let v = text
            .split(',')
            .find_map(|p| p.strip_prefix("v="))
            .ok_or("server-final without a signature")?;
        let got = B64
            .decode(v)
            .map_err(|_| "server signature is not base64")?;
        match &self.server_signature {
            Some(want) if *want == got => Ok(()),
            _ => Err("the server's signature does not match: not the broker we know".into()),
        }
    }
}

/// A fresh client nonce: 24 random bytes, base64.
pub fn nonce() -> String {
    B64.encode(uuid::Uuid::new_v4().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7677_sha256_example() {
        let (mut s, first) = Scram::start(Hash::Sha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(first, b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let fin = s
            .answer(b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
            .unwrap();
        assert_eq!(
            String::from_utf8(fin).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        s.finish(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
        assert!(
            s.finish(b"v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
                .is_err()
        );
    }

    #[test]
    fn a_server_that_does_not_extend_our_nonce_or_cheapens_the_hash_is_refused() {
        let (mut s, _) = Scram::start(Hash::Sha512, "u", "p", "abc");
        assert!(s.answer(b"r=xyz1,s=AAAA,i=4096").is_err());
        assert!(s.answer(b"r=abcd,s=AAAA,i=1").is_err());
        assert!(s.answer(b"e=invalid-proof").is_err());
        assert!(s.answer(b"r=abcd,s=AAAA,i=4096").is_ok());
    }

    #[test]
    fn names_are_escaped() {
        let (_, first) = Scram::start(Hash::Sha256, "a=b,c", "p", "n");
        assert_eq!(first, b"n,,n=a=3Db=2Cc,r=n");
    }
}
