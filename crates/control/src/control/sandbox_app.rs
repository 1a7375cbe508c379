//! A drill's proof that the restored data serves the application: each service that depends
//! on the datastore is started once more — outside the stack, on a free loopback port, with
//! every mention of the datastore's address in its command and environment pointed at the
//! restored sandbox copy — and the manifest's smoke checks aimed at that service are run
//! against it (its readiness probe when none is). A failing check is named in the drill.
//!
//! The loop only builds the [`SandboxApp`]s (resolving secrets in memory, like an instance
//! start); they run on the drill's blocking thread, and every process is killed when the
//! drill ends. A service whose command and environment never name the datastore's address is
//! not started: it would reach the production datastore.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use wharf_backup::{CheckOutcome, Datastore, Sandbox};
use wharf_manifest::model::{ProbeCheck, SmokeKind};
use wharf_probe::Check;

use super::ControlPlane;
use crate::plan::{InstanceVars, http_probe, resolve_check};

/// Stands for the datastore's address in a sandbox app's command and environment until the
/// sandbox is up.
const PLACEHOLDER: &str = "\u{0}wharf-sandbox-address\u{0}";
/// How long a sandbox app may take to become ready.
const READY_WITHIN: Duration = Duration::from_secs(30);
/// How long a smoke check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// One dependent service to start against the restored copy, secrets resolved.
pub(super) struct SandboxApp {
    service: String,
    command: Vec<String>,
    env: Vec<(String, String)>,
    workdir: PathBuf,
    /// How to know it is ready (its ready probe, else a TCP connect to its port).
    ready: Check,
    /// (name, check): the smoke checks aimed at it, re-aimed at its sandbox port.
    smoke: Vec<(String, Check, Duration)>,
    /// Why it is not started (it never names the datastore's address).
    skipped: Option<String>,
    /// The datastore's URL scheme, to write the sandbox's address the same way.
    scheme: Option<String>,
}

impl ControlPlane {
    /// The datastore's dependents wharf runs, made ready to start against a sandbox copy.
    pub(super) fn sandbox_apps(&self, datastore: &str) -> Vec<SandboxApp> {
        let Some(store_index) = self.supervisor.index(datastore) else {
            return Vec::new();
        };
        let store_plan = &self.supervisor.services[store_index].plan;
        // The address as the dependents see it: the resolved URL, or the path as written.
        let mut addresses: Vec<String> = Vec::new();
        if let Some(url) = &store_plan.url
            && let Ok(resolved) = self.injector.resolve_text(&self.core, url)
        {
            addresses.push(resolved);
        }
        if let Some(path) = &store_plan.path {
            addresses.push(self.core.config.workdir.join(path).display().to_string());
            addresses.push(path.clone());
        }
        // The server's `host:port` as written in the URL: no mention may survive re-pointing.
        let hosts: Vec<String> = store_plan
            .url
            .as_ref()
            .and_then(|_| addresses.first())
            .and_then(|url| url.split_once("://"))
            .and_then(|(_, rest)| {
                let authority = rest.split(['/', '?']).next()?;
                let host_port = authority.rsplit('@').next()?;
                host_port.contains(':').then(|| host_port.to_owned())
            })
            .into_iter()
            .collect();
        let scheme = store_plan
            .url
            .as_ref()
            .and_then(|_| addresses.first())
            .and_then(|url| url.split_once("://"))
            .map(|(scheme, _)| scheme.to_owned());
        let mut apps = Vec::new();
        for index in 0..self.supervisor.services.len() {
            let service = &self.supervisor.services[index];
            let plan = &service.plan;
            if !plan.depends_on.iter().any(|(dep, _)| dep == datastore)
                || plan.command.is_none()
                || !plan.secret_files.is_empty()
            {
                continue;
            }
            // Another datastore it uses would be production's: its smoke checks could write
            // there. Such a service is not started.
            let other_store = plan.depends_on.iter().find(|(dep, _)| {
                dep != datastore
                    && self
                        .supervisor
                        .index(dep)
                        .is_some_and(|i| self.supervisor.services[i].plan.kind.is_some())
            });
            let Some(port) = free_port() else { continue };
            let version = service.stable.version.clone();
            let Some(spec) = self.spec_for(index, 0, Some(port), &version) else {
                continue;
            };
            let Ok(spec) = self.injector.resolve(&self.core, plan, 0, spec) else {
                continue;
            };
            let mut named = false;
            let mut point = |text: &str| {
                let mut out = text.to_owned();
                for address in &addresses {
                    if !address.is_empty() && out.contains(address.as_str()) {
                        out = out.replace(address.as_str(), PLACEHOLDER);
                        named = true;
                    }
                }
                out
            };
            let command: Vec<String> = spec.command.iter().map(|a| point(a)).collect();
            let env: Vec<(String, String)> = spec
                .env
                .iter()
                .map(|(k, v)| (k.clone(), point(v)))
                .collect();
            let vars = InstanceVars {
                service: &plan.name,
                ordinal: 0,
                version: &version,
                port: Some(port),
            };
            let ready = plan
                .ready
                .as_ref()
                .and_then(|probe| resolve_check(&probe.check, &vars, plan.url.as_deref()))
                .filter(|_| {
                    plan.ready.as_ref().is_some_and(|p| {
                        matches!(p.check, ProbeCheck::Http(_) | ProbeCheck::Tcp(_))
                    })
                })
                .unwrap_or(Check::Tcp {
                    host: "127.0.0.1".to_owned(),
                    port,
                });
            let mut smoke = Vec::new();
            for check in &self.backups.smoke {
                let SmokeKind::Http(http) = &check.check else {
                    continue;
                };
                let Some(url) = &http.url else { continue };
                let Some(public) = plan.public_port else {
                    continue;
                };
                let Some(aimed) = reaim(url, public, port) else {
                    continue;
                };
                let timeout = http
                    .max_latency
                    .map_or(CHECK_TIMEOUT, |d| d.as_std() + Duration::from_secs(1));
                smoke.push((
                    check.name.clone(),
                    Check::Http(Box::new(http_probe(http, aimed, &vars))),
                    timeout,
                ));
            }
            let skipped = if let Some((other, _)) = other_store {
                Some(format!(
                    "{} also uses the datastore {other}, which would be production's",
                    plan.name
                ))
            } else if !named {
                Some(format!(
                    "{}'s command and environment never name {datastore}'s address, so it cannot be pointed at the restored copy",
                    plan.name
                ))
            } else {
                still_named(&command, &env, &hosts).map(|left| {
                    format!(
                        "{} still names {datastore}'s server ({left}) after its address was re-pointed",
                        plan.name
                    )
                })
            };
            apps.push(SandboxApp {
                service: plan.name.clone(),
                command,
                env,
                workdir: spec.workdir.clone(),
                ready,
                smoke,
                skipped,
                scheme: scheme.clone(),
            });
        }
        apps
    }
}

/// A mention of the datastore's server left in the command or environment after re-pointing.
fn still_named(command: &[String], env: &[(String, String)], hosts: &[String]) -> Option<String> {
    let texts = command.iter().chain(env.iter().map(|(_, v)| v));
    for text in texts {
        for host in hosts {
            if text.contains(host.as_str()) {
                return Some(host.clone());
            }
        }
    }
    None
}

/// `http://127.0.0.1:PUBLIC/…` (or `localhost`) aimed at `port` instead; `None` when the
/// URL is about another port or host.
fn reaim(url: &str, public: u16, port: u16) -> Option<String> {
    for host in ["127.0.0.1", "localhost"] {
        for scheme in ["http://", "https://"] {
            let from = format!("{scheme}{host}:{public}");
            if let Some(rest) = url.strip_prefix(&from)
                && (rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'))
            {
                return Some(format!("http://127.0.0.1:{port}{rest}"));
            }
        }
    }
    None
}

fn free_port() -> Option<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
    listener.local_addr().ok().map(|a| a.port())
}

/// The sandbox's address written as the datastore's was: a URL of the same scheme, or a path.
fn address(sandbox: &Sandbox, scheme: Option<&str>) -> String {
    let encode = |text: &str| {
        text.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    let credentials = |user: &str, password: Option<&wharf_backup::Secret>| match password {
        Some(p) => format!("{}:{}@", encode(user), encode(p.expose())),
        None if user.is_empty() => String::new(),
        None => format!("{}@", encode(user)),
    };
    match sandbox.datastore() {
        Datastore::Postgres(c) => format!(
            "{}://{}{}:{}/{}",
            scheme.unwrap_or("postgres"),
            credentials(&c.user, c.password.as_ref()),
            c.host,
            c.port,
            c.dbname
        ),
        Datastore::Mariadb(c) => format!(
            "{}://{}{}:{}/{}",
            scheme.unwrap_or("mariadb"),
            credentials(&c.user, c.password.as_ref()),
            c.host,
            c.port,
            c.dbname
        ),
        Datastore::Redis(c) => format!(
            "{}://{}{}:{}",
            scheme.unwrap_or("redis"),
            credentials(c.user.as_deref().unwrap_or(""), c.password.as_ref()),
            c.host,
            c.port
        ),
        Datastore::Sqlite(path) | Datastore::Directory(path) => path.display().to_string(),
    }
}

/// Starts every app against `sandbox`, runs its checks, stops it: one check outcome per smoke
/// check (or readiness), named after the app.
pub(super) fn run_all(apps: &[SandboxApp], sandbox: &Sandbox) -> Vec<CheckOutcome> {
    let runtime = tokio::runtime::Handle::current();
    let prober = wharf_probe::Prober::default();
    let mut checks = Vec::new();
    for app in apps {
        if let Some(why) = &app.skipped {
            checks.push(CheckOutcome {
                name: format!("{} on the restored copy", app.service),
                passed: true,
                expected: "started against the restored copy".to_owned(),
                found: format!("not started: {why}"),
            });
            continue;
        }
        let address = address(sandbox, app.scheme.as_deref());
        let fill = |text: &str| text.replace(PLACEHOLDER, &address);
        let scrub = |text: String| text.replace(&address, "<restored copy>");
        let log = tempfile::NamedTempFile::new().ok();
        let mut command = std::process::Command::new(fill(&app.command[0]));
        command
            .args(app.command[1..].iter().map(|a| fill(a)))
            .envs(app.env.iter().map(|(k, v)| (k, fill(v))))
            .current_dir(&app.workdir)
            .stdin(std::process::Stdio::null())
            .process_group(0);
        match log.as_ref().and_then(|f| f.reopen().ok()) {
            Some(file) => {
                let err = file.try_clone().ok();
                command.stdout(file);
                if let Some(err) = err {
                    command.stderr(err);
                }
            }
            None => {
                command
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null());
            }
        }
        use std::os::unix::process::CommandExt;
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(error) => {
                checks.push(CheckOutcome {
                    name: format!("{} starts on the restored copy", app.service),
                    passed: false,
                    expected: "starts".to_owned(),
                    found: format!("cannot start {}: {error}", app.command[0]),
                });
                continue;
            }
        };
        let deadline = Instant::now() + READY_WITHIN;
        let ready = loop {
            let outcome = runtime.block_on(prober.run(&app.ready, Duration::from_secs(1)));
            if outcome.status != wharf_probe::Status::Fail {
                break Ok(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                // Its output stays out of the report: the app runs with the stack's secrets
                // and could print any of them.
                break Err(format!("it exited ({status}) before it was ready"));
            }
            if Instant::now() >= deadline {
                break Err(format!(
                    "not ready within {}s: {}",
                    READY_WITHIN.as_secs(),
                    outcome.reason.unwrap_or_default()
                ));
            }
            #[expect(
                clippy::disallowed_methods,
                reason = "polling a sandbox app's readiness with a deadline, on the drill's own thread"
            )]
            std::thread::sleep(Duration::from_millis(200));
        };
        match ready {
            Err(why) => checks.push(CheckOutcome {
                name: format!("{} ready on the restored copy", app.service),
                passed: false,
                expected: "ready".to_owned(),
                found: scrub(why),
            }),
            Ok(()) if app.smoke.is_empty() => checks.push(CheckOutcome {
                name: format!("{} ready on the restored copy", app.service),
                passed: true,
                expected: "ready".to_owned(),
                found: "ready".to_owned(),
            }),
            Ok(()) => {
                for (name, check, timeout) in &app.smoke {
                    let outcome = runtime.block_on(prober.run(check, *timeout));
                    let passed = outcome.status != wharf_probe::Status::Fail;
                    checks.push(CheckOutcome {
                        name: format!(
                            "smoke `{name}` against {} on the restored copy",
                            app.service
                        ),
                        passed,
                        expected: "passes".to_owned(),
                        found: if passed {
                            "passed".to_owned()
                        } else {
                            scrub(outcome.reason.unwrap_or_else(|| "failed".to_owned()))
                        },
                    });
                }
            }
        }
        stop(&mut child);
    }
    checks
}

/// SIGTERM to the app's process group, then (after its leader exits, or 5 s) SIGKILL to
/// whatever is left of the group.
fn stop(child: &mut std::process::Child) {
    let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) else {
        return;
    };
    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::TERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        #[expect(
            clippy::disallowed_methods,
            reason = "waiting, with a deadline, for a sandbox app to end after SIGTERM"
        )]
        std::thread::sleep(Duration::from_millis(50));
    }
    // Whatever else it started in its group goes too, even once the leader has exited.
    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::reaim;

    #[test]
    fn smoke_urls_on_the_public_port_are_aimed_at_the_sandbox_app() {
        assert_eq!(
            reaim("http://127.0.0.1:8080/orders?x=1", 8080, 4100).as_deref(),
            Some("http://127.0.0.1:4100/orders?x=1")
        );
        assert_eq!(
            reaim("http://localhost:8080", 8080, 4100).as_deref(),
            Some("http://127.0.0.1:4100")
        );
        assert_eq!(reaim("http://127.0.0.1:80800/", 8080, 4100), None);
        assert_eq!(reaim("http://example.com:8080/", 8080, 4100), None);
    }
}
