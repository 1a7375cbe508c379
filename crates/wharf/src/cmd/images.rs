//! `wharf up`'s checks before anything starts, for the `image:` services: each image made
//! present as its `pull_policy` says (a pull shown layer by layer), and each public port free.
//!
//! The control plane's driver pulls too (a deploy of a new tag); doing it here first shows the
//! user what is pulled, and turns an image no registry has, a `never` image that is absent or
//! an engine that does not answer into one error naming the services, with nothing started.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use wharf_container::{Engine, EngineError, Prepared, PullProgress};
use wharf_control::StackPlan;
use wharf_runtime::PullPolicy;

/// One image and the services that run it (a pull per image, not per service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needed {
    pub image: String,
    pub policy: PullPolicy,
    pub services: Vec<String>,
}

/// The images of the stack's `image:` services that are pulled (not built), in manifest order; an image two services
/// share is pulled once, `always` winning over `missing` and `missing` over `never`.
pub fn needed(plan: &StackPlan) -> Vec<Needed> {
    let mut out: Vec<Needed> = Vec::new();
    for service in &plan.services {
        let (Some(image), Some(container)) = (&service.image, &service.container) else {
            continue;
        };
        // A built image comes from its context (`build:`), which the driver builds when the
        // engine lacks it: there is nothing to pull.
        if container.build.is_some() {
            continue;
        }
        match out.iter_mut().find(|n| &n.image == image) {
            Some(found) => {
                found.services.push(service.name.clone());
                found.policy = stronger(found.policy, container.pull);
            }
            None => out.push(Needed {
                image: image.clone(),
                policy: container.pull,
                services: vec![service.name.clone()],
            }),
        }
    }
    out
}

fn stronger(a: PullPolicy, b: PullPolicy) -> PullPolicy {
    let rank = |p| match p {
        PullPolicy::Never => 0,
        PullPolicy::Missing => 1,
        PullPolicy::Always => 2,
    };
    if rank(b) > rank(a) { b } else { a }
}

/// `a`, `a` and `b`, `a`, `b` and `c`: services named in a sentence.
fn listed(services: &[String]) -> String {
    let quoted: Vec<String> = services.iter().map(|s| format!("`{s}`")).collect();
    match quoted.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// Makes every image present (pulling with progress on stderr); `Err` is the message to show
/// when one cannot be, naming the service(s) and the image.
pub fn prepare(plan: &StackPlan, engine: &Engine) -> anyhow::Result<Result<(), String>> {
    // Every service that runs in a container needs the engine, a built one too (its image is
    // built by the engine): an engine that does not answer is refused before anything starts.
    let in_containers: Vec<String> = plan
        .services
        .iter()
        .filter(|s| s.container.is_some())
        .map(|s| s.name.clone())
        .collect();
    if in_containers.is_empty() {
        return Ok(Ok(()));
    }
    let needed = needed(plan);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(runtime.block_on(prepare_all(&in_containers, &needed, engine)))
}

async fn prepare_all(
    in_containers: &[String],
    needed: &[Needed],
    engine: &Engine,
) -> Result<(), String> {
    if let Err(error) = engine.ping().await {
        let services = in_containers;
        let runs = if services.len() == 1 {
            "runs in a container"
        } else {
            "run in containers"
        };
        return Err(format!(
            "{} {runs}, and {error}; nothing was started",
            listed(services)
        ));
    }
    let live = std::io::stderr().is_terminal();
    for need in needed {
        let mut view = PullView::new(&need.image, live);
        let prepared = engine
            .prepare_image(&need.image, need.policy, &mut |step| view.step(step))
            .await;
        view.finish();
        let who = listed(&need.services);
        match prepared {
            Ok(Prepared::Present) => {}
            Ok(Prepared::Pulled) => eprintln!("pulled {} for {who}", need.image),
            Err(EngineError::NotPresent { image }) => {
                return Err(format!(
                    "{who}: image `{image}` is not present and `pull_policy: never` forbids pulling it; nothing was started (pull or build it, or set `pull_policy: missing`)"
                ));
            }
            Err(error) => return Err(format!("{who}: {error}; nothing was started")),
        }
    }
    Ok(())
}

/// A pull on stderr: one bar per layer under a line for the image on a terminal, else a plain
/// line per layer state change (`-d` in scripts, CI logs).
struct PullView {
    image: String,
    bars: Option<(MultiProgress, HashMap<String, ProgressBar>)>,
    /// Plain mode: each layer's last status printed, so a status prints once.
    said: HashMap<String, String>,
    started: bool,
}

impl PullView {
    fn new(image: &str, live: bool) -> Self {
        let bars = live.then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            (multi, HashMap::new())
        });
        PullView {
            image: image.to_owned(),
            bars,
            said: HashMap::new(),
            started: false,
        }
    }

    fn step(&mut self, step: PullProgress) {
        if !self.started {
            self.started = true;
            match &self.bars {
                Some((multi, _)) => {
                    let _ = multi.println(format!("pulling {}", self.image));
                }
                None => eprintln!("pulling {}", self.image),
            }
        }
        match (&mut self.bars, step) {
            (Some((multi, _)), PullProgress::Status(status)) => {
                let _ = multi.println(format!("  {status}"));
            }
            (None, PullProgress::Status(status)) => eprintln!("  {status}"),
            (
                Some((multi, bars)),
                PullProgress::Layer {
                    id,
                    status,
                    current,
                    total,
                },
            ) => {
                let bar = bars.entry(id.clone()).or_insert_with(|| {
                    let bar = multi.add(ProgressBar::new(0));
                    bar.set_style(
                        ProgressStyle::with_template(
                            "  {prefix} {msg:16} {wide_bar} {bytes}/{total_bytes}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    );
                    bar.set_prefix(short(&id).to_owned());
                    bar.enable_steady_tick(Duration::from_millis(200));
                    bar
                });
                bar.set_message(status);
                if let Some(total) = total {
                    bar.set_length(total);
                }
                if let Some(current) = current {
                    bar.set_position(current);
                }
            }
            (None, PullProgress::Layer { id, status, .. }) => {
                // Byte counts would be a line per chunk: only state changes are printed.
                if self.said.get(&id) != Some(&status) {
                    eprintln!("  {}: {status}", short(&id));
                    self.said.insert(id, status);
                }
            }
        }
    }

    fn finish(&mut self) {
        if let Some((multi, bars)) = &self.bars {
            for bar in bars.values() {
                bar.finish();
            }
            let _ = multi.clear();
        }
    }
}

/// A layer id as `docker pull` shows it (12 characters).
fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// Public ports of `image:` services that another process already listens on: `(service,
/// port)`. Checked before anything starts, where no instance of the stack runs yet (an adopted
/// stack's proxy holds its own ports).
pub fn taken_ports(plan: &StackPlan) -> Vec<(String, u16)> {
    plan.services
        .iter()
        .filter_map(|s| Some((s, s.container.as_ref()?)))
        .flat_map(|(s, container)| {
            // The main public port and every one of `ports:`.
            s.public_port
                .into_iter()
                .chain(container.ports.iter().map(|p| p.published))
                .map(|port| (s.name.clone(), port))
        })
        .filter(|(_, port)| {
            matches!(
                std::net::TcpListener::bind(("127.0.0.1", *port)),
                Err(error) if error.kind() == std::io::ErrorKind::AddrInUse
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_are_listed_in_a_sentence() {
        let names = |n: &[&str]| n.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(listed(&names(&["a"])), "`a`");
        assert_eq!(listed(&names(&["a", "b", "c"])), "`a`, `b` and `c`");
    }

    #[test]
    fn a_shared_image_is_pulled_by_the_strongest_policy() {
        assert_eq!(
            stronger(PullPolicy::Never, PullPolicy::Always),
            PullPolicy::Always
        );
        assert_eq!(
            stronger(PullPolicy::Missing, PullPolicy::Never),
            PullPolicy::Missing
        );
    }
}
