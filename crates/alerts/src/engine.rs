//! Evaluation: observations in, page changes out.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::rule::{Rule, Severity};

/// How a service stands for alerting, from its health state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// It serves its dependents (running, degraded, a passing external datastore).
    Serving,
    /// It does not, and should (down, failed, crash-looping, blocked by a dependency).
    Down,
    /// Neither yet (starting, waiting for its dependencies): nothing to page or resolve on.
    Settling,
    /// Stopped by an operator: its pages resolve, it opens none.
    Stopped,
}

/// One service as observed now.
#[derive(Debug, Clone)]
pub struct ServiceView {
    pub name: String,
    pub health: Health,
    /// Why it is down, in a person's words (the status report's reason).
    pub reason: Option<String>,
    /// Its critical dependencies: when one is in trouble, this service's trouble is theirs.
    pub critical_deps: Vec<String>,
    /// A rollout (or another change) is under way: it opens no page meanwhile.
    pub maintenance: bool,
    /// The share of 5xx answers through the proxy over the window, when there was enough
    /// traffic to judge.
    pub error_rate: Option<f64>,
    /// The p95 latency through the proxy over the window, likewise.
    pub latency_p95: Option<Duration>,
    /// The p99 latency through the proxy over the window, likewise.
    pub latency_p99: Option<Duration>,
    /// It serves, with fewer instances ready than wanted (the health state `degraded`).
    pub degraded: bool,
    /// A datastore whose backups failed or are overdue: why (the backups' dead-man's switch).
    pub backup_problem: Option<String>,
    /// A secret (`secret:NAME`) past its `max_age`: why.
    pub secret_problem: Option<String>,
}

/// What is wrong with a service.
#[derive(Debug, Clone, PartialEq)]
pub enum Trouble {
    Down {
        reason: Option<String>,
    },
    ErrorRate {
        rate: f64,
        threshold: f64,
    },
    Latency {
        /// 95 or 99.
        quantile: u8,
        value: Duration,
        threshold: Duration,
    },
    /// Serving with fewer instances ready than wanted.
    Degraded,
    /// The datastore serves, but its backups failed or are late.
    Backup {
        reason: String,
    },
    /// A secret is past its rotation policy's `max_age`.
    SecretOverdue {
        reason: String,
    },
}

impl Trouble {
    /// Whether dependents suffer from it: an outage makes them children of this root; a
    /// failing backup harms nobody yet, so it neither suppresses nor lists them.
    fn is_outage(&self) -> bool {
        !matches!(
            self,
            Trouble::Backup { .. } | Trouble::SecretOverdue { .. } | Trouble::Degraded
        )
    }

    fn describe(&self, service: &str) -> String {
        match self {
            Trouble::Down {
                reason: Some(reason),
            } => format!("{service} is down: {reason}"),
            Trouble::Down { reason: None } => format!("{service} is down"),
            Trouble::ErrorRate { rate, threshold } => format!(
                "{service} answers {:.1}% errors (threshold {:.1}%)",
                rate * 100.0,
                threshold * 100.0
            ),
            Trouble::Latency {
                quantile,
                value,
                threshold,
            } => format!(
                "{service} p{quantile} latency is {} ms (threshold {} ms)",
                value.as_millis(),
                threshold.as_millis()
            ),
            Trouble::Degraded => {
                format!("{service} is degraded: fewer instances ready than wanted")
            }
            Trouble::SecretOverdue { reason } => format!(
                "secret {} is overdue for rotation: {reason}",
                service.trim_start_matches(crate::SECRET_PREFIX)
            ),
            Trouble::Backup { reason } => format!(
                "{} backups: {reason}",
                service.trim_end_matches(crate::BACKUPS_SUFFIX)
            ),
        }
    }
}

/// One page: one root cause under one rule. Persisted by the control plane so that a page
/// opened before a restart still gets its resolve after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page {
    /// Stable for the page's life: `wharf/STACK/RULE/ROOT`.
    pub dedup_key: String,
    pub rule: String,
    pub root_cause: String,
    pub summary: String,
    pub severity: Severity,
    /// Dependents in trouble through the root cause, when the page opened.
    pub affected: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub started_at: Timestamp,
    pub resolved_at: Option<Timestamp>,
    /// Whether its trigger was sent: a page that opened under a silence is not, until the
    /// silence ends; a page never sent gets no resolve either. (Pages persisted before
    /// silences existed were all sent.)
    #[serde(default = "sent")]
    pub notified: bool,
}

fn sent() -> bool {
    true
}

impl Page {
    /// The page's value of a label, as silences match it: `service` (the root cause; a
    /// datastore's backups count as the datastore), `alert` (the rule), `severity`, `root`
    /// (the root as paged, `db:backups` included), or one of the rule's labels.
    pub fn label(&self, name: &str) -> Option<String> {
        match name {
            "service" => Some(
                self.root_cause
                    .trim_end_matches(crate::BACKUPS_SUFFIX)
                    .to_owned(),
            ),
            "root" => Some(self.root_cause.clone()),
            "secret" => self
                .root_cause
                .strip_prefix(crate::SECRET_PREFIX)
                .map(str::to_owned),
            "alert" => Some(self.rule.clone()),
            "severity" => Some(
                match self.severity {
                    Severity::Critical => "critical",
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                    Severity::Info => "info",
                }
                .to_owned(),
            ),
            other => self.labels.get(other).cloned(),
        }
    }
}

/// What an evaluation changed.
#[derive(Debug, Clone, PartialEq)]
pub enum PageChange {
    Opened(Page),
    Resolved(Page),
}

/// The alerting state: when each service's trouble began, per rule, and the open pages.
#[derive(Debug)]
pub struct Engine {
    stack: String,
    rules: Vec<Rule>,
    /// (rule, service) → since when, and what.
    troubles: HashMap<(String, String), (Timestamp, Trouble)>,
    /// (rule, service) → when its last trouble ended. A dependent's own trouble counts only
    /// from the moment its dependencies' ended: it is given the rule's `for` to recover with
    /// them, rather than paged as a root the instant the real root recovers.
    cleared: HashMap<(String, String), Timestamp>,
    /// Service → the last time it was seen in maintenance: its trouble counts only from the
    /// maintenance's end, so what a rollout did (a canary's errors) pages only if it outlasts
    /// the rollout by the rule's `for`.
    maintenance: HashMap<String, Timestamp>,
    /// Open pages by dedup key.
    open: BTreeMap<String, Page>,
}

impl Engine {
    /// An engine with the pages left open by a previous control plane, so they resolve.
    pub fn new(stack: &str, rules: Vec<Rule>, open: Vec<Page>) -> Engine {
        Engine {
            stack: stack.to_owned(),
            rules,
            troubles: HashMap::new(),
            cleared: HashMap::new(),
            maintenance: HashMap::new(),
            open: open.into_iter().map(|p| (p.dedup_key.clone(), p)).collect(),
        }
    }

    /// A changed manifest's rules; open pages stay (and resolve as usual, or as soon as their
    /// rule is gone).
    pub fn set_rules(&mut self, rules: Vec<Rule>) {
        self.rules = rules;
        let names: BTreeSet<&str> = self.rules.iter().map(|r| r.name.as_str()).collect();
        self.troubles
            .retain(|(rule, _), _| names.contains(rule.as_str()));
    }

    pub fn open_pages(&self) -> impl Iterator<Item = &Page> {
        self.open.values()
    }

    /// Records whether an open page's trigger was sent (a silence holds it back).
    pub fn set_notified(&mut self, dedup_key: &str, notified: bool) {
        if let Some(page) = self.open.get_mut(dedup_key) {
            page.notified = notified;
        }
    }

    /// Folds in the services as they are at `now`; answers the pages to open and to resolve,
    /// resolves first.
    pub fn evaluate(&mut self, now: Timestamp, services: &[ServiceView]) -> Vec<PageChange> {
        let by_name: HashMap<&str, &ServiceView> =
            services.iter().map(|s| (s.name.as_str(), s)).collect();
        let mut changes = Vec::new();
        for service in services.iter().filter(|s| s.maintenance) {
            self.maintenance.insert(service.name.clone(), now);
        }
        for rule in &self.rules {
            for service in services {
                let key = (rule.name.clone(), service.name.clone());
                match trouble(rule, service) {
                    Some(trouble) => {
                        let entry = self.troubles.entry(key).or_insert((now, trouble.clone()));
                        entry.1 = trouble;
                    }
                    // Coming up again (a restart after a failure): neither over nor begun
                    // anew, so a service that flaps between down and starting still reaches
                    // its `for`.
                    None if service.health == Health::Settling => {}
                    None => {
                        if let Some((_, ended)) = self.troubles.remove(&key)
                            && ended.is_outage()
                        {
                            self.cleared.insert(key, now);
                        }
                    }
                }
            }
        }
        self.troubles
            .retain(|(_, service), _| by_name.contains_key(service.as_str()));
        // Resolves: a page whose root serves again (or was stopped, or left the stack, or
        // whose rule is gone) — regardless of silences, maintenance or anything else.
        let rules: HashMap<&str, &Rule> = self.rules.iter().map(|r| (r.name.as_str(), r)).collect();
        let resolved: Vec<String> = self
            .open
            .values()
            .filter(|page| {
                let in_trouble = self
                    .troubles
                    .contains_key(&(page.rule.clone(), page.root_cause.clone()));
                match by_name.get(page.root_cause.as_str()) {
                    None => true,
                    Some(_) if !rules.contains_key(page.rule.as_str()) => true,
                    Some(view) => match view.health {
                        Health::Stopped => true,
                        Health::Serving => !in_trouble,
                        Health::Down | Health::Settling => false,
                    },
                }
            })
            .map(|page| page.dedup_key.clone())
            .collect();
        for key in resolved {
            if let Some(mut page) = self.open.remove(&key) {
                page.resolved_at = Some(now);
                changes.push(PageChange::Resolved(page));
            }
        }
        // Opens: one per root cause whose trouble lasted the rule's `for`.
        for rule in &self.rules {
            let in_trouble = |name: &str| {
                self.troubles
                    .get(&(rule.name.clone(), name.to_owned()))
                    .is_some_and(|(_, trouble)| trouble.is_outage())
            };
            for service in services {
                let Some((since, trouble)) = self
                    .troubles
                    .get(&(rule.name.clone(), service.name.clone()))
                else {
                    continue;
                };
                let service_ancestors = ancestors(&service.name, &by_name);
                // A child: a critical dependency (transitively) is in trouble too — pending or
                // paged, its page is the one that speaks for both — or does not serve for a
                // reason that is no outage (stopped by an operator, coming up, in a rollout).
                let not_serving = |name: &String| {
                    by_name
                        .get(name.as_str())
                        .is_some_and(|v| v.health != Health::Serving || v.maintenance)
                };
                if service_ancestors
                    .iter()
                    .any(|a| in_trouble(a) || not_serving(a))
                {
                    continue;
                }
                let counted_from = service_ancestors
                    .iter()
                    .filter_map(|a| self.cleared.get(&(rule.name.clone(), a.clone())))
                    .chain(self.maintenance.get(&service.name))
                    .fold(*since, |from, cleared| from.max(*cleared));
                let lasted = now.duration_since(counted_from).unsigned_abs();
                if lasted < rule.after || service.maintenance {
                    continue;
                }
                let key = format!("wharf/{}/{}/{}", self.stack, rule.name, service.name);
                if self.open.contains_key(&key) {
                    continue;
                }
                let affected: Vec<String> = services
                    .iter()
                    .filter(|_| trouble.is_outage())
                    .filter(|s| s.name != service.name && in_trouble(&s.name))
                    .filter(|s| ancestors(&s.name, &by_name).contains(&service.name))
                    .map(|s| s.name.clone())
                    .collect();
                if !rule.watches(&service.name) && !affected.iter().any(|a| rule.watches(a)) {
                    continue;
                }
                let mut summary = trouble.describe(&service.name);
                if !affected.is_empty() {
                    summary.push_str(&format!("; affects {}", affected.join(", ")));
                }
                let page = Page {
                    dedup_key: key.clone(),
                    rule: rule.name.clone(),
                    root_cause: service.name.clone(),
                    summary,
                    severity: rule.severity,
                    affected,
                    labels: rule.labels.clone(),
                    started_at: *since,
                    resolved_at: None,
                    notified: true,
                };
                self.open.insert(key, page.clone());
                changes.push(PageChange::Opened(page));
            }
        }
        changes
    }
}

/// What the rule finds wrong with the service now, if anything.
fn trouble(rule: &Rule, service: &ServiceView) -> Option<Trouble> {
    match service.health {
        Health::Down => {
            return Some(Trouble::Down {
                reason: service.reason.clone(),
            });
        }
        Health::Settling | Health::Stopped => return None,
        Health::Serving => {}
    }
    if let (Some(threshold), Some(rate)) = (rule.error_rate, service.error_rate)
        && rate > threshold
    {
        return Some(Trouble::ErrorRate { rate, threshold });
    }
    if let (Some(threshold), Some(value)) = (rule.latency_p99, service.latency_p99)
        && value > threshold
    {
        return Some(Trouble::Latency {
            quantile: 99,
            value,
            threshold,
        });
    }
    if let (Some(threshold), Some(value)) = (rule.latency_p95, service.latency_p95)
        && value > threshold
    {
        return Some(Trouble::Latency {
            quantile: 95,
            value,
            threshold,
        });
    }
    if rule.degraded && service.degraded {
        return Some(Trouble::Degraded);
    }
    if let Some(reason) = &service.secret_problem {
        return Some(Trouble::SecretOverdue {
            reason: reason.clone(),
        });
    }
    service
        .backup_problem
        .as_ref()
        .map(|reason| Trouble::Backup {
            reason: reason.clone(),
        })
}

/// Every service `name` depends on critically, directly or through others.
fn ancestors(name: &str, services: &HashMap<&str, &ServiceView>) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![name.to_owned()];
    while let Some(next) = todo.pop() {
        let Some(view) = services.get(next.as_str()) else {
            continue;
        };
        for dep in &view.critical_deps {
            if dep != name && seen.insert(dep.clone()) {
                todo.push(dep.clone());
            }
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(after_secs: u64) -> Rule {
        Rule {
            name: "oncall".to_owned(),
            services: Vec::new(),
            after: Duration::from_secs(after_secs),
            error_rate: Some(0.05),
            latency_p95: None,
            latency_p99: None,
            degraded: false,
            severity: Severity::Critical,
            labels: BTreeMap::new(),
        }
    }

    fn view(name: &str, health: Health, deps: &[&str]) -> ServiceView {
        ServiceView {
            name: name.to_owned(),
            health,
            reason: (health == Health::Down).then(|| "ready probe failing".to_owned()),
            critical_deps: deps.iter().map(|d| (*d).to_owned()).collect(),
            maintenance: false,
            error_rate: None,
            latency_p95: None,
            latency_p99: None,
            degraded: false,
            backup_problem: None,
            secret_problem: None,
        }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    /// db, and five services depending on it (two through a third).
    fn stack(db: Health, dependents: Health) -> Vec<ServiceView> {
        vec![
            view("db", db, &[]),
            view("api", dependents, &["db"]),
            view("worker", dependents, &["db"]),
            view("billing", dependents, &["db"]),
            view("web", dependents, &["api"]),
            view("admin", dependents, &["api"]),
        ]
    }

    fn opened(changes: &[PageChange]) -> Vec<&Page> {
        changes
            .iter()
            .filter_map(|c| match c {
                PageChange::Opened(p) => Some(p),
                PageChange::Resolved(_) => None,
            })
            .collect()
    }

    fn resolved(changes: &[PageChange]) -> Vec<&Page> {
        changes
            .iter()
            .filter_map(|c| match c {
                PageChange::Resolved(p) => Some(p),
                PageChange::Opened(_) => None,
            })
            .collect()
    }

    #[test]
    fn a_database_outage_under_five_dependents_pages_once_naming_the_root_and_resolves_once() {
        let mut engine = Engine::new("shop", vec![rule(60)], Vec::new());
        assert!(
            engine
                .evaluate(at(0), &stack(Health::Serving, Health::Serving))
                .is_empty()
        );
        // The database goes down; its dependents follow a little later.
        assert!(
            engine
                .evaluate(at(1), &stack(Health::Down, Health::Serving))
                .is_empty()
        );
        assert!(
            engine
                .evaluate(at(5), &stack(Health::Down, Health::Down))
                .is_empty()
        );
        // Not before `for` has elapsed.
        assert!(
            engine
                .evaluate(at(60), &stack(Health::Down, Health::Down))
                .is_empty()
        );
        let changes = engine.evaluate(at(61), &stack(Health::Down, Health::Down));
        let pages = opened(&changes);
        assert_eq!(pages.len(), 1, "{changes:?}");
        assert_eq!(pages[0].root_cause, "db");
        assert_eq!(pages[0].dedup_key, "wharf/shop/oncall/db");
        assert_eq!(
            pages[0].affected,
            ["api", "worker", "billing", "web", "admin"]
        );
        assert!(
            pages[0]
                .summary
                .starts_with("db is down: ready probe failing")
        );
        // Dependents' own `for` elapses: still nothing more.
        for t in 62..200 {
            assert!(
                engine
                    .evaluate(at(t), &stack(Health::Down, Health::Down))
                    .is_empty()
            );
        }
        // The database recovers first, the dependents a moment later: one resolve.
        let changes = engine.evaluate(at(200), &stack(Health::Serving, Health::Down));
        assert_eq!(resolved(&changes).len(), 1, "{changes:?}");
        assert_eq!(resolved(&changes)[0].dedup_key, "wharf/shop/oncall/db");
        assert!(
            opened(&changes).is_empty(),
            "dependents are not paged the moment the root recovers"
        );
        assert!(
            engine
                .evaluate(at(203), &stack(Health::Serving, Health::Serving))
                .is_empty()
        );
        assert_eq!(engine.open_pages().count(), 0);
    }

    #[test]
    fn failing_backups_page_the_datastore_alone_and_never_hide_a_dependent_outage() {
        let mut engine = Engine::new("shop", vec![rule(10)], Vec::new());
        let with_backups = |problem: Option<&str>, dependents: Health| {
            let mut views = stack(Health::Serving, dependents);
            let mut backups = view("db:backups", Health::Serving, &[]);
            backups.backup_problem = problem.map(str::to_owned);
            views.push(backups);
            views
        };
        let failing = Some("the last backup failed at 03:00: pg_dump: connection refused");
        engine.evaluate(at(0), &with_backups(failing, Health::Serving));
        let changes = engine.evaluate(at(10), &with_backups(failing, Health::Serving));
        let pages = opened(&changes);
        assert_eq!(pages.len(), 1);
        assert_eq!(pages[0].root_cause, "db:backups");
        assert!(
            pages[0]
                .summary
                .starts_with("db backups: the last backup failed"),
            "{}",
            pages[0].summary
        );
        assert!(
            pages[0].affected.is_empty(),
            "a failing backup harms no dependent"
        );
        // An api outage meanwhile is its own root: the datastore's backup trouble is no outage.
        let mut views = with_backups(failing, Health::Serving);
        views[1].health = Health::Down;
        engine.evaluate(at(11), &views);
        let changes = engine.evaluate(at(21), &views);
        assert!(opened(&changes).iter().any(|p| p.root_cause == "api"));
        // A backup that succeeds again resolves the datastore's page.
        let changes = engine.evaluate(at(22), &with_backups(None, Health::Serving));
        assert!(
            resolved(&changes)
                .iter()
                .any(|p| p.root_cause == "db:backups")
        );
        // The datastore down while its backups fail: the outage pages on its own.
        let mut views = with_backups(failing, Health::Down);
        views[0].health = Health::Down;
        engine.evaluate(at(30), &views);
        let changes = engine.evaluate(at(40), &views);
        let roots: Vec<&str> = opened(&changes)
            .iter()
            .map(|p| p.root_cause.as_str())
            .collect();
        assert!(roots.contains(&"db"), "{roots:?}");
    }

    #[test]
    fn a_dependent_still_down_long_after_its_root_recovered_gets_its_own_page() {
        let mut engine = Engine::new("shop", vec![rule(10)], Vec::new());
        engine.evaluate(at(0), &stack(Health::Down, Health::Down));
        assert_eq!(
            opened(&engine.evaluate(at(10), &stack(Health::Down, Health::Down))).len(),
            1
        );
        let changes = engine.evaluate(at(20), &stack(Health::Serving, Health::Down));
        assert_eq!(resolved(&changes).len(), 1);
        // api, worker and billing are their own roots now (web and admin are api's children):
        // given `for` from the database's recovery to recover with it, then paged.
        assert!(
            engine
                .evaluate(at(29), &stack(Health::Serving, Health::Down))
                .is_empty()
        );
        let changes = engine.evaluate(at(30), &stack(Health::Serving, Health::Down));
        let mut roots: Vec<&str> = opened(&changes)
            .iter()
            .map(|p| p.root_cause.as_str())
            .collect();
        roots.sort_unstable();
        assert_eq!(roots, ["api", "billing", "worker"]);
    }

    #[test]
    fn a_page_open_before_a_restart_resolves_after_it_and_settling_resolves_nothing() {
        let mut engine = Engine::new("shop", vec![rule(1)], Vec::new());
        engine.evaluate(at(0), &stack(Health::Down, Health::Serving));
        let page =
            opened(&engine.evaluate(at(2), &stack(Health::Down, Health::Serving)))[0].clone();
        // A new control plane, with the page as persisted.
        let mut engine = Engine::new("shop", vec![rule(1)], vec![page.clone()]);
        assert!(
            engine
                .evaluate(at(3), &stack(Health::Settling, Health::Serving))
                .is_empty(),
            "a service being adopted is neither down nor serving"
        );
        let changes = engine.evaluate(at(4), &stack(Health::Serving, Health::Serving));
        assert_eq!(resolved(&changes)[0].dedup_key, page.dedup_key);
        assert_eq!(resolved(&changes)[0].resolved_at, Some(at(4)));
    }

    #[test]
    fn maintenance_holds_the_page_and_a_stopped_service_resolves_its_own() {
        let mut engine = Engine::new("shop", vec![rule(2)], Vec::new());
        let mut services = stack(Health::Serving, Health::Serving);
        services[1].health = Health::Serving;
        services[1].error_rate = Some(0.2);
        services[1].maintenance = true;
        engine.evaluate(at(0), &services);
        assert!(
            engine.evaluate(at(5), &services).is_empty(),
            "held during the rollout"
        );
        services[1].maintenance = false;
        // Counted from the rollout's end (last seen at 5): `for` (2 s) after it.
        assert!(engine.evaluate(at(6), &services).is_empty());
        let changes = engine.evaluate(at(7), &services);
        assert_eq!(opened(&changes)[0].root_cause, "api");
        assert!(opened(&changes)[0].summary.contains("20.0% errors"));
        services[1].health = Health::Stopped;
        assert_eq!(resolved(&engine.evaluate(at(8), &services)).len(), 1);
    }

    #[test]
    fn a_rule_watching_only_dependents_pages_once_for_them_keyed_by_the_root() {
        let mut scoped = rule(1);
        scoped.services = vec!["web".to_owned(), "admin".to_owned()];
        let mut engine = Engine::new("shop", vec![scoped], Vec::new());
        engine.evaluate(at(0), &stack(Health::Down, Health::Down));
        let changes = engine.evaluate(at(2), &stack(Health::Down, Health::Down));
        let pages = opened(&changes);
        assert_eq!(pages.len(), 1);
        assert_eq!(pages[0].root_cause, "db");
        // A rule that watches nothing affected opens nothing.
        let mut elsewhere = rule(1);
        elsewhere.services = vec!["nothing-here".to_owned()];
        let mut engine = Engine::new("shop", vec![elsewhere], Vec::new());
        engine.evaluate(at(0), &stack(Health::Down, Health::Serving));
        assert!(
            engine
                .evaluate(at(2), &stack(Health::Down, Health::Serving))
                .is_empty()
        );
    }

    #[test]
    fn one_root_cause_under_a_hundred_dependents_in_three_tiers_pages_once() {
        let mut services = vec![view("db", Health::Down, &[])];
        for i in 0..10 {
            services.push(view(&format!("mid{i}"), Health::Down, &["db"]));
            for j in 0..9 {
                let name = format!("leaf{i}-{j}");
                services.push(view(&name, Health::Down, &[&format!("mid{i}")]));
            }
        }
        assert_eq!(services.len(), 101);
        let mut engine = Engine::new("shop", vec![rule(1)], Vec::new());
        let mut pages = Vec::new();
        for t in 0..30 {
            pages.extend(
                opened(&engine.evaluate(at(t), &services))
                    .into_iter()
                    .cloned(),
            );
        }
        assert_eq!(pages.len(), 1);
        assert_eq!(pages[0].root_cause, "db");
        assert_eq!(pages[0].affected.len(), 100);
    }

    #[test]
    fn a_flapping_service_still_pages_and_dependents_of_a_stopped_one_do_not() {
        let mut engine = Engine::new("shop", vec![rule(10)], Vec::new());
        // Down, restarted (starting), down again...: the trouble runs on.
        for t in 0..12 {
            let health = if t % 3 == 2 {
                Health::Settling
            } else {
                Health::Down
            };
            let changes = engine.evaluate(at(t), &[view("db", health, &[])]);
            if t < 10 {
                assert!(changes.is_empty(), "{t}: {changes:?}");
            } else if health == Health::Down {
                assert_eq!(opened(&changes).len(), 1, "{t}");
                break;
            }
        }
        // An operator stops db: its blocked dependents are no outage.
        let mut engine = Engine::new("shop", vec![rule(1)], Vec::new());
        for t in 0..5 {
            let changes = engine.evaluate(at(t), &stack(Health::Stopped, Health::Down));
            assert!(changes.is_empty(), "{t}: {changes:?}");
        }
    }

    #[test]
    fn a_p95_above_the_threshold_pages_and_one_below_it_resolves() {
        let mut slow = rule(1);
        slow.latency_p95 = Some(Duration::from_millis(500));
        let mut engine = Engine::new("shop", vec![slow], Vec::new());
        let mut services = stack(Health::Serving, Health::Serving);
        services[1].latency_p95 = Some(Duration::from_millis(800));
        engine.evaluate(at(0), &services);
        let changes = engine.evaluate(at(1), &services);
        assert_eq!(opened(&changes)[0].root_cause, "api");
        assert!(
            opened(&changes)[0]
                .summary
                .contains("p95 latency is 800 ms")
        );
        services[1].latency_p95 = Some(Duration::from_millis(300));
        assert_eq!(resolved(&engine.evaluate(at(2), &services)).len(), 1);
    }

    #[test]
    fn p99_degraded_and_an_overdue_secret_page_on_their_own_without_hiding_dependents() {
        let mut strict = rule(1);
        strict.latency_p99 = Some(Duration::from_millis(900));
        strict.degraded = true;
        let mut engine = Engine::new("shop", vec![strict], Vec::new());
        let mut services = stack(Health::Serving, Health::Serving);
        services[0].degraded = true;
        services[1].latency_p99 = Some(Duration::from_millis(1500));
        let mut secret = view("secret:DB_PASSWORD", Health::Serving, &[]);
        secret.secret_problem = Some("rotated 120d ago, max_age 90d".to_owned());
        services.push(secret);
        engine.evaluate(at(0), &services);
        let changes = engine.evaluate(at(1), &services);
        let mut summaries: Vec<&str> = opened(&changes)
            .iter()
            .map(|p| p.summary.as_str())
            .collect();
        summaries.sort_unstable();
        assert_eq!(
            summaries,
            [
                "api p99 latency is 1500 ms (threshold 900 ms)",
                "db is degraded: fewer instances ready than wanted",
                "secret DB_PASSWORD is overdue for rotation: rotated 120d ago, max_age 90d",
            ],
            "a degraded db is no outage: api's own trouble still pages"
        );
        // A rule that does not ask for `degraded` ignores it.
        let mut engine = Engine::new("shop", vec![rule(1)], Vec::new());
        let mut services = stack(Health::Serving, Health::Serving);
        services[0].degraded = true;
        engine.evaluate(at(0), &services);
        assert!(engine.evaluate(at(2), &services).is_empty());
    }

    #[test]
    fn a_page_is_serialized_and_read_back_unchanged() {
        let mut engine = Engine::new("shop", vec![rule(0)], Vec::new());
        let page =
            opened(&engine.evaluate(at(0), &stack(Health::Down, Health::Serving)))[0].clone();
        let text = serde_json::to_string(&page).unwrap();
        assert_eq!(serde_json::from_str::<Page>(&text).unwrap(), page);
    }
}
