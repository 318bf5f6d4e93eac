//! The stable problem codes of FORMAT.md, as a closed enum.

/// A problem found in one line. `detail` is for people; `code` is the stable contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub code: Code,
    pub detail: String,
}

impl Problem {
    pub fn new(code: Code, detail: impl Into<String>) -> Self {
        Problem {
            code,
            detail: detail.into(),
        }
    }
}

/// Problem codes, declared in the order a verifier reports them for one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Code {
    InvalidUtf8,
    InvalidJson,
    NotObject,
    Schema,
    NotCanonicalizable,
    HashMismatch,
    HmacMissing,
    UnknownKid,
    HmacMismatch,
    BadGenesis,
    ChainRestart,
    ChainBreak,
    SeqGap,
}

impl Code {
    pub const ALL: [Code; 13] = [
        Code::InvalidUtf8,
        Code::InvalidJson,
        Code::NotObject,
        Code::Schema,
        Code::NotCanonicalizable,
        Code::HashMismatch,
        Code::HmacMissing,
        Code::UnknownKid,
        Code::HmacMismatch,
        Code::BadGenesis,
        Code::ChainRestart,
        Code::ChainBreak,
        Code::SeqGap,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Code::InvalidUtf8 => "invalid_utf8",
            Code::InvalidJson => "invalid_json",
            Code::NotObject => "not_object",
            Code::Schema => "schema",
            Code::NotCanonicalizable => "not_canonicalizable",
            Code::HashMismatch => "hash_mismatch",
            Code::HmacMissing => "hmac_missing",
            Code::UnknownKid => "unknown_kid",
            Code::HmacMismatch => "hmac_mismatch",
            Code::BadGenesis => "bad_genesis",
            Code::ChainRestart => "chain_restart",
            Code::ChainBreak => "chain_break",
            Code::SeqGap => "seq_gap",
        }
    }

    pub fn parse(s: &str) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Lines with these problems are not members of the chain.
    pub fn excludes_from_chain(self) -> bool {
        self <= Code::NotCanonicalizable
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_partition() {
        for c in Code::ALL {
            assert_eq!(Code::parse(c.as_str()), Some(c));
        }
        let excluded: Vec<_> = Code::ALL
            .into_iter()
            .filter(|c| c.excludes_from_chain())
            .collect();
        assert_eq!(
            excluded,
            [
                Code::InvalidUtf8,
                Code::InvalidJson,
                Code::NotObject,
                Code::Schema,
                Code::NotCanonicalizable
            ]
        );
    }
}
