//! Reloading: secrets or config overrides changed in the store (`wharf secret set`, `wharf
//! config set`), or the manifest changed (`wharf up` against a running control plane). It
//! crosses subsystems — the injector says which instances' identity moved, the supervisor
//! replaces them — so it is the control plane's own.

use serde_json::json;
use wharf_api::{ControlError, ManifestChanges, ReloadAnswer, ReloadRequest};
use wharf_ledger::KnownAction;

use super::ControlPlane;
use super::inject::Injector;
use crate::events::{Event, PreparedReload, ReloadReply};
use crate::state::Phase;

impl ControlPlane {
    /// `POST /v1/reload`. Re-reading the manifest (a file) and unlocking secrets for it (a
    /// store write on first use) are IO: they run in a task, which hands the loop
    /// [`Event::ReloadPrepared`]; a reload of secrets and config alone is answered at once.
    pub(super) fn begin_reload(&mut self, request: ReloadRequest, reply: ReloadReply) {
        if request.manifest && self.supervisor.exit_when_stopped {
            // A new manifest would want the services again, and the stack would never stop.
            // (Secrets and config alone change nothing a stopping stack still starts.)
            let _ = reply.send(Err(ControlError::rejected(
                "the stack is stopping (`wharf down`); `wharf up` once it has",
            )));
            return;
        }
        if request.manifest && self.reload_preparing {
            // Two reads of the manifest could land in either order: one at a time.
            let _ = reply.send(Err(ControlError::rejected(
                "another `wharf up` is reading the manifest; try again in a moment",
            )));
            return;
        }
        if !request.manifest {
            let _ = reply.send(Ok(self.apply_reload(None)));
            return;
        }
        let Some(loader) = self.core.config.reload_plan.clone() else {
            let _ = reply.send(Err(ControlError::rejected(
                "this control plane cannot re-read its manifest",
            )));
            return;
        };
        if loader.environment != request.environment {
            let name = |e: &Option<String>| e.clone().unwrap_or_else(|| "the default".into());
            let _ = reply.send(Err(ControlError::rejected(format!(
                "the running stack uses environment {}, not {}; `wharf down` and `wharf up` to switch",
                name(&loader.environment),
                name(&request.environment)
            ))));
            return;
        }
        self.reload_preparing = true;
        // Who asked: what the reload changes is theirs once the manifest has been read.
        self.reload_caller = Some(self.core.journal.acting().to_owned());
        let unlocked = self.injector.unlocked();
        let state_dir = self.core.config.state_dir.clone();
        let writer = self.core.journal.writer();
        let events = self.core.events.clone();
        tokio::spawn(async move {
            let prepared = async {
                let load = loader.load.clone();
                let plan = tokio::task::spawn_blocking(move || load())
                    .await
                    .map_err(|error| format!("reading the manifest failed: {error}"))??;
                let needs_secrets = plan.uses_secrets();
                let secrets = if needs_secrets && !unlocked {
                    Some(super::inject::unlock(state_dir, writer).await?)
                } else {
                    None
                };
                Ok(PreparedReload { plan, secrets })
            }
            .await;
            let _ = events
                .send(Event::ReloadPrepared(Box::new((prepared, reply))))
                .await;
        });
    }

    /// The task's answer to [`Self::begin_reload`]: apply the new plan, then the reload.
    pub(super) fn on_reload_prepared(
        &mut self,
        prepared: Result<PreparedReload, String>,
        reply: ReloadReply,
    ) {
        self.reload_preparing = false;
        let caller = self.reload_caller.take();
        let before = self.core.journal.act_as(caller);
        self.finish_reload(prepared, reply);
        self.core.journal.act_as(before);
    }

    fn finish_reload(&mut self, prepared: Result<PreparedReload, String>, reply: ReloadReply) {
        if self.supervisor.exit_when_stopped {
            let _ = reply.send(Err(ControlError::rejected(
                "the stack began stopping (`wharf down`) while the manifest was read; nothing was changed",
            )));
            return;
        }
        let PreparedReload { plan, secrets } = match prepared {
            Ok(prepared) => prepared,
            Err(reason) => {
                let _ = reply.send(Err(ControlError::rejected(reason)));
                return;
            }
        };
        if let Some(why) = self.governed_manifest_change(&plan) {
            let _ = reply.send(Err(ControlError::rejected(why)));
            return;
        }
        if let Some(secrets) = secrets
            && !self.injector.unlocked()
        {
            self.injector.secrets = Some(secrets);
        }
        let changes = self.apply_plan(plan);
        let _ = reply.send(Ok(self.apply_reload(Some(changes))));
    }

    /// Secrets or config overrides changed. Instances whose identity moved are replaced by a
    /// rolling restart (through the proxy: no request dropped), or, when the service reloads
    /// by signal and only its secret files changed, get new files and SIGHUP.
    fn apply_reload(&mut self, manifest: Option<ManifestChanges>) -> ReloadAnswer {
        let mut restarted = Vec::new();
        let mut signalled = Vec::new();
        // A receiver's URL or key may be a secret that just changed.
        self.alerting.sync_receivers(&mut self.core, &self.injector);
        // External datastores probed through a secret URL: probed again with the new value.
        if self
            .supervisor
            .services
            .iter()
            .any(|s| s.is_external() && !s.plan.secret_names().is_empty())
        {
            self.spawn_external_probes();
        }
        for index in 0..self.supervisor.services.len() {
            if self.supervisor.services[index].is_external()
                || !self.supervisor.services[index].wanted
            {
                continue;
            }
            let name = self.supervisor.services[index].plan.name.clone();
            let by_signal = self.supervisor.services[index].plan.reload_by_signal;
            let candidates: Vec<(u32, Option<u16>, String)> = self.supervisor.services[index]
                .instances
                .values()
                .filter(|i| i.phase == Phase::Running && !i.is_leaving() && !i.outdated)
                .map(|i| (i.ordinal, i.port, i.version.clone()))
                .collect();
            let mut changed = 0;
            let mut hupped = 0;
            for (ordinal, port, version) in candidates {
                let Some(spec) = self.spec_for(index, ordinal, port, &version) else {
                    continue;
                };
                let expected =
                    Injector::identity(&self.core, &self.supervisor.services[index].plan, &spec);
                let current = self.supervisor.services[index].instances[&ordinal]
                    .identity
                    .clone();
                if expected == current {
                    continue;
                }
                let files_only = expected.env == current.env;
                if by_signal
                    && files_only
                    && let Err(error) = self.injector.write_secret_files(
                        &self.core,
                        &self.supervisor.services[index].plan,
                        ordinal,
                    )
                {
                    // Delivered by a restart instead, where the failure is reported.
                    tracing::warn!(error, service = name, "cannot rewrite secret files");
                    if let Some(instance) =
                        self.supervisor.services[index].instances.get_mut(&ordinal)
                    {
                        instance.outdated = true;
                        changed += 1;
                    }
                } else if by_signal && files_only {
                    let instance = self.supervisor.services[index].instances.get_mut(&ordinal);
                    if let Some(instance) = instance {
                        if let Some(handle) = &instance.handle {
                            self.core.config.driver.reload(handle);
                        }
                        instance.identity = expected;
                    }
                    hupped += 1;
                } else if let Some(instance) =
                    self.supervisor.services[index].instances.get_mut(&ordinal)
                {
                    instance.outdated = true;
                    changed += 1;
                }
            }
            if changed > 0 {
                self.core.journal.record(
                    KnownAction::ServiceRestart,
                    &name,
                    json!({"instances": changed, "mode": "rolling", "reason": "config or secrets changed"}),
                );
                self.alerting.change(
                    &self.core,
                    &name,
                    format!("{name} restarting rolling: its config or secrets changed"),
                    std::collections::BTreeMap::from([(
                        "instances".to_owned(),
                        changed.to_string(),
                    )]),
                );
                restarted.push(name.clone());
            }
            if hupped > 0 {
                self.core.journal.record(
                    KnownAction::ServiceReload,
                    &name,
                    json!({"instances": hupped, "signal": "SIGHUP", "reason": "secret files changed"}),
                );
                signalled.push(name);
            }
        }
        ReloadAnswer {
            restarting: restarted,
            reloaded: signalled,
            manifest,
        }
    }

    /// A changed manifest: services keep their instances and state; a changed version or
    /// command becomes the new stable spec (the instances of the old one are replaced rolling);
    /// added services start; removed ones stop. What changed is recorded.
    fn apply_plan(&mut self, plan: crate::plan::StackPlan) -> ManifestChanges {
        self.injector.policies = plan.secrets.clone();
        self.backups.set_plan(&self.core, &plan);
        self.runbooks.set_runbooks(plan.runbooks.clone());
        if self.alerting.alerts() != plan.alerts.as_slice() {
            self.alerting
                .set_alerts(&mut self.core, &self.injector, plan.alerts.clone());
        }
        let mut added = Vec::new();
        let mut changed = Vec::new();
        let mut deferred = Vec::new();
        let mut order = Vec::new();
        for new in plan.services {
            let name = new.name.clone();
            match self.supervisor.index(&name) {
                Some(index) => {
                    let service = &mut self.supervisor.services[index];
                    let spec_changed = service.plan.version != new.version
                        || service.plan.command != new.command
                        || service.plan.image != new.image
                        || service.plan.container != new.container;
                    if spec_changed && service.active_rollout().is_some() {
                        // Its versions belong to the rollout until it ends.
                        deferred.push(name.clone());
                        order.push(name);
                        continue;
                    }
                    if spec_changed {
                        service.stable = crate::state::VersionSpec::of_plan(&new);
                    }
                    if spec_changed
                        || service.plan.replicas != new.replicas
                        || service.plan.public_port != new.public_port
                    {
                        changed.push(name.clone());
                    }
                    // A fixed port clash (or any manifest change) gets a fresh try.
                    service.listen_error = None;
                    service.plan = new;
                    service.wanted = true;
                }
                None => {
                    added.push(name.clone());
                    self.supervisor
                        .services
                        .push(crate::state::ServiceState::new(new));
                }
            }
            order.push(name);
        }
        let removed: Vec<String> = self
            .supervisor
            .services
            .iter()
            .map(|s| s.plan.name.clone())
            .filter(|name| !order.contains(name))
            .collect();
        for name in &removed {
            if let Some(index) = self.supervisor.index(name) {
                self.supervisor.services[index].wanted = false;
            }
        }
        // Dependency order of the new plan; removed services last (they stop first).
        self.supervisor.services.sort_by_key(|s| {
            order
                .iter()
                .position(|n| *n == s.plan.name)
                .unwrap_or(usize::MAX)
        });
        let changes = ManifestChanges {
            added,
            changed,
            removed,
            deferred,
        };
        self.core.journal.record(
            KnownAction::StackReload,
            &self.core.stack.clone(),
            json!({"added": changes.added, "changed": changes.changed, "removed": changes.removed, "deferred": changes.deferred}),
        );
        changes
    }
}
