//! Image references (`registry:5000/repo/name:tag`, `name@sha256:…`), pure.

/// An image reference split the way the engine's pull API wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Everything before the tag or digest (`127.0.0.1:5000/testbed`).
    pub repository: String,
    /// The tag (`latest` when none is given, as the engine assumes) or the digest.
    pub tag: String,
}

impl ImageRef {
    /// The reference with its tag or digest (what the engine resolves).
    pub fn full(&self) -> String {
        if self.tag.starts_with("sha256:") {
            format!("{}@{}", self.repository, self.tag)
        } else {
            format!("{}:{}", self.repository, self.tag)
        }
    }
}

/// Splits a reference. A `:` after the last `/` starts the tag; one before it is a registry's
/// port. Pulling without a tag would fetch every tag of the repository, so `latest` stands in.
pub fn parse_image(reference: &str) -> ImageRef {
    if let Some((repository, digest)) = reference.split_once('@') {
        return ImageRef {
            repository: repository.to_owned(),
            tag: digest.to_owned(),
        };
    }
    let name_start = reference.rfind('/').map_or(0, |slash| slash + 1);
    match reference[name_start..].rfind(':') {
        Some(colon) => ImageRef {
            repository: reference[..name_start + colon].to_owned(),
            tag: reference[name_start + colon + 1..].to_owned(),
        },
        None => ImageRef {
            repository: reference.to_owned(),
            tag: "latest".to_owned(),
        },
    }
}

/// The tag of a reference, when it names one (the version an `image:` service runs when it
/// sets no `version:`).
pub fn tag_of(reference: &str) -> Option<&str> {
    if reference.contains('@') {
        return None;
    }
    let name_start = reference.rfind('/').map_or(0, |slash| slash + 1);
    let name = &reference[name_start..];
    name.rfind(':').map(|colon| &name[colon + 1..])
}

/// The reference with its tag replaced by `tag` (a deploy of version `v2` of an image service
/// runs `repo:v2`); a reference by digest is kept as it is.
pub fn with_tag(reference: &str, tag: &str) -> String {
    if reference.contains('@') {
        return reference.to_owned();
    }
    format!("{}:{tag}", parse_image(reference).repository)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_at_the_tag_not_the_registry_port() {
        for (text, repository, tag) in [
            ("redis", "redis", "latest"),
            ("redis:7", "redis", "7"),
            (
                "127.0.0.1:5000/wharf/testbed:v2",
                "127.0.0.1:5000/wharf/testbed",
                "v2",
            ),
            ("127.0.0.1:5000/testbed", "127.0.0.1:5000/testbed", "latest"),
            ("r/x@sha256:ab", "r/x", "sha256:ab"),
        ] {
            let image = parse_image(text);
            assert_eq!(
                (image.repository.as_str(), image.tag.as_str()),
                (repository, tag),
                "{text}"
            );
        }
        assert_eq!(parse_image("r/x@sha256:ab").full(), "r/x@sha256:ab");
        assert_eq!(parse_image("redis").full(), "redis:latest");
        assert_eq!(tag_of("127.0.0.1:5000/testbed:v1"), Some("v1"));
        assert_eq!(tag_of("127.0.0.1:5000/testbed"), None);
        assert_eq!(tag_of("x@sha256:1"), None);
        assert_eq!(
            with_tag("127.0.0.1:5000/testbed:v1", "v2"),
            "127.0.0.1:5000/testbed:v2"
        );
        assert_eq!(with_tag("redis", "7"), "redis:7");
    }
}
