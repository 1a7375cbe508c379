//! Where a backup repository lives: a local folder, or a prefix of a bucket on S3-compatible
//! storage (AWS, MinIO, Ceph RGW, moto, …) reached through `rustic_backend`'s OpenDAL S3
//! service. Locations are written in restic's own syntax (`/srv/backups`,
//! `s3:https://host:9000/bucket/prefix`), so the string an operator gives wharf is the one they
//! give `restic -r` to restore without wharf.
//!
//! Credentials never travel inside the location string: they are given separately
//! ([`S3Credentials`]), a string that carries them (`https://key:secret@host/…`) is refused, and
//! neither `Display` nor `Debug` of a location shows them. Errors name the location by its
//! `Display` form and are scrubbed of both keys.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use rustic_backend::BackendOptions;
use rustic_core::{RepositoryBackends, RusticError};

use crate::error::{BackupError, Result};
use crate::secret::Secret;

/// The region signed into S3 requests when none is given; restic uses the same default, and
/// S3-compatible servers that ignore regions accept it.
pub const DEFAULT_S3_REGION: &str = "us-east-1";

/// Retries of a failed S3 request when none is given: rustic's default, which rides out a
/// network blip in a backup at the cost of about a minute before an unreachable endpoint is
/// reported.
pub const DEFAULT_S3_RETRIES: usize = 5;

/// Schemes restic knows that wharf does not build, so a restic string is refused by name
/// rather than read as a local folder called `sftp:host`.
const UNSUPPORTED_SCHEMES: &[&str] = &["sftp", "rest", "b2", "azure", "gs", "swift", "rclone"];

/// Where a repository lives.
#[derive(Clone, PartialEq, Eq)]
pub enum RepoLocation {
    /// A folder on this machine (restic: a plain path, or `local:PATH`).
    Local(PathBuf),
    /// A prefix of a bucket on S3-compatible storage (restic: `s3:URL/bucket/prefix`).
    S3(S3Location),
}

/// An S3 repository: endpoint, bucket, the prefix inside it, the region and the keys.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Location {
    /// `scheme://host[:port]`, without a path, user or query.
    endpoint: String,
    bucket: String,
    /// The repository's prefix inside the bucket, without leading or trailing `/`; empty for
    /// the bucket's root.
    root: String,
    region: String,
    /// How often a failed request is retried (with exponential backoff from 1 s).
    retries: usize,
    credentials: S3Credentials,
}

/// The key pair S3 requests are signed with. Both halves are kept out of `Debug` and error
/// text: the id alone tells an attacker which account to aim at.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    access_key_id: Secret,
    secret_access_key: Secret,
}

impl S3Credentials {
    /// A key pair; both halves must be non-empty (checked by [`RepoLocation::parse`]).
    pub fn new(access_key_id: impl Into<String>, secret_access_key: Secret) -> S3Credentials {
        S3Credentials {
            access_key_id: Secret::new(access_key_id),
            secret_access_key,
        }
    }

    /// The access key id, for a child's environment (`AWS_ACCESS_KEY_ID`) — never a log.
    pub fn access_key_id(&self) -> &str {
        self.access_key_id.expose()
    }

    /// The secret access key, for a child's environment — never a log.
    pub fn secret_access_key(&self) -> &Secret {
        &self.secret_access_key
    }
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl RepoLocation {
    /// Parses a restic repository string. A plain path (or `local:PATH`) is a local folder;
    /// `s3:http[s]://host[:port]/bucket[/prefix]` (or `s3:host/bucket/…`, https) is S3 and needs
    /// `credentials`, which a local folder ignores. Every refusal says what was wrong and
    /// never repeats a credential.
    pub fn parse(text: &str, credentials: Option<S3Credentials>) -> Result<RepoLocation> {
        let text = text.trim();
        if text.is_empty() {
            return Err(BackupError::Location(
                "empty: give a folder or `s3:URL/bucket/prefix`".into(),
            ));
        }
        if let Some(path) = text.strip_prefix("local:") {
            return RepoLocation::parse_local(path);
        }
        if let Some(rest) = text.strip_prefix("s3:") {
            return parse_s3(rest, credentials).map(RepoLocation::S3);
        }
        if let Some((scheme, _)) = text.split_once(':')
            && UNSUPPORTED_SCHEMES.contains(&scheme)
        {
            return Err(BackupError::Location(format!(
                "`{scheme}:` repositories are not built into wharf; use a local folder or `s3:`"
            )));
        }
        RepoLocation::parse_local(text)
    }

    fn parse_local(path: &str) -> Result<RepoLocation> {
        if path.is_empty() {
            return Err(BackupError::Location("`local:` names no folder".into()));
        }
        Ok(RepoLocation::Local(PathBuf::from(path)))
    }

    /// The local folder, for a repository on this machine.
    pub fn local_dir(&self) -> Option<&Path> {
        match self {
            RepoLocation::Local(dir) => Some(dir),
            RepoLocation::S3(_) => None,
        }
    }

    /// `text` with every credential of this location replaced, for text from the storage
    /// (an S3 error body can echo the access key id) that is about to go into an error.
    pub(crate) fn scrub(&self, text: &str) -> String {
        match self {
            RepoLocation::Local(_) => text.to_owned(),
            RepoLocation::S3(s3) => {
                let text = s3.credentials.secret_access_key.scrub(text);
                s3.credentials.access_key_id.scrub(&text)
            }
        }
    }

    /// When rustic_core finds no key the password opens, whether the storage refused to list
    /// the keys at all: rustic_core skips a failed listing, so an S3 key allowed to read
    /// objects but not to list the bucket (a policy on `bucket/*` only, without
    /// `s3:ListBucket` on `bucket`) would otherwise be reported as a wrong repository
    /// password. `None` when the listing works (the password is what is wrong).
    pub(crate) fn listing_refused(&self) -> Option<BackupError> {
        let RepoLocation::S3(s3) = self else {
            return None;
        };
        let operator = opendal::Operator::via_iter("s3", s3.opendal_options()).ok()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        let listed = runtime.block_on(operator.list("keys/"));
        let refused = listed.err()?;
        let location = self.to_string();
        Some(match refused.kind() {
            opendal::ErrorKind::PermissionDenied => BackupError::AccessDenied {
                location,
                detail: "listing the repository's keys was refused (the key needs \
                         s3:ListBucket on the bucket)"
                    .into(),
            },
            _ => BackupError::Repository {
                location,
                detail: format!(
                    "listing the repository's keys failed: {}",
                    self.scrub(&refused.to_string())
                ),
            },
        })
    }

    /// The backends `rustic_core` opens: the local backend for a folder (`local:` so a path
    /// holding `:` is not read as a scheme), OpenDAL's `s3` service for a bucket.
    pub(crate) fn backends(&self) -> std::result::Result<RepositoryBackends, Box<RusticError>> {
        match self {
            RepoLocation::Local(dir) => BackendOptions::default()
                .repository(format!("local:{}", dir.display()))
                .to_backends(),
            RepoLocation::S3(s3) => BackendOptions::default()
                .repository("opendal:s3")
                .options(s3.opendal_options())
                .to_backends(),
        }
    }
}

impl S3Location {
    /// The same location with requests signed for `region` (default [`DEFAULT_S3_REGION`]).
    #[must_use]
    pub fn with_region(mut self, region: impl Into<String>) -> S3Location {
        self.region = region.into();
        self
    }

    /// The same location with failed requests retried `retries` times (default
    /// [`DEFAULT_S3_RETRIES`]; 0 fails at the first refusal).
    #[must_use]
    pub fn with_retries(mut self, retries: usize) -> S3Location {
        self.retries = retries;
        self
    }

    /// `scheme://host[:port]`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The prefix inside the bucket (empty for the bucket's root).
    pub fn root(&self) -> &str {
        &self.root
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    pub fn credentials(&self) -> &S3Credentials {
        &self.credentials
    }

    /// OpenDAL's S3 configuration. Path-style requests (`host/bucket/key`), which every
    /// S3-compatible server answers; no shared AWS config or instance metadata is read, so
    /// the keys used are exactly the ones given.
    fn opendal_options(&self) -> BTreeMap<String, String> {
        let mut options = BTreeMap::new();
        let mut set = |key: &str, value: &str| {
            options.insert(key.to_owned(), value.to_owned());
        };
        set("endpoint", &self.endpoint);
        set("bucket", &self.bucket);
        set("root", &format!("/{}", self.root));
        set("region", &self.region);
        set("access_key_id", self.credentials.access_key_id.expose());
        set(
            "secret_access_key",
            self.credentials.secret_access_key.expose(),
        );
        set("disable_config_load", "true");
        set("enable_virtual_host_style", "false");
        // Read by rustic_backend's retry layer, not by OpenDAL's S3 service.
        set("retry", &self.retries.to_string());
        options
    }
}

/// The crate's error for a failed repository operation at `at`: a wrong repository password,
/// credentials the S3 server refused, a missing bucket, or else rustic's own account of the
/// failure — each naming the location by its `Display` form, scrubbed of both keys.
pub(crate) fn repo_error(at: &RepoLocation, error: &RusticError) -> BackupError {
    let location = at.to_string();
    if error.is_incorrect_password() {
        return BackupError::WrongPassword { location };
    }
    let (storage, io) = causes(error);
    if let (RepoLocation::S3(s3), Some(storage)) = (at, storage) {
        match storage.kind() {
            opendal::ErrorKind::PermissionDenied => {
                // A refused HEAD has no body to say why; S3's status is all there is.
                let detail = match storage.message() {
                    "" => "403 Forbidden".to_owned(),
                    message => at.scrub(message),
                };
                return BackupError::AccessDenied { location, detail };
            }
            opendal::ErrorKind::ConfigInvalid if storage.message().contains("NoSuchBucket") => {
                return BackupError::NoSuchBucket {
                    location,
                    bucket: s3.bucket.clone(),
                };
            }
            _ => {}
        }
        if let Some(io) = io {
            return BackupError::Unreachable {
                location,
                detail: at.scrub(&io.to_string()),
            };
        }
    }
    let detail = error
        .display_log()
        .lines()
        .take(6)
        .collect::<Vec<_>>()
        .join(" / ");
    BackupError::Repository {
        location,
        detail: at.scrub(&detail),
    }
}

/// The OpenDAL error behind a rustic error (what the storage layer said), and the innermost
/// IO error behind that (the connection that failed, when no answer came).
fn causes(error: &RusticError) -> (Option<&opendal::Error>, Option<&std::io::Error>) {
    let (mut storage, mut io) = (None, None);
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(current) = cause {
        if storage.is_none() {
            storage = current.downcast_ref::<opendal::Error>();
        }
        if let Some(found) = current.downcast_ref::<std::io::Error>() {
            io = Some(found);
        }
        cause = current.source();
    }
    (storage, io)
}

fn parse_s3(rest: &str, credentials: Option<S3Credentials>) -> Result<S3Location> {
    // restic reads `s3:host/bucket` as https.
    let with_scheme = if rest.starts_with("http://") || rest.starts_with("https://") {
        rest.to_owned()
    } else {
        format!("https://{rest}")
    };
    let shown = redacted_url(&with_scheme);
    let bad = |why: &str| BackupError::Location(format!("`s3:{shown}`: {why}"));
    let url = url::Url::parse(&with_scheme).map_err(|e| bad(&format!("not a URL ({e})")))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "credentials do not belong in the location; give the access key separately",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("a query or fragment is not part of an S3 location"));
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad("no host"))?;
    let endpoint = match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    };
    let mut segments = url
        .path_segments()
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty());
    let bucket = segments
        .next()
        .ok_or_else(|| bad("no bucket (expected `s3:URL/bucket[/prefix]`)"))?
        .to_owned();
    if !valid_bucket(&bucket) {
        return Err(bad(&format!(
            "`{bucket}` is not a bucket name (3 to 63 of a-z, 0-9, `.` and `-`)"
        )));
    }
    let root = segments.collect::<Vec<_>>().join("/");
    let credentials =
        credentials.ok_or_else(|| bad("an S3 repository needs an access key id and secret"))?;
    if credentials.access_key_id.expose().is_empty()
        || credentials.secret_access_key.expose().is_empty()
    {
        return Err(bad("the access key id or the secret access key is empty"));
    }
    Ok(S3Location {
        endpoint,
        bucket,
        root,
        region: DEFAULT_S3_REGION.to_owned(),
        retries: DEFAULT_S3_RETRIES,
        credentials,
    })
}

/// S3's bucket naming rules, the part that decides whether a path-style URL is well formed.
fn valid_bucket(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && !name.starts_with(['.', '-'])
        && !name.ends_with(['.', '-'])
}

/// A URL as it may appear in an error: whatever sits before an `@` in its authority (a user
/// and password that should not be there) is replaced.
fn redacted_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://[redacted]@{host}{path}"),
        None => url.to_owned(),
    }
}

impl fmt::Display for RepoLocation {
    /// restic's syntax, which `restic -r` accepts; never a credential.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RepoLocation::Local(dir) => write!(f, "{}", dir.display()),
            RepoLocation::S3(s3) => write!(f, "{s3}"),
        }
    }
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3:{}/{}", self.endpoint, self.bucket)?;
        if !self.root.is_empty() {
            write!(f, "/{}", self.root)?;
        }
        Ok(())
    }
}

impl fmt::Debug for RepoLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RepoLocation::Local(dir) => f.debug_tuple("Local").field(dir).finish(),
            RepoLocation::S3(s3) => f.debug_tuple("S3").field(s3).finish(),
        }
    }
}

impl fmt::Debug for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Location")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("root", &self.root)
            .field("region", &self.region)
            .field("retries", &self.retries)
            .field("credentials", &self.credentials)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Option<S3Credentials> {
        Some(S3Credentials::new(
            "AKIDEXAMPLEKEYID",
            Secret::new("wJalrXUtnFEMIexamplesecret"),
        ))
    }

    fn s3(text: &str) -> S3Location {
        match RepoLocation::parse(text, keys()).unwrap() {
            RepoLocation::S3(s3) => s3,
            other => panic!("{text} parsed as {other:?}"),
        }
    }

    fn refusal(text: &str, credentials: Option<S3Credentials>) -> String {
        RepoLocation::parse(text, credentials)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn restic_s3_strings_parse_into_endpoint_bucket_and_root() {
        let cases = [
            (
                "s3:http://127.0.0.1:9000/bucket",
                "http://127.0.0.1:9000",
                "bucket",
                "",
            ),
            (
                "s3:http://127.0.0.1:9000/bucket/",
                "http://127.0.0.1:9000",
                "bucket",
                "",
            ),
            (
                "s3:https://minio.example:9000/bkt/a/b/",
                "https://minio.example:9000",
                "bkt",
                "a/b",
            ),
            (
                "s3:s3.amazonaws.com/my-bucket/restic",
                "https://s3.amazonaws.com",
                "my-bucket",
                "restic",
            ),
            (
                "  s3:http://[::1]:9000/b.k-t  ",
                "http://[::1]:9000",
                "b.k-t",
                "",
            ),
        ];
        for (text, endpoint, bucket, root) in cases {
            let s3 = s3(text);
            assert_eq!(
                (s3.endpoint(), s3.bucket(), s3.root(), s3.region()),
                (endpoint, bucket, root, DEFAULT_S3_REGION),
                "{text}"
            );
        }
    }

    #[test]
    fn display_is_restic_syntax_that_parses_back_to_the_same_location() {
        for text in [
            "s3:http://127.0.0.1:9000/bucket",
            "s3:https://host/bkt/deep/prefix",
        ] {
            let location = RepoLocation::parse(text, keys()).unwrap();
            assert_eq!(location.to_string(), text);
            assert_eq!(RepoLocation::parse(text, keys()).unwrap(), location);
        }
    }

    #[test]
    fn paths_and_local_prefix_are_local_folders_and_ignore_credentials() {
        for (text, dir) in [
            ("/srv/backups", "/srv/backups"),
            ("local:/srv/backups", "/srv/backups"),
            ("relative/dir", "relative/dir"),
            ("/odd:name", "/odd:name"),
        ] {
            let location = RepoLocation::parse(text, keys()).unwrap();
            assert_eq!(location.local_dir(), Some(Path::new(dir)), "{text}");
        }
    }

    #[test]
    fn bad_locations_are_refused_saying_why() {
        let cases = [
            ("", None, "empty"),
            ("local:", None, "names no folder"),
            (
                "sftp:user@host:/srv",
                None,
                "`sftp:` repositories are not built",
            ),
            ("rest:http://host/", None, "`rest:`"),
            ("s3:http://127.0.0.1:9000", keys(), "no bucket"),
            ("s3:http://127.0.0.1:9000/", keys(), "no bucket"),
            (
                "s3:http://127.0.0.1:9000/Upper",
                keys(),
                "not a bucket name",
            ),
            ("s3:http://127.0.0.1:9000/ab", keys(), "not a bucket name"),
            ("s3:http://127.0.0.1:9000/b-kt?x=1", keys(), "query"),
            (
                "s3:http://127.0.0.1:9000/bucket",
                None,
                "needs an access key",
            ),
            ("s3:http://:9000/bucket", keys(), "s3:http://:9000/bucket"),
        ];
        for (text, credentials, expected) in cases {
            let err = refusal(text, credentials);
            assert!(err.contains(expected), "{text:?}: {err}");
        }
        let empty = Some(S3Credentials::new("", Secret::new("x")));
        assert!(refusal("s3:http://h/bucket", empty).contains("is empty"));
    }

    #[test]
    fn credentials_in_the_url_are_refused_without_repeating_them() {
        let err = refusal(
            "s3:http://AKIDINURL:SeCrEtInUrl@127.0.0.1:9000/bucket",
            keys(),
        );
        assert!(err.contains("credentials do not belong"), "{err}");
        assert!(
            !err.contains("SeCrEtInUrl") && !err.contains("AKIDINURL"),
            "{err}"
        );
        // Even a URL too broken to parse is shown without what precedes its `@`.
        let err = refusal("s3:http://AKIDINURL:SeCrEtInUrl@[bad/bucket", keys());
        assert!(
            !err.contains("SeCrEtInUrl") && !err.contains("AKIDINURL"),
            "{err}"
        );
    }

    #[test]
    fn debug_and_display_never_show_either_key() {
        let location = RepoLocation::parse("s3:http://127.0.0.1:9000/bucket/p", keys()).unwrap();
        for text in [
            format!("{location:?}"),
            format!("{location:#?}"),
            location.to_string(),
        ] {
            assert!(!text.contains("AKIDEXAMPLEKEYID"), "{text}");
            assert!(!text.contains("wJalrXUtnFEMIexamplesecret"), "{text}");
            assert!(text.contains("127.0.0.1:9000"), "{text}");
        }
    }

    #[test]
    fn scrub_removes_both_keys_from_storage_text() {
        let location = RepoLocation::parse("s3:http://127.0.0.1:9000/bucket", keys()).unwrap();
        let body = "<AWSAccessKeyId>AKIDEXAMPLEKEYID</AWSAccessKeyId> wJalrXUtnFEMIexamplesecret";
        let scrubbed = location.scrub(body);
        assert!(!scrubbed.contains("AKIDEXAMPLEKEYID"), "{scrubbed}");
        assert!(
            !scrubbed.contains("wJalrXUtnFEMIexamplesecret"),
            "{scrubbed}"
        );
    }

    proptest::proptest! {
        /// Whatever the operator types, parsing answers (no panic), and an error never
        /// repeats the keys given beside the string.
        #[test]
        fn any_string_parses_or_is_refused_without_the_keys(text in "\\PC{0,80}") {
            if let Err(err) = RepoLocation::parse(&text, keys()) {
                let shown = format!("{err} {err:?}");
                proptest::prop_assert!(!shown.contains("wJalrXUtnFEMIexamplesecret"));
                proptest::prop_assert!(!shown.contains("AKIDEXAMPLEKEYID"));
            }
        }

        /// A password written into the URL is refused and never shown, whatever it is.
        #[test]
        fn a_password_in_the_url_is_never_shown(
            user in "[A-Za-z0-9]{1,12}",
            password in "[A-Za-z0-9+=_~-]{8,24}",
            host in "[a-z0-9.]{0,12}",
            path in "[a-z0-9/]{0,20}",
        ) {
            let text = format!("s3:http://{user}:{password}@{host}/{path}");
            let err = RepoLocation::parse(&text, keys()).unwrap_err();
            let shown = format!("{err} {err:?}");
            proptest::prop_assert!(!shown.contains(&password), "{}", shown);
        }

        /// A well-formed restic S3 string parses, shows as itself, and parses back equal.
        #[test]
        fn well_formed_s3_strings_round_trip(
            scheme in "https?",
            host in "[a-z][a-z0-9-]{0,10}(\\.[a-z]{2,5})?",
            port in proptest::option::of(1u16..),
            bucket in "[a-z0-9][a-z0-9.-]{1,20}[a-z0-9]",
            root in proptest::collection::vec("[A-Za-z0-9_.-]{1,8}", 0..4),
        ) {
            proptest::prop_assume!(!root.iter().any(|s| s == "." || s == ".."));
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            let mut text = format!("s3:{scheme}://{host}{port}/{bucket}");
            for segment in &root {
                text.push('/');
                text.push_str(segment);
            }
            let location = RepoLocation::parse(&text, keys()).unwrap();
            let shown = location.to_string();
            proptest::prop_assert_eq!(&RepoLocation::parse(&shown, keys()).unwrap(), &location);
            let RepoLocation::S3(s3) = location else {
                return Err(proptest::test_runner::TestCaseError::fail("not S3"));
            };
            proptest::prop_assert_eq!(s3.bucket(), bucket.as_str());
            proptest::prop_assert_eq!(s3.root(), root.join("/"));
        }
    }

    #[test]
    fn opendal_options_carry_the_parsed_parts_and_path_style() {
        let options = s3("s3:http://127.0.0.1:9000/bucket/a/b").opendal_options();
        assert_eq!(options["endpoint"], "http://127.0.0.1:9000");
        assert_eq!(options["bucket"], "bucket");
        assert_eq!(options["root"], "/a/b");
        assert_eq!(options["enable_virtual_host_style"], "false");
        assert_eq!(options["disable_config_load"], "true");
        assert_eq!(options["retry"], DEFAULT_S3_RETRIES.to_string());
    }
}
