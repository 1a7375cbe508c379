//! wharf on Kubernetes: the manifest rendered as Kubernetes objects (`render`, for review or a
//! GitOps repository), and the driver that applies them with server-side apply under wharf's
//! field manager, reads what runs by labels, and rolls a service out through its HTTPRoute's
//! weights with wharf's rollout state machine (`cluster`, `deploy`).

pub mod cluster;
pub mod deploy;
pub mod names;
pub mod proxy_router;
pub mod render;
pub mod route;
pub mod router;
pub mod values;

pub use render::{GatewayRef, Object, RenderError, Rendered, Target, render};
pub use router::RouterSpec;
