//! wharf-ledger
