//! Secrets and config overrides reach instances here, at start, inside the control plane.
//!
//! An instance spec is built symbolic (`${secret:NAME}` unresolved, config overrides applied)
//! and fingerprinted: its identity is a hash of that spec plus the keyed fingerprints of the
//! secret versions it uses — never of the values — so a rotated secret or a changed override
//! shows as an identity change, both at `reload` and when a restarted control plane adopts.
//! Values are resolved only into the spec handed to the driver (which passes it to the shim on
//! stdin) and into per-instance files on tmpfs, outside the state directory.

use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;

use serde_json::json;
use wharf_ledger::KnownAction;
use wharf_runtime::InstanceSpec;
use wharf_secrets::SecretValue;

use wharf_api::{ControlError, ManifestChanges, ReloadAnswer, ReloadRequest};

use super::ControlPlane;
use crate::plan::secret_references;
use crate::state::{Identity, Phase};

fn digest(material: &serde_json::Value) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(material.to_string().as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

impl ControlPlane {
    /// The service's runtime config overrides (`wharf config set`), latest revision.
    pub(super) fn overrides(&self, service: &str) -> BTreeMap<String, String> {
        self.journal
            .store()
            .config_at(service, None)
            .unwrap_or_else(|error| {
                tracing::error!(%error, service, "cannot read config overrides");
                BTreeMap::new()
            })
    }

    /// Fingerprints of the current versions of these secrets (`unset` for one never set),
    /// from `current` (every secret's, read once per identity).
    fn fingerprints(
        names: &[String],
        current: &BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        names
            .iter()
            .map(|name| {
                let fingerprint = current.get(name).cloned().unwrap_or_else(|| "unset".into());
                (name.clone(), fingerprint)
            })
            .collect()
    }

    pub(super) fn identity(&self, index: usize, spec: &InstanceSpec) -> Identity {
        let plan = &self.services[index].plan;
        let env_secrets: Vec<String> = plan
            .secrets
            .iter()
            .cloned()
            .chain(spec.env.iter().flat_map(|(_, v)| secret_references(v)))
            .collect();
        let current: BTreeMap<String, String> = wharf_secrets::list(self.journal.store())
            .unwrap_or_default()
            .into_iter()
            .map(|v| (v.name, v.fingerprint))
            .collect();
        let base = json!({"command": spec.command, "env": spec.env, "version": spec.version});
        let secrets = Self::fingerprints(&env_secrets, &current);
        let env = digest(&json!({"spec": base, "secrets": secrets}));
        let full = digest(&json!({
            "env": env,
            "files": Self::fingerprints(&plan.secret_files, &current),
        }));
        Identity { full, env }
    }

    /// A manifest that now uses secrets, on a control plane started without: unlock them with
    /// the key this process can find (environment or key file, never created here).
    fn unlock_if_needed(&mut self, plan: &crate::plan::StackPlan) -> Result<(), String> {
        let needed = plan.services.iter().any(|s| !s.secret_names().is_empty());
        if !needed || self.secrets.is_some() {
            return Ok(());
        }
        let env = std::env::var(wharf_secrets::MASTER_KEY_ENV).ok();
        let (key, _) =
            wharf_secrets::MasterKey::load(&self.config.state_dir, env.as_deref(), false)
                .map_err(|error| format!("the manifest now uses secrets: {error}"))?;
        let secrets = wharf_secrets::Secrets::unlock(self.journal.store_mut(), key)
            .map_err(|error| format!("the manifest now uses secrets: {error}"))?;
        self.secrets = Some(secrets);
        Ok(())
    }

    /// The directory of an instance's secret files (see [`wharf_secrets::files_dir`]).
    pub(super) fn secret_files_dir(&self, service: &str, ordinal: u32) -> PathBuf {
        wharf_secrets::files_dir(&self.config.state_dir, service, ordinal)
    }

    pub(super) fn remove_secret_files(&self, service: &str, ordinal: u32) {
        if let Err(error) = wharf_secrets::remove_files(&self.config.state_dir, service, ordinal) {
            let dir = self.secret_files_dir(service, ordinal);
            tracing::warn!(%error, dir = %dir.display(), "cannot remove secret files");
        }
    }

    fn secret_value(&self, name: &str) -> Result<SecretValue, String> {
        let Some(secrets) = &self.secrets else {
            return Err(format!(
                "secret `{name}` is needed but no master key was given to the control plane"
            ));
        };
        match secrets.current(self.journal.store(), name) {
            Ok(Some((_, value))) => Ok(value),
            Ok(None) => Err(format!(
                "secret `{name}` has no value; set it with `wharf secret set {name}`"
            )),
            Err(error) => Err(format!("secret `{name}`: {error}")),
        }
    }

    /// `${secret:NAME}` in a text replaced by the values.
    fn resolve_text(&self, text: &str) -> Result<String, String> {
        let mut out = text.to_owned();
        for name in secret_references(text) {
            let secret = self.secret_value(&name)?;
            let value = secret
                .expose_str()
                .map_err(|_| format!("secret `{name}` is not text"))?;
            out = out.replace(&format!("${{secret:{name}}}"), value);
        }
        Ok(out)
    }

    /// A probe whose target URL holds secrets (a datastore's `url: ${secret:PG_URL}`): the
    /// probe crate's reasons never carry credentials, so the resolved URL stays in memory.
    pub(super) fn resolve_check_secrets(
        &self,
        check: wharf_probe::Check,
    ) -> Result<wharf_probe::Check, String> {
        use wharf_probe::Check;
        Ok(match check {
            Check::Postgres { url } => Check::Postgres {
                url: self.resolve_text(&url)?,
            },
            Check::Redis { url } => Check::Redis {
                url: self.resolve_text(&url)?,
            },
            Check::Http(mut probe) => {
                probe.url = self.resolve_text(&probe.url)?;
                for (_, value) in probe.headers.iter_mut() {
                    *value = self.resolve_text(value)?;
                }
                Check::Http(probe)
            }
            other => other,
        })
    }

    /// The spec with every secret resolved, and the instance's secret files written.
    pub(super) fn resolve(
        &self,
        index: usize,
        ordinal: u32,
        mut spec: InstanceSpec,
    ) -> Result<InstanceSpec, String> {
        let plan = &self.services[index].plan;
        for (_, value) in spec.env.iter_mut() {
            *value = self.resolve_text(value)?;
        }
        for name in &plan.secrets {
            let secret = self.secret_value(name)?;
            let text = secret
                .expose_str()
                .map_err(|_| format!("secret `{name}` is not text"))?;
            spec.env.push((name.clone(), text.to_owned()));
        }
        if !plan.secret_files.is_empty() {
            let dir = self.write_secret_files(index, ordinal)?;
            spec.env
                .push(("WHARF_SECRETS_DIR".to_owned(), dir.display().to_string()));
        }
        Ok(spec)
    }

    /// Writes (or rewrites) the instance's secret files: the directory 0700, each file 0400.
    pub(super) fn write_secret_files(&self, index: usize, ordinal: u32) -> Result<PathBuf, String> {
        let plan = &self.services[index].plan;
        let dir = self.secret_files_dir(&plan.name, ordinal);
        let io =
            |err: std::io::Error| format!("cannot write secret files in {}: {err}", dir.display());
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io)?;
        for name in &plan.secret_files {
            let value = self.secret_value(name)?;
            let path = dir.join(name);
            let staged = dir.join(format!(".{name}.new"));
            let _ = std::fs::remove_file(&staged);
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o400)
                .open(&staged)
                .map_err(io)?;
            std::io::Write::write_all(&mut file, value.expose()).map_err(io)?;
            // Replaced atomically: a reader never sees half a value.
            std::fs::rename(&staged, &path).map_err(io)?;
        }
        Ok(dir)
    }

    /// `POST /v1/reload`: secrets or config overrides changed. Instances whose identity moved
    /// are replaced by a rolling restart (through the proxy: no request dropped), or, when the
    /// service reloads by signal and only its secret files changed, get new files and SIGHUP.
    pub(super) fn reload(&mut self, request: &ReloadRequest) -> Result<ReloadAnswer, ControlError> {
        let manifest = match (request.manifest, self.config.reload_plan.clone()) {
            (false, _) => None,
            (true, None) => {
                return Err(ControlError::rejected(
                    "this control plane cannot re-read its manifest",
                ));
            }
            (true, Some(loader)) => {
                if loader.environment != request.environment {
                    let name =
                        |e: &Option<String>| e.clone().unwrap_or_else(|| "the default".into());
                    return Err(ControlError::rejected(format!(
                        "the running stack uses environment {}, not {}; `wharf down` and `wharf up` to switch",
                        name(&loader.environment),
                        name(&request.environment)
                    )));
                }
                let plan = (loader.load)().map_err(ControlError::rejected)?;
                self.unlock_if_needed(&plan)
                    .map_err(ControlError::rejected)?;
                Some(self.apply_plan(plan))
            }
        };
        let mut restarted = Vec::new();
        let mut signalled = Vec::new();
        // External datastores probed through a secret URL: probed again with the new value.
        if self
            .services
            .iter()
            .any(|s| s.is_external() && !s.plan.secret_names().is_empty())
        {
            self.spawn_external_probes();
        }
        for index in 0..self.services.len() {
            if self.services[index].is_external() || !self.services[index].wanted {
                continue;
            }
            let name = self.services[index].plan.name.clone();
            let by_signal = self.services[index].plan.reload_by_signal;
            let candidates: Vec<(u32, Option<u16>, String)> = self.services[index]
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
                let expected = self.identity(index, &spec);
                let current = self.services[index].instances[&ordinal].identity.clone();
                if expected == current {
                    continue;
                }
                let files_only = expected.env == current.env;
                if by_signal
                    && files_only
                    && let Err(error) = self.write_secret_files(index, ordinal)
                {
                    // Delivered by a restart instead, where the failure is reported.
                    tracing::warn!(error, service = name, "cannot rewrite secret files");
                    if let Some(instance) = self.services[index].instances.get_mut(&ordinal) {
                        instance.outdated = true;
                        changed += 1;
                    }
                } else if by_signal && files_only {
                    let instance = self.services[index].instances.get_mut(&ordinal);
                    if let Some(instance) = instance {
                        if let Some(handle) = &instance.handle {
                            self.config.driver.reload(handle);
                        }
                        instance.identity = expected;
                    }
                    hupped += 1;
                } else if let Some(instance) = self.services[index].instances.get_mut(&ordinal) {
                    instance.outdated = true;
                    changed += 1;
                }
            }
            if changed > 0 {
                self.journal.record(
                    KnownAction::ServiceRestart,
                    &name,
                    json!({"instances": changed, "mode": "rolling", "reason": "config or secrets changed"}),
                );
                restarted.push(name.clone());
            }
            if hupped > 0 {
                self.journal.record(
                    KnownAction::ServiceReload,
                    &name,
                    json!({"instances": hupped, "signal": "SIGHUP", "reason": "secret files changed"}),
                );
                signalled.push(name);
            }
        }
        Ok(ReloadAnswer {
            restarting: restarted,
            reloaded: signalled,
            manifest,
        })
    }

    /// A changed manifest: services keep their instances and state; a changed version or
    /// command becomes the new stable spec (the instances of the old one are replaced rolling);
    /// added services start; removed ones stop. What changed is recorded.
    fn apply_plan(&mut self, plan: crate::plan::StackPlan) -> ManifestChanges {
        self.secret_policies = plan.secrets.clone();
        let mut added = Vec::new();
        let mut changed = Vec::new();
        let mut deferred = Vec::new();
        let mut order = Vec::new();
        for new in plan.services {
            let name = new.name.clone();
            match self.service_index(&name) {
                Some(index) => {
                    let service = &mut self.services[index];
                    let spec_changed =
                        service.plan.version != new.version || service.plan.command != new.command;
                    if spec_changed && service.active_rollout().is_some() {
                        // Its versions belong to the rollout until it ends.
                        deferred.push(name.clone());
                        order.push(name);
                        continue;
                    }
                    if spec_changed {
                        service.stable = crate::state::VersionSpec {
                            version: new.version.clone(),
                            command: new.command.clone(),
                        };
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
                    self.services.push(crate::state::ServiceState::new(new));
                }
            }
            order.push(name);
        }
        let removed: Vec<String> = self
            .services
            .iter()
            .map(|s| s.plan.name.clone())
            .filter(|name| !order.contains(name))
            .collect();
        for name in &removed {
            if let Some(index) = self.service_index(name) {
                self.services[index].wanted = false;
            }
        }
        // Dependency order of the new plan; removed services last (they stop first).
        self.services.sort_by_key(|s| {
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
        self.journal.record(
            KnownAction::StackReload,
            &self.stack.clone(),
            json!({"added": changes.added, "changed": changes.changed, "removed": changes.removed, "deferred": changes.deferred}),
        );
        changes
    }
}
