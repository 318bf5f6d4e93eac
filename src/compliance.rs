//! Compliance tags: which frameworks (SOC2, ISO27001, GDPR, HIPAA, PCI-DSS, ...) an
//! event is evidence for, decided from its `resource` (a path, URL, command line or
//! tool name) by glob rules.
//!
//! Owns the rule table, configured or the built-in default, and its matching.
//!
//! Invariants:
//! - Pure: no IO. Rules are validated when built; `tags_for` has no error path.
//! - Matching is case-insensitive, and `*` and `?` match `/` too: a resource is one
//!   string, not a path to walk, so `*patient*` matches `/srv/app/patients/x.rs` and a
//!   command line that mentions it. `**` is as in globset (`**/x` also matches `x`).
//! - Tags come out as `always` first, then the tags of matching rules in rule order,
//!   each tag once.
//! - Building is cheap: globs of the form `lit`, `*lit`, `lit*` and `*lit*` with an
//!   ASCII literal are matched as substrings of the lowercased resource; only the rest
//!   go into one `GlobSet` (its regex compile and first match cost ~150 µs cold). Each
//!   of those carries a literal every match must contain, and the set is consulted
//!   only when a resource contains it. `new` compiles the set at once, so a bad rule
//!   fails there; `default_rules` (three such globs, tested) compiles it on first need.
//!
//! Not done here: looking at anything but the resource (action, content, who), and
//! checking tag names against a list of frameworks: tags are free text.

use std::sync::OnceLock;

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use serde::Deserialize;

/// One rule: if any of the `resource` globs matches, the event gets `tags`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub resource: Vec<String>,
    pub tags: Vec<String>,
}

/// The tags every event gets unless configured otherwise.
pub const DEFAULT_ALWAYS: [&str; 2] = ["SOC2", "ISO27001"];

/// The default rules, as globs and tags. Each is a reasoned choice, not a guess from
/// one word: `*health*` would tag every `/healthz` probe HIPAA, `*card*` every
/// `Card.tsx`, `*phi*` every `graphics/` directory, and `*user*` every file under
/// macOS's `/Users/`, so those are narrowed to forms that name the data.
const DEFAULT_RULES: [(&[&str], &str); 3] = [
    (
        &[
            "*personal*",
            "*customer*",
            "*user_data*",
            "*user-data*",
            "*userdata*",
            "*user_export*",
            "*user-export*",
            "*users_export*",
            "*users.csv",
            "*users.xlsx",
            "*users.json",
            "*users.sql",
            "*contacts*",
            "*employee*",
            "*gdpr*",
            "*pii*",
            "*.vcf",
        ],
        "GDPR",
    ),
    (
        &[
            "*patient*",
            "*medical*",
            "*clinical*",
            "*healthcare*",
            "*health_record*",
            "*health-record*",
            "*healthrecord*",
            "*health_data*",
            "*health-data*",
            "*healthdata*",
            "*hipaa*",
            "*hl7*",
            "*fhir*",
            "*dicom*",
            "*.dcm",
            // `phi` as a word: `/data/phi/`, `phi_export.csv`, not `graphics`. Four
            // globs rather than one `{…}`, so each carries the required literal "phi".
            "phi",
            "phi[!a-z]*",
            "*[!a-z]phi",
            "*[!a-z]phi[!a-z]*",
        ],
        "HIPAA",
    ),
    (
        &[
            "*payment*",
            "*billing*",
            "*stripe*",
            "*braintree*",
            "*adyen*",
            "*paypal*",
            "*cardholder*",
            "*credit_card*",
            "*credit-card*",
            "*creditcard*",
            "*card_number*",
            "*card-number*",
            "*cardnumber*",
            "*pci_dss*",
            "*pci-dss*",
            "*pcidss*",
        ],
        "PCI-DSS",
    ),
];

/// The default rules as configuration, for `check-config` to print or a config to extend.
pub fn builtin_rule_configs() -> Vec<RuleConfig> {
    DEFAULT_RULES
        .iter()
        .map(|(globs, tag)| RuleConfig {
            resource: globs.iter().map(|g| (*g).to_owned()).collect(),
            tags: vec![(*tag).to_owned()],
        })
        .collect()
}

/// Compiled rules: plain-literal globs as substring tests, the rest in one `GlobSet`.
#[derive(Debug, Clone)]
pub struct ComplianceRules {
    always: Vec<String>,
    /// Tags per rule, in rule order.
    rule_tags: Vec<Vec<String>>,
    literals: Vec<Literal>,
    /// The globs that need the regex engine, in `set` order.
    globs: Vec<RegexGlob>,
    set: OnceLock<GlobSet>,
}

#[derive(Debug, Clone)]
struct RegexGlob {
    glob: Glob,
    rule: usize,
    /// Lowercase; every match contains it (ASCII case-insensitively). `None`: unknown.
    required: Option<String>,
}

/// A glob that is an ASCII literal with optional `*` at either end.
#[derive(Debug, Clone)]
struct Literal {
    lowercase: String,
    anchor: Anchor,
    rule: usize,
}

#[derive(Debug, Clone, Copy)]
enum Anchor {
    Whole,
    Start,
    End,
    Anywhere,
}

impl ComplianceRules {
    /// `always`: tags every event gets (the config default is `DEFAULT_ALWAYS`);
    /// `rules`: glob rules. The error lists every problem; rules count from 1.
    pub fn new(always: &[String], rules: &[RuleConfig]) -> Result<Self, String> {
        let compiled = Self::compile(always, rules)?;
        let set = build_set(&compiled.globs).map_err(|e| format!("compliance rules: {e}"))?;
        compiled.set.set(set).expect("a new OnceLock is empty");
        Ok(compiled)
    }

    /// Validates the rules and splits their globs into literals and regex globs;
    /// leaves the `GlobSet` unbuilt.
    fn compile(always: &[String], rules: &[RuleConfig]) -> Result<Self, String> {
        let mut errors = Vec::new();
        for tag in always {
            check_tag(tag).unwrap_or_else(|e| errors.push(format!("compliance always: {e}")));
        }
        let mut literals = Vec::new();
        let mut globs = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            let n = i + 1;
            if rule.resource.is_empty() {
                errors.push(format!("compliance rule {n}: `resource` has no globs"));
            }
            if rule.tags.is_empty() {
                errors.push(format!("compliance rule {n}: `tags` is empty"));
            }
            for tag in &rule.tags {
                check_tag(tag).unwrap_or_else(|e| errors.push(format!("compliance rule {n}: {e}")));
            }
            for glob in &rule.resource {
                if let Some(literal) = Literal::parse(glob, i) {
                    literals.push(literal);
                    continue;
                }
                match GlobBuilder::new(glob)
                    .case_insensitive(true)
                    .literal_separator(false)
                    .build()
                {
                    Ok(g) => globs.push(RegexGlob {
                        glob: g,
                        rule: i,
                        required: required_literal(glob),
                    }),
                    Err(e) => errors.push(format!("compliance rule {n}: {e}")),
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors.join("; "));
        }
        Ok(ComplianceRules {
            always: dedup(always.iter()),
            rule_tags: rules.iter().map(|r| r.tags.clone()).collect(),
            literals,
            globs,
            set: OnceLock::new(),
        })
    }

    /// The built-in default: always SOC2 + ISO27001; GDPR for personal data
    /// (customers, users, employees, contacts, PII), HIPAA for health data (patients,
    /// medical and clinical records, PHI, HL7, FHIR, DICOM), PCI-DSS for payment data
    /// (payments, billing, card data, payment providers).
    pub fn default_rules() -> Self {
        let always = DEFAULT_ALWAYS.map(String::from);
        // Not `new`: the one regex glob is compiled only when a resource needs it.
        Self::compile(&always, &builtin_rule_configs()).expect("the default rules are valid")
    }

    /// Tags for a resource: `always` first, then rule tags in rule order, no duplicates.
    pub fn tags_for(&self, resource: &str) -> Vec<String> {
        let mut matched = vec![false; self.rule_tags.len()];
        let lowercase = resource.to_ascii_lowercase();
        for l in &self.literals {
            if !matched[l.rule] && l.matches(&lowercase) {
                matched[l.rule] = true;
            }
        }
        let may_match = |g: &RegexGlob| {
            !matched[g.rule]
                && g.required
                    .as_ref()
                    .is_none_or(|r| lowercase.contains(r.as_str()))
        };
        if self.globs.iter().any(may_match) {
            // `new` built it already; for `default_rules` it is built here, on first
            // need, and the tests prove the default globs compile.
            let set = self
                .set
                .get_or_init(|| build_set(&self.globs).expect("globs compile"));
            for i in set.matches(resource) {
                matched[self.globs[i].rule] = true;
            }
        }
        let mut tags = self.always.clone();
        for (rule_tags, _) in self.rule_tags.iter().zip(&matched).filter(|(_, m)| **m) {
            for tag in rule_tags {
                if !tags.contains(tag) {
                    tags.push(tag.clone());
                }
            }
        }
        tags
    }
}

impl Literal {
    fn parse(glob: &str, rule: usize) -> Option<Literal> {
        let (leading, rest) = glob.strip_prefix('*').map_or((false, glob), |r| (true, r));
        let (trailing, text) = rest.strip_suffix('*').map_or((false, rest), |r| (true, r));
        let special = ['*', '?', '[', ']', '{', '}', '\\'];
        if text.is_empty() || !text.is_ascii() || text.contains(special) {
            return None;
        }
        let anchor = match (leading, trailing) {
            (false, false) => Anchor::Whole,
            (false, true) => Anchor::Start,
            (true, false) => Anchor::End,
            (true, true) => Anchor::Anywhere,
        };
        Some(Literal {
            lowercase: text.to_ascii_lowercase(),
            anchor,
            rule,
        })
    }

    fn matches(&self, lowercase: &str) -> bool {
        let text = self.lowercase.as_str();
        match self.anchor {
            Anchor::Whole => lowercase == text,
            Anchor::Start => lowercase.starts_with(text),
            Anchor::End => lowercase.ends_with(text),
            Anchor::Anywhere => lowercase.contains(text),
        }
    }
}

fn build_set(globs: &[RegexGlob]) -> Result<GlobSet, globset::Error> {
    let mut set = GlobSetBuilder::new();
    for g in globs {
        set.add(g.glob.clone());
    }
    set.build()
}

/// The longest ASCII literal, lowercased, that every match of `glob` contains: a run
/// of plain characters outside wildcards, classes, alternations and escapes. `/` ends
/// a run too, since globset lets `**/` match nothing. Anything in doubt ends a run,
/// which can only make the literal shorter or absent, never wrong.
fn required_literal(glob: &str) -> Option<String> {
    let b = glob.as_bytes();
    let mut best = "";
    let mut start = 0;
    let mut i = 0;
    while i <= b.len() {
        let plain = b
            .get(i)
            .is_some_and(|&c| c.is_ascii() && !b"*?[]{}\\/".contains(&c));
        if plain {
            i += 1;
            continue;
        }
        if i - start > best.len() {
            best = &glob[start..i];
        }
        i = match b.get(i) {
            // Past `[`, an optional `!`, and the first member (which may be `]`).
            Some(b'[') => {
                let first = i + 1 + usize::from(b.get(i + 1) == Some(&b'!'));
                b[(first + 1).min(b.len())..]
                    .iter()
                    .position(|&c| c == b']')
                    .map_or(b.len(), |p| first + 1 + p)
                    + 1
            }
            // Past the last `}`: everything between may be alternatives.
            Some(b'{') => glob.rfind('}').map_or(b.len(), |p| p.max(i)) + 1,
            Some(b'\\') => i + 2,
            _ => i + 1,
        };
        start = i;
    }
    (!best.is_empty()).then(|| best.to_ascii_lowercase())
}

fn check_tag(tag: &str) -> Result<(), String> {
    if tag.is_empty() || tag.trim() != tag {
        Err(format!(
            "tag {tag:?} is empty or has surrounding white space"
        ))
    } else {
        Ok(())
    }
}

fn dedup<'a>(tags: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for tag in tags {
        if !out.contains(tag) {
            out.push(tag.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: [&str; 2] = ["SOC2", "ISO27001"];

    /// Each resource gets exactly the expected tags, in order.
    fn check(rules: &ComplianceRules, cases: &[(&str, &[&str])]) {
        for &(resource, want) in cases {
            assert_eq!(rules.tags_for(resource), want, "resource: {resource:?}");
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn rule(globs: &[&str], tags: &[&str]) -> RuleConfig {
        RuleConfig {
            resource: strings(globs),
            tags: strings(tags),
        }
    }

    #[test]
    fn default_rules() {
        let gdpr: &[&str] = &["SOC2", "ISO27001", "GDPR"];
        let hipaa: &[&str] = &["SOC2", "ISO27001", "HIPAA"];
        let pci: &[&str] = &["SOC2", "ISO27001", "PCI-DSS"];
        check(
            &ComplianceRules::default_rules(),
            &[
                ("/srv/app/patients/x.rs", hipaa),
                ("/srv/app/Patients/Intake.java", hipaa),
                ("cat /data/PHI/export-2026.csv | head", hipaa),
                ("phi_export.csv", hipaa),
                ("s3://lake/raw/phi", hipaa),
                ("https://fhir.example.org/Patient/123", hipaa),
                ("/opt/mirth/hl7/inbound/ADT_A01.hl7", hipaa),
                ("services/ehr-sync/src/health_records.rs", hipaa),
                ("echo ok\npsql -f load_medical.sql", hipaa),
                ("/home/alice/src/ui/graphics/render.rs", &BASE),
                ("curl -s localhost:8080/healthz", &BASE),
                (
                    "psql -c '\\copy customers to customers.csv csv header'",
                    gdpr,
                ),
                ("/srv/exports/users.csv", gdpr),
                ("/srv/app/src/user_data/mod.rs", gdpr),
                ("~/Downloads/address-book.vcf", gdpr),
                ("/srv/hr/employee_reviews.xlsx", gdpr),
                ("/Users/alice/src/app/main.rs", &BASE),
                ("/Users/alice/reports/q3.csv", &BASE),
                ("https://api.stripe.com/v1/charges", pci),
                ("src/billing/invoice.rs", pci),
                ("tests/fixtures/credit_card_numbers.txt", pci),
                ("src/components/Card.tsx", &BASE),
                ("sort -u discard.txt", &BASE),
                // Several rules: in rule order, not in order of appearance.
                (
                    "/srv/billing/patient_invoices.csv",
                    &["SOC2", "ISO27001", "HIPAA", "PCI-DSS"],
                ),
                (
                    "/srv/app/payments/customer_patient.csv",
                    &["SOC2", "ISO27001", "GDPR", "HIPAA", "PCI-DSS"],
                ),
                ("mcp__github__create_issue", &BASE),
                ("Read", &BASE),
                ("", &BASE),
            ],
        );
    }

    #[test]
    fn configured_rules_keep_order_and_drop_duplicates() {
        let rules = ComplianceRules::new(
            &strings(&["SOC2", "SOC2", "ISO27001"]),
            &[
                rule(&["**/secrets/**", "*.env"], &["SOC2", "SECRETS"]),
                rule(&["*/prod/*", "prod-*"], &["CHANGE-MGMT"]),
                rule(&["*.{pem,key}", "/etc/ssl/[a-z]*"], &["SECRETS", "CRYPTO"]),
                rule(&["Bash"], &["SHELL"]),
                rule(&["*prod*"], &["CHANGE-MGMT", "PROD"]),
            ],
        )
        .unwrap();
        check(
            &rules,
            &[
                ("/srv/app/.env", &["SOC2", "ISO27001", "SECRETS"]),
                ("/srv/app/secrets/db", &["SOC2", "ISO27001", "SECRETS"]),
                (
                    "/etc/ssl/private/server.KEY",
                    &["SOC2", "ISO27001", "SECRETS", "CRYPTO"],
                ),
                (
                    "/srv/app/.env.pem",
                    &["SOC2", "ISO27001", "SECRETS", "CRYPTO"],
                ),
                (
                    "/srv/prod/app.yaml",
                    &["SOC2", "ISO27001", "CHANGE-MGMT", "PROD"],
                ),
                (
                    "PROD-deploy.sh",
                    &["SOC2", "ISO27001", "CHANGE-MGMT", "PROD"],
                ),
                ("bash", &["SOC2", "ISO27001", "SHELL"]),
                ("bash -c ls", &["SOC2", "ISO27001"]),
                (
                    "/srv/product/x",
                    &["SOC2", "ISO27001", "CHANGE-MGMT", "PROD"],
                ),
                ("/srv/app/main.rs", &["SOC2", "ISO27001"]),
            ],
        );
        let none = ComplianceRules::new(&[], &[rule(&["*"], &["ALL"])]).unwrap();
        check(&none, &[("anything", &["ALL"]), ("", &["ALL"])]);
    }

    #[test]
    fn literal_fast_path_agrees_with_globset() {
        // The same globs through globset (a `?` or a class forces it) and through the
        // literal path must tag the same resources.
        let pairs = [
            ("*patient*", "*patien[t]*"),
            ("*.csv", "*.cs[v]"),
            ("report*", "repor[t]*"),
            ("read", "rea[d]"),
        ];
        let resources = [
            "/srv/app/PATIENTS/x.rs",
            "x\npatient",
            "a/b.CSV",
            "a.csv.gz",
            "Report-2026/summary",
            "my report",
            "READ",
            "reader",
            "",
        ];
        for (literal, glob) in pairs {
            let a = ComplianceRules::new(&[], &[rule(&[literal], &["T"])]).unwrap();
            let b = ComplianceRules::new(&[], &[rule(&[glob], &["T"])]).unwrap();
            assert_eq!(a.literals.len(), 1, "{literal} not on the literal path");
            assert_eq!(b.globs.len(), 1, "{glob} not in the glob set");
            for r in resources {
                assert_eq!(a.tags_for(r), b.tags_for(r), "{literal} vs {glob} on {r:?}");
            }
        }
    }

    #[test]
    fn invalid_rules_are_all_reported() {
        let err = ComplianceRules::new(
            &strings(&["SOC2", " "]),
            &[
                rule(&["*ok*"], &["OK"]),
                rule(&["src/[abc"], &["BAD"]),
                rule(&[], &["EMPTY"]),
                rule(&["*x*"], &[]),
            ],
        )
        .unwrap_err();
        for part in [
            "compliance always: tag \" \"",
            "compliance rule 2: error parsing glob 'src/[abc'",
            "compliance rule 3: `resource` has no globs",
            "compliance rule 4: `tags` is empty",
        ] {
            assert!(err.contains(part), "{part:?} not in {err}");
        }
        assert!(!err.contains("rule 1"), "{err}");
    }

    #[test]
    fn rule_config_rejects_unknown_fields() {
        let ok: RuleConfig = serde_json::from_str(r#"{"resource":["*a*"],"tags":["A"]}"#).unwrap();
        assert_eq!((ok.resource, ok.tags), (strings(&["*a*"]), strings(&["A"])));
        let bad = r#"{"resource":["*a*"],"tags":["A"],"tag":"B"}"#;
        assert!(serde_json::from_str::<RuleConfig>(bad).is_err());
    }

    #[test]
    fn default_rules_compile_the_regex_only_when_needed() {
        // Building must stay cheap: only the `phi` word globs need the regex engine,
        // and only a resource containing "phi" builds it.
        let rules = ComplianceRules::default_rules();
        assert_eq!(rules.globs.len(), 3);
        assert!(
            rules
                .globs
                .iter()
                .all(|g| g.required.as_deref() == Some("phi"))
        );
        assert_eq!(builtin_rule_configs().len(), rules.rule_tags.len());
        assert_eq!(rules.tags_for("/srv/app/graphics/patients.rs").len(), 3);
        assert!(rules.set.get().is_none());
        assert_eq!(rules.tags_for("/srv/Graphics/x").len(), 2);
        assert!(rules.set.get().is_some());
    }

    #[test]
    fn required_literals_are_required() {
        let cases: [(&str, Option<&str>); 10] = [
            ("{phi,phi[!a-z]*,*[!a-z]phi,*[!a-z]phi[!a-z]*}", None),
            ("**/secrets/**", Some("secrets")),
            ("*.{pem,key}", Some(".")),
            ("/etc/ssl/[a-z]*", Some("etc")),
            ("[]x]Report?2026*", Some("report")),
            ("[!]x]abc", Some("abc")),
            ("a\\*bcd", Some("bcd")),
            ("{a,b}lit{c,d}", None),
            ("Héllo*world", Some("world")),
            ("*", None),
        ];
        for (glob, want) in cases {
            assert_eq!(required_literal(glob).as_deref(), want, "{glob}");
        }
        // Whatever globset matches contains the literal.
        let resources = [
            "secrets",
            "secrets/db",
            "/x/secrets/",
            "/etc/ssl/a",
            "]Report-2026",
            "xabc",
            "a*bcd",
        ];
        for (glob, _) in cases {
            let m = GlobBuilder::new(glob)
                .case_insensitive(true)
                .build()
                .unwrap()
                .compile_matcher();
            for r in resources.iter().filter(|r| m.is_match(r)) {
                let lit = required_literal(glob).unwrap_or_default();
                assert!(
                    r.to_ascii_lowercase().contains(&lit),
                    "{glob} matched {r} without {lit}"
                );
            }
        }
    }
}
