//! Alerting: the manifest's `alerts:` run. Each pass, the services' health (from the status
//! report) and their error rate and p95 latency through the proxy over the last minute go to
//! the pure [`wharf_alerts::Engine`]; the pages it opens and resolves are written — the page
//! row, the notice in the outbox and its `alert.trigger` / `alert.resolve` entry, in one
//! transaction — and the notices go to each receiver's courier, which delivers them in order,
//! retrying, and answers [`Event::Notice`]. Pages and undelivered notices are persisted, so a
//! restarted control plane still sends every resolve it owes.
//!
//! Silences (`wharf silence`, rows written by `wharf-ops`) hold back the trigger of a page
//! they match: the page is recorded (`alert.silenced`) and sent only if it is still open when
//! the silence ends; a resolve is sent for every page whose trigger was sent, silenced or
//! not. A silence that runs out is marked expired here, and its end announced to every
//! receiver. A rule with `incident:` declares an incident with each page it sends.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::json;
use wharf_alerts::{Engine, Health, Page, PageChange, Rule, ServiceView};
use wharf_api::ServiceState as State;
use wharf_api::Silence;
use wharf_ledger::KnownAction;
use wharf_manifest::model::Alert;

use super::Core;
use super::inject::Injector;
use crate::events::Event;
use crate::proxy_link::{Snapshot, window_quantile};
use crate::report::ServiceStatus;
use crate::state::ServiceState;

/// How far back the error rate and latency look.
const WINDOW: Duration = Duration::from_secs(60);
/// A window whose latest proxy report is older than this says nothing any more.
const STALE_AFTER: Duration = Duration::from_secs(5);
/// Fewer requests than this in the window say nothing about an error rate.
const MIN_REQUESTS: u64 = 20;
/// The longest a rolling restart counts as maintenance.
const ROLLING_MAINTENANCE: Duration = Duration::from_secs(300);

/// One service's counters through the proxy, summed over its versions, since the proxy
/// started.
#[derive(Debug, Clone, Default)]
struct Totals {
    requests: u64,
    errors: u64,
    buckets: Vec<(u64, u64)>,
}

/// What was handed to a receiver and is not finished: a replaced courier's load is handed to
/// its successor from here (the store's reading connection may not show the latest rows yet).
#[derive(Debug, Clone)]
enum Pending {
    /// A page's notice, also in the outbox.
    Notice(wharf_notify::Notice),
    /// A change event: not in the outbox, not owed after a restart.
    Change(wharf_notify::Change),
}

/// A receiver's courier and what it was built from, to tell whether it is still current.
struct Delivery {
    receiver: wharf_notify::Receiver,
    courier: wharf_notify::Courier,
}

/// The alerting subsystem's state.
pub(super) struct Alerting {
    engine: Engine,
    /// The manifest's alerts: each one's receiver.
    alerts: Vec<Alert>,
    /// The last notice id given (ids order the outbox).
    last_notice: u64,
    /// Per service, its totals at each proxy report within the window, oldest first.
    windows: HashMap<String, VecDeque<(Instant, Totals)>>,
    /// One delivery queue per receiver (alert), by name. A removed alert's courier stays until
    /// its pages are resolved and their notices delivered.
    couriers: HashMap<String, Delivery>,
    /// Handed out, outcome not back yet: id → (receiver, what).
    unfinished: BTreeMap<u64, (String, Pending)>,
    /// Services in maintenance at the last pass: when one leaves it, its error and latency
    /// window starts again (a failed canary's errors are not the stable version's).
    in_maintenance: std::collections::HashSet<String>,
    /// Where couriers report (one channel for all, forwarded to the loop).
    outcomes: Option<tokio::sync::mpsc::UnboundedSender<wharf_notify::Outcome>>,
    /// The silences not yet ended, as stored.
    silences: Vec<Silence>,
    /// Runbooks alerts run on their own, due to start (the loop starts them: runbooks are
    /// not alerting's).
    runbooks_due: Vec<DueRunbook>,
    /// Services in a rolling restart, since when: maintenance for at most
    /// [`ROLLING_MAINTENANCE`] (a replacement that never becomes ready must not hold its
    /// pages for good).
    rolling_since: HashMap<String, Instant>,
    /// Silences whose end was announced: a re-read that still shows one (its expiry not yet
    /// committed) announces it no second time.
    announced: std::collections::HashSet<String>,
    /// Secrets past their `max_age` (with `overdue: fail`), as roots of their own
    /// (`secret:NAME`), and when they were last looked at (a minute's staleness is nothing
    /// next to a rotation period of days).
    overdue_secrets: Vec<ServiceView>,
    secrets_checked: Option<Instant>,
}

impl Alerting {
    /// Alerting for the plan's alerts, with the pages a previous control plane left open.
    pub(super) fn new(core: &Core, alerts: Vec<Alert>) -> Alerting {
        let open = core
            .journal
            .store()
            .open_alert_pages()
            .unwrap_or_else(|error| {
                tracing::error!(%error, "cannot read the open alert pages");
                Vec::new()
            })
            .into_iter()
            .filter_map(|text| serde_json::from_str::<Page>(&text).ok())
            .collect();
        // Ids never repeat across restarts (change events are not in the outbox, and an
        // unreadable outbox must not restart them at 1): at least the clock's milliseconds.
        let now_ms = u64::try_from(jiff::Timestamp::now().as_millisecond()).unwrap_or(0);
        let last_notice = core
            .journal
            .store()
            .last_alert_notice_id()
            .unwrap_or(0)
            .max(now_ms);
        Alerting {
            engine: Engine::new(&core.stack, rules(&alerts), open),
            alerts,
            last_notice,
            windows: HashMap::new(),
            couriers: HashMap::new(),
            unfinished: BTreeMap::new(),
            in_maintenance: Default::default(),
            outcomes: None,
            silences: read_silences(core).unwrap_or_default(),
            rolling_since: HashMap::new(),
            runbooks_due: Vec::new(),
            announced: Default::default(),
            overdue_secrets: Vec::new(),
            secrets_checked: None,
        }
    }

    /// Re-reads the stored secrets' ages at most once a minute: each declared secret with a
    /// `max_age` whose current version is older (and whose policy is `overdue: fail`) is a
    /// root in trouble.
    fn check_secrets(&mut self, core: &Core, injector: &Injector) {
        if self
            .secrets_checked
            .is_some_and(|at| at.elapsed() < Duration::from_secs(60))
        {
            return;
        }
        self.secrets_checked = Some(Instant::now());
        let policies: Vec<_> = injector
            .policies
            .iter()
            .filter(|(_, p)| {
                p.max_age.is_some() && p.overdue != wharf_manifest::model::Overdue::Warn
            })
            .collect();
        if policies.is_empty() {
            self.overdue_secrets.clear();
            return;
        }
        let stored = match wharf_secrets::list(core.journal.store()) {
            Ok(stored) => stored,
            Err(error) => {
                tracing::error!(%error, "cannot read the secrets' ages");
                return;
            }
        };
        let now = Timestamp::now();
        self.overdue_secrets = policies
            .into_iter()
            .filter_map(|(name, policy)| {
                let created = stored
                    .iter()
                    .find(|v| &v.name == name)?
                    .created_at
                    .parse::<Timestamp>()
                    .ok()?;
                let max_age = policy.max_age.map(|d| d.as_std());
                let wharf_secrets::Rotation::Overdue { by_days } =
                    wharf_secrets::rotation(created, max_age, now)
                else {
                    return None;
                };
                Some(ServiceView {
                    name: format!("{}{name}", wharf_alerts::SECRET_PREFIX),
                    health: Health::Serving,
                    reason: None,
                    critical_deps: Vec::new(),
                    maintenance: false,
                    error_rate: None,
                    latency_p95: None,
                    latency_p99: None,
                    degraded: false,
                    backup_problem: None,
                    secret_problem: Some(format!(
                        "its current version is {by_days} days past max_age {}",
                        policy.max_age.map(|d| d.to_string()).unwrap_or_default()
                    )),
                })
            })
            .collect();
    }

    /// The silences changed in the store (an operator added or ended one): read them again;
    /// one that is gone is announced as ended, and pages it held are sent at the next pass.
    pub(super) fn reload_silences(&mut self, core: &mut Core) {
        let now = Timestamp::now();
        // Unreadable: keep what is known (ending them all would send every held page).
        let Some(fresh) = read_silences(core) else {
            return;
        };
        let ended: Vec<Silence> = self
            .silences
            .iter()
            .filter(|old| !fresh.iter().any(|s| s.id == old.id))
            .cloned()
            .collect();
        self.silences = fresh;
        for silence in ended {
            let by = silence.expired_by.clone();
            self.announce_end(core, &silence, by.as_deref());
        }
        self.release_held(core, now);
    }

    /// The silences in force now, for the status report.
    pub(super) fn active_silences(&self) -> Vec<Silence> {
        let now = Timestamp::now();
        self.silences
            .iter()
            .filter(|s| in_force(s, now))
            .cloned()
            .collect()
    }

    /// The silence holding a page back, if one matches it now.
    fn silence_for(&self, page: &Page, now: Timestamp) -> Option<&Silence> {
        self.silences.iter().find(|silence| {
            in_force(silence, now)
                && silence
                    .matchers
                    .iter()
                    .all(|m| m.matches(|label| page.label(label)))
        })
    }

    /// Silences whose end has passed: marked expired in the store (each with its entry) and
    /// announced; then the pages they held that are still open are sent.
    fn expire_silences(&mut self, core: &mut Core, now: Timestamp) {
        let ran_out: Vec<Silence> = self
            .silences
            .iter()
            .filter(|s| ends_at(s).is_none_or(|end| end <= now))
            .cloned()
            .collect();
        if ran_out.is_empty() {
            return;
        }
        self.silences.retain(|s| !ran_out.contains(s));
        let actor = wharf_ops::Actor(core.journal.actor().to_owned());
        core.journal.writer().submit(move |store| {
            if let Err(error) = wharf_ops::silences::expire_due(store, &actor, now) {
                tracing::error!(%error, "cannot record the end of a silence");
            }
        });
        for silence in &ran_out {
            self.announce_end(core, silence, None);
        }
        self.release_held(core, now);
    }

    /// Tells every receiver a silence ended (so none comes back unnoticed).
    fn announce_end(&mut self, core: &Core, silence: &Silence, by: Option<&str>) {
        if !self.announced.insert(silence.id.clone()) {
            return;
        }
        let matchers: Vec<String> = silence.matchers.iter().map(ToString::to_string).collect();
        let how = match by {
            Some(by) => format!("ended by {by}"),
            None => "ran out".to_owned(),
        };
        tracing::info!(silence = silence.id, how, "silence ended");
        let summary = format!(
            "silence {} ({}) {how}: pages matching it are sent again — it was for: {} (owner {})",
            silence.id,
            matchers.join(", "),
            silence.reason,
            silence.owner
        );
        let details = BTreeMap::from([
            ("silence".to_owned(), silence.id.clone()),
            ("matchers".to_owned(), matchers.join(",")),
            ("owner".to_owned(), silence.owner.clone()),
        ]);
        self.announce(core, None, summary, details);
    }

    /// Sends the pages a silence held back that no silence holds any more.
    fn release_held(&mut self, core: &mut Core, now: Timestamp) {
        let held: Vec<Page> = self
            .engine
            .open_pages()
            .filter(|page| !page.notified)
            .cloned()
            .collect();
        for mut page in held {
            if self.silence_for(&page, now).is_none() {
                self.engine.set_notified(&page.dedup_key, true);
                page.notified = true;
                self.send(core, PageChange::Opened(page));
            }
        }
    }

    /// Posts a change event (a deploy began) to every receiver: PagerDuty's Change Events,
    /// a Slack message, a webhook with `"kind": "change"`.
    pub(super) fn change(
        &mut self,
        core: &Core,
        service: &str,
        summary: String,
        details: BTreeMap<String, String>,
    ) {
        self.announce(core, Some(service), summary, details);
    }

    /// A change event to every receiver, about a service or the stack.
    fn announce(
        &mut self,
        core: &Core,
        service: Option<&str>,
        summary: String,
        details: BTreeMap<String, String>,
    ) {
        let change = wharf_notify::Change {
            summary,
            stack: core.stack.clone(),
            service: service.map(str::to_owned),
            at: jiff::Timestamp::now(),
            details,
        };
        let receivers: Vec<String> = self.alerts.iter().map(|a| a.name.clone()).collect();
        for receiver in receivers {
            self.last_notice += 1;
            let id = self.last_notice;
            self.deliver(id, &receiver, Pending::Change(change.clone()));
        }
    }

    /// Whether notices are still on their way (a stopping control plane waits for them a
    /// little: the resolves a `down` causes should not wait for the next `up`).
    pub(super) fn delivering(&self) -> bool {
        self.unfinished
            .values()
            .any(|(receiver, _)| self.couriers.contains_key(receiver))
    }

    /// Starts delivery: the notices a previous control plane left undelivered, then a
    /// courier per receiver. Their outcomes come back as [`Event::Notice`].
    pub(super) fn start_delivery(&mut self, core: &mut Core, injector: &Injector) {
        let (outcomes, mut reports) = tokio::sync::mpsc::unbounded_channel();
        let events = core.events.clone();
        tokio::spawn(async move {
            while let Some(outcome) = reports.recv().await {
                if events.send(Event::Notice(Box::new(outcome))).await.is_err() {
                    return;
                }
            }
        });
        self.outcomes = Some(outcomes);
        let pending = core
            .journal
            .store()
            .pending_alert_notices()
            .unwrap_or_else(|error| {
                tracing::error!(%error, "cannot read the alert outbox");
                Vec::new()
            });
        for row in pending {
            let Ok(notice) = serde_json::from_str::<wharf_notify::Notice>(&row.notice) else {
                tracing::error!(id = row.id, "an unreadable notice in the outbox");
                continue;
            };
            self.unfinished
                .insert(row.id, (row.receiver, Pending::Notice(notice)));
        }
        self.sync_receivers(core, injector);
    }

    /// Brings the couriers in line with the alerts and the secrets as they are now: a
    /// receiver whose URL or key changed (a manifest change, a rotated secret) gets a new
    /// courier, which is handed what the old one had not finished; an unchanged one keeps
    /// its courier; a removed alert keeps its courier until its pages are resolved and
    /// delivered; notices for a receiver that no longer exists at all are given up.
    pub(super) fn sync_receivers(&mut self, core: &mut Core, injector: &Injector) {
        // A secret change comes through here (a reload): look at the secrets' ages again.
        self.secrets_checked = None;
        let Some(outcomes) = self.outcomes.clone() else {
            return;
        };
        let client = wharf_notify::Client::new();
        for alert in &self.alerts {
            let receiver = match receiver(core, injector, alert) {
                Ok(receiver) => receiver,
                Err(reason) => {
                    // Its notices stay in the outbox until it can be resolved.
                    tracing::error!(
                        receiver = alert.name,
                        reason,
                        "cannot deliver to this receiver"
                    );
                    continue;
                }
            };
            if self
                .couriers
                .get(&alert.name)
                .is_some_and(|d| d.receiver == receiver)
            {
                continue;
            }
            let courier =
                wharf_notify::Courier::spawn(client.clone(), receiver.clone(), outcomes.clone());
            for (id, (to, pending)) in &self.unfinished {
                if *to == alert.name {
                    push(&courier, receiver.format, *id, pending);
                }
            }
            self.couriers
                .insert(alert.name.clone(), Delivery { receiver, courier });
        }
        self.retire_couriers(core);
    }

    /// Drops the couriers of removed alerts once nothing is owed through them, and gives up
    /// what is owed to a receiver that exists nowhere any more.
    fn retire_couriers(&mut self, core: &mut Core) {
        let declared = |name: &str| self.alerts.iter().any(|a| a.name == name);
        let open: std::collections::HashSet<String> =
            self.engine.open_pages().map(|p| p.rule.clone()).collect();
        let owed: std::collections::HashSet<String> =
            self.unfinished.values().map(|(to, _)| to.clone()).collect();
        self.couriers
            .retain(|name, _| declared(name) || open.contains(name) || owed.contains(name));
        let orphaned: Vec<u64> = self
            .unfinished
            .iter()
            .filter(|(_, (to, _))| !declared(to) && !self.couriers.contains_key(to))
            .map(|(id, _)| *id)
            .collect();
        for id in orphaned {
            if let Some((to, pending)) = self.unfinished.remove(&id) {
                let reason = "its receiver is no longer in the manifest";
                let change = matches!(pending, Pending::Change(_));
                if !change {
                    core.journal.finish_notice(id, 0, Some(reason));
                }
                core.journal.record(
                    KnownAction::AlertUndelivered,
                    &to,
                    json!({"notice": id, "attempts": 0, "reason": reason, "change": change}),
                );
            }
        }
    }

    /// Hands a notice or change to its receiver's courier (without a key: the courier adds
    /// it), keeping it until its outcome comes back.
    fn deliver(&mut self, id: u64, receiver: &str, pending: Pending) {
        if let Some(delivery) = self.couriers.get(receiver) {
            push(&delivery.courier, delivery.receiver.format, id, &pending);
        }
        self.unfinished.insert(id, (receiver.to_owned(), pending));
    }

    /// A courier's report: a notice delivered or given up on is recorded and its outbox row
    /// closed; a retry is only logged.
    pub(super) fn on_outcome(&mut self, core: &mut Core, outcome: wharf_notify::Outcome) {
        let finished = if outcome.is_final() {
            self.unfinished.remove(&outcome.id())
        } else {
            None
        };
        let change = matches!(finished, Some((_, Pending::Change(_))));
        match outcome {
            wharf_notify::Outcome::Delivered {
                receiver,
                id,
                attempts,
            } => {
                if !change {
                    core.journal.finish_notice(id, attempts, None);
                }
                core.journal.record(
                    KnownAction::AlertDelivered,
                    &receiver,
                    json!({"notice": id, "attempts": attempts, "change": change}),
                );
            }
            wharf_notify::Outcome::GaveUp {
                receiver,
                id,
                attempts,
                reason,
            } => {
                let reason = reason.to_string();
                tracing::error!(receiver, id, attempts, reason, "a notice was given up on");
                if !change {
                    core.journal.finish_notice(id, attempts, Some(&reason));
                }
                core.journal.record(
                    KnownAction::AlertUndelivered,
                    &receiver,
                    json!({"notice": id, "attempts": attempts, "reason": reason, "change": change}),
                );
            }
            wharf_notify::Outcome::Retrying {
                receiver,
                id,
                attempts,
                error,
                next_in,
            } => {
                tracing::warn!(receiver, id, attempts, %error, ?next_in, "a notice will be retried");
            }
        }
        self.retire_couriers(core);
    }

    /// A reloaded manifest's alerts; the couriers follow (see [`Self::sync_receivers`]).
    pub(super) fn set_alerts(&mut self, core: &mut Core, injector: &Injector, alerts: Vec<Alert>) {
        self.engine.set_rules(rules(&alerts));
        self.alerts = alerts;
        self.sync_receivers(core, injector);
    }

    /// The pages open now, for the status report.
    pub(super) fn open_pages(&self) -> Vec<wharf_api::OpenPage> {
        self.engine
            .open_pages()
            .map(|page| wharf_api::OpenPage {
                alert: page.rule.clone(),
                root_cause: page.root_cause.clone(),
                summary: page.summary.clone(),
                affected: page.affected.clone(),
                since: page.started_at.to_string(),
                silenced_by: (!page.notified)
                    .then(|| {
                        self.silence_for(page, Timestamp::now())
                            .map(|s| s.id.clone())
                    })
                    .flatten(),
            })
            .collect()
    }

    pub(super) fn alerts(&self) -> &[Alert] {
        &self.alerts
    }

    /// Folds in a proxy report: each service's totals, kept for the window.
    pub(super) fn on_stats(&mut self, snapshot: &Snapshot) {
        let now = Instant::now();
        for (service, counters) in &snapshot.services {
            let mut totals = Totals::default();
            let mut buckets: BTreeMap<u64, u64> = BTreeMap::new();
            for version in counters.versions.values() {
                totals.requests += version.responses.total();
                totals.errors += version.responses.c5xx;
                for (bound, count) in &version.latency_buckets {
                    *buckets.entry(*bound).or_default() += count;
                }
            }
            totals.buckets = buckets.into_iter().collect();
            let window = self.windows.entry(service.clone()).or_default();
            // A restarted proxy starts its counters again: the window starts again too.
            if window
                .back()
                .is_some_and(|(_, last)| last.requests > totals.requests)
            {
                window.clear();
            }
            window.push_back((now, totals));
            while window
                .front()
                .is_some_and(|(at, _)| now.duration_since(*at) > WINDOW)
            {
                window.pop_front();
            }
        }
    }

    /// The error rate, p95 and p99 of a service over the window, when it saw enough traffic.
    fn window(&self, service: &str) -> (Option<f64>, Option<Duration>, Option<Duration>) {
        let Some(window) = self.windows.get(service) else {
            return (None, None, None);
        };
        let (Some((_, oldest)), Some((at, newest))) = (window.front(), window.back()) else {
            return (None, None, None);
        };
        // No report for a while (the proxy is gone, the service left it): nothing to judge.
        if at.elapsed() > STALE_AFTER {
            return (None, None, None);
        }
        let requests = newest.requests.saturating_sub(oldest.requests);
        if requests < MIN_REQUESTS {
            return (None, None, None);
        }
        let errors = newest.errors.saturating_sub(oldest.errors);
        let quantile = |q: f64| {
            window_quantile(&newest.buckets, &oldest.buckets, q)
                .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        };
        (
            Some(errors as f64 / requests as f64),
            quantile(0.95),
            quantile(0.99),
        )
    }

    /// One pass: the services as they stand go to the engine; what it opens and resolves is
    /// recorded and queued for delivery.
    pub(super) fn evaluate(
        &mut self,
        core: &mut Core,
        injector: &Injector,
        services: &[ServiceState],
        statuses: &[ServiceStatus],
    ) {
        let now = Timestamp::now();
        self.expire_silences(core, now);
        if self.alerts.is_empty() && self.engine.open_pages().next().is_none() {
            return;
        }
        // A rollout or a rolling restart (a deploy, a config or secret change, `wharf
        // restart`) is scoped maintenance: probed as ever, paging for it held until it ends.
        for service in services {
            if service.instances.values().any(|i| i.outdated) {
                self.rolling_since
                    .entry(service.plan.name.clone())
                    .or_insert_with(Instant::now);
            } else {
                self.rolling_since.remove(&service.plan.name);
            }
        }
        let rolling_since = &self.rolling_since;
        let in_change = |service: &ServiceState| {
            service.active_rollout().is_some()
                || rolling_since
                    .get(&service.plan.name)
                    .is_some_and(|since| since.elapsed() < ROLLING_MAINTENANCE)
        };
        for service in services {
            let name = &service.plan.name;
            if in_change(service) {
                self.in_maintenance.insert(name.clone());
            } else if self.in_maintenance.remove(name) {
                self.windows.remove(name);
            }
        }
        let views: Vec<ServiceView> = statuses
            .iter()
            .map(|status| {
                let (error_rate, latency_p95, latency_p99) = self.window(&status.name);
                ServiceView {
                    name: status.name.clone(),
                    health: health(status.state),
                    reason: status.reason.clone(),
                    critical_deps: status
                        .dependencies
                        .iter()
                        .filter(|d| d.critical)
                        .map(|d| d.name.clone())
                        .collect(),
                    maintenance: services
                        .iter()
                        .find(|s| s.plan.name == status.name)
                        .is_some_and(in_change),
                    error_rate,
                    latency_p95,
                    latency_p99,
                    degraded: status.state == State::Degraded,
                    backup_problem: None,
                    secret_problem: None,
                }
            })
            .collect();
        // A datastore's backups are a root of their own (`NAME:backups`): a failing backup
        // shares no page with an outage of the datastore, and no dependent hangs on it.
        let backups: Vec<ServiceView> = statuses
            .iter()
            .filter_map(|status| {
                let backups = status.backups.as_ref()?;
                Some(ServiceView {
                    name: format!("{}{}", status.name, wharf_alerts::BACKUPS_SUFFIX),
                    health: if status.state == wharf_api::ServiceState::Stopped {
                        Health::Stopped
                    } else {
                        Health::Serving
                    },
                    reason: None,
                    critical_deps: Vec::new(),
                    maintenance: false,
                    error_rate: None,
                    latency_p95: None,
                    latency_p99: None,
                    degraded: false,
                    secret_problem: None,
                    backup_problem: backups.health.is_problem().then(|| {
                        backups
                            .reason
                            .clone()
                            .unwrap_or_else(|| "failing".to_owned())
                    }),
                })
            })
            .collect();
        self.check_secrets(core, injector);
        let views: Vec<ServiceView> = views
            .into_iter()
            .chain(backups)
            .chain(self.overdue_secrets.iter().cloned())
            .collect();
        for change in self.engine.evaluate(now, &views) {
            self.record(core, change, now);
        }
        // However its silence ended (ran out here, ended through the API, or while no control
        // plane ran), a held page no silence in force holds any more is sent now.
        self.release_held(core, now);
    }

    /// Records a page change: a page a silence matches is held (its row and an
    /// `alert.silenced` entry, no notice), the resolve of a page never sent is recorded
    /// without a notice, anything else is sent. A rule with `incident:` declares an incident
    /// with each page it sends and notes its resolve on it.
    fn record(&mut self, core: &mut Core, change: PageChange, now: Timestamp) {
        match &change {
            PageChange::Opened(page) => {
                if let Some(silence) = self.silence_for(page, now).map(|s| s.id.clone()) {
                    self.engine.set_notified(&page.dedup_key, false);
                    let mut held = page.clone();
                    held.notified = false;
                    self.hold(core, &held, &silence);
                    return;
                }
            }
            PageChange::Resolved(page) if !page.notified => {
                core.journal.resolve_alert_page(
                    &page.dedup_key,
                    &serde_json::to_string(page).unwrap_or_default(),
                    &page.resolved_at.unwrap_or(now).to_string(),
                );
                core.journal.record(
                    KnownAction::AlertResolve,
                    &page.root_cause,
                    json!({
                        "rule": page.rule,
                        "dedup_key": page.dedup_key,
                        "summary": page.summary,
                        "affected": page.affected,
                        "severity": page.severity,
                        "notice": null,
                        "held_by_silence": true,
                    }),
                );
                return;
            }
            PageChange::Resolved(_) => {}
        }
        self.send(core, change);
    }

    /// Someone took an open, sent page on (the incident it opened was acknowledged): its
    /// receiver hears it (PagerDuty's `acknowledge`), with an `alert.acknowledge` entry.
    /// False when no such page is open or its trigger was never sent.
    pub(super) fn acknowledge(&mut self, core: &mut Core, dedup_key: &str, by: &str) -> bool {
        let Some(page) = self
            .engine
            .open_pages()
            .find(|p| p.dedup_key == dedup_key && p.notified)
            .cloned()
        else {
            return false;
        };
        let mut notice = notice(&core.stack, &PageChange::Opened(page.clone()));
        notice.status = wharf_notify::Status::Acknowledged;
        notice.acknowledged_by = Some(by.to_owned());
        self.last_notice += 1;
        let id = self.last_notice;
        core.journal.queue_notice(
            id,
            &page.rule,
            &serde_json::to_string(&notice).unwrap_or_default(),
        );
        core.journal.record(
            KnownAction::AlertAcknowledge,
            &page.root_cause,
            json!({"rule": page.rule, "dedup_key": page.dedup_key, "by": by, "notice": id}),
        );
        self.deliver(id, &page.rule, Pending::Notice(notice));
        true
    }

    /// A page opened under a silence: recorded, not sent.
    fn hold(&mut self, core: &mut Core, page: &Page, silence: &str) {
        core.journal.open_alert_page(
            &page.dedup_key,
            &page.rule,
            &serde_json::to_string(page).unwrap_or_default(),
            &page.started_at.to_string(),
        );
        core.journal.record(
            KnownAction::AlertSilenced,
            &page.root_cause,
            json!({
                "rule": page.rule,
                "dedup_key": page.dedup_key,
                "summary": page.summary,
                "affected": page.affected,
                "severity": page.severity,
                "silence": silence,
            }),
        );
        tracing::info!(
            rule = page.rule,
            root = page.root_cause,
            silence,
            "page held by a silence"
        );
    }

    /// The runbooks alerts asked to run since the last call.
    pub(super) fn take_runbooks_due(&mut self) -> Vec<DueRunbook> {
        std::mem::take(&mut self.runbooks_due)
    }

    /// A page sent under a rule whose runbook is `auto` asks for a run: its parameters, the
    /// root cause in `root_param` when named (a datastore's backups count as the datastore;
    /// a secret is no service and fills nothing).
    fn follow_runbook(&mut self, change: &PageChange) {
        let PageChange::Opened(page) = change else {
            return;
        };
        let Some(runbook) = self
            .alerts
            .iter()
            .find(|a| a.name == page.rule)
            .and_then(|a| a.runbook.clone())
            .filter(|r| r.auto)
        else {
            return;
        };
        let mut params = runbook.params.clone();
        if let Some(param) = &runbook.root_param {
            if page.root_cause.starts_with(wharf_alerts::SECRET_PREFIX) {
                return;
            }
            params.insert(
                param.clone(),
                page.root_cause
                    .trim_end_matches(wharf_alerts::BACKUPS_SUFFIX)
                    .to_owned(),
            );
        }
        self.runbooks_due.push(DueRunbook {
            name: runbook.name,
            params,
            trigger: format!("alert {}", page.dedup_key),
        });
    }

    /// Declares the incident a rule's `incident:` asks for with a page it sent, or notes the
    /// page's resolve on the incident it opened.
    fn follow_incident(&self, core: &Core, change: &PageChange) {
        let Some(level) = self
            .alerts
            .iter()
            .find(|a| a.name == change_page(change).rule)
            .and_then(|a| a.incident)
        else {
            return;
        };
        let actor = wharf_ops::Actor(core.journal.actor().to_owned());
        let now = Timestamp::now();
        match change {
            PageChange::Opened(page) => {
                let request = wharf_api::DeclareIncidentRequest {
                    title: page.summary.clone(),
                    severity: severity(level),
                    commander: None,
                    // A secret's root (`secret:NAME`) is no service; the title names it.
                    services: std::iter::once(
                        page.root_cause
                            .trim_end_matches(wharf_alerts::BACKUPS_SUFFIX)
                            .to_owned(),
                    )
                    .filter(|root| !root.starts_with(wharf_alerts::SECRET_PREFIX))
                    .chain(page.affected.iter().cloned())
                    .collect(),
                    message: Some(format!("opened by the page {}", page.dedup_key)),
                    public: false,
                };
                let from = wharf_ops::incidents::FromPage {
                    dedup_key: page.dedup_key.clone(),
                    started_at: page.started_at,
                };
                core.journal.writer().submit(move |store| {
                    if let Err(error) =
                        wharf_ops::incidents::declare_for_page(store, &actor, &request, from, now)
                    {
                        tracing::error!(%error, "cannot declare the incident an alert rule asks for");
                    }
                });
            }
            PageChange::Resolved(page) => {
                let key = page.dedup_key.clone();
                core.journal.writer().submit(move |store| {
                    if let Err(error) =
                        wharf_ops::incidents::page_resolved(store, &actor, &key, now)
                    {
                        tracing::error!(%error, "cannot note a page's resolve on its incident");
                    }
                });
            }
        }
    }

    /// Writes a page change — its row, its notice in the outbox, its entry — and hands the
    /// notice to the receiver's courier.
    fn send(&mut self, core: &mut Core, change: PageChange) {
        let (page, action) = match &change {
            PageChange::Opened(page) => (page, KnownAction::AlertTrigger),
            PageChange::Resolved(page) => (page, KnownAction::AlertResolve),
        };
        let page_json = serde_json::to_string(page).unwrap_or_default();
        match &change {
            PageChange::Opened(_) => core.journal.open_alert_page(
                &page.dedup_key,
                &page.rule,
                &page_json,
                &page.started_at.to_string(),
            ),
            PageChange::Resolved(_) => core.journal.resolve_alert_page(
                &page.dedup_key,
                &page_json,
                &page
                    .resolved_at
                    .unwrap_or_else(jiff::Timestamp::now)
                    .to_string(),
            ),
        }
        let notice = notice(&core.stack, &change);
        self.last_notice += 1;
        let id = self.last_notice;
        let notice_json = serde_json::to_string(&notice).unwrap_or_default();
        core.journal.queue_notice(id, &page.rule, &notice_json);
        core.journal.record(
            action,
            &page.root_cause,
            json!({
                "rule": page.rule,
                "dedup_key": page.dedup_key,
                "summary": page.summary,
                "affected": page.affected,
                "severity": page.severity,
                "notice": id,
            }),
        );
        match &change {
            PageChange::Opened(_) => {
                tracing::warn!(rule = page.rule, root = page.root_cause, affected = ?page.affected, "page opened")
            }
            PageChange::Resolved(_) => {
                tracing::info!(rule = page.rule, root = page.root_cause, "page resolved")
            }
        }
        self.deliver(id, &page.rule, Pending::Notice(notice));
        // The incident's rows come after the page's, on the same writer thread.
        core.journal.commit();
        self.follow_incident(core, &change);
        self.follow_runbook(&change);
    }
}

/// A run an alert asks for.
#[derive(Debug, Clone)]
pub(super) struct DueRunbook {
    pub name: String,
    pub params: BTreeMap<String, String>,
    /// What started it, for the run's record.
    pub trigger: String,
}

fn change_page(change: &PageChange) -> &Page {
    match change {
        PageChange::Opened(page) | PageChange::Resolved(page) => page,
    }
}

fn severity(level: wharf_manifest::model::IncidentLevel) -> wharf_api::IncidentSeverity {
    use wharf_manifest::model::IncidentLevel as L;
    match level {
        L::Sev1 => wharf_api::IncidentSeverity::Sev1,
        L::Sev2 => wharf_api::IncidentSeverity::Sev2,
        L::Sev3 => wharf_api::IncidentSeverity::Sev3,
        L::Sev4 => wharf_api::IncidentSeverity::Sev4,
    }
}

fn ends_at(silence: &Silence) -> Option<Timestamp> {
    silence.ends_at.parse().ok()
}

/// Whether a silence holds pages back at `now`.
fn in_force(silence: &Silence, now: Timestamp) -> bool {
    silence.expired_at.is_none()
        && silence
            .starts_at
            .parse::<Timestamp>()
            .is_ok_and(|start| start <= now)
        && ends_at(silence).is_some_and(|end| now < end)
}

/// The silences not ended, from the loop's reading connection.
fn read_silences(core: &Core) -> Option<Vec<Silence>> {
    wharf_ops::silences::active(core.journal.store())
        .map_err(|error| tracing::error!(%error, "cannot read the silences"))
        .ok()
}

/// Queues one notice or change on a courier, its body built without the key.
fn push(courier: &wharf_notify::Courier, format: wharf_notify::Format, id: u64, pending: &Pending) {
    match pending {
        Pending::Notice(notice) => courier.push(id, wharf_notify::body(format, notice, None)),
        Pending::Change(change) => {
            courier.push_change(id, wharf_notify::change_body(format, change, None));
        }
    }
}

/// An alert's receiver with its URL and key resolved. PagerDuty's key is the `routing_key`
/// field, or the URL's `routing_key` query parameter (taken out of the URL).
fn receiver(
    core: &Core,
    injector: &Injector,
    alert: &Alert,
) -> Result<wharf_notify::Receiver, String> {
    use wharf_manifest::model::WebhookFormat;
    let format = match alert.webhook.format {
        WebhookFormat::Generic => wharf_notify::Format::Generic,
        WebhookFormat::Slack => wharf_notify::Format::Slack,
        WebhookFormat::Pagerduty => wharf_notify::Format::PagerDuty,
    };
    let mut url = injector.resolve_text(core, &alert.webhook.url)?;
    let mut routing_key = match &alert.webhook.routing_key {
        Some(key) => Some(injector.resolve_text(core, key)?),
        None => None,
    };
    if format == wharf_notify::Format::PagerDuty
        && routing_key.is_none()
        && let Some((base, query)) = url.split_once('?')
    {
        let mut rest = Vec::new();
        for pair in query.split('&') {
            match pair.strip_prefix("routing_key=") {
                Some(key) => routing_key = Some(key.to_owned()),
                None => rest.push(pair),
            }
        }
        url = if rest.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
    }
    if format == wharf_notify::Format::PagerDuty && routing_key.is_none() {
        return Err("PagerDuty needs a routing key: `routing_key: ${secret:NAME}`, or `routing_key=` in the URL".to_owned());
    }
    Ok(wharf_notify::Receiver {
        name: alert.name.clone(),
        format,
        url,
        routing_key,
    })
}

/// The engine's rules from the manifest's alerts.
fn rules(alerts: &[Alert]) -> Vec<Rule> {
    alerts.iter().map(Rule::from_manifest).collect()
}

/// How a service's state counts for alerting.
fn health(state: State) -> Health {
    match state {
        State::Running | State::Degraded | State::External | State::Exited => Health::Serving,
        State::Down | State::Failed | State::CrashLoop | State::Blocked => Health::Down,
        State::Starting | State::Waiting => Health::Settling,
        State::Stopped => Health::Stopped,
    }
}

/// The notice a receiver gets for a page change.
fn notice(stack: &str, change: &PageChange) -> wharf_notify::Notice {
    let (page, status) = match change {
        PageChange::Opened(page) => (page, wharf_notify::Status::Firing),
        PageChange::Resolved(page) => (page, wharf_notify::Status::Resolved),
    };
    wharf_notify::Notice {
        dedup_key: page.dedup_key.clone(),
        status,
        rule: page.rule.clone(),
        stack: stack.to_owned(),
        root_cause: page.root_cause.clone(),
        summary: page.summary.clone(),
        severity: match page.severity {
            wharf_alerts::Severity::Critical => wharf_notify::Severity::Critical,
            wharf_alerts::Severity::Error => wharf_notify::Severity::Error,
            wharf_alerts::Severity::Warning => wharf_notify::Severity::Warning,
            wharf_alerts::Severity::Info => wharf_notify::Severity::Info,
        },
        affected: page.affected.clone(),
        labels: page.labels.clone(),
        started_at: page.started_at,
        resolved_at: page.resolved_at,
        acknowledged_by: None,
    }
}
