//! A build's output as it streams from the engine: each line into the log of the instance
//! whose start built the image (so `wharf logs` and a foreground `up` show it) and into
//! wharf's own log, remembering the Dockerfile step under way for the error of a failed build.

use wharf_runtime::InstanceSpec;
use wharf_runtime::logs::LogWriter;

/// Marks build output in an instance's log.
const PREFIX: &str = "[build] ";

/// The most of a line without its end kept before it is written out as it is.
const MAX_PARTIAL: usize = 64 * 1024;

pub(crate) struct BuildLog {
    writer: Option<LogWriter>,
    service: String,
    image: String,
    /// The last `Step N/M : INSTRUCTION` line the engine sent.
    step: Option<String>,
    /// Output after the last newline.
    partial: String,
}

impl BuildLog {
    pub(crate) fn open(spec: &InstanceSpec, image: &str) -> BuildLog {
        let writer = LogWriter::open(&spec.log_path, spec.log_max_bytes, spec.log_keep)
            .inspect_err(|error| {
                tracing::warn!(%error, path = %spec.log_path.display(), "cannot open the instance's log for the build")
            })
            .ok();
        tracing::info!(service = spec.service, image, "building");
        BuildLog {
            writer,
            service: spec.service.clone(),
            image: image.to_owned(),
            step: None,
            partial: String::new(),
        }
    }

    /// A piece of the engine's output stream (whole lines, or not). A carriage return ends a
    /// line too (progress meters redraw with `\r`), and output that never ends one is written
    /// out in pieces of [`MAX_PARTIAL`]: what a build prints never accumulates here.
    pub(crate) fn output(&mut self, text: &str) {
        self.partial.push_str(text);
        while let Some(end) = self.partial.find(['\n', '\r']) {
            let line: String = self.partial.drain(..=end).collect();
            self.line(line.trim_end());
        }
        while self.partial.len() > MAX_PARTIAL {
            let mut cut = MAX_PARTIAL;
            while !self.partial.is_char_boundary(cut) {
                cut -= 1;
            }
            let piece: String = self.partial.drain(..cut).collect();
            self.line(&piece);
        }
    }

    pub(crate) fn line(&mut self, line: &str) {
        if line.trim().is_empty() {
            return;
        }
        if line.starts_with("Step ") {
            self.step = Some(line.trim().to_owned());
        }
        tracing::info!(service = self.service, image = self.image, line, "build");
        if let Some(writer) = self.writer.as_mut()
            && let Err(error) = writer.write_line("stdout", format!("{PREFIX}{line}").as_bytes())
        {
            tracing::warn!(%error, "cannot write the build's output to the instance's log");
        }
    }

    /// Where the build was: the step under way, else before the first one (the Dockerfile
    /// itself, or the context).
    pub(crate) fn step(&self) -> String {
        match &self.step {
            Some(step) => format!("at `{step}`"),
            None => "before its first step: the Dockerfile or its context".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Service `api`'s instance with its log in `dir` (16 MiB before rotation).
    fn spec_in(dir: &std::path::Path) -> InstanceSpec {
        InstanceSpec {
            service: "api".to_owned(),
            index: 0,
            version: "v1".to_owned(),
            command: Vec::new(),
            env: Vec::new(),
            workdir: dir.to_owned(),
            log_path: dir.join("api.log"),
            exit_path: dir.join("api.exit"),
            log_max_bytes: 1 << 24,
            log_keep: 1,
            container: None,
            stop_signal: None,
        }
    }

    #[test]
    fn output_that_never_ends_a_line_is_written_out_in_bounded_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let spec = spec_in(dir.path());
        let mut log = BuildLog::open(&spec, "s-api:1");
        for _ in 0..40 {
            log.output(&"x".repeat(10_000));
            assert!(log.partial.len() <= MAX_PARTIAL);
        }
        log.output("10%\r20%\r");
        assert!(log.partial.is_empty());
    }

    #[test]
    fn the_step_under_way_is_remembered_across_pieces_of_output() {
        let dir = tempfile::tempdir().unwrap();
        let spec = spec_in(dir.path());
        let mut log = BuildLog::open(&spec, "s-api:1");
        assert!(log.step().contains("before its first step"));
        log.output("Step 1/2 : FROM base\n ---> 1a2b\nStep 2/2 : CO");
        log.output("PY app /app\n");
        assert_eq!(log.step(), "at `Step 2/2 : COPY app /app`");
        drop(log);
        let written = std::fs::read_to_string(dir.path().join("api.log")).unwrap();
        assert!(
            written.contains("[build] Step 2/2 : COPY app /app"),
            "{written}"
        );
    }
}
