//! TEMPORARY stand-in until the compliance module lands.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub resource: Vec<String>,
    pub tags: Vec<String>,
}
pub struct ComplianceRules {
    always: Vec<String>,
}
impl ComplianceRules {
    pub fn new(always: &[String], _rules: &[RuleConfig]) -> Result<Self, String> {
        Ok(Self {
            always: always.to_vec(),
        })
    }
    pub fn default_rules() -> Self {
        Self {
            always: vec!["SOC2".into(), "ISO27001".into()],
        }
    }
    pub fn tags_for(&self, _resource: &str) -> Vec<String> {
        self.always.clone()
    }
}
pub fn builtin_rule_configs() -> Vec<RuleConfig> {
    vec![]
}
