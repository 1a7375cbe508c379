//! Where a datastore is, typed by kind: built from the manifest's `kind:` with its resolved
//! `url:` or `path:`. URLs are parsed once here; the drivers read fields, never strings.

use std::path::{Path, PathBuf};

use url::Url;
use wharf_manifest::model::DatastoreKind;

use crate::error::{BackupError, Result};
use crate::secret::Secret;

/// A datastore wharf can back up and restore into.
#[derive(Debug, Clone)]
pub enum Datastore {
    Postgres(PgConn),
    Mariadb(MariadbConn),
    Redis(RedisConn),
    Sqlite(PathBuf),
    Directory(PathBuf),
}

/// A PostgreSQL database: TCP host or socket directory, user, password, database.
#[derive(Debug, Clone)]
pub struct PgConn {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<Secret>,
    pub dbname: String,
    /// `sslmode` from the URL's query, passed on as `PGSSLMODE`.
    pub sslmode: Option<String>,
}

/// A MariaDB / MySQL database over TCP or a unix socket (`?socket=/path`).
#[derive(Debug, Clone)]
pub struct MariadbConn {
    pub host: String,
    pub port: u16,
    pub socket: Option<PathBuf>,
    pub user: String,
    pub password: Option<Secret>,
    pub dbname: String,
}

/// A Redis server (every logical database of it is backed up).
#[derive(Debug, Clone)]
pub struct RedisConn {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<Secret>,
}

impl Datastore {
    /// The datastore a manifest service describes: `kind` with its `url:` (already resolved,
    /// so it may hold a password) for servers, or `path:` for `sqlite` and `directory`.
    pub fn from_manifest(
        kind: DatastoreKind,
        url: Option<&Secret>,
        path: Option<&Path>,
    ) -> Result<Datastore> {
        match kind {
            DatastoreKind::Sqlite | DatastoreKind::Directory => {
                let path = path.ok_or_else(|| {
                    BackupError::Address(format!(
                        "a {} datastore needs `path:`",
                        crate::kind_name(kind)
                    ))
                })?;
                Ok(match kind {
                    DatastoreKind::Sqlite => Datastore::Sqlite(path.to_owned()),
                    _ => Datastore::Directory(path.to_owned()),
                })
            }
            DatastoreKind::Postgres | DatastoreKind::Mariadb | DatastoreKind::Redis => {
                let url = url.ok_or_else(|| {
                    BackupError::Address(format!(
                        "a {} datastore needs `url:`",
                        crate::kind_name(kind)
                    ))
                })?;
                Datastore::from_url(kind, url)
            }
        }
    }

    /// Parses a server URL of `kind`. Errors name the part that is wrong, never the URL
    /// itself (it may hold a password).
    pub fn from_url(kind: DatastoreKind, url: &Secret) -> Result<Datastore> {
        let parsed = Url::parse(url.expose())
            .map_err(|e| BackupError::Address(format!("not a URL ({e})")))?;
        let password = parsed.password().map(|p| Secret::new(decode(p)));
        let user = decode(parsed.username());
        let host = parsed
            .host_str()
            .unwrap_or("")
            .trim_matches(['[', ']'])
            .to_owned();
        let query = |key: &str| {
            parsed
                .query_pairs()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.into_owned())
        };
        let dbname = parsed.path().trim_start_matches('/').to_owned();
        let scheme = parsed.scheme();
        match kind {
            DatastoreKind::Postgres => {
                expect_scheme(scheme, &["postgres", "postgresql"])?;
                let host = query("host").unwrap_or(if host.is_empty() {
                    "localhost".into()
                } else {
                    host
                });
                Ok(Datastore::Postgres(PgConn {
                    host,
                    port: parsed.port().unwrap_or(5432),
                    user: if user.is_empty() {
                        "postgres".into()
                    } else {
                        user
                    },
                    password,
                    dbname: if dbname.is_empty() {
                        "postgres".into()
                    } else {
                        decode(&dbname)
                    },
                    sslmode: query("sslmode"),
                }))
            }
            DatastoreKind::Mariadb => {
                expect_scheme(scheme, &["mariadb", "mysql"])?;
                if dbname.is_empty() {
                    return Err(BackupError::Address(
                        "a mariadb URL needs a database: mariadb://user@host/DATABASE".into(),
                    ));
                }
                Ok(Datastore::Mariadb(MariadbConn {
                    host: if host.is_empty() {
                        "localhost".into()
                    } else {
                        host
                    },
                    port: parsed.port().unwrap_or(3306),
                    socket: query("socket").map(PathBuf::from),
                    user: if user.is_empty() { "root".into() } else { user },
                    password,
                    dbname: decode(&dbname),
                }))
            }
            DatastoreKind::Redis => {
                expect_scheme(scheme, &["redis"])?;
                Ok(Datastore::Redis(RedisConn {
                    host: if host.is_empty() {
                        "127.0.0.1".into()
                    } else {
                        host
                    },
                    port: parsed.port().unwrap_or(6379),
                    user: (!user.is_empty()).then_some(user),
                    password,
                }))
            }
            DatastoreKind::Sqlite | DatastoreKind::Directory => Err(BackupError::Address(format!(
                "a {} datastore has a path, not a URL",
                crate::kind_name(kind)
            ))),
        }
    }

    /// The manifest kind of this datastore.
    pub fn kind(&self) -> DatastoreKind {
        match self {
            Datastore::Postgres(_) => DatastoreKind::Postgres,
            Datastore::Mariadb(_) => DatastoreKind::Mariadb,
            Datastore::Redis(_) => DatastoreKind::Redis,
            Datastore::Sqlite(_) => DatastoreKind::Sqlite,
            Datastore::Directory(_) => DatastoreKind::Directory,
        }
    }
}

fn expect_scheme(scheme: &str, allowed: &[&str]) -> Result<()> {
    if allowed.contains(&scheme) {
        Ok(())
    } else {
        Err(BackupError::Address(format!(
            "scheme `{scheme}:` is not one of {}",
            allowed.join(", ")
        )))
    }
}

fn decode(text: &str) -> String {
    percent_decode(text)
}

/// RFC 3986 percent-decoding (userinfo and path come encoded from `url`).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_url_fields() {
        let url = Secret::new("postgres://app:p%40ss@127.0.0.1:5999/shop?sslmode=disable");
        let Datastore::Postgres(pg) = Datastore::from_url(DatastoreKind::Postgres, &url).unwrap()
        else {
            panic!("not postgres")
        };
        assert_eq!(
            (pg.host.as_str(), pg.port, pg.user.as_str()),
            ("127.0.0.1", 5999, "app")
        );
        assert_eq!(pg.password.unwrap().expose(), "p@ss");
        assert_eq!(pg.dbname, "shop");
        assert_eq!(pg.sslmode.as_deref(), Some("disable"));
    }

    #[test]
    fn wrong_scheme_is_named_without_the_password() {
        let url = Secret::new("mysql://u:hunter2@h/db");
        let err = Datastore::from_url(DatastoreKind::Postgres, &url)
            .unwrap_err()
            .to_string();
        assert!(err.contains("mysql:"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn sqlite_needs_a_path() {
        let err = Datastore::from_manifest(DatastoreKind::Sqlite, None, None).unwrap_err();
        assert!(err.to_string().contains("path:"), "{err}");
    }
}
