//! Instance logs in the CRI format Kubernetes uses (`<RFC 3339 time> <stream> <P|F> <text>`),
//! written with size-based rotation and read back merged, filtered and followed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// Lines longer than this are split into partial (`P`) records, as CRI runtimes do.
pub const MAX_RECORD: usize = 16 * 1024;

/// Appends records to a log file and rotates it when it grows past `max_bytes`:
/// `x.log` → `x.log.1` → … → `x.log.<keep>`, the oldest dropped.
pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    keep: u32,
}

impl LogWriter {
    pub fn open(path: &Path, max_bytes: u64, keep: u32) -> io::Result<LogWriter> {
        if let Some(dir) = path.parent() {
            std::os::unix::fs::DirBuilderExt::mode(fs::DirBuilder::new().recursive(true), 0o700)
                .create(dir)?;
        }
        let file = private_append(path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter {
            path: path.to_owned(),
            file,
            size,
            max_bytes,
            keep,
        })
    }

    /// Writes one line of output from `stream` (`stdout` or `stderr`), without its newline.
    pub fn write_line(&mut self, stream: &str, line: &[u8]) -> io::Result<()> {
        self.write_line_at(jiff::Timestamp::now(), stream, line)
    }

    /// Writes one line with the time it was produced (a container engine's timestamp, so a
    /// log followed again after a control-plane restart keeps each line's own time).
    pub fn write_line_at(
        &mut self,
        time: jiff::Timestamp,
        stream: &str,
        line: &[u8],
    ) -> io::Result<()> {
        let chunks: Vec<&[u8]> = if line.is_empty() {
            vec![line]
        } else {
            line.chunks(MAX_RECORD).collect()
        };
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            let tag = if i == last { 'F' } else { 'P' };
            let mut record = format!("{time:.9} {stream} {tag} ").into_bytes();
            record.extend_from_slice(chunk);
            record.push(b'\n');
            if self.size > 0 && self.size + record.len() as u64 > self.max_bytes {
                self.rotate()?;
            }
            self.file.write_all(&record)?;
            self.size += record.len() as u64;
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        if self.keep == 0 {
            self.file.set_len(0)?;
        } else {
            for n in (1..self.keep).rev() {
                let from = rotated(&self.path, n);
                if from.exists() {
                    fs::rename(&from, rotated(&self.path, n + 1))?;
                }
            }
            fs::rename(&self.path, rotated(&self.path, 1))?;
            self.file = private_append(&self.path)?;
        }
        self.size = 0;
        Ok(())
    }
}

/// Opens a log for appending, created 0600: an instance's output is its owner's to read.
fn private_append(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// One parsed log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub time: jiff::Timestamp,
    pub stream: String,
    pub partial: bool,
    pub text: String,
}

/// Parses one CRI record; `None` for a line that is not one (it is skipped, not fatal).
pub fn parse_record(line: &str) -> Option<Record> {
    let mut parts = line.splitn(4, ' ');
    let time = parts.next()?.parse().ok()?;
    let stream = parts.next()?.to_owned();
    let partial = match parts.next()? {
        "P" => true,
        "F" => false,
        _ => return None,
    };
    Some(Record {
        time,
        stream,
        partial,
        text: parts.next().unwrap_or_default().to_owned(),
    })
}

/// Every record of an instance's log, oldest first, across rotated files.
pub fn read_all(path: &Path, keep: u32) -> io::Result<Vec<Record>> {
    let mut files: Vec<PathBuf> = (1..=keep)
        .rev()
        .map(|n| rotated(path, n))
        .filter(|p| p.exists())
        .collect();
    files.push(path.to_owned());
    let mut records = Vec::new();
    for file in files {
        let Ok(handle) = File::open(&file) else {
            continue;
        };
        for line in BufReader::new(handle).lines() {
            if let Some(record) = parse_record(&line?) {
                records.push(record);
            }
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_rotate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api/0.log");
        let mut writer = LogWriter::open(&path, 200, 2).unwrap();
        for i in 0..20 {
            writer
                .write_line("stdout", format!("line {i}").as_bytes())
                .unwrap();
        }
        assert!(rotated(&path, 1).exists() && rotated(&path, 2).exists());
        assert!(!rotated(&path, 3).exists(), "only `keep` rotated files");
        let records = read_all(&path, 2).unwrap();
        assert!(records.len() < 20, "the oldest were dropped");
        let texts: Vec<&str> = records.iter().map(|r| r.text.as_str()).collect();
        assert_eq!(texts.last(), Some(&"line 19"));
        let numbers: Vec<u32> = texts.iter().map(|t| t[5..].parse().unwrap()).collect();
        assert!(
            numbers.windows(2).all(|w| w[1] == w[0] + 1),
            "in order across files: {numbers:?}"
        );
    }

    #[test]
    fn long_lines_become_partial_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        let mut writer = LogWriter::open(&path, 1 << 20, 1).unwrap();
        writer
            .write_line("stderr", &vec![b'a'; MAX_RECORD + 10])
            .unwrap();
        let records = read_all(&path, 1).unwrap();
        assert_eq!(records.len(), 2);
        assert!(records[0].partial && !records[1].partial);
        assert_eq!(records[1].text.len(), 10);
        assert_eq!(records[0].stream, "stderr");
    }
}
