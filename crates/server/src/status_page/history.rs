//! What each service was, and when it was under maintenance, replayed from the ledger: the
//! status page's uptime is a pure function of these facts and a clock reading.
//!
//! The facts (`Fact`, one per ledger entry the page reads):
//! - `service.state` (`details.to`): each service's state transitions. running, degraded,
//!   external and exited count as **up**; down, blocked, failed, crash-loop and stopped as
//!   **down**; starting and waiting are down too, except while a service comes up after a
//!   control plane start (its first state after `from: "new"`), which is **no data**.
//! - `stack.up` / `stack.down_requested` (of the whole stack) / `stack.down`: a control plane
//!   start, an operator's `wharf down` of the stack, a stopped stack. Before the first
//!   `stack.up`, and from a whole-stack down until the next `stack.up`, there is no data —
//!   nothing was watching, and stopping the stack is the operator's choice, not an outage
//!   (`wharf down SERVICE` of one service is: its `stopped` counts as down).
//! - maintenance windows: `deploy.start` … `deploy.succeeded` / `deploy.rolled_back` (a
//!   rollout of the target service); `backup.restore_begin` … `backup.restore` (an in-place
//!   restore: the datastore and every service depending on it, transitively, whom the restore
//!   holds stopped); `silence.create` with `details.maintenance: true` … its `details.ends_at`
//!   or its `silence.expire` (same `details.id`), covering the services its `details.matchers`
//!   name with `service=NAME`.
//!
//! A component (several services) is down at a moment when one of its services is down outside
//! a maintenance window of its own; otherwise it is left out of the count while one of its
//! services is under maintenance, and up when one of them is up. Uptime is up time over counted
//! time; a window with nothing counted has no uptime (`None`), which is not 0 %.

use std::collections::{BTreeMap, HashSet};

use jiff::Timestamp;
use serde_json::Value;
use wharf_api::ServiceState;

/// One ledger entry, as the page reads it.
#[derive(Debug, Clone)]
pub struct Fact {
    pub time: Timestamp,
    pub action: String,
    pub target: String,
    pub details: Value,
}

/// The ledger actions the page reads for uptime and maintenance.
pub const ACTIONS: &[&str] = &[
    "stack.up",
    "stack.down_requested",
    "stack.down",
    "service.state",
    "deploy.start",
    "deploy.succeeded",
    "deploy.rolled_back",
    "backup.restore_begin",
    "backup.restore",
    "silence.create",
    "silence.expire",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Condition {
    Up,
    Down,
}

/// A stretch of time in one condition, `[from, to)` in milliseconds since the epoch.
#[derive(Debug, Clone, Copy)]
struct Segment {
    from: i64,
    to: i64,
    condition: Condition,
}

/// Why a maintenance window is open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaintenanceKind {
    /// A rollout of this service.
    Rollout,
    /// An in-place restore of this datastore.
    Restore,
    /// A silence declared as maintenance.
    Declared,
}

/// A maintenance window. `end` is `None` while it is open.
#[derive(Debug, Clone)]
pub struct Window {
    pub kind: MaintenanceKind,
    /// The service rolled out, the datastore restored, or the silence's id.
    pub subject: String,
    pub services: Vec<String>,
    pub start: Timestamp,
    pub end: Option<Timestamp>,
    /// A declared maintenance's announced end.
    pub until: Option<Timestamp>,
}

impl Window {
    fn end_ms(&self, now: i64) -> i64 {
        let mut end = self.end.map_or(now, |t| t.as_millisecond());
        if let Some(until) = self.until {
            end = end.min(until.as_millisecond());
        }
        end
    }

    /// Open at `now`.
    pub fn is_open(&self, now: Timestamp) -> bool {
        let now = now.as_millisecond();
        let ended = self.end.is_some_and(|end| end.as_millisecond() <= now)
            || self
                .until
                .is_some_and(|until| until.as_millisecond() <= now);
        self.start.as_millisecond() <= now && !ended
    }
}

/// Every service's conditions over time and every maintenance window, up to `now`.
#[derive(Debug, Clone, Default)]
pub struct History {
    states: BTreeMap<String, Vec<Segment>>,
    pub windows: Vec<Window>,
    now: i64,
}

/// What a `service.state` fact says the service is.
fn condition(details: &Value, coming_up: bool) -> Option<Condition> {
    let state: ServiceState = serde_json::from_value(details.get("to")?.clone()).ok()?;
    Some(match state {
        ServiceState::Running
        | ServiceState::Degraded
        | ServiceState::External
        | ServiceState::Exited => Condition::Up,
        ServiceState::Starting | ServiceState::Waiting if coming_up => return None,
        _ => Condition::Down,
    })
}

/// The services a maintenance silence's matchers name with `service=NAME`. Three spellings are
/// read: strings (`"service=api"`), Alertmanager's objects (`{"name": "service", "value":
/// "api"}`, skipped when `isRegex` is true or `isEqual` false) and one mapping (`{"service":
/// "api"}`). A matcher on anything else names no service.
pub fn matched_services(matchers: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let mut one = |matcher: &Value| match matcher {
        Value::String(text) => {
            if let Some((label, value)) = text.split_once('=')
                && label.trim() == "service"
                && !value.starts_with('~')
            {
                let value = value.trim().trim_matches('"');
                if !value.is_empty() {
                    found.push(value.to_owned());
                }
            }
        }
        Value::Object(object) if object.contains_key("name") => {
            let exact = object.get("isRegex").and_then(Value::as_bool) != Some(true)
                && object.get("isEqual").and_then(Value::as_bool) != Some(false);
            if exact
                && object.get("name").and_then(Value::as_str) == Some("service")
                && let Some(value) = object.get("value").and_then(Value::as_str)
            {
                found.push(value.to_owned());
            }
        }
        Value::Object(object) => {
            if let Some(value) = object.get("service").and_then(Value::as_str) {
                found.push(value.to_owned());
            }
        }
        _ => {}
    };
    match matchers {
        Value::Array(items) => items.iter().for_each(&mut one),
        other => one(other),
    }
    found
}

/// Replays `facts` (in ledger order) up to `now`. `dependents(name)` lists the services that
/// depend on `name`, transitively (an in-place restore holds them).
pub fn replay(facts: &[Fact], dependents: &dyn Fn(&str) -> Vec<String>, now: Timestamp) -> History {
    let now_ms = now.as_millisecond();
    let mut history = History {
        now: now_ms,
        ..History::default()
    };
    // Each service's open segment: since when, in what condition (None: no data).
    let mut open: BTreeMap<String, (i64, Option<Condition>)> = BTreeMap::new();
    let mut coming_up: HashSet<String> = HashSet::new();
    // The stack's name (the target of `stack.up`), and whether the whole stack is going down.
    let mut stack: Option<String> = None;
    let mut stopping = false;
    let close = |history: &mut History,
                 service: &str,
                 (from, condition): (i64, Option<Condition>),
                 to: i64| {
        if let Some(condition) = condition
            && to > from
        {
            history
                .states
                .entry(service.to_owned())
                .or_default()
                .push(Segment {
                    from,
                    to,
                    condition,
                });
        }
    };
    // A clock stepped back between two entries must not make segments overlap: time only
    // moves forward here.
    let mut last = i64::MIN;
    for fact in facts {
        let at = fact.time.as_millisecond().min(now_ms).max(last);
        last = at;
        match fact.action.as_str() {
            "stack.up" | "stack.down" => {
                for (service, segment) in std::mem::take(&mut open) {
                    close(&mut history, &service, segment, at);
                }
                coming_up.clear();
                stopping = fact.action == "stack.down";
                if fact.action == "stack.up" {
                    stack = Some(fact.target.clone());
                }
            }
            "stack.down_requested" if stack.as_deref() == Some(fact.target.as_str()) => {
                for (service, segment) in std::mem::take(&mut open) {
                    close(&mut history, &service, segment, at);
                }
                stopping = true;
            }
            "service.state" if stopping => {}
            "service.state" => {
                let service = &fact.target;
                let from_new = fact.details.get("from").and_then(Value::as_str) == Some("new");
                if from_new {
                    coming_up.insert(service.clone());
                }
                let condition = condition(&fact.details, coming_up.contains(service));
                if condition.is_some() {
                    coming_up.remove(service);
                }
                if let Some(previous) = open.insert(service.clone(), (at, condition)) {
                    close(&mut history, service, previous, at);
                }
            }
            "deploy.start" => open_window(
                &mut history,
                MaintenanceKind::Rollout,
                &fact.target,
                vec![fact.target.clone()],
                fact.time,
                None,
            ),
            "deploy.succeeded" | "deploy.rolled_back" => {
                close_window(
                    &mut history,
                    &MaintenanceKind::Rollout,
                    &fact.target,
                    fact.time,
                );
            }
            "backup.restore_begin" => {
                let mut services = vec![fact.target.clone()];
                services.extend(dependents(&fact.target));
                open_window(
                    &mut history,
                    MaintenanceKind::Restore,
                    &fact.target,
                    services,
                    fact.time,
                    None,
                );
            }
            "backup.restore" => {
                close_window(
                    &mut history,
                    &MaintenanceKind::Restore,
                    &fact.target,
                    fact.time,
                );
            }
            "silence.create" => {
                let maintenance = fact.details.get("maintenance").and_then(Value::as_bool);
                let id = silence_id(&fact.details);
                if maintenance == Some(true)
                    && let Some(id) = id
                {
                    let services = fact
                        .details
                        .get("matchers")
                        .map(matched_services)
                        .unwrap_or_default();
                    let until = fact
                        .details
                        .get("ends_at")
                        .and_then(Value::as_str)
                        .and_then(|t| t.parse::<Timestamp>().ok());
                    open_window(
                        &mut history,
                        MaintenanceKind::Declared,
                        &id,
                        services,
                        fact.time,
                        until,
                    );
                }
            }
            "silence.expire" => {
                if let Some(id) = silence_id(&fact.details) {
                    close_window(&mut history, &MaintenanceKind::Declared, &id, fact.time);
                }
            }
            _ => {}
        }
    }
    for (service, segment) in std::mem::take(&mut open) {
        close(&mut history, &service, segment, now_ms);
    }
    history
}

/// A silence's id: a string or a number in `details.id`.
fn silence_id(details: &Value) -> Option<String> {
    match details.get("id")? {
        Value::String(id) => Some(id.clone()),
        Value::Number(id) => Some(id.to_string()),
        _ => None,
    }
}

fn open_window(
    history: &mut History,
    kind: MaintenanceKind,
    subject: &str,
    services: Vec<String>,
    start: Timestamp,
    until: Option<Timestamp>,
) {
    // A second start while one is open (a resumed rollout) keeps the first.
    let already = history
        .windows
        .iter()
        .any(|w| w.kind == kind && w.subject == subject && w.end.is_none());
    if !already {
        history.windows.push(Window {
            kind,
            subject: subject.to_owned(),
            services,
            start,
            end: None,
            until,
        });
    }
}

fn close_window(history: &mut History, kind: &MaintenanceKind, subject: &str, at: Timestamp) {
    for window in &mut history.windows {
        if window.kind == *kind && window.subject == subject && window.end.is_none() {
            window.end = Some(at);
        }
    }
}

impl History {
    fn condition_at(&self, service: &str, at: i64) -> Option<Condition> {
        let segments = self.states.get(service)?;
        let index = segments.partition_point(|s| s.from <= at);
        let segment = segments.get(index.checked_sub(1)?)?;
        (at < segment.to).then_some(segment.condition)
    }

    fn in_maintenance_ms(&self, service: &str, at: i64) -> bool {
        self.windows.iter().any(|w| {
            w.start.as_millisecond() <= at
                && at < w.end_ms(self.now)
                && w.services.iter().any(|s| s == service)
        })
    }

    /// Whether `service` is inside a maintenance window at `at`.
    pub fn in_maintenance(&self, service: &str, at: Timestamp) -> bool {
        self.in_maintenance_ms(service, at.as_millisecond())
    }

    /// Whether a window open at `now` covers `service` (what the live page shows).
    pub fn under_maintenance_now(&self, service: &str, now: Timestamp) -> bool {
        self.open_windows(now)
            .any(|w| w.services.iter().any(|s| s == service))
    }

    /// The windows open at `at`.
    pub fn open_windows(&self, at: Timestamp) -> impl Iterator<Item = &Window> {
        self.windows.iter().filter(move |w| w.is_open(at))
    }

    /// The share (percent) of `[from, to)` the component made of `services` was up, leaving
    /// out its maintenance and the time with no data; `None` when nothing was counted.
    pub fn uptime(&self, services: &[String], from: Timestamp, to: Timestamp) -> Option<f64> {
        let (from, to) = (from.as_millisecond(), to.as_millisecond().min(self.now));
        if to <= from {
            return None;
        }
        let mut cuts = vec![from, to];
        for service in services {
            // A service's segments are in order and do not overlap: only those meeting the
            // window are looked at, so a long history costs a binary search.
            let segments = self.states.get(service).map_or(&[][..], Vec::as_slice);
            let first = segments.partition_point(|s| s.to <= from);
            let last = segments.partition_point(|s| s.from < to);
            for segment in &segments[first..last.max(first)] {
                cuts.extend([segment.from, segment.to]);
            }
        }
        for window in &self.windows {
            if window.services.iter().any(|s| services.contains(s)) {
                cuts.extend([window.start.as_millisecond(), window.end_ms(self.now)]);
            }
        }
        cuts.retain(|t| (from..=to).contains(t));
        cuts.sort_unstable();
        cuts.dedup();
        let (mut up, mut counted) = (0i64, 0i64);
        for pair in cuts.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            let mid = a + (b - a) / 2;
            let mut any_up = false;
            let mut any_maintenance = false;
            let mut down = false;
            for service in services {
                let maintenance = self.in_maintenance_ms(service, mid);
                any_maintenance |= maintenance;
                match self.condition_at(service, mid) {
                    Some(Condition::Down) if !maintenance => down = true,
                    Some(Condition::Up) => any_up = true,
                    _ => {}
                }
            }
            if down {
                counted += b - a;
            } else if !any_maintenance && any_up {
                counted += b - a;
                up += b - a;
            }
        }
        (counted > 0).then(|| up as f64 * 100.0 / counted as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T0: i64 = 1_800_000_000; // seconds

    fn at(minutes: i64) -> Timestamp {
        Timestamp::from_second(T0 + minutes * 60).unwrap()
    }

    fn fact(minutes: i64, action: &str, target: &str, details: Value) -> Fact {
        Fact {
            time: at(minutes),
            action: action.to_owned(),
            target: target.to_owned(),
            details,
        }
    }

    fn state(minutes: i64, service: &str, from: &str, to: &str) -> Fact {
        fact(
            minutes,
            "service.state",
            service,
            json!({"from": from, "to": to}),
        )
    }

    fn none(_: &str) -> Vec<String> {
        Vec::new()
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    /// The stack up at minute 0, `api` running from minute 1.
    fn started() -> Vec<Fact> {
        vec![
            fact(0, "stack.up", "shop", json!({})),
            state(0, "api", "new", "starting"),
            state(1, "api", "starting", "running"),
        ]
    }

    #[test]
    fn an_outage_counts_as_its_share_of_the_window() {
        let mut facts = started();
        facts.push(state(31, "api", "running", "down"));
        facts.push(state(41, "api", "down", "running"));
        let history = replay(&facts, &none, at(101));
        // 100 minutes counted (boot excluded), 10 down.
        assert_eq!(history.uptime(&names(&["api"]), at(0), at(101)), Some(90.0));
    }

    #[test]
    fn time_before_the_first_stack_up_is_no_data_not_downtime() {
        let history = replay(&started(), &none, at(11));
        // A window reaching back a day before the stack existed: only the 10 minutes count.
        assert_eq!(
            history.uptime(&names(&["api"]), at(-24 * 60), at(11)),
            Some(100.0)
        );
        assert_eq!(history.uptime(&names(&["api"]), at(-60), at(0)), None);
    }

    #[test]
    fn an_outage_inside_a_declared_maintenance_does_not_count() {
        let mut facts = started();
        facts.push(fact(
            21,
            "silence.create",
            "maintenance",
            json!({"id": "s1", "maintenance": true, "matchers": ["service=api"], "ends_at": at(61).to_string()}),
        ));
        facts.push(state(31, "api", "running", "down"));
        facts.push(state(41, "api", "down", "running"));
        let history = replay(&facts, &none, at(101));
        // The window (40 minutes) is left out; the rest was up.
        assert_eq!(
            history.uptime(&names(&["api"]), at(1), at(101)),
            Some(100.0)
        );
        assert!(history.in_maintenance("api", at(30)));
        assert!(!history.in_maintenance("api", at(61)), "ends_at closes it");
    }

    #[test]
    fn an_outage_spanning_a_window_edge_counts_only_outside() {
        let mut facts = started();
        // Down 21..51; maintenance 31..61 (expired early by its silence.expire at 61).
        facts.push(state(21, "api", "running", "down"));
        facts.push(fact(
            31,
            "silence.create",
            "maintenance",
            json!({"id": 7, "maintenance": true, "matchers": [{"name": "service", "value": "api", "isRegex": false}]}),
        ));
        facts.push(state(51, "api", "down", "running"));
        facts.push(fact(61, "silence.expire", "maintenance", json!({"id": 7})));
        let history = replay(&facts, &none, at(101));
        // Counted: 1..31 (20 up, 10 down) + 61..101 (40 up) = 70 minutes, 60 up.
        let uptime = history.uptime(&names(&["api"]), at(1), at(101)).unwrap();
        assert!((uptime - 60.0 * 100.0 / 70.0).abs() < 1e-9, "{uptime}");
    }

    #[test]
    fn a_silence_without_maintenance_or_on_another_service_leaves_the_outage_counted() {
        let mut facts = started();
        facts.push(fact(
            21,
            "silence.create",
            "x",
            json!({"id": "a", "maintenance": false, "matchers": ["service=api"]}),
        ));
        facts.push(fact(
            21,
            "silence.create",
            "x",
            json!({"id": "b", "maintenance": true, "matchers": {"service": "web"}}),
        ));
        facts.push(state(51, "api", "running", "crash-loop"));
        let history = replay(&facts, &none, at(101));
        assert_eq!(history.uptime(&names(&["api"]), at(1), at(101)), Some(50.0));
    }

    #[test]
    fn a_rollout_and_an_in_place_restore_are_maintenance_of_what_they_touch() {
        let mut facts = started();
        facts.push(state(0, "db", "new", "running"));
        facts.push(fact(11, "deploy.start", "api", json!({})));
        facts.push(state(12, "api", "running", "degraded"));
        facts.push(state(13, "api", "degraded", "down"));
        facts.push(fact(21, "deploy.rolled_back", "api", json!({})));
        facts.push(state(21, "api", "down", "running"));
        facts.push(fact(41, "backup.restore_begin", "db", json!({"job": 3})));
        facts.push(state(42, "db", "running", "down"));
        facts.push(state(42, "api", "running", "stopped"));
        facts.push(fact(51, "backup.restore", "db", json!({"job": 3})));
        facts.push(state(51, "db", "down", "running"));
        facts.push(state(52, "api", "stopped", "running"));
        let dependents = |name: &str| {
            if name == "db" {
                names(&["api"])
            } else {
                Vec::new()
            }
        };
        let history = replay(&facts, &dependents, at(101));
        // api: maintenance 11..21 and 41..51; down 51..52 only (1 of 80 counted minutes).
        let uptime = history.uptime(&names(&["api"]), at(1), at(101)).unwrap();
        assert!((uptime - 79.0 * 100.0 / 80.0).abs() < 1e-9, "{uptime}");
        assert_eq!(history.uptime(&names(&["db"]), at(0), at(101)), Some(100.0));
    }

    #[test]
    fn a_component_is_down_when_one_service_is_down_outside_its_own_maintenance() {
        let mut facts = started();
        facts.push(state(0, "web", "new", "running"));
        facts.push(fact(11, "deploy.start", "api", json!({})));
        facts.push(state(12, "api", "running", "down"));
        facts.push(state(15, "web", "running", "down"));
        facts.push(state(21, "web", "down", "running"));
        facts.push(state(21, "api", "down", "running"));
        facts.push(fact(21, "deploy.succeeded", "api", json!({})));
        let history = replay(&facts, &none, at(31));
        // 11..21 api in maintenance; web down 15..21 counts: 30 counted minutes (1..31) but
        // 11..15 left out (maintenance, nothing down) → 26 counted, 6 down.
        let uptime = history
            .uptime(&names(&["api", "web"]), at(1), at(31))
            .unwrap();
        assert!((uptime - 20.0 * 100.0 / 26.0).abs() < 1e-9, "{uptime}");
    }

    #[test]
    fn a_stopped_stack_and_a_restart_are_no_data() {
        let mut facts = started();
        facts.push(fact(11, "stack.down", "shop", json!({})));
        facts.push(fact(61, "stack.up", "shop", json!({})));
        facts.push(state(61, "api", "new", "starting"));
        facts.push(state(62, "api", "starting", "running"));
        facts.push(state(71, "api", "running", "starting"));
        facts.push(state(72, "api", "starting", "running"));
        let history = replay(&facts, &none, at(82));
        // Counted: 1..11 up, 62..71 up, 71..72 down (a restart after running is an outage),
        // 72..82 up: 30 minutes, 29 up.
        let uptime = history.uptime(&names(&["api"]), at(0), at(82)).unwrap();
        assert!((uptime - 29.0 * 100.0 / 30.0).abs() < 1e-9, "{uptime}");
    }

    #[test]
    fn stopping_the_whole_stack_is_no_data_but_stopping_one_service_is_down() {
        let mut facts = started();
        facts.push(state(0, "web", "new", "running"));
        facts.push(fact(
            11,
            "stack.down_requested",
            "api",
            json!({"services": ["api"]}),
        ));
        facts.push(state(11, "api", "running", "stopped"));
        facts.push(fact(
            21,
            "stack.down_requested",
            "shop",
            json!({"services": ["web", "api"]}),
        ));
        facts.push(state(22, "web", "running", "stopped"));
        facts.push(fact(23, "stack.down", "shop", json!({})));
        let history = replay(&facts, &none, at(41));
        // api: up 1..11, stopped by the operator 11..21 (down), nothing after the stack's down.
        assert_eq!(history.uptime(&names(&["api"]), at(0), at(41)), Some(50.0));
        // web: up 0..21; its stop during the stack's down is not an outage.
        assert_eq!(history.uptime(&names(&["web"]), at(0), at(41)), Some(100.0));
    }

    #[test]
    fn open_windows_are_the_ones_in_force_now() {
        let mut facts = started();
        facts.push(fact(5, "deploy.start", "api", json!({})));
        facts.push(fact(
            6,
            "silence.create",
            "m",
            json!({"id": "old", "maintenance": true, "matchers": ["service=api"], "ends_at": at(7).to_string()}),
        ));
        let history = replay(&facts, &none, at(10));
        let open: Vec<&Window> = history.open_windows(at(10)).collect();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].kind, MaintenanceKind::Rollout);
        assert!(history.under_maintenance_now("api", at(10)));
        assert!(!history.under_maintenance_now("web", at(10)));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        /// Whatever the ledger holds — any order of actions, states, ids and times, a clock
        /// stepped back — replay never panics and an uptime is a share between 0 and 100.
        #[test]
        fn any_history_gives_uptimes_between_0_and_100(
            steps in proptest::collection::vec(
                (0usize..ACTIONS.len(), 0usize..4, 0usize..13, -30i64..600, proptest::bool::ANY),
                0..60,
            ),
            window in (0i64..600, 1i64..600),
        ) {
            let words = ["running", "degraded", "starting", "waiting", "down", "blocked",
                "failed", "crash-loop", "external", "exited", "stopped", "new", "bogus"];
            let services = ["api", "db", "web", "shop"];
            let mut minute = 0;
            let facts: Vec<Fact> = steps.iter().map(|&(action, service, word, step, flag)| {
                minute += step / 10;
                let target = services[service];
                fact(minute, ACTIONS[action], target, json!({
                    "from": words[(word + 1) % words.len()], "to": words[word],
                    "id": service, "maintenance": flag, "matchers": [format!("service={target}")],
                    "ends_at": at(minute + step).to_string(), "services": [target],
                }))
            }).collect();
            let history = replay(&facts, &|name: &str| vec![format!("{name}-dependent")], at(minute + 60));
            let (from, length) = window;
            for group in [names(&["api"]), names(&["api", "db", "web"]), Vec::new()] {
                if let Some(uptime) = history.uptime(&group, at(from - 30), at(from - 30 + length)) {
                    proptest::prop_assert!((0.0..=100.0).contains(&uptime), "{uptime}");
                }
            }
        }
    }

    #[test]
    fn matchers_name_services_in_three_spellings_and_never_by_regex() {
        assert_eq!(
            matched_services(&json!([
                "service=api",
                "severity=page",
                "service = \"web\""
            ])),
            ["api", "web"]
        );
        assert_eq!(
            matched_services(
                &json!([{"name": "service", "value": "db"}, {"name": "service", "value": "d.*", "isRegex": true}])
            ),
            ["db"]
        );
        assert_eq!(matched_services(&json!({"service": "api"})), ["api"]);
        assert!(matched_services(&json!("service=~api.*")).is_empty());
    }
}
