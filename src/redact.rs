//! TEMPORARY stand-in until the redaction module lands.
use std::borrow::Cow;
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatternConfig {
    pub name: String,
    pub regex: String,
}
pub struct Redactor {
    extra: Vec<(String, regex::Regex)>,
}
impl Redactor {
    pub fn new(extra: &[PatternConfig]) -> Result<Redactor, String> {
        let mut v = Vec::new();
        for p in extra {
            v.push((
                p.name.clone(),
                regex::Regex::new(&p.regex).map_err(|e| format!("{}: {e}", p.name))?,
            ));
        }
        Ok(Redactor { extra: v })
    }
    pub fn builtin() -> Redactor {
        Redactor { extra: vec![] }
    }
    pub fn redact_str<'a>(&self, s: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(s);
        for (n, r) in &self.extra {
            if r.is_match(&out) {
                out = Cow::Owned(
                    r.replace_all(&out, format!("[REDACTED:{n}]").as_str())
                        .into_owned(),
                );
            }
        }
        out
    }
    pub fn redact_json(&self, v: &mut serde_json::Value, path: &str, redacted: &mut Vec<String>) {
        match v {
            serde_json::Value::String(s) => {
                if let Cow::Owned(n) = self.redact_str(s) {
                    *s = n;
                    redacted.push(path.to_string());
                }
            }
            serde_json::Value::Array(a) => {
                for (i, x) in a.iter_mut().enumerate() {
                    self.redact_json(x, &format!("{path}[{i}]"), redacted)
                }
            }
            serde_json::Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    self.redact_json(x, &format!("{path}.{k}"), redacted)
                }
            }
            _ => {}
        }
    }
}
