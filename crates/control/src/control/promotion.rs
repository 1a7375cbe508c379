//! `require.promoted_from`: a deploy of a version into an environment that requires promotion
//! evidence goes ahead only when a bundle for that service and version, from the named source
//! environment and signed by its ledger's key, was verified and imported here
//! (`promotion.import` entries, written by `wharf_ops::promotion::import`). The rule itself is
//! `wharf_ops::promotion::deploy_check`, pure; this module reads the entries and says why not.

use super::ControlPlane;

impl ControlPlane {
    /// Why a deploy of `name` at `version` may not go ahead for want of promotion evidence
    /// (`None`: it may, or the environment requires none).
    pub(super) fn promotion_gate(&self, name: &str, version: &str) -> Option<String> {
        let (environment, require) = self.backups.requirements();
        let from = require?.promoted_from.as_ref()?;
        let env = environment.map_or_else(
            || "the manifest".to_owned(),
            |e| format!("environment `{e}`"),
        );
        let version = version.trim();
        let imports = match wharf_ops::promotion::imports(self.core.journal.store(), name, version)
        {
            Ok(imports) => imports,
            Err(error) => {
                return Some(format!(
                    "{env} requires promotion from `{}`, and the imported bundles cannot be read: {error}",
                    from.env
                ));
            }
        };
        wharf_ops::promotion::deploy_check(&imports, &from.env, &from.key, name, version)
            .err()
            .map(|why| format!("{env} requires promotion from `{}`: {why}", from.env))
    }
}
