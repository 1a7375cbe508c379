//! A container's output followed into wharf's CRI log file, the format the shim writes, so
//! `wharf logs` reads containers and processes alike.
//!
//! The engine keeps a container's output while no control plane follows it; a follower that
//! starts again (after adoption) asks from the last second its file holds and skips lines not
//! newer than its last record, using the engine's own timestamps.

use futures_util::StreamExt;
use wharf_runtime::logs::{LogWriter, read_all};

use crate::ContainerHandle;
use crate::engine::Engine;

/// Follows the container's output until it ends.
pub(crate) async fn follow(engine: Engine, handle: ContainerHandle) {
    let last = read_all(&handle.log_path, 0)
        .ok()
        .and_then(|records| records.last().map(|r| r.time));
    let mut writer = match LogWriter::open(&handle.log_path, handle.log_max_bytes, handle.log_keep)
    {
        Ok(writer) => writer,
        Err(error) => {
            tracing::error!(%error, path = %handle.log_path.display(), "cannot open the instance's log");
            return;
        }
    };
    let Ok(docker) = engine.client() else { return };
    let since = last.map_or(0, |t| i32::try_from(t.as_second()).unwrap_or(0));
    let options = bollard::query_parameters::LogsOptions {
        follow: true,
        stdout: true,
        stderr: true,
        timestamps: true,
        since,
        ..Default::default()
    };
    let mut stream = docker.logs(&handle.id, Some(options));
    let mut partial: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    while let Some(Ok(output)) = stream.next().await {
        let (slot, stream_name, bytes) = match output {
            bollard::container::LogOutput::StdErr { message } => (1, "stderr", message),
            bollard::container::LogOutput::StdOut { message }
            | bollard::container::LogOutput::Console { message } => (0, "stdout", message),
            bollard::container::LogOutput::StdIn { .. } => continue,
        };
        partial[slot].extend_from_slice(&bytes);
        while let Some(newline) = partial[slot].iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = partial[slot].drain(..=newline).collect();
            write(&mut writer, stream_name, &line[..line.len() - 1], last);
        }
    }
    for (slot, name) in [(0, "stdout"), (1, "stderr")] {
        if !partial[slot].is_empty() {
            let line = std::mem::take(&mut partial[slot]);
            write(&mut writer, name, &line, last);
        }
    }
}

/// Writes one line the engine gave with its timestamp prefix (`2026-…Z text`).
fn write(writer: &mut LogWriter, stream: &str, line: &[u8], not_after: Option<jiff::Timestamp>) {
    let (time, text) = split_timestamp(line);
    if let (Some(time), Some(last)) = (time, not_after)
        && time <= last
    {
        return;
    }
    let time = time.unwrap_or_else(jiff::Timestamp::now);
    if let Err(error) = writer.write_line_at(time, stream, text) {
        tracing::warn!(%error, "cannot write an instance's log");
    }
}

fn split_timestamp(line: &[u8]) -> (Option<jiff::Timestamp>, &[u8]) {
    let Some(space) = line.iter().position(|b| *b == b' ') else {
        return (None, line);
    };
    let time = std::str::from_utf8(&line[..space])
        .ok()
        .and_then(|t| t.parse().ok());
    match time {
        Some(time) => (Some(time), &line[space + 1..]),
        None => (None, line),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_timestamps_are_split_off() {
        let (time, text) = split_timestamp(b"2026-12-05T21:00:00.123456789Z hello world");
        assert_eq!(text, b"hello world");
        assert_eq!(time.unwrap().to_string(), "2026-12-05T21:00:00.123456789Z");
        assert_eq!(split_timestamp(b"no time"), (None, &b"no time"[..]));
    }
}
