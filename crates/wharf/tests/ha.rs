//! Two control-plane replicas on one machine sharing a PostgreSQL state and a state
//! directory (issue 19, "Must show"): the real `wharf` binary as each replica, a testbed
//! service behind the proxy under an open-loop load, a real PostgreSQL server per test.
//!
//! A leader killed with SIGKILL mid-rollout is replaced by the standby within the lease's TTL
//! (measured from the kill to the new leader's `control.leader` entry), the rollout resumes and
//! succeeds with no failed request; a leader paused with SIGSTOP past its lease and resumed
//! after another replica took over has every write refused by its fencing token — its lease
//! renewal, and whatever its control loop tried before it exited — which the store records,
//! nothing of it reaches the ledger, and the ledger still verifies. `scripts/bench/failover.sh` prints the
//! failover times over several runs.

mod common;

use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use wharf_store::testing::PgServer;
use wharf_store::{StateLocation, Store};
use wharf_testbed::load::{self, LoadPlan, LoadReport, LoadRun};

/// The lease's TTL the replicas run with (short, so the test is quick; the default is 5 s).
const TTL: Duration = Duration::from_secs(2);

/// A stack whose state is in PostgreSQL: every `wharf` it runs gets `WHARF_STATE_DSN`.
struct HaStack {
    stack: Stack,
    dsn: String,
    location: StateLocation,
    /// The public status page every replica serves while it leads.
    status_port: u16,
}

impl HaStack {
    fn new(server: &PgServer, port: u16) -> HaStack {
        let db = server.fresh_database();
        let name = db.redacted().rsplit('/').next().unwrap().to_owned();
        let stack = Stack::new(&format!(
            r#"
name: ha
services:
  api:
    version: "1.0"
    command: [TESTBED, --port, "${{PORT}}", --version, "${{VERSION}}"]
    port: {port}
    replicas: 2
    probes:
      ready: {{http: {{path: /ready}}, interval: 200ms}}
    rollout:
      strategy: canary
      steps: [{{weight: 20, pause: 6s}}, {{weight: 50, pause: 6s}}, {{weight: 100}}]
      analysis: {{max_error_rate: 1%, min_requests: 20}}
      deadlines: {{drain: 5s}}
"#
        ));
        HaStack {
            stack,
            dsn: server.url(&name, None),
            location: StateLocation::Postgres(db),
            status_port: free_port(),
        }
    }

    fn wharf(&self, args: &[&str]) -> Output {
        Command::new(wharf_bin())
            .args(args)
            .current_dir(self.stack.path())
            .env("NO_COLOR", "1")
            .env("WHARF_ACTOR", "tester")
            .env("WHARF_STATE_DSN", &self.dsn)
            .output()
            .unwrap()
    }

    /// Starts one more replica (`wharf up -d`); its stderr says whether it leads or waits.
    fn replica(&self) -> String {
        let ttl = format!("{}ms", TTL.as_millis());
        let status = format!("127.0.0.1:{}", self.status_port);
        let output = self.wharf(&[
            "up",
            "-d",
            "--wait-timeout",
            "60s",
            "--lease-ttl",
            &ttl,
            "--status-listen",
            &status,
        ]);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{stderr}");
        assert!(!stderr.contains(self.password()), "{stderr}");
        stderr
    }

    fn password(&self) -> &str {
        let rest = self.dsn.trim_start_matches("postgres://wharf:");
        rest.split('@').next().unwrap()
    }

    fn store(&self) -> Store {
        Store::open_location(&self.location).unwrap()
    }

    /// The `control.leader` entries, oldest first.
    fn leaders(&self) -> Vec<wharf_ledger::RawEntry> {
        let filter = wharf_store::EntryFilter {
            action: Some("control.leader".into()),
            target: None,
        };
        self.store().ledger_entries(&filter).unwrap()
    }

    fn rollout(&self) -> Value {
        let output = self.wharf(&["rollout", "status", "api", "--output", "json"]);
        serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
    }

    fn wait_phase_step(&self) {
        eventually("the rollout at a step", Duration::from_secs(30), || {
            (self.rollout()["phase"] == "step").then_some(())
        });
    }

    fn wait_succeeded(&self) {
        let view = eventually("the rollout to end", Duration::from_secs(60), || {
            let view = self.rollout();
            view["outcome"].is_string().then_some(view)
        });
        assert_eq!(view["outcome"], "succeeded", "{view}");
    }

    fn deploy(&self, version: &str) {
        let output = self.wharf(&["deploy", "api", "--version", version]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn control_pid(&self) -> i64 {
        i64::from(self.stack.control_pid().expect("control.pid"))
    }
}

impl Drop for HaStack {
    fn drop(&mut self) {
        let _ = self.wharf(&["down"]);
    }
}

fn start_load(port: u16) -> LoadRun {
    let mut plan = LoadPlan::new(format!("http://127.0.0.1:{port}/"), 100.0);
    plan.max_duration = Duration::from_secs(180);
    plan.timeout = Duration::from_secs(5);
    load::start(plan).expect("load starts")
}

fn assert_no_failures(report: &LoadReport) {
    assert!(report.total() > 0);
    assert_eq!(
        report.failures(),
        0,
        "{} failed requests",
        report.failures()
    );
}

/// The holder named in a `control.leader` entry.
fn holder_of(entry: &wharf_ledger::RawEntry) -> String {
    let details: Value = serde_json::from_str(&entry.details).unwrap();
    details["holder"].as_str().unwrap().to_owned()
}

fn token_of(entry: &wharf_ledger::RawEntry) -> u64 {
    let details: Value = serde_json::from_str(&entry.details).unwrap();
    details["token"].as_u64().unwrap()
}

/// Sends `signal` to `pid`.
fn signal(pid: i64, signal: &str) {
    assert!(
        Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
}

#[test]
fn a_killed_leader_is_replaced_within_the_ttl_and_a_paused_one_is_fenced() {
    let server = Arc::new(PgServer::start());
    let port = free_port();
    let ha = HaStack::new(&server, port);

    // Replica A leads and starts the stack; replica B waits.
    let a_said = ha.replica();
    assert!(!a_said.contains("standby"), "{a_said}");
    let a = ha.control_pid();
    let b_said = ha.replica();
    standby_pid(&b_said);
    // The leader was asked to apply the manifest first, as `wharf up` does.
    assert!(
        b_said.contains("the running stack already matches the manifest"),
        "{b_said}"
    );
    let first = ha.leaders();
    assert_eq!(first.len(), 1, "one leader");
    let a_holder = holder_of(&first[0]);
    assert!(a_holder.ends_with(&format!("#{a}")), "{a_holder}");

    let run = start_load(port);
    eventually("answers through the proxy", Duration::from_secs(20), || {
        (run.snapshot().ok() >= 100).then_some(())
    });

    // SIGKILL the leader mid-rollout: B takes over within the TTL and resumes the rollout.
    ha.deploy("2.0");
    ha.wait_phase_step();
    kill9(a);
    let killed = Instant::now();
    let b_entry = eventually("a new leader", Duration::from_secs(20), || {
        ha.leaders().into_iter().nth(1)
    });
    let failover = killed.elapsed();
    eprintln!(
        "failover_ms={} ttl_ms={}",
        failover.as_millis(),
        TTL.as_millis()
    );
    // Within the TTL, plus the standby's poll (a tenth of it) and the entry's commit.
    assert!(
        failover < TTL + Duration::from_secs(2),
        "failover took {failover:?}"
    );
    // The standby polls ten times per TTL: the lease was free for at most about a tenth of it.
    let details: Value = serde_json::from_str(&b_entry.details).unwrap();
    let free_for = details["free_for_ms"].as_u64().expect("free_for_ms");
    assert!(free_for < TTL.as_millis() as u64, "{details}");
    let b_holder = holder_of(&b_entry);
    assert_ne!(b_holder, a_holder);
    assert!(token_of(&b_entry) > token_of(&first[0]));
    let b = eventually("B's control.pid", Duration::from_secs(20), || {
        ha.stack
            .control_pid()
            .map(i64::from)
            .filter(|pid| *pid != a)
    });
    assert!(b_holder.ends_with(&format!("#{b}")), "{b_holder} vs {b}");
    let resume = wharf_store::EntryFilter {
        action: Some("deploy.resume".into()),
        target: None,
    };
    eventually("B to resume the rollout", Duration::from_secs(20), || {
        let resumed = ha.store().ledger_entries(&resume).unwrap();
        resumed.iter().any(|e| e.actor == b_holder).then_some(())
    });
    ha.wait_succeeded();

    // SIGSTOP the new leader mid-rollout; C takes over after the TTL; B resumed is fenced.
    let c_said = ha.replica();
    assert!(c_said.contains("standby"), "{c_said}");
    ha.deploy("3.0");
    ha.wait_phase_step();
    signal(b, "-STOP");
    let c_entry = eventually("a third leader", Duration::from_secs(30), || {
        ha.leaders().into_iter().nth(2)
    });
    let c_holder = holder_of(&c_entry);
    assert_ne!(c_holder, b_holder);
    let c_seq = c_entry.seq;
    signal(b, "-CONT");
    eventually(
        "the deposed leader to exit",
        Duration::from_secs(20),
        || (!alive(b)).then_some(()),
    );
    // The status page B held while paused is C's once B is gone.
    eventually("C's status page", Duration::from_secs(20), || {
        get(ha.status_port, "/").filter(|(status, _)| *status == 200)
    });
    ha.wait_succeeded();
    let report = run.stop();
    assert_no_failures(&report);

    let store = ha.store();
    let b_token = token_of(&b_entry);
    let refused_writes = store.fenced_writes().unwrap();
    eprintln!("fenced_writes={refused_writes:?}");
    // B's first write on waking is its lease renewal, refused like every other; whatever its
    // control loop tried before it exited is refused and recorded too.
    assert!(
        refused_writes.iter().any(|w| w.what == "lease renewal"),
        "{refused_writes:?}"
    );
    for refused in refused_writes {
        assert_eq!(
            (refused.holder.as_str(), refused.token),
            (b_holder.as_str(), b_token),
            "{refused:?}"
        );
        assert_eq!(refused.held, token_of(&c_entry), "{refused:?}");
    }
    let after: Vec<_> = store
        .ledger_entries(&Default::default())
        .unwrap()
        .into_iter()
        .filter(|e| e.seq > c_seq && e.actor == b_holder)
        .collect();
    assert!(after.is_empty(), "B wrote after C took over: {after:?}");
    let verify = ha.wharf(&["audit", "verify"]);
    assert!(
        verify.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );

    // `wharf down` stops the stack for good: a standby waiting then does not start it again.
    let d_said = ha.replica();
    let d = standby_pid(&d_said);
    let down = ha.wharf(&["down"]);
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    eventually("the standby to exit", Duration::from_secs(20), || {
        (!alive(d)).then_some(())
    });
    let entries = ha.store().ledger_entries(&Default::default()).unwrap();
    let last_down = entries.iter().rposition(|e| e.action == "stack.down");
    let last_up = entries.iter().rposition(|e| e.action == "stack.up");
    assert!(last_down > last_up, "the stack started again after down");

    // The state is in PostgreSQL, not in the state directory, and no log holds the password.
    let state_dir = ha.stack.path().join(".wharf");
    assert!(!state_dir.join("state.db").exists());
    let log = std::fs::read_to_string(state_dir.join("control.log")).unwrap();
    assert!(log.contains("standby"), "{log}");
    assert!(!log.contains(ha.password()));
}

/// The pid in `up -d`'s "standby: control plane replica pid N waits …".
fn standby_pid(said: &str) -> i64 {
    assert!(said.contains("standby"), "{said}");
    said.split("replica pid ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {said}"))
}

#[test]
fn a_lease_ttl_without_a_postgresql_state_is_refused_and_changes_nothing() {
    let stack = Stack::new("name: solo\nservices:\n  a:\n    command: [sleep, \"100\"]\n");
    let output = stack.wharf(&["up", "-d", "--lease-ttl", "2s"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--lease-ttl") && stderr.contains("WHARF_STATE_DSN"),
        "{stderr}"
    );
    assert!(!stack.path().join(".wharf").exists());
}
