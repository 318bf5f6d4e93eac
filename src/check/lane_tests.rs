//! The fast lane against the general path: every line of every stream below, fed to
//! two encoders in step, one taking the lane where it can and one never, must give
//! byte-identical records, the same counts and the same chain state. The streams
//! hold what producers write (members in any order, escaped strings, Unicode keys,
//! nesting) and what must leave the lane (secrets by shape, by key, by name/value
//! pair, by argument vector; escapes JCS does not write; white space; floats;
//! duplicates; tampering; HMAC with and without keys; lines that are not events).

use super::*;
use crate::audit::Keys;
use crate::audit::json::{self, Value};

fn at(line: u64) -> Origin<'static> {
    Origin {
        source: "claude",
        stream: "/home/dev/.claude/audit",
        file: "audit-2026-11-26.jsonl",
        line,
        offset: line * 700,
        received_at: "2026-11-26T10:00:00.000Z",
    }
}

/// `v` written with each object's members in another order than the canonical one
/// (rotated by `turn`, then reversed on odd depths), strings and numbers as JCS
/// writes them: what a producer that does not sort keys writes.
fn unsorted(v: &Value<'_>, turn: usize, depth: usize, out: &mut Vec<u8>) {
    match v {
        Value::Object(members) => {
            let mut order: Vec<usize> = (0..members.len()).collect();
            let len = order.len();
            if len > 0 {
                order.rotate_left(turn % len);
            }
            if depth % 2 == 1 {
                order.reverse();
            }
            out.push(b'{');
            for (n, i) in order.into_iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                canon::write_string(&members[i].0, out);
                out.push(b':');
                unsorted(&members[i].1, turn + 1, depth + 1, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                unsorted(item, turn + 1, depth + 1, out);
            }
            out.push(b']');
        }
        other => canon::write_value(other, out).unwrap(),
    }
}

/// The extra members of event `i`: what producers put in `metadata` and beside it.
fn extras(i: usize) -> &'static str {
    const EXTRAS: &[&str] = &[
        r#""metadata":{"cwd":"/home/dev/app","tool_name":"Bash","tool_input":"{\"command\": \"cargo test --workspace\", \"timeout\": \"120000\"}","model":"m"},"compliance_tags":["SOC2","ISO27001"]"#,
        r#""metadata":{"é":"naïve","😀":[1,-2,9007199254740992,true,false,null],"｡":{"b":{},"a":[]},"A":"x\ty\n\u001f"}"#,
        r#""metadata":{"nested":{"z":[{"y":1,"x":{"w":"v"}}],"a":"b"}},"zeta":"last","Alpha":0"#,
        // Secrets: by shape, by key, by pair, by argument vector, by flag, numbers.
        r#""metadata":{"note":"token ghp_abcdefghijklmnopqrstuvwxyz0123456789"}"#,
        r#""metadata":{"password":"hunter2hunter2"}"#,
        r#""metadata":{"env":[{"name":"DB_PASSWORD","value":"x1y2z3w4"}]}"#,
        r#""metadata":{"argv":["curl","-u","alice:s3cretpass","https://x.example"]}"#,
        r#""metadata":{"argv":["tool","--password","p4ssw0rdp4ss"]}"#,
        r#""metadata":{"n":{"api_key":12345678}}"#,
        r#""metadata":{"cmd":"export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}"#,
        r#""metadata":{"t":"line1\npassword=hunter2hunter2\n"}"#,
        r#""metadata":{"headers":{"Authorization":"Bearer abcdefghijklmnopqrstuvwxyz"}}"#,
        r#""metadata":{"headers":{"Cookie":"session=abcdef0123456789"}}"#,
        r#""metadata":{"argv":["a\"b","--token","zzzzzzzzzzzz"]}"#,
        r#""metadata":{"pair":{"key":"x\"y","value":"v"}}"#,
        r#""metadata":{"q":"a\"b\\c","list":["x\"y","z"]}"#,
        // Secrets only the decoded text shows: a key word ending in the quote an escape
        // wrote, a key hidden behind `\u` escapes written inside a string, a header
        // and a command whose quotes are escapes in the line.
        r#""metadata":{"body":"{\"headers\": {\"Cookie\": \"sid=abcdef0123456789\"}}"}"#,
        r#""metadata":{"body":"curl -u \"alice:s3cretpass\" https://x"}"#,
        r#""metadata":{"note":"say pwd\": hunter2hunter2"}"#,
        r#""metadata":{"body":"{\"p\\u0061ssword\": \"hunter2hunter2\"}"}"#,
        // Found by the structure alone: values nested under a secret-named key.
        r#""metadata":{"client_secret":{"inner":["plainvalue1",42]}}"#,
        r#""metadata":{"db":{"PASSWORD":[{"v":"plainvalue2"}]}}"#,
        r#""metadata":{"vars":[{"name":"GITHUB_TOKEN","value":{"v":"plainvalue3"}}]}"#,
        // Leave the lane, no secret: a float, deep nesting, names that pair with nothing.
        r#""metadata":{"ratio":1.5}"#,
        r#""metadata":{"deep":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}"#,
        r#""metadata":{"name":"build","value":"ok","field":"f"}"#,
        r#""metadata":{"args":["git","status"],"names":["--verbose","x"]}"#,
    ];
    EXTRAS[i % EXTRAS.len()]
}

/// A chain of `n` events, each written unsorted; sealed with `kid` when given.
fn stream(n: usize, keys: Option<(&str, &Keys)>) -> Vec<String> {
    let mut prev = audit::ZERO_HASH.to_owned();
    let mut lines = Vec::new();
    for i in 0..n {
        let resource = match i % 4 {
            0 => "bash:cargo".to_owned(),
            1 => r#"/p/a\"b"#.to_owned(),
            2 => "é/😀".to_owned(),
            _ => format!("/r/{i}"),
        };
        let e = format!(
            r#"{{"v":1,"id":"id-{i}","seq":{i},"timestamp":"2026-11-26T07:06:42.{:03}Z","user_id":"u{i}","session_id":"s","host":"h","action":"tool_execution","resource":"{resource}","outcome":"success",{},"prev_hash":"{prev}"}}"#,
            i % 1000,
            extras(i)
        );
        let sealed = audit::seal(&e, keys).unwrap();
        prev = sealed.hash.clone();
        let canonical = String::from_utf8(sealed.line).unwrap();
        let value = json::parse(canonical.trim_end()).unwrap();
        let mut out = Vec::new();
        unsorted(&value, i, 0, &mut out);
        lines.push(String::from_utf8(out).unwrap());
    }
    lines
}

/// Lines changed after sealing: each either stays an event the lane may take, or
/// must leave it; the chain after them goes on either way.
fn mutations(lines: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let changed = match i % 16 {
            0 => line.replacen(",", ", ", 1),
            1 => line.replacen("\"u", "\"\\u0075", 1),
            2 => line.replacen("/", "\\/", 1),
            3 => line.replacen("tool_execution", "tool_executed", 1),
            4 => line.replacen("\"host\":\"h\"", "\"host\":\"x\"", 1),
            5 => format!("{},\"host\":\"h\"}}", &line[..line.len() - 1]),
            6 => format!("{},\"_auditship\":{{}}}}", &line[..line.len() - 1]),
            7 => continue, // a line lost: the next one breaks the chain
            8 => line.replacen("\"v\":1", "\"v\":2", 1),
            9 => line.replacen("\"v\":1", "\"v\":1.0", 1),
            10 => format!("{line} "),
            11 => line.replacen("\"s\"", "\"s\\ud800\"", 1),
            12 => line.replacen("\"h\"", "\"h\\t\"", 1),
            13 => line[..line.len() / 2].to_owned(),
            14 => line.replacen("\"seq\":", "\"seq\":-", 1),
            _ => line.clone(),
        };
        out.push(changed);
        if i % 5 == 0 {
            out.push(line.clone()); // also read twice: a seq that does not follow
        }
    }
    out.extend(
        ["", "   ", "[1,2]", "{}", "null", "{\"a\":1}", "x"]
            .iter()
            .map(|s| (*s).to_owned()),
    );
    out
}

/// Feeds `lines` to both paths in step; returns which ones the lane took.
fn compare(lines: &[impl AsRef<[u8]>], keys: &Keys) -> Vec<bool> {
    let enc = Encoder::new("host-1", &serde_json::Map::new(), Redactor::builtin());
    let (mut lane_v, mut general_v) = (Verifier::new(keys.clone()), Verifier::new(keys.clone()));
    let mut taken = Vec::new();
    for (n, raw) in lines.iter().enumerate() {
        let raw = raw.as_ref();
        let at = at(n as u64);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let stats_a = match enc.encode_in_lane(&mut lane_v, raw, &at, &mut a) {
            Some(stats) => {
                taken.push(true);
                stats
            }
            None => {
                taken.push(false);
                assert!(a.is_empty(), "the lane wrote a line it gave back");
                enc.encode_general(Some(&mut lane_v), raw, &at, &mut a)
            }
        };
        let stats_b = enc.encode_general(Some(&mut general_v), raw, &at, &mut b);
        let text = String::from_utf8_lossy(raw);
        assert_eq!(
            String::from_utf8_lossy(&a),
            String::from_utf8_lossy(&b),
            "line {n}: {text}"
        );
        assert_eq!(
            (stats_a.blank, stats_a.problems, stats_a.redacted),
            (stats_b.blank, stats_b.problems, stats_b.redacted),
            "line {n}: {text}"
        );
        assert_eq!(lane_v.head(), general_v.head(), "line {n}: {text}");
        assert_eq!(lane_v.members(), general_v.members(), "line {n}: {text}");
    }
    taken
}

#[test]
fn the_lane_gives_what_the_general_path_gives() {
    let lines = stream(400, None);
    let taken = compare(&lines, &Keys::new());
    // The lane takes exactly the events whose extras hold no secret and stay in it.
    for (i, taken) in taken.into_iter().enumerate() {
        assert_eq!(
            taken,
            matches!(i % 27, 0..=2 | 25 | 26),
            "event {i}: {}",
            lines[i]
        );
    }
    let mutated = mutations(&lines);
    compare(&mutated, &Keys::new());
}

#[test]
fn the_lane_checks_hmac_as_the_general_path_does() {
    let mut keys = Keys::new();
    keys.insert("k1", b"0123456789abcdef0123456789abcdef");
    let lines = stream(120, Some(("k1", &keys)));
    assert!(compare(&lines, &keys).contains(&true));
    compare(&mutations(&lines), &keys);
    // Read with another key, or with none: hmac problems, the same on both paths.
    let mut other = Keys::new();
    other.insert("k1", b"another key entirely, not the one");
    assert!(compare(&lines, &other).contains(&true));
    let mut unknown = Keys::new();
    unknown.insert("k2", b"0123456789abcdef0123456789abcdef");
    compare(&lines, &unknown);
    compare(&stream(40, None), &keys);
}

#[test]
fn the_shared_vectors_agree_on_both_paths() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let mut streams = vec![path.clone()];
        if path.is_dir() {
            streams = std::fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            streams.sort();
        }
        let mut lines = Vec::new();
        for file in streams
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        {
            files += 1;
            let bytes = std::fs::read(file).unwrap();
            lines.extend(bytes.split(|&b| b == b'\n').map(<[u8]>::to_vec));
        }
        compare(&lines, &Keys::new());
    }
    assert!(files >= 8, "{files} vector files read");
}
