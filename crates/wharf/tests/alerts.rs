//! Alerting end to end: a real stack (the `wharf` and `wharf-testbed` binaries), a database
//! made unready through the testbed's control endpoint, and receivers that are fakes of the
//! SaaS endpoints (PagerDuty's Events API, a Slack incoming webhook) — local HTTP servers that
//! record what they got, since the real services cannot be reached from here.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// A fake of a SaaS receiver: records every request's path and JSON body and answers 202
/// (after `refusals` answers of 429 first).
struct FakeReceiver {
    port: u16,
    got: Arc<Mutex<Vec<(String, Value)>>>,
}

impl FakeReceiver {
    fn start(refusals: usize) -> FakeReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(0usize));
        let record = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (record, refused) = (record.clone(), refused.clone());
                std::thread::spawn(move || serve(stream, &record, &refused, refusals));
            }
        });
        FakeReceiver { port, got }
    }

    fn requests(&self) -> Vec<(String, Value)> {
        self.got.lock().unwrap().clone()
    }
}

/// Answers HTTP/1.1 requests on one connection until it closes.
fn serve(
    stream: TcpStream,
    record: &Mutex<Vec<(String, Value)>>,
    refused: &Mutex<usize>,
    refusals: usize,
) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split(' ').nth(1).unwrap_or("").to_owned();
        let mut length = 0;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            if header == "\r\n" {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let refuse = {
            let mut refused = refused.lock().unwrap();
            let refuse = *refused < refusals;
            *refused += usize::from(refuse);
            refuse
        };
        let status = if refuse {
            "429 Too Many Requests"
        } else {
            record
                .lock()
                .unwrap()
                .push((path, serde_json::from_slice(&body).unwrap_or(Value::Null)));
            "202 Accepted"
        };
        let answer = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{{}}"
        );
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// Flips the testbed's readiness through its control endpoint.
fn set_ready(port: u16, ready: bool) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let body = if ready { "true" } else { "false" };
    write!(
        stream,
        "POST /control/ready HTTP/1.1\r\nHost: t\r\nConnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

const KEY: &str = "pdkey-7f3a9c1e5b";

/// A database and five services depending on it (two of them through `api`), paging
/// PagerDuty and Slack after one second of trouble.
fn five_dependents(db: u16, pagerduty: &FakeReceiver, slack: &FakeReceiver) -> Stack {
    // Every dependent checks the database's readiness itself (api's instance port is not known
    // when the manifest is written); what the paging follows is the `depends_on` graph.
    let dependent = |name: &str, on: &str| {
        format!(
            r#"
  {name}:
    command: [TESTBED, --port, "${{PORT}}", --depends-on, "http://127.0.0.1:{db}/ready"]
    depends_on: {{{on}: {{condition: ready}}}}
    probes:
      ready: {{http: {{path: /ready}}, interval: 200ms, failure_threshold: 2}}"#
        )
    };
    let manifest = format!(
        r#"
name: pager
secrets:
  PD_KEY: {{}}
  SLACK_URL: {{}}
services:
  db:
    command: [TESTBED, --port, "{db}"]
    probes:
      ready: {{http: {{url: "http://127.0.0.1:{db}/ready"}}, interval: 200ms, failure_threshold: 1}}{api}{worker}{billing}{web}{admin}
alerts:
  - name: oncall
    webhook: {{url: "http://127.0.0.1:{pd}/v2/enqueue", format: pagerduty, routing_key: "${{secret:PD_KEY}}"}}
    thresholds: {{down_for: 1s}}
    severity: error
    labels: {{team: storage}}
  - name: chat
    webhook: {{url: "${{secret:SLACK_URL}}", format: slack}}
    thresholds: {{down_for: 1s}}
"#,
        api = dependent("api", "db"),
        worker = dependent("worker", "db"),
        billing = dependent("billing", "db"),
        web = dependent("web", "api"),
        admin = dependent("admin", "api"),
        pd = pagerduty.port,
    );
    let stack = Stack::new(&manifest);
    stack.set_secret("PD_KEY", KEY);
    stack.set_secret(
        "SLACK_URL",
        &format!("http://127.0.0.1:{}/services/T0/B0/secretpath", slack.port),
    );
    let output = stack.up();
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    stack
}

/// The five-dependent stack paging a PagerDuty fake (refusing the first `refusals` requests
/// with 429) and a Slack fake, its database made unready, and the first request PagerDuty got.
fn outage(refusals: usize) -> (Stack, u16, FakeReceiver, FakeReceiver, (String, Value)) {
    let (pagerduty, slack) = (FakeReceiver::start(refusals), FakeReceiver::start(0));
    let db = free_port();
    let stack = five_dependents(db, &pagerduty, &slack);
    set_ready(db, false);
    let trigger = eventually("the trigger", Duration::from_secs(30), || {
        pagerduty.requests().into_iter().next()
    });
    (stack, db, pagerduty, slack, trigger)
}

fn actions_of(requests: &[(String, Value)]) -> Vec<String> {
    requests
        .iter()
        .map(|(_, body)| body["event_action"].as_str().unwrap_or("?").to_owned())
        .collect()
}

#[test]
fn a_database_outage_under_five_dependents_pages_pagerduty_fake_and_slack_fake_once_and_resolves_once()
 {
    let (stack, db, pagerduty, slack, trigger) = outage(0);
    let (path, body) = &trigger;
    assert_eq!(path, "/v2/enqueue");
    assert_eq!(body["event_action"], "trigger");
    assert_eq!(body["routing_key"], KEY);
    assert_eq!(body["dedup_key"], "wharf/pager/oncall/db");
    let summary = body["payload"]["summary"].as_str().unwrap();
    assert!(summary.starts_with("db is down"), "{summary}");
    // The alert's severity and labels reach the receiver.
    assert_eq!(body["payload"]["severity"], "error");
    assert_eq!(
        body["payload"]["custom_details"]["labels"]["team"],
        "storage"
    );
    let mut affected: Vec<&str> = body["payload"]["custom_details"]["affected"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    affected.sort_unstable();
    // The dependents are listed (those already in trouble as the page opened: all five, but
    // for the slowest probes on a loaded machine).
    assert!(affected.contains(&"api"), "{affected:?}");
    for name in &affected {
        assert!(
            ["admin", "api", "billing", "web", "worker"].contains(name),
            "{affected:?}"
        );
    }
    // The dependents stay down well past their own `for`: still one page. (A window to watch
    // for a second page, not a wait for readiness.)
    let wait_until = std::time::Instant::now() + Duration::from_secs(3);
    eventually("the dependents to be down", Duration::from_secs(30), || {
        (stack.service("api")["state"] != "running").then_some(())
    });
    while std::time::Instant::now() < wait_until {
        std::thread::park_timeout(Duration::from_millis(100));
    }
    assert_eq!(actions_of(&pagerduty.requests()), ["trigger"]);
    // `status` shows the open pages (one per alert: PagerDuty's and Slack's).
    let pages = stack.status()["pages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(pages.len(), 2, "{pages:?}");
    assert!(pages.iter().all(|p| p["root_cause"] == "db"), "{pages:?}");
    let table = stack.wharf(&["status"]);
    assert!(
        String::from_utf8_lossy(&table.stdout).contains("page open → oncall: db since"),
        "{}",
        String::from_utf8_lossy(&table.stdout)
    );
    set_ready(db, true);
    eventually("the resolve", Duration::from_secs(30), || {
        (pagerduty.requests().len() >= 2).then_some(())
    });
    eventually("the stack to recover", Duration::from_secs(30), || {
        (stack.service("web")["state"] == "running").then_some(())
    });
    let requests = pagerduty.requests();
    assert_eq!(actions_of(&requests), ["trigger", "resolve"]);
    assert_eq!(requests[1].1["dedup_key"], "wharf/pager/oncall/db");
    assert!(
        stack.status().get("pages").is_none(),
        "no page open after the resolves"
    );
    // Slack got the same two messages.
    let messages = eventually("two slack messages", Duration::from_secs(30), || {
        let got = slack.requests();
        (got.len() >= 2).then_some(got)
    });
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert_eq!(messages[0].0, "/services/T0/B0/secretpath");
    let first = messages[0].1["text"].as_str().unwrap();
    let second = messages[1].1["text"].as_str().unwrap();
    assert!(first.contains("db"), "{first}");
    assert!(second.to_lowercase().contains("resolved"), "{second}");
    // The ledger holds both pages' evidence and every delivery; no key anywhere in it.
    let ledger = stack.ledger();
    assert_eq!(
        actions(&ledger, "alert.trigger").len(),
        2,
        "one per receiver"
    );
    assert_eq!(actions(&ledger, "alert.resolve").len(), 2);
    eventually("four deliveries recorded", Duration::from_secs(10), || {
        (actions(&stack.ledger(), "alert.delivered").len() == 4).then_some(())
    });
    let text = serde_json::to_string(&stack.ledger()).unwrap();
    assert!(!text.contains(KEY) && !text.contains("secretpath"));
    let database = std::fs::read(stack.path().join(".wharf/state.db")).unwrap();
    assert!(!database.windows(KEY.len()).any(|w| w == KEY.as_bytes()));
}

#[test]
fn a_page_opened_before_wharf_is_killed_is_resolved_after_it_restarts_through_pagerduty_fake() {
    // Refused twice with 429, then delivered: once.
    let (stack, db, pagerduty, _slack, _) = outage(2);
    // The trigger's delivery is recorded (killed before that, the notice is owed and sent
    // again after the restart: at least once).
    eventually(
        "the trigger's delivery recorded",
        Duration::from_secs(10),
        || {
            actions(&stack.ledger(), "alert.delivered")
                .iter()
                .any(|e| e["actor"] != "" && e["details"]["attempts"] == 3)
                .then_some(())
        },
    );
    let pid = stack.control_pid().expect("a control plane runs");
    kill9(i64::from(pid));
    eventually("the control plane to die", Duration::from_secs(10), || {
        (!alive(i64::from(pid))).then_some(())
    });
    set_ready(db, true);
    let output = stack.up();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    eventually("the resolve", Duration::from_secs(30), || {
        (pagerduty.requests().len() >= 2).then_some(())
    });
    let requests = pagerduty.requests();
    assert_eq!(
        actions_of(&requests),
        ["trigger", "resolve"],
        "{requests:?}"
    );
    assert_eq!(requests[1].1["dedup_key"], "wharf/pager/oncall/db");
    let ledger = stack.ledger();
    let delivered = actions(&ledger, "alert.delivered");
    assert!(
        delivered.iter().any(|e| e["details"]["attempts"] == 3),
        "the trigger took three attempts: {delivered:?}"
    );
}

#[test]
fn stopping_the_stack_resolves_its_open_page_at_the_pagerduty_fake_before_down_returns() {
    let (stack, _db, pagerduty, _slack, _) = outage(0);
    let output = stack.wharf(&["down"]);
    assert!(output.status.success());
    // `down` has returned: the resolve already reached the receiver.
    let requests = pagerduty.requests();
    assert_eq!(
        actions_of(&requests),
        ["trigger", "resolve"],
        "{requests:?}"
    );
}

#[test]
fn a_failing_canary_pages_no_one_during_its_rollout_and_posts_one_change_event_to_pagerduty_fake() {
    use wharf_testbed::load::{self, LoadPlan};
    let pagerduty = FakeReceiver::start(0);
    let port = free_port();
    let stack = Stack::new(&format!(
        r#"
name: canary
secrets:
  PD_KEY: {{}}
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
      steps: [{{weight: 20, pause: 30s}}, {{weight: 100}}]
      analysis: {{max_error_rate: 1%, min_requests: 20}}
      deadlines: {{drain: 2s}}
alerts:
  - name: oncall
    webhook: {{url: "http://127.0.0.1:{pd}/v2/enqueue", format: pagerduty, routing_key: "${{secret:PD_KEY}}"}}
    thresholds: {{error_rate: 0.5%, down_for: 1s}}
"#,
        pd = pagerduty.port
    ));
    stack.set_secret("PD_KEY", KEY);
    assert!(stack.up().status.success());
    let mut plan = LoadPlan::new(format!("http://127.0.0.1:{port}/"), 100.0);
    plan.max_duration = Duration::from_secs(60);
    plan.timeout = Duration::from_secs(5);
    let run = load::start(plan).expect("load starts");
    eventually("answers through the proxy", Duration::from_secs(20), || {
        (run.snapshot().ok() >= 100).then_some(())
    });
    // An incident is open on api when the deploy starts: the rollback joins its timeline.
    ok(
        &stack,
        &[
            "incident",
            "declare",
            "checkout errors",
            "--severity",
            "sev2",
            "--service",
            "api",
        ],
    );
    let command = format!(
        "{} --port ${{PORT}} --version ${{VERSION}} --error-rate 0.3",
        testbed_bin().display()
    );
    let output = stack.wharf(&["deploy", "api", "--version", "2.0", "--command", &command]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let outcome = eventually("the rollback", Duration::from_secs(30), || {
        let output = stack.wharf(&["rollout", "status", "api", "--output", "json"]);
        let view: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
        view["outcome"].as_str().map(str::to_owned)
    });
    assert_eq!(outcome, "rolled-back");
    // Traffic goes on to the stable version for three times the rule's `for`: a window in
    // which a page for the canary's errors would have opened.
    let watch_until = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < watch_until {
        std::thread::park_timeout(Duration::from_millis(100));
    }
    let report = run.stop();
    assert!(report.total() > 0);
    let requests = pagerduty.requests();
    let paths: Vec<&str> = requests.iter().map(|(path, _)| path.as_str()).collect();
    assert_eq!(paths, ["/v2/change/enqueue"], "{requests:?}");
    let change = &requests[0].1;
    assert_eq!(change["routing_key"], KEY);
    let summary = change["payload"]["summary"].as_str().unwrap();
    assert!(
        summary.contains("api") && summary.contains("2.0"),
        "{summary}"
    );
    assert!(actions(&stack.ledger(), "alert.trigger").is_empty());
    let shown = ok(&stack, &["incident", "show", "INC-1", "--output", "json"]);
    let timeline: Vec<&str> = shown["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for expected in [
        "incident.declare",
        "deploy.start",
        "deploy.rollback",
        "deploy.rolled_back",
    ] {
        assert!(timeline.contains(&expected), "{expected} in {timeline:?}");
    }
    let draft = stack.wharf(&["incident", "postmortem", "1"]);
    let (out, err) = (
        String::from_utf8_lossy(&draft.stdout),
        String::from_utf8_lossy(&draft.stderr),
    );
    assert!(out.contains("deploy.rolled_back api"), "{out}{err}");
}

#[test]
fn removing_an_alert_with_a_page_open_still_sends_its_resolve_to_the_pagerduty_fake() {
    let (stack, _db, pagerduty, _slack, _) = outage(0);
    // The operator drops the PagerDuty alert while its page is open.
    let manifest = std::fs::read_to_string(stack.path().join("wharf.yaml")).unwrap();
    let start = manifest.find("  - name: oncall").unwrap();
    let end = manifest.find("  - name: chat").unwrap();
    let without = format!("{}{}", &manifest[..start], &manifest[end..]);
    std::fs::write(stack.path().join("wharf.yaml"), without).unwrap();
    // The reload applies the manifest (the stack is still unhealthy: `up` says so, exit 1).
    stack.wharf(&["up", "-d", "--wait-timeout", "5s"]);
    eventually(
        "the resolve of the removed alert's page",
        Duration::from_secs(30),
        || (pagerduty.requests().len() >= 2).then_some(()),
    );
    assert_eq!(actions_of(&pagerduty.requests()), ["trigger", "resolve"]);
}

#[test]
fn a_failing_backup_pages_the_pagerduty_fake_naming_the_datastore_and_resolves_after_a_good_one() {
    let pagerduty = FakeReceiver::start(0);
    let manifest = format!(
        r#"
name: pager
secrets:
  PD_KEY: {{}}
services:
  files:
    kind: directory
    path: ./uploads
    backup: {{schedule: "0 3 * * *"}}
alerts:
  - name: oncall
    webhook: {{url: "http://127.0.0.1:{pd}/v2/enqueue", format: pagerduty, routing_key: "${{secret:PD_KEY}}"}}
    thresholds: {{down_for: 1s}}
"#,
        pd = pagerduty.port,
    );
    let stack = Stack::new(&manifest);
    stack.set_secret("PD_KEY", KEY);
    let output = stack.up();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The folder is missing: the backup fails, and its health is the datastore's trouble.
    let failed = stack.wharf(&["backup", "run", "files"]);
    assert_eq!(failed.status.code(), Some(1));
    let (_, trigger) = eventually("the backup page", Duration::from_secs(30), || {
        pagerduty.requests().into_iter().next()
    });
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["dedup_key"], "wharf/pager/oncall/files:backups");
    let summary = trigger["payload"]["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("files backups: the last backup failed"),
        "{summary}"
    );
    // A backup that succeeds resolves it.
    std::fs::create_dir_all(stack.path().join("uploads")).unwrap();
    std::fs::write(stack.path().join("uploads/a.txt"), "kept").unwrap();
    let good = stack.wharf(&["backup", "run", "files"]);
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stdout)
    );
    let requests = eventually("the resolve", Duration::from_secs(30), || {
        let requests = pagerduty.requests();
        (requests.len() >= 2).then_some(requests)
    });
    assert_eq!(actions_of(&requests), ["trigger", "resolve"]);
}

/// `wharf ARGS`, which must succeed; its stdout as JSON when it printed any.
fn ok(stack: &Stack, args: &[&str]) -> Value {
    let output = stack.wharf(args);
    assert!(
        output.status.success(),
        "wharf {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
}

#[test]
fn a_page_that_resolves_during_a_silence_still_sends_its_resolve_to_the_pagerduty_fake() {
    let (stack, db, pagerduty, _slack, (_, trigger)) = outage(0);
    assert_eq!(trigger["event_action"], "trigger");
    let silence = ok(
        &stack,
        &[
            "silence",
            "add",
            "--match",
            "service=db",
            "--for",
            "1h",
            "--reason",
            "failover drill",
            "--output",
            "json",
        ],
    );
    assert_eq!(silence["id"], "s-1");
    assert_eq!(silence["owner"], socket_actor());
    let status = stack.status();
    assert_eq!(status["silences"][0]["id"], "s-1", "{status}");
    let human = String::from_utf8(stack.wharf(&["status"]).stdout).unwrap();
    assert!(
        human.contains("silence s-1 (service=db) until") && human.contains("failover drill"),
        "{human}"
    );
    // The database recovers while the silence holds: its page's resolve is still sent.
    set_ready(db, true);
    let requests = eventually("the resolve", Duration::from_secs(30), || {
        let requests = pagerduty.requests();
        (requests.len() >= 2).then_some(requests)
    });
    assert_eq!(actions_of(&requests), ["trigger", "resolve"]);
    assert_eq!(requests[1].1["dedup_key"], "wharf/pager/oncall/db");
    // Ended early: recorded with who, gone from the list.
    ok(&stack, &["silence", "expire", "s-1"]);
    let ledger = stack.ledger();
    let created = actions(&ledger, "silence.create");
    assert_eq!(created[0]["actor"], socket_actor());
    assert_eq!(created[0]["details"]["matchers"][0], "service=db");
    let expired = actions(&ledger, "silence.expire");
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0]["actor"], socket_actor());
    assert_eq!(expired[0]["details"]["ran_out"], false);
    let listed = ok(&stack, &["silence", "list", "--output", "json"]);
    assert_eq!(listed, Value::Array(Vec::new()));
}

#[test]
fn a_page_opened_under_a_silence_is_held_then_sent_to_pagerduty_fake_when_it_runs_out_and_slack_fake_is_told()
 {
    let (pagerduty, slack) = (FakeReceiver::start(0), FakeReceiver::start(0));
    let db = free_port();
    let stack = five_dependents(db, &pagerduty, &slack);
    ok(
        &stack,
        &[
            "silence",
            "add",
            "--match",
            "service=db",
            "--match",
            "alert!=nobody",
            "--for",
            "8s",
            "--reason",
            "planned restart",
            "--maintenance",
        ],
    );
    set_ready(db, false);
    // The page opens under the silence: recorded, not sent.
    let held = eventually("the held page", Duration::from_secs(30), || {
        let ledger = stack.ledger();
        let held = actions(&ledger, "alert.silenced");
        (!held.is_empty()).then_some(held)
    });
    assert_eq!(held[0]["details"]["silence"], "s-1");
    assert!(
        pagerduty.requests().is_empty(),
        "nothing sent while the silence holds: {:?}",
        pagerduty.requests()
    );
    let status = stack.status();
    assert_eq!(status["pages"][0]["silenced_by"], "s-1", "{status}");
    // The silence runs out with the database still down: the page is sent then, once.
    // (PagerDuty's change events, at `/v2/change/enqueue`, hear of the silence's end too.)
    let events = || -> Vec<(String, Value)> {
        pagerduty
            .requests()
            .into_iter()
            .filter(|(path, _)| path == "/v2/enqueue")
            .collect()
    };
    let requests = eventually(
        "the trigger after the silence",
        Duration::from_secs(30),
        || {
            let requests = events();
            (!requests.is_empty()).then_some(requests)
        },
    );
    assert_eq!(actions_of(&requests), ["trigger"]);
    assert_eq!(requests[0].1["dedup_key"], "wharf/pager/oncall/db");
    let told = eventually(
        "the notice of the silence's end",
        Duration::from_secs(10),
        || {
            slack
                .requests()
                .into_iter()
                .find(|(_, body)| body.to_string().contains("silence s-1"))
        },
    );
    assert!(told.1.to_string().contains("ran out"), "{}", told.1);
    let expired = actions(&stack.ledger(), "silence.expire");
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0]["actor"], "wharf-control@tester");
    assert_eq!(expired[0]["details"]["ran_out"], true);
    assert!(
        pagerduty
            .requests()
            .iter()
            .any(|(path, body)| path == "/v2/change/enqueue"
                && body.to_string().contains("silence s-1")),
        "{:?}",
        pagerduty.requests()
    );
    // And its resolve when the database is back.
    set_ready(db, true);
    eventually("the resolve", Duration::from_secs(30), || {
        (events().len() >= 2).then_some(())
    });
    assert_eq!(actions_of(&events()), ["trigger", "resolve"]);
}

#[test]
fn a_rule_with_incident_declares_one_per_page_and_the_postmortem_holds_the_real_timeline() {
    let pagerduty = FakeReceiver::start(0);
    let db = free_port();
    let stack = Stack::new(&format!(
        r#"
name: shop
secrets:
  PD_KEY: {{}}
services:
  db:
    command: [TESTBED, --port, "{db}"]
    probes:
      ready: {{http: {{url: "http://127.0.0.1:{db}/ready"}}, interval: 200ms, failure_threshold: 1}}
  api:
    command: [TESTBED, --port, "${{PORT}}", --depends-on, "http://127.0.0.1:{db}/ready"]
    depends_on: {{db: {{condition: ready}}}}
    probes:
      ready: {{http: {{path: /ready}}, interval: 200ms, failure_threshold: 2}}
alerts:
  - name: oncall
    webhook: {{url: "http://127.0.0.1:{pd}/v2/enqueue", format: pagerduty, routing_key: "${{secret:PD_KEY}}"}}
    thresholds: {{down_for: 1s}}
    incident: sev2
"#,
        pd = pagerduty.port
    ));
    stack.set_secret("PD_KEY", KEY);
    assert!(stack.up().status.success());
    set_ready(db, false);
    let incident = eventually(
        "the incident the page opens",
        Duration::from_secs(30),
        || {
            let list = ok(&stack, &["incident", "list", "--output", "json"]);
            list.as_array().and_then(|l| l.first().cloned())
        },
    );
    assert_eq!(incident["id"], 1);
    assert_eq!(incident["severity"], "sev2");
    assert_eq!(incident["alert"], "wharf/shop/oncall/db");
    assert_eq!(incident["declared_by"], "wharf-control@tester");
    assert_eq!(incident["services"][0], "db");
    assert!(
        incident["title"]
            .as_str()
            .unwrap()
            .starts_with("db is down")
    );
    ok(&stack, &["incident", "ack", "INC-1"]);
    // The page that opened it is acknowledged at PagerDuty: it stops escalating.
    let ack = eventually("the acknowledge", Duration::from_secs(10), || {
        pagerduty
            .requests()
            .into_iter()
            .find(|(_, body)| body["event_action"] == "acknowledge")
    });
    assert_eq!(ack.1["dedup_key"], "wharf/shop/oncall/db");
    assert_eq!(
        actions(&stack.ledger(), "alert.acknowledge")[0]["details"]["by"],
        socket_actor()
    );
    ok(
        &stack,
        &[
            "incident", "assign", "INC-1", "--role", "comms", "--person", "dana",
        ],
    );
    ok(
        &stack,
        &[
            "incident",
            "update",
            "INC-1",
            "--status",
            "identified",
            "--message",
            "database refuses readiness",
            "--public",
        ],
    );
    set_ready(db, true);
    eventually(
        "the page's resolve on the incident",
        Duration::from_secs(30),
        || {
            let shown = ok(&stack, &["incident", "show", "INC-1", "--output", "json"]);
            (shown["incident"]["status"] == "monitoring").then_some(())
        },
    );
    ok(
        &stack,
        &["incident", "resolve", "INC-1", "--message", "recovered"],
    );
    let shown = ok(&stack, &["incident", "show", "INC-1", "--output", "json"]);
    assert!(shown["mtta_seconds"].as_i64().is_some(), "{shown}");
    assert!(shown["mttr_seconds"].as_i64().unwrap() >= shown["mtta_seconds"].as_i64().unwrap());
    let timeline: Vec<(String, String)> = shown["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["actor"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // The control plane records as itself, on behalf of whoever started it.
    let control = "wharf-control@tester";
    for expected in [
        ("alert.trigger", control),
        ("incident.declare", control),
        ("incident.ack", socket_actor().as_str()),
        ("incident.assign", socket_actor().as_str()),
        ("incident.update", socket_actor().as_str()),
        ("alert.resolve", control),
        ("incident.update", control),
        ("incident.resolve", socket_actor().as_str()),
    ] {
        assert!(
            timeline.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{expected:?} in {timeline:?}"
        );
    }
    // What led up to it (db going down, before the page's `for` elapsed) is in it too.
    let states: Vec<&(String, String)> = timeline
        .iter()
        .filter(|(a, _)| a == "service.state")
        .collect();
    assert!(states.len() >= 3, "{timeline:?}");
    let draft = stack.wharf(&["incident", "postmortem", "INC-1"]);
    assert!(draft.status.success());
    let draft = String::from_utf8(draft.stdout).unwrap();
    assert!(
        draft.starts_with("# Postmortem: INC-1 — db is down"),
        "{draft}"
    );
    assert!(draft.contains("| Severity | sev2 |"), "{draft}");
    assert!(draft.contains("comms: dana"), "{draft}");
    let me = socket_actor();
    assert!(
        draft.contains(&format!("| {me} | Acknowledged |")),
        "{draft}"
    );
    assert!(
        draft.contains(&format!(
            "| {me} | Status identified: database refuses readiness |"
        )),
        "{draft}"
    );
    assert!(
        draft.contains("| wharf-control@tester | Paged (oncall): db is down"),
        "{draft}"
    );
    // Each row's time is the ledger entry's.
    let ledger = stack.ledger();
    let ack = &actions(&ledger, "incident.ack")[0];
    let at: jiff::Timestamp = ack["time"].as_str().unwrap().parse().unwrap();
    assert!(
        draft.contains(&format!(
            "| {} | {me} | Acknowledged |",
            at.strftime("%Y-%m-%d %H:%M:%S")
        )),
        "{draft}"
    );
    // The draft goes to a file when asked, never over an existing one.
    let file = stack.path().join("pm.md");
    ok(
        &stack,
        &[
            "incident",
            "postmortem",
            "INC-1",
            "--to",
            file.to_str().unwrap(),
        ],
    );
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("## Timeline")
    );
    let again = stack.wharf(&[
        "incident",
        "postmortem",
        "INC-1",
        "--to",
        file.to_str().unwrap(),
    ]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("cannot create"));
}

#[test]
fn bad_silences_and_incident_requests_are_refused_with_exit_2_and_change_nothing() {
    let stack = Stack::new(
        r#"
name: quiet
services:
  api:
    command: [TESTBED, --port, "${PORT}"]
"#,
    );
    // No control plane: the CLI writes itself, under the lock.
    ok(
        &stack,
        &[
            "incident",
            "declare",
            "checkout slow",
            "--severity",
            "sev3",
            "--service",
            "api",
        ],
    );
    let before = stack.ledger().len();
    for args in [
        &[
            "silence",
            "add",
            "--match",
            "service=api",
            "--for",
            "40d",
            "--reason",
            "x",
        ][..],
        &[
            "silence",
            "add",
            "--match",
            "service=api",
            "--for",
            "soon",
            "--reason",
            "x",
        ],
        &[
            "silence", "add", "--match", "service", "--for", "1h", "--reason", "x",
        ],
        &[
            "silence",
            "add",
            "--match",
            "service=api",
            "--for",
            "1h",
            "--reason",
            " ",
        ],
        &[
            "silence",
            "add",
            "--match",
            "service=api",
            "--reason",
            "no end",
        ],
        &["silence", "expire", "s-9"],
        &[
            "silence",
            "add",
            "--match",
            "servce=api",
            "--for",
            "1h",
            "--reason",
            "x",
        ],
        &[
            "silence",
            "add",
            "--match",
            "service=apo",
            "--for",
            "1h",
            "--reason",
            "x",
        ],
        &["incident", "declare", "x", "--severity", "sev9"],
        &[
            "incident",
            "declare",
            "x",
            "--severity",
            "sev1",
            "--service",
            "nope",
        ],
        &["incident", "declare", " ", "--severity", "sev1"],
        &["incident", "ack", "INC-7"],
        &["incident", "update", "twelve", "--message", "m"],
        &[
            "incident",
            "update",
            "INC-1",
            "--message",
            "m",
            "--status",
            "fixed",
        ],
    ] {
        let output = stack.wharf(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.trim().is_empty(), "{args:?} says why");
    }
    let nope = stack.wharf(&[
        "incident",
        "declare",
        "x",
        "--severity",
        "sev1",
        "--service",
        "nope",
    ]);
    assert!(
        String::from_utf8_lossy(&nope.stderr)
            .contains("the stack has no service `nope` (it has: api)"),
        "{}",
        String::from_utf8_lossy(&nope.stderr)
    );
    assert_eq!(stack.ledger().len(), before, "nothing was written");
    // The same refusals through a running control plane's API.
    assert!(stack.up().status.success());
    let before = stack.ledger().len();
    let refused = stack.wharf(&[
        "silence",
        "add",
        "--match",
        "service=api",
        "--for",
        "31d",
        "--reason",
        "x",
    ]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("at most 30d"));
    // A silence that could match nothing here is a typo, refused with what there is.
    for (matcher, says) in [
        ("servce=api", "no page has the label `servce`"),
        (
            "service=apo",
            "the stack has no service `apo` (it has: api)",
        ),
        ("severity=high", "the stack has no severity `high`"),
    ] {
        let refused = stack.wharf(&[
            "silence", "add", "--match", matcher, "--for", "1h", "--reason", "x",
        ]);
        assert_eq!(refused.status.code(), Some(2), "{matcher}");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains(says), "{matcher}: {stderr}");
    }
    let refused = stack.wharf(&[
        "incident",
        "declare",
        "x",
        "--severity",
        "sev1",
        "--service",
        "nope",
    ]);
    assert_eq!(refused.status.code(), Some(2));
    ok(&stack, &["incident", "resolve", "INC-1"]);
    let again = stack.wharf(&["incident", "resolve", "INC-1"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("is resolved"));
    assert_eq!(stack.ledger().len(), before + 1, "only the one resolve");
}

#[test]
fn an_alert_with_an_automatic_runbook_restarts_the_root_cause_and_its_page_resolves_at_pagerduty_fake()
 {
    let pagerduty = FakeReceiver::start(0);
    let db = free_port();
    let stack = Stack::new(&format!(
        r#"
name: heal
secrets:
  PD_KEY: {{}}
services:
  db:
    command: [TESTBED, --port, "${{PORT}}"]
    port: {db}
    probes:
      ready: {{http: {{path: /ready}}, interval: 200ms, failure_threshold: 1}}
  api:
    command: [TESTBED, --port, "${{PORT}}", --depends-on, "http://127.0.0.1:{db}/ready"]
    depends_on: {{db: {{condition: ready}}}}
    probes:
      ready: {{http: {{path: /ready}}, interval: 200ms, failure_threshold: 2}}
runbooks:
  recover:
    params:
      target: {{type: service}}
    steps:
      - restart: {{service: "${{param:target}}"}}
      - wait_for: {{service: "${{param:target}}", state: ready, within: 30s}}
alerts:
  - name: oncall
    webhook: {{url: "http://127.0.0.1:{pd}/v2/enqueue", format: pagerduty, routing_key: "${{secret:PD_KEY}}"}}
    thresholds: {{down_for: 1s}}
    runbook: {{name: recover, auto: true, root_param: target}}
"#,
        pd = pagerduty.port
    ));
    stack.set_secret("PD_KEY", KEY);
    assert!(stack.up().status.success());
    // The database (one instance, behind the proxy) stops answering ready; a restart brings
    // a fresh one that does.
    eventually(
        "the database through the proxy",
        Duration::from_secs(20),
        || matches!(get(db, "/ready"), Some((200, _))).then_some(()),
    );
    set_ready(db, false);
    let requests = eventually(
        "the trigger, then the resolve",
        Duration::from_secs(60),
        || {
            let requests = pagerduty.requests();
            (requests.len() >= 2).then_some(requests)
        },
    );
    assert_eq!(actions_of(&requests), ["trigger", "resolve"]);
    // The page offered the runbook; the run was the alert's.
    assert_eq!(
        requests[0].1["payload"]["custom_details"]["labels"]["runbook"], "recover",
        "{}",
        requests[0].1
    );
    let ledger = stack.ledger();
    let started = actions(&ledger, "runbook.start");
    assert_eq!(started.len(), 1, "{started:?}");
    assert_eq!(started[0]["actor"], "wharf-control@tester");
    let succeeded = eventually("the run to succeed", Duration::from_secs(30), || {
        let done = actions(&stack.ledger(), "runbook.succeeded");
        (!done.is_empty()).then_some(done)
    });
    assert_eq!(succeeded.len(), 1);
    let runs = ok(&stack, &["runbook", "runs", "--output", "json"]);
    let run = &runs["runs"][0];
    assert_eq!(run["trigger"], "alert wharf/heal/oncall/db", "{run}");
    assert_eq!(run["params"]["target"], "db", "{run}");
    let restarts = actions(&ledger, "service.restart");
    assert!(restarts.iter().any(|e| e["target"] == "db"), "{restarts:?}");
}
