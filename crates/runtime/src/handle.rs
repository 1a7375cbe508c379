//! Instance handles: what a driver records to find one of its instances again, opaque to
//! everything above the driver.
//!
//! A process is found by pid and start time, a container by its id, a pod by namespace and
//! name: only the driver that made a handle knows what is inside. The control plane stores a
//! handle as text, gives it back to the driver to watch, stop or re-adopt the instance, and
//! asks the driver to [`describe`](crate::Driver::describe) it for a status report.

use std::fmt;
use std::str::FromStr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// How a driver finds one of its instances: the driver's kind and a payload only that driver
/// reads. Serialized as `{"driver": "<kind>", "data": {…}}`.
///
/// ```
/// use wharf_runtime::InstanceHandle;
///
/// let handle = InstanceHandle::new("process", &serde_json::json!({"pid": 42})).unwrap();
/// let text = handle.to_string();
/// let again: InstanceHandle = text.parse().unwrap();
/// assert_eq!(again, handle);
/// assert_eq!(again.driver(), "process");
/// assert!("not a handle".parse::<InstanceHandle>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceHandle {
    driver: String,
    data: serde_json::Value,
}

/// Why a driver cannot use a handle. Never a panic: a handle comes from the state database,
/// which an older or another wharf may have written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    /// The text is not a handle, or its payload is not what its driver writes.
    #[error("malformed {what} handle: {reason}")]
    Malformed { what: String, reason: String },
    /// The handle was made by another driver.
    #[error("a handle of the `{found}` driver cannot be used by the `{expected}` driver")]
    OtherDriver { expected: String, found: String },
}

impl InstanceHandle {
    /// A handle of driver `driver` carrying `data` (what that driver needs to find the
    /// instance again).
    pub fn new(driver: &str, data: &impl Serialize) -> Result<Self, HandleError> {
        let data = serde_json::to_value(data).map_err(|err| HandleError::Malformed {
            what: driver.to_owned(),
            reason: err.to_string(),
        })?;
        Ok(InstanceHandle {
            driver: driver.to_owned(),
            data,
        })
    }

    /// The kind of driver that made the handle (`process`, …).
    pub fn driver(&self) -> &str {
        &self.driver
    }

    /// The payload, for the driver of kind `driver` only: another driver's handle or a payload
    /// of the wrong shape is refused.
    pub fn data<T: DeserializeOwned>(&self, driver: &str) -> Result<T, HandleError> {
        if self.driver != driver {
            return Err(HandleError::OtherDriver {
                expected: driver.to_owned(),
                found: self.driver.clone(),
            });
        }
        T::deserialize(&self.data).map_err(|err| HandleError::Malformed {
            what: driver.to_owned(),
            reason: err.to_string(),
        })
    }
}

/// The handle's text: the JSON the store keeps.
impl fmt::Display for InstanceHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = serde_json::to_string(self).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

impl FromStr for InstanceHandle {
    type Err = HandleError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        serde_json::from_str(text).map_err(|err| HandleError::Malformed {
            what: "instance".to_owned(),
            reason: err.to_string(),
        })
    }
}

/// What a driver says about one of its instances for people: the same shape whatever the
/// driver, so a status report needs no knowledge of it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HandleSummary {
    /// The instance's process id, when the driver knows one on this machine.
    pub pid: Option<u32>,
    /// A short identifier in the driver's terms (`pid 4242`, a container id, …); empty when
    /// the handle was refused.
    pub id: String,
    /// The image it runs, by digest (`repo@sha256:…`, or the image id when it has no
    /// registry digest), for a container; recorded in the ledger at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The loopback ports a container publishes (host → container port), as started: a
    /// restarted control plane learns an adopted instance's `ports:` from here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<crate::PortMapping>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Payload {
        pid: i32,
    }

    #[test]
    fn a_handle_round_trips_through_its_text() {
        let handle = InstanceHandle::new("process", &Payload { pid: 7 }).unwrap();
        let text = handle.to_string();
        assert_eq!(text, r#"{"driver":"process","data":{"pid":7}}"#);
        let again: InstanceHandle = text.parse().unwrap();
        assert_eq!(again, handle);
        assert_eq!(again.data::<Payload>("process"), Ok(Payload { pid: 7 }));
    }

    #[test]
    fn malformed_and_foreign_handles_are_refused() {
        for text in ["", "{", "42", r#"{"driver":"process"}"#, r#"{"data":{}}"#] {
            assert!(
                matches!(
                    text.parse::<InstanceHandle>(),
                    Err(HandleError::Malformed { .. })
                ),
                "{text:?}"
            );
        }
        let container = InstanceHandle::new("container", &"abc123").unwrap();
        assert_eq!(
            container.data::<Payload>("process"),
            Err(HandleError::OtherDriver {
                expected: "process".into(),
                found: "container".into()
            })
        );
        let wrong_shape = InstanceHandle::new("process", &"abc123").unwrap();
        assert!(matches!(
            wrong_shape.data::<Payload>("process"),
            Err(HandleError::Malformed { .. })
        ));
    }
}
