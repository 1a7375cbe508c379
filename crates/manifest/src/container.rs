//! The container keys of an `image:` service (`entrypoint`, `container_port`, `volumes`,
//! `pull_policy`; `ports` is read in `ports.rs`), and the compose keys a container service might carry that this wharf does
//! not build yet: those are refused by name, so no key is accepted without doing what it says.

use crate::decode::{Decoder, Fields};
use crate::diagnostic::Diagnostic;
use crate::model::{Container, PullPolicy, Volume, VolumeSource};
use crate::yaml::{Node, NodeKind};

/// The keys this module reads.
pub(crate) const CONTAINER_KEYS: &[&str] =
    &["entrypoint", "container_port", "volumes", "pull_policy"];

/// Compose keys a container service may have that are not built yet, each with what to do
/// instead. Accepted by the key check so they get this error rather than "unknown key".
pub(crate) const NOT_BUILT: &[(&str, &str)] = &[
    ("environment", "use `env:`"),
    (
        "env_file",
        "put the values in `env:`, or secrets in `wharf secret set`",
    ),
    (
        "build",
        "build the image beforehand and name it in `image:`",
    ),
    (
        "networks",
        "every container of a stack is on the stack's own network, reachable by its service name",
    ),
    ("user", "set the user in the image"),
    ("working_dir", "set the working directory in the image"),
    ("ulimits", "set the limits in the image's entrypoint"),
    ("shm_size", "mount a tmpfs volume instead once it is built"),
    (
        "cap_add",
        "the image runs with the engine's default capabilities",
    ),
    (
        "cap_drop",
        "the image runs with the engine's default capabilities",
    ),
    ("read_only", "the container's root filesystem is writable"),
    (
        "healthcheck",
        "use `probes:` (http, tcp) against the published port",
    ),
    (
        "expose",
        "containers of the stack reach each other on any port by service name",
    ),
    (
        "container_name",
        "wharf names each instance's container itself",
    ),
    ("labels", "wharf labels its containers itself"),
];

/// Reads the container keys of service `name`; errors when they appear on a service without
/// `image:`, and for each not-built key present.
pub(crate) fn container(
    decoder: &mut Decoder,
    name: &str,
    fields: &Fields<'_>,
) -> Option<Container> {
    let field = |key: &str| format!("`services.{name}.{key}`");
    for (key, instead) in NOT_BUILT {
        if let Some(span) = fields.key_span(key) {
            decoder.push(
                Diagnostic::error(span, format!("{} is not built yet", field(key)))
                    .with_label("not built yet")
                    .with_hint(*instead),
            );
        }
    }
    let image = fields.has("image");
    if !image {
        for key in CONTAINER_KEYS {
            if let Some(span) = fields.key_span(key) {
                decoder.push(
                    Diagnostic::error(
                        span,
                        format!("{} on a service without `image:`", field(key)),
                    )
                    .with_hint("these keys configure the container of an `image:` service"),
                );
            }
        }
        return None;
    }
    Some(Container {
        entrypoint: fields
            .get("entrypoint")
            .and_then(|n| decoder.command(n, &field("entrypoint"))),
        container_port: fields
            .get("container_port")
            .and_then(|n| decoder.integer::<u16>(n, &field("container_port"), 1, 65535)),
        volumes: fields
            .get("volumes")
            .and_then(|n| {
                decoder
                    .string_list(n, &field("volumes"))
                    .map(|list| (n, list))
            })
            .map(|(node, list)| volumes(decoder, &field("volumes"), node, list))
            .unwrap_or_default(),
        pull_policy: fields
            .get("pull_policy")
            .and_then(|n| {
                decoder.choice(
                    n,
                    &field("pull_policy"),
                    &[
                        ("missing", PullPolicy::Missing),
                        ("always", PullPolicy::Always),
                        ("never", PullPolicy::Never),
                    ],
                )
            })
            .unwrap_or_default(),
        // Filled by the schema from `crate::ports`, which also records their spans.
        ports: Vec::new(),
    })
}

fn volumes(decoder: &mut Decoder, what: &str, node: &Node, list: Vec<String>) -> Vec<Volume> {
    let spans: Vec<_> = match &node.kind {
        NodeKind::Seq(items) => items.iter().map(|n| n.span).collect(),
        _ => vec![node.span],
    };
    let mut out = Vec::new();
    for (text, span) in list.iter().zip(spans) {
        match volume(text) {
            Ok(volume) => out.push(volume),
            Err(problem) => decoder.push(
                Diagnostic::error(span, format!("{what}: {problem}"))
                    .with_hint("write `NAME:/path` for a named volume or `./dir:/path` for a directory beside the manifest, with `:ro` to mount it read-only"),
            ),
        }
    }
    out
}

/// Compose's short syntax: `SOURCE:TARGET[:ro|:rw]`.
fn volume(text: &str) -> Result<Volume, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let (source, target, read_only) = match parts.as_slice() {
        [_] => {
            return Err(format!(
                "`{text}` is an anonymous volume, which is not built yet; name it"
            ));
        }
        [source, target] => (*source, *target, false),
        [source, target, "ro"] => (*source, *target, true),
        [source, target, "rw"] => (*source, *target, false),
        [_, _, mode] => {
            return Err(format!(
                "mode `{mode}` is not built yet (only `ro` and `rw`)"
            ));
        }
        _ => return Err(format!("`{text}` has too many `:`")),
    };
    if !target.starts_with('/') {
        return Err(format!(
            "the target `{target}` must be an absolute path in the container"
        ));
    }
    let source = if source.starts_with('/')
        || source.starts_with("./")
        || source.starts_with("../")
        || source == "."
    {
        VolumeSource::Bind(source.to_owned())
    } else if !source.is_empty()
        && source
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && source
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    {
        VolumeSource::Named(source.to_owned())
    } else {
        return Err(format!(
            "`{source}` is neither a volume name (letters, digits, `_.-`) nor a path (`./…`, `/…`)"
        ));
    };
    Ok(Volume {
        source,
        target: target.to_owned(),
        read_only,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_volume_syntax() {
        assert_eq!(
            volume("data:/var/lib/redis").unwrap(),
            Volume {
                source: VolumeSource::Named("data".into()),
                target: "/var/lib/redis".into(),
                read_only: false
            }
        );
        assert_eq!(
            volume("./conf:/etc/app:ro").unwrap().source,
            VolumeSource::Bind("./conf".into())
        );
        assert!(volume("./conf:/etc/app:ro").unwrap().read_only);
        for bad in ["/data", "data:rel", "data:/x:z", "~x:/y", "a:/b:ro:x"] {
            assert!(volume(bad).is_err(), "{bad}");
        }
    }
}
