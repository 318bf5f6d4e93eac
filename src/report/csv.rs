//! The per-event listing an auditor filters in a spreadsheet: one row per event of
//! the period, written as each is read (so the listing is complete whatever its
//! size), RFC 4180 quoting.
//!
//! A cell that a spreadsheet would take for a formula (one starting with `=`, `+`,
//! `-`, `@`, a tab or a carriage return: a resource is often a command line) is
//! written with a leading `'`, so opening the file runs nothing.

use super::{Row, Rows};
use std::io::{self, Write};

pub const HEADER: [&str; 16] = [
    "timestamp",
    "user_id",
    "host",
    "session_id",
    "action",
    "outcome",
    "resource",
    "tool_name",
    "source_event",
    "compliance_tags",
    "seq",
    "hash",
    "integrity",
    "stream",
    "file",
    "line",
];

pub struct Csv<W: Write> {
    out: W,
    cell: String,
}

impl<W: Write> Csv<W> {
    pub fn new(mut out: W) -> io::Result<Csv<W>> {
        out.write_all(HEADER.join(",").as_bytes())?;
        out.write_all(b"\r\n")?;
        Ok(Csv {
            out,
            cell: String::new(),
        })
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }

    fn field(&mut self, first: bool, value: &str) -> io::Result<()> {
        if !first {
            self.out.write_all(b",")?;
        }
        self.cell.clear();
        if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            self.cell.push('\'');
        }
        self.cell.push_str(value);
        if self.cell.contains([',', '"', '\n', '\r']) {
            self.out.write_all(b"\"")?;
            self.out
                .write_all(self.cell.replace('"', "\"\"").as_bytes())?;
            self.out.write_all(b"\"")
        } else {
            self.out.write_all(self.cell.as_bytes())
        }
    }
}

impl<W: Write> Rows for Csv<W> {
    fn row(&mut self, r: &Row<'_>) -> io::Result<()> {
        let f = r.facts;
        let tags: Vec<&str> = f.tags().collect();
        let integrity = if r.codes.is_empty() {
            "ok".to_string()
        } else {
            r.codes.join(" ")
        };
        let seq = f.seq.map(|s| s.to_string()).unwrap_or_default();
        let line = r.line.to_string();
        let cells = [
            f.timestamp.unwrap_or_default(),
            f.user.unwrap_or_default(),
            f.host.unwrap_or_default(),
            f.session.unwrap_or_default(),
            f.action.unwrap_or_default(),
            f.outcome.unwrap_or_default(),
            f.resource.unwrap_or_default(),
            f.tool_name.unwrap_or_default(),
            f.source_event.unwrap_or_default(),
            &tags.join(";"),
            &seq,
            f.hash.unwrap_or_default(),
            &integrity,
            r.stream,
            r.file,
            &line,
        ];
        for (i, c) in cells.iter().enumerate() {
            self.field(i == 0, c)?;
        }
        self.out.write_all(b"\r\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::json;
    use crate::report::facts::Facts;

    #[test]
    fn cells_are_quoted_and_formulas_defused() {
        let v = json::parse(
            r#"{"timestamp":"2026-11-26T07:06:42Z","user_id":"a,b","action":"tool_execution","outcome":"success","resource":"=HYPERLINK(\"x\")","compliance_tags":["SOC2","GDPR"],"seq":3}"#,
        )
        .unwrap();
        let facts = Facts::of(v.as_object().unwrap());
        let mut csv = Csv::new(Vec::new()).unwrap();
        csv.row(&Row {
            facts: &facts,
            stream: "/s",
            file: "f.jsonl",
            line: 4,
            codes: &["hash_mismatch"],
        })
        .unwrap();
        let text = String::from_utf8(csv.finish().unwrap()).unwrap();
        let rows: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(rows[0], HEADER.join(","));
        assert_eq!(
            rows[1],
            r#"2026-11-26T07:06:42Z,"a,b",,,tool_execution,success,"'=HYPERLINK(""x"")",,,SOC2;GDPR,3,,hash_mismatch,/s,f.jsonl,4"#
        );
    }
}
