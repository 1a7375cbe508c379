//! The public components and their states, pure functions of the control plane's status report
//! and the manifest's `status_page:` (its [`Setup`]).
//!
//! A service's public state, from the health model (`wharf_api::ServiceState`):
//!
//! | service | public state |
//! |---|---|
//! | in a rollout, an in-place restore (the datastore and the dependents it holds) or a declared maintenance | `under_maintenance` |
//! | running, external (its probe passes), exited (a one-shot job done) | `operational` |
//! | degraded (some instances ready, or a non-critical dependency down) | `degraded_performance` |
//! | blocked or down while some of its instances are still ready | `partial_outage` |
//! | down, blocked, failed, crash-loop, stopped, starting, waiting (nothing serves) | `major_outage` |
//!
//! A component is the worst of its services (operational < under maintenance < degraded <
//! partial < major), except that a major outage of one service while another of the same
//! component is operational or degraded is a `partial_outage` of the component.
//!
//! The page's indicator is the worse of the components' (under maintenance → `maintenance`,
//! degraded → `minor`, partial → `major`, major → `critical`) and the open incidents' impact.
//! Nothing from the report but names and states is used: its reasons, ports and pids never
//! reach the page.

use sha2::{Digest, Sha256};
use wharf_api::status_page::{ComponentStatus, Impact, Indicator};
use wharf_api::{ServiceState, ServiceStatus};

/// What the manifest's `status_page:` says (the binary converts it from the manifest's model,
/// so this crate does not depend on the manifest's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Setup {
    /// The page's title; the stack's name when absent.
    pub title: Option<String>,
    /// The public components; when empty, every service but the hidden ones is one.
    pub components: Vec<ComponentSpec>,
    /// Services left off the default components.
    pub hide: Vec<String>,
}

/// One declared component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentSpec {
    pub name: String,
    pub services: Vec<String>,
    pub description: Option<String>,
}

/// A component with its stable id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grouping {
    pub id: String,
    pub name: String,
    pub services: Vec<String>,
    pub description: Option<String>,
}

/// A stable public id: the first 12 hex digits of SHA-256 over `kind` and `name`, so an id
/// never changes while the name does not, and says nothing of hosts or order.
pub fn stable_id(kind: &str, name: &str) -> String {
    let digest = Sha256::digest(format!("wharf-status:{kind}:{name}").as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// The public components: the declared ones, else one per service (in the report's order)
/// but the hidden ones.
pub fn groupings(setup: &Setup, services: &[&str]) -> Vec<Grouping> {
    if setup.components.is_empty() {
        return services
            .iter()
            .filter(|name| !setup.hide.iter().any(|h| h == *name))
            .map(|name| Grouping {
                id: stable_id("component", name),
                name: (*name).to_owned(),
                services: vec![(*name).to_owned()],
                description: None,
            })
            .collect();
    }
    setup
        .components
        .iter()
        .map(|spec| Grouping {
            id: stable_id("component", &spec.name),
            name: spec.name.clone(),
            services: spec.services.clone(),
            description: spec.description.clone(),
        })
        .collect()
}

/// One service's public state (the table in the module docs).
pub fn service_status(status: &ServiceStatus, maintenance: bool) -> ComponentStatus {
    if maintenance || status.rollout.is_some() {
        return ComponentStatus::UnderMaintenance;
    }
    match status.state {
        ServiceState::Running | ServiceState::External | ServiceState::Exited => {
            ComponentStatus::Operational
        }
        ServiceState::Degraded => ComponentStatus::DegradedPerformance,
        ServiceState::Blocked | ServiceState::Down if status.ready > 0 => {
            ComponentStatus::PartialOutage
        }
        ServiceState::Down
        | ServiceState::Blocked
        | ServiceState::Failed
        | ServiceState::CrashLoop
        | ServiceState::Stopped
        | ServiceState::Starting
        | ServiceState::Waiting => ComponentStatus::MajorOutage,
    }
}

/// A component's state from its services' (the module docs); a component with no known
/// service (renamed away by a reload) is a major outage: it shows nothing serving.
pub fn component_status(services: &[ComponentStatus]) -> ComponentStatus {
    let worst = services
        .iter()
        .copied()
        .max_by_key(|s| s.severity())
        .unwrap_or(ComponentStatus::MajorOutage);
    if worst == ComponentStatus::MajorOutage && services.iter().any(|s| s.is_up()) {
        ComponentStatus::PartialOutage
    } else {
        worst
    }
}

/// The page's indicator (the module docs).
pub fn indicator(components: &[ComponentStatus], open_incidents: &[Impact]) -> Indicator {
    let from_components = components
        .iter()
        .map(|s| match s {
            ComponentStatus::Operational => Indicator::None,
            ComponentStatus::UnderMaintenance => Indicator::Maintenance,
            ComponentStatus::DegradedPerformance => Indicator::Minor,
            ComponentStatus::PartialOutage => Indicator::Major,
            ComponentStatus::MajorOutage => Indicator::Critical,
        })
        .max()
        .unwrap_or(Indicator::None);
    let from_incidents = open_incidents
        .iter()
        .map(|i| i.indicator())
        .max()
        .unwrap_or(Indicator::None);
    from_components.max(from_incidents)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_api::HealthStatus;

    fn service(state: ServiceState, ready: u32) -> ServiceStatus {
        ServiceStatus {
            name: "api".to_owned(),
            version: "1".to_owned(),
            state,
            health: HealthStatus::Pass,
            external: false,
            desired: 2,
            running: 2,
            ready,
            restarts: 0,
            reason: None,
            blocked_by: None,
            probe_latency_ms: None,
            dependencies: Vec::new(),
            instances: Vec::new(),
            public_port: None,
            rollout: None,
            backups: None,
        }
    }

    #[test]
    fn every_service_state_maps_to_a_public_state() {
        use ComponentStatus as C;
        use ServiceState as S;
        let table = [
            (S::Running, 2, C::Operational),
            (S::External, 0, C::Operational),
            (S::Exited, 0, C::Operational),
            (S::Degraded, 1, C::DegradedPerformance),
            (S::Blocked, 2, C::PartialOutage),
            (S::Down, 1, C::PartialOutage),
            (S::Blocked, 0, C::MajorOutage),
            (S::Down, 0, C::MajorOutage),
            (S::Failed, 0, C::MajorOutage),
            (S::CrashLoop, 0, C::MajorOutage),
            (S::Stopped, 0, C::MajorOutage),
            (S::Starting, 0, C::MajorOutage),
            (S::Waiting, 0, C::MajorOutage),
        ];
        for (state, ready, expected) in table {
            assert_eq!(
                service_status(&service(state, ready), false),
                expected,
                "{state} with {ready} ready"
            );
        }
    }

    #[test]
    fn maintenance_and_a_rollout_show_under_maintenance_whatever_the_state() {
        assert_eq!(
            service_status(&service(ServiceState::Down, 0), true),
            ComponentStatus::UnderMaintenance
        );
        let mut rolling = service(ServiceState::Degraded, 1);
        rolling.rollout = Some("1.5.0 step 1/3 (10%)".to_owned());
        assert_eq!(
            service_status(&rolling, false),
            ComponentStatus::UnderMaintenance
        );
    }

    #[test]
    fn a_component_is_its_worst_service_but_partial_when_another_serves() {
        use ComponentStatus as C;
        assert_eq!(
            component_status(&[C::Operational, C::Operational]),
            C::Operational
        );
        assert_eq!(
            component_status(&[C::Operational, C::DegradedPerformance]),
            C::DegradedPerformance
        );
        assert_eq!(
            component_status(&[C::Operational, C::MajorOutage]),
            C::PartialOutage
        );
        assert_eq!(component_status(&[C::MajorOutage]), C::MajorOutage);
        assert_eq!(
            component_status(&[C::UnderMaintenance, C::MajorOutage]),
            C::MajorOutage
        );
        assert_eq!(
            component_status(&[C::UnderMaintenance, C::Operational]),
            C::UnderMaintenance
        );
        assert_eq!(
            component_status(&[C::UnderMaintenance, C::DegradedPerformance]),
            C::DegradedPerformance
        );
        assert_eq!(component_status(&[]), C::MajorOutage);
    }

    #[test]
    fn the_indicator_is_the_worse_of_components_and_open_incidents() {
        use ComponentStatus as C;
        assert_eq!(indicator(&[C::Operational], &[]), Indicator::None);
        assert_eq!(
            indicator(&[C::Operational, C::UnderMaintenance], &[]),
            Indicator::Maintenance
        );
        assert_eq!(indicator(&[C::DegradedPerformance], &[]), Indicator::Minor);
        assert_eq!(indicator(&[C::PartialOutage], &[]), Indicator::Major);
        assert_eq!(indicator(&[C::MajorOutage], &[]), Indicator::Critical);
        assert_eq!(
            indicator(&[C::Operational], &[Impact::Major, Impact::None]),
            Indicator::Major
        );
    }

    #[test]
    fn components_default_to_every_service_but_the_hidden_and_ids_are_stable() {
        let setup = Setup {
            hide: vec!["worker".to_owned()],
            ..Setup::default()
        };
        let found = groupings(&setup, &["db", "api", "worker"]);
        let names: Vec<&str> = found.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["db", "api"]);
        assert_eq!(found[1].id, stable_id("component", "api"));
        assert_eq!(found[1].id.len(), 12);
        assert_ne!(found[0].id, found[1].id);
        let declared = Setup {
            components: vec![ComponentSpec {
                name: "Website".to_owned(),
                services: vec!["api".to_owned(), "db".to_owned()],
                description: None,
            }],
            ..Setup::default()
        };
        let found = groupings(&declared, &["db", "api", "worker"]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].services, ["api", "db"]);
    }
}
