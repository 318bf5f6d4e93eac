//! A stand-in for the Anthropic Messages API on 127.0.0.1, scripted turn by turn, so
//! the real Claude Code CLI (`ANTHROPIC_BASE_URL`) runs a known session offline.
//!
//! `POST /v1/messages` with `"stream": true` is answered with the server-sent events
//! the real API sends (`message_start`, then `content_block_start`/`_delta`/`_stop`
//! per block, `message_delta` with the stop reason, `message_stop`), in one
//! Content-Length body. Which scripted turn answers follows from the tool calls the
//! request's history already holds (Claude Code merges consecutive assistant turns
//! into one message, so counting messages does not work): the first turn with a call
//! not in it. A request without tools (a side request such as a title) and any turn
//! past the script get a final text; a request without `"stream": true` gets the same
//! as a plain JSON message. `count_tokens` gets a count; anything else is logged and
//! answered 404 in the API's error shape, so a test can say what the CLI asked for.
//!
//! Built on `http1`'s server core: std threads, no tokio.

#![allow(dead_code)]

use crate::http1::{Answer, Handler, Request, Response, Server};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// The text a request past the script (or a side request) is answered with.
pub const FINAL_TEXT: &str = "Done.";

/// One content block of a scripted assistant turn.
#[derive(Debug, Clone)]
pub enum Block {
    Text(String),
    /// A tool call; `input` is its JSON text, sent as written, so a script can hold
    /// what `serde_json` would refuse to build (a lone surrogate escape).
    ToolUse {
        id: String,
        name: String,
        input: String,
    },
}

impl Block {
    pub fn text(t: &str) -> Block {
        Block::Text(t.to_string())
    }

    pub fn tool(id: &str, name: &str, input: Value) -> Block {
        Block::tool_json(id, name, &input.to_string())
    }

    /// A tool call whose input is the JSON text `input`, verbatim.
    pub fn tool_json(id: &str, name: &str, input: &str) -> Block {
        Block::ToolUse {
            id: id.to_string(),
            name: name.to_string(),
            input: input.to_string(),
        }
    }
}

/// A request as the stand-in saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    /// The body, when it was JSON.
    pub body: Option<Value>,
}

/// A `tool_result` block the CLI sent back.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolResult {
    pub tool_use_id: String,
    /// Its text, the blocks of an array joined.
    pub text: String,
    pub is_error: bool,
}

pub struct MessagesApi {
    /// `http://127.0.0.1:PORT`, the value for `ANTHROPIC_BASE_URL`.
    pub url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    _server: Server,
}

impl MessagesApi {
    /// Serves `turns`: the assistant's turn `i` answers a request whose history holds
    /// `i` assistant messages.
    pub fn start(turns: Vec<Vec<Block>>) -> MessagesApi {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler: Handler = {
            let seen = seen.clone();
            Arc::new(move |req: Request| {
                let body = serde_json::from_slice::<Value>(&req.body).ok();
                seen.lock().unwrap().push(Seen {
                    method: req.method.clone(),
                    target: req.target.clone(),
                    body: body.clone(),
                });
                Answer::Respond(answer(&req, body.as_ref(), &turns))
            })
        };
        let server = Server::start(handler);
        MessagesApi {
            url: server.url.clone(),
            seen,
            _server: server,
        }
    }

    /// Every request so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// One line per request (`POST /v1/messages?beta=true`), for failure messages.
    pub fn summary(&self) -> String {
        self.seen()
            .iter()
            .map(|s| format!("{} {}", s.method, s.target))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The tool results in the last `/v1/messages` request's history: what the CLI
    /// reported back for every tool call of the session.
    pub fn tool_results(&self) -> Vec<ToolResult> {
        let seen = self.seen();
        let Some(last) = seen
            .iter()
            .rev()
            .filter(|s| is_messages(&s.target))
            .find_map(|s| s.body.as_ref())
        else {
            return Vec::new();
        };
        let messages = last["messages"].as_array().cloned().unwrap_or_default();
        messages
            .iter()
            .filter_map(|m| m["content"].as_array())
            .flatten()
            .filter(|b| b["type"] == "tool_result")
            .map(|b| ToolResult {
                tool_use_id: b["tool_use_id"].as_str().unwrap_or("").to_string(),
                text: block_text(&b["content"]),
                is_error: b["is_error"].as_bool().unwrap_or(false),
            })
            .collect()
    }
}

fn path_of(target: &str) -> &str {
    target.split('?').next().unwrap_or("")
}

fn is_messages(target: &str) -> bool {
    path_of(target) == "/v1/messages"
}

/// The text of a `tool_result`'s content: a string, or text blocks.
fn block_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn answer(req: &Request, body: Option<&Value>, turns: &[Vec<Block>]) -> Response {
    match (req.method.as_str(), path_of(&req.target)) {
        ("HEAD", _) => Response::new(200),
        ("POST", "/v1/messages/count_tokens") => {
            Response::json(200, &json!({ "input_tokens": 1000 }))
        }
        ("POST", "/v1/messages") => {
            let Some(body) = body else {
                return api_error(400, "invalid_request_error", "body is not JSON");
            };
            let blocks = turn_for(body, turns);
            let model = body["model"].as_str().unwrap_or("claude-test");
            if body["stream"] == true {
                Response::new(200)
                    .header("Content-Type", "text/event-stream")
                    .header("Cache-Control", "no-cache")
                    .body(sse(model, &blocks).into_bytes())
            } else {
                Response::new(200)
                    .header("Content-Type", "application/json")
                    .body(message(model, &blocks).into_bytes())
            }
        }
        _ => api_error(404, "not_found_error", "not served by the test stand-in"),
    }
}

fn api_error(status: u16, kind: &str, message: &str) -> Response {
    Response::json(
        status,
        &json!({ "type": "error", "error": { "type": kind, "message": message } }),
    )
}

/// The scripted turn for a request, or the final text: the first turn with a tool
/// call the history does not hold yet, or a text-only turn once every tool call
/// before it is in the history.
fn turn_for(body: &Value, turns: &[Vec<Block>]) -> Vec<Block> {
    let has_tools = body["tools"].as_array().is_some_and(|t| !t.is_empty());
    let history: Vec<&str> = body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .filter(|b| b["type"] == "tool_use")
        .filter_map(|b| b["id"].as_str())
        .collect();
    let done = |turn: &[Block]| {
        turn.iter().all(|b| match b {
            Block::ToolUse { id, .. } => history.contains(&id.as_str()),
            Block::Text(_) => true,
        })
    };
    let mut answered_before = true;
    for turn in turns {
        let calls_tools = turn.iter().any(|b| matches!(b, Block::ToolUse { .. }));
        let answered = calls_tools && done(turn);
        if !answered && answered_before && has_tools {
            return turn.clone();
        }
        answered_before = answered;
    }
    vec![Block::text(FINAL_TEXT)]
}

fn stop_reason(blocks: &[Block]) -> &'static str {
    if blocks.iter().any(|b| matches!(b, Block::ToolUse { .. })) {
        "tool_use"
    } else {
        "end_turn"
    }
}

fn usage() -> Value {
    json!({ "input_tokens": 10, "output_tokens": 20 })
}

/// A whole (non-streamed) assistant message, as JSON text (tool inputs verbatim).
fn message(model: &str, blocks: &[Block]) -> String {
    let content: Vec<String> = blocks
        .iter()
        .map(|b| match b {
            Block::Text(t) => json!({ "type": "text", "text": t }).to_string(),
            Block::ToolUse { id, name, input } => format!(
                r#"{{"type":"tool_use","id":{},"name":{},"input":{input}}}"#,
                json!(id),
                json!(name)
            ),
        })
        .collect();
    let mut text = json!({
        "id": "msg_standin", "type": "message", "role": "assistant", "model": model,
        "stop_reason": stop_reason(blocks), "stop_sequence": null, "usage": usage(),
    })
    .to_string();
    text.pop();
    format!("{text},\"content\":[{}]}}", content.join(","))
}

/// The message as the stream of events the API sends for it.
fn sse(model: &str, blocks: &[Block]) -> String {
    let mut events = vec![json!({
        "type": "message_start",
        "message": {
            "id": "msg_standin", "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": { "input_tokens": 10, "output_tokens": 1 },
        },
    })];
    for (index, block) in blocks.iter().enumerate() {
        let (start, delta) = match block {
            Block::Text(t) => (
                json!({ "type": "text", "text": "" }),
                json!({ "type": "text_delta", "text": t }),
            ),
            Block::ToolUse { id, name, input } => (
                json!({ "type": "tool_use", "id": id, "name": name, "input": {} }),
                json!({ "type": "input_json_delta", "partial_json": input }),
            ),
        };
        events
            .push(json!({ "type": "content_block_start", "index": index, "content_block": start }));
        events.push(json!({ "type": "content_block_delta", "index": index, "delta": delta }));
        events.push(json!({ "type": "content_block_stop", "index": index }));
    }
    events.push(json!({
        "type": "message_delta",
        "delta": { "stop_reason": stop_reason(blocks), "stop_sequence": null },
        "usage": { "output_tokens": 20 },
    }));
    events.push(json!({ "type": "message_stop" }));
    events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
        .collect()
}

#[test]
fn streams_the_scripted_turn_then_the_final_text() {
    let api = MessagesApi::start(vec![vec![
        Block::text("Looking."),
        Block::tool("toolu_1", "Read", json!({ "file_path": "/x" })),
    ]]);
    let post = |body: Value| {
        let mut conn = std::net::TcpStream::connect(api.url.trim_start_matches("http://")).unwrap();
        let body = body.to_string();
        let head = format!(
            "POST /v1/messages?beta=true HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        std::io::Write::write_all(&mut conn, format!("{head}{body}").as_bytes()).unwrap();
        let r = crate::http1::read_response(&mut std::io::BufReader::new(conn)).unwrap();
        String::from_utf8(r.body).unwrap()
    };
    let tools = json!([{ "name": "Read" }]);
    let first = post(json!({ "model": "m", "stream": true, "tools": tools,
        "messages": [{ "role": "user", "content": "hi" }] }));
    let events: Vec<&str> = first
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(
        events,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert!(first.contains(r#""stop_reason":"tool_use""#), "{first}");
    assert!(first.contains(r#"\"file_path\":\"/x\""#), "{first}");

    let second = post(
        json!({ "model": "m", "stream": true, "tools": tools, "messages": [
        { "role": "user", "content": "hi" },
        { "role": "assistant", "content": [{ "type": "tool_use", "id": "toolu_1", "name": "Read", "input": {} }] },
        { "role": "user", "content": [{ "type": "tool_result", "tool_use_id": "toolu_1", "content": "text" }] },
    ] }),
    );
    assert!(second.contains(r#""stop_reason":"end_turn""#), "{second}");
    assert!(second.contains(FINAL_TEXT), "{second}");
    assert_eq!(
        api.tool_results(),
        [ToolResult {
            tool_use_id: "toolu_1".into(),
            text: "text".into(),
            is_error: false
        }]
    );

    // Without "stream": the same turn as one JSON message.
    let whole = post(json!({ "model": "m", "tools": tools,
        "messages": [{ "role": "user", "content": "hi" }] }));
    let whole: Value = serde_json::from_str(&whole).unwrap();
    assert_eq!(whole["content"][1]["input"], json!({ "file_path": "/x" }));
    assert_eq!(whole["stop_reason"], "tool_use", "{whole}");
}
