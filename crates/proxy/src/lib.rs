//! wharf's data-plane proxy: listens on each service's public port, splits traffic between
//! versions by weight (sticky or pinned on request), forwards to their instances over pooled
//! keep-alive connections, and counts requests, status classes and latency per version; a
//! port marked `tcp` passes its connections' bytes through instead ([`table::Mode`]).
//!
//! The control plane drives it through [`admin`] (a unix-socket HTTP API) or, in-process,
//! through [`Proxy::apply`]; the table's JSON shape is [`table::RouteTable`].

mod activity;
pub mod admin;
mod budget;
pub mod forward;
mod h1;
pub mod inherit;
pub mod latency;
pub mod persist;
mod routes;
mod server;
pub mod stats;
pub mod table;
mod tcp;
mod upstream;

pub use latency::{bucket_delta, merge_buckets, quantile_from_buckets};
pub use routes::InstanceReport;
pub use server::{ApplyError, FullStats, MAX_HEADER_BYTES, Proxy};
pub use table::{Mode, RouteTable, ServiceRoute, Sticky, TableError, ValidTable, VersionRoute};
