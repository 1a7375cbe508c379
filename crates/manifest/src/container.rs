//! The container keys of an `image:` service (`entrypoint`, `container_port`, `volumes`,
//! `pull_policy`, `build`; `ports` is read in `ports.rs`), and the compose keys a container service might carry that this wharf does
//! not build yet: those are refused by name, so no key is accepted without doing what it says.

use crate::container_options::{OPTION_KEYS, options};
use crate::decode::{Decoder, Fields};
use crate::diagnostic::Diagnostic;
use crate::model::{Build, Container, PullPolicy, Volume, VolumeSource};
use crate::yaml::{Node, NodeKind};

/// The keys this module reads.
pub(crate) const CONTAINER_KEYS: &[&str] = &[
    "entrypoint",
    "container_port",
    "volumes",
    "pull_policy",
    "build",
];

/// Compose keys a container service may have that are not built yet, each with what to do
/// instead. Accepted by the key check so they get this error rather than "unknown key".
pub(crate) const NOT_BUILT: &[(&str, &str)] = &[
    ("environment", "use `env:`"),
    (
        "env_file",
        "put the values in `env:`, or secrets in `wharf secret set`",
    ),
    (
        "healthcheck",
        "use `probes.ready.exec.command`, which runs inside the container (or an http / tcp probe)",
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
    refs: &mut crate::schema::References,
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
    // A service with `build:` is an image service whose image wharf builds.
    let image = fields.has("image") || fields.has("build");
    if fields.has("build")
        && let Some(span) = fields.key_span("pull_policy")
    {
        decoder.push(
            Diagnostic::error(
                span,
                format!("{} on a service with `build:`", field("pull_policy")),
            )
            .with_hint(
                "wharf builds this image from its context and never pulls it; remove `pull_policy`",
            ),
        );
    }
    if !image {
        for key in CONTAINER_KEYS.iter().chain(OPTION_KEYS) {
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
        options: options(decoder, name, fields, refs),
        build: fields
            .get("build")
            .and_then(|n| build(decoder, &field("build"), n)),
        // Filled by the schema from `crate::ports`, which also records their spans.
        ports: Vec::new(),
    })
}

/// Keys of compose's `build:` mapping this wharf reads.
const BUILD_KEYS: &[&str] = &["context", "dockerfile", "args", "target"];

/// compose's other `build:` keys: refused by name rather than as unknown.
const BUILD_NOT_BUILT: &[&str] = &[
    "additional_contexts",
    "cache_from",
    "cache_to",
    "dockerfile_inline",
    "extra_hosts",
    "isolation",
    "labels",
    "network",
    "no_cache",
    "platforms",
    "privileged",
    "pull",
    "secrets",
    "shm_size",
    "ssh",
    "tags",
    "ulimits",
];

/// `build: DIR` or `build: {context, dockerfile, args, target}` (compose's two forms).
fn build(decoder: &mut Decoder, what: &str, node: &Node) -> Option<Build> {
    if let NodeKind::Scalar { .. } = node.kind {
        let context = decoder.name(node, what)?;
        check_context(decoder, what, node, &context)?;
        return Some(Build {
            context,
            dockerfile: None,
            args: Default::default(),
            target: None,
        });
    }
    let known: Vec<&str> = BUILD_KEYS.iter().chain(BUILD_NOT_BUILT).copied().collect();
    let fields = decoder.fields(node, what, &known)?;
    let mut ok = true;
    for key in BUILD_NOT_BUILT {
        if let Some(span) = fields.key_span(key) {
            ok = false;
            decoder.push(
                Diagnostic::error(span, format!("{} is not built yet", sub(what, key)))
                    .with_label("not built yet")
                    .with_hint("wharf builds with `context`, `dockerfile`, `args` and `target`; build the image beforehand for the rest and name it in `image:`"),
            );
        }
    }
    let context = match fields.get("context") {
        Some(n) => {
            let context = decoder.name(n, &sub(what, "context"))?;
            check_context(decoder, what, n, &context)?;
            context
        }
        None => ".".to_owned(),
    };
    let dockerfile = match fields.get("dockerfile") {
        Some(n) => {
            let path = decoder.name(n, &sub(what, "dockerfile"))?;
            if path.starts_with('/') || path.split('/').any(|part| part == "..") {
                decoder.push(
                    Diagnostic::error(n.span, format!("{} `{path}` is outside the build context", sub(what, "dockerfile")))
                        .with_hint("give the Dockerfile's path inside the context (`docker/Dockerfile`), or move the context up"),
                );
                return None;
            }
            Some(path)
        }
        None => None,
    };
    let args = fields
        .get("args")
        .map(|n| decoder.string_map(n, &sub(what, "args")))
        .unwrap_or_default();
    // The engine keeps build args in the image's history, for anyone with the image to read.
    if let Some((name, _)) = args.iter().find(|(_, v)| v.contains("${secret:"))
        && let Some(span) = fields.key_span("args")
    {
        ok = false;
        decoder.push(
            Diagnostic::error(span, format!("{} `{name}` holds a secret", sub(what, "args")))
                .with_hint("build args are kept in the image's history; give the secret to the running container in `secrets:` or `env:` instead"),
        );
    }
    let target = fields
        .get("target")
        .and_then(|n| decoder.name(n, &sub(what, "target")));
    ok.then_some(Build {
        context,
        dockerfile,
        args,
        target,
    })
}

/// `` `services.api.build.KEY` `` from `` `services.api.build` ``.
fn sub(what: &str, key: &str) -> String {
    format!("`{}.{key}`", what.trim_matches('`'))
}

/// A context is a directory of this machine: a URL (a Git repository, a tarball) is not built.
fn check_context(decoder: &mut Decoder, what: &str, node: &Node, context: &str) -> Option<()> {
    let remote = ["http://", "https://", "git://", "git@", "ssh://"]
        .iter()
        .any(|prefix| context.starts_with(prefix))
        || context.contains("://");
    if remote {
        decoder.push(
            Diagnostic::error(
                node.span,
                format!("{what}: the remote context `{context}` is not built yet"),
            )
            .with_label("not built yet")
            .with_hint("clone it beside the manifest and give its directory (`./app`)"),
        );
        return None;
    }
    Some(())
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

    fn load(yaml: &str) -> crate::Loaded {
        crate::load(yaml, crate::EnvironmentChoice::Base, &|_: &str| None)
    }

    fn build_of(yaml: &str) -> Build {
        let loaded = load(yaml);
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        let stack = loaded.stack.expect("valid");
        let service = &stack.services["api"];
        service.container.as_ref().unwrap().build.clone().unwrap()
    }

    #[test]
    fn build_as_a_directory_or_a_mapping() {
        let build = build_of("name: s\nservices:\n  api:\n    build: ./app\n");
        assert_eq!(build.context, "./app");
        assert_eq!((build.dockerfile, build.target), (None, None));
        let build = build_of(
            "name: s\nservices:\n  api:\n    image: shop/api\n    build:\n      context: src\n      dockerfile: docker/Dockerfile.prod\n      args: {GO: \"1.22\", MODE: release}\n      target: runtime\n",
        );
        assert_eq!(build.context, "src");
        assert_eq!(build.dockerfile.as_deref(), Some("docker/Dockerfile.prod"));
        assert_eq!(build.args["GO"], "1.22");
        assert_eq!(build.args["MODE"], "release");
        assert_eq!(build.target.as_deref(), Some("runtime"));
        // compose's list form of args, and a mapping without context (the manifest's dir).
        let build =
            build_of("name: s\nservices:\n  api:\n    build:\n      args: [\"A=1\", \"B=two\"]\n");
        assert_eq!(build.context, ".");
        assert_eq!(build.args["B"], "two");
    }

    #[test]
    fn a_built_service_takes_the_container_keys_and_needs_no_image() {
        let loaded = load(
            "name: s\nservices:\n  api:\n    build: .\n    port: 8080\n    container_port: 80\n    proxy: {upstream_timeout: 5s}\n",
        );
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        let stack = loaded.stack.unwrap();
        let api = &stack.services["api"];
        assert_eq!(api.image, None);
        assert_eq!(api.container.as_ref().unwrap().container_port, Some(80));
    }

    #[test]
    fn build_errors_say_what_is_wrong() {
        let cases = [
            ("build: https://github.com/x/y.git", "remote context"),
            ("build: {context: git@github.com:x/y.git}", "remote context"),
            (
                "build: {dockerfile: ../Dockerfile}",
                "outside the build context",
            ),
            (
                "build: {dockerfile: /etc/Dockerfile}",
                "outside the build context",
            ),
            (
                "build: {context: ., ssh: [default]}",
                "`services.api.build.ssh` is not built yet",
            ),
            ("build: {context: ., contxt: .}", "unknown key"),
            ("build: [a]", "expected a mapping"),
            ("build: \"\"", "must not be empty"),
            (
                "build: {args: {TOKEN: \"${secret:TOKEN}\"}}",
                "`services.api.build.args` `TOKEN` holds a secret",
            ),
            (
                "build: .\n    pull_policy: always",
                "`services.api.pull_policy` on a service with `build:`",
            ),
        ];
        for (line, expected) in cases {
            let loaded = load(&format!("name: s\nservices:\n  api:\n    {line}\n"));
            let messages: Vec<String> = loaded
                .diagnostics
                .iter()
                .map(|d| d.message.clone())
                .collect();
            assert!(
                messages.iter().any(|m| m.contains(expected)),
                "{line}: {messages:?}"
            );
        }
    }
}
