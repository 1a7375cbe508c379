//! Ledger entries and their leaf bytes: the entry as canonical JSON (RFC 8785), so anyone
//! can recompute a leaf from what `wharf audit log` or an export shows.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde_json::{Map, Value};

/// Why an entry (new or read back) is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// The action is not a dotted lowercase name such as `deploy.step`.
    #[error("invalid action {0:?}: expected dotted lowercase words such as `deploy.step`")]
    Action(String),
    /// The actor is empty.
    #[error("the actor must not be empty")]
    EmptyActor,
    /// The stored time is not an RFC 3339 timestamp.
    #[error("invalid time {value:?}: {reason}")]
    Time { value: String, reason: String },
    /// The stored details are not JSON.
    #[error("details are not valid JSON: {0}")]
    Details(String),
    /// The sequence number is negative or otherwise unusable.
    #[error("invalid sequence number {0}")]
    Seq(i64),
}

/// A validated action name: dot-separated lowercase words, at least two (`secret.rotate`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Action(String);

impl Action {
    /// The action as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// One of [`KnownAction`](crate::KnownAction)'s texts, which its tests check are valid.
    pub(crate) fn known(text: &'static str) -> Action {
        Self(text.to_owned())
    }
}

impl FromStr for Action {
    type Err = EntryError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let word_ok = |w: &str| {
            w.starts_with(|c: char| c.is_ascii_lowercase())
                && w.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        };
        let words: Vec<&str> = text.split('.').collect();
        if words.len() < 2 || !words.iter().all(|w| word_ok(w)) {
            return Err(EntryError::Action(text.to_owned()));
        }
        Ok(Self(text.to_owned()))
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a caller asks to append; the ledger assigns the sequence number.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEntry {
    pub time: Timestamp,
    pub actor: String,
    pub action: Action,
    pub target: String,
    pub details: Value,
}

impl NewEntry {
    /// A new entry; the actor must not be empty.
    pub fn new(
        time: Timestamp,
        actor: impl Into<String>,
        action: Action,
        target: impl Into<String>,
        details: Value,
    ) -> Result<Self, EntryError> {
        let actor = actor.into();
        if actor.is_empty() {
            return Err(EntryError::EmptyActor);
        }
        Ok(Self {
            time,
            actor,
            action,
            target: target.into(),
            details,
        })
    }

    /// The entry as it will be stored at `seq`.
    pub fn at(self, seq: u64) -> Entry {
        Entry {
            seq,
            time: self.time,
            actor: self.actor,
            action: self.action,
            target: self.target,
            details: self.details,
        }
    }
}

/// One appended entry; leaf `seq` of the tree (the first entry is seq 0).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub seq: u64,
    pub time: Timestamp,
    pub actor: String,
    pub action: Action,
    pub target: String,
    pub details: Value,
}

/// An entry as storage holds it: plain text columns, not yet trusted. The ledger decodes it
/// so that a tampered row is reported by seq instead of failing the whole read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry {
    pub seq: i64,
    pub time: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub details: String,
}

impl Entry {
    /// The entry as a JSON object (keys in canonical order once canonicalized).
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("action".into(), Value::String(self.action.0.clone()));
        map.insert("actor".into(), Value::String(self.actor.clone()));
        map.insert("details".into(), self.details.clone());
        map.insert("seq".into(), Value::from(self.seq));
        map.insert("target".into(), Value::String(self.target.clone()));
        map.insert("time".into(), Value::String(self.time.to_string()));
        Value::Object(map)
    }

    /// The leaf bytes: the entry in RFC 8785 canonical JSON.
    pub fn leaf_bytes(&self) -> Vec<u8> {
        self.to_raw().leaf_bytes()
    }

    /// The leaf hash, SHA-256(0x00 ‖ leaf bytes).
    pub fn leaf_hash(&self) -> crate::Hash {
        crate::hash::leaf_hash(&self.leaf_bytes())
    }

    /// The columns storage keeps, each already in its canonical form (`time` in jiff's
    /// lossless RFC 3339 form, `details` as RFC 8785 JSON), so that the leaf bytes are a
    /// plain concatenation of stored columns (see [`RawEntry::leaf_bytes`]).
    pub fn to_raw(&self) -> RawEntry {
        RawEntry {
            seq: self.seq as i64,
            time: self.time.to_string(),
            actor: self.actor.clone(),
            action: self.action.0.clone(),
            target: self.target.clone(),
            details: serde_json_canonicalizer::to_string(&self.details)
                .expect("a JSON value always canonicalizes"),
        }
    }
}

impl RawEntry {
    /// The leaf bytes, straight from the stored columns: the canonical JSON object with its
    /// keys in RFC 8785 order, string columns escaped as RFC 8785 requires (serde_json's
    /// escaping is the same), `details` copied verbatim since it is stored canonical.
    ///
    /// Verification hashes these without parsing anything, which is what makes checking a
    /// million entries fast; a column edited into any other form simply no longer matches.
    pub fn leaf_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(96 + self.details.len() + self.target.len());
        let string = |out: &mut Vec<u8>, s: &str| {
            serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
        };
        out.extend_from_slice(b"{\"action\":");
        string(&mut out, &self.action);
        out.extend_from_slice(b",\"actor\":");
        string(&mut out, &self.actor);
        out.extend_from_slice(b",\"details\":");
        out.extend_from_slice(self.details.as_bytes());
        out.extend_from_slice(b",\"seq\":");
        out.extend_from_slice(self.seq.to_string().as_bytes());
        out.extend_from_slice(b",\"target\":");
        string(&mut out, &self.target);
        out.extend_from_slice(b",\"time\":");
        string(&mut out, &self.time);
        out.push(b'}');
        out
    }
}

impl TryFrom<RawEntry> for Entry {
    type Error = EntryError;

    fn try_from(raw: RawEntry) -> Result<Self, Self::Error> {
        let seq = u64::try_from(raw.seq).map_err(|_| EntryError::Seq(raw.seq))?;
        let time = raw
            .time
            .parse::<Timestamp>()
            .map_err(|e| EntryError::Time {
                value: raw.time.clone(),
                reason: e.to_string(),
            })?;
        let details =
            serde_json::from_str(&raw.details).map_err(|e| EntryError::Details(e.to_string()))?;
        if raw.actor.is_empty() {
            return Err(EntryError::EmptyActor);
        }
        Ok(Self {
            seq,
            time,
            actor: raw.actor,
            action: raw.action.parse()?,
            target: raw.target,
            details,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_dotted_lowercase_words() {
        for good in [
            "deploy.step",
            "secret.rotate",
            "audit.note",
            "a.b.c",
            "x1.y_z-w",
        ] {
            assert!(good.parse::<Action>().is_ok(), "{good}");
        }
        for bad in [
            "",
            "deploy",
            "Deploy.step",
            "deploy..step",
            ".a",
            "a.",
            "a.1b",
            "a b.c",
        ] {
            assert!(bad.parse::<Action>().is_err(), "{bad}");
        }
    }

    #[test]
    fn leaf_bytes_are_canonical_json_with_sorted_keys() {
        let entry = Entry {
            seq: 7,
            time: "2026-01-02T03:04:05.5Z".parse().unwrap(),
            actor: "ops@host".into(),
            action: "deploy.step".parse().unwrap(),
            target: "web".into(),
            details: serde_json::json!({"z": 1, "a": [true, null], "é": "\u{1}"}),
        };
        let text = String::from_utf8(entry.leaf_bytes()).unwrap();
        assert_eq!(
            text,
            r#"{"action":"deploy.step","actor":"ops@host","details":{"a":[true,null],"z":1,"é":"\u0001"},"seq":7,"target":"web","time":"2026-01-02T03:04:05.5Z"}"#
        );
    }

    #[test]
    fn leaf_bytes_from_columns_equal_the_canonicalized_entry() {
        let tricky = "tab\t nl\n quote\" back\\ ctl\u{1f}\u{7f} slash/ é 😀 \u{2028}";
        let entry = Entry {
            seq: 12345,
            time: "2026-01-02T03:04:05.000000001Z".parse().unwrap(),
            actor: tricky.into(),
            action: "secret.rotate".parse().unwrap(),
            target: tricky.into(),
            details: serde_json::json!({"b": [1, 2.5, -0.0, 1e21, "x"], "a": {"z": null, "é": tricky}}),
        };
        let expected = serde_json_canonicalizer::to_vec(&entry.to_json()).unwrap();
        assert_eq!(
            String::from_utf8(entry.leaf_bytes()).unwrap(),
            String::from_utf8(expected).unwrap()
        );
    }

    #[test]
    fn raw_round_trip_keeps_the_leaf() {
        let entry = Entry {
            seq: 1,
            time: "2026-01-02T03:04:05.123Z".parse().unwrap(),
            actor: "a".into(),
            action: "audit.note".parse().unwrap(),
            target: String::new(),
            details: serde_json::json!({"text": "hi", "n": 1.5}),
        };
        let back = Entry::try_from(entry.to_raw()).unwrap();
        assert_eq!(back.leaf_bytes(), entry.leaf_bytes());
    }
}
