//! `wharf promote export|verify|import`: promotion evidence between environments, each with
//! its own state directory and ledger. `export` (in the source environment, e.g. staging)
//! writes a bundle: the ledger entries of a version's successful rollout of a service and the
//! passing gate verdicts for it, each with an RFC 9162 inclusion proof against a signed C2SP
//! checkpoint, and the ledger's verifier key. `verify` checks a bundle with nothing but a key;
//! `import` (in the target environment, e.g. prod) verifies it and records it as
//! `promotion.import` through the one writer, which a deploy under `require.promoted_from`
//! then finds. The rules are `wharf_ops::promotion`'s; this module reads files and prints.
//!
//! Exit codes: 0 done / verified, 1 not verified or refused (nothing recorded), 2 unreadable
//! input (the file and the position in it).

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::json;
use wharf_api::{PromotionImportAnswer, PromotionImportRequest};
use wharf_ledger::{Checkpoint, SignedCheckpoint, VerifierKey};
use wharf_ops::OpsErrorKind;
use wharf_ops::promotion::{self, Bundle, KeySource, Verified};

use crate::cli::{Global, Output};
use crate::exit::ExitStatus;
use crate::manifest_file::ManifestFile;

#[derive(Debug, clap::Subcommand)]
pub enum PromoteCommand {
    /// Write a bundle proving SERVICE's successful rollout of VERSION in this environment
    /// (ledger entries with inclusion proofs against a signed checkpoint). Exit 1 when this
    /// ledger shows no successful rollout of that version.
    #[command(disable_version_flag = true)]
    Export(ExportArgs),
    /// Verify a bundle independently of this state: checkpoint signature, each entry's leaf
    /// hash and inclusion proof, the rollout it claims. Exit 0 verified, 1 not, 2 unreadable.
    Verify(VerifyArgs),
    /// Verify a bundle and record it (`promotion.import`), so a deploy of its version into an
    /// environment with `require.promoted_from` may go ahead. Exit 1 when it does not verify.
    Import(ImportArgs),
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The service.
    pub service: String,
    /// The version whose successful rollout the bundle proves.
    pub version: String,
    /// The environment this state directory runs (the bundle says it came from it).
    #[arg(long = "env", value_name = "ENV")]
    pub env: Option<String>,
    /// Write the bundle to FILE instead of standard output.
    #[arg(long = "out", short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The bundle file.
    pub bundle: PathBuf,
    /// The source ledger's verifier key (`NAME+KEYID+BASE64`, what `wharf audit key` prints
    /// there). Without it the bundle's own key is used, which proves only self-consistency.
    #[arg(long, value_name = "VERIFIER_KEY")]
    pub key: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The bundle file.
    pub bundle: PathBuf,
    /// The key to verify with; default: `require.promoted_from.key` of the manifest's
    /// environment (`--env`), else the bundle's own key.
    #[arg(long, value_name = "VERIFIER_KEY")]
    pub key: Option<String>,
    /// The environment this state directory runs (whose `require.promoted_from` applies).
    #[arg(long = "env", value_name = "ENV")]
    pub env: Option<String>,
}

pub fn run(global: &Global, command: PromoteCommand) -> anyhow::Result<ExitStatus> {
    match command {
        PromoteCommand::Export(args) => export(global, &args),
        PromoteCommand::Verify(args) => verify(global, &args),
        PromoteCommand::Import(args) => import(global, &args),
    }
}

fn export(global: &Global, args: &ExportArgs) -> anyhow::Result<ExitStatus> {
    let manifest = ManifestFile::read(global)?;
    let loaded = manifest.load(args.env.as_deref());
    let Some(stack) = loaded
        .stack
        .filter(|_| !loaded.diagnostics.iter().any(|d| d.is_error()))
    else {
        manifest.print_diagnostics(&loaded.diagnostics, Output::Human)?;
        eprintln!(
            "error: {} is not valid; see `wharf validate`",
            manifest.display
        );
        return Ok(ExitStatus::Invalid);
    };
    let Some(env) = stack.environment.clone() else {
        eprintln!(
            "error: the bundle must say which environment it comes from: pass --env (one of {}'s `environments:`)",
            manifest.display
        );
        return Ok(ExitStatus::Invalid);
    };
    let ledger = crate::cmd::audit::open(global)?;
    let entries = match promotion::evidence(ledger.storage(), &args.service, &args.version) {
        Ok(entries) => entries,
        Err(error) if error.kind() == OpsErrorKind::NotFound => {
            eprintln!("error: {error}");
            return Ok(ExitStatus::Failed);
        }
        Err(error) => return Err(error.into()),
    };
    let verifier = crate::cmd::audit::verifier(global)?;
    let last = entries.iter().map(|e| e.seq).max().unwrap_or(0);
    // A checkpoint covering the evidence: the latest if it does, else a fresh one signed
    // through the one writer (like `audit checkpoint`).
    let checkpoint = match ledger
        .latest_checkpoint()?
        .filter(|c| c.checkpoint.size > last)
    {
        Some(checkpoint) => checkpoint,
        None => {
            let (_, note) = crate::cmd::audit::sign_checkpoint(global)?;
            let checkpoint =
                Checkpoint::peek(&note).context("the signed checkpoint does not parse")?;
            SignedCheckpoint { checkpoint, note }
        }
    };
    let bundle = promotion::build(
        &ledger,
        (&stack.name, &env),
        &args.service,
        &args.version,
        &verifier,
        &checkpoint,
        &entries,
    )?;
    // What leaves this machine verifies, or it does not leave.
    let verified = promotion::verify(&bundle, Some(&verifier))
        .context("the bundle just built does not verify; run `wharf audit verify`")?;
    let text = serde_json::to_string_pretty(&bundle)? + "\n";
    match &args.out {
        Some(path) => std::fs::write(path, &text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{text}"),
    }
    let told = format!(
        "exported {}@{} from `{env}`: rollout {}, {} entries, gates passed: {}; checkpoint of size {} signed by {}",
        args.service,
        args.version,
        verified.rollout,
        verified.seqs.len(),
        list(&verified.gates),
        verified.checkpoint.size,
        verified.key
    );
    // The bundle may be on stdout: the summary goes to stderr then.
    match (&args.out, global.output) {
        (Some(path), Output::Json) => {
            let mut value = promotion::summary(&verified);
            value["bundle"] = json!(path);
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        (Some(_), Output::Human) => println!("{told}"),
        (None, _) => eprintln!("{told}"),
    }
    Ok(ExitStatus::Ok)
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

/// A bundle file read and parsed; `Err` is the message for exit code 2 (file and position).
fn read_bundle(path: &Path) -> Result<(Vec<u8>, Bundle), String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| {
            f.take(promotion::MAX_BUNDLE_BYTES as u64 + 1)
                .read_to_end(&mut bytes)
        })
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let bundle = promotion::parse(&bytes).map_err(|e| {
        format!(
            "{}:{}:{}: not a promotion bundle: {}",
            path.display(),
            e.line,
            e.column,
            e.message
        )
    })?;
    Ok((bytes, bundle))
}

fn parse_key(text: &str) -> Result<VerifierKey, String> {
    VerifierKey::parse(text).map_err(|e| format!("--key: {e} (expected NAME+KEYID+BASE64)"))
}

fn print_verified(global: &Global, verified: &Verified, path: &Path) -> anyhow::Result<()> {
    if global.output == Output::Json {
        let mut value = promotion::summary(verified);
        value["verified"] = json!(true);
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!(
        "verified: {} proves {}@{} rolled out successfully in `{}` (stack {}, rollout {}); gates passed: {}",
        path.display(),
        verified.service,
        verified.version,
        verified.env,
        verified.stack,
        verified.rollout,
        list(&verified.gates)
    );
    println!(
        "{} entries included in the checkpoint of size {} signed by {}",
        verified.seqs.len(),
        verified.checkpoint.size,
        verified.key
    );
    Ok(())
}

fn not_verified(global: &Global, path: &Path, why: &str) -> anyhow::Result<ExitStatus> {
    if global.output == Output::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"verified": false, "failure": why}))?
        );
    }
    eprintln!("NOT VERIFIED: {}: {why}", path.display());
    Ok(ExitStatus::Failed)
}

const OWN_KEY_NOTE: &str = "note: no key given: checked with the bundle's own verifier key, which proves the bundle is self-consistent, not which ledger it comes from; pass --key";

fn verify(global: &Global, args: &VerifyArgs) -> anyhow::Result<ExitStatus> {
    let (_, bundle) = match read_bundle(&args.bundle) {
        Ok(read) => read,
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(ExitStatus::Invalid);
        }
    };
    let key = match args.key.as_deref().map(parse_key).transpose() {
        Ok(key) => key,
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(ExitStatus::Invalid);
        }
    };
    match promotion::verify(&bundle, key.as_ref()) {
        Ok(verified) => {
            if verified.key_source == KeySource::Bundle {
                eprintln!("{OWN_KEY_NOTE}");
            }
            print_verified(global, &verified, &args.bundle)?;
            Ok(ExitStatus::Ok)
        }
        Err(error) => not_verified(global, &args.bundle, &error.to_string()),
    }
}

/// The key an import checks with, and the environment the manifest requires the bundle from.
fn import_key(
    global: &Global,
    args: &ImportArgs,
) -> Result<(Option<String>, Option<String>), String> {
    if let Some(key) = &args.key {
        parse_key(key)?;
        return Ok((Some(key.clone()), None));
    }
    // The manifest's requirement, when there is a readable manifest that states one.
    let Ok(manifest) = ManifestFile::read(global) else {
        return Ok((None, None));
    };
    let loaded = manifest.load(args.env.as_deref());
    if loaded.diagnostics.iter().any(|d| d.is_error()) {
        return Err(format!(
            "{} is not valid (see `wharf validate`): cannot tell which key `require.promoted_from` names; pass --key",
            manifest.display
        ));
    }
    let from = loaded
        .stack
        .and_then(|s| s.require.clone())
        .and_then(|r| r.promoted_from);
    Ok(match from {
        Some(from) => (Some(from.key), Some(from.env)),
        None => (None, None),
    })
}

fn import(global: &Global, args: &ImportArgs) -> anyhow::Result<ExitStatus> {
    let (bytes, bundle) = match read_bundle(&args.bundle) {
        Ok(read) => read,
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(ExitStatus::Invalid);
        }
    };
    let (key, from_env) = match import_key(global, args) {
        Ok(found) => found,
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(ExitStatus::Invalid);
        }
    };
    let parsed = key.as_deref().map(parse_key).transpose();
    let parsed = match parsed {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(ExitStatus::Invalid);
        }
    };
    // Checked here first for a clear exit code; the writer checks again before recording.
    let verified = match promotion::verify(&bundle, parsed.as_ref()) {
        Ok(verified) => verified,
        Err(error) => return not_verified(global, &args.bundle, &error.to_string()),
    };
    if let Some(env) = from_env.filter(|env| *env != verified.env) {
        return not_verified(
            global,
            &args.bundle,
            &format!(
                "this environment requires promotion from `{env}`; the bundle comes from `{}`",
                verified.env
            ),
        );
    }
    if verified.key_source == KeySource::Bundle {
        eprintln!("{OWN_KEY_NOTE}");
    }
    let text = String::from_utf8(bytes).context("a parsed bundle is UTF-8")?;
    let state_dir = global.state_dir();
    let recorded: Result<PromotionImportAnswer, String> = match crate::writer::route(&state_dir)? {
        crate::writer::Route::Api => {
            let request = PromotionImportRequest {
                bundle: text,
                key: key.clone(),
            };
            match crate::writer::call(&state_dir, "POST", "/v1/promotions", &request) {
                Ok(answer) => Ok(answer),
                Err(err) => match err.downcast_ref::<crate::client::ApiRejected>() {
                    Some(rejected) if rejected.status == 400 => Err(rejected.message.clone()),
                    _ => return Err(err),
                },
            }
        }
        crate::writer::Route::Local(lock) => {
            let mut store = wharf_ops::read::open(&lock)?;
            let actor = wharf_ops::Actor(crate::cmd::audit::actor());
            match promotion::import(&mut store, &actor, text.as_bytes(), key.as_deref()) {
                Ok((entry, details)) => Ok(PromotionImportAnswer {
                    seq: entry.seq,
                    bundle_sha256: details.bundle_sha256,
                    env: details.env,
                    service: details.service,
                    version: details.version,
                    key: details.key,
                    gates: details.gates,
                }),
                Err(error) if error.kind() == OpsErrorKind::Invalid => Err(error.to_string()),
                Err(error) => return Err(error.into()),
            }
        }
    };
    let answer = match recorded {
        Ok(answer) => answer,
        Err(why) => return not_verified(global, &args.bundle, &why),
    };
    match global.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&answer)?),
        Output::Human => println!(
            "imported: {}@{} from `{}` (bundle sha256 {}), verified with {}; ledger entry seq {}",
            answer.service,
            answer.version,
            answer.env,
            answer.bundle_sha256,
            answer.key,
            answer.seq
        ),
    }
    Ok(ExitStatus::Ok)
}
