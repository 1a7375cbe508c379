//! Names and the keys wharf cannot carry: project and service names, and one message per
//! compose key that has no wharf equivalent, with a hint about what to do instead.

/// compose's project-name rule: lowercase, only letters, digits, `-` and `_`, starting with a
/// letter or digit. The result is also a valid wharf stack name.
pub(crate) fn project_name(raw: &str) -> String {
    let kept: String = raw
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    kept.trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

/// A compose service name as a wharf service name: wharf names start with a letter and use
/// letters, digits, `-` and `_`; compose also allows `.` and a leading digit.
pub(crate) fn service_name(raw: &str) -> String {
    let mut name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        name.insert_str(0, "s-");
    }
    name
}

/// The message and hint for a top-level key other than `services` and `name`.
pub(crate) fn top_level(key: &str) -> (String, Option<&'static str>) {
    let hint = match key {
        "secrets" => {
            Some("declare secrets under wharf's top-level `secrets:` and use `${secret:NAME}`")
        }
        "configs" => Some("put configuration in `env:` or in files the service reads"),
        "include" => Some("import each included file and merge the services by hand"),
        _ => None,
    };
    (
        format!("top-level `{key}` is not carried over: wharf.yaml has no equivalent"),
        hint,
    )
}

/// The message and hint for a service key wharf has no place for.
pub(crate) fn service_key(service: &str, key: &str) -> (String, Option<&'static str>) {
    let hint = match key {
        "volumes" => Some(
            "volumes mount into `image:` services; this one runs as a local process, which sees the host's filesystem",
        ),
        "networks" | "network_mode" | "links" | "external_links" | "hostname" | "extra_hosts" => {
            Some("wharf services reach each other through the wharf proxy on each service's `port`")
        }
        "expose" => Some("only the public `port` is carried; services listen on `${PORT}`"),
        "container_name" => Some("wharf names instances itself"),
        "labels" => Some("wharf has no labels; keep them as comments if they document something"),
        "logging" => Some("wharf keeps each instance's logs itself (`wharf logs`)"),
        "secrets" => Some(
            "declare secrets under wharf's top-level `secrets:` and list them in the service's `secrets:`",
        ),
        "configs" => Some("put configuration in `env:` or in files the service reads"),
        "profiles" => {
            Some("the service was imported as if its profile were active; remove it if not wanted")
        }
        _ => None,
    };
    (
        format!("`services.{service}.{key}` is not carried over: wharf.yaml has no equivalent"),
        hint,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names_follow_compose_rules() {
        assert_eq!(project_name("My App.v2"), "myappv2");
        assert_eq!(project_name("__shop"), "shop");
        assert_eq!(project_name("..."), "");
    }

    #[test]
    fn service_names_become_wharf_identifiers() {
        assert_eq!(service_name("web.api"), "web-api");
        assert_eq!(service_name("1worker"), "s-1worker");
        assert_eq!(service_name("db_main"), "db_main");
    }
}
