//! TLS for every network client (sinks, the archive's S3 upload): rustls, always
//! verifying the server; and the rule for what may go unencrypted
//! ([`cleartext_exposure`]).
//!
//! Trust: the system's roots by default; with `tls.ca_file`, only the CAs in that
//! file (a private PKI is pinned, not added to the public ones). `tls.client_cert_file`
//! and `tls.client_key_file` present a client certificate (mTLS). `tls.server_name`
//! verifies the server's certificate against that name instead of the endpoint's
//! host (for endpoints given by IP address or through a load balancer's name).
//! There is no setting that turns verification off.

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// TLS material of one sink, read and parsed when the configuration is loaded.
#[derive(Clone, Default)]
pub struct TlsSettings {
    /// CA certificates from `tls.ca_file`; `None` means the system's roots.
    ca: Option<Arc<Vec<CertificateDer<'static>>>>,
    /// Client certificate chain and key.
    client: Option<Arc<ClientIdentity>>,
    server_name: Option<ServerName<'static>>,
    /// The file names, for `check-config`.
    pub ca_file: Option<String>,
    pub client_cert_file: Option<String>,
    pub server_name_text: Option<String>,
}

struct ClientIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("ca_file", &self.ca_file)
            .field("client_cert_file", &self.client_cert_file)
            .field("client_key", &self.client.as_ref().map(|_| "***"))
            .field("server_name", &self.server_name_text)
            .finish()
    }
}

impl TlsSettings {
    /// Reads and checks the files named by a sink's `tls` table.
    pub fn load(
        ca_file: Option<&Path>,
        client_cert_file: Option<&Path>,
        client_key_file: Option<&Path>,
        server_name: Option<&str>,
    ) -> Result<TlsSettings, String> {
        let mut t = TlsSettings::default();
        if let Some(f) = ca_file {
            let certs = read_certs(f)?;
            // Each must parse as a trust anchor.
            let mut store = RootCertStore::empty();
            for c in &certs {
                store
                    .add(c.clone())
                    .map_err(|e| format!("ca_file {}: {e}", f.display()))?;
            }
            t.ca = Some(Arc::new(certs));
            t.ca_file = Some(f.display().to_string());
        }
        match (client_cert_file, client_key_file) {
            (None, None) => {}
            (Some(c), Some(k)) => {
                let chain = read_certs(c)?;
                let key = PrivateKeyDer::from_pem_file(k).map_err(|e| {
                    format!("client_key_file {}: no PEM private key: {e}", k.display())
                })?;
                t.client = Some(Arc::new(ClientIdentity { chain, key }));
                t.client_cert_file = Some(c.display().to_string());
            }
            _ => return Err("client_cert_file and client_key_file go together".into()),
        }
        if let Some(n) = server_name {
            let name = ServerName::try_from(n.to_string())
                .map_err(|_| format!("server_name {n:?} is not a DNS name or IP address"))?;
            t.server_name = Some(name);
            t.server_name_text = Some(n.to_string());
        }
        Ok(t)
    }

    /// The name to verify the server's certificate against, if configured.
    pub fn server_name(&self) -> Option<&ServerName<'static>> {
        self.server_name.as_ref()
    }

    /// A client configuration: the configured CA (or, when `system_roots`, the
    /// system's roots), the client certificate if any, ALPN `alpn`.
    pub fn client_config(
        &self,
        system_roots: bool,
        alpn: &[&[u8]],
    ) -> Result<rustls::ClientConfig, String> {
        let roots = match &self.ca {
            Some(certs) => {
                let mut store = RootCertStore::empty();
                for c in certs.iter() {
                    store.add(c.clone()).map_err(|e| e.to_string())?;
                }
                Arc::new(store)
            }
            None if system_roots => system_roots_store()?,
            None => Arc::new(RootCertStore::empty()),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = match &self.server_name {
            None => builder.with_root_certificates(roots),
            Some(name) => {
                let inner = WebPkiServerVerifier::builder_with_provider(roots, provider)
                    .build()
                    .map_err(|e| e.to_string())?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(FixedName {
                        inner,
                        name: name.clone(),
                    }))
            }
        };
        let mut config = match &self.client {
            None => builder.with_no_client_auth(),
            Some(id) => builder
                .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
                .map_err(|e| format!("client certificate: {e}"))?,
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }
}

fn read_certs(f: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(f)
        .map_err(|e| format!("{}: {e}", f.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", f.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", f.display()));
    }
    Ok(certs)
}

/// The system's trust roots, read once.
fn system_roots_store() -> Result<Arc<RootCertStore>, String> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut store = RootCertStore::empty();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(
                    "no system trust roots found (install ca-certificates, or set tls.ca_file)"
                        .into(),
                );
            }
            Ok(Arc::new(store))
        })
        .clone()
}

/// Verifies the chain with webpki, against a configured name instead of the host
/// the connection was made to. Everything else is the standard verification.
#[derive(Debug)]
struct FixedName {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for FixedName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// True for a host that names this machine: `localhost`, 127.0.0.0/8 and `::1`
/// (also as an IPv4-mapped address).
fn is_loopback(url: &reqwest::Url) -> bool {
    use std::net::IpAddr;
    // The URL parser has already normalised IPv4 forms (`2130706433`, `0x7f.1`).
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => a.is_loopback(),
        Ok(IpAddr::V6(a)) => {
            a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => host.trim_end_matches('.').eq_ignore_ascii_case("localhost"),
    }
}

/// What a client with these settings would send unencrypted to another machine, in
/// words, by the setting responsible (`"endpoint"` or `"proxy"`); empty when nothing.
///
/// - an `http://` endpoint whose host is not loopback: every request, tokens and
///   passwords included;
/// - an `http://` endpoint reached through a proxy that is not on loopback: the same,
///   as far as the proxy;
/// - an `http://` proxy URL with credentials, on a host that is not loopback: the
///   proxy's user and password (Basic, in every CONNECT or forwarded request).
///
/// An `https://` endpoint through an `http://` proxy without credentials exposes
/// nothing the TLS handshake does not (the `CONNECT host:port` line). Values that do
/// not parse as URLs are reported by validation, not here. Nothing returned quotes a
/// URL's credentials.
pub fn cleartext_exposure(endpoint: &str, proxy: Option<&str>) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let endpoint = reqwest::Url::parse(endpoint).ok();
    let proxy = proxy.and_then(|p| reqwest::Url::parse(p).ok());
    let host = |u: &reqwest::Url| u.host_str().unwrap_or("").to_string();
    if let Some(e) = endpoint.as_ref().filter(|e| e.scheme() == "http") {
        if !is_loopback(e) {
            out.push((
                "endpoint",
                format!(
                    "plain http:// to {}, which is not a loopback address: records and credentials would cross the network unencrypted",
                    host(e)
                ),
            ));
        } else if let Some(p) = proxy.as_ref().filter(|p| !is_loopback(p)) {
            out.push((
                "proxy",
                format!(
                    "the plain http:// endpoint is reached through the proxy {}, which is not a loopback address: records and credentials would cross the network unencrypted",
                    host(p)
                ),
            ));
        }
    }
    if let Some(p) = proxy
        .as_ref()
        .filter(|p| p.scheme() == "http" && (!p.username().is_empty() || p.password().is_some()))
        && !is_loopback(p)
    {
        out.push((
            "proxy",
            format!(
                "the proxy's credentials would cross the network unencrypted to {}, which is not a loopback address (a plain http:// proxy URL)",
                host(p)
            ),
        ));
    }
    out
}

/// A URL with its user and password replaced by `***`, for output and logs.
pub fn without_credentials(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("***");
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(_) => url.to_string(),
        // Unparsable: cut everything up to an `@` in the authority.
        Err(_) => match url.split_once("://") {
            Some((scheme, rest)) => {
                let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
                match rest[..authority_end].rfind('@') {
                    Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
                    None => url.to_string(),
                }
            }
            None => url.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_may_not_leave_this_machine() {
        let exposed = |e: &str, p: Option<&str>| -> Vec<&'static str> {
            cleartext_exposure(e, p)
                .into_iter()
                .map(|(k, _)| k)
                .collect()
        };
        for local in [
            "http://127.0.0.1:8088",
            "http://127.8.9.10/x",
            "http://localhost:9200",
            "http://LOCALHOST./",
            "http://[::1]:4318",
            "http://[::ffff:127.0.0.1]/",
            "http://2130706433/",
        ] {
            assert!(exposed(local, None).is_empty(), "{local}");
        }
        for remote in [
            "http://10.1.2.3",
            "http://siem.example.com:8088",
            "http://localhost.example.com",
            "http://[::2]/",
            "http://0x0a.1.2.3/",
        ] {
            assert_eq!(exposed(remote, None), ["endpoint"], "{remote}");
        }
        assert!(exposed("https://siem.example.com", None).is_empty());
        // A plain endpoint is only as local as the proxy it goes through.
        assert_eq!(
            exposed("http://127.0.0.1", Some("http://proxy.example.com:3128")),
            ["proxy"]
        );
        assert!(exposed("http://127.0.0.1", Some("http://127.0.0.1:3128")).is_empty());
        // Proxy credentials in clear: only to a remote plain-http proxy.
        assert_eq!(
            exposed(
                "https://siem.example.com",
                Some("http://u:p@proxy.example.com:3128")
            ),
            ["proxy"]
        );
        assert!(
            exposed(
                "https://siem.example.com",
                Some("http://proxy.example.com:3128")
            )
            .is_empty()
        );
        assert!(
            exposed(
                "https://siem.example.com",
                Some("https://u:p@proxy.example.com")
            )
            .is_empty()
        );
        assert!(
            exposed(
                "https://siem.example.com",
                Some("http://u:p@127.0.0.1:3128")
            )
            .is_empty()
        );
        for (_, risk) in
            cleartext_exposure("https://x", Some("http://user:hunter2@proxy.example.com"))
        {
            assert!(
                !risk.contains("hunter2") && !risk.contains("user"),
                "{risk}"
            );
        }
    }

    #[test]
    fn credentials_are_cut_from_urls() {
        assert_eq!(
            without_credentials("http://user:hunter2@proxy.example.com:3128"),
            "http://***:***@proxy.example.com:3128/"
        );
        assert_eq!(
            without_credentials("http://proxy.example.com:3128"),
            "http://proxy.example.com:3128"
        );
        assert_eq!(
            without_credentials("http://us er:pw@[bad"),
            "http://***@[bad"
        );
        assert_eq!(without_credentials("no url"), "no url");
    }
}
