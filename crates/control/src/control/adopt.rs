//! Re-adoption: finding the instances a previous control plane left running.

use serde_json::json;
use wharf_ledger::KnownAction;
use wharf_runtime::{HandleError, InstanceHandle};
use wharf_store::InstanceRow;

use super::ControlPlane;
use super::inject::Injector;
use crate::state::{Instance, Phase};
use crate::tasks::watch_ended;

impl ControlPlane {
    /// Re-finds instances a previous control plane started: those its driver still finds
    /// through their recorded handle are adopted without a restart; the others are recorded as
    /// exited.
    ///
    /// The proxy is adopted first: the instances it routes to now were ready when the last
    /// control plane told it so, and stay routed while their probes confirm it, so adopting
    /// changes nothing for traffic.
    pub(super) async fn adopt(&mut self) {
        // A driver behind an API (containers) learns what runs once, here, so the questions
        // below are answered without waiting on it.
        self.core.config.driver.refresh().await;
        let rows = match self.core.journal.instances() {
            Ok(rows) => rows,
            Err(error) => {
                tracing::error!(%error, "cannot read recorded instances; starting fresh");
                return;
            }
        };
        let mut routed = std::collections::HashSet::new();
        if let Some(row) = rows.iter().find(|r| r.service == super::traffic::PROXY_ROW)
            && self.traffic.adopt(&mut self.core, row).await
        {
            routed = self.traffic.routed_now().await;
            self.traffic.routed = routed.clone();
        }
        for row in rows {
            if row.service == super::traffic::PROXY_ROW {
                continue;
            }
            let target = format!("{}/{}", row.service, row.index);
            let handle = match row.handle.parse::<InstanceHandle>() {
                Ok(handle) => handle,
                Err(error) => {
                    self.forget_unreadable(&row, &error);
                    continue;
                }
            };
            let Some(index) = self.supervisor.index(&row.service) else {
                self.retire_orphan(&row, handle);
                continue;
            };
            let pid = self.core.config.driver.describe(&handle).pid;
            if !self.core.config.driver.is_running(&handle) {
                let status = self.core.config.driver.exit_status(&handle);
                let detail = status
                    .as_ref()
                    .map_or_else(|| "unknown".to_owned(), ToString::to_string);
                self.core.journal.record(
                    KnownAction::InstanceExit,
                    &target,
                    json!({"pid": pid, "status": detail, "noticed": "at control plane start"}),
                );
                self.core.journal.remove_instance(&row.service, row.index);
                Injector::remove_secret_files(&self.core, &row.service, row.index);
                continue;
            }
            // The loopback ports of `ports:` are the driver's to know (the handle records
            // what the container publishes); the main port is the row's.
            let extra: Vec<wharf_runtime::PortMapping> = self
                .core
                .config
                .driver
                .describe(&handle)
                .ports
                .into_iter()
                .filter(|m| Some(m.host) != row.port)
                .collect();
            let expected = self
                .spec_with_ports(index, row.index, row.port, &extra, &row.version)
                .map(|spec| {
                    Injector::identity(&self.core, &self.supervisor.services[index].plan, &spec)
                });
            let expected_hash = expected.as_ref().map(|i| i.full.clone());
            let service = &mut self.supervisor.services[index];
            let mut instance = Instance::new(row.index, row.port, row.version.clone());
            instance.extra_ports = extra;
            instance.phase = Phase::Running;
            instance.handle = Some(handle.clone());
            self.core.generations += 1;
            let generation = self.core.generations;
            instance.generation = generation;
            instance.started_at = row.started_at.parse().ok();
            instance.ready = row
                .port
                .is_some_and(|port| routed.contains(&super::traffic::address(port)));
            // It ran under the previous control plane: whether it is down now is known, not
            // a start still coming up.
            instance.ever_ready = true;
            instance.history.restarts = row.restarts;
            instance.outdated = expected_hash.as_deref() != Some(row.spec_hash.as_str());
            instance.identity = match expected {
                Some(identity) if !instance.outdated => identity,
                _ => crate::state::Identity {
                    full: row.spec_hash.clone(),
                    env: String::new(),
                },
            };
            service.next_ordinal = service.next_ordinal.max(row.index + 1);
            service.instances.insert(row.index, instance);
            self.core.journal.record(
                KnownAction::InstanceAdopt,
                &target,
                json!({"pid": pid, "port": row.port, "version": row.version, "outdated": expected_hash.as_deref() != Some(row.spec_hash.as_str())}),
            );
            tracing::info!(target, pid, "adopted a running instance");
            let watch = tokio::spawn(watch_ended(
                self.core.events.clone(),
                row.service.clone(),
                row.index,
                generation,
                self.core.config.driver.watch(handle),
            ));
            if let Some(i) = self.supervisor.services[index]
                .instances
                .get_mut(&row.index)
            {
                i.tasks.push(watch.abort_handle())
            }
            self.spawn_probes(index, row.index);
        }
    }

    /// An instance of a service the manifest no longer has: stop it.
    fn retire_orphan(&mut self, row: &InstanceRow, handle: InstanceHandle) {
        let target = format!("{}/{}", row.service, row.index);
        if self.core.config.driver.is_running(&handle) {
            let pid = self.core.config.driver.describe(&handle).pid;
            self.core.stop(handle);
            self.core.journal.record(
                KnownAction::InstanceStop,
                &target,
                json!({"pid": pid, "reason": "the service is no longer in the manifest"}),
            );
        }
        self.core.journal.remove_instance(&row.service, row.index);
        Injector::remove_secret_files(&self.core, &row.service, row.index);
    }

    /// A row whose handle is not a handle at all (written by something else): nothing can
    /// find its instance, so it is recorded as gone and forgotten.
    fn forget_unreadable(&mut self, row: &InstanceRow, error: &HandleError) {
        let target = format!("{}/{}", row.service, row.index);
        tracing::error!(target, %error, "unreadable instance handle; forgetting the instance");
        self.core.journal.record(
            KnownAction::InstanceExit,
            &target,
            json!({"status": "unknown", "noticed": "at control plane start", "reason": error.to_string()}),
        );
        self.core.journal.remove_instance(&row.service, row.index);
        Injector::remove_secret_files(&self.core, &row.service, row.index);
    }
}
