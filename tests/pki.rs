//! A throwaway PKI for the TLS tests: a CA, a server certificate for `localhost`,
//! `audit.test` and 127.0.0.1, and a client certificate for mutual TLS, written as PEM
//! files (keys 0600) for the daemon's config and kept as DER for the test servers.
//! `Pki::other_ca` makes a second, unrelated PKI for "wrong CA" tests.
//!
//! Keys are ECDSA P-256 (rcgen's default), which rustls and GnuTLS (rsyslog) both take.
//! Also here: rustls client and server configs built from a `Pki`, with the ring
//! provider passed explicitly so no process-wide default provider is installed.

#![allow(dead_code)]

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The names the server certificate is valid for.
pub const SERVER_NAMES: [&str; 3] = ["localhost", "audit.test", "127.0.0.1"];

pub struct Pki {
    /// The CA certificate (PEM): what a client trusts (`tls.ca_file`).
    pub ca_file: PathBuf,
    /// The server's leaf certificate (PEM), signed by the CA.
    pub server_cert: PathBuf,
    /// The server's private key (PKCS#8 PEM, mode 0600).
    pub server_key: PathBuf,
    /// The client's certificate (PEM, clientAuth EKU), signed by the CA.
    pub client_cert: PathBuf,
    /// The client's private key (PKCS#8 PEM, mode 0600).
    pub client_key: PathBuf,
    pub ca_der: CertificateDer<'static>,
    pub server_cert_der: CertificateDer<'static>,
    pub server_key_der: Vec<u8>,
    pub client_cert_der: CertificateDer<'static>,
    pub client_key_der: Vec<u8>,
}

impl Pki {
    /// A CA with a server and a client certificate, as `ca.pem`, `server.pem`,
    /// `server.key`, `client.pem` and `client.key` in `dir`.
    pub fn generate(dir: &Path) -> Pki {
        Self::build(dir, "", "auditship test CA")
    }

    /// A second PKI, unrelated to the one from `generate` (its own CA, server and
    /// client certificates, files prefixed `other-`): trusting its `ca_file` must not
    /// let a client accept the first PKI's server, and its client certificate must not
    /// get past a server that trusts the first CA.
    pub fn other_ca(dir: &Path) -> Pki {
        Self::build(dir, "other-", "auditship unrelated CA")
    }

    /// The server's private key for rustls.
    pub fn server_key(&self) -> PrivateKeyDer<'static> {
        PrivatePkcs8KeyDer::from(self.server_key_der.clone()).into()
    }

    /// The client's private key for rustls.
    pub fn client_key(&self) -> PrivateKeyDer<'static> {
        PrivatePkcs8KeyDer::from(self.client_key_der.clone()).into()
    }

    /// A rustls server config presenting the server certificate. With
    /// `require_client_cert`, clients must present a certificate signed by this CA.
    pub fn server_config(&self, require_client_cert: bool) -> rustls::ServerConfig {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if require_client_cert {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(std::slice::from_ref(&self.ca_der))),
                provider(),
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        builder
            .with_single_cert(vec![self.server_cert_der.clone()], self.server_key())
            .unwrap()
    }

    /// A rustls client config trusting this PKI's CA, presenting the client
    /// certificate when `with_client_cert`.
    pub fn client_config(&self, with_client_cert: bool) -> Arc<rustls::ClientConfig> {
        let client = with_client_cert.then(|| (self.client_cert_der.clone(), self.client_key()));
        client_config_for(std::slice::from_ref(&self.ca_der), client)
    }
}

/// A rustls client config trusting the CA certificates in the PEM file `ca_file`.
pub fn client_config_trusting(ca_file: &Path) -> Arc<rustls::ClientConfig> {
    let cas: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca_file)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    client_config_for(&cas, None)
}

/// A rustls client config trusting `cas`, presenting `client` (certificate, key).
pub fn client_config_for(
    cas: &[CertificateDer<'static>],
    client: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
) -> Arc<rustls::ClientConfig> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(cas));
    let config = match client {
        Some((cert, key)) => builder.with_client_auth_cert(vec![cert], key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(cas: &[CertificateDer<'static>]) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        roots.add(ca.clone()).unwrap();
    }
    roots
}

impl Pki {
    fn build(dir: &Path, prefix: &str, ca_name: &str) -> Pki {
        std::fs::create_dir_all(dir).unwrap();

        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, ca_name);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);

        // A string that parses as an IP address becomes an IP SAN, the rest DNS SANs.
        let mut server_params =
            CertificateParams::new(SERVER_NAMES.map(String::from).to_vec()).unwrap();
        server_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        server_params.use_authority_key_identifier_extension = true;
        server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate().unwrap();
        let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();

        let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        client_params
            .distinguished_name
            .push(DnType::CommonName, "auditship test client");
        client_params.use_authority_key_identifier_extension = true;
        client_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_key = KeyPair::generate().unwrap();
        let client_cert = client_params.signed_by(&client_key, &issuer).unwrap();

        let path = |name: &str| dir.join(format!("{prefix}{name}"));
        let pki = Pki {
            ca_file: path("ca.pem"),
            server_cert: path("server.pem"),
            server_key: path("server.key"),
            client_cert: path("client.pem"),
            client_key: path("client.key"),
            ca_der: ca_cert.der().clone(),
            server_cert_der: server_cert.der().clone(),
            server_key_der: server_key.serialize_der(),
            client_cert_der: client_cert.der().clone(),
            client_key_der: client_key.serialize_der(),
        };
        write_file(&pki.ca_file, &ca_cert.pem(), 0o644);
        write_file(&pki.server_cert, &server_cert.pem(), 0o644);
        write_file(&pki.server_key, &server_key.serialize_pem(), 0o600);
        write_file(&pki.client_cert, &client_cert.pem(), 0o644);
        write_file(&pki.client_key, &client_key.serialize_pem(), 0o600);
        pki
    }
}

/// Creates (or replaces) `path` with `mode` from the first byte on: a key is never
/// readable by others, not even briefly.
fn write_file(path: &Path, text: &str, mode: u32) {
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

#[test]
fn pki_files_are_pem_keys_private_and_the_chain_verifies() {
    use std::os::unix::fs::PermissionsExt;
    let dir = crate::util::tempdir();
    let pki = Pki::generate(dir.path());
    let other = Pki::other_ca(dir.path());

    for key in [&pki.server_key, &pki.client_key, &other.server_key] {
        let mode = std::fs::metadata(key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", key.display());
        let text = std::fs::read_to_string(key).unwrap();
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"), "{text}");
    }
    for cert in [&pki.ca_file, &pki.server_cert, &pki.client_cert] {
        let text = std::fs::read_to_string(cert).unwrap();
        assert!(text.starts_with("-----BEGIN CERTIFICATE-----"), "{text}");
    }
    // The PEM files hold the same certificates as the DER copies.
    let from_file = |p: &Path| CertificateDer::from_pem_file(p).unwrap();
    assert_eq!(from_file(&pki.ca_file), pki.ca_der);
    assert_eq!(from_file(&pki.server_cert), pki.server_cert_der);
    assert_ne!(from_file(&other.ca_file), pki.ca_der);

    // webpki accepts the server certificate for each of its names under our CA, and
    // for none of them under the unrelated CA; "wrong.test" is not among its names.
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{ServerName, UnixTime};
    let verifier = |ca: &Pki| {
        rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots(std::slice::from_ref(&ca.ca_der))),
            provider(),
        )
        .build()
        .unwrap()
    };
    let now = UnixTime::now();
    for name in SERVER_NAMES {
        let name = ServerName::try_from(name).unwrap();
        verifier(&pki)
            .verify_server_cert(&pki.server_cert_der, &[], &name, &[], now)
            .unwrap_or_else(|e| panic!("{name:?}: {e}"));
        assert!(
            verifier(&other)
                .verify_server_cert(&pki.server_cert_der, &[], &name, &[], now)
                .is_err()
        );
    }
    let wrong = ServerName::try_from("wrong.test").unwrap();
    assert!(
        verifier(&pki)
            .verify_server_cert(&pki.server_cert_der, &[], &wrong, &[], now)
            .is_err()
    );
}
