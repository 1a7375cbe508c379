//! What a drill checks: the record taken at backup time (per table a row count and a digest of
//! its content; per Redis database a key count and a digest over keys, values and expiry
//! times; for a directory its files) and the comparison with the same record taken from a
//! restored copy. Pure: the drivers compute records, this module only holds and compares them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One counted, digested part of a datastore: a table, a Redis database, a directory's files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// Rows, keys or files.
    pub count: u64,
    /// A digest of the content that does not depend on storage order (hex).
    pub digest: String,
}

/// The record stored beside the data of every backup (`record.json` in the snapshot).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Record {
    /// Format of this record, for readers of older repositories.
    pub version: u32,
    /// Part name (`table public.users`, `redis db0`, `files`) → what it held.
    pub parts: BTreeMap<String, Part>,
    /// Settings a drill must take its record under to digest alike (format 4 PostgreSQL:
    /// the dump's `client_encoding`, the server's `lc_monetary` and `bytea_output`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, String>,
    /// Format 4 PostgreSQL: part name → the column list pg_dump copied (`(a, b, c)`), which a
    /// drill copies in that order.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub columns: BTreeMap<String, String>,
}

impl Record {
    /// Format 2: PostgreSQL rows are digested with `hashtextextended` instead of MD5 (other
    /// kinds as in format 1). Format 3: a PostgreSQL table's rows are hashed by typed value
    /// (`hash_record_extended`) where its column types allow, its text form's hash otherwise,
    /// and the digest is prefixed `typed:` or `text:` to say which (other kinds as before).
    /// Format 4: a PostgreSQL table's rows are digested from the COPY text pg_dump wrote as it
    /// streamed into the backup (no second scan of the database), prefixed `copy:`; a drill
    /// digests `COPY … TO STDOUT` of the restored table under pg_dump's output settings.
    pub const VERSION: u32 = 4;

    pub fn new(parts: BTreeMap<String, Part>) -> Record {
        Record {
            version: Record::VERSION,
            parts,
            settings: BTreeMap::new(),
            columns: BTreeMap::new(),
        }
    }
}

/// The outcome of one named check of a drill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckOutcome {
    /// `rows of table public.users`, `content of table public.users`, `keys of redis db0`, …
    pub name: String,
    pub passed: bool,
    /// What the backup recorded and what the restored copy holds, in words.
    pub expected: String,
    pub found: String,
}

/// Compares a restored copy's record with the one taken at backup time: a count check and a
/// content check per part, plus a failing check for every part only one side has.
pub fn compare(backed_up: &Record, restored: &Record) -> Vec<CheckOutcome> {
    let mut checks = Vec::new();
    for (name, want) in &backed_up.parts {
        match restored.parts.get(name) {
            Some(got) => {
                checks.push(CheckOutcome {
                    name: format!("count of {name}"),
                    passed: want.count == got.count,
                    expected: want.count.to_string(),
                    found: got.count.to_string(),
                });
                checks.push(CheckOutcome {
                    name: format!("content of {name}"),
                    passed: want.digest == got.digest,
                    expected: want.digest.clone(),
                    found: got.digest.clone(),
                });
            }
            None => checks.push(CheckOutcome {
                name: format!("{name} present"),
                passed: false,
                expected: format!("{} recorded at backup", want.count),
                found: "missing from the restored copy".into(),
            }),
        }
    }
    for name in restored.parts.keys() {
        if !backed_up.parts.contains_key(name) {
            checks.push(CheckOutcome {
                name: format!("{name} absent"),
                passed: false,
                expected: "not in the backup".into(),
                found: "present in the restored copy".into(),
            });
        }
    }
    checks
}

/// An order-independent digest of a multiset of items: the sum, modulo 2^128, of the first 16
/// bytes of each item's SHA-256. Rows can be fed in any order, one at a time.
#[derive(Debug, Default, Clone)]
pub struct MultisetDigest {
    sum: u128,
    count: u64,
}

impl MultisetDigest {
    pub fn add(&mut self, item: &[u8]) {
        use sha2::Digest;
        let hash = sha2::Sha256::digest(item);
        let mut head = [0u8; 16];
        head.copy_from_slice(&hash[..16]);
        self.sum = self.sum.wrapping_add(u128::from_be_bytes(head));
        self.count += 1;
    }

    pub fn part(&self) -> Part {
        Part {
            count: self.count,
            digest: format!("{:032x}", self.sum),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(parts: &[(&str, u64, &str)]) -> Record {
        Record::new(
            parts
                .iter()
                .map(|(n, c, d)| {
                    (
                        (*n).to_owned(),
                        Part {
                            count: *c,
                            digest: (*d).to_owned(),
                        },
                    )
                })
                .collect(),
        )
    }

    #[test]
    fn equal_records_pass_every_check() {
        let a = record(&[("table t", 3, "ab"), ("table u", 0, "00")]);
        let checks = compare(&a, &a.clone());
        assert_eq!(checks.len(), 4);
        assert!(checks.iter().all(|c| c.passed));
    }

    #[test]
    fn a_changed_row_fails_the_content_check_by_name() {
        let a = record(&[("table t", 3, "ab")]);
        let b = record(&[("table t", 3, "cd")]);
        let failed: Vec<_> = compare(&a, &b).into_iter().filter(|c| !c.passed).collect();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].name, "content of table t");
    }

    #[test]
    fn missing_and_extra_tables_fail() {
        let a = record(&[("table t", 1, "x")]);
        let b = record(&[("table u", 1, "x")]);
        let names: Vec<_> = compare(&a, &b).into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["table t present", "table u absent"]);
    }

    #[test]
    fn multiset_digest_ignores_order_but_not_content() {
        let mut a = MultisetDigest::default();
        let mut b = MultisetDigest::default();
        for row in ["1|x", "2|y"] {
            a.add(row.as_bytes());
        }
        for row in ["2|y", "1|x"] {
            b.add(row.as_bytes());
        }
        assert_eq!(a.part(), b.part());
        b.add(b"3|z");
        assert_ne!(a.part(), b.part());
    }
}
