//! What the cluster tests share: a journal kept in memory, fast runner options, weight lists
//! and polling with a deadline.

#![allow(dead_code)] // Each test binary uses part of it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use wharf_kube::deploy::{ClusterRollout, Journal, Record, RunOptions};

/// Every saved state with the entries saved with it.
type Saved = Vec<(ClusterRollout, Vec<Record>)>;

/// The journal a test keeps in memory.
#[derive(Default, Clone)]
pub struct MemoryJournal {
    saved: Arc<Mutex<Saved>>,
}

impl Journal for MemoryJournal {
    fn record(&mut self, rollout: &ClusterRollout, records: &[Record]) -> Result<(), String> {
        self.saved
            .lock()
            .unwrap()
            .push((rollout.clone(), records.to_vec()));
        Ok(())
    }
}

impl MemoryJournal {
    pub fn records(&self) -> Vec<Record> {
        let saved = self.saved.lock().unwrap();
        saved.iter().flat_map(|(_, r)| r.clone()).collect()
    }

    pub fn actions(&self) -> Vec<&'static str> {
        self.records().iter().map(|r| r.action).collect()
    }

    pub fn last(&self) -> ClusterRollout {
        self.saved.lock().unwrap().last().unwrap().0.clone()
    }
}

pub fn fast() -> RunOptions {
    RunOptions {
        interval: Duration::from_millis(100),
        drain_grace: Duration::ZERO,
    }
}

pub fn weights(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
    pairs.iter().map(|(n, w)| ((*n).to_owned(), *w)).collect()
}

/// Polls `check` every 20 ms until it holds; fails the test after `limit`.
pub async fn until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
