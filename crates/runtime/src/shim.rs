//! The shim: a tiny process between the control plane and each instance (podman's conmon
//! plays the same part).
//!
//! Why a shim: the data plane must outlive the control plane. If the control plane read the
//! instance's stdout itself, its death would break the pipe and the next write would kill the
//! instance with SIGPIPE. The shim owns the pipes, timestamps and rotates the log, waits for
//! the instance and writes its exit status to a file — so a control plane that restarts later
//! still learns how an instance it did not see die ended.
//!
//! Protocol: the spec arrives as JSON on stdin; the shim answers one line on stdout —
//! `started <pid> <start_time>` or `failed <reason>` — and never writes there again.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use crate::logs::LogWriter;
use crate::procfs::ProcessId;
use crate::spec::{ExitStatus, InstanceSpec};

/// How long the shim waits for the log readers to drain after the instance exits (a
/// grandchild may keep the pipe open forever).
const DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// Runs the shim to completion; the return value is the shim's exit code.
pub fn run() -> i32 {
    let spec = match read_spec() {
        Ok(spec) => spec,
        Err(reason) => return fail(&reason),
    };
    // A session of its own: no controlling terminal, so closing the terminal that ran
    // `wharf up` or a Ctrl-C there never reaches the instance.
    let _ = rustix::process::setsid();
    let log = match LogWriter::open(&spec.log_path, spec.log_max_bytes, spec.log_keep) {
        Ok(log) => Arc::new(Mutex::new(log)),
        Err(err) => {
            return fail(&format!(
                "cannot open log {}: {err}",
                spec.log_path.display()
            ));
        }
    };
    let _ = std::fs::remove_file(&spec.exit_path);
    let mut child = match spawn(&spec) {
        Ok(child) => child,
        Err(reason) => return fail(&reason),
    };
    let pid = child.id() as i32;
    let start_time = ProcessId::of(pid).map_or(0, |p| p.start_time);
    announce(&format!("started {pid} {start_time}"));
    let drained = pump_output(&mut child, &log);
    let status = wait(&mut child);
    // Output written just before exit is still in the pipe: give the readers a bounded moment.
    for _ in 0..2 {
        let _ = drained.recv_timeout(DRAIN_LIMIT);
    }
    write_exit(&spec.exit_path, &status);
    0
}

fn read_spec() -> Result<InstanceSpec, String> {
    let mut text = String::new();
    io::stdin()
        .read_to_string(&mut text)
        .map_err(|err| format!("cannot read the spec: {err}"))?;
    serde_json::from_str(&text).map_err(|err| format!("invalid spec: {err}"))
}

fn spawn(spec: &InstanceSpec) -> Result<Child, String> {
    let (program, args) = spec.command.split_first().ok_or("the command is empty")?;
    Command::new(program)
        .args(args)
        .env_remove("WHARF_MASTER_KEY")
        .env_remove("WHARF_API_TOKEN")
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.workdir)
        // Its own process group, so a stop signal reaches the instance and its children
        // and nothing else.
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| match err.kind() {
            io::ErrorKind::NotFound => format!("command not found: `{program}`"),
            io::ErrorKind::PermissionDenied => format!("permission denied running `{program}`"),
            _ => format!("cannot run `{program}`: {err}"),
        })
}

/// Copies stdout and stderr into the log, one thread each; each thread reports on the
/// returned channel when its stream ends.
fn pump_output(child: &mut Child, log: &Arc<Mutex<LogWriter>>) -> mpsc::Receiver<()> {
    let (done, drained) = mpsc::channel();
    let streams: [(&str, Option<Box<dyn Read + Send>>); 2] = [
        (
            "stdout",
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ),
        (
            "stderr",
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ),
    ];
    for (name, stream) in streams {
        let Some(stream) = stream else { continue };
        let (log, done) = (log.clone(), done.clone());
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut line = Vec::new();
            while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                let text = line.strip_suffix(b"\n").unwrap_or(&line);
                if let Ok(mut log) = log.lock() {
                    let _ = log.write_line(name, text);
                }
                line.clear();
            }
            let _ = done.send(());
        });
    }
    drained
}

fn wait(child: &mut Child) -> ExitStatus {
    let status = child.wait();
    let at = jiff::Timestamp::now().to_string();
    match status {
        Ok(status) => ExitStatus {
            code: status.code(),
            signal: status.signal(),
            at,
        },
        Err(_) => ExitStatus {
            code: None,
            signal: None,
            at,
        },
    }
}

/// Writes the exit status atomically (temp file + rename): a reader never sees half of it.
fn write_exit(path: &Path, status: &ExitStatus) {
    let temp = path.with_extension("exit.tmp");
    if let Ok(json) = serde_json::to_vec(status)
        && std::fs::write(&temp, json).is_ok()
    {
        let _ = std::fs::rename(&temp, path);
    }
}

fn announce(line: &str) {
    let mut stdout = io::stdout();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

fn fail(reason: &str) -> i32 {
    announce(&format!("failed {}", reason.replace('\n', " ")));
    127
}
