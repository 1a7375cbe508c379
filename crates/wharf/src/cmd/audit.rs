//! `wharf audit …`: the tamper-evident ledger from the command line.
//!
//! None of these commands reads the manifest: they only need the state directory, so an
//! auditor can check a copied `.wharf/` without the stack's files.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use comfy_table::Table;
use serde_json::{Value, json};
use wharf_api::{NoteAnswer, NoteRequest};
use wharf_ledger::{
    Checkpoint, Entry, Hash, Ledger, Mismatch, RawEntry, Report, VerifierKey, to_hex,
};
use wharf_ops::read::{EntryFilter, StateDb};

use crate::cli::{Global, Output};
use crate::exit::ExitStatus;

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// List ledger entries (oldest first).
    Log(LogArgs),
    /// Recompute every leaf and the tree, check the signed checkpoints; exit 1 on tampering.
    Verify {
        /// A checkpoint saved earlier: check that today's ledger still extends it.
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
    },
    /// Sign a checkpoint of the ledger as it is now, store it and print the signed note.
    Checkpoint,
    /// Print an inclusion proof for entry SEQ.
    Prove {
        /// The entry's sequence number (the first entry is 0).
        seq: u64,
        /// The tree size to prove against (default: the latest checkpoint, else the ledger).
        #[arg(long, value_name = "N")]
        size: Option<u64>,
    },
    /// Print the verifier key an outside party needs to check checkpoints.
    Key,
    /// Write entries.jsonl, checkpoint and verifier.key into DIR for an outside verifier.
    Export {
        /// The directory to write (created if missing).
        dir: PathBuf,
    },
    /// Append an operator note to the ledger.
    Note {
        /// The text of the note.
        text: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct LogArgs {
    /// Only entries at or after TIME (RFC 3339) or within DURATION (e.g. `2h`, `3 days`).
    #[arg(long, value_name = "TIME|DURATION")]
    since: Option<String>,
    /// Only entries with this action (e.g. `deploy.step`).
    #[arg(long)]
    action: Option<String>,
    /// Only entries with this target.
    #[arg(long)]
    target: Option<String>,
}

pub fn run(global: &Global, command: AuditCommand) -> anyhow::Result<ExitStatus> {
    match command {
        AuditCommand::Log(args) => log(global, &args),
        AuditCommand::Verify { checkpoint } => verify(global, checkpoint.as_deref()),
        AuditCommand::Checkpoint => checkpoint(global),
        AuditCommand::Prove { seq, size } => prove(global, seq, size),
        AuditCommand::Key => key(global),
        AuditCommand::Export { dir } => export(global, &dir),
        AuditCommand::Note { text } => note(global, &text),
    }
}

pub(crate) fn open(global: &Global) -> anyhow::Result<Ledger<StateDb>> {
    Ok(wharf_ops::read::open_ledger(&global.state_dir())?)
}

/// The directory holding the manifest: the ledger key is named after it.
fn manifest_dir(global: &Global) -> std::path::PathBuf {
    let manifest = std::path::absolute(&global.file).unwrap_or_else(|_| global.file.clone());
    manifest
        .parent()
        .map_or_else(|| std::path::PathBuf::from("."), Path::to_path_buf)
}

/// The key that checks this ledger's checkpoints. The signing key behind it is created and
/// pinned on first use — a write, so it is made by the one writer: the running control plane,
/// or this process under the lock.
pub(crate) fn verifier(global: &Global) -> anyhow::Result<VerifierKey> {
    let state_dir = global.state_dir();
    match crate::writer::route(&state_dir)? {
        crate::writer::Route::Api => {
            let answer: wharf_api::VerifierAnswer =
                crate::writer::call(&state_dir, "GET", "/v1/audit/verifier", &json!(null))?;
            Ok(VerifierKey::parse(&answer.verifier_key)
                .context("the control plane sent an unreadable verifier key")?)
        }
        crate::writer::Route::Local(lock) => {
            let mut store = wharf_ops::read::open(&lock)?;
            let origin = wharf_ops::audit::origin(&manifest_dir(global));
            Ok(wharf_ops::audit::signer(&mut store, &state_dir, || origin)?.verifier())
        }
    }
}

/// Signs and stores a checkpoint of the ledger as it is now, through the one writer.
pub(crate) fn sign_checkpoint(global: &Global) -> anyhow::Result<(u64, String)> {
    let state_dir = global.state_dir();
    match crate::writer::route(&state_dir)? {
        crate::writer::Route::Api => {
            let answer: wharf_api::CheckpointAnswer =
                crate::writer::call(&state_dir, "POST", "/v1/audit/checkpoints", &json!({}))?;
            Ok((answer.size, answer.note))
        }
        crate::writer::Route::Local(lock) => {
            let mut store = wharf_ops::read::open(&lock)?;
            let origin = wharf_ops::audit::origin(&manifest_dir(global));
            let signed = wharf_ops::audit::checkpoint(&mut store, &state_dir, || origin)?;
            Ok((signed.checkpoint.size, signed.note))
        }
    }
}

/// `WHARF_ACTOR`, else `$USER@hostname`, else `operator` (see [`wharf_ops::Actor`]).
pub(crate) fn actor() -> String {
    wharf_ops::Actor::from_environment().0
}

fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn b64(hash: &Hash) -> String {
    B64.encode(hash)
}

fn note(global: &Global, text: &str) -> anyhow::Result<ExitStatus> {
    let state_dir = global.state_dir();
    let (seq, entry) = match crate::writer::route(&state_dir)? {
        crate::writer::Route::Api => {
            let request = NoteRequest {
                text: text.to_owned(),
            };
            let answer: NoteAnswer =
                crate::writer::call(&state_dir, "POST", "/v1/audit/notes", &request)?;
            (answer.seq, serde_json::to_value(answer.entry)?)
        }
        crate::writer::Route::Local(lock) => {
            let mut store = wharf_ops::read::open(&lock)?;
            let entry = wharf_ops::audit::note(&mut store, &wharf_ops::Actor(actor()), text)?;
            (entry.seq, entry.to_json())
        }
    };
    match global.output {
        Output::Human => println!("appended entry seq {seq}"),
        Output::Json => print_json(&json!({ "seq": seq, "entry": entry }))?,
    }
    Ok(ExitStatus::Ok)
}

/// `--since`: an RFC 3339 time, or a friendly duration back from now (`90m`, `2 days`).
fn parse_since(text: &str) -> anyhow::Result<jiff::Timestamp> {
    if let Ok(time) = text.parse::<jiff::Timestamp>() {
        return Ok(time);
    }
    let span: jiff::Span = text.parse().with_context(|| {
        format!("--since {text:?}: expected an RFC 3339 time or a duration such as 2h")
    })?;
    let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
    Ok(now
        .checked_sub(span)
        .context("--since: duration out of range")?
        .timestamp())
}

fn log(global: &Global, args: &LogArgs) -> anyhow::Result<ExitStatus> {
    let since = match args.since.as_deref().map(parse_since).transpose() {
        Ok(since) => since,
        Err(error) => {
            eprintln!("error: {error:#}");
            return Ok(ExitStatus::Invalid);
        }
    };
    let filter = EntryFilter {
        action: args.action.clone(),
        target: args.target.clone(),
    };
    let ledger = open(global)?;
    let rows = ledger.storage().ledger_entries(&filter)?;
    let rows: Vec<RawEntry> = rows
        .into_iter()
        .filter(|raw| {
            since.is_none_or(|s| raw.time.parse::<jiff::Timestamp>().map_or(true, |t| t >= s))
        })
        .collect();
    match global.output {
        Output::Human => println!("{}", log_table(&rows)),
        Output::Json => print_json(&Value::Array(rows.into_iter().map(raw_json).collect()))?,
    }
    Ok(ExitStatus::Ok)
}

fn log_table(rows: &[RawEntry]) -> Table {
    let mut table = Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header(["SEQ", "TIME", "ACTOR", "ACTION", "TARGET", "DETAILS"]);
    for raw in rows {
        table.add_row([
            &raw.seq.to_string(),
            &raw.time,
            &raw.actor,
            &raw.action,
            &raw.target,
            &raw.details,
        ]);
    }
    table
}

/// An entry as JSON; a row that no longer decodes is shown as stored, flagged.
fn raw_json(raw: RawEntry) -> Value {
    let shown = json!({ "seq": raw.seq, "time": raw.time, "actor": raw.actor,
        "action": raw.action, "target": raw.target, "details": raw.details });
    match Entry::try_from(raw) {
        Ok(entry) => entry.to_json(),
        Err(error) => json!({ "unreadable": error.to_string(), "stored": shown }),
    }
}

fn verify(global: &Global, saved: Option<&Path>) -> anyhow::Result<ExitStatus> {
    let saved_note = match saved {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the saved checkpoint {}", path.display()))?,
        ),
        None => None,
    };
    // Before anything that could create or pin a key: a key file the database does not know
    // means the ledger it signed is gone, and an empty ledger must not pass for a new one.
    let ledger = open(global)?;
    if let Some(reason) = ledger.storage().forgotten_ledger(&global.state_dir())? {
        let size = ledger.size()?;
        let report = Report {
            size,
            root: ledger.root(size)?,
            checkpoints_ok: 0,
            latest: None,
            failure: Some(Mismatch::Forgotten(reason)),
        };
        print_report(global, &report, None)?;
        return Ok(ExitStatus::Failed);
    }
    let verifier = verifier(global)?;
    let mut report = ledger.verify(&verifier)?;
    let mut saved_size = None;
    if let (None, Some(note)) = (&report.failure, &saved_note) {
        match ledger.check_saved_checkpoint(note, &verifier)? {
            Ok(checkpoint) => saved_size = Some(checkpoint.size),
            Err(finding) => report.failure = Some(finding),
        }
    }
    print_report(global, &report, saved_size)?;
    Ok(if report.failure.is_some() {
        ExitStatus::Failed
    } else {
        ExitStatus::Ok
    })
}

fn print_report(global: &Global, report: &Report, saved_size: Option<u64>) -> anyhow::Result<()> {
    let latest = report.latest.as_ref().map(|c| c.size);
    if report.size > 0 && latest.is_none() && report.failure.is_none() {
        eprintln!("warning: no signed checkpoint yet; run `wharf audit checkpoint`");
    }
    if global.output == Output::Json {
        let failure = report
            .failure
            .as_ref()
            .map(|f: &Mismatch| json!({ "message": f.to_string(), "seq": f.first_seq() }));
        return print_json(&json!({
            "ok": report.failure.is_none(), "size": report.size, "root": b64(&report.root),
            "checkpoints_verified": report.checkpoints_ok, "latest_checkpoint_size": latest,
            "saved_checkpoint_size": saved_size, "failure": failure,
        }));
    }
    if let Some(failure) = &report.failure {
        println!("verification FAILED: {failure}");
        return Ok(());
    }
    println!("ok: {} entries, root {}", report.size, b64(&report.root));
    println!(
        "{} signed checkpoint(s) verified; latest covers {} entries",
        report.checkpoints_ok,
        latest.unwrap_or(0)
    );
    if let Some(size) = saved_size {
        println!("saved checkpoint of size {size} is consistent with today's tree");
    }
    Ok(())
}

fn checkpoint(global: &Global) -> anyhow::Result<ExitStatus> {
    let (size, note) = sign_checkpoint(global)?;
    let Ok(checkpoint) = Checkpoint::peek(&note) else {
        anyhow::bail!("the signed checkpoint does not parse");
    };
    match global.output {
        Output::Human => print!("{note}"),
        Output::Json => print_json(&json!({
            "size": size, "root": b64(&checkpoint.root), "note": note,
        }))?,
    }
    Ok(ExitStatus::Ok)
}

fn prove(global: &Global, seq: u64, size: Option<u64>) -> anyhow::Result<ExitStatus> {
    let ledger = open(global)?;
    let latest = ledger.latest_checkpoint()?;
    let size = match (size, &latest) {
        (Some(size), _) => size,
        (None, Some(latest)) if latest.checkpoint.size > seq => latest.checkpoint.size,
        (None, _) => ledger.size()?,
    };
    let current = ledger.size()?;
    if seq >= size || size > current {
        eprintln!(
            "error: entry seq {seq} is not in a tree of size {size} (the ledger has {current} entries)"
        );
        return Ok(ExitStatus::Invalid);
    }
    let proof = ledger.prove_inclusion(seq, size)?;
    let (leaf, root) = (ledger.leaf_hash(seq)?, ledger.root(size)?);
    proof
        .verify(&leaf, &root)
        .context("the stored tree is inconsistent; run `wharf audit verify`")?;
    let note = latest.filter(|l| l.checkpoint.size == size).map(|l| l.note);
    let leaf_bytes = match ledger.storage().ledger_entry(seq)?.map(Entry::try_from) {
        Some(Ok(entry)) => String::from_utf8(entry.leaf_bytes())?,
        _ => bail!("entry seq {seq} is unreadable; run `wharf audit verify`"),
    };
    let path: Vec<String> = proof.path.iter().map(|h| to_hex(h)).collect();
    if global.output == Output::Json {
        print_json(&json!({
            "seq": seq, "tree_size": size, "leaf": leaf_bytes, "leaf_hash": to_hex(&leaf),
            "root": to_hex(&root), "proof": path, "checkpoint": note,
        }))?;
        return Ok(ExitStatus::Ok);
    }
    println!("entry seq {seq} is leaf {seq} of the tree of size {size}");
    println!("leaf:      {leaf_bytes}");
    println!("leaf hash: {}", to_hex(&leaf));
    println!("root:      {} (base64 {})", to_hex(&root), b64(&root));
    println!("proof ({} hashes, leaf side first):", path.len());
    path.iter().for_each(|h| println!("  {h}"));
    match note {
        Some(note) => print!("signed checkpoint:\n{note}"),
        None => println!(
            "no stored checkpoint has size {size}; run `wharf audit checkpoint` to sign one"
        ),
    }
    Ok(ExitStatus::Ok)
}

fn key(global: &Global) -> anyhow::Result<ExitStatus> {
    let verifier = verifier(global)?;
    match global.output {
        Output::Human => println!("{verifier}"),
        Output::Json => print_json(&json!({ "verifier_key": verifier.to_string() }))?,
    }
    Ok(ExitStatus::Ok)
}

/// Writes what an outside verifier needs; signs a fresh checkpoint first if the latest one
/// does not cover every entry, so the export is checkable end to end.
fn export(global: &Global, dir: &Path) -> anyhow::Result<ExitStatus> {
    let verifier = verifier(global)?;
    let ledger = open(global)?;
    let size = ledger.size()?;
    let latest = ledger
        .latest_checkpoint()?
        .filter(|l| l.checkpoint.size == size)
        .map(|l| l.note);
    let note = match latest {
        Some(note) => note,
        None => sign_checkpoint(global)?.1,
    };
    // The entries the exported checkpoint covers (a writer may have appended since).
    let size = Checkpoint::peek(&note).map_or(size, |c| c.size);
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut lines = String::new();
    for raw in ledger
        .storage()
        .ledger_entries(&EntryFilter::default())?
        .into_iter()
        .filter(|raw| u64::try_from(raw.seq).is_ok_and(|seq| seq < size))
    {
        let seq = raw.seq;
        let entry =
            Entry::try_from(raw).with_context(|| format!("entry seq {seq} is unreadable"))?;
        let leaf = String::from_utf8(entry.leaf_bytes())?;
        lines.push_str(&serde_json::to_string(
            &json!({ "seq": seq, "entry": entry.to_json(), "leaf": leaf }),
        )?);
        lines.push('\n');
    }
    write(&dir.join("entries.jsonl"), &lines)?;
    write(&dir.join("checkpoint"), &note)?;
    write(&dir.join("verifier.key"), &format!("{verifier}\n"))?;
    match global.output {
        Output::Human => println!(
            "exported {size} entries and the checkpoint of size {size} to {}",
            dir.display()
        ),
        Output::Json => print_json(&json!({ "size": size, "dir": dir }))?,
    }
    Ok(ExitStatus::Ok)
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
