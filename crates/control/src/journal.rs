//! The control plane's memory: instance records in the store and entries in the ledger.
//!
//! Recording never stops the control plane: a failed write is logged and the next one tried,
//! because supervising the services matters more than any single record (and `audit verify`
//! shows whatever is missing from the chain).

use serde_json::Value;
use wharf_ledger::{Action, Ledger, NewEntry};
use wharf_store::{InstanceRow, Store, StoreError};

pub struct Journal {
    ledger: Ledger<Store>,
    actor: String,
}

impl Journal {
    pub fn new(store: Store, actor: String) -> Self {
        Journal {
            ledger: Ledger::new(store),
            actor,
        }
    }

    /// Appends one ledger entry (`action` is dotted, e.g. `instance.start`).
    pub fn record(&mut self, action: &str, target: &str, details: Value) {
        let entry = action
            .parse::<Action>()
            .and_then(|action| {
                NewEntry::new(jiff::Timestamp::now(), &self.actor, action, target, details)
            })
            .map_err(|err| err.to_string());
        let result = entry.and_then(|entry| {
            self.ledger
                .append(entry)
                .map(drop)
                .map_err(|err| err.to_string())
        });
        if let Err(error) = result {
            tracing::error!(%error, action, target, "could not append to the ledger");
        }
    }

    pub fn save_instance(&mut self, row: &InstanceRow) {
        if let Err(error) = self.ledger.storage_mut().save_instance(row) {
            tracing::error!(%error, service = row.service, "could not record the instance");
        }
    }

    pub fn remove_instance(&mut self, service: &str, ordinal: u32) {
        if let Err(error) = self.ledger.storage_mut().remove_instance(service, ordinal) {
            tracing::error!(%error, service, ordinal, "could not forget the instance");
        }
    }

    /// Adds a state change to the bounded health history in the store.
    pub fn record_health(&mut self, target: &str, state: &str, reason: Option<&str>) {
        if let Err(error) = self
            .ledger
            .storage_mut()
            .add_health_event(target, state, reason)
        {
            tracing::error!(%error, target, "could not record the health history");
        }
    }

    pub fn instances(&self) -> Result<Vec<InstanceRow>, StoreError> {
        self.ledger.storage().instances()
    }
}

impl Journal {
    pub fn save_rollout(&mut self, row: &wharf_store::RolloutRow) {
        if let Err(error) = self.ledger.storage_mut().save_rollout(row) {
            tracing::error!(%error, service = row.service, "could not save the rollout");
        }
    }

    pub fn rollouts(&self) -> Result<Vec<wharf_store::RolloutRow>, StoreError> {
        self.ledger.storage().rollouts()
    }

    pub fn save_deployment(&mut self, service: &str, state: &str) {
        if let Err(error) = self.ledger.storage_mut().save_deployment(service, state) {
            tracing::error!(%error, service, "could not save the deployment");
        }
    }

    pub fn deployment(&self, service: &str) -> Option<String> {
        self.ledger
            .storage()
            .deployment(service)
            .unwrap_or_else(|error| {
                tracing::error!(%error, service, "could not read the deployment");
                None
            })
    }
}

impl Journal {
    /// The state database, for the secrets and config overrides read at instance start.
    pub fn store(&self) -> &Store {
        self.ledger.storage()
    }

    pub fn store_mut(&mut self) -> &mut Store {
        self.ledger.storage_mut()
    }
}
