//! The deploy API's types, defined in `wharf-api` and re-exported here for the control plane's
//! own modules.

pub use wharf_api::deploy::{DeployRequest, RolloutCommand, RolloutView, VersionTraffic};
