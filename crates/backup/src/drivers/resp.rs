//! A minimal blocking RESP2 client: enough for AUTH, INFO, CONFIG, MULTI/EXEC, EVAL, REPLICAOF.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use wharf_manifest::model::DatastoreKind;

use crate::datastore::RedisConn;
use crate::error::{BackupError, Result};

/// A reply.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Value>>),
}

impl Value {
    pub fn text(&self) -> Option<String> {
        match self {
            Value::Status(s) => Some(s.clone()),
            Value::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            Value::Int(i) => Some(i.to_string()),
            _ => None,
        }
    }
}

fn err(detail: impl Into<String>) -> BackupError {
    BackupError::store(DatastoreKind::Redis, detail)
}

pub(crate) struct Resp {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Resp {
    /// Connects and authenticates (AUTH [user] password).
    pub fn connect(conn: &RedisConn) -> Result<Resp> {
        let address = format!("{}:{}", conn.host, conn.port);
        let stream =
            TcpStream::connect(&address).map_err(|e| err(format!("connect to {address}: {e}")))?;
        stream.set_read_timeout(Some(Duration::from_secs(60))).ok();
        let reader = BufReader::new(stream.try_clone().map_err(|e| err(e.to_string()))?);
        let mut resp = Resp {
            writer: stream,
            reader,
        };
        if let Some(password) = &conn.password {
            let mut args = vec![b"AUTH".to_vec()];
            if let Some(user) = &conn.user {
                args.push(user.as_bytes().to_vec());
            }
            args.push(password.expose().as_bytes().to_vec());
            if let Value::Error(e) = resp.call_raw(&args)? {
                return Err(err(format!("AUTH refused: {}", password.scrub(&e))));
            }
        }
        Ok(resp)
    }

    /// Sends one command and reads its reply (an error reply is a `Value::Error`).
    pub fn call(&mut self, args: &[&str]) -> Result<Value> {
        let args: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
        self.call_raw(&args)
    }

    /// Like [`Resp::call`], an error reply being an error.
    pub fn ok(&mut self, args: &[&str]) -> Result<Value> {
        match self.call(args)? {
            Value::Error(e) => Err(err(format!("{}: {e}", args[0]))),
            value => Ok(value),
        }
    }

    pub fn send(&mut self, args: &[&str]) -> Result<()> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        self.writer
            .write_all(&out)
            .map_err(|e| err(format!("send: {e}")))
    }

    fn call_raw(&mut self, args: &[Vec<u8>]) -> Result<Value> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
        self.writer
            .write_all(&out)
            .map_err(|e| err(format!("send: {e}")))?;
        self.read()
    }

    pub fn read(&mut self) -> Result<Value> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .map_err(|e| err(format!("read: {e}")))?;
        if n == 0 {
            return Err(err("the server closed the connection"));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        let (tag, rest) = line.split_at(1.min(line.len()));
        let number = || {
            rest.parse::<i64>()
                .map_err(|_| err(format!("bad reply line {line:?}")))
        };
        Ok(match tag {
            "+" => Value::Status(rest.to_owned()),
            "-" => Value::Error(rest.to_owned()),
            ":" => Value::Int(number()?),
            "$" => {
                let len = number()?;
                if len < 0 {
                    Value::Bulk(None)
                } else {
                    let mut buf = vec![0; usize::try_from(len).unwrap_or(0) + 2];
                    std::io::Read::read_exact(&mut self.reader, &mut buf)
                        .map_err(|e| err(format!("read: {e}")))?;
                    buf.truncate(buf.len() - 2);
                    Value::Bulk(Some(buf))
                }
            }
            "*" => {
                let len = number()?;
                if len < 0 {
                    Value::Array(None)
                } else {
                    let mut items = Vec::new();
                    for _ in 0..len {
                        items.push(self.read()?);
                    }
                    Value::Array(Some(items))
                }
            }
            _ => return Err(err(format!("bad reply line {line:?}"))),
        })
    }

    /// `INFO section` as `field → value`.
    pub fn info(&mut self, section: &str) -> Result<Vec<(String, String)>> {
        let text = self.ok(&["INFO", section])?.text().unwrap_or_default();
        Ok(text
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
            .collect())
    }
}

/// A field of an INFO answer.
pub(crate) fn field<'a>(info: &'a [(String, String)], name: &str) -> Option<&'a str> {
    info.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}
