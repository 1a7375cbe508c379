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
use wharf_runtime::InstanceSpec;
use wharf_secrets::SecretValue;

use super::Core;
use crate::plan::ServicePlan;
use crate::plan::secret_references;
use crate::state::Identity;

fn digest(material: &serde_json::Value) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(material.to_string().as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The injector's state: the unlocked secrets (when the stack uses any) and the manifest's
/// secret policies as of the last plan.
pub(super) struct Injector {
    pub(super) secrets: Option<wharf_secrets::Secrets>,
    pub(super) policies: Vec<(String, wharf_manifest::model::SecretPolicy)>,
}

impl Injector {
    pub(super) fn new(policies: Vec<(String, wharf_manifest::model::SecretPolicy)>) -> Self {
        Injector {
            secrets: None,
            policies,
        }
    }

    /// Whether the control plane holds the master key.
    pub(super) fn unlocked(&self) -> bool {
        self.secrets.is_some()
    }

    /// The service's runtime config overrides (`wharf config set`), latest revision.
    pub(super) fn overrides(core: &Core, service: &str) -> BTreeMap<String, String> {
        core.journal
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

    /// What an instance of `plan` started from the symbolic `spec` is: a hash of the spec and
    /// of the fingerprints of the secret versions it uses, never of their values.
    pub(super) fn identity(core: &Core, plan: &ServicePlan, spec: &InstanceSpec) -> Identity {
        let env_secrets: Vec<String> = plan
            .secrets
            .iter()
            .cloned()
            .chain(spec.env.iter().flat_map(|(_, v)| secret_references(v)))
            .collect();
        let current: BTreeMap<String, String> = wharf_secrets::list(core.journal.store())
            .unwrap_or_default()
            .into_iter()
            .map(|v| (v.name, v.fingerprint))
            .collect();
        let mut base = json!({"command": spec.command, "env": spec.env, "version": spec.version});
        // A container's image, ports and volumes are part of what it is (absent for a process,
        // so a process's identity is what it always was).
        if let Some(container) = &spec.container {
            base["container"] = json!(container);
        }
        let secrets = Self::fingerprints(&env_secrets, &current);
        let env = digest(&json!({"spec": base, "secrets": secrets}));
        let full = digest(&json!({
            "env": env,
            "files": Self::fingerprints(&plan.secret_files, &current),
        }));
        Identity { full, env }
    }

    /// The directory of an instance's secret files (see [`wharf_secrets::files_dir`]).
    pub(super) fn secret_files_dir(core: &Core, service: &str, ordinal: u32) -> PathBuf {
        wharf_secrets::files_dir(&core.config.state_dir, service, ordinal)
    }

    /// Removes an instance's secret files (it ended, or it never started).
    pub(super) fn remove_secret_files(core: &Core, service: &str, ordinal: u32) {
        if let Err(error) = wharf_secrets::remove_files(&core.config.state_dir, service, ordinal) {
            let dir = Self::secret_files_dir(core, service, ordinal);
            tracing::warn!(%error, dir = %dir.display(), "cannot remove secret files");
        }
    }

    fn secret_value(&self, core: &Core, name: &str) -> Result<SecretValue, String> {
        let Some(secrets) = &self.secrets else {
            return Err(format!(
                "secret `{name}` is needed but no master key was given to the control plane"
            ));
        };
        match secrets.current(core.journal.store(), name) {
            Ok(Some((_, value))) => Ok(value),
            Ok(None) => Err(format!(
                "secret `{name}` has no value; set it with `wharf secret set {name}`"
            )),
            Err(error) => Err(format!("secret `{name}`: {error}")),
        }
    }

    /// `${secret:NAME}` in a text replaced by the values.
    pub(super) fn resolve_text(&self, core: &Core, text: &str) -> Result<String, String> {
        let mut out = text.to_owned();
        for name in secret_references(text) {
            let secret = self.secret_value(core, &name)?;
            let value = secret
                .expose_str()
                .map_err(|_| format!("secret `{name}` is not text"))?;
            out = out.replace(&format!("${{secret:{name}}}"), value);
        }
        Ok(out)
    }

    /// A probe whose target URL holds secrets (a datastore's `url: ${secret:PG_URL}`): the
    /// probe crate's reasons never carry credentials, so the resolved URL stays in memory.
    pub(super) fn resolve_check(
        &self,
        core: &Core,
        check: wharf_probe::Check,
    ) -> Result<wharf_probe::Check, String> {
        use wharf_probe::Check;
        Ok(match check {
            Check::Postgres { url } => Check::Postgres {
                url: self.resolve_text(core, &url)?,
            },
            Check::Redis { url } => Check::Redis {
                url: self.resolve_text(core, &url)?,
            },
            Check::Http(mut probe) => {
                probe.url = self.resolve_text(core, &probe.url)?;
                for (_, value) in probe.headers.iter_mut() {
                    *value = self.resolve_text(core, value)?;
                }
                Check::Http(probe)
            }
            other => other,
        })
    }

    /// The spec with every secret resolved, and the instance's secret files written.
    pub(super) fn resolve(
        &self,
        core: &Core,
        plan: &ServicePlan,
        ordinal: u32,
        mut spec: InstanceSpec,
    ) -> Result<InstanceSpec, String> {
        for (_, value) in spec.env.iter_mut() {
            *value = self.resolve_text(core, value)?;
        }
        for name in &plan.secrets {
            let secret = self.secret_value(core, name)?;
            let text = secret
                .expose_str()
                .map_err(|_| format!("secret `{name}` is not text"))?;
            spec.env.push((name.clone(), text.to_owned()));
        }
        if !plan.secret_files.is_empty() {
            let dir = self.write_secret_files(core, plan, ordinal)?;
            spec.env
                .push(("WHARF_SECRETS_DIR".to_owned(), dir.display().to_string()));
        }
        Ok(spec)
    }

    /// Writes (or rewrites) the instance's secret files: the directory 0700, each file 0400.
    pub(super) fn write_secret_files(
        &self,
        core: &Core,
        plan: &ServicePlan,
        ordinal: u32,
    ) -> Result<PathBuf, String> {
        let dir = Self::secret_files_dir(core, &plan.name, ordinal);
        let io =
            |err: std::io::Error| format!("cannot write secret files in {}: {err}", dir.display());
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io)?;
        for name in &plan.secret_files {
            let value = self.secret_value(core, name)?;
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
}

/// Unlocks the secrets for a manifest that now uses them, on a control plane started without:
/// with the key this process can find (environment or key file, never created here), on the
/// store writer's thread (a first use writes the check value). Runs in a task, never on the
/// loop.
pub(super) async fn unlock(
    state_dir: PathBuf,
    writer: crate::journal::StoreWriter,
) -> Result<wharf_secrets::Secrets, String> {
    let env = std::env::var(wharf_secrets::MASTER_KEY_ENV).ok();
    let (key, _) = wharf_secrets::MasterKey::load(&state_dir, env.as_deref(), false)
        .map_err(|error| format!("the manifest now uses secrets: {error}"))?;
    writer
        .run(move |store| wharf_secrets::Secrets::unlock(store, key))
        .await
        .ok_or_else(|| "the manifest now uses secrets: the store writer has stopped".to_owned())?
        .map_err(|error| format!("the manifest now uses secrets: {error}"))
}
