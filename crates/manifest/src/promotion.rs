//! `require.promoted_from: {env, key}`: the environment a version must have been rolled out in
//! first, and the verifier key of that environment's ledger. The key's shape is checked here
//! (the C2SP signed-note verifier key `NAME+KEYID+BASE64(0x01 ‖ Ed25519 public key)`, whose
//! key ID is the first 4 bytes of SHA-256(NAME ‖ "\n" ‖ 0x01 ‖ key)), so a key mangled by a
//! copy and paste is an error at `wharf validate`, not a deploy refused later for no clear reason.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest, Sha256};

use crate::decode::Decoder;
use crate::diagnostic::Diagnostic;
use crate::model::PromotedFrom;
use crate::yaml::Node;

const WHAT: &str = "`require.promoted_from`";

/// Decodes `promoted_from`, reporting each problem at the node it is in.
pub(crate) fn promoted_from(decoder: &mut Decoder, node: &Node) -> Option<PromotedFrom> {
    let fields = decoder.fields(node, WHAT, &["env", "key"])?;
    let env = fields
        .require(decoder, "env", WHAT)
        .and_then(|n| decoder.name(n, "`require.promoted_from.env`"));
    if let (Some(env), Some(node)) = (&env, fields.get("env"))
        && env.chars().any(char::is_whitespace)
    {
        decoder.push(Diagnostic::error(
            node.span,
            format!("`require.promoted_from.env` `{env}` must be one word (an environment's name)"),
        ));
    }
    let key_node = fields.require(decoder, "key", WHAT)?;
    let key = decoder.name(key_node, "`require.promoted_from.key`")?;
    if let Err(problem) = check_verifier_key(&key) {
        decoder.push(
            Diagnostic::error(
                key_node.span,
                format!("`require.promoted_from.key` is not a ledger verifier key: {problem}"),
            )
            .with_hint(
                "paste the line `wharf audit key` prints in the source environment: NAME+KEYID+BASE64",
            ),
        );
        return None;
    }
    Some(PromotedFrom { env: env?, key })
}

/// Why `text` is not a well-formed Ed25519 note verifier key (`Ok` when it is).
pub fn check_verifier_key(text: &str) -> Result<(), String> {
    let text = text.trim();
    let mut parts = text.splitn(3, '+');
    let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        let found = match text.split('+').count() {
            1 => "no '+'".to_owned(),
            n => format!("only {n} parts"),
        };
        return Err(format!(
            "expected three parts NAME+KEYID+BASE64 separated by '+', found {found}"
        ));
    };
    if name.is_empty() || name.chars().any(char::is_whitespace) {
        return Err("the name (before the first '+') must be non-empty, without spaces".into());
    }
    if id.len() != 8 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("the key ID `{id}` must be 8 hex digits"));
    }
    let bytes = B64
        .decode(key)
        .map_err(|e| format!("the key after the second '+' is not base64 ({e})"))?;
    if bytes.len() != 33 || bytes[0] != 0x01 {
        return Err(format!(
            "the key must be an Ed25519 key (33 bytes starting with 0x01), found {} bytes",
            bytes.len()
        ));
    }
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update(b"\n");
    hasher.update(&bytes);
    let digest = hasher.finalize();
    let expected: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    if expected != id.to_ascii_lowercase() {
        return Err(format!(
            "the key ID `{id}` does not match the name and key (expected `{expected}`): a character was changed"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A well-formed key named `wharf/staging` (from a fixed Ed25519 seed).
    const GOOD: &str = "wharf/staging+f22fd127+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4";

    #[test]
    fn shapes_of_keys() {
        assert_eq!(check_verifier_key(GOOD), Ok(()), "{GOOD}");
        for bad in [
            "",
            "wharf/staging",
            "wharf/staging+f22fd127",
            "wharf/staging+f22fd1+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4",
            "wharf/staging+f22fd127+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG",
            "wharf/staging+f22fd127+!!!!",
            "wharf/stage+f22fd127+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4",
            "wharf/staging+f22fd127+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG5",
        ] {
            assert!(check_verifier_key(bad).is_err(), "{bad}");
        }
    }
}
