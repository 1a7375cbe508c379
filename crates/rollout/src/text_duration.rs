//! Durations in persisted rollouts and ledger entries as people write them (`30s`, `1m30s`),
//! in the manifest's own notation, rather than serde's `{"secs": 30, "nanos": 0}`.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};
use wharf_manifest::values::Duration as TextDuration;

pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&TextDuration(*duration))
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse::<TextDuration>()
        .map(TextDuration::as_std)
        .map_err(|err| serde::de::Error::custom(format!("duration `{text}`: {}", err.0)))
}

#[cfg(test)]
mod tests {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Holder {
        #[serde(with = "super")]
        pause: std::time::Duration,
    }

    #[test]
    fn durations_round_trip_as_text() {
        let holder = Holder {
            pause: std::time::Duration::from_millis(90_500),
        };
        let text = serde_json::to_string(&holder).unwrap();
        assert_eq!(text, r#"{"pause":"1m30s500ms"}"#);
        assert_eq!(serde_json::from_str::<Holder>(&text).unwrap(), holder);
        assert!(serde_json::from_str::<Holder>(r#"{"pause":"soon"}"#).is_err());
    }
}
