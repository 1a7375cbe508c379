//! wharf-compose
