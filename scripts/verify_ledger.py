#!/usr/bin/env python3
"""Independent verifier for a `wharf audit export` directory (and optionally a proof).

Written from the specs, not from wharf's code: RFC 9162 (Merkle tree, proof verification),
C2SP tlog-checkpoint and signed-note (Ed25519). Needs Python 3.8+ and `cryptography`
(pip install cryptography).

usage: verify_ledger.py EXPORT_DIR [--proof PROOF_JSON]
       verify_ledger.py --bundle BUNDLE_JSON [--key VERIFIER_KEY]
  EXPORT_DIR    holds entries.jsonl, checkpoint, verifier.key
  PROOF_JSON    the output of `wharf audit prove SEQ --output json`
  BUNDLE_JSON   a promotion bundle (`wharf promote export`): ledger entries with inclusion
                proofs against a signed checkpoint; checked with VERIFIER_KEY (the source
                ledger's `NAME+KEYID+BASE64`), else with the bundle's own key (said so)
Exit 0 when everything verifies; 1 with a message naming what does not; 2 when the input
cannot be read.
"""

import base64
import hashlib
import json
import sys
from pathlib import Path

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
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


BUNDLE_FORMAT = "wharf-promotion/1"


def judge_bundle(entries, service, version):
    """The evidence rules: every entry is a deploy milestone of SERVICE naming VERSION or a
    passing gate check for SERVICE@VERSION; one rollout has a deploy.start followed by a
    deploy.succeeded; no rollout cited rolled back. Returns (rollout, gates)."""
    rollouts, gates = {}, []
    for seq, entry in entries:
        action, target = entry.get("action"), entry.get("target")
        details = entry.get("details") or {}
        if action == "gate.check":
            gate = details.get("gate")
            if details.get("service") != service or details.get("version") != version:
                fail(f"entry seq {seq}: a gate check for another service or version")
            if target != f"{gate}/{service}@{version}":
                fail(f"entry seq {seq}: gate check target does not match its details")
            if details.get("verdict") != "pass":
                fail(f"entry seq {seq}: gate {gate} did not pass")
            if gate not in gates:
                gates.append(gate)
            continue
        if action not in ("deploy.start", "deploy.succeeded", "deploy.rollback", "deploy.rolled_back"):
            fail(f"entry seq {seq}: a {action} entry is not evidence of a rollout")
        if target != service or details.get("version") != version:
            fail(f"entry seq {seq}: a {action} of {target} version {details.get('version')}, not {service}@{version}")
        rollout = details.get("rollout")
        if not isinstance(rollout, int) or isinstance(rollout, bool):
            fail(f"entry seq {seq}: no rollout number")
        if action in ("deploy.rollback", "deploy.rolled_back"):
            fail(f"entry seq {seq}: rollout {rollout} of {service}@{version} rolled back")
        rollouts.setdefault(rollout, {})[action] = seq
    for rollout in sorted(rollouts, reverse=True):
        seqs = rollouts[rollout]
        if "deploy.start" in seqs and "deploy.succeeded" in seqs and seqs["deploy.start"] < seqs["deploy.succeeded"]:
            return rollout, gates
    fail(f"the entries show no successful rollout of {service}@{version}")


def verify_bundle(path, key_text):
    try:
        bundle = json.loads(Path(path).read_text(encoding="utf-8"))
        fields = ("format", "stack", "env", "service", "version", "verifier_key", "checkpoint", "entries")
        if not isinstance(bundle, dict) or any(f not in bundle for f in fields):
            raise ValueError(f"a bundle is an object with {', '.join(fields)}")
    except (OSError, ValueError) as error:
        print(f"error: {path}: {error}", file=sys.stderr)
        sys.exit(2)
    if bundle["format"] != BUNDLE_FORMAT:
        fail(f"unknown bundle format {bundle['format']!r}")
    if key_text is None:
        print("note: no --key: checked with the bundle's own key, which proves only self-consistency")
        key_text = bundle["verifier_key"]
    try:
        key = parse_verifier_key(key_text)
    except (ValueError, IndexError) as error:
        print(f"error: the verifier key is malformed: {error}", file=sys.stderr)
        sys.exit(2)
    try:
        own = parse_verifier_key(str(bundle["verifier_key"]))
    except (ValueError, IndexError):
        own = None
    def same(a, b):
        raw = lambda k: k.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return a[:2] == b[:2] and raw(a[2]) == raw(b[2])

    if own is None or not same(own, key):
        fail("the bundle is signed by another key than the one given")
    try:
        origin, size, root = open_checkpoint(bundle["checkpoint"], key)
    except ValueError as error:
        fail(f"checkpoint: {error}")
    if not bundle["entries"]:
        fail("the bundle holds no entries")
    entries = []
    for proven in bundle["entries"]:
        if not isinstance(proven, dict) or not all(
            k in proven for k in ("seq", "leaf", "leaf_hash", "proof")
        ):
            fail("an entry is not an object with seq, leaf, leaf_hash and proof")
        seq = proven["seq"]
        if not isinstance(seq, int) or isinstance(seq, bool) or not isinstance(proven["leaf"], str):
            fail("an entry's seq is not a number or its leaf not text")
        leaf = proven["leaf"].encode("utf-8")
        digest = leaf_hash(leaf)
        if digest.hex() != str(proven["leaf_hash"]).lower():
            fail(f"entry seq {seq}: leaf hash is not SHA-256(0x00 || leaf): the entry was altered")
        try:
            path_hashes = [bytes.fromhex(h) for h in proven["proof"]]
        except ValueError:
            fail(f"entry seq {seq}: a proof hash is not hex")
        if not verify_inclusion(seq, size, digest, path_hashes, root):
            fail(f"entry seq {seq}: inclusion proof does not lead to the checkpoint root")
        try:
            entry = json.loads(leaf)
        except ValueError:
            fail(f"entry seq {seq}: the leaf is not JSON")
        if not isinstance(entry, dict) or entry.get("seq") != seq:
            fail(f"entry seq {seq}: the leaf is entry seq {entry.get('seq')}")
        entries.append((seq, entry))
    rollout, gates = judge_bundle(entries, bundle["service"], bundle["version"])
    print(
        f"ok: bundle proves {bundle['service']}@{bundle['version']} rolled out in "
        f"{bundle['env']} (rollout {rollout}; gates passed: {', '.join(gates) or 'none'}); "
        f"{len(entries)} entries in checkpoint {origin} size {size}"
    )


def main(argv):
    if len(argv) >= 3 and argv[1] == "--bundle":
        if len(argv) == 3:
            return verify_bundle(argv[2], None)
        if len(argv) == 5 and argv[3] == "--key":
            return verify_bundle(argv[2], argv[4])
        sys.exit(__doc__)
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
