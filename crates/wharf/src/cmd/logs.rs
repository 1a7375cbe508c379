//! `wharf logs SERVICE`: an instance's output, read from the log files its shim writes, so it
//! works whether or not the control plane runs.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use wharf_runtime::logs::{Record, parse_record, read_all};

use crate::cli::Global;
use crate::exit::ExitStatus;

/// Rotated files kept per instance (as the control plane configures its shims).
const LOG_KEEP: u32 = 3;

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The service whose logs to show (`proxy`: the wharf proxy's own).
    pub service: String,
    /// Keep printing new lines as they are written (`-f` here means follow; use `--file` for
    /// the manifest).
    #[arg(long)]
    pub follow: bool,
    /// Only this instance (its ordinal, as `wharf status` shows it).
    #[arg(long, value_name = "N")]
    pub instance: Option<u32>,
    /// Only lines since TIME (RFC 3339) or within DURATION (e.g. `10m`).
    #[arg(long, value_name = "TIME|DURATION")]
    pub since: Option<String>,
}

pub fn run(global: &Global, args: &LogsArgs) -> anyhow::Result<ExitStatus> {
    let since = match args.since.as_deref().map(parse_since).transpose() {
        Ok(since) => since,
        Err(message) => {
            eprintln!("error: --since: {message}");
            return Ok(ExitStatus::Invalid);
        }
    };
    let mut dir = global.state_dir().join("logs").join(&args.service);
    // The proxy's own log, when no service is called `proxy`.
    let proxy = global
        .state_dir()
        .join("logs")
        .join(wharf_control::PROXY_ROW);
    if !dir.is_dir() && args.service == "proxy" && proxy.is_dir() {
        dir = proxy;
    }
    if !dir.is_dir() {
        return Ok(missing_service(global, &args.service));
    }
    let files = instance_logs(&dir, args.instance);
    if files.is_empty() {
        eprintln!(
            "error: service `{}` has no instance {}",
            args.service,
            args.instance.map_or_else(String::new, |n| n.to_string())
        );
        return Ok(ExitStatus::Invalid);
    }
    let mut records: Vec<(String, Record)> = Vec::new();
    for (label, path) in &files {
        for record in read_all(path, LOG_KEEP)? {
            if since.is_none_or(|since| record.time >= since) {
                records.push((label.clone(), record));
            }
        }
    }
    // A stable sort keeps each instance's own order for records with equal times.
    records.sort_by_key(|(_, record)| record.time);
    for (label, record) in &records {
        print_record(label, record);
    }
    if args.follow {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut follower = Follower::at_end(files);
        runtime.block_on(async move {
            let mut poll = tokio::time::interval(Duration::from_millis(200));
            loop {
                poll.tick().await;
                for (label, record) in follower.poll() {
                    print_record(&label, &record);
                }
            }
        });
    }
    Ok(ExitStatus::Ok)
}

fn missing_service(global: &Global, service: &str) -> ExitStatus {
    let known = crate::manifest_file::ManifestFile::read(global)
        .ok()
        .and_then(|m| {
            wharf_manifest::load(
                &m.source,
                wharf_manifest::EnvironmentChoice::Base,
                &|_: &str| None,
            )
            .stack
        })
        .map(|stack| stack.services.keys().cloned().collect::<Vec<_>>());
    match known {
        Some(names) if names.iter().any(|n| n == service) => {
            eprintln!("service `{service}` has no logs yet (has it been started?)");
            ExitStatus::Failed
        }
        Some(names) => {
            eprintln!(
                "error: unknown service `{service}`; the stack has: {}",
                names.join(", ")
            );
            ExitStatus::Invalid
        }
        None => {
            eprintln!(
                "error: no logs for service `{service}` in {}",
                global.state_dir().display()
            );
            ExitStatus::Invalid
        }
    }
}

/// `(label, path)` of each instance's current log file, by ordinal.
fn instance_logs(dir: &Path, only: Option<u32>) -> Vec<(String, PathBuf)> {
    let service = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    let mut files: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let ordinal: u32 = name.strip_suffix(".log")?.parse().ok()?;
            Some((ordinal, entry.path()))
        })
        .filter(|(ordinal, _)| only.is_none_or(|n| n == *ordinal))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|(ordinal, path)| (format!("{service}/{ordinal}"), path))
        .collect()
}

fn print_record(label: &str, record: &Record) {
    if record.partial {
        print!("{label} | {}", record.text);
    } else {
        println!("{label} | {}", record.text);
    }
}

fn parse_since(text: &str) -> Result<jiff::Timestamp, String> {
    if let Ok(time) = text.parse::<jiff::Timestamp>() {
        return Ok(time);
    }
    let duration = crate::cmd::up::parse_duration(text)
        .map_err(|_| format!("`{text}` is neither an RFC 3339 time nor a duration like `10m`"))?;
    let span = jiff::SignedDuration::try_from(duration).map_err(|e| e.to_string())?;
    jiff::Timestamp::now()
        .checked_sub(span)
        .map_err(|e| e.to_string())
}

/// Tails log files: remembers how far each was read and notices rotation (the file shrank or
/// is a new inode).
struct Follower {
    files: HashMap<PathBuf, (String, u64, u64)>,
    /// When set, new instance files under this directory are picked up as they appear.
    root: Option<PathBuf>,
}

impl Follower {
    fn at_end(files: Vec<(String, PathBuf)>) -> Self {
        let files = files
            .into_iter()
            .map(|(label, path)| {
                let meta = std::fs::metadata(&path).ok();
                let (len, inode) = meta.map_or((0, 0), |m| (m.len(), m.ino()));
                (path, (label, len, inode))
            })
            .collect();
        Follower { files, root: None }
    }

    /// New records since the last poll, in file order.
    fn poll(&mut self) -> Vec<(String, Record)> {
        if let Some(root) = self.root.clone() {
            self.discover(&root);
        }
        let mut out = Vec::new();
        for (path, (label, offset, inode)) in &mut self.files {
            let Ok(meta) = std::fs::metadata(path) else {
                continue;
            };
            if meta.ino() != *inode || meta.len() < *offset {
                *offset = 0;
                *inode = meta.ino();
            }
            if meta.len() == *offset {
                continue;
            }
            let Ok(mut file) = std::fs::File::open(path) else {
                continue;
            };
            let mut text = String::new();
            if file.seek(SeekFrom::Start(*offset)).is_err()
                || file.read_to_string(&mut text).is_err()
            {
                continue;
            }
            // Only whole lines; a half-written one is read next time.
            let complete = text.rfind('\n').map_or(0, |i| i + 1);
            *offset += complete as u64;
            out.extend(
                text[..complete]
                    .lines()
                    .filter_map(parse_record)
                    .map(|r| (label.clone(), r)),
            );
        }
        out
    }

    fn discover(&mut self, root: &Path) {
        for service_dir in std::fs::read_dir(root).into_iter().flatten().flatten() {
            for (label, path) in instance_logs(&service_dir.path(), None) {
                self.files.entry(path).or_insert((label, 0, 0));
            }
        }
    }
}

/// Streams every instance's new output to stdout, `service/N | line`, as `wharf up` does in
/// the foreground, until `stop` turns true; then prints what is left and returns.
pub async fn follow_all(root: PathBuf, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut existing = Vec::new();
    for service_dir in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        existing.extend(instance_logs(&service_dir.path(), None));
    }
    let mut follower = Follower::at_end(existing);
    follower.root = Some(root);
    let mut poll = tokio::time::interval(Duration::from_millis(200));
    loop {
        let stopping = tokio::select! {
            _ = poll.tick() => false,
            _ = stop.wait_for(|stop| *stop) => true,
        };
        for (label, record) in follower.poll() {
            print_record(&label, &record);
        }
        if stopping {
            return;
        }
    }
}
