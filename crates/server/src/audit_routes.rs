//! Reading the ledger over the API: a page of entries, a verification, an inclusion proof —
//! what `wharf audit log|verify|prove` print, for the dashboard and for programs.
//!
//! Each runs on a blocking thread through one read-only connection (`Store::open_reader`,
//! opened once from the writer's on its thread, then kept): SQLite's WAL lets it read beside
//! the writer, so recomputing a large ledger never holds up a write. The verifier key comes
//! from the writer thread (creating the ledger's key on first use is a write).

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Deserialize;
use wharf_api::{
    ApiErrorBody, AuditEntry, AuditPage, AuditVerification, ErrorCode, HealthTransition,
    InclusionProofAnswer,
};
use wharf_ledger::{Entry, Ledger, RawEntry, VerifierKey, to_hex};
use wharf_store::Store;

use crate::{ApiError, AppState, authorize, gone};

/// The most entries one page holds.
pub const MAX_PAGE: u32 = 500;

/// The read-only connection the ledger routes share. One reader at a time (they are rare and
/// short; a verification holds it for as long as it reads): callers wait for it without
/// holding a runtime thread, and the read itself runs on a blocking thread.
#[derive(Clone, Default)]
pub(crate) struct LedgerReader {
    store: Arc<tokio::sync::Mutex<Option<Store>>>,
}

impl LedgerReader {
    /// Runs `read` over the ledger on a blocking thread.
    async fn read<T: Send + 'static>(
        &self,
        state: &AppState,
        read: impl FnOnce(&Ledger<&mut Store>) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let mut guard = self.store.clone().lock_owned().await;
        if guard.is_none() {
            let store = state
                .handle
                .writer()
                .run(|store| store.open_reader())
                .await
                .ok_or_else(gone)?
                .map_err(internal("cannot open the ledger for reading"))?;
            *guard = Some(store);
        }
        tokio::task::spawn_blocking(move || {
            let store = guard.as_mut().ok_or_else(gone)?;
            read(&Ledger::new(store))
        })
        .await
        .map_err(|_| ApiError::new(ErrorCode::Internal, "the ledger read failed"))?
    }

    /// Runs `read` over the store (read-only) on a blocking thread.
    pub(crate) async fn store<T: Send + 'static>(
        &self,
        state: &AppState,
        read: impl FnOnce(&Store) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        self.read(state, move |ledger| read(ledger.storage())).await
    }

    /// The ledger's size.
    pub(crate) async fn size(&self, state: &AppState) -> Result<u64, ApiError> {
        self.read(state, |ledger| {
            ledger
                .size()
                .map_err(internal("cannot read the ledger's size"))
        })
        .await
    }
}

fn internal<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> ApiError {
    move |error| {
        tracing::error!(%error, "{what}");
        ApiError::new(ErrorCode::Internal, what)
    }
}

/// `GET /v1/audit/entries`'s query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// Entries with a smaller seq only (the previous page's `next_before`).
    before: Option<u64>,
    /// At most this many entries (1…500, default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// A page of the ledger, newest first.
#[utoipa::path(get, path = "/v1/audit/entries", tag = "audit", security((), ("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "Entries, newest first", body = AuditPage),
        (status = 400, description = "A query parameter is out of range or unknown", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 500, description = "The ledger is unreadable", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn entries(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let Query(query) = query.map_err(|rejection| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("invalid query: {}", rejection.body_text()),
        )
    })?;
    let limit = page_limit(query.limit)?;
    let before = query.before;
    let reader = state.ledger_reader.clone();
    let page = reader
        .read(&state, move |ledger| page(ledger, before, limit))
        .await?;
    Ok(Json(page).into_response())
}

/// A page's size: `limit`, 100 when not given, refused outside 1…[`MAX_PAGE`].
pub fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    let limit = limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("invalid query: `limit` must be between 1 and {MAX_PAGE}, not {limit}"),
        ));
    }
    Ok(limit)
}

/// A page of `limit` entries before seq `before` (newest first), for the API's readers and
/// for wharf's cluster controller, which serves the same page from its standby too.
pub fn page(
    ledger: &Ledger<&mut Store>,
    before: Option<u64>,
    limit: u32,
) -> Result<AuditPage, ApiError> {
    let size = ledger
        .size()
        .map_err(internal("cannot read the ledger's size"))?;
    // One row more than asked says whether an older page exists.
    let mut rows = ledger
        .storage()
        .ledger_page(before, limit + 1)
        .map_err(internal("cannot read the ledger"))?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_before = rows
        .last()
        .filter(|_| more)
        .map(|last| last.seq.max(0) as u64);
    Ok(AuditPage {
        size,
        entries: rows.into_iter().map(audit_entry).collect(),
        next_before,
    })
}

/// A stored row for reading: its details as JSON when they parse, and why it does not decode
/// into an entry when it does not.
fn audit_entry(raw: RawEntry) -> AuditEntry {
    let details = serde_json::from_str(&raw.details)
        .unwrap_or_else(|_| serde_json::Value::String(raw.details.clone()));
    let (seq, time, actor, action, target) = (
        raw.seq.max(0) as u64,
        raw.time.clone(),
        raw.actor.clone(),
        raw.action.clone(),
        raw.target.clone(),
    );
    let unreadable = Entry::try_from(raw).err().map(|e| e.to_string());
    AuditEntry {
        seq,
        time,
        actor,
        action,
        target,
        details,
        unreadable,
    }
}

/// The whole ledger recomputed and checked against its signed checkpoints.
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit", security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The verification's result (`ok` false when it failed, a key problem included): read-only, against the verifier key pinned in the database", body = AuditVerification),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 500, description = "The ledger or its key is unreadable", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn verify(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let state_dir = state.handle.state_dir().to_owned();
    let reader = state.ledger_reader.clone();
    let answer = reader
        .read(&state, move |ledger| verification(ledger, &state_dir))
        .await?;
    Ok(Json(answer).into_response())
}

/// The whole ledger recomputed and checked against its signed checkpoints and the verifier
/// key pinned in the database (no key file is read or made): `ok` false, with the reason,
/// when it fails.
pub fn verification(
    ledger: &Ledger<&mut Store>,
    state_dir: &std::path::Path,
) -> Result<AuditVerification, ApiError> {
    let b64 = |hash: &[u8]| base64::engine::general_purpose::STANDARD.encode(hash);
    let unreadable = internal("cannot read the ledger");
    let size = ledger.size().map_err(unreadable)?;
    let root = ledger
        .root(size)
        .map_err(internal("cannot read the ledger"))?;
    let failed = |failure: String| AuditVerification {
        ok: false,
        size,
        root: b64(&root),
        checkpoints_verified: 0,
        latest_checkpoint_size: None,
        failure: Some(failure),
        failure_seq: None,
        unpinned: false,
    };
    let store = ledger.storage();
    if let Some(reason) = store
        .forgotten_ledger(state_dir)
        .map_err(internal("cannot read the ledger's key"))?
    {
        return Ok(failed(reason));
    }
    // The verifier pinned in the database: no key file is read or made by a GET.
    let pinned = store
        .pinned_verifier()
        .map_err(internal("cannot read the ledger's key"))?;
    let verifier = match pinned.as_deref().map(VerifierKey::parse) {
        Some(Ok(verifier)) => verifier,
        Some(Err(error)) => {
            return Ok(failed(format!(
                "the verifier key pinned in the database does not parse: {error}"
            )));
        }
        // No key was ever made: nothing was signed, and an empty ledger verifies.
        None if size == 0 => {
            return Ok(AuditVerification {
                failure: None,
                ok: true,
                ..failed(String::new())
            });
        }
        None => {
            return Ok(AuditVerification {
                unpinned: true,
                ..failed(
                    "entries exist but no ledger key was ever pinned: run `wharf audit verify`"
                        .to_owned(),
                )
            });
        }
    };
    let report = ledger
        .verify(&verifier)
        .map_err(internal("cannot read the ledger"))?;
    Ok(AuditVerification {
        ok: report.failure.is_none(),
        size: report.size,
        root: b64(&report.root),
        checkpoints_verified: report.checkpoints_ok as u64,
        latest_checkpoint_size: report.latest.as_ref().map(|c| c.size),
        failure: report.failure.as_ref().map(ToString::to_string),
        failure_seq: report.failure.as_ref().and_then(|f| f.first_seq()),
        unpinned: false,
    })
}

/// An inclusion proof of entry `seq`: in the latest signed checkpoint's tree when that covers
/// it (so the proof checks against a signed root), else in the whole ledger's.
#[utoipa::path(get, path = "/v1/audit/entries/{seq}/proof", tag = "audit", security((), ("bearer" = [])),
    params(("seq" = u64, Path, description = "The entry", example = 0)),
    responses(
        (status = 200, description = "The proof, checked before it is sent", body = InclusionProofAnswer),
        (status = 400, description = "The path does not decode", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 404, description = "No entry has that seq", body = ApiErrorBody),
        (status = 500, description = "The stored tree is inconsistent (run a verification)", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn proof(
    State(state): State<AppState>,
    headers: HeaderMap,
    seq: Result<UrlPath<u64>, PathRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let UrlPath(seq) = seq?;
    let reader = state.ledger_reader.clone();
    let answer = reader
        .read(&state, move |ledger| {
            let unreadable = internal("cannot read the ledger");
            let current = ledger.size().map_err(unreadable)?;
            if seq >= current {
                return Err(ApiError::new(
                    ErrorCode::NotFound,
                    format!("no entry has seq {seq}: the ledger has {current} entries"),
                ));
            }
            let latest = ledger
                .latest_checkpoint()
                .map_err(internal("cannot read the checkpoints"))?;
            let signed = latest.filter(|l| l.checkpoint.size > seq);
            let size = signed.as_ref().map_or(current, |l| l.checkpoint.size);
            let inconsistent = || {
                ApiError::new(
                    ErrorCode::Internal,
                    "the stored tree is inconsistent; verify the ledger",
                )
            };
            let proof = ledger
                .prove_inclusion(seq, size)
                .map_err(|_| inconsistent())?;
            let leaf = ledger.leaf_hash(seq).map_err(|_| inconsistent())?;
            let root = ledger.root(size).map_err(|_| inconsistent())?;
            proof.verify(&leaf, &root).map_err(|_| inconsistent())?;
            let leaf_bytes = match ledger
                .storage()
                .ledger_entry(seq)
                .map_err(internal("cannot read the ledger"))?
                .map(Entry::try_from)
            {
                Some(Ok(entry)) => String::from_utf8_lossy(&entry.leaf_bytes()).into_owned(),
                _ => return Err(inconsistent()),
            };
            Ok(InclusionProofAnswer {
                seq,
                tree_size: size,
                leaf: leaf_bytes,
                leaf_hash: to_hex(&leaf),
                root: to_hex(&root),
                proof: proof.path.iter().map(|h| to_hex(h)).collect(),
                checkpoint: signed.map(|l| l.note),
            })
        })
        .await?;
    Ok(Json(answer).into_response())
}

/// A service's recorded state changes, newest last (at most 50): the history behind
/// `status`'s one current state.
#[utoipa::path(get, path = "/v1/services/{name}/health-history", tag = "health", security((), ("bearer" = [])),
    params(("name" = String, Path, description = "The service", example = "api")),
    responses(
        (status = 200, description = "State changes, oldest first (none for a name never recorded)", body = Vec<HealthTransition>),
        (status = 400, description = "The path does not decode", body = ApiErrorBody),
        (status = 401, description = "Missing or wrong bearer token (TCP)", body = ApiErrorBody),
        (status = 500, description = "The store is unreadable", body = ApiErrorBody),
        (status = 503, description = "The control plane is stopping", body = ApiErrorBody),
    ))]
pub(crate) async fn health_history(
    State(state): State<AppState>,
    headers: HeaderMap,
    name: Result<UrlPath<String>, PathRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let UrlPath(name) = name?;
    let reader = state.ledger_reader.clone();
    let history = reader
        .store(&state, move |store| {
            store
                .health_history_of(&name, 50)
                .map_err(internal("cannot read the health history"))
        })
        .await?;
    let history: Vec<HealthTransition> = history
        .into_iter()
        .map(|event| HealthTransition {
            time: event.time,
            state: event.state,
            reason: event.reason,
        })
        .collect();
    Ok(Json(history).into_response())
}
