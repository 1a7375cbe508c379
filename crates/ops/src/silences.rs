//! Silences: create one (matchers, owner, reason, a mandatory end), end one early, and mark
//! the ones that ran out — each the row and its ledger entry in one transaction. The control
//! plane reads them to hold back page notices; it never holds back a resolve of a page it sent.

use jiff::Timestamp;
use serde_json::json;
use wharf_api::{CreateSilenceRequest, Silence};
use wharf_ledger::KnownAction;
use wharf_store::Store;

use crate::{Actor, OpsError, append};

/// The longest a silence may last: one that must outlive this is a change to the manifest.
pub const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// The ledger target of a silence.
pub fn target(id: u64) -> String {
    format!("silence/{id}")
}

/// Reads `s-12` or `12`.
pub fn parse_id(text: &str) -> Result<u64, OpsError> {
    text.trim()
        .trim_start_matches("s-")
        .parse::<u64>()
        .map_err(|_| OpsError::Invalid(format!("`{text}` is not a silence id (like `s-3`)")))
}

fn number(silence: &Silence) -> u64 {
    parse_id(&silence.id).unwrap_or(0)
}

fn checked_text(what: &str, text: &str, max: usize) -> Result<String, OpsError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(OpsError::Invalid(format!("a silence needs a {what}")));
    }
    if text.chars().count() > max || text.chars().any(char::is_control) {
        return Err(OpsError::Invalid(format!(
            "the {what} must be one line of at most {max} characters"
        )));
    }
    Ok(text.to_owned())
}

/// Creates a silence from now until now + its duration.
pub fn create(
    store: &mut Store,
    actor: &Actor,
    request: &CreateSilenceRequest,
    now: Timestamp,
) -> Result<Silence, OpsError> {
    if request.matchers.is_empty() {
        return Err(OpsError::Invalid(
            "a silence needs at least one matcher (`service=api`, `alert=oncall`, `severity=critical`, or a label)"
                .to_owned(),
        ));
    }
    for matcher in &request.matchers {
        matcher.check().map_err(OpsError::Invalid)?;
    }
    let reason = checked_text("reason", &request.reason, 500)?;
    let owner = match &request.owner {
        Some(owner) => checked_text("owner", owner, 200)?,
        None => actor.0.clone(),
    };
    let duration: wharf_manifest::values::Duration =
        request
            .duration
            .parse()
            .map_err(|e: wharf_manifest::values::ValueError| {
                OpsError::Invalid(format!(
                    "`{}` is not a duration (like `2h`, `30m`, `1d`): {}",
                    request.duration, e.0
                ))
            })?;
    let duration = duration.as_std();
    if duration.is_zero() || duration > MAX_DURATION {
        return Err(OpsError::Invalid(format!(
            "a silence lasts more than 0 and at most 30d, not `{}`",
            request.duration
        )));
    }
    let ends_at = now
        .checked_add(jiff::SignedDuration::try_from(duration).unwrap_or_default())
        .map_err(|_| OpsError::Invalid("the silence would end past year 9999".to_owned()))?;
    store.atomically(|store| {
        let id = store.new_silence_id(&ends_at.to_string())?;
        let silence = Silence {
            id: format!("s-{id}"),
            matchers: request.matchers.clone(),
            owner: owner.clone(),
            reason: reason.clone(),
            maintenance: request.maintenance,
            created_by: actor.0.clone(),
            starts_at: now.to_string(),
            ends_at: ends_at.to_string(),
            expired_at: None,
            expired_by: None,
        };
        save(store, &silence)?;
        append(
            store,
            actor,
            KnownAction::SilenceCreate,
            &target(id),
            json!({
                "id": silence.id,
                "matchers": silence.matchers.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "owner": silence.owner,
                "reason": silence.reason,
                "starts_at": silence.starts_at,
                "ends_at": silence.ends_at,
                "maintenance": silence.maintenance,
            }),
        )?;
        Ok(silence)
    })
}

fn save(store: &mut Store, silence: &Silence) -> Result<(), OpsError> {
    let doc = serde_json::to_string(silence).map_err(|e| OpsError::Invalid(e.to_string()))?;
    store.save_silence(
        number(silence),
        &silence.ends_at,
        silence.expired_at.as_deref(),
        &doc,
    )?;
    Ok(())
}

fn read(store: &Store, id: u64) -> Result<Silence, OpsError> {
    let doc = store
        .silence(id)?
        .ok_or_else(|| OpsError::NotFound(format!("no silence s-{id}")))?;
    serde_json::from_str(&doc)
        .map_err(|e| OpsError::Invalid(format!("silence s-{id} does not decode: {e}")))
}

/// Ends a silence before its time (an operator's decision, recorded with who).
pub fn expire(
    store: &mut Store,
    actor: &Actor,
    id: u64,
    now: Timestamp,
) -> Result<Silence, OpsError> {
    store.atomically(|store| {
        let mut silence = read(store, id)?;
        if let Some(at) = &silence.expired_at {
            return Err(OpsError::Conflict(format!(
                "silence s-{id} already ended at {at}"
            )));
        }
        let ran_out = silence
            .ends_at
            .parse::<Timestamp>()
            .is_ok_and(|end| end <= now);
        silence.expired_at = Some(now.to_string());
        silence.expired_by = (!ran_out).then(|| actor.0.clone());
        save(store, &silence)?;
        append(
            store,
            actor,
            KnownAction::SilenceExpire,
            &target(id),
            json!({
                "id": silence.id,
                "matchers": silence.matchers.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "ran_out": ran_out,
                "ends_at": silence.ends_at,
                "maintenance": silence.maintenance,
            }),
        )?;
        Ok(silence)
    })
}

/// Marks every silence whose end has passed as expired (actor: whoever notices — the control
/// plane), each with its entry; answers them.
pub fn expire_due(
    store: &mut Store,
    actor: &Actor,
    now: Timestamp,
) -> Result<Vec<Silence>, OpsError> {
    let due: Vec<u64> = active(store)?
        .iter()
        .filter(|s| s.ends_at.parse::<Timestamp>().is_ok_and(|end| end <= now))
        .map(number)
        .collect();
    due.into_iter()
        .map(|id| expire(store, actor, id, now))
        .collect()
}

/// Silences not yet marked expired, oldest first (some may have run out since).
pub fn active(store: &Store) -> Result<Vec<Silence>, OpsError> {
    decode_all(store.silences(false, 10_000)?)
}

/// The last `limit` silences of any state, newest first.
pub fn recent(store: &Store, limit: u32) -> Result<Vec<Silence>, OpsError> {
    decode_all(store.silences(true, limit)?)
}

fn decode_all(docs: Vec<String>) -> Result<Vec<Silence>, OpsError> {
    Ok(docs
        .iter()
        .filter_map(|doc| match serde_json::from_str(doc) {
            Ok(silence) => Some(silence),
            Err(error) => {
                tracing::error!(%error, "a stored silence does not decode");
                None
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_api::Matcher;

    fn request(duration: &str) -> CreateSilenceRequest {
        CreateSilenceRequest {
            matchers: vec![Matcher::parse("service=db").unwrap()],
            owner: None,
            reason: "failover test".to_owned(),
            duration: duration.to_owned(),
            maintenance: true,
        }
    }

    fn entries(store: &Store) -> Vec<String> {
        store
            .ledger_entries(&Default::default())
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect()
    }

    #[test]
    fn a_silence_is_created_expired_and_run_out_with_an_entry_each() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let actor = Actor("ana".to_owned());
        let now: Timestamp = "2026-12-05T10:00:00Z".parse().unwrap();
        let one = create(&mut store, &actor, &request("2h"), now).unwrap();
        assert_eq!(one.id, "s-1");
        assert_eq!(one.owner, "ana");
        assert_eq!(one.ends_at, "2026-12-05T12:00:00Z");
        let two = create(&mut store, &actor, &request("10m"), now).unwrap();
        assert_eq!(active(&store).unwrap().len(), 2);
        let ended = expire(&mut store, &Actor("bo".to_owned()), 1, now).unwrap();
        assert_eq!(ended.expired_by.as_deref(), Some("bo"));
        assert!(matches!(
            expire(&mut store, &actor, 1, now),
            Err(OpsError::Conflict(_))
        ));
        let later: Timestamp = "2026-12-05T10:11:00Z".parse().unwrap();
        let ran_out = expire_due(&mut store, &Actor("wharf".to_owned()), later).unwrap();
        assert_eq!(ran_out.len(), 1);
        assert_eq!(ran_out[0].id, two.id);
        assert_eq!(ran_out[0].expired_by, None);
        assert!(active(&store).unwrap().is_empty());
        assert_eq!(
            entries(&store),
            [
                "silence.create",
                "silence.create",
                "silence.expire",
                "silence.expire"
            ]
        );
    }

    #[test]
    fn bad_silences_are_refused_and_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let actor = Actor("ana".to_owned());
        let now = Timestamp::now();
        for duration in ["0s", "31d", "forever", ""] {
            let error = create(&mut store, &actor, &request(duration), now).unwrap_err();
            assert!(matches!(error, OpsError::Invalid(_)), "{duration}: {error}");
        }
        let mut no_matchers = request("1h");
        no_matchers.matchers.clear();
        assert!(create(&mut store, &actor, &no_matchers, now).is_err());
        let mut blank = request("1h");
        blank.reason = "  ".to_owned();
        assert!(create(&mut store, &actor, &blank, now).is_err());
        assert!(matches!(
            expire(&mut store, &actor, 9, now),
            Err(OpsError::NotFound(_))
        ));
        assert!(entries(&store).is_empty());
        assert!(recent(&store, 10).unwrap().is_empty());
    }
}
