#!/usr/bin/env python3
"""Independent verifier for a `wharf audit export` directory (and optionally a proof).

Written from the specs, not from wharf's code: RFC 9162 (Merkle tree, proof verification),
C2SP tlog-checkpoint and signed-note (Ed25519). Needs Python 3.8+ and `cryptography`
(pip install cryptography).

usage: verify_ledger.py EXPORT_DIR [--proof PROOF_JSON]
  EXPORT_DIR  holds entries.jsonl, checkpoint, verifier.key
  PROOF_JSON  the output of `wharf audit prove SEQ --output json`
Exit 0 when everything verifies; 1 with a message naming what does not.
"""

import base64
import hashlib
import json
import sys
from pathlib import Path

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
except ImportError:
    sys.exit("verify_ledger.py needs the `cryptography` package: pip install cryptography")


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def mth(leaves):
    """RFC 9162 §2.1.1 Merkle Tree Hash, recursively, from leaf hashes."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def verify_inclusion(index, size, leaf, path, root):
    """RFC 9162 §2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def parse_verifier_key(text):
    name, key_id, key = text.strip().split("+", 2)
    raw = base64.b64decode(key)
    if raw[0] != 0x01 or len(raw) != 33:
        raise ValueError("not an Ed25519 verifier key")
    expected = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
    if expected.hex() != key_id.lower():
        raise ValueError("verifier key ID does not match name and key")
    return name, expected, Ed25519PublicKey.from_public_bytes(raw[1:])


def open_checkpoint(note, key):
    """Checks the signed note and returns (origin, size, root) of the checkpoint."""
    name, key_id, public = key
    text, _, signatures = note.rpartition("\n\n")
    text += "\n"
    for line in signatures.splitlines():
        if not line.startswith("\u2014 "):
            raise ValueError(f"bad signature line {line!r}")
        sig_name, blob = line[2:].split(" ", 1)
        blob = base64.b64decode(blob)
        if sig_name == name and blob[:4] == key_id:
            try:
                public.verify(blob[4:], text.encode())
            except InvalidSignature:
                raise ValueError("checkpoint signature does not verify")
            origin, size, root = text.split("\n")[:3]
            if origin != name:
                raise ValueError("checkpoint origin is not the key name")
            return origin, int(size), base64.b64decode(root)
    raise ValueError(f"no signature by key {name}")


def fail(message):
    print(f"FAILED: {message}")
    sys.exit(1)


def main(argv):
    if len(argv) not in (2, 4) or (len(argv) == 4 and argv[2] != "--proof"):
        sys.exit(__doc__)
    export = Path(argv[1])
    key = parse_verifier_key((export / "verifier.key").read_text())
    try:
        origin, size, root = open_checkpoint((export / "checkpoint").read_text(), key)
    except ValueError as error:
        fail(str(error))
    leaves = []
    for number, line in enumerate((export / "entries.jsonl").read_text().splitlines()):
        record = json.loads(line)
        leaf = record["leaf"].encode("utf-8")
        if record["seq"] != number or json.loads(leaf) != record["entry"]:
            fail(f"entry seq {number}: leaf bytes do not match the entry")
        leaves.append(leaf_hash(leaf))
    if len(leaves) < size:
        fail(f"checkpoint covers {size} entries, export has {len(leaves)}")
    if mth(leaves[:size]) != root:
        fail(f"the entries do not hash to the checkpoint root (size {size})")
    print(f"ok: checkpoint {origin} size {size} signed and matches {len(leaves)} entries")
    if len(argv) == 4:
        proof = json.loads(Path(argv[3]).read_text())
        leaf = leaf_hash(proof["leaf"].encode("utf-8"))
        path = [bytes.fromhex(h) for h in proof["proof"]]
        if proof["tree_size"] != size:
            fail(f"proof is for size {proof['tree_size']}, checkpoint for {size}")
        if not verify_inclusion(proof["seq"], size, leaf, path, root):
            fail(f"inclusion proof for seq {proof['seq']} does not verify")
        print(f"ok: inclusion proof for seq {proof['seq']} verifies against the checkpoint")


if __name__ == "__main__":
    main(sys.argv)
