//! `wharf gate check GATE --version V --service S --input FILE…`: judges a release gate of the
//! manifest on CI tool output. Each input's format is detected from its content (SARIF, JUnit
//! XML, k6 summary, Cobertura, LCOV) and parsed by `wharf-gates` while its SHA-256 is taken;
//! every condition of the gate is evaluated on the inputs of its kind; the verdict is printed
//! (table or JSON), optionally written as JUnit XML, and recorded in the ledger (`gate.check`)
//! with the hash of every input, so the verdict names exactly the files it rests on.
//!
//! Exit codes: 0 the gate passed, 1 it failed, 2 bad input (an unreadable or unknown file, an
//! unknown gate, an invalid manifest) — and bad input records nothing.

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;

use anyhow::Context;
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
use serde_json::json;
use sha2::{Digest, Sha256};
use wharf_api::{
    GateCheckRecordAnswer, GateCheckRecordRequest, GateConditionRecord, GateInputRecord,
};
use wharf_gates::{
    Condition, CoverageCondition, GateVerdict, Input, JunitCondition, K6Condition, Level,
    NamedCondition, SarifCondition, Verdict,
};
use wharf_manifest::model::{GateCheck, GateCondition, SarifLevel};

use crate::cli::{Global, Output};
use crate::exit::ExitStatus;
use crate::manifest_file::ManifestFile;

#[derive(Debug, clap::Subcommand)]
pub enum GateCommand {
    /// Judge GATE on tool output (SARIF, JUnit XML, k6 summary, Cobertura, LCOV; detected from
    /// content) and record the verdict with each input's SHA-256 in the ledger. Exit 0 pass,
    /// 1 fail, 2 bad input.
    #[command(disable_version_flag = true)]
    Check(CheckArgs),
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The gate, as named under the manifest's `gates:`.
    pub gate: String,
    /// The version the verdict is for.
    #[arg(long, value_name = "V")]
    pub version: String,
    /// The service the verdict is for.
    #[arg(long, value_name = "S")]
    pub service: String,
    /// Tool output files; each condition reads those of its kind.
    #[arg(long = "input", value_name = "FILE", num_args = 1.., required = true)]
    pub inputs: Vec<PathBuf>,
    /// Also write the verdict as JUnit XML to FILE (one test case per condition).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

pub fn run(global: &Global, command: GateCommand) -> anyhow::Result<ExitStatus> {
    match command {
        GateCommand::Check(args) => check(global, &args),
    }
}

/// An input read: its parse, hash and format.
struct Read_ {
    input: Input,
    record: GateInputRecord,
}

fn check(global: &Global, args: &CheckArgs) -> anyhow::Result<ExitStatus> {
    let manifest = ManifestFile::read(global)?;
    let loaded = manifest.load(None);
    let Some(stack) = loaded
        .stack
        .filter(|_| !loaded.diagnostics.iter().any(|d| d.is_error()))
    else {
        manifest.print_diagnostics(&loaded.diagnostics, Output::Human)?;
        eprintln!(
            "error: {} is not valid; see `wharf validate`",
            manifest.display
        );
        return Ok(ExitStatus::Invalid);
    };
    let Some(conditions) = stack.gates.get(&args.gate) else {
        let mut names: Vec<&str> = stack.gates.keys().map(String::as_str).collect();
        names.sort_unstable();
        let known = if names.is_empty() {
            "the manifest declares no `gates:`".to_owned()
        } else {
            format!("the manifest's gates: {}", names.join(", "))
        };
        eprintln!("error: no gate `{}` ({known})", args.gate);
        return Ok(ExitStatus::Invalid);
    };
    if !stack.services.contains_key(&args.service) {
        eprintln!(
            "error: `{}` is not a service of {}",
            args.service, manifest.display
        );
        return Ok(ExitStatus::Invalid);
    }
    let mut read = Vec::new();
    for path in &args.inputs {
        match read_input(path) {
            Ok(r) => read.push(r),
            Err(message) => {
                eprintln!("error: {message}");
                return Ok(ExitStatus::Invalid);
            }
        }
    }
    let conditions: Vec<NamedCondition> = conditions.iter().map(condition).collect();
    let inputs: Vec<Input> = read.iter().map(|r| r.input.clone()).collect();
    let verdict = wharf_gates::evaluate(&conditions, &inputs);
    let request = GateCheckRecordRequest {
        gate: args.gate.clone(),
        service: args.service.clone(),
        version: args.version.clone(),
        verdict: verdict.verdict.as_str().to_owned(),
        conditions: verdict
            .conditions
            .iter()
            .map(|c| GateConditionRecord {
                name: c.name.clone(),
                verdict: c.verdict.as_str().to_owned(),
                measured: c.measured.clone(),
            })
            .collect(),
        inputs: read.iter().map(|r| r.record.clone()).collect(),
    };
    let seq = record(global, &request).context("recording the gate's verdict in the ledger")?;
    if let Some(path) = &args.junit {
        write_junit(path, args, &verdict)?;
    }
    print(global, args, &verdict, &request, seq)?;
    Ok(match verdict.verdict {
        Verdict::Pass => ExitStatus::Ok,
        Verdict::Fail => ExitStatus::Failed,
    })
}

/// Reads one input: parses it from a reader that hashes what passes through, then hashes
/// whatever the parser did not need to read (Cobertura is judged by its root element).
fn read_input(path: &PathBuf) -> Result<Read_, String> {
    let shown = path.display().to_string();
    let file = File::open(path).map_err(|e| format!("{shown}: cannot read: {e}"))?;
    let mut reader = Hashing {
        inner: file,
        hasher: Sha256::new(),
    };
    let (format, report) = wharf_gates::parse(&shown, &mut reader).map_err(|e| e.to_string())?;
    io::copy(&mut reader, &mut io::sink()).map_err(|e| format!("{shown}: cannot read: {e}"))?;
    let sha256 = format!("{:x}", reader.hasher.finalize());
    Ok(Read_ {
        input: Input {
            path: shown.clone(),
            report,
        },
        record: GateInputRecord {
            path: shown,
            sha256,
            format: format.as_str().to_owned(),
        },
    })
}

struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// The manifest's condition as the evaluator's.
fn condition(c: &GateCondition) -> NamedCondition {
    let condition = match &c.check {
        GateCheck::Sarif(l) => Condition::Sarif(SarifCondition {
            max_level: l.max_level.map(|level| match level {
                SarifLevel::None => Level::None,
                SarifLevel::Note => Level::Note,
                SarifLevel::Warning => Level::Warning,
                SarifLevel::Error => Level::Error,
            }),
            max_security_severity: l.max_security_severity,
            max_results: l.max_results,
        }),
        GateCheck::Junit(l) => Condition::Junit(JunitCondition {
            max_failures: l.max_failures,
            min_tests: l.min_tests,
        }),
        GateCheck::K6(l) => Condition::K6(K6Condition {
            p95: l.p95.map(|d| d.as_std()),
            max_error_rate: l.max_error_rate.map(|p| p.fraction() * 100.0),
            thresholds_pass: l.thresholds_pass,
        }),
        GateCheck::Coverage(l) => Condition::Coverage(CoverageCondition {
            min_lines: l.min_lines.map(|p| p.fraction() * 100.0),
            min_branches: l.min_branches.map(|p| p.fraction() * 100.0),
        }),
    };
    NamedCondition {
        name: c.name.clone(),
        condition,
    }
}

/// The verdict into the ledger, through the one writer: the running control plane's API, or
/// the same use case here under `control.lock`.
fn record(global: &Global, request: &GateCheckRecordRequest) -> anyhow::Result<u64> {
    let state_dir = global.state_dir();
    match crate::writer::route(&state_dir)? {
        crate::writer::Route::Api => {
            let answer: GateCheckRecordAnswer =
                crate::writer::call(&state_dir, "POST", "/v1/gates/checks", request)?;
            Ok(answer.seq)
        }
        crate::writer::Route::Local(lock) => {
            let mut store = wharf_ops::read::open(&lock)?;
            let actor = wharf_ops::Actor(crate::cmd::audit::actor());
            let entry =
                wharf_ops::gates::record(&mut store, &actor, serde_json::to_value(request)?)?;
            Ok(entry.seq)
        }
    }
}

fn write_junit(path: &PathBuf, args: &CheckArgs, verdict: &GateVerdict) -> anyhow::Result<()> {
    let mut suite = TestSuite::new(format!("wharf gate {}", args.gate));
    for c in &verdict.conditions {
        let status = match c.verdict {
            Verdict::Fail => {
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                status.set_message(c.reason.clone());
                status.set_type(c.kind.as_str());
                status.set_description(format!("measured: {}", c.measured));
                status
            }
            Verdict::Pass => TestCaseStatus::success(),
        };
        let mut case = TestCase::new(c.name.clone(), status);
        case.set_classname(format!("gate.{}.{}", args.gate, c.kind.as_str()));
        case.set_system_out(format!(
            "inputs: {}\nmeasured: {}",
            c.inputs.join(", "),
            c.measured
        ));
        suite.add_test_case(case);
    }
    let mut report = Report::new(format!(
        "wharf gate {} {}@{}",
        args.gate, args.service, args.version
    ));
    report.add_test_suite(suite);
    let xml = report.to_string()?;
    std::fs::write(path, xml).with_context(|| format!("cannot write {}", path.display()))
}

fn print(
    global: &Global,
    args: &CheckArgs,
    verdict: &GateVerdict,
    request: &GateCheckRecordRequest,
    seq: u64,
) -> anyhow::Result<()> {
    if global.output == Output::Json {
        let conditions: Vec<_> = verdict
            .conditions
            .iter()
            .map(|c| {
                json!({
                    "name": c.name, "kind": c.kind.as_str(), "inputs": c.inputs,
                    "measured": c.measured, "verdict": c.verdict.as_str(), "reason": c.reason,
                })
            })
            .collect();
        let value = json!({
            "gate": args.gate, "service": args.service, "version": args.version,
            "verdict": verdict.verdict.as_str(), "conditions": conditions,
            "inputs": request.inputs, "ledger_seq": seq,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY);
    table.set_header(["CONDITION", "INPUTS", "MEASURED", "VERDICT"]);
    for c in &verdict.conditions {
        let shown = match c.verdict {
            Verdict::Pass => "PASS".to_owned(),
            Verdict::Fail => format!("FAIL: {}", c.reason),
        };
        let inputs = if c.inputs.is_empty() {
            "-".to_owned()
        } else {
            c.inputs.join("\n")
        };
        table.add_row([c.name.clone(), inputs, c.measured.clone(), shown]);
    }
    println!("{table}");
    let failed = verdict
        .conditions
        .iter()
        .filter(|c| c.verdict == Verdict::Fail)
        .count();
    println!(
        "gate {} {} for {}@{}: {} conditions, {failed} failed (ledger seq {seq})",
        args.gate,
        verdict.verdict.as_str().to_uppercase(),
        args.service,
        args.version,
        verdict.conditions.len(),
    );
    Ok(())
}
