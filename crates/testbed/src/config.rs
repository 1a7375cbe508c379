//! The testbed's knobs: command-line flags and the latency distributions they describe.

use std::str::FromStr;
use std::time::Duration;

use clap::Parser;
use rand::Rng;

/// A configurable HTTP service for wharf's tests, demos and benchmarks.
///
/// Routes: `GET /health` (200 while the process runs), `GET /ready` (200 while every
/// `--depends-on` URL answers 2xx and the slow start is over, else 503 with the reasons),
/// `/work?ms=&bytes=` (sleep, then a body of that size), `GET /stats`, `POST /control/ready` and
/// `POST /control/health` with body `true`/`false` (flip readiness or liveness from a test;
/// `hang` makes `/health` never answer),
/// and a default route on every other path. Every response carries the version in its body
/// and in an `X-Version` header.
#[derive(Debug, Clone, Parser)]
#[command(name = "wharf-testbed", disable_version_flag = true)]
pub struct Config {
    /// Port to listen on (loopback unless --host says otherwise); 0 picks a free one, printed
    /// on stdout as `listening on ADDRESS`.
    #[arg(long, env = "PORT")]
    pub port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// The version this instance reports.
    #[arg(long = "version", env = "VERSION", default_value = "0.0.0")]
    pub service_version: String,
    /// The instance name reported in `X-Instance`.
    #[arg(long, env = "INSTANCE", default_value = "0")]
    pub instance: String,
    /// A URL that must answer 2xx for this instance to be ready (repeatable).
    #[arg(long = "depends-on", value_name = "URL")]
    pub depends_on: Vec<String>,
    /// Fraction of default-route and /work requests answered with 500 (0.0 to 1.0).
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    pub error_rate: f64,
    /// Latency added to default-route and /work requests: `20ms`, `uniform:10ms..50ms`,
    /// `normal:50ms,10ms` (mean, standard deviation) or `exp:20ms` (mean).
    #[arg(long, default_value = "0ms")]
    pub latency: Latency,
    /// Serve this many requests, then crash (exit 1) on the next one without answering.
    #[arg(long, value_name = "N")]
    pub crash_after: Option<u64>,
    /// Answer 503 on /ready and the default route for this long after start.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub slow_start: Option<Duration>,
    /// How long a SIGTERM waits for in-flight requests before exiting anyway.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// A PostgreSQL URL (with its password) to connect to on every `/ready`: ready only while
    /// a fresh connection logs in and answers `SELECT 1`. Read from the environment only,
    /// never from the command line, so the password is not in argv.
    #[arg(skip = std::env::var("DATABASE_URL").ok())]
    pub database_url: Option<String>,
}

fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number"))?;
    if (0.0..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!(
            "an error rate lies between 0.0 and 1.0, not {rate}"
        ))
    }
}

/// `250ms`, `5s`, `1.5s`, `2m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("`{text}` needs a unit: ms, s or m"))?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("`{text}`: unknown unit `{unit}`; use ms, s or m")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|err| format!("`{text}`: {err}"))
}

/// How long to delay a response, drawn fresh for each request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Latency {
    Fixed(Duration),
    Uniform(Duration, Duration),
    Normal { mean: Duration, std_dev: Duration },
    Exponential { mean: Duration },
}

impl Latency {
    pub fn sample(&self, rng: &mut impl Rng) -> Duration {
        match *self {
            Latency::Fixed(d) => d,
            Latency::Uniform(low, high) => rng.gen_range(low..=high),
            Latency::Normal { mean, std_dev } => {
                // Box–Muller: one standard normal from two uniforms.
                let (u1, u2): (f64, f64) = (rng.r#gen::<f64>().max(f64::MIN_POSITIVE), rng.r#gen());
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                let secs = mean.as_secs_f64() + z * std_dev.as_secs_f64();
                Duration::from_secs_f64(secs.max(0.0))
            }
            Latency::Exponential { mean } => {
                let u: f64 = rng.r#gen::<f64>().max(f64::MIN_POSITIVE);
                Duration::from_secs_f64(-u.ln() * mean.as_secs_f64())
            }
        }
    }

    pub fn is_zero(&self) -> bool {
        *self == Latency::Fixed(Duration::ZERO)
    }
}

impl FromStr for Latency {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let Some((kind, args)) = text.split_once(':') else {
            return parse_duration(text).map(Latency::Fixed);
        };
        match kind {
            "uniform" => {
                let (low, high) = args
                    .split_once("..")
                    .ok_or("uniform latency is `uniform:LOW..HIGH`")?;
                let (low, high) = (parse_duration(low)?, parse_duration(high)?);
                if low > high {
                    return Err(format!("`{text}`: the low bound is above the high bound"));
                }
                Ok(Latency::Uniform(low, high))
            }
            "normal" => {
                let (mean, std_dev) = args
                    .split_once(',')
                    .ok_or("normal latency is `normal:MEAN,STDDEV`")?;
                Ok(Latency::Normal {
                    mean: parse_duration(mean)?,
                    std_dev: parse_duration(std_dev)?,
                })
            }
            "exp" => Ok(Latency::Exponential {
                mean: parse_duration(args)?,
            }),
            other => Err(format!(
                "unknown latency distribution `{other}`; use uniform, normal or exp"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_forms_parse() {
        assert_eq!(
            "20ms".parse(),
            Ok(Latency::Fixed(Duration::from_millis(20)))
        );
        assert_eq!(
            "uniform:10ms..50ms".parse(),
            Ok(Latency::Uniform(
                Duration::from_millis(10),
                Duration::from_millis(50)
            ))
        );
        assert!("normal:50ms,10ms".parse::<Latency>().is_ok());
        assert!("exp:20ms".parse::<Latency>().is_ok());
        assert!("gauss:1ms".parse::<Latency>().is_err());
        assert!("uniform:50ms..10ms".parse::<Latency>().is_err());
        assert!("20".parse::<Latency>().is_err());
    }

    #[test]
    fn samples_stay_in_bounds() {
        let mut rng = rand::thread_rng();
        let uniform = Latency::Uniform(Duration::from_millis(10), Duration::from_millis(20));
        let normal = Latency::Normal {
            mean: Duration::from_millis(5),
            std_dev: Duration::from_millis(50),
        };
        for _ in 0..1000 {
            let d = uniform.sample(&mut rng);
            assert!(d >= Duration::from_millis(10) && d <= Duration::from_millis(20));
            let _never_negative = normal.sample(&mut rng);
        }
        let exp = Latency::Exponential {
            mean: Duration::from_millis(10),
        };
        let mean = (0..20_000)
            .map(|_| exp.sample(&mut rng).as_secs_f64())
            .sum::<f64>()
            / 20_000.0;
        assert!((0.008..0.012).contains(&mean), "exponential mean {mean}");
    }
}
