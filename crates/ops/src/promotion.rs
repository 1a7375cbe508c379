//! Promotion evidence between environments: a **bundle** carries the ledger entries showing a
//! version's successful rollout of a service in one environment (staging), and the passing
//! `gate.check` verdicts for it, each with an RFC 9162 inclusion proof against a C2SP
//! checkpoint signed by that ledger's Ed25519 key. Another environment (prod), on another
//! machine with its own ledger, verifies it with nothing but the key its manifest names
//! (`require.promoted_from`), records it (`promotion.import`), and its control plane refuses a
//! deploy of a version no such import vouches for.
//!
//! What counts as a successful rollout: a `deploy.start` and a `deploy.succeeded` of one
//! rollout (same `rollout` number) of the service, both naming the version. The rollout state
//! machine writes `deploy.succeeded` only when a rollout finished without rolling back, and a
//! rollout that rolled back writes `deploy.rollback` / `deploy.rolled_back` instead — which a
//! bundle may not carry for the rollout it cites.
//!
//! The verification is pure ([`verify`]); `scripts/verify_ledger.py --bundle` is its
//! independent twin, written from the same specs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wharf_ledger::{
    Checkpoint, Entry, KnownAction, Ledger, NoteError, RawEntry, SignedCheckpoint, Storage,
    VerifierKey, from_hex, hash_from_slice, leaf_hash, to_hex, verify_inclusion,
};
use wharf_store::{EntryFilter, Store};

use crate::{Actor, OpsError, append};

/// The bundle format this build writes and reads. A new shape gets a new number.
pub const FORMAT: &str = "wharf-promotion/1";

/// The largest bundle read: a handful of entries with proofs is a few KiB.
pub const MAX_BUNDLE_BYTES: usize = 4 << 20;

/// A promotion bundle as written to a file (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    /// [`FORMAT`].
    pub format: String,
    /// The manifest's `name` in the source environment.
    pub stack: String,
    /// The environment the bundle comes from (`--env` of the export).
    pub env: String,
    pub service: String,
    pub version: String,
    /// The source ledger's verifier key, `NAME+KEYID+BASE64` (a convenience: the verifying
    /// side should use the key it already trusts).
    pub verifier_key: String,
    /// The signed C2SP checkpoint every proof leads to.
    pub checkpoint: String,
    /// The evidence, oldest first.
    pub entries: Vec<ProvenEntry>,
}

/// One ledger entry with its inclusion proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvenEntry {
    /// The entry's sequence number: its leaf index.
    pub seq: u64,
    /// The leaf bytes: the entry as RFC 8785 canonical JSON, exactly as hashed into the tree.
    pub leaf: String,
    /// SHA-256(0x00 ‖ leaf), lowercase hex.
    pub leaf_hash: String,
    /// The RFC 9162 inclusion path in the checkpoint's tree, leaf side first, lowercase hex.
    pub proof: Vec<String>,
}

/// Why a bundle does not verify. Each names what failed, so a tampered bundle says where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("unknown bundle format {0:?} (this wharf reads {FORMAT:?})")]
    Format(String),
    #[error("the verifier key is malformed: {0}")]
    Key(String),
    #[error("the bundle is signed by key {bundle}, not by the key wanted ({wanted})")]
    OtherKey { bundle: String, wanted: String },
    #[error("the checkpoint does not verify with key {key}: {reason}")]
    Checkpoint { key: String, reason: String },
    #[error("the bundle holds no entries")]
    Empty,
    #[error("entry seq {seq}: the leaf hash is not SHA-256(0x00 ‖ leaf): the entry was altered")]
    LeafHash { seq: u64 },
    #[error(
        "entry seq {seq}: the inclusion proof does not lead to the checkpoint's root ({reason})"
    )]
    Proof { seq: u64, reason: String },
    #[error("entry seq {seq}: the leaf is not a ledger entry: {reason}")]
    Leaf { seq: u64, reason: String },
    #[error("entry seq {seq}: not evidence for {service}@{version}: {reason}")]
    Stray {
        seq: u64,
        service: String,
        version: String,
        reason: String,
    },
    #[error("rollout {rollout} of {service}@{version} rolled back (entry seq {seq})")]
    RolledBack {
        rollout: u64,
        service: String,
        version: String,
        seq: u64,
    },
    #[error(
        "the entries show no successful rollout of {service}@{version} (a `deploy.start` and a `deploy.succeeded` of one rollout)"
    )]
    NoRollout { service: String, version: String },
}

/// Where the key a bundle was checked with came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// The caller's (`--key`, or the manifest's `require.promoted_from.key`).
    Given,
    /// The bundle's own `verifier_key`: proves only that the bundle is self-consistent.
    Bundle,
}

/// What a verified bundle proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub stack: String,
    pub env: String,
    pub service: String,
    pub version: String,
    /// The key the checkpoint verified with, in its canonical text form.
    pub key: String,
    pub key_source: KeySource,
    pub checkpoint: Checkpoint,
    /// The rollout number of the successful rollout.
    pub rollout: u64,
    /// The gates with a passing verdict for the version.
    pub gates: Vec<String>,
    /// The entries' sequence numbers.
    pub seqs: Vec<u64>,
}

/// Why a bundle's bytes are not a bundle: the position in the file, for exit code 2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Reads a bundle (strictly: unknown fields are refused).
pub fn parse(bytes: &[u8]) -> Result<Bundle, ParseError> {
    if bytes.len() > MAX_BUNDLE_BYTES {
        return Err(ParseError {
            line: 1,
            column: 1,
            message: format!(
                "{} bytes is larger than a promotion bundle can be ({MAX_BUNDLE_BYTES})",
                bytes.len()
            ),
        });
    }
    serde_json::from_slice(bytes).map_err(|e| ParseError {
        line: e.line().max(1),
        column: e.column().max(1),
        message: e
            .to_string()
            .split(" at line ")
            .next()
            .unwrap_or("")
            .to_owned(),
    })
}

/// SHA-256 of the bundle's bytes, lowercase hex (what `promotion.import` records).
pub fn sha256_hex(bytes: &[u8]) -> String {
    to_hex(&Sha256::digest(bytes))
}

/// An entry read back from a leaf: the fields the evidence rules look at.
struct LeafEntry {
    seq: u64,
    action: String,
    target: String,
    details: Value,
}

fn read_leaf(proven: &ProvenEntry) -> Result<LeafEntry, BundleError> {
    let bad = |reason: String| BundleError::Leaf {
        seq: proven.seq,
        reason,
    };
    let value: Value = serde_json::from_str(&proven.leaf).map_err(|e| bad(e.to_string()))?;
    let text = |key: &str| {
        value
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| bad(format!("no string `{key}`")))
    };
    let seq = value
        .get("seq")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad("no `seq`".into()))?;
    if seq != proven.seq {
        return Err(bad(format!("it is entry seq {seq}")));
    }
    Ok(LeafEntry {
        seq,
        action: text("action")?,
        target: text("target")?,
        details: value.get("details").cloned().unwrap_or(Value::Null),
    })
}

/// Verifies `bundle`: the checkpoint's signature with `wanted` (or, when `None`, with the
/// bundle's own key — which proves only self-consistency, and the result says so), each
/// entry's leaf hash and inclusion proof against the checkpoint's root, and that the entries
/// show a successful rollout of the service at the version the bundle claims (plus, for any
/// gate verdict it carries, a pass for that service and version).
pub fn verify(bundle: &Bundle, wanted: Option<&VerifierKey>) -> Result<Verified, BundleError> {
    if bundle.format != FORMAT {
        return Err(BundleError::Format(bundle.format.clone()));
    }
    let (key, key_source) = match wanted {
        Some(key) => {
            if VerifierKey::parse(&bundle.verifier_key).ok().as_ref() != Some(key) {
                return Err(BundleError::OtherKey {
                    bundle: bundle.verifier_key.clone(),
                    wanted: key.to_string(),
                });
            }
            (key.clone(), KeySource::Given)
        }
        None => (
            VerifierKey::parse(&bundle.verifier_key)
                .map_err(|e| BundleError::Key(e.to_string()))?,
            KeySource::Bundle,
        ),
    };
    let checkpoint = Checkpoint::open(&bundle.checkpoint, &key).map_err(|e: NoteError| {
        BundleError::Checkpoint {
            key: key.to_string(),
            reason: e.to_string(),
        }
    })?;
    if bundle.entries.is_empty() {
        return Err(BundleError::Empty);
    }
    let mut leaves = Vec::with_capacity(bundle.entries.len());
    for proven in &bundle.entries {
        let seq = proven.seq;
        let hash = leaf_hash(proven.leaf.as_bytes());
        if to_hex(&hash) != proven.leaf_hash.to_ascii_lowercase() {
            return Err(BundleError::LeafHash { seq });
        }
        let path = proven
            .proof
            .iter()
            .map(|h| from_hex(h).and_then(|b| hash_from_slice(&b)))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| BundleError::Proof {
                seq,
                reason: "a hash is not 64 hex digits".into(),
            })?;
        verify_inclusion(seq, checkpoint.size, &hash, &path, &checkpoint.root).map_err(|e| {
            BundleError::Proof {
                seq,
                reason: e.to_string(),
            }
        })?;
        leaves.push(read_leaf(proven)?);
    }
    let (rollout, gates) = judge(&leaves, &bundle.service, &bundle.version)?;
    Ok(Verified {
        stack: bundle.stack.clone(),
        env: bundle.env.clone(),
        service: bundle.service.clone(),
        version: bundle.version.clone(),
        key: key.to_string(),
        key_source,
        checkpoint,
        rollout,
        gates,
        seqs: leaves.iter().map(|l| l.seq).collect(),
    })
}

const START: &str = "deploy.start";
const SUCCEEDED: &str = "deploy.succeeded";
const ROLLBACK: [&str; 2] = ["deploy.rollback", "deploy.rolled_back"];
const GATE: &str = "gate.check";

/// The rollout number a deploy entry of `version` belongs to (`None`: another version, or no
/// number).
fn rollout_of(details: &Value, version: &str) -> Option<u64> {
    (details.get("version").and_then(Value::as_str) == Some(version))
        .then(|| details.get("rollout").and_then(Value::as_u64))
        .flatten()
}

/// Whether a `gate.check` entry is a pass for `service@version` (`Err`: why not).
fn gate_pass(entry: &LeafEntry, service: &str, version: &str) -> Result<String, String> {
    let field = |key: &str| entry.details.get(key).and_then(Value::as_str);
    let gate = field("gate").ok_or("the gate check names no gate")?;
    if field("service") != Some(service) || field("version") != Some(version) {
        return Err(format!(
            "a gate check for {}@{}",
            field("service").unwrap_or("?"),
            field("version").unwrap_or("?")
        ));
    }
    if entry.target != format!("{gate}/{service}@{version}") {
        return Err(format!(
            "target `{}` does not match its details",
            entry.target
        ));
    }
    if field("verdict") != Some("pass") {
        return Err(format!("gate `{gate}` did not pass"));
    }
    Ok(gate.to_owned())
}

/// The evidence rules over the entries (in any order): every entry is a deploy milestone of
/// the service naming the version, or a passing gate check for it; one rollout has both a
/// start and a success, and no rollout cited rolled back.
fn judge(
    entries: &[LeafEntry],
    service: &str,
    version: &str,
) -> Result<(u64, Vec<String>), BundleError> {
    let stray = |entry: &LeafEntry, reason: String| BundleError::Stray {
        seq: entry.seq,
        service: service.to_owned(),
        version: version.to_owned(),
        reason,
    };
    // rollout → (start seq, success seq)
    let mut rollouts: BTreeMap<u64, (Option<u64>, Option<u64>)> = BTreeMap::new();
    let mut gates = Vec::new();
    for entry in entries {
        let action = entry.action.as_str();
        if action == GATE {
            let gate = gate_pass(entry, service, version).map_err(|why| stray(entry, why))?;
            if !gates.contains(&gate) {
                gates.push(gate);
            }
            continue;
        }
        if ![START, SUCCEEDED].contains(&action) && !ROLLBACK.contains(&action) {
            return Err(stray(entry, format!("a `{action}` entry")));
        }
        if entry.target != service {
            return Err(stray(
                entry,
                format!("a `{action}` of service `{}`", entry.target),
            ));
        }
        let Some(rollout) = rollout_of(&entry.details, version) else {
            return Err(stray(
                entry,
                format!("a `{action}` of another version or without a rollout number"),
            ));
        };
        if ROLLBACK.contains(&action) {
            return Err(BundleError::RolledBack {
                rollout,
                service: service.to_owned(),
                version: version.to_owned(),
                seq: entry.seq,
            });
        }
        let slot = rollouts.entry(rollout).or_default();
        if action == START {
            slot.0 = Some(entry.seq);
        } else {
            slot.1 = Some(entry.seq);
        }
    }
    rollouts
        .iter()
        .rev()
        .find_map(|(rollout, seqs)| match seqs {
            (Some(start), Some(done)) if start < done => Some(*rollout),
            _ => None,
        })
        .map(|rollout| (rollout, gates))
        .ok_or_else(|| BundleError::NoRollout {
            service: service.to_owned(),
            version: version.to_owned(),
        })
}

/// The entries of this ledger that make the evidence for `service@version`: the start and
/// success of its latest rollout that succeeded (never one that rolled back), and the latest
/// passing verdict of each gate for it. `NotFound` when there is no successful rollout.
pub fn evidence(store: &Store, service: &str, version: &str) -> Result<Vec<Entry>, OpsError> {
    let read = |action: &str, target: Option<String>| -> Result<Vec<Entry>, OpsError> {
        let filter = EntryFilter {
            action: Some(action.to_owned()),
            target,
        };
        store
            .ledger_entries(&filter)?
            .into_iter()
            .map(|raw: RawEntry| Entry::try_from(raw).map_err(OpsError::from))
            .collect()
    };
    let mut deploys = read(START, Some(service.to_owned()))?;
    deploys.extend(read(SUCCEEDED, Some(service.to_owned()))?);
    let mut rolled_back = Vec::new();
    for action in ROLLBACK {
        rolled_back.extend(
            read(action, Some(service.to_owned()))?
                .iter()
                .filter_map(|e| e.details.get("rollout").and_then(Value::as_u64)),
        );
    }
    let mut rollouts: BTreeMap<u64, (Option<Entry>, Option<Entry>)> = BTreeMap::new();
    for entry in deploys {
        let Some(rollout) = rollout_of(&entry.details, version) else {
            continue;
        };
        let slot = rollouts.entry(rollout).or_default();
        if entry.action.as_str() == START {
            slot.0 = Some(entry);
        } else {
            slot.1 = Some(entry);
        }
    }
    let chosen = rollouts
        .into_iter()
        .rev()
        .filter(|(rollout, _)| !rolled_back.contains(rollout))
        .find_map(|(_, pair)| match pair {
            (Some(start), Some(done)) if start.seq < done.seq => Some(vec![start, done]),
            _ => None,
        });
    let Some(mut chosen) = chosen else {
        return Err(OpsError::NotFound(format!(
            "this ledger shows no successful rollout of {service}@{version} (a deploy that rolled back does not count); deploy it here first"
        )));
    };
    let mut latest_pass: BTreeMap<String, Entry> = BTreeMap::new();
    for entry in read(GATE, None)? {
        let details = &entry.details;
        let field = |key: &str| details.get(key).and_then(Value::as_str);
        if field("service") == Some(service)
            && field("version") == Some(version)
            && field("verdict") == Some("pass")
            && let Some(gate) = field("gate")
        {
            latest_pass.insert(gate.to_owned(), entry.clone());
        }
    }
    chosen.extend(latest_pass.into_values());
    chosen.sort_by_key(|e| e.seq);
    Ok(chosen)
}

/// Builds the bundle of `entries` with proofs against `checkpoint` (which must cover them).
pub fn build<S: Storage>(
    ledger: &Ledger<S>,
    source: (&str, &str),
    service: &str,
    version: &str,
    verifier: &VerifierKey,
    checkpoint: &SignedCheckpoint,
    entries: &[Entry],
) -> Result<Bundle, OpsError> {
    let size = checkpoint.checkpoint.size;
    let mut proven = Vec::with_capacity(entries.len());
    for entry in entries {
        let proof = ledger.prove_inclusion(entry.seq, size)?;
        let leaf = String::from_utf8(entry.leaf_bytes())
            .map_err(|e| OpsError::Invalid(format!("entry seq {}: {e}", entry.seq)))?;
        proven.push(ProvenEntry {
            seq: entry.seq,
            leaf_hash: to_hex(&leaf_hash(leaf.as_bytes())),
            leaf,
            proof: proof.path.iter().map(|h| to_hex(h)).collect(),
        });
    }
    Ok(Bundle {
        format: FORMAT.to_owned(),
        stack: source.0.to_owned(),
        env: source.1.to_owned(),
        service: service.to_owned(),
        version: version.to_owned(),
        verifier_key: verifier.to_string(),
        checkpoint: checkpoint.note.clone(),
        entries: proven,
    })
}

/// What `promotion.import` records, and what a deploy's check reads back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportDetails {
    pub bundle_sha256: String,
    pub stack: String,
    pub env: String,
    pub service: String,
    pub version: String,
    /// The source ledger's verifier key the bundle verified with.
    pub key: String,
    /// The signed checkpoint the evidence is proved against.
    pub checkpoint: String,
    pub rollout: u64,
    pub entries: Vec<u64>,
    pub gates: Vec<String>,
}

/// `wharf promote import`: verifies the bundle's bytes with `wanted` (the key the importing
/// environment trusts; `None`: the bundle's own, for an environment that names none) and
/// appends `promotion.import` (target `SERVICE@VERSION`). A bundle that does not verify
/// changes nothing.
pub fn import(
    store: &mut Store,
    actor: &Actor,
    bytes: &[u8],
    wanted: Option<&str>,
) -> Result<(Entry, ImportDetails), OpsError> {
    let bundle = parse(bytes).map_err(|e| OpsError::Invalid(format!("unreadable bundle: {e}")))?;
    let wanted = wanted
        .map(VerifierKey::parse)
        .transpose()
        .map_err(|e| OpsError::Invalid(format!("the key to verify with: {e}")))?;
    let verified = verify(&bundle, wanted.as_ref())
        .map_err(|e| OpsError::Invalid(format!("the bundle does not verify: {e}")))?;
    let details = ImportDetails {
        bundle_sha256: sha256_hex(bytes),
        stack: verified.stack,
        env: verified.env,
        service: verified.service,
        version: verified.version,
        key: verified.key,
        checkpoint: bundle.checkpoint,
        rollout: verified.rollout,
        entries: verified.seqs,
        gates: verified.gates,
    };
    let target = format!("{}@{}", details.service, details.version);
    let value = serde_json::to_value(&details)
        .map_err(|e| OpsError::Invalid(format!("a promotion record: {e}")))?;
    let entry = append(store, actor, KnownAction::PromotionImport, &target, value)?;
    Ok((entry, details))
}

/// The `promotion.import` entries recorded for `service@version`.
pub fn imports(store: &Store, service: &str, version: &str) -> Result<Vec<Value>, OpsError> {
    let filter = EntryFilter {
        action: Some(KnownAction::PromotionImport.as_str().to_owned()),
        target: Some(format!("{service}@{version}")),
    };
    Ok(store
        .ledger_entries(&filter)?
        .into_iter()
        .filter_map(|raw| serde_json::from_str(&raw.details).ok())
        .collect())
}

/// The deploy check of `require.promoted_from`, pure: `Ok` when one of `imports` (the
/// `promotion.import` details recorded for the version) came from `from_env` and verified with
/// `key`; otherwise why not, in words an operator can act on.
pub fn deploy_check(
    imports: &[Value],
    from_env: &str,
    key: &str,
    service: &str,
    version: &str,
) -> Result<(), String> {
    let same_key = |recorded: &str| match (VerifierKey::parse(recorded), VerifierKey::parse(key)) {
        (Ok(a), Ok(b)) => a == b,
        _ => recorded.trim() == key.trim(),
    };
    let records: Vec<ImportDetails> = imports
        .iter()
        .filter_map(|v| serde_json::from_value(v.clone()).ok())
        .filter(|d: &ImportDetails| d.service == service && d.version == version)
        .collect();
    if records
        .iter()
        .any(|d| d.env == from_env && same_key(&d.key))
    {
        return Ok(());
    }
    let how = format!(
        "run `wharf promote export {service} {version} --env {from_env}` there and `wharf promote import BUNDLE` here"
    );
    if records.is_empty() {
        return Err(format!(
            "no verified promotion bundle for {service}@{version} from `{from_env}` was imported; {how}"
        ));
    }
    let seen: Vec<String> = records
        .iter()
        .map(|d| format!("from `{}` signed by {}", d.env, d.key))
        .collect();
    Err(format!(
        "the bundle(s) imported for {service}@{version} ({}) are not from `{from_env}` signed by the key it requires, {key}; {how}",
        seen.join(", ")
    ))
}

/// The evidence as JSON for `--output json` and the API's answer.
pub fn summary(verified: &Verified) -> Value {
    json!({
        "stack": verified.stack, "env": verified.env, "service": verified.service,
        "version": verified.version, "key": verified.key,
        "key_source": match verified.key_source { KeySource::Given => "given", KeySource::Bundle => "bundle" },
        "checkpoint_size": verified.checkpoint.size, "rollout": verified.rollout,
        "gates": verified.gates, "entries": verified.seqs,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wharf_ledger::SignerKey;

    use super::*;
    use crate::{OpsErrorKind, audit, gates};

    const ACTOR: &str = "tester";

    fn deploy(store: &mut Store, action: KnownAction, rollout: u64, version: &str) {
        append(
            store,
            &Actor(ACTOR.into()),
            action,
            "api",
            json!({"rollout": rollout, "version": version}),
        )
        .unwrap();
    }

    fn gate(store: &mut Store, name: &str, version: &str, verdict: &str) {
        gates::record(
            store,
            &Actor(ACTOR.into()),
            json!({"gate": name, "service": "api", "version": version, "verdict": verdict,
                "conditions": [{"name": "c", "verdict": verdict, "measured": "1"}],
                "inputs": [{"path": "x.sarif", "sha256": "0".repeat(64), "format": "sarif"}]}),
        )
        .unwrap();
    }

    /// A staging ledger: 2.0 rolled out (rollout 1) with a passing and a failing gate,
    /// 3.0 rolled back (rollout 2), 2.0 again rolled back (rollout 3); the bundle for api@2.0 and the ledger's key.
    struct Staging {
        _dir: tempfile::TempDir,
        store: Store,
        key: VerifierKey,
        bundle: Bundle,
    }

    fn staging() -> Staging {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open_for_writing(dir.path()).unwrap();
        audit::note(&mut store, &Actor(ACTOR.into()), "before").unwrap();
        gate(&mut store, "release", "2.0", "pass");
        deploy(&mut store, KnownAction::DeployStart, 1, "2.0");
        deploy(&mut store, KnownAction::DeployStep, 1, "2.0");
        deploy(&mut store, KnownAction::DeploySucceeded, 1, "2.0");
        gate(&mut store, "load", "2.0", "fail");
        deploy(&mut store, KnownAction::DeployStart, 2, "3.0");
        deploy(&mut store, KnownAction::DeployRollback, 2, "3.0");
        deploy(&mut store, KnownAction::DeployRolledBack, 2, "3.0");
        // 2.0 again later, rolled back: the earlier success still stands, this one is no evidence.
        deploy(&mut store, KnownAction::DeployStart, 3, "2.0");
        deploy(&mut store, KnownAction::DeployRollback, 3, "2.0");
        let signed = audit::checkpoint(&mut store, dir.path(), || "wharf/staging".into()).unwrap();
        let key = audit::signer(&mut store, dir.path(), || unreachable!())
            .unwrap()
            .verifier();
        let entries = evidence(&store, "api", "2.0").unwrap();
        let bundle = build(
            &Ledger::new(&mut store),
            ("shop", "staging"),
            "api",
            "2.0",
            &key,
            &signed,
            &entries,
        )
        .unwrap();
        Staging {
            _dir: dir,
            store,
            key,
            bundle,
        }
    }

    #[test]
    fn evidence_is_the_successful_rollout_and_the_passing_gates() {
        let s = staging();
        let entries = evidence(&s.store, "api", "2.0").unwrap();
        let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["gate.check", "deploy.start", "deploy.succeeded"]);
        // A rollout that rolled back, and a version never deployed, are no evidence.
        for version in ["3.0", "9.9"] {
            let error = evidence(&s.store, "api", version).unwrap_err();
            assert_eq!(error.kind(), OpsErrorKind::NotFound, "{version}: {error}");
        }
        let verified = verify(&s.bundle, Some(&s.key)).unwrap();
        assert_eq!(verified.rollout, 1);
        assert_eq!(verified.gates, ["release"]);
        assert_eq!(verified.key_source, KeySource::Given);
        assert_eq!(verified.env, "staging");
        // Without a key: the bundle's own, and the result says so.
        assert_eq!(
            verify(&s.bundle, None).unwrap().key_source,
            KeySource::Bundle
        );
        // The bundle round-trips through its text form.
        let text = serde_json::to_vec(&s.bundle).unwrap();
        assert_eq!(parse(&text).unwrap(), s.bundle);
    }

    fn tampered(s: &Staging, change: impl FnOnce(&mut Bundle)) -> BundleError {
        let mut bundle = s.bundle.clone();
        change(&mut bundle);
        verify(&bundle, Some(&s.key)).unwrap_err()
    }

    fn index_of(bundle: &Bundle, action: &str) -> usize {
        bundle
            .entries
            .iter()
            .position(|e| e.leaf.contains(&format!("\"action\":\"{action}\"")))
            .unwrap()
    }

    #[test]
    fn an_altered_entry_is_refused() {
        let s = staging();
        let i = index_of(&s.bundle, "deploy.succeeded");
        let error = tampered(&s, |b| {
            b.entries[i].leaf = b.entries[i].leaf.replace(ACTOR, "mallory");
        });
        assert!(matches!(error, BundleError::LeafHash { .. }), "{error}");
        // The leaf hash recomputed too: the proof no longer leads to the root.
        let error = tampered(&s, |b| {
            let leaf = b.entries[i].leaf.replace(ACTOR, "mallory");
            b.entries[i].leaf_hash = to_hex(&leaf_hash(leaf.as_bytes()));
            b.entries[i].leaf = leaf;
        });
        assert!(matches!(error, BundleError::Proof { .. }), "{error}");
    }

    #[test]
    fn an_altered_proof_is_refused() {
        let s = staging();
        let error = tampered(&s, |b| {
            let hash = &mut b.entries[0].proof[0];
            let flipped = if hash.starts_with('0') { "1" } else { "0" };
            hash.replace_range(0..1, flipped);
        });
        assert!(
            matches!(error, BundleError::Proof { seq, .. } if seq == s.bundle.entries[0].seq),
            "{error}"
        );
        let error = tampered(&s, |b| b.entries[0].proof.pop().map(drop).unwrap_or(()));
        assert!(matches!(error, BundleError::Proof { .. }), "{error}");
    }

    #[test]
    fn a_checkpoint_whose_signature_does_not_verify_is_refused() {
        let s = staging();
        let size = Checkpoint::peek(&s.bundle.checkpoint).unwrap().size;
        let error = tampered(&s, |b| {
            b.checkpoint =
                b.checkpoint
                    .replacen(&format!("\n{size}\n"), &format!("\n{}\n", size + 1), 1);
        });
        assert!(matches!(error, BundleError::Checkpoint { .. }), "{error}");
        assert!(error.to_string().contains("does not verify"), "{error}");
    }

    #[test]
    fn a_bundle_signed_by_another_key_is_refused() {
        let s = staging();
        let other = SignerKey::from_seed("wharf/staging", [9; 32])
            .unwrap()
            .verifier();
        let error = verify(&s.bundle, Some(&other)).unwrap_err();
        assert!(matches!(error, BundleError::OtherKey { .. }), "{error}");
        // Claiming the wanted key does not help: the checkpoint has no signature by it.
        let mut bundle = s.bundle.clone();
        bundle.verifier_key = other.to_string();
        let error = verify(&bundle, Some(&other)).unwrap_err();
        assert!(matches!(error, BundleError::Checkpoint { .. }), "{error}");
    }

    #[test]
    fn a_bundle_claiming_another_version_or_lacking_the_success_is_refused() {
        let s = staging();
        let error = tampered(&s, |b| b.version = "3.0".into());
        assert!(matches!(error, BundleError::Stray { .. }), "{error}");
        let error = tampered(&s, |b| b.service = "web".into());
        assert!(matches!(error, BundleError::Stray { .. }), "{error}");
        let i = index_of(&s.bundle, "deploy.succeeded");
        let error = tampered(&s, |b| {
            b.entries.remove(i);
        });
        assert!(matches!(error, BundleError::NoRollout { .. }), "{error}");
        let error = tampered(&s, |b| b.format = "wharf-promotion/0".into());
        assert!(matches!(error, BundleError::Format(_)), "{error}");
    }

    /// Real entries of the staging ledger that prove the opposite are refused when smuggled in.
    #[test]
    fn a_rollback_or_a_failed_gate_in_the_bundle_is_refused() {
        let mut s = staging();
        let mut all = evidence(&s.store, "api", "2.0").unwrap();
        let smuggle = |s: &mut Staging, action: &str, target: &str, all: &[Entry]| {
            let found = s
                .store
                .ledger_entries(&EntryFilter {
                    action: Some(action.into()),
                    target: Some(target.into()),
                })
                .unwrap();
            let mut all = all.to_vec();
            all.push(Entry::try_from(found.last().unwrap().clone()).unwrap());
            let checkpoint = Ledger::new(&mut s.store)
                .latest_checkpoint()
                .unwrap()
                .unwrap();
            let bundle = build(
                &Ledger::new(&mut s.store),
                ("shop", "staging"),
                "api",
                "2.0",
                &s.key,
                &checkpoint,
                &all,
            )
            .unwrap();
            verify(&bundle, Some(&s.key)).unwrap_err()
        };
        let error = smuggle(&mut s, "gate.check", "load/api@2.0", &all);
        assert!(error.to_string().contains("did not pass"), "{error}");
        let error = smuggle(&mut s, "deploy.rollback", "api", &all);
        assert!(
            matches!(error, BundleError::RolledBack { rollout: 3, .. }),
            "{error}"
        );
        all.retain(|e| e.action.as_str() != "deploy.succeeded");
        let error = smuggle(&mut s, "deploy.start", "api", &all);
        assert!(matches!(error, BundleError::NoRollout { .. }), "{error}");
    }

    #[test]
    fn import_records_a_verified_bundle_and_refuses_a_tampered_one() {
        let s = staging();
        let dir = tempfile::tempdir().unwrap();
        let mut prod = Store::open_for_writing(dir.path()).unwrap();
        let key = s.key.to_string();
        let good = serde_json::to_vec_pretty(&s.bundle).unwrap();
        let mut bad = s.bundle.clone();
        bad.version = "3.0".into();
        let bad = serde_json::to_vec(&bad).unwrap();
        let other = SignerKey::from_seed("wharf/staging", [9; 32])
            .unwrap()
            .verifier()
            .to_string();
        for (bytes, key) in [(&bad, key.as_str()), (&good, other.as_str())] {
            let error = import(&mut prod, &Actor(ACTOR.into()), bytes, Some(key)).unwrap_err();
            assert_eq!(error.kind(), OpsErrorKind::Invalid, "{error}");
        }
        assert_eq!(
            Ledger::new(&mut prod).size().unwrap(),
            0,
            "nothing recorded"
        );
        assert!(
            deploy_check(
                &imports(&prod, "api", "2.0").unwrap(),
                "staging",
                &key,
                "api",
                "2.0"
            )
            .is_err()
        );

        let (entry, details) = import(&mut prod, &Actor(ACTOR.into()), &good, Some(&key)).unwrap();
        assert_eq!(entry.action.as_str(), "promotion.import");
        assert_eq!(entry.target, "api@2.0");
        assert_eq!(details.bundle_sha256, sha256_hex(&good));
        assert_eq!(details.env, "staging");
        let recorded = imports(&prod, "api", "2.0").unwrap();
        assert_eq!(
            deploy_check(&recorded, "staging", &key, "api", "2.0"),
            Ok(())
        );
        // Not for another version, another source environment, or another key.
        assert!(
            deploy_check(
                &imports(&prod, "api", "3.0").unwrap(),
                "staging",
                &key,
                "api",
                "3.0"
            )
            .is_err()
        );
        let why = deploy_check(&recorded, "preprod", &key, "api", "2.0").unwrap_err();
        assert!(why.contains("`preprod`"), "{why}");
        let why = deploy_check(&recorded, "staging", &other, "api", "2.0").unwrap_err();
        assert!(why.contains(&other), "{why}");
    }

    #[test]
    fn unreadable_bundles_say_where() {
        let error = parse(b"{\n  \"format\": \"wharf-promotion/1\",\n  oops").unwrap_err();
        assert_eq!((error.line, error.column), (3, 3), "{error}");
        let error = parse(b"{\"format\": 1}").unwrap_err();
        assert_eq!(error.line, 1, "{error}");
    }
}
