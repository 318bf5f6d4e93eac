#!/usr/bin/env python3
"""Checks auditship's signed checkpoints from docs/FORMAT.md alone ("Signed
checkpoints"), with the `cryptography` package's Ed25519.

Usage: independent_checkpoint.py PUBKEY.pem FILE...   (JSON lines; every line whose
metadata.source_event is "checkpoint" is checked), or
       independent_checkpoint.py --vector VECTOR.json  (the test vector: key seed,
fields, signing input and signature).

Prints one JSON object: {"checked": n, "bad": [[file, line, why], ...], "kid": ...}.
Exit 0 when every checkpoint verifies, 1 otherwise.
"""
import hashlib
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

DOMAIN = b"auditship checkpoint v1\n"


def signing_input(c):
    body = {"hash": c["hash"], "kid": c["kid"], "seq": c["seq"], "stream": c["stream"]}
    # RFC 8785 for these members: sorted keys, no white space, UTF-8, integers as is.
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return DOMAIN + text.encode("utf-8")


def kid_of(public):
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:16]


def check(public, c):
    if c.get("kid") != kid_of(public):
        return "signed by %r, not by this key" % c.get("kid")
    try:
        public.verify(bytes.fromhex(c["sig"]), signing_input(c))
    except (InvalidSignature, ValueError):
        return "signature does not verify"
    return None


def vector(path):
    v = json.load(open(path))
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(v["seed"]))
    public = key.public_key()
    c = v["checkpoint"]
    bad = []
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if raw.hex() != v["public_key"]:
        bad.append([path, 0, "public key differs"])
    if kid_of(public) != c["kid"]:
        bad.append([path, 0, "kid differs"])
    if signing_input(c).hex() != v["signing_input_hex"]:
        bad.append([path, 0, "signing input differs"])
    if key.sign(signing_input(c)).hex() != c["sig"]:
        bad.append([path, 0, "signature differs"])
    why = check(public, c)
    if why:
        bad.append([path, 0, why])
    return {"checked": 1, "bad": bad, "kid": kid_of(public)}


def files(pem_path, paths):
    public = serialization.load_pem_public_key(open(pem_path, "rb").read())
    assert isinstance(public, Ed25519PublicKey)
    checked, bad = 0, []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if '"checkpoint"' not in line:
                    continue
                event = json.loads(line)
                meta = event.get("metadata") or {}
                if meta.get("source_event") != "checkpoint":
                    continue
                checked += 1
                why = check(public, meta["checkpoint"])
                if why:
                    bad.append([path, n, why])
    return {"checked": checked, "bad": bad, "kid": kid_of(public)}


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--vector":
        result = vector(sys.argv[2])
    elif len(sys.argv) >= 3:
        result = files(sys.argv[1], sys.argv[2:])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0 if not result["bad"] and result["checked"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
