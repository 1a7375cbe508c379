//! Reconciliation: each pass moves every service one step toward what is wanted — start
//! what is missing, restart what backed off, roll what is outdated, stop what is unwanted
//! (dependents first), and answer `down` requests that are done.

use std::time::Instant;

use wharf_manifest::model::DependencyCondition;

use super::traffic::Traffic;
use super::{ControlPlane, PROBELESS_READY_AFTER};
use crate::state::{Instance, Phase};

impl ControlPlane {
    /// Moves every service one step toward what is wanted.
    pub(super) fn reconcile(&mut self) {
        self.apply_holds();
        self.traffic
            .ensure_running(&mut self.core, Traffic::needed(&self.supervisor.services));
        for index in 0..self.supervisor.services.len() {
            if self.supervisor.services[index].wanted {
                self.reconcile_wanted(index);
            }
        }
        self.reconcile_stops();
        self.drive_rollouts();
        self.publish_routes();
        self.finish_drains(None);
        self.answer_downs();
    }

    fn reconcile_wanted(&mut self, index: usize) {
        if self.supervisor.services[index].is_external() {
            return;
        }
        let waiting = self.unmet_dependency(index);
        self.supervisor.services[index].waiting_for = waiting.clone();
        if waiting.is_some() && self.supervisor.services[index].instances.is_empty() {
            return;
        }
        // Backed-off instances whose time has come start again, in place.
        let now = Instant::now();
        let due: Vec<u32> = self.supervisor.services[index]
            .instances
            .values()
            .filter(|i| matches!(i.phase, Phase::Backoff { until } if until <= now))
            .map(|i| i.ordinal)
            .collect();
        for ordinal in due {
            self.start_instance(index, ordinal);
        }
        self.settle_probeless(index);
        self.retire_foreign_versions(index);
        self.replace_outdated(index);
        self.start_new_version(index);
        // Start what is missing, all in this pass (a rolling restart adds one at a time).
        loop {
            let service = &self.supervisor.services[index];
            let stable = service.stable.version.as_str();
            let wanted = if service.rollout.as_ref().is_some_and(|r| r.stable_suspended) {
                0
            } else {
                service.plan.replicas
            };
            let of_stable = || service.instances.values().filter(|i| i.version == stable);
            let active = of_stable().filter(|i| i.is_active()).count() as u32;
            // A new instance still starting or not yet ready is the one surge a roll allows.
            let surging = of_stable()
                .any(|i| !i.outdated && (i.is_running() || i.phase == Phase::Starting) && !i.ready);
            let outdated_running = of_stable()
                .filter(|i| i.outdated && i.phase == Phase::Running && i.draining.is_none())
                .count();
            let rolling = outdated_running > 0;
            // Recreate (public port bound directly): the old instance must be gone first.
            let blocked = service.plan.binds_public_port() && rolling;
            if active >= wanted || blocked || (rolling && surging) || waiting.is_some() {
                break;
            }
            let ordinal = self.supervisor.services[index].allocate_ordinal();
            let port = self.supervisor.allocate_port(index);
            let version = self.supervisor.services[index].stable.version.clone();
            self.supervisor.services[index]
                .instances
                .insert(ordinal, Instance::new(ordinal, port, version));
            self.start_instance(index, ordinal);
            if rolling
                || self.supervisor.services[index]
                    .instances
                    .get(&ordinal)
                    .is_some_and(|i| i.phase == Phase::Failed)
            {
                break;
            }
        }
    }

    /// A rollout's new instances, as many as it asked for.
    fn start_new_version(&mut self, index: usize) {
        let Some(rollout) = self.supervisor.services[index].active_rollout() else {
            return;
        };
        // Rolling back: the new version is on its way out, whatever was asked before.
        if matches!(
            rollout.machine.phase(),
            wharf_rollout::Phase::Aborting { .. }
        ) {
            return;
        }
        let version = rollout.new.version.clone();
        let want = rollout.want_new;
        loop {
            let have = self.supervisor.services[index]
                .instances
                .values()
                .filter(|i| i.version == version && i.is_active())
                .count() as u32;
            if have >= want {
                return;
            }
            let ordinal = self.supervisor.services[index].allocate_ordinal();
            let port = self.supervisor.allocate_port(index);
            self.supervisor.services[index]
                .instances
                .insert(ordinal, Instance::new(ordinal, port, version.clone()));
            self.start_instance(index, ordinal);
            if self.supervisor.services[index]
                .instances
                .get(&ordinal)
                .is_none_or(|i| i.phase == Phase::Failed)
            {
                return;
            }
        }
    }

    /// Instances of a version the service no longer runs (the manifest's version changed, or
    /// a rollout ended while the control plane was away) are replaced like a rolling restart:
    /// they keep serving until the new ones are ready. Replicas beyond the desired count are
    /// taken out of service.
    fn retire_foreign_versions(&mut self, index: usize) {
        let service = &mut self.supervisor.services[index];
        let stable = service.stable.version.clone();
        let new = service.active_rollout().map(|r| r.new.version.clone());
        for instance in service.instances.values_mut() {
            if instance.version != stable && Some(&instance.version) != new.as_ref() {
                instance.outdated = true;
            }
        }
        let wanted = service.plan.replicas as usize;
        let mut current: Vec<u32> = service
            .instances
            .values()
            .filter(|i| i.version == stable && i.is_active())
            .map(|i| i.ordinal)
            .collect();
        if current.len() > wanted && service.active_rollout().is_none() {
            current.sort_unstable();
            for ordinal in current.split_off(wanted) {
                self.retire_instance(index, ordinal, "scaled down");
            }
        }
    }

    /// An instance without a ready probe counts as ready once it has stayed up for
    /// [`PROBELESS_READY_AFTER`] (Kubernetes' `minReadySeconds`): a process that exits at once
    /// is never reported ready.
    fn settle_probeless(&mut self, index: usize) {
        if self.supervisor.services[index].plan.ready.is_some() {
            return;
        }
        let now = jiff::Timestamp::now();
        for instance in self.supervisor.services[index].instances.values_mut() {
            let up_long_enough = instance
                .started_at
                .is_some_and(|t| now.duration_since(t).unsigned_abs() >= PROBELESS_READY_AFTER);
            if instance.is_running() && !instance.ready && up_long_enough {
                instance.ready = true;
                instance.ever_ready = true;
            }
        }
    }

    /// Rolling restart: stop an outdated instance once a new one is ready to take its place
    /// (or at once when the public port forces a recreate).
    fn replace_outdated(&mut self, index: usize) {
        let service = &self.supervisor.services[index];
        let replicas = service.plan.replicas as usize;
        let stable = service.stable.version.as_str();
        let fresh_ready = service
            .instances
            .values()
            .filter(|i| i.version == stable && !i.outdated && i.is_routable())
            .count();
        let outdated: Vec<u32> = service
            .instances
            .values()
            .filter(|i| i.outdated && i.phase == Phase::Running && i.draining.is_none())
            .map(|i| i.ordinal)
            .collect();
        let stopping = service.instances.values().any(|i| i.is_leaving());
        let Some(&victim) = outdated.first() else {
            // Outdated instances that are not running (backing off) are simply dropped.
            let dead: Vec<u32> = service
                .instances
                .values()
                .filter(|i| {
                    i.outdated
                        && !i.is_running()
                        && !matches!(i.phase, Phase::Stopping | Phase::Starting)
                })
                .map(|i| i.ordinal)
                .collect();
            for ordinal in dead {
                self.supervisor.services[index].instances.remove(&ordinal);
            }
            return;
        };
        let recreate = service.plan.binds_public_port();
        if !stopping && (recreate || fresh_ready + outdated.len() > replicas) {
            self.retire_instance(index, victim, "rolling restart");
        }
    }

    /// The first dependency that is not yet started or ready, in words.
    fn unmet_dependency(&self, index: usize) -> Option<String> {
        for (dep, dependency) in &self.supervisor.services[index].plan.depends_on {
            let condition = &dependency.condition;
            let Some(dep_index) = self.supervisor.index(dep) else {
                continue;
            };
            let dep_state = &self.supervisor.services[dep_index];
            let met = match condition {
                DependencyCondition::Started => dep_state.is_started(),
                DependencyCondition::Ready => dep_state.is_ready(),
            };
            if !met {
                let word = if *condition == DependencyCondition::Ready {
                    "ready"
                } else {
                    "started"
                };
                let failed = if dep_state.has_failed() {
                    " (it failed to start)"
                } else {
                    ""
                };
                return Some(format!("waiting for `{dep}` to be {word}{failed}"));
            }
        }
        None
    }

    /// Stops services that are no longer wanted, dependents first.
    fn reconcile_stops(&mut self) {
        for index in (0..self.supervisor.services.len()).rev() {
            if self.supervisor.services[index].wanted {
                continue;
            }
            let name = self.supervisor.services[index].plan.name.clone();
            let dependents_running = self.supervisor.services.iter().any(|s| {
                !s.wanted
                    && s.plan.depends_on.iter().any(|(dep, _)| *dep == name)
                    && !s.instances.is_empty()
            });
            if dependents_running {
                continue;
            }
            let ordinals: Vec<u32> = self.supervisor.services[index]
                .instances
                .keys()
                .copied()
                .collect();
            for ordinal in ordinals {
                let phase = self.supervisor.services[index].instances[&ordinal]
                    .phase
                    .clone();
                match phase {
                    Phase::Running => self.retire_instance(index, ordinal, "down"),
                    Phase::Stopping => {}
                    // Its start is in the driver's hands: it stops when the start comes
                    // back (see `on_started`), so nothing it starts is left behind.
                    Phase::Starting => {
                        self.supervisor
                            .stop_instance(&mut self.core, index, ordinal, "down")
                    }
                    _ => {
                        self.supervisor.services[index].instances.remove(&ordinal);
                        self.core.journal.remove_instance(&name, ordinal);
                    }
                }
            }
        }
    }

    fn answer_downs(&mut self) {
        let services = &self.supervisor.services;
        let done = |names: &[String]| {
            names.iter().all(|name| {
                services
                    .iter()
                    .find(|s| s.plan.name == *name)
                    .is_none_or(|s| s.instances.is_empty())
            })
        };
        let (finished, waiting): (Vec<_>, Vec<_>) = self
            .supervisor
            .pending_downs
            .drain(..)
            .partition(|down| done(&down.services));
        self.supervisor.pending_downs = waiting;
        for down in finished {
            let _ = down.reply.send(Ok(()));
        }
    }
}
