//! wharf on Kubernetes. Today: the manifest rendered as Kubernetes objects for review or a
//! GitOps repository (`wharf render --target kubernetes`). The driver that applies them with
//! server-side apply, splits traffic and adopts by labels is not built yet.

pub mod cluster;
pub mod deploy;
pub mod names;
pub mod render;
pub mod route;
pub mod values;

pub use render::{GatewayRef, Object, RenderError, Rendered, Target, render};
