//! `wharf preflight`: one command that proves the stack works before it is handed over —
//! the manifest is valid, every service is live and ready, every dependency is reachable, the
//! manifest's smoke checks pass, secrets are set and rotated on time, and the ledger
//! verifies. A table (or stable JSON), JUnit XML for CI, exit 1 on any failure, and the
//! result itself goes into the ledger.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
use serde::Serialize;
use serde_json::json;
use wharf_api::{
    HealthStatus, PreflightRecordAnswer, PreflightRecordRequest, ServiceState, StatusReport,
};
use wharf_control::plan::{InstanceVars, http_probe};
use wharf_manifest::ValidStack;
use wharf_manifest::model::{Overdue, SmokeCheck, SmokeKind};
use wharf_probe::{Check, Prober, Status};
use wharf_secrets::Rotation;

use crate::cli::{Global, Output};
use crate::client::{self, NotRunning};
use crate::cmd::secret;
use crate::exit::ExitStatus;
use crate::manifest_file::ManifestFile;

/// How long a smoke check may take when it names no `max_latency`.
const SMOKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, clap::Args)]
pub struct PreflightArgs {
    /// The environment overlay to check (default: `dev` when the manifest defines it).
    #[arg(long = "env", value_name = "ENV")]
    pub environment: Option<String>,
    /// Also write the results as JUnit XML to FILE (for CI systems).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

/// One line of the preflight: stable JSON shape `{category, name, status, duration_ms, reason}`.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub category: &'static str,
    pub name: String,
    /// pass | warn | fail
    pub status: &'static str,
    pub duration_ms: u64,
    pub reason: Option<String>,
}

impl CheckResult {
    fn new(
        category: &'static str,
        name: impl Into<String>,
        status: &'static str,
        started: Instant,
        reason: Option<String>,
    ) -> Self {
        CheckResult {
            category,
            name: name.into(),
            status,
            duration_ms: started.elapsed().as_millis() as u64,
            reason,
        }
    }
}

pub fn run(global: &Global, args: &PreflightArgs) -> anyhow::Result<ExitStatus> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let mut results = Vec::new();
    let stack = check_manifest(global, args, &mut results)?;
    let report = runtime.block_on(check_services(global, &mut results));
    if let Some(stack) = &stack {
        runtime.block_on(check_smoke(stack, &mut results));
        check_secrets(global, stack, &mut results);
        if let Some(report) = &report {
            check_backups(stack, report, &mut results);
        }
    }
    check_ledger(global, &mut results);
    let failed = results.iter().filter(|r| r.status == "fail").count();
    let warned = results.iter().filter(|r| r.status == "warn").count();
    let verdict = if failed > 0 {
        "fail"
    } else if warned > 0 {
        "warn"
    } else {
        "pass"
    };
    record(global, verdict, &results, report.as_ref());
    if let Some(path) = &args.junit {
        write_junit(path, &results, started.elapsed())?;
    }
    print(global, verdict, &results, started.elapsed())?;
    Ok(if failed > 0 {
        ExitStatus::Failed
    } else {
        ExitStatus::Ok
    })
}

fn check_manifest(
    global: &Global,
    args: &PreflightArgs,
    results: &mut Vec<CheckResult>,
) -> anyhow::Result<Option<ValidStack>> {
    let started = Instant::now();
    let manifest = ManifestFile::read(global)?;
    let loaded = manifest.load(args.environment.as_deref());
    let errors = loaded.diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = loaded.diagnostics.len() - errors;
    let (status, reason) = match (errors, warnings) {
        (0, 0) => ("pass", None),
        (0, n) => (
            "warn",
            Some(format!("{n} warning(s); see `wharf validate`")),
        ),
        (n, _) => (
            "fail",
            Some(format!(
                "{n} error(s), first: {}; see `wharf validate`",
                loaded.diagnostics[0].message
            )),
        ),
    };
    results.push(CheckResult::new(
        "manifest",
        format!("{} is valid", manifest.display),
        status,
        started,
        reason,
    ));
    Ok(loaded.stack)
}

async fn check_services(global: &Global, results: &mut Vec<CheckResult>) -> Option<StatusReport> {
    let started = Instant::now();
    let report = match client::call_ok(&global.state_dir(), "GET", "/v1/status", None).await {
        Ok(value) => serde_json::from_value::<StatusReport>(value).ok(),
        Err(err) => {
            let reason = if err.is::<NotRunning>() {
                "no control plane is running; start the stack with `wharf up -d`".to_owned()
            } else {
                err.to_string()
            };
            results.push(CheckResult::new(
                "stack",
                "control plane answers",
                "fail",
                started,
                Some(reason),
            ));
            return None;
        }
    };
    let report = report?;
    results.push(CheckResult::new(
        "stack",
        "control plane answers",
        "pass",
        started,
        None,
    ));
    for service in &report.services {
        // Stricter than the service's health: a gate before traffic fails on a service that is
        // still starting or waiting, not only on one that is down.
        let status = match service.state {
            ServiceState::Running
            | ServiceState::External
            | ServiceState::Exited
            | ServiceState::Stopped => "pass",
            ServiceState::Degraded => "warn",
            ServiceState::Starting
            | ServiceState::Waiting
            | ServiceState::Down
            | ServiceState::Blocked
            | ServiceState::Failed
            | ServiceState::CrashLoop => "fail",
        };
        let status = if status == "pass" && service.health == HealthStatus::Warn {
            "warn"
        } else {
            status
        };
        let reason = service
            .reason
            .clone()
            .or_else(|| (status != "pass").then(|| service.state.to_string()));
        let name = if service.state == ServiceState::External
            || service.dependencies.is_empty() && service.desired == 0
        {
            format!("{} (external) is reachable", service.name)
        } else {
            format!(
                "{} is live and ready ({}/{} ready)",
                service.name, service.ready, service.desired
            )
        };
        results.push(CheckResult::new("service", name, status, started, reason));
        for dependency in &service.dependencies {
            let target = report.services.iter().find(|s| s.name == dependency.name);
            let up = target.is_some_and(|t| t.state.is_serving());
            let status = match (up, dependency.critical) {
                (true, _) => "pass",
                (false, true) => "fail",
                (false, false) => "warn",
            };
            let reason = (!up).then(|| {
                target
                    .and_then(|t| t.reason.clone())
                    .unwrap_or_else(|| "not running".to_owned())
            });
            let name = format!(
                "{} → {} is reachable{}",
                service.name,
                dependency.name,
                if dependency.critical {
                    ""
                } else {
                    " (non-critical)"
                }
            );
            results.push(CheckResult::new(
                "dependency",
                name,
                status,
                started,
                reason,
            ));
        }
    }
    Some(report)
}

async fn check_smoke(stack: &ValidStack, results: &mut Vec<CheckResult>) {
    let prober = Prober::default();
    for smoke in &stack.smoke {
        let started = Instant::now();
        let (check, timeout) = smoke_check(smoke);
        let outcome = prober.run(&check, timeout).await;
        let status = match outcome.status {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
        };
        results.push(CheckResult::new(
            "smoke",
            smoke.name.clone(),
            status,
            started,
            outcome.reason,
        ));
    }
}

fn smoke_check(smoke: &SmokeCheck) -> (Check, Duration) {
    match &smoke.check {
        SmokeKind::Http(http) => {
            let timeout = http
                .max_latency
                .map_or(SMOKE_TIMEOUT, |d| d.as_std() + Duration::from_secs(1));
            let url = http
                .url
                .clone()
                .or_else(|| http.path.clone())
                .unwrap_or_default();
            let vars = InstanceVars {
                service: &smoke.name,
                ordinal: 0,
                version: "",
                port: None,
            };
            let check = Check::Http(Box::new(http_probe(http, url, &vars)));
            (check, timeout)
        }
        SmokeKind::Exec(exec) => (
            Check::Exec {
                command: exec.command.clone(),
                expect_exit: exec.expect_exit,
            },
            SMOKE_TIMEOUT,
        ),
    }
}

/// One check per declared secret with a `max_age` or needed by the stack: its rotation
/// against the policy, or that it was never set. Reads versions only, no master key.
fn check_secrets(global: &Global, stack: &ValidStack, results: &mut Vec<CheckResult>) {
    let started = Instant::now();
    let stored = match secret::stored(&global.state_dir()) {
        Ok(stored) => stored,
        Err(err) => {
            let reason = Some(format!("{err:#}"));
            results.push(CheckResult::new(
                "secret",
                "stored secrets are readable",
                "fail",
                started,
                reason,
            ));
            return;
        }
    };
    let now = jiff::Timestamp::now();
    for (name, policy) in &stack.secrets {
        let used = secret::stack_uses(stack, name);
        let max_age = policy.max_age.map(|d| d.as_std());
        if max_age.is_none() && !used {
            continue;
        }
        let current = stored.iter().find(|v| &v.name == name);
        let rotation = match current.and_then(|v| v.created_at.parse().ok()) {
            Some(created) => wharf_secrets::rotation(created, max_age, now),
            None if current.is_some() => Rotation::NoPolicy,
            None => Rotation::Missing,
        };
        let status = match (&rotation, used) {
            (Rotation::Ok { .. } | Rotation::NoPolicy, _) => "pass",
            (Rotation::DueSoon { .. }, _) => "warn",
            (Rotation::Overdue { .. }, _) if policy.overdue == Overdue::Warn => "warn",
            (Rotation::Overdue { .. }, _) => "fail",
            (Rotation::Missing, true) => "fail",
            (Rotation::Missing, false) => "warn",
        };
        let mut reason = secret::rotation_text(&rotation);
        if rotation == Rotation::Missing {
            reason = if used {
                format!("never set; set it with `wharf secret set {name}`")
            } else {
                "never set (no service uses it yet)".to_owned()
            };
        }
        let check = match max_age {
            Some(_) => format!("{name} is rotated within its max_age"),
            None => format!("{name} is set"),
        };
        let reason = (status != "pass" || max_age.is_some()).then_some(reason);
        results.push(CheckResult::new("secret", check, status, started, reason));
    }
}

/// One check per datastore with `backup:`: its backups are not failed or overdue, and, when
/// the environment requires them, its last good backup and passed drill are recent enough.
fn check_backups(stack: &ValidStack, report: &StatusReport, results: &mut Vec<CheckResult>) {
    let now = jiff::Timestamp::now();
    for service in &report.services {
        let Some(backups) = &service.backups else {
            continue;
        };
        let started = Instant::now();
        // The deploy gate's own judgement of the environment's requirements, plus the
        // backups' health (a failed or overdue schedule fails preflight in any environment).
        let mut problems = match &stack.require {
            Some(require) => wharf_control::unmet_requirements(require, backups, now),
            None => Vec::new(),
        };
        if let Some(reason) = &backups.reason
            && !problems.iter().any(|p| p.contains(reason.as_str()))
        {
            problems.insert(0, reason.clone());
        }
        let status = if problems.is_empty() && !backups.health.is_problem() {
            "pass"
        } else {
            "fail"
        };
        let reason = if problems.is_empty() {
            backups
                .last_success
                .as_ref()
                .map(|t| format!("last good backup {t}"))
                .or_else(|| Some("no backup due yet".to_owned()))
        } else {
            Some(problems.join("; "))
        };
        results.push(CheckResult::new(
            "backup",
            format!("{} backups", service.name),
            status,
            started,
            reason,
        ));
    }
}

fn check_ledger(global: &Global, results: &mut Vec<CheckResult>) {
    let started = Instant::now();
    let outcome = (|| -> anyhow::Result<Option<String>> {
        let verifier = crate::cmd::audit::verifier(global)?;
        let ledger = crate::cmd::audit::open(global)?;
        let report = ledger.verify(&verifier)?;
        Ok(report.failure.map(|f| f.to_string()))
    })();
    let (status, reason) = match outcome {
        Ok(None) => ("pass", None),
        Ok(Some(finding)) => ("fail", Some(finding)),
        Err(err) => ("fail", Some(format!("{err:#}"))),
    };
    results.push(CheckResult::new(
        "ledger",
        "audit ledger verifies",
        status,
        started,
        reason,
    ));
}

/// The preflight is evidence too: its verdict and failures go into the ledger.
fn record(global: &Global, verdict: &str, results: &[CheckResult], report: Option<&StatusReport>) {
    let failures: Vec<_> = results
        .iter()
        .filter(|r| r.status == "fail")
        .map(|r| json!({"check": r.name, "reason": r.reason}))
        .collect();
    let details = json!({
        "verdict": verdict,
        "checks": results.len(),
        "failed": failures.len(),
        "warned": results.iter().filter(|r| r.status == "warn").count(),
        "failures": failures,
        "stack_status": report.map(|r| r.status),
    });
    let target = report.map_or_else(|| "stack".to_owned(), |r| r.stack.clone());
    let result = (|| -> anyhow::Result<()> {
        let state_dir = global.state_dir();
        match crate::writer::route(&state_dir)? {
            crate::writer::Route::Api => {
                let request = PreflightRecordRequest { target, details };
                let _: PreflightRecordAnswer =
                    crate::writer::call(&state_dir, "POST", "/v1/preflight", &request)?;
            }
            crate::writer::Route::Local(lock) => {
                let mut store = wharf_ops::read::open(&lock)?;
                let actor = wharf_ops::Actor(crate::cmd::audit::actor());
                wharf_ops::audit::preflight(&mut store, &actor, &target, details)?;
            }
        }
        Ok(())
    })();
    if let Err(err) = result {
        tracing::warn!(error = %err, "could not record the preflight in the ledger");
    }
}

fn write_junit(
    path: &std::path::Path,
    results: &[CheckResult],
    total: Duration,
) -> anyhow::Result<()> {
    let mut suite = TestSuite::new("wharf preflight");
    for result in results {
        let status = match result.status {
            "fail" => {
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                status.set_message(result.reason.clone().unwrap_or_else(|| "failed".to_owned()));
                status.set_type(result.category);
                status
            }
            _ => TestCaseStatus::success(),
        };
        let mut case = TestCase::new(result.name.clone(), status);
        case.set_classname(format!("preflight.{}", result.category));
        case.set_time(Duration::from_millis(result.duration_ms));
        if result.status == "warn" {
            case.set_system_out(format!(
                "warning: {}",
                result.reason.as_deref().unwrap_or("")
            ));
        }
        suite.add_test_case(case);
    }
    suite.set_time(total);
    let mut report = Report::new("wharf");
    report.add_test_suite(suite);
    let xml = report.to_string()?;
    std::fs::write(path, xml)
        .map_err(|err| anyhow::anyhow!("cannot write {}: {err}", path.display()))
}

fn print(
    global: &Global,
    verdict: &str,
    results: &[CheckResult],
    total: Duration,
) -> anyhow::Result<()> {
    if global.output == Output::Json {
        let value =
            json!({"status": verdict, "duration_ms": total.as_millis() as u64, "checks": results});
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY);
    table.set_header(["RESULT", "CHECK", "TIME", "REASON"]);
    for result in results {
        table.add_row([
            result.status.to_uppercase(),
            format!("{}: {}", result.category, result.name),
            format!("{}ms", result.duration_ms),
            result.reason.clone().unwrap_or_default(),
        ]);
    }
    println!("{table}");
    let failed = results.iter().filter(|r| r.status == "fail").count();
    let warned = results.iter().filter(|r| r.status == "warn").count();
    println!(
        "preflight {}: {} checks, {failed} failed, {warned} warnings, {}ms",
        verdict.to_uppercase(),
        results.len(),
        total.as_millis()
    );
    Ok(())
}
