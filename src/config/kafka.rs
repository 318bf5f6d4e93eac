//! A `type = "kafka"` sink's table: brokers, topic, key, compression, acks,
//! idempotence, `message_max_bytes`, TLS (`tls.*`) and SASL (`sasl.*`, the password
//! from a file or the environment), validated with every error reported at once.

use super::daemon::{
    Errors, KAFKA_MESSAGE_MAX_BYTES, KafkaConfig, KafkaKey, KafkaSasl, RawSink, SaslMechanism,
    Secret, read_secret_file,
};
use super::expand_home;
use std::time::Duration;

/// The most `message_max_bytes` may be (Kafka's own upper bound on a request is far
/// above; a larger batch would only hold more memory here).
const MESSAGE_MAX_LIMIT: usize = 64 << 20;

pub(super) fn kafka_config(at: &str, s: &RawSink, e: &mut Errors<'_>) -> KafkaConfig {
    let brokers = brokers(at, s.brokers.as_deref(), e);
    let topic = s.topic.clone().unwrap_or_default();
    if !valid_topic(&topic) {
        e.push(format!(
            "{at}.topic: a topic name of 1 to 249 characters from a-z, A-Z, 0-9, '.', '_', '-' (found {topic:?})"
        ));
    }
    let key = match s.key.as_deref() {
        None | Some("stream") => KafkaKey::Stream,
        Some("id") => KafkaKey::Id,
        Some("none") => KafkaKey::None,
        Some(other) => {
            e.push(format!(
                "{at}.key: expected \"stream\", \"id\" or \"none\", found {other:?}"
            ));
            KafkaKey::Stream
        }
    };
    let codec = match s.compression.as_deref() {
        None => Codec::None,
        Some(c) => Codec::parse(c).unwrap_or_else(|| {
            e.push(format!(
                "{at}.compression: expected \"none\", \"gzip\", \"lz4\" or \"zstd\", found {c:?}"
            ));
            Codec::None
        }),
    };
    let acks = match s.acks.as_deref() {
        None | Some("all") | Some("-1") => -1,
        Some("1") | Some("leader") => 1,
        Some("0") | Some("none") => {
            e.push(format!(
                "{at}.acks: \"0\" gives no acknowledgement, and a batch is shipped only once the broker acknowledged it; use \"all\" (or \"1\")"
            ));
            -1
        }
        Some(other) => {
            e.push(format!(
                "{at}.acks: expected \"all\" or \"1\", found {other:?}"
            ));
            -1
        }
    };
    let idempotence = s.idempotence.unwrap_or(true);
    if idempotence && acks != -1 {
        e.push(format!(
            "{at}.acks: an idempotent producer needs acks = \"all\"; set idempotence = false to use acks = \"1\""
        ));
    }
    let message_max_bytes = s.message_max_bytes.unwrap_or(KAFKA_MESSAGE_MAX_BYTES);
    if !(1024..=MESSAGE_MAX_LIMIT).contains(&message_max_bytes) {
        e.push(format!(
            "{at}.message_max_bytes: between 1024 and {MESSAGE_MAX_LIMIT}"
        ));
    }
    if s.format.is_some() {
        e.push(format!(
            "{at}.format: a kafka sink sends each shipped record as one record's value (JSON)"
        ));
    }
    let tls = tls(at, s, e);
    if tls.is_none() && s.allow_plaintext != Some(true) {
        for (host, _) in &brokers {
            if !is_loopback(host) {
                e.push(format!(
                    "{at}.brokers: plain TCP to {host}, which is not a loopback address: records and credentials would cross the network unencrypted; set tls.enabled = true (or a tls.* file), or set allow_plaintext = true to accept that"
                ));
            }
        }
    }
    KafkaConfig {
        brokers,
        topic,
        key,
        codec,
        acks,
        idempotence,
        message_max_bytes,
        tls,
        sasl: sasl(at, s, e),
        connect_timeout: e.duration(
            &format!("{at}.connect_timeout"),
            s.connect_timeout.as_deref(),
            Duration::from_secs(10),
        ),
        request_timeout: e.duration(
            &format!("{at}.request_timeout"),
            s.request_timeout.as_deref(),
            Duration::from_secs(30),
        ),
    }
}

fn brokers(at: &str, list: Option<&[String]>, e: &mut Errors<'_>) -> Vec<(String, u16)> {
    let Some(list) = list.filter(|l| !l.is_empty()) else {
        e.push(format!(
            "{at}.brokers: a kafka sink needs brokers = [\"host:port\", ...]"
        ));
        return Vec::new();
    };
    let mut out = Vec::new();
    for b in list {
        match split_host_port(b) {
            Some(hp) => out.push(hp),
            None => e.push(format!(
                "{at}.brokers: expected \"host:port\" (an IPv6 address in brackets), found {b:?}"
            )),
        }
    }
    out
}

/// `host:port` or `[v6]:port`.
pub(crate) fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let host = match host.strip_prefix('[') {
        Some(h) => h.strip_suffix(']')?,
        None if host.contains(':') => return None,
        None => host,
    };
    let port: u16 = port.parse().ok().filter(|p| *p > 0)?;
    (!host.is_empty() && !host.contains(['/', '@', ' '])).then(|| (host.to_string(), port))
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn valid_topic(t: &str) -> bool {
    (1..=249).contains(&t.len())
        && t != "."
        && t != ".."
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// TLS when `tls.enabled = true` or any `tls.*` file or name is set (and
/// `tls.enabled` is not `false`).
fn tls(at: &str, s: &RawSink, e: &mut Errors<'_>) -> Option<crate::tls::TlsSettings> {
    let t = &s.tls;
    let any = t.ca_file.is_some()
        || t.client_cert_file.is_some()
        || t.client_key_file.is_some()
        || t.server_name.is_some();
    match t.enabled {
        Some(false) if any => {
            e.push(format!(
                "{at}.tls.enabled: false, but other tls.* settings are given"
            ));
            return None;
        }
        Some(false) => return None,
        None if !any => return None,
        _ => {}
    }
    match crate::tls::TlsSettings::load(
        t.ca_file.as_deref().map(expand_home).as_deref(),
        t.client_cert_file.as_deref().map(expand_home).as_deref(),
        t.client_key_file.as_deref().map(expand_home).as_deref(),
        t.server_name.as_deref(),
    ) {
        Ok(t) => Some(t),
        Err(err) => {
            e.push(format!("{at}.tls: {err}"));
            Some(Default::default())
        }
    }
}

fn sasl(at: &str, s: &RawSink, e: &mut Errors<'_>) -> Option<KafkaSasl> {
    let r = s.sasl.as_ref()?;
    let mechanism = match r.mechanism.as_deref() {
        Some("PLAIN") => SaslMechanism::Plain,
        Some("SCRAM-SHA-256") => SaslMechanism::ScramSha256,
        Some("SCRAM-SHA-512") => SaslMechanism::ScramSha512,
        other => {
            e.push(format!(
                "{at}.sasl.mechanism: expected \"PLAIN\", \"SCRAM-SHA-256\" or \"SCRAM-SHA-512\", found {other:?}"
            ));
            SaslMechanism::Plain
        }
    };
    let username = r.username.clone().unwrap_or_default();
    if username.is_empty() {
        e.push(format!("{at}.sasl.username: required with sasl"));
    }
    let password = match (&r.password_file, &r.password_env) {
        (Some(f), None) => read_secret_file(f).map_err(|err| ("password_file", err)),
        (None, Some(var)) => match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => Ok(Secret::new(v.trim())),
            Ok(_) => Err(("password_env", format!("{var} is empty"))),
            Err(_) => Err(("password_env", format!("{var} is not set"))),
        },
        (Some(_), Some(_)) => Err((
            "password_env",
            "set password_file or password_env, not both".to_string(),
        )),
        (None, None) => Err((
            "password_file",
            "required with sasl (or password_env)".to_string(),
        )),
    };
    let password = password.unwrap_or_else(|(key, err)| {
        e.push(format!("{at}.sasl.{key}: {err}"));
        Secret::new("")
    });
    Some(KafkaSasl {
        mechanism,
        username,
        password,
    })
}

/// The compression codec of a batch (attributes bits 0–2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    None,
    Gzip,
    Lz4,
    Zstd,
}

impl Codec {
    pub fn parse(s: &str) -> Option<Codec> {
        Some(match s {
            "none" => Codec::None,
            "gzip" => Codec::Gzip,
            "lz4" => Codec::Lz4,
            "zstd" => Codec::Zstd,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Gzip => "gzip",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }
}

/// The brokers reached over plain TCP that are not on this machine (what
/// `allow_plaintext` allowed).
pub fn plaintext_brokers(k: &KafkaConfig) -> Vec<&str> {
    if k.tls.is_some() {
        return Vec::new();
    }
    k.brokers
        .iter()
        .map(|(h, _)| h.as_str())
        .filter(|h| {
            !(h.eq_ignore_ascii_case("localhost")
                || h.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_addresses() {
        assert_eq!(split_host_port("k1:9092"), Some(("k1".into(), 9092)));
        assert_eq!(split_host_port("[::1]:9093"), Some(("::1".into(), 9093)));
        assert_eq!(split_host_port("k1"), None);
        assert_eq!(split_host_port("::1:9092"), None);
        assert_eq!(split_host_port("k1:0"), None);
        assert_eq!(split_host_port("u@k1:1"), None);
    }

    #[test]
    fn topic_names() {
        assert!(valid_topic("audit.events_v1-x"));
        assert!(!valid_topic(""));
        assert!(!valid_topic(".."));
        assert!(!valid_topic("a b"));
        assert!(!valid_topic(&"a".repeat(250)));
    }
}
