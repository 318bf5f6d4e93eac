//! HTTP clients of the daemon: one per sink and one for the archive's S3 upload, each
//! built from its `NetConfig` (TLS from [`crate::tls`], proxy, timeouts, redirects
//! never followed), and transport errors in words that never quote a URL's query or
//! a header.

use crate::config::daemon::NetConfig;
use crate::tls::{cleartext_exposure, without_credentials};

/// The HTTP client of one sink (`sink` its name; `None` for the archive's S3
/// client): its own TLS configuration and proxy, redirects never followed (a 302 to
/// a login page would turn a POST into a GET whose 200 would count as delivery).
/// Without a `proxy` setting, `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` from the
/// environment apply to `https://` endpoints; a plain `http://` endpoint is always
/// reached directly (or through its configured proxy), so a variable cannot carry
/// its requests off the machine unencrypted. What the settings send unencrypted
/// (allowed by `allow_plaintext = true`, or validation would have refused it) is
/// logged as a warning each time a client is built: at every start and reload.
pub fn http_client(net: &NetConfig) -> Result<reqwest::Client, String> {
    client_for(None, net)
}

/// [`http_client`] for the sink named `sink`.
pub fn sink_client(sink: &str, net: &NetConfig) -> Result<reqwest::Client, String> {
    client_for(Some(sink), net)
}

fn client_for(sink: Option<&str>, net: &NetConfig) -> Result<reqwest::Client, String> {
    for (setting, risk) in cleartext_exposure(&net.endpoint, net.proxy.as_deref()) {
        match sink {
            Some(sink) => {
                tracing::warn!(sink = %sink, setting, risk = %risk, "allow_plaintext = true: this sink sends data unencrypted over the network")
            }
            None => {
                tracing::warn!(endpoint = %without_credentials(&net.endpoint), setting, risk = %risk, "allow_plaintext = true: this client sends data unencrypted over the network")
            }
        }
    }
    let https = net.endpoint.starts_with("https://")
        || net
            .proxy
            .as_deref()
            .is_some_and(|p| p.starts_with("https://"));
    let tls = net.tls.client_config(https, &[b"h2", b"http/1.1"])?;
    let mut b = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("auditship/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(net.connect_timeout)
        .pool_idle_timeout(std::time::Duration::from_secs(50));
    if let Some(p) = &net.proxy {
        // reqwest's words for a bad proxy URL could quote it, credentials included.
        let proxy = reqwest::Proxy::all(p)
            .map_err(|_| format!("proxy {}: not a usable proxy URL", without_credentials(p)))?
            .no_proxy(reqwest::NoProxy::from_env());
        b = b.proxy(proxy);
    } else if net.endpoint.starts_with("http://") {
        b = b.no_proxy();
    }
    b.build().map_err(|e| e.to_string())
}

/// A transport error in words, without the URL's query or anything from headers.
pub fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_request() {
        "request failed"
    } else {
        "transport error"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}
