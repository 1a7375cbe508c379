//! Redis: one `MULTI` holding `BGSAVE` and a digest script per logical database, so the RDB
//! the fork writes and the record (key count and a digest over keys, types, values and
//! absolute expiry times) describe the same instant; then wait for the save
//! (`rdb_last_bgsave_status:ok`) and stream the RDB file — read directly when the server is
//! on this host, else fetched with `redis-cli --rdb -` (a newer copy: note the record may then
//! differ if writes happened in between). Restore: a sandbox server loads the RDB and the
//! target replicates from it (`REPLICAOF`), then is promoted again.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rustic_core::repofile::Metadata;
use wharf_manifest::model::DatastoreKind;

use super::resp::{Resp, Value, field};
use crate::capture::{Capture, Entry};
use crate::datastore::RedisConn;
use crate::error::{BackupError, Result};
use crate::record::{Part, Record};
use crate::tools::{Running, Tool, Tools};

pub(crate) const FILE: &str = "dump.rdb";

/// Sorted keys; per key its name, type, absolute expiry (ms, -1 none) and value(s), each
/// length-prefixed; SHA-1 per key, then SHA-1 over those. Sets and hashes are sorted.
const DIGEST: &str = r#"
local keys = redis.call('KEYS', '*')
table.sort(keys)
local function lp(s) return #s .. ':' .. s end
local hashes = {}
for _, k in ipairs(keys) do
  local t = redis.call('TYPE', k)['ok']
  local buf = {lp(k), t, tostring(redis.call('PEXPIRETIME', k))}
  local v = {}
  if t == 'string' then v = {redis.call('GET', k)}
  elseif t == 'list' then v = redis.call('LRANGE', k, 0, -1)
  elseif t == 'set' then v = redis.call('SMEMBERS', k); table.sort(v)
  elseif t == 'zset' then v = redis.call('ZRANGE', k, 0, -1, 'WITHSCORES')
  elseif t == 'hash' then
    local h = redis.call('HGETALL', k)
    for i = 1, #h, 2 do v[#v + 1] = lp(h[i]) .. lp(h[i + 1]) end
    table.sort(v)
  elseif t == 'stream' then
    for _, e in ipairs(redis.call('XRANGE', k, '-', '+')) do
      v[#v + 1] = e[1]
      for _, f in ipairs(e[2]) do v[#v + 1] = f end
    end
  end
  for _, x in ipairs(v) do buf[#buf + 1] = lp(x) end
  hashes[#hashes + 1] = redis.sha1hex(table.concat(buf, '|'))
end
return {#keys, redis.sha1hex(table.concat(hashes, ''))}
"#;

fn err(detail: impl Into<String>) -> BackupError {
    BackupError::store(DatastoreKind::Redis, detail)
}

/// Logical databases holding keys (`INFO keyspace`: `db0:keys=3,…`).
fn databases(resp: &mut Resp) -> Result<Vec<String>> {
    Ok(resp
        .info("keyspace")?
        .into_iter()
        .filter_map(|(k, _)| k.strip_prefix("db").map(str::to_owned))
        .collect())
}

fn part(value: &Value) -> Result<Part> {
    match value {
        Value::Array(Some(items)) if items.len() == 2 => Ok(Part {
            count: items[0].text().and_then(|t| t.parse().ok()).unwrap_or(0),
            digest: items[1].text().unwrap_or_default(),
        }),
        Value::Error(e) => Err(err(format!("digest script: {e}"))),
        other => Err(err(format!("digest script answered {other:?}"))),
    }
}

pub(crate) fn capture(conn: &RedisConn, tools: &Tools) -> Result<Capture> {
    let mut resp = Resp::connect(conn)?;
    let (record, saves_before) = save_with_record(&mut resp)?;
    wait_for_save(&mut resp, saves_before)?;
    if let Some(file) = local_rdb(&mut resp, conn) {
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let meta = Metadata {
            size,
            ..Metadata::default()
        };
        return Ok(Capture {
            entries: vec![Entry::File(FILE.into(), meta, Box::new(file))],
            finish: Box::new(move || Ok(record)),
        });
    }
    let mut command = tools.command(Tool::RedisCli)?;
    command
        .args(["-h", &conn.host, "-p", &conn.port.to_string()])
        .args(["--no-auth-warning", "--rdb", "-"]);
    if let Some(user) = &conn.user {
        command.args(["--user", user]);
    }
    if let Some(password) = &conn.password {
        command.env("REDISCLI_AUTH", password.expose());
    }
    let mut cli = Running::spawn(Tool::RedisCli, command, conn.password.clone())?;
    let stdout = cli
        .child
        .stdout
        .take()
        .ok_or_else(|| err("redis-cli has no stdout"))?;
    Ok(Capture {
        entries: vec![Entry::File(
            FILE.into(),
            Metadata::default(),
            Box::new(stdout),
        )],
        finish: Box::new(move || cli.finish().map(|()| record)),
    })
}

/// `MULTI; BGSAVE; (SELECT n; EVAL digest)…; EXEC` — retried while another save runs.
fn save_with_record(resp: &mut Resp) -> Result<(Record, u64)> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let dbs = databases(resp)?;
        let saves = saves(resp)?;
        resp.ok(&["MULTI"])?;
        let mut queued = vec!["BGSAVE".to_owned()];
        resp.send(&["BGSAVE"])?;
        for db in &dbs {
            resp.send(&["SELECT", db])?;
            resp.send(&["EVAL", DIGEST, "0"])?;
            queued.push(db.clone());
        }
        for _ in 0..(1 + 2 * dbs.len()) {
            resp.read()?; // QUEUED
        }
        let replies = match resp.call(&["EXEC"])? {
            Value::Array(Some(items)) => items,
            other => return Err(err(format!("EXEC answered {other:?}"))),
        };
        let _ = resp.call(&["SELECT", "0"]);
        if let Value::Error(e) = &replies[0] {
            if e.contains("in progress") && Instant::now() < deadline {
                wait_idle(resp)?;
                continue;
            }
            return Err(err(format!("BGSAVE: {e}")));
        }
        let mut parts = BTreeMap::new();
        for (i, db) in dbs.iter().enumerate() {
            parts.insert(format!("redis db{db}"), part(&replies[2 + 2 * i])?);
        }
        return Ok((Record::new(parts), saves));
    }
}

fn saves(resp: &mut Resp) -> Result<u64> {
    let info = resp.info("persistence")?;
    Ok(field(&info, "rdb_saves")
        .or_else(|| field(&info, "rdb_last_save_time"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

fn wait_idle(resp: &mut Resp) -> Result<()> {
    poll(Duration::from_secs(600), || {
        let info = resp.info("persistence")?;
        Ok(field(&info, "rdb_bgsave_in_progress") == Some("0"))
    })
}

/// Waits until the save started after `before` has ended, and checks it succeeded.
fn wait_for_save(resp: &mut Resp, before: u64) -> Result<()> {
    poll(Duration::from_secs(3600), || {
        let info = resp.info("persistence")?;
        let done = field(&info, "rdb_bgsave_in_progress") == Some("0");
        let count: u64 = field(&info, "rdb_saves")
            .or_else(|| field(&info, "rdb_last_save_time"))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok(done && count > before)
    })?;
    let info = resp.info("persistence")?;
    match field(&info, "rdb_last_bgsave_status") {
        Some("ok") => Ok(()),
        other => Err(err(format!(
            "BGSAVE failed: rdb_last_bgsave_status is {}",
            other.unwrap_or("missing")
        ))),
    }
}

/// Polls `done` every 20 ms until it holds or `limit` passes.
#[expect(
    clippy::disallowed_methods,
    reason = "the pause between two polls of a server's state, with a deadline"
)]
pub(crate) fn poll(limit: Duration, mut done: impl FnMut() -> Result<bool>) -> Result<()> {
    let until = Instant::now() + limit;
    while !done()? {
        if Instant::now() >= until {
            return Err(err("timed out waiting for the server"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The server's RDB file, when the server runs on this host and the file is readable.
fn local_rdb(resp: &mut Resp, conn: &RedisConn) -> Option<std::fs::File> {
    let local = matches!(conn.host.as_str(), "127.0.0.1" | "localhost" | "::1");
    if !local {
        return None;
    }
    let get = |resp: &mut Resp, key: &str| -> Option<String> {
        match resp.call(&["CONFIG", "GET", key]).ok()? {
            Value::Array(Some(items)) => items.get(1)?.text(),
            _ => None,
        }
    };
    let dir = get(resp, "dir")?;
    let name = get(resp, "dbfilename")?;
    std::fs::File::open(PathBuf::from(dir).join(name)).ok()
}

/// The record of the server as it is now.
pub(crate) fn record(conn: &RedisConn) -> Result<Record> {
    let mut resp = Resp::connect(conn)?;
    let mut parts = BTreeMap::new();
    for db in databases(&mut resp)? {
        resp.ok(&["SELECT", &db])?;
        let value = resp.call(&["EVAL", DIGEST, "0"])?;
        parts.insert(format!("redis db{db}"), part(&value)?);
    }
    Ok(Record::new(parts))
}

/// Makes `target` a replica of `source` until it holds the same data, then promotes it back.
/// Everything the target held is replaced (a full resynchronisation).
pub(crate) fn replicate_from(target: &RedisConn, source_port: u16) -> Result<()> {
    let mut resp = Resp::connect(target)?;
    resp.ok(&["REPLICAOF", "127.0.0.1", &source_port.to_string()])?;
    let synced = poll(Duration::from_secs(3600), || {
        let info = resp.info("replication")?;
        Ok(field(&info, "master_link_status") == Some("up")
            && field(&info, "master_sync_in_progress") == Some("0"))
    });
    resp.ok(&["REPLICAOF", "NO", "ONE"])?;
    synced
}
