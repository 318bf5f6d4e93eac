#!/usr/bin/env python3
"""Independent verifier of the audit-log format (FORMAT.md, version 1).

Written from FORMAT.md and the shared vectors only (standard library, Python 3.11).

  independent_verify.py [--key KID=HEXKEY]... PATH...
  independent_verify.py --self-test VECTORS_DIR

All FILE arguments together form one stream, in the order given; each DIRECTORY is
a stream of its own (its *.jsonl files in name order). Prints
{"events": n, "problems": [{"file", "line", "code"}, ...]}; exit 0 if clean, 1 if
problems, 2 on usage error. `events` counts complete non-blank lines (every record,
including those with problems: evidence is never dropped).
"""
import argparse
import calendar
import hashlib
import hmac
import json
import os
import re
import sys

ZERO_HASH = "0" * 64
HEX64 = re.compile(r"[0-9a-f]{64}")
# RFC 3339, UTC only, upper-case T and Z, optional fraction. [0-9] not \d: \d is Unicode.
TIMESTAMP = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?Z")
ACTIONS = {"file_read", "file_write", "tool_execution", "api_call", "user_prompt",
           "session_start", "session_end", "ai_decision", "permission_change",
           "config_change", "agent_event"}
OUTCOMES = {"success", "failure", "denied", "attempted"}
REQUIRED_STRINGS = ("id", "timestamp", "user_id", "session_id", "host", "action",
                    "resource", "outcome", "prev_hash", "hash")
MAX_SAFE = 2 ** 53  # integer literals with |n| > 2^53 are not canonicalizable


class NotCanonicalizable(Exception):
    pass


class ObjectWithDuplicates(dict):
    """A JSON object in which some key occurred twice (I-JSON forbids it, JCS can't sort it)."""


# ---------------------------------------------------------------- parsing
def _pairs(pairs):
    d = dict(pairs)
    return ObjectWithDuplicates(d) if len(d) != len(pairs) else d


def _reject_constant(name):
    # Python's json accepts NaN / Infinity / -Infinity; they are not JSON.
    raise ValueError("not JSON: " + name)


def _parse_int(s):
    # Integer literals stay exact Python ints, so canonical() can check |n| <= 2^53.
    # Python refuses int() of > 4300 digits; JSON has no leading zeros, so any literal
    # of > 20 chars is >= 10^18 > 2^53, and its first 20 chars keep sign and excess.
    return int(s[:20])


def parse_json(text):
    # Fraction/exponent literals become doubles (1e400 -> inf, caught in canonical()).
    return json.loads(text, object_pairs_hook=_pairs, parse_constant=_reject_constant,
                      parse_int=_parse_int)


# ---------------------------------------------------------------- RFC 8785 (JCS)
def number_to_string(x):
    """ECMAScript Number.prototype.toString for a finite double, from repr's shortest digits."""
    if x == 0:
        return "0"  # covers -0
    if x < 0:
        return "-" + number_to_string(-x)
    mantissa, _, exp = repr(x).partition("e")   # e.g. '1.5', '-07'  or  '0.001', ''
    whole, _, frac = mantissa.partition(".")
    # value = 0.d1d2...dk * 10^n (ECMAScript's k digits and exponent n)
    digits = whole + frac
    n = len(whole) + int(exp or 0)
    stripped = digits.lstrip("0")          # '0.001' -> '0001': leading zeros move n
    n -= len(digits) - len(stripped)
    digits = stripped.rstrip("0")          # '123.0' -> '1230' -> '123'
    k = len(digits)
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * (-n) + digits
    head = digits[0] if k == 1 else digits[0] + "." + digits[1:]
    return head + ("e+" if n >= 1 else "e-") + str(abs(n - 1))


_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n",
                  "\r": "\\r", "\t": "\\t"}


def string_to_json(s):
    # JSON.stringify: escape only '"', '\\' and C0 controls; everything else (DEL,
    # U+2028, non-ASCII) verbatim. A lone surrogate (possible via \ud800 escapes in
    # the input) is not valid Unicode, so I-JSON/JCS cannot represent it.
    if any(0xD800 <= ord(c) <= 0xDFFF for c in s):
        raise NotCanonicalizable("lone surrogate")
    return '"' + "".join(_SHORT_ESCAPES.get(c) or ("\\u%04x" % ord(c) if c < " " else c)
                         for c in s) + '"'


def canonical(value):
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int):          # an integer literal in the input
        if abs(value) > MAX_SAFE:
            raise NotCanonicalizable("integer beyond 2^53")
        return str(value)               # exact below 2^53, and < 1e21, so plain digits
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise NotCanonicalizable("number out of double range")
        return number_to_string(value)
    if isinstance(value, str):
        return string_to_json(value)
    if isinstance(value, list):
        return "[" + ",".join(canonical(v) for v in value) + "]"
    if isinstance(value, dict):
        if isinstance(value, ObjectWithDuplicates):
            raise NotCanonicalizable("duplicate key")
        # Sort by UTF-16 code units: comparing UTF-16-BE bytes is exactly that ("surrogatepass"
        # lets a lone surrogate reach string_to_json, which rejects it).
        keys = sorted(value, key=lambda k: k.encode("utf-16-be", "surrogatepass"))
        return "{" + ",".join(string_to_json(k) + ":" + canonical(value[k]) for k in keys) + "}"
    raise TypeError(type(value))


def event_canonical_bytes(event):
    if isinstance(event, ObjectWithDuplicates):  # even a duplicated hash/hmac counts
        raise NotCanonicalizable("duplicate key")
    return canonical({k: v for k, v in event.items() if k not in ("hash", "hmac")}).encode("utf-8")


# ---------------------------------------------------------------- schema
def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def valid_timestamp(s):
    m = TIMESTAMP.fullmatch(s)
    if not m:
        return False
    y, mo, d, h, mi, sec = (int(g) for g in m.groups()[:6])
    return (1 <= mo <= 12 and 1 <= d <= calendar.monthrange(y, mo)[1]
            and h <= 23 and mi <= 59 and sec <= 60)  # 60: RFC 3339 leap second


def schema_ok(ev):
    tags = ev.get("compliance_tags", [])
    return bool(
        is_int(ev.get("v")) and ev["v"] == 1            # bool and 1.0 are not integer 1
        and is_int(ev.get("seq")) and ev["seq"] >= 0
        and all(isinstance(ev.get(f), str) for f in REQUIRED_STRINGS)
        and ev["action"] in ACTIONS and ev["outcome"] in OUTCOMES
        and valid_timestamp(ev["timestamp"])
        and HEX64.fullmatch(ev["prev_hash"]) and HEX64.fullmatch(ev["hash"])
        # Optional members: when present (even as null) they must have their type.
        and all(isinstance(ev[f], dict) for f in ("metadata", "identity", "decision") if f in ev)
        and isinstance(tags, list) and all(isinstance(t, str) for t in tags)
        and ("hmac" in ev) == ("kid" in ev)             # hmac without kid, or the reverse
        and ("hmac" not in ev or (isinstance(ev["hmac"], str) and HEX64.fullmatch(ev["hmac"])
                                  and isinstance(ev["kid"], str))))


# ---------------------------------------------------------------- verification
def check_line(raw, keys):
    """Per-line problems in FORMAT.md table order, and the event if it joins the chain."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return ["invalid_utf8"], None
    try:
        ev = parse_json(text)
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
        return ["invalid_json"], None
    if not isinstance(ev, dict):
        return ["not_object"], None
    codes = []
    if not schema_ok(ev):
        codes.append("schema")
    try:
        digest = hashlib.sha256(event_canonical_bytes(ev)).hexdigest()
    except (NotCanonicalizable, RecursionError):
        codes.append("not_canonicalizable")
    if codes:  # schema / not_canonicalizable: not a chain member, nothing more to check
        return codes, None
    if digest != ev["hash"]:
        codes.append("hash_mismatch")
    if keys:  # HMAC is checked only when the auditor supplies keys
        if "hmac" not in ev:
            codes.append("hmac_missing")
        elif ev["kid"] not in keys:
            codes.append("unknown_kid")
        else:
            mac = hmac.new(keys[ev["kid"]], ev["hash"].encode("ascii"), hashlib.sha256).hexdigest()
            if not hmac.compare_digest(mac, ev["hmac"]):
                codes.append("hmac_mismatch")
    return codes, ev


def verify_stream(files, keys):
    """files: list of paths forming one chain. Returns (events, problems)."""
    events, problems, head = 0, [], None  # head: last chain member (its stated hash/seq)
    for path in files:
        with open(path, "rb") as f:
            chunks = f.read().split(b"\n")
        chunks.pop()  # text after the last \n is incomplete (b"" if the file ends in \n)
        for lineno, raw in enumerate(chunks, start=1):
            if not raw.strip(b" \t\r"):  # blank (JSON white space only): ignored
                continue
            events += 1
            codes, ev = check_line(raw, keys)
            if ev is not None:
                zero_prev = ev["prev_hash"] == ZERO_HASH
                if head is None:
                    # First event: genesis must point at zeros; seq > 0 is a continuation.
                    if ev["seq"] == 0 and not zero_prev:
                        codes.append("bad_genesis")
                elif ev["seq"] == 0 and zero_prev:
                    codes.append("chain_restart")  # replaces chain_break + seq_gap
                else:
                    if ev["prev_hash"] != head["hash"]:
                        codes.append("chain_break")
                    if ev["seq"] != head["seq"] + 1:
                        codes.append("seq_gap")
                head = ev  # every member, even one with problems, becomes the head
            problems += [{"file": os.path.basename(path), "line": lineno, "code": c} for c in codes]
    return events, problems


def directory_files(d):
    names = [n for n in os.listdir(d) if n.endswith(".jsonl") and os.path.isfile(os.path.join(d, n))]
    return [os.path.join(d, n) for n in sorted(names, key=os.fsencode)]  # byte order of names


def verify_paths(paths, keys):
    streams, loose = [], []
    for p in paths:
        if os.path.isdir(p):
            streams.append(directory_files(p))
        else:
            if not loose:
                streams.append(loose)  # all file arguments: one stream, first-seen position
            loose.append(p)
    events, problems = 0, []
    for files in streams:
        n, probs = verify_stream(files, keys)
        events, problems = events + n, problems + probs
    return events, problems


# ---------------------------------------------------------------- self-test
def self_test(vdir):
    """Every <case>/ against expected.json, and canon.jsonl against canon.expected.jsonl."""
    results = []
    for case in sorted(os.listdir(vdir)):
        exp_path = os.path.join(vdir, case, "expected.json")
        if os.path.isfile(exp_path):
            with open(exp_path, encoding="utf-8") as f:
                exp = json.load(f)
            keys = {k: bytes.fromhex(v) for k, v in exp["keys"].items()}
            _, got = verify_paths([os.path.join(vdir, case)], keys)
            results.append((case, got == exp["problems"], f"got {got}, expected {exp['problems']}"))
    with open(os.path.join(vdir, "canon.jsonl"), "rb") as f:
        events = f.read().split(b"\n")[:-1]
    with open(os.path.join(vdir, "canon.expected.jsonl"), "rb") as f:
        expected = [json.loads(x) for x in f.read().split(b"\n")[:-1]]
    results.append(("canon line count", len(events) == len(expected), f"{len(events)} vs {len(expected)}"))
    for i, (raw, exp) in enumerate(zip(events, expected), start=1):
        ev = parse_json(raw.decode("utf-8"))
        body = event_canonical_bytes(ev)
        digest = hashlib.sha256(body).hexdigest()
        match = body == exp["canonical"].encode("utf-8") and digest == exp["hash"] == ev["hash"]
        results.append((f"canon line {i}", match, f"got {body!r} {digest}"))
    _, probs = verify_paths([os.path.join(vdir, "canon.jsonl")], {})
    results.append(("canon.jsonl as a stream", probs == [], f"got {probs}"))
    for name, match, detail in results:
        print(("ok   " if match else "FAIL ") + name + ("" if match else ": " + detail))
    return 0 if all(m for _, m, _ in results) else 1


def main(argv):
    ap = argparse.ArgumentParser(description="Verify audit-log streams (FORMAT.md v1).")
    ap.add_argument("--key", action="append", default=[], metavar="KID=HEXKEY")
    ap.add_argument("--self-test", metavar="VECTORS_DIR")
    ap.add_argument("paths", nargs="*", metavar="PATH")
    args = ap.parse_args(argv)                 # usage errors exit 2
    if args.self_test:
        if args.paths or args.key or not os.path.isdir(args.self_test):
            ap.error("--self-test takes one vectors directory and nothing else")
        return self_test(args.self_test)
    keys = {}
    for spec in args.key:
        kid, _, hexkey = spec.partition("=")
        try:
            keys[kid] = bytes.fromhex(hexkey)
        except ValueError:
            hexkey = ""
        if not kid or not hexkey:
            ap.error(f"bad --key {spec!r}: want KID=HEXKEY")
    if not args.paths:
        ap.error("no PATH given")
    for p in args.paths:
        if not (os.path.isdir(p) or os.path.isfile(p)):
            ap.error(f"no such file or directory: {p}")
    try:
        events, problems = verify_paths(args.paths, keys)
    except OSError as e:
        ap.error(str(e))
    print(json.dumps({"events": events, "problems": problems}))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
