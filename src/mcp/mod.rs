//! `auditship mcp`: a Model Context Protocol server on stdio whose one tool,
//! `record_decision`, lets the model itself put an `ai_decision` event in the trail.
//!
//! The transport is MCP's stdio one: JSON-RPC 2.0, one message per line, requests
//! on stdin, answers on stdout, nothing else on stdout (logs go to stderr). The
//! server answers `initialize` (the client's protocol version when it is one of
//! [`PROTOCOL_VERSIONS`], else the newest), `ping`, `tools/list` and `tools/call`;
//! notifications get no answer; any other method is `-32601`. A line longer than
//! [`MAX_LINE_BYTES`] is answered `-32600` and skipped without being held, so a
//! client cannot make the server hold more than that.
//!
//! What it owns: reading and answering messages ([`Server::handle`]), the tool's
//! schema ([`tool`]) and the check of its arguments ([`decision_of`]), the bounded
//! line reader ([`serve`]). What it does not do: write events. A [`Recorder`] does
//! that, by the same path as `record --decision` (`cli::mcp`); this module does no
//! IO but through the reader and writer it is handed.

use crate::record::Decision;
use serde_json::{Map, Value, json};
use std::io::{self, BufRead, Write};

/// The protocol versions this server speaks, newest first.
pub const PROTOCOL_VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// A message (one line, its `\n` excluded) is at most this long.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// The tool's name; Claude Code offers it to the model as
/// `mcp__<server name>__record_decision`.
pub const TOOL_NAME: &str = "record_decision";

/// The `_meta` member in which Claude Code names the tool call a `tools/call`
/// belongs to (the `tool_use_id` its hooks see).
pub const TOOL_USE_ID_META: &str = "claudecode/toolUseId";

/// JSON-RPC error codes.
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
}

/// Writes a decision to the trail; `Ok` says where (shown to the model), `Err` why
/// nothing was written.
pub trait Recorder {
    fn record(&mut self, decision: Decision) -> Result<String, String>;
}

impl<F: FnMut(Decision) -> Result<String, String>> Recorder for F {
    fn record(&mut self, decision: Decision) -> Result<String, String> {
        self(decision)
    }
}

/// The server's state between messages.
pub struct Server<R> {
    recorder: R,
    /// The session given to decisions (`$CLAUDE_CODE_SESSION_ID` of the process
    /// Claude Code started).
    session_id: Option<String>,
}

impl<R: Recorder> Server<R> {
    pub fn new(recorder: R, session_id: Option<String>) -> Server<R> {
        Server {
            recorder,
            session_id,
        }
    }

    /// The answer to one line (without its `\n`), if it gets one.
    pub fn handle(&mut self, line: &[u8]) -> Option<Value> {
        match request(line) {
            Ok(Some((id, method, params))) => Some(self.answer(id, &method, &params)),
            Ok(None) => None,
            Err(answer) => Some(answer),
        }
    }

    /// The answer to the request `id` for `method`.
    fn answer(&mut self, id: Value, method: &str, params: &Value) -> Value {
        match method {
            "initialize" => result(id, initialize(params)),
            "ping" => result(id, json!({})),
            "tools/list" => result(id, json!({ "tools": [tool()] })),
            "tools/call" => match self.call(params) {
                Ok(r) => result(id, r),
                Err(why) => error(id, code::INVALID_PARAMS, &why),
            },
            other => error(
                id,
                code::METHOD_NOT_FOUND,
                &format!("method not found: {other}"),
            ),
        }
    }

    /// A `tools/call`: the tool's result (`isError` when the decision was not
    /// recorded), or why the request itself is wrong.
    fn call(&mut self, params: &Value) -> Result<Value, String> {
        let name = params
            .get("name")
            .ok_or("tools/call needs params.name")?
            .as_str()
            .ok_or("params.name must be a string")?;
        if name != TOOL_NAME {
            return Err(format!(
                "unknown tool: {name} (this server has {TOOL_NAME})"
            ));
        }
        let mut decision = match decision_of(params.get("arguments")) {
            Ok(d) => d,
            Err(why) => return Ok(tool_result(&format!("not recorded: {why}"), true)),
        };
        decision.session_id = self.session_id.clone();
        decision.tool_use_id = params
            .get("_meta")
            .and_then(|m| m.get(TOOL_USE_ID_META))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        Ok(match self.recorder.record(decision) {
            Ok(text) => tool_result(&text, false),
            Err(why) => tool_result(&format!("not recorded: {why}"), true),
        })
    }
}

/// A line read as a JSON-RPC request: `(id, method, params)`; `None` for what
/// needs no answer (a notification, an answer from the client); `Err` the error
/// answer for what is not a valid request.
fn request(line: &[u8]) -> Result<Option<(Value, String, Value)>, Value> {
    let message: Value = serde_json::from_slice(line)
        .map_err(|e| error(Value::Null, code::PARSE_ERROR, &format!("{e}")))?;
    let Value::Object(mut m) = message else {
        let why = if message.is_array() {
            "batches are not supported: send one message per line"
        } else {
            "a message is a JSON object"
        };
        return Err(error(Value::Null, code::INVALID_REQUEST, why));
    };
    let id = m.remove("id");
    if m.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        let id = id.unwrap_or(Value::Null);
        return Err(error(id, code::INVALID_REQUEST, "jsonrpc must be \"2.0\""));
    }
    let method = match m.remove("method") {
        Some(Value::String(method)) => method,
        Some(_) => {
            let id = id.unwrap_or(Value::Null);
            return Err(error(id, code::INVALID_REQUEST, "method must be a string"));
        }
        // An answer from the client: we ask the client nothing.
        None => return Ok(None),
    };
    // A notification: nothing we are told needs an answer.
    let Some(id) = id else { return Ok(None) };
    if !(id.is_string() || id.is_i64() || id.is_u64()) {
        let why = "id must be a string or an integer";
        return Err(error(Value::Null, code::INVALID_REQUEST, why));
    }
    let params = m.remove("params").unwrap_or(Value::Null);
    if !(params.is_object() || params.is_null()) {
        return Err(error(id, code::INVALID_PARAMS, "params must be an object"));
    }
    Ok(Some((id, method, params)))
}

/// The answer to `initialize`.
fn initialize(params: &Value) -> Value {
    let asked = params.get("protocolVersion").and_then(Value::as_str);
    let version = PROTOCOL_VERSIONS
        .iter()
        .find(|v| Some(**v) == asked)
        .unwrap_or(&PROTOCOL_VERSIONS[0]);
    json!({
        "protocolVersion": version,
        "capabilities": { "tools": { "listChanged": false } },
        "serverInfo": {
            "name": "auditship",
            "title": "auditship audit trail",
            "version": env!("CARGO_PKG_VERSION"),
        },
        "instructions": "Call record_decision when you make a significant decision \
            (a design choice, a risky action, a trade-off): it is kept in the \
            tamper-evident audit trail of this machine.",
    })
}

/// The `record_decision` tool as `tools/list` describes it.
pub fn tool() -> Value {
    let strings =
        |what: &str| json!({ "type": "array", "items": { "type": "string" }, "description": what });
    json!({
        "name": TOOL_NAME,
        "title": "Record a decision in the audit trail",
        "description": "Records a decision you made, with what you weighed, how sure you \
            are and what you did not choose, as an ai_decision event in the machine's \
            tamper-evident audit trail. Secrets in the text are redacted before it is \
            written. Answers with the event's sequence number and hash.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "decision": { "type": "string", "minLength": 1, "description": "What was decided." },
                "factors": strings("The factors considered."),
                "confidence": { "type": "number", "minimum": 0, "maximum": 1, "description": "How sure, from 0 to 1." },
                "alternatives": strings("The options not chosen."),
                "resources": strings("What the decision is about: file paths, URLs, names."),
            },
            "required": ["decision"],
            "additionalProperties": false,
        },
        "annotations": {
            "title": "Record a decision",
            "readOnlyHint": false,
            "destructiveHint": false,
            "idempotentHint": false,
            "openWorldHint": false,
        },
    })
}

/// The decision `tools/call` arguments give, or why they do not fit the schema.
/// Pure.
pub fn decision_of(arguments: Option<&Value>) -> Result<Decision, String> {
    let empty = Map::new();
    let args = match arguments {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(m)) => m,
        Some(_) => return Err("the arguments must be an object".into()),
    };
    const KNOWN: [&str; 5] = [
        "decision",
        "factors",
        "confidence",
        "alternatives",
        "resources",
    ];
    if let Some(other) = args.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(format!(
            "unknown argument {other:?} (expected {})",
            KNOWN.join(", ")
        ));
    }
    let decision = match args.get("decision") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::String(_)) => return Err("decision is empty".into()),
        Some(_) => return Err("decision must be a string".into()),
        None => return Err("decision is required".into()),
    };
    let confidence = match args.get("confidence") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_f64() {
            Some(c) if (0.0..=1.0).contains(&c) => Some(c),
            _ => return Err(format!("confidence {n} is not between 0 and 1")),
        },
        Some(_) => return Err("confidence must be a number between 0 and 1".into()),
    };
    Ok(Decision {
        decision,
        factors_considered: strings(args, "factors")?,
        confidence,
        alternative_options: strings(args, "alternatives")?,
        resources: strings(args, "resources")?,
        ..Decision::default()
    })
}

/// The array of strings `args[key]` (absent or null: none).
fn strings(args: &Map<String, Value>, key: &str) -> Result<Vec<String>, String> {
    let bad = || format!("{key} must be an array of strings");
    match args.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned).ok_or_else(bad))
            .collect(),
        Some(_) => Err(bad()),
    }
}

fn tool_result(text: &str, is_error: bool) -> Value {
    json!({ "content": [{ "type": "text", "text": text }], "isError": is_error })
}

fn result(id: Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

fn error(id: Value, code: i64, message: &str) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } })
}

/// Serves `server` until `input` ends: each line handled in turn, each answer
/// written as one line and flushed. A line longer than [`MAX_LINE_BYTES`] is read
/// past (never held) and answered `-32600`. `Err` only when reading or writing fails.
pub fn serve<R: Recorder>(
    server: &mut Server<R>,
    input: &mut impl BufRead,
    output: &mut impl Write,
) -> io::Result<()> {
    let mut line = Vec::new();
    loop {
        let answer = match read_line(input, &mut line)? {
            Line::End => return Ok(()),
            Line::Whole if line.iter().all(u8::is_ascii_whitespace) => None,
            Line::Whole => server.handle(&line),
            Line::TooLong => Some(error(
                Value::Null,
                code::INVALID_REQUEST,
                &format!("message longer than {MAX_LINE_BYTES} bytes; skipped"),
            )),
        };
        if let Some(answer) = answer {
            let mut text = answer.to_string().into_bytes();
            text.push(b'\n');
            output.write_all(&text)?;
            output.flush()?;
        }
    }
}

enum Line {
    /// `line` holds a whole line, its `\n` (and a `\r` before it) taken off.
    Whole,
    /// The line was longer than the bound: read to its end and dropped.
    TooLong,
    /// The input ended (a last line without `\n` still counts as a line).
    End,
}

/// Reads the next line into `line`, holding at most [`MAX_LINE_BYTES`] of it.
fn read_line(input: &mut impl BufRead, line: &mut Vec<u8>) -> io::Result<Line> {
    line.clear();
    let mut too_long = false;
    loop {
        let buf = match input.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(match (too_long, line.is_empty()) {
                (true, _) => Line::TooLong,
                (false, true) => Line::End,
                (false, false) => Line::Whole,
            });
        }
        let (chunk, done) = match memchr::memchr(b'\n', buf) {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        if !too_long && line.len() + chunk.len() <= MAX_LINE_BYTES {
            line.extend_from_slice(chunk);
        } else {
            too_long = true;
            line.clear();
        }
        let used = done.unwrap_or(buf.len());
        input.consume(used);
        if done.is_some() {
            if too_long {
                return Ok(Line::TooLong);
            }
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(Line::Whole);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server whose recorder keeps what it is given and answers `seq N`.
    fn server() -> Server<impl Recorder> {
        let mut n = 0;
        Server::new(
            move |d: Decision| {
                n += 1;
                if d.decision == "fail" {
                    return Err("the disk is full".into());
                }
                Ok(format!("seq {n} {:?} {:?}", d.session_id, d.tool_use_id))
            },
            Some("s-1".into()),
        )
    }

    fn ask(s: &mut Server<impl Recorder>, line: &str) -> Option<Value> {
        s.handle(line.as_bytes())
    }

    fn call(arguments: Value) -> String {
        json!({ "jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": { "name": TOOL_NAME, "arguments": arguments } })
        .to_string()
    }

    #[test]
    fn initialize_answers_a_known_version_or_the_newest() {
        let mut s = server();
        for (asked, answered) in [
            ("2025-06-18", "2025-06-18"),
            ("2024-11-05", "2024-11-05"),
            ("2099-01-01", PROTOCOL_VERSIONS[0]),
        ] {
            let r = ask(
                &mut s,
                &json!({ "jsonrpc": "2.0", "id": "a", "method": "initialize",
                    "params": { "protocolVersion": asked, "capabilities": {},
                        "clientInfo": { "name": "t", "version": "1" } } })
                .to_string(),
            )
            .unwrap();
            assert_eq!(r["id"], "a");
            assert_eq!(r["result"]["protocolVersion"], answered, "{r}");
            assert!(r["result"]["capabilities"]["tools"].is_object(), "{r}");
            assert_eq!(r["result"]["serverInfo"]["name"], "auditship");
        }
    }

    #[test]
    fn notifications_and_client_answers_get_no_answer() {
        let mut s = server();
        for line in [
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":3}}"#,
            r#"{"jsonrpc":"2.0","id":4,"result":{}}"#,
        ] {
            assert_eq!(ask(&mut s, line), None, "{line}");
        }
    }

    #[test]
    fn malformed_messages_get_json_rpc_errors() {
        let mut s = server();
        let code_of = |v: Option<Value>| (v.clone().unwrap()["error"]["code"].as_i64(), v);
        let cases = [
            ("{not json", code::PARSE_ERROR),
            ("[]", code::INVALID_REQUEST),
            (
                r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
                code::INVALID_REQUEST,
            ),
            ("42", code::INVALID_REQUEST),
            (r#"{"id":1,"method":"ping"}"#, code::INVALID_REQUEST),
            (
                r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#,
                code::INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":7}"#,
                code::INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"nope"}"#,
                code::METHOD_NOT_FOUND,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":[1]}"#,
                code::INVALID_PARAMS,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
                code::INVALID_PARAMS,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"rm"}}"#,
                code::INVALID_PARAMS,
            ),
        ];
        for (line, want) in cases {
            let (got, answer) = code_of(ask(&mut s, line));
            assert_eq!(got, Some(want), "{line}: {answer:?}");
        }
        let r = ask(&mut s, r#"{"jsonrpc":"2.0","id":"x","method":"nope"}"#).unwrap();
        assert_eq!(r["id"], "x", "the id is echoed");
    }

    #[test]
    fn arguments_that_do_not_fit_are_tool_errors() {
        let mut s = server();
        for args in [
            json!({}),
            json!({ "decision": "" }),
            json!({ "decision": "  " }),
            json!({ "decision": 3 }),
            json!({ "decision": "x", "confidence": 1.5 }),
            json!({ "decision": "x", "confidence": -0.1 }),
            json!({ "decision": "x", "confidence": "high" }),
            json!({ "decision": "x", "factors": "cost" }),
            json!({ "decision": "x", "alternatives": [1] }),
            json!({ "decision": "x", "resources": [null] }),
            json!({ "decision": "x", "session_id": "forged" }),
            json!(["x"]),
        ] {
            let r = ask(&mut s, &call(args.clone())).unwrap();
            assert_eq!(r["result"]["isError"], true, "{args}: {r}");
            let text = r["result"]["content"][0]["text"].as_str().unwrap();
            assert!(text.starts_with("not recorded: "), "{text}");
        }
    }

    #[test]
    fn a_call_records_with_the_session_and_the_tool_call() {
        let mut s = server();
        let line = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": TOOL_NAME, "_meta": { TOOL_USE_ID_META: "toolu_9" },
            "arguments": { "decision": "use SQLite", "factors": ["size"], "confidence": 1,
                "alternatives": ["PostgreSQL"], "resources": ["db/a.sql", "db/b.sql"] } } });
        let r = ask(&mut s, &line.to_string()).unwrap();
        assert_eq!(r["result"]["isError"], false, "{r}");
        assert_eq!(
            r["result"]["content"][0],
            json!({ "type": "text", "text": "seq 1 Some(\"s-1\") Some(\"toolu_9\")" })
        );
        let r = ask(&mut s, &call(json!({ "decision": "fail" }))).unwrap();
        assert_eq!(r["result"]["isError"], true);
        assert_eq!(
            r["result"]["content"][0]["text"],
            "not recorded: the disk is full"
        );
    }

    #[test]
    fn decisions_map_every_argument() {
        let d = decision_of(Some(&json!({ "decision": "d", "factors": ["f"],
            "confidence": 0.25, "alternatives": ["a"], "resources": ["r1", "r2"] })))
        .unwrap();
        assert_eq!(d.decision, "d");
        assert_eq!(d.factors_considered, ["f"]);
        assert_eq!(d.confidence, Some(0.25));
        assert_eq!(d.alternative_options, ["a"]);
        assert_eq!(d.resources, ["r1", "r2"]);
        assert!(d.validate().is_ok());
    }

    #[test]
    fn the_schema_names_every_argument_decision_checks() {
        let t = tool();
        let props = t["inputSchema"]["properties"].as_object().unwrap();
        let mut names: Vec<&str> = props.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "alternatives",
                "confidence",
                "decision",
                "factors",
                "resources"
            ]
        );
        assert_eq!(t["inputSchema"]["required"], json!(["decision"]));
        assert_eq!(t["inputSchema"]["additionalProperties"], false);
    }

    #[test]
    fn lines_are_served_in_order_and_long_ones_skipped() {
        let mut s = server();
        let mut input = Vec::new();
        input.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\r\n\n");
        input.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES + 10));
        input.push(b'\n');
        input.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}");
        let mut reader = io::BufReader::with_capacity(4096, &input[..]);
        let mut out = Vec::new();
        serve(&mut s, &mut reader, &mut out).unwrap();
        let answers: Vec<Value> = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(answers.len(), 3, "{answers:?}");
        assert_eq!(
            answers[0],
            json!({ "jsonrpc": "2.0", "id": 1, "result": {} })
        );
        assert_eq!(answers[1]["error"]["code"], code::INVALID_REQUEST);
        assert_eq!(answers[1]["id"], Value::Null);
        assert_eq!(answers[2]["id"], 2);
    }

    #[test]
    fn a_line_of_exactly_the_bound_is_read() {
        let mut line = Vec::new();
        let mut text = vec![b' '; MAX_LINE_BYTES];
        text.push(b'\n');
        let mut r = io::BufReader::with_capacity(1000, &text[..]);
        assert!(matches!(read_line(&mut r, &mut line).unwrap(), Line::Whole));
        assert_eq!(line.len(), MAX_LINE_BYTES);
        assert!(matches!(read_line(&mut r, &mut line).unwrap(), Line::End));
    }
}
