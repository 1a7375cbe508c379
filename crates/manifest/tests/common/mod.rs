//! Helpers shared by the manifest's integration tests.

/// A fixed set of variables, so results never depend on the machine's environment.
pub fn variables(name: &str) -> Option<String> {
    match name {
        "TAG" => Some("1.4.0".to_owned()),
        "REGISTRY" => Some("registry.example.com".to_owned()),
        "LOG_LEVEL" => Some("info".to_owned()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}
