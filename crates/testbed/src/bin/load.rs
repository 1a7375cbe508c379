//! The `wharf-load` binary: run one open-loop load plan against a URL and print the JSON
//! summary. Ctrl-C stops early and still prints what was measured.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use wharf_testbed::load::{self, LoadPlan};
use wharf_testbed::parse_duration;

/// Send GET requests to a URL at a fixed rate (open loop: responses never slow the schedule)
/// and print a JSON summary: counts, per-version and per-status tallies, latency quantiles,
/// failure offsets and the achieved rate.
#[derive(Debug, Parser)]
#[command(name = "wharf-load", disable_version_flag = true)]
struct Args {
    /// The URL to load, `http://HOST:PORT/PATH`.
    #[arg(long)]
    url: String,
    /// Requests per second.
    #[arg(long)]
    rate: f64,
    /// Stop after this many requests.
    #[arg(long, value_name = "N")]
    requests: Option<u64>,
    /// Stop sending after this long: `10s`, `500ms`, `2m`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Keep-alive connections held open (more open when all are busy).
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Requests in flight at most.
    #[arg(long, default_value_t = 512)]
    max_in_flight: usize,
    /// Per-request timeout.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
    /// An extra request header `NAME:VALUE` (repeatable).
    #[arg(long = "header", value_name = "NAME:VALUE", value_parser = parse_header)]
    headers: Vec<(String, String)>,
}

fn parse_header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("`{text}`: a header is NAME:VALUE"))?;
    Ok((name.trim().to_owned(), value.trim().to_owned()))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let plan = LoadPlan {
        max_requests: args.requests,
        max_duration: args.duration,
        connections: args.connections,
        max_in_flight: args.max_in_flight,
        timeout: args.timeout,
        headers: args.headers,
        ..LoadPlan::new(args.url, args.rate)
    };
    let run = match load::start(plan) {
        Ok(run) => run,
        Err(err) => {
            eprintln!("wharf-load: {err}");
            return ExitCode::from(2);
        }
    };
    // A small runtime of its own only to watch for Ctrl-C while this thread waits.
    let signals = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build();
    if let Ok(signals) = &signals {
        let stopper = run.stopper();
        signals.spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stopper.stop();
            }
        });
    }
    let report = run.wait();
    match serde_json::to_string_pretty(&report.as_json()) {
        Ok(text) => println!("{text}"),
        Err(err) => {
            eprintln!("wharf-load: cannot print the summary: {err}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
