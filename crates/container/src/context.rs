//! A build context as the engine's build API wants it: the files of a directory, minus what
//! its `.dockerignore` excludes (docker's rules, not git's), as a tar archive; and a digest of
//! the same files, so the version of a built service changes exactly when what the engine
//! would build from changes.
//!
//! Pure but for reading the directory; callers run it on a blocking thread.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wharf_runtime::BuildSpec;

/// Hex digits of the context digest used as a version (as docker's short image ids).
pub const VERSION_DIGITS: usize = 12;

/// The `.dockerignore` of a context: its rules in order, the last matching one deciding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ignore {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    /// The pattern's path segments (`**` a segment of its own).
    segments: Vec<String>,
    /// A `!pattern`: what it matches is sent after all.
    include: bool,
}

impl Ignore {
    /// Reads `.dockerignore` text: one pattern a line, `#` comments, `!` re-includes; each
    /// pattern cleaned as docker cleans it (`./a//b/` is `a/b`, a leading `/` dropped).
    pub fn parse(text: &str) -> Ignore {
        let rules = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .filter_map(|line| {
                let (include, pattern) = match line.strip_prefix('!') {
                    Some(rest) => (true, rest.trim()),
                    None => (false, line),
                };
                let segments = clean(pattern);
                (!segments.is_empty()).then_some(Rule { segments, include })
            })
            .collect();
        Ignore { rules }
    }

    /// Whether `path` (relative to the context, `/`-separated) is left out: the last rule that
    /// matches it or one of its parent directories decides, as docker's matcher does.
    pub fn excludes(&self, path: &str) -> bool {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let mut excluded = false;
        for rule in &self.rules {
            let matched = (1..=parts.len()).any(|n| matches(&rule.segments, &parts[..n]));
            if matched {
                excluded = !rule.include;
            }
        }
        excluded
    }

    /// Whether some rule re-includes: then an excluded directory must still be walked.
    fn has_includes(&self) -> bool {
        self.rules.iter().any(|rule| rule.include)
    }
}

/// `filepath.Clean` on a pattern, split into segments.
fn clean(pattern: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for part in pattern.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            other => out.push(other.to_owned()),
        }
    }
    out
}

/// Pattern segments against path segments; `**` matches any number of segments.
fn matches(pattern: &[String], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => {
            (0..=path.len()).any(|skip| matches(rest, &path[skip..]))
        }
        Some((first, rest)) => match path.split_first() {
            Some((segment, path_rest)) => {
                segment_matches(first.as_bytes(), segment.as_bytes()) && matches(rest, path_rest)
            }
            None => false,
        },
    }
}

/// One segment: `*` any run of characters, `?` one, `[a-z]` / `[^a-z]` a class, `\` escapes
/// (Go's `filepath.Match`, which docker uses within a segment).
fn segment_matches(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.first() {
        None => text.is_empty(),
        Some(b'*') => (0..=text.len()).any(|skip| segment_matches(&pattern[1..], &text[skip..])),
        Some(b'?') => !text.is_empty() && segment_matches(&pattern[1..], &text[1..]),
        Some(b'[') => {
            let Some((&c, text_rest)) = text.split_first() else {
                return false;
            };
            match class(&pattern[1..], c) {
                Some((true, after)) => segment_matches(after, text_rest),
                _ => false,
            }
        }
        Some(b'\\') if pattern.len() > 1 => {
            text.first() == Some(&pattern[1]) && segment_matches(&pattern[2..], &text[1..])
        }
        Some(&p) => text.first() == Some(&p) && segment_matches(&pattern[1..], &text[1..]),
    }
}

/// A character class after its `[`: whether `c` is in it, and the pattern after its `]`
/// (`None` for a class without its `]`, which matches nothing).
fn class(pattern: &[u8], c: u8) -> Option<(bool, &[u8])> {
    let (negated, mut rest) = match pattern.first() {
        Some(b'^') => (true, &pattern[1..]),
        _ => (false, pattern),
    };
    let mut found = false;
    let mut first = true;
    loop {
        let (&low, after) = rest.split_first()?;
        if low == b']' && !first {
            return Some((found != negated, after));
        }
        first = false;
        let (low, after) = match low {
            b'\\' => {
                let (&escaped, after) = after.split_first()?;
                (escaped, after)
            }
            _ => (low, after),
        };
        if after.first() == Some(&b'-') && after.get(1).is_some_and(|b| *b != b']') {
            let high = after[1];
            found |= (low..=high).contains(&c);
            rest = &after[2..];
        } else {
            found |= low == c;
            rest = after;
        }
    }
}

/// One entry of a context, in the order it is archived and digested.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Dir { path: String },
    File { path: String, mode: u32 },
    Link { path: String, target: PathBuf },
}

impl Entry {
    fn path(&self) -> &str {
        match self {
            Entry::Dir { path } | Entry::File { path, .. } | Entry::Link { path, .. } => path,
        }
    }
}

/// Every entry of the context that is sent, sorted by path. The Dockerfile and `.dockerignore`
/// are always sent (the engine needs the one; docker's CLI sends both whatever the rules say).
fn entries(context: &Path, dockerfile: &str) -> io::Result<Vec<Entry>> {
    let ignore = match std::fs::read_to_string(context.join(".dockerignore")) {
        Ok(text) => Ignore::parse(&text),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ignore::default(),
        Err(error) => return Err(error),
    };
    let keep = |path: &str| path == dockerfile || path == ".dockerignore";
    let mut out = Vec::new();
    let mut pending = vec![String::new()];
    while let Some(dir) = pending.pop() {
        let read = std::fs::read_dir(context.join(&dir)).map_err(|error| {
            io::Error::new(
                error.kind(),
                format!("{}: {error}", context.join(&dir).display()),
            )
        })?;
        for item in read {
            let item = item?;
            let name = item.file_name().to_string_lossy().into_owned();
            let path = if dir.is_empty() {
                name
            } else {
                format!("{dir}/{name}")
            };
            let excluded = ignore.excludes(&path) && !keep(&path);
            let kind = item.file_type()?;
            if kind.is_dir() {
                if !excluded {
                    out.push(Entry::Dir { path: path.clone() });
                }
                if !excluded || ignore.has_includes() {
                    pending.push(path);
                }
            } else if excluded {
            } else if kind.is_symlink() {
                let target = std::fs::read_link(item.path())?;
                out.push(Entry::Link { path, target });
            } else if kind.is_file() {
                let mode = item.metadata()?.permissions().mode() & 0o7777;
                out.push(Entry::File { path, mode });
            }
            // Sockets, fifos and devices are not part of an image's source.
        }
    }
    out.sort_by(|a, b| a.path().cmp(b.path()));
    Ok(out)
}

/// The Dockerfile's path inside the context.
pub fn dockerfile(spec: &BuildSpec) -> &str {
    spec.dockerfile.trim_start_matches("./")
}

/// A digest of what the engine would build: the sent files (paths, modes, contents, link
/// targets), the Dockerfile's path, the build args and the target. Hex, full length.
pub fn digest(spec: &BuildSpec) -> io::Result<String> {
    let mut hash = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    };
    field(b"wharf-build/1");
    field(dockerfile(spec).as_bytes());
    for (name, value) in &spec.args {
        field(name.as_bytes());
        field(value.as_bytes());
    }
    field(spec.target.as_deref().unwrap_or_default().as_bytes());
    for entry in entries(&spec.context, dockerfile(spec))? {
        match &entry {
            Entry::Dir { path } => {
                field(b"d");
                field(path.as_bytes());
            }
            Entry::File { path, mode } => {
                field(b"f");
                field(path.as_bytes());
                field(&mode.to_le_bytes());
                field(&std::fs::read(spec.context.join(path))?);
            }
            Entry::Link { path, target } => {
                field(b"l");
                field(path.as_bytes());
                field(target.as_os_str().as_encoded_bytes());
            }
        }
    }
    Ok(format!("{:x}", hash.finalize()))
}

/// The version a built service runs when the manifest gives none: the digest's first
/// [`VERSION_DIGITS`] hex digits.
pub fn version(spec: &BuildSpec) -> io::Result<String> {
    let mut digest = digest(spec)?;
    digest.truncate(VERSION_DIGITS);
    Ok(digest)
}

/// The context as a tar archive, in memory (what the build API reads).
pub fn archive(spec: &BuildSpec) -> io::Result<Vec<u8>> {
    let dockerfile = dockerfile(spec);
    if !spec.context.join(dockerfile).is_file() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "there is no Dockerfile at {}",
                spec.context.join(dockerfile).display()
            ),
        ));
    }
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    tar.mode(tar::HeaderMode::Deterministic);
    for entry in entries(&spec.context, dockerfile)? {
        let path = entry.path();
        tar.append_path_with_name(spec.context.join(path), path)?;
    }
    tar.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerignore_follows_dockers_rules() {
        let ignore = Ignore::parse(
            "# comment\n\n*.log\n/target\nnode_modules\n**/secret.txt\ndocs/**/*.md\n!docs/keep.md\n./build//out/\n[a-c]x?.tmp\n",
        );
        for excluded in [
            "app.log",
            "target",
            "target/debug/app",
            "node_modules/x/index.js",
            "secret.txt",
            "a/b/secret.txt",
            "docs/intro.md",
            "docs/a/b/c.md",
            "build/out/bin",
            "bxy.tmp",
        ] {
            assert!(ignore.excludes(excluded), "{excluded}");
        }
        for kept in [
            "src/app.log", // `*.log` is anchored to the context's root, unlike git's
            "src/node_modules",
            "docs/keep.md",
            "docs/readme.txt",
            "dxy.tmp",
            "bx.tmp",
            "Dockerfile",
        ] {
            assert!(!ignore.excludes(kept), "{kept}");
        }
        // The last matching rule decides.
        let ignore = Ignore::parse("!a.txt\n*.txt\n");
        assert!(ignore.excludes("a.txt"));
        let ignore = Ignore::parse("*\n!Dockerfile\n!app\n");
        assert!(!ignore.excludes("Dockerfile"));
        assert!(!ignore.excludes("app"));
        assert!(ignore.excludes("other"));
        assert!(segment_matches(b"[^a]b", b"cb"));
        assert!(!segment_matches(b"[^a]b", b"ab"));
        assert!(segment_matches(b"a\\*", b"a*"));
        assert!(!segment_matches(b"a\\*", b"ab"));
    }

    fn spec(dir: &Path) -> BuildSpec {
        BuildSpec {
            context: dir.to_owned(),
            dockerfile: "Dockerfile".to_owned(),
            args: vec![("A".to_owned(), "1".to_owned())],
            target: None,
            also_tag: Vec::new(),
        }
    }

    #[test]
    fn the_digest_changes_with_what_is_sent_and_only_with_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("Dockerfile"),
            "FROM scratch\nCOPY app /app\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("app"), "one").unwrap();
        std::fs::write(dir.path().join(".dockerignore"), "*.log\n").unwrap();
        let spec = spec(dir.path());
        let first = digest(&spec).unwrap();
        assert_eq!(digest(&spec).unwrap(), first, "stable");
        assert_eq!(version(&spec).unwrap().len(), VERSION_DIGITS);
        // An ignored file does not change it.
        std::fs::write(dir.path().join("debug.log"), "noise").unwrap();
        assert_eq!(digest(&spec).unwrap(), first);
        // A sent file's content, a build arg and the target do.
        std::fs::write(dir.path().join("app"), "two").unwrap();
        let second = digest(&spec).unwrap();
        assert_ne!(second, first);
        let mut other = spec.clone();
        other.args[0].1 = "2".to_owned();
        assert_ne!(digest(&other).unwrap(), second);
        other = spec.clone();
        other.target = Some("runtime".to_owned());
        assert_ne!(digest(&other).unwrap(), second);
        // The archive holds what is sent, and not what is ignored.
        let bytes = archive(&spec).unwrap();
        let mut names: Vec<String> = tar::Archive::new(bytes.as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        names.sort();
        assert_eq!(names, [".dockerignore", "Dockerfile", "app"]);
    }

    #[test]
    fn a_missing_dockerfile_or_context_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let error = archive(&spec(dir.path())).unwrap_err();
        assert!(error.to_string().contains("no Dockerfile"), "{error}");
        let error = digest(&spec(&dir.path().join("nope"))).unwrap_err();
        assert!(error.to_string().contains("nope"), "{error}");
    }
}
