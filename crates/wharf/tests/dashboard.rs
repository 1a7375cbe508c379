//! The web dashboard in a real browser: Debian's headless Chromium driven over WebDriver by
//! Debian's chromedriver (through `fantoccini`), against a real stack — the `wharf` binary,
//! its control plane and proxy, testbed instances — served on `wharf up --dashboard-listen`.
//! Nothing is downloaded at test time; `scripts/test` installs `chromium` and
//! `chromium-driver`. Screenshots land in `target/tmp/dashboard-screenshots/`.
//!
//! The refusals (no session cookie, a wrong CSRF token, a login from another site) are also
//! checked over a plain socket, where a test controls every header.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use wharf_testbed::load::{self, LoadPlan};

const DEADLINE: Duration = Duration::from_secs(30);

/// A chromedriver process and a headless Chromium session it drives.
struct Browser {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Browser {
        Browser::start_with(false).await
    }

    /// A browser that takes the control plane's self-signed certificate (the TLS listener's;
    /// `api_tls.rs` tests the certificate itself).
    async fn start_trusting_any_certificate() -> Browser {
        Browser::start_with(true).await
    }

    async fn start_with(accept_insecure_certs: bool) -> Browser {
        // fantoccini's HTTP client is built with rustls; this process picks its crypto (ring,
        // as the server does: tls.rs says why the deprecation is accepted).
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            // Its own process group, so dropping the browser ends Chromium with it.
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (Debian's chromium-driver; scripts/test installs it)");
        let profile = tempfile::tempdir().unwrap();
        // The flags the machine's notes name: no sandbox as root, and no background traffic
        // to Google's hosts (this network refuses it).
        let capabilities = json!({
            "acceptInsecureCerts": accept_insecure_certs,
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                    "--window-size=1400,1100",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let until = Instant::now() + DEADLINE;
        let client = loop {
            let attempt = ClientBuilder::rustls()
                .expect("rustls")
                .capabilities(capabilities.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await;
            match attempt {
                Ok(client) => break client,
                Err(error) if Instant::now() < until => {
                    let _ = error;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("no WebDriver session from chromedriver: {error}"),
            }
        };
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }

    /// Logs in on the dashboard's form with `token` and waits for the first live update.
    async fn log_in(&self, port: u16, token: &str) {
        self.log_in_at(&format!("http://127.0.0.1:{port}"), token)
            .await
    }

    /// Logs in on the dashboard at `base` (scheme, host and port).
    async fn log_in_at(&self, base: &str, token: &str) {
        let c = &self.client;
        c.goto(&format!("{base}/")).await.unwrap();
        let field = c
            .wait()
            .at_most(DEADLINE)
            .for_element(Locator::Css("#token"))
            .await
            .unwrap();
        field.send_keys(token).await.unwrap();
        c.find(Locator::Css("#login"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        self.until("the first live update", || async {
            self.script("return document.body.dataset.ready === 'true'")
                .await
                .as_bool()
                .filter(|ready| *ready)
        })
        .await;
    }

    /// Clicks the element `css` selects once it is there (found again if the page replaced
    /// it between the find and the click).
    async fn click(&self, css: &str) {
        self.until(&format!("a click on {css}"), || async {
            let element = self.client.find(Locator::Css(css)).await.ok()?;
            element.click().await.ok()
        })
        .await
    }

    async fn script(&self, js: &str) -> Value {
        self.client.execute(js, vec![]).await.unwrap_or(Value::Null)
    }

    /// A service's node in the graph: its health class and the texts it shows.
    async fn node(&self, service: &str) -> Option<(String, String)> {
        let js = format!(
            "const n = [...document.querySelectorAll('#graph g.node')].find(g => g.dataset.service === {});
             return n ? [n.dataset.health, n.textContent] : null;",
            json!(service)
        );
        let found = self.script(&js).await;
        Some((
            found.get(0)?.as_str()?.to_owned(),
            found.get(1)?.as_str()?.to_owned(),
        ))
    }

    async fn until<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let until = Instant::now() + DEADLINE;
        loop {
            if let Some(value) = check().await {
                return value;
            }
            if Instant::now() >= until {
                self.screenshot(&format!("timeout-{}", what.replace(' ', "-")))
                    .await;
                panic!("timed out waiting for {what}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a screenshot as a test artifact.
    async fn screenshot(&self, name: &str) -> PathBuf {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        if let Ok(png) = self.client.screenshot().await {
            std::fs::write(&path, png).unwrap();
        }
        path
    }

    async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

/// A failed test must not leave chromedriver and Chromium behind: the whole group goes.
impl Drop for Browser {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.wait();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A stack with a datastore-like `db` that `api` depends on, served with the dashboard.
fn shop(version: &str) -> (Stack, u16) {
    let (db_port, api_port) = (free_port(), free_port());
    let stack = Stack::new(&format!(
        r#"
name: shop
services:
  db:
    version: "1"
    command: [TESTBED, --port, "${{PORT}}"]
    port: {db_port}
    probes:
      ready: {{http: {{path: /ready}}, interval: 200ms, timeout: 500ms, failure_threshold: 2}}
  api:
    version: "{version}"
    command: [TESTBED, --port, "${{PORT}}", --version, "${{VERSION}}"]
    port: {api_port}
    replicas: 2
    depends_on: [db]
    probes:
      ready: {{http: {{path: /ready}}, interval: 200ms}}
    rollout:
      strategy: canary
      steps: [{{weight: 25, pause: 10m}}, {{weight: 100}}]
"#
    ));
    let dashboard = up_with_dashboard(&stack);
    (stack, dashboard)
}

/// `wharf up -d` with the dashboard on a free loopback port; answers the port.
fn up_with_dashboard(stack: &Stack) -> u16 {
    let dashboard = free_port();
    let up = stack.wharf(&[
        "up",
        "-d",
        "--dashboard-listen",
        &format!("127.0.0.1:{dashboard}"),
    ]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    dashboard
}

/// A person's token with `role`, made through the CLI (printed once, last line).
fn token(stack: &Stack, name: &str, role: &str) -> String {
    let made = stack.wharf(&["token", "create", name, "--role", role]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    String::from_utf8(made.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn the_page_shows_the_stack_and_a_service_taken_down_turns_red_naming_its_root_cause() {
    let (stack, port) = shop("1.0");
    let token = token(&stack, "vera", "viewer");
    let db_pid = stack.service("db")["instances"][0]["pid"].as_i64().unwrap();
    runtime().block_on(async {
        let browser = Browser::start().await;
        browser.log_in(port, &token).await;
        for service in ["db", "api"] {
            let (health, text) = browser
                .until("the service in the graph", || async {
                    browser
                        .node(service)
                        .await
                        .filter(|(health, _)| health == "pass")
                })
                .await;
            assert_eq!(health, "pass");
            assert!(text.contains(service), "{text}");
        }
        assert_eq!(
            browser
                .script("return document.getElementById('stack-status').textContent")
                .await,
            "ok"
        );
        assert_eq!(
            browser
                .script("return document.getElementById('who').textContent")
                .await,
            "vera · viewer"
        );
        browser.screenshot("stack-healthy").await;

        // db hangs (SIGSTOP): its probe times out, it is the root cause, api is blocked by it.
        kill(db_pid, "STOP");
        let (_, db_text) = browser
            .until("db to turn red", || async {
                browser.node("db").await.filter(|(h, _)| h == "fail")
            })
            .await;
        assert!(db_text.contains("down"), "{db_text}");
        let (_, api_text) = browser
            .until("api to name db as its root cause", || async {
                browser
                    .node("api")
                    .await
                    .filter(|(h, text)| h == "fail" && text.contains("blocked by db"))
            })
            .await;
        assert!(api_text.contains("blocked"), "{api_text}");
        // The red stroke is what people see: the node's computed style, not only its class.
        let stroke = browser
            .script(
                "const n = [...document.querySelectorAll('#graph g.node')].find(g => g.dataset.service === 'db');
                 return getComputedStyle(n.querySelector('rect')).stroke;",
            )
            .await;
        assert_eq!(stroke, "rgb(229, 62, 62)");
        browser.screenshot("db-down-api-blocked").await;
        // The service panel names the cause too.
        browser.click("#graph g.node[data-service=\"api\"]").await;
        let panel = browser
            .until("the api panel", || async {
                browser
                    .script("return document.getElementById('service').textContent")
                    .await
                    .as_str()
                    .filter(|t| t.contains("Blocked by db"))
                    .map(str::to_owned)
            })
            .await;
        assert!(panel.contains("#0") && panel.contains("#1"), "{panel}");
        // Its recorded state history, read from the store, shows the change to blocked.
        browser
            .until("api's state history", || async {
                browser
                    .script("const h = document.getElementById('history'); return h ? h.textContent : null")
                    .await
                    .as_str()
                    .filter(|t| t.contains("blocked — blocked by db"))
                    .map(str::to_owned)
            })
            .await;
        kill(db_pid, "CONT");
        browser
            .until("db to recover", || async {
                browser.node("db").await.filter(|(h, _)| h == "pass")
            })
            .await;
        // A page opened after the trouble still shows it in db's probe history: the results
        // come from the control plane, not from what this page happened to see.
        browser.client.refresh().await.unwrap();
        browser
            .until("the reloaded page's first update", || async {
                browser
                    .script("return document.body.dataset.ready === 'true'")
                    .await
                    .as_bool()
                    .filter(|ready| *ready)
            })
            .await;
        browser.click("#graph g.node[data-service=\"db\"]").await;
        let probes = browser
            .until("db's probe history with the failures and the recovery", || async {
                let marks = browser
                    .script("const s = document.querySelector('#service tbody tr .spark'); return s ? [...s.children].map(i => i.className) : null")
                    .await;
                let marks: Vec<String> = marks
                    .as_array()?
                    .iter()
                    .filter_map(|m| m.as_str().map(str::to_owned))
                    .collect();
                (marks.iter().any(|m| m == "fail") && marks.last().map(String::as_str) == Some("pass"))
                    .then_some(marks)
            })
            .await;
        assert!(probes.len() <= 20, "{probes:?}");
        browser.screenshot("db-probe-history").await;
        browser.close().await;
    });
}

fn kill(pid: i64, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn a_deploy_from_the_cli_appears_live_and_an_abort_clicked_in_the_page_rolls_it_back() {
    let (stack, port) = shop("1.0");
    let token = token(&stack, "olga", "operator");
    runtime().block_on(async {
        let browser = Browser::start().await;
        browser.log_in(port, &token).await;
        assert_eq!(
            browser
                .script("return document.querySelectorAll('#rollouts .rollout').length")
                .await,
            0
        );
        let deploy = stack.wharf(&["deploy", "api", "--version", "2.0"]);
        assert!(
            deploy.status.success(),
            "{}",
            String::from_utf8_lossy(&deploy.stderr)
        );
        // The canary arrives over the live stream: weights, versions and the step.
        let card = browser
            .until("the rollout to appear", || async {
                browser
                    .script(
                        "const r = document.querySelector('#rollouts .rollout[data-service=\"api\"]');
                         return r && r.querySelector('.weights .new').textContent.includes('25%') ? r.textContent : null;",
                    )
                    .await
                    .as_str()
                    .map(str::to_owned)
            })
            .await;
        assert!(card.contains("1.0 → 2.0"), "{card}");
        assert!(card.contains("step 1/2"), "{card}");
        browser.screenshot("canary-live").await;

        // From the page itself: an action without the session's CSRF token, or without the
        // cookie, is refused before it reaches the control plane.
        let refused = browser
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 const post = (init) => fetch('/v1/services/api/rollout/pause', Object.assign({method: 'POST'}, init))
                     .then(async r => [r.status, (await r.json()).error.message]);
                 Promise.all([
                     post({headers: {'X-CSRF-Token': 'not-the-token'}}),
                     post({headers: {}}),
                     post({credentials: 'omit', headers: {'X-CSRF-Token': document.querySelector('meta[name=csrf-token]').content}}),
                 ]).then(done, e => done(String(e)));",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(refused[0][0], 403, "{refused}");
        assert!(refused[0][1].as_str().unwrap().contains("CSRF"), "{refused}");
        assert_eq!(refused[1][0], 403, "{refused}");
        assert_eq!(refused[2][0], 401, "{refused}");
        assert_eq!(rollout(&stack)["phase"], "step", "nothing was paused");

        // Pause, then resume, each confirmed in the page: the rollout's phase follows.
        for (command, phase) in [("pause", "paused"), ("resume", "step")] {
            browser
                .click(&format!(
                    "#rollouts .rollout[data-service=\"api\"] button[data-command=\"{command}\"]"
                ))
                .await;
            browser.click("#confirm-yes").await;
            browser
                .until(&format!("the rollout to be {phase}"), || async {
                    (rollout(&stack)["phase"] == phase).then_some(())
                })
                .await;
            browser
                .until(&format!("the page to show {phase}"), || async {
                    browser
                        .script("const p = document.querySelector('#rollouts .rollout[data-service=\"api\"] [data-phase]'); return p ? p.dataset.phase : null")
                        .await
                        .as_str()
                        .filter(|shown| *shown == phase)
                        .map(str::to_owned)
                })
                .await;
        }

        // Abort asks first: Cancel leaves the rollout alone.
        let abort = "#rollouts .rollout[data-service=\"api\"] button[data-command=\"abort\"]";
        browser.click(abort).await;
        let question = browser
            .script("return document.getElementById('confirm').hidden ? null : document.getElementById('confirm-text').textContent")
            .await;
        assert!(
            question.as_str().unwrap().contains("Abort the rollout of api"),
            "{question}"
        );
        browser.screenshot("abort-confirmation").await;
        browser.click("#confirm-no").await;
        let view = rollout(&stack);
        assert!(view["outcome"].is_null(), "{view}");

        browser.click(abort).await;
        browser.click("#confirm-yes").await;
        // The page sees it end.
        browser
            .until("the page to show the rollback", || async {
                browser
                    .script("const p = document.querySelector('#rollouts .rollout[data-service=\"api\"] [data-phase]'); return p ? p.dataset.phase : null")
                    .await
                    .as_str()
                    .filter(|phase| *phase == "rolled-back")
                    .map(str::to_owned)
            })
            .await;
        browser.screenshot("rolled-back").await;
        browser.close().await;
    });
    // Checked through the API and the ledger: rolled back, by the person who clicked.
    let view = eventually("the rollout to end", DEADLINE, || {
        let view = rollout(&stack);
        view["outcome"].is_string().then_some(view)
    });
    assert_eq!(view["outcome"], "rolled-back", "{view}");
    let status = stack.service("api");
    assert_eq!(status["version"], "1.0", "{status}");
    let ledger = stack.ledger();
    let by_olga: Vec<&Value> = ledger.iter().filter(|e| e["actor"] == "olga").collect();
    assert!(
        by_olga
            .iter()
            .any(|e| e["action"] == "deploy.rollback" && e["target"] == "api"),
        "the abort is olga's: {by_olga:?}"
    );
    for action in ["deploy.pause", "deploy.resume"] {
        assert!(
            by_olga
                .iter()
                .any(|e| e["action"] == action && e["target"] == "api"),
            "the {action} is olga's: {by_olga:?}"
        );
    }
    assert!(
        ledger
            .iter()
            .any(|e| e["action"] == "deploy.rolled_back" && e["target"] == "api"),
        "no deploy.rolled_back entry"
    );
    assert!(
        ledger
            .iter()
            .any(|e| e["action"] == "session.login" && e["actor"] == "olga"),
        "the login is in the ledger"
    );
}

fn rollout(stack: &Stack) -> Value {
    let output = stack.wharf(&["rollout", "status", "api", "--output", "json"]);
    serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
}

#[test]
fn markup_in_names_from_the_manifest_and_the_ledger_renders_inert() {
    // The manifest refuses markup in a service name outright…
    let refused = Stack::new(
        "name: x\nservices:\n  \"<img src=x onerror=alert(1)>\":\n    command: [TESTBED]\n",
    );
    let validate = refused.wharf(&["validate"]);
    assert!(!validate.status.success());
    assert!(String::from_utf8_lossy(&validate.stderr).contains("has characters wharf cannot use"));
    // …and free text it takes (a version, an audit note) reaches the page only as text.
    const MARKUP: &str = "<img src=x onerror=window.__pwned=1>";
    let stack = Stack::new(&format!(
        "name: inert\nservices:\n  web:\n    version: \"{MARKUP}\"\n    command: [TESTBED, --port, \"${{PORT}}\"]\n    probes:\n      ready: {{http: {{path: /ready}}, interval: 200ms}}\n"
    ));
    let dashboard = up_with_dashboard(&stack);
    let note = stack.wharf(&[
        "audit",
        "note",
        "<script>window.__pwned=2</script><img src=y onerror=window.__pwned=3>",
    ]);
    assert!(
        note.status.success(),
        "{}",
        String::from_utf8_lossy(&note.stderr)
    );
    let token = token(&stack, "ivan", "viewer");
    runtime().block_on(async {
        let browser = Browser::start().await;
        browser.log_in(dashboard, &token).await;
        browser.click("#graph g.node[data-service=\"web\"]").await;
        let shown = browser
            .until("the version and the note as text", || async {
                let page = browser.script("return document.body.textContent").await;
                page.as_str()
                    .filter(|t| {
                        t.contains(MARKUP) && t.contains("<script>window.__pwned=2</script>")
                    })
                    .map(str::to_owned)
            })
            .await;
        assert!(shown.contains("onerror=window.__pwned=3"));
        // Nothing ran, and no element came of it.
        assert_eq!(
            browser.script("return window.__pwned === undefined").await,
            true
        );
        assert_eq!(
            browser
                .script("return document.querySelectorAll('img, main script').length")
                .await,
            0
        );
        browser.screenshot("markup-inert").await;
        browser.close().await;
    });
}

/// One HTTP/1.1 request on a fresh connection: (status, headers, body).
fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_owned(), body.to_owned())
}

#[test]
fn an_action_without_the_session_cookie_or_with_a_wrong_csrf_token_is_refused() {
    let (stack, port) = shop("1.0");
    let token = token(&stack, "oscar", "operator");
    let restarts = || actions(&stack.ledger(), "service.restart").len();
    let before = restarts();
    let form = "application/x-www-form-urlencoded";

    // Logging in from another site is refused; from the page, it sets a strict cookie.
    let (status, _, body) = request(
        port,
        "POST",
        "/ui/login",
        &[("Content-Type", form), ("Origin", "http://evil.example")],
        &format!("token={token}"),
    );
    assert_eq!(status, 403, "{body}");
    let (status, head, _) = request(
        port,
        "POST",
        "/ui/login",
        &[
            ("Content-Type", form),
            ("Origin", &format!("http://127.0.0.1:{port}")),
        ],
        &format!("token={token}"),
    );
    assert_eq!(status, 303);
    let cookie_line = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .expect("a session cookie");
    assert!(
        cookie_line.contains("HttpOnly") && cookie_line.contains("SameSite=Strict"),
        "{cookie_line}"
    );
    let cookie = cookie_line
        .split_once(':')
        .unwrap()
        .1
        .trim()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    // A wrong token gets the form again, and no cookie.
    let (status, head, body) = request(
        port,
        "POST",
        "/ui/login",
        &[("Content-Type", form)],
        "token=wharf_t1_00",
    );
    assert_eq!(status, 401);
    assert!(!head.to_ascii_lowercase().contains("set-cookie"));
    assert!(body.contains("a valid bearer token is required"), "{body}");

    // The page carries the session's CSRF token and a strict policy.
    let (status, head, page) = request(port, "GET", "/ui/", &[("Cookie", &cookie)], "");
    assert_eq!(status, 200);
    assert!(
        head.contains("default-src 'none'; script-src 'self'"),
        "{head}"
    );
    let csrf = page
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(csrf.len(), 64);

    let restart = "/v1/services/api/restart";
    let (status, _, body) = request(port, "POST", restart, &[("X-CSRF-Token", &csrf)], "");
    assert_eq!(status, 401, "no cookie: {body}");
    let (status, _, body) = request(port, "POST", restart, &[("Cookie", &cookie)], "");
    assert_eq!(status, 403, "no CSRF token: {body}");
    assert!(body.contains("CSRF"), "{body}");
    let wrong = "0".repeat(64);
    let (status, _, body) = request(
        port,
        "POST",
        restart,
        &[("Cookie", &cookie), ("X-CSRF-Token", &wrong)],
        "",
    );
    assert_eq!(status, 403, "wrong CSRF token: {body}");
    let (status, _, body) = request(
        port,
        "POST",
        restart,
        &[
            ("Cookie", &cookie),
            ("X-CSRF-Token", &csrf),
            ("Sec-Fetch-Site", "cross-site"),
        ],
        "",
    );
    assert_eq!(status, 403, "from another site: {body}");
    assert_eq!(restarts(), before, "a refused action changed nothing");
    // Reads need the cookie only; the right token makes the change, as the cookie's holder.
    let (status, _, _) = request(port, "GET", "/v1/status", &[("Cookie", &cookie)], "");
    assert_eq!(status, 200);
    let (status, _, body) = request(
        port,
        "POST",
        restart,
        &[("Cookie", &cookie), ("X-CSRF-Token", &csrf)],
        "",
    );
    assert_eq!(status, 202, "{body}");
    let ledger = stack.ledger();
    assert!(
        ledger
            .iter()
            .any(|e| e["action"] == "service.restart" && e["actor"] == "oscar"),
        "{:?}",
        actions(&ledger, "service.restart")
    );

    // A second login, then its logout: the CSRF token is needed, the cookie is cleared, the
    // ledger says so, and only that session ends.
    let (_, head, _) = request(
        port,
        "POST",
        "/ui/login",
        &[("Content-Type", form)],
        &format!("token={token}"),
    );
    let second = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().split(';').next().unwrap().to_owned())
        .expect("a second session");
    assert_ne!(second, cookie);
    let (_, _, page) = request(port, "GET", "/ui/", &[("Cookie", &second)], "");
    let second_csrf = page
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let (status, _, _) = request(port, "POST", "/ui/logout", &[("Cookie", &second)], "");
    assert_eq!(status, 403, "a logout needs the CSRF token");
    let (status, head, _) = request(
        port,
        "POST",
        "/ui/logout",
        &[("Cookie", &second), ("X-CSRF-Token", &second_csrf)],
        "",
    );
    assert_eq!(status, 204);
    assert!(
        head.contains("wharf_session=;") && head.contains("Max-Age=0"),
        "{head}"
    );
    assert_eq!(
        request(port, "GET", "/v1/status", &[("Cookie", &second)], "").0,
        401
    );
    assert_eq!(
        request(port, "GET", "/v1/status", &[("Cookie", &cookie)], "").0,
        200
    );
    assert!(
        actions(&stack.ledger(), "session.logout")
            .iter()
            .any(|e| e["actor"] == "oscar"),
        "the logout is in the ledger"
    );

    // Another port of the same host is the same *site*: it may not read with the cookie.
    let (status, _, body) = request(
        port,
        "GET",
        "/v1/status",
        &[("Cookie", &cookie), ("Sec-Fetch-Site", "same-site")],
        "",
    );
    assert_eq!(status, 403, "{body}");
    // A name that is not loopback (DNS rebinding) is not this listener's.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET /ui/login HTTP/1.1\r\nHost: rebound.example:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 421"), "{raw}");

    // The live stream, open while the token is revoked, ends.
    let mut events = TcpStream::connect(("127.0.0.1", port)).unwrap();
    events.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        events,
        "GET /ui/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut first = [0u8; 4096];
    let n = events.read(&mut first).unwrap();
    let head = String::from_utf8_lossy(&first[..n]);
    assert!(
        head.starts_with("HTTP/1.1 200") && head.contains("text/event-stream"),
        "{head}"
    );

    // A revoked token ends its sessions at once.
    let revoke = stack.wharf(&["token", "revoke", "oscar"]);
    assert!(revoke.status.success());
    let (status, _, body) = request(port, "GET", "/v1/status", &[("Cookie", &cookie)], "");
    assert_eq!(status, 401, "{body}");
    let (status, head, _) = request(port, "GET", "/ui/", &[("Cookie", &cookie)], "");
    assert_eq!(status, 303);
    assert!(head.contains("location: /ui/login"), "{head}");
    // The stream ends too (its terminating chunk, then the connection closes) before the
    // read deadline: it does not keep serving a revoked holder.
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = events.read_to_end(&mut rest);
    assert!(started.elapsed() < DEADLINE, "the stream stayed open");
    assert!(
        rest.ends_with(b"0\r\n\r\n"),
        "{}",
        String::from_utf8_lossy(&rest)
    );
}

/// Reads Server-Sent Events from a `GET /ui/events` made over HTTP/1.0 (so the body is the
/// event stream itself, not chunked).
struct EventStream {
    stream: TcpStream,
    buffer: String,
}

impl EventStream {
    fn open(port: u16, cookie: &str) -> EventStream {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        write!(
            stream,
            "GET /ui/events HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nCookie: {cookie}\r\n\r\n"
        )
        .unwrap();
        EventStream {
            stream,
            buffer: String::new(),
        }
    }

    /// The next `snapshot` event: its id and its data.
    fn next(&mut self) -> (u64, String) {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let field = |name: &str| {
                    block
                        .lines()
                        .find_map(|l| l.strip_prefix(name))
                        .map(str::to_owned)
                };
                if field("event: ").as_deref() != Some("snapshot") {
                    continue;
                }
                let id = field("id: ")
                    .unwrap_or_else(|| panic!("a snapshot event without an id: {block}"));
                return (id.parse().unwrap(), field("data: ").unwrap());
            }
            let mut chunk = [0u8; 65536];
            let n = self.stream.read(&mut chunk).expect("the stream goes on");
            assert!(n > 0, "the stream ended: {}", self.buffer);
            self.buffer.push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    }
}

/// A session cookie (`name=value`) from a login over the plain listener.
fn session_cookie(port: u16, token: &str) -> String {
    let (status, head, _) = request(
        port,
        "POST",
        "/ui/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &format!("token={token}"),
    );
    assert_eq!(status, 303);
    head.lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().split(';').next().unwrap().to_owned())
        .expect("a session cookie")
}

#[test]
fn every_open_page_is_sent_the_same_snapshots_from_one_feed() {
    let (stack, port) = shop("1.0");
    let token = token(&stack, "fay", "viewer");
    let cookie = session_cookie(port, &token);
    let mut first = EventStream::open(port, &cookie);
    let (opened_at, _) = first.next();
    // A change (a ledger entry) makes the feed send another snapshot.
    let note = stack.wharf(&["audit", "note", "a change"]);
    assert!(note.status.success());
    let (mut seen, mut seen_data) = first.next();
    assert!(seen > opened_at);
    // A page opened later joins the same feed: its first snapshot carries the feed's number,
    // past what the first page was sent — not the first of a loop of its own.
    let mut second = EventStream::open(port, &cookie);
    let mut compared = 0;
    for _ in 0..3 {
        let (id, data) = second.next();
        assert!(
            id > opened_at,
            "the second page was sent #{id}, the first had been sent #{opened_at} and more"
        );
        // The first page is sent the same snapshot under the same number.
        while seen < id {
            (seen, seen_data) = first.next();
        }
        if seen == id {
            assert_eq!(seen_data, data, "snapshot #{id} differs between the pages");
            compared += 1;
        }
    }
    assert!(compared > 0, "no snapshot number was sent to both pages");
}

#[test]
fn the_dashboard_on_the_tls_api_listener_logs_in_with_a_secure_cookie_and_acts() {
    let stack = Stack::new(
        "name: tls\nservices:\n  web:\n    command: [TESTBED, --port, \"${PORT}\"]\n    probes:\n      ready: {http: {path: /ready}, interval: 200ms}\n",
    );
    let addr = format!("127.0.0.1:{}", free_port());
    let up = up_api(
        stack.path(),
        &addr,
        "a-break-glass-token-of-enough-length",
        &[],
    );
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let token = token(&stack, "tess", "operator");
    let restarts = || actions(&stack.ledger(), "service.restart").len();
    let before = restarts();
    runtime().block_on(async {
        let browser = Browser::start_trusting_any_certificate().await;
        browser.log_in_at(&format!("https://{addr}"), &token).await;
        browser
            .until("web in the graph", || async {
                browser.node("web").await.filter(|(health, _)| health == "pass")
            })
            .await;
        assert_eq!(
            browser
                .script("return document.getElementById('who').textContent")
                .await,
            "tess · operator"
        );
        // Over TLS the session cookie is Secure as well as HttpOnly and SameSite=Strict, and
        // the page's script cannot read it.
        let cookies = browser.client.get_all_cookies().await.unwrap();
        let session = cookies
            .iter()
            .find(|c| c.name() == "wharf_session")
            .expect("a session cookie");
        assert_eq!(session.secure(), Some(true), "{session}");
        assert_eq!(session.http_only(), Some(true), "{session}");
        assert_eq!(
            session.same_site().map(|s| s.to_string()).as_deref(),
            Some("Strict"),
            "{session}"
        );
        assert_eq!(browser.script("return document.cookie").await, "");
        // No ledger key is pinned on this fresh stack: the page says the ledger is not
        // verified yet, not that its verification failed.
        let pill = browser
            .until("the ledger's verification state", || async {
                browser
                    .script("const v = document.getElementById('verify'); return v.textContent.startsWith('not verified yet') ? v.className : null")
                    .await
                    .as_str()
                    .map(str::to_owned)
            })
            .await;
        assert_eq!(pill, "pill warn");
        browser.screenshot("tls-listener").await;
        // The page's own requests: refused without the CSRF token, done with it.
        let answers = browser
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 const csrf = document.querySelector('meta[name=csrf-token]').content;
                 const post = (headers) => fetch('/v1/services/web/restart', {method: 'POST', headers}).then(r => r.status);
                 post({}).then(without => post({'X-CSRF-Token': csrf}).then(with_ => done([without, with_])), e => done(String(e)));",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(answers, json!([403, 202]), "{answers}");
        browser.close().await;
    });
    assert_eq!(restarts(), before + 1);
    assert!(
        actions(&stack.ledger(), "service.restart")
            .iter()
            .any(|e| e["actor"] == "tess"),
        "the restart is tess's"
    );
}

#[test]
fn the_page_shows_live_traffic_secret_metadata_and_a_verified_audit_log_with_proofs() {
    const VALUE: &str = "sk-live-a-value-the-page-must-never-show";
    let api_port = free_port();
    let stack = Stack::new(&format!(
        r#"
name: evidence
secrets:
  API_KEY: {{max_age: 90d}}
services:
  api:
    version: "1.0"
    command: [TESTBED, --port, "${{PORT}}", --version, "${{VERSION}}"]
    port: {api_port}
    secrets: [API_KEY]
    probes:
      ready: {{http: {{path: /ready}}, interval: 200ms}}
    rollout:
      strategy: canary
      steps: [{{weight: 50, pause: 4s}}, {{weight: 100}}]
"#
    ));
    stack.set_secret("API_KEY", VALUE);
    let port = up_with_dashboard(&stack);
    let token = token(&stack, "eve", "operator");
    let mut plan = LoadPlan::new(format!("http://127.0.0.1:{api_port}/"), 50.0);
    plan.max_duration = Duration::from_secs(60);
    let load = load::start(plan).expect("load starts");
    let deploy = stack.wharf(&["deploy", "api", "--version", "2.0"]);
    assert!(
        deploy.status.success(),
        "{}",
        String::from_utf8_lossy(&deploy.stderr)
    );
    // A signed checkpoint, and the ledger key pinned by a first verification (the page
    // verifies against the pinned key only).
    for args in [["audit", "checkpoint"], ["audit", "verify"]] {
        let done = stack.wharf(&args);
        assert!(
            done.status.success(),
            "{}",
            String::from_utf8_lossy(&done.stderr)
        );
    }
    runtime().block_on(async {
        let browser = Browser::start().await;
        browser.log_in(port, &token).await;
        // The rollout's traffic table: requests to both versions, no errors, a p95.
        let rows = browser
            .until("requests to both versions in the rollout", || async {
                let rows = browser
                    .script(
                        "const r = document.querySelector('#rollouts .rollout[data-service=\"api\"]');
                         return r ? [...r.querySelectorAll('tbody tr')].map(tr => [...tr.children].map(td => td.textContent)) : null;",
                    )
                    .await;
                let rows = rows.as_array()?.clone();
                let busy = |version: &str| {
                    rows.iter().any(|row| {
                        row[0] == version && row[1].as_str().and_then(|n| n.parse::<u64>().ok()) > Some(0)
                    })
                };
                (busy("1.0") && busy("2.0")).then_some(rows)
            })
            .await;
        for row in &rows {
            assert_eq!(row[3], "0.0%", "no errors: {rows:?}");
            assert!(
                row[4].as_str().unwrap().parse::<f64>().is_ok(),
                "a p95 in ms: {rows:?}"
            );
        }
        browser.screenshot("canary-traffic").await;
        // At the step's end the analysis judges the canary (pass, or continue when too few
        // requests reached it): the verdict and the numbers it rests on are on the card.
        let verdict = browser
            .until("the analysis verdict", || async {
                browser
                    .script(
                        "const r = document.querySelector('#rollouts .rollout[data-service=\"api\"]');
                         const p = r && [...r.querySelectorAll('p')].find(p => p.textContent.startsWith('Analysis: {'));
                         return p ? p.textContent : null;",
                    )
                    .await
                    .as_str()
                    .map(str::to_owned)
            })
            .await;
        let verdict: Value = serde_json::from_str(verdict.trim_start_matches("Analysis: ")).unwrap();
        assert!(
            ["pass", "continue", "fail"].contains(&verdict["verdict"].as_str().unwrap()),
            "{verdict}"
        );
        for side in ["new", "stable"] {
            assert!(
                verdict["numbers"][side]["requests"].as_u64().is_some()
                    && verdict["numbers"][side]
                        .as_object()
                        .is_some_and(|n| n.contains_key("error_rate") && n.contains_key("p95_ms")),
                "{verdict}"
            );
        }
        browser.screenshot("canary-verdict").await;

        // Secrets: the name and its metadata, never the value (in the page or its markup).
        let secrets = browser
            .until("the secret's metadata", || async {
                browser
                    .script("return document.getElementById('secrets').textContent")
                    .await
                    .as_str()
                    .filter(|t| t.contains("API_KEY"))
                    .map(str::to_owned)
            })
            .await;
        assert!(secrets.contains("eve") || secrets.contains("tester"), "{secrets}");
        let markup = browser
            .script("return document.documentElement.outerHTML")
            .await;
        assert!(!markup.as_str().unwrap().contains(VALUE), "the value is on the page");

        // The audit log: verified, and an entry's inclusion proof shown on a click.
        browser
            .until("the ledger to be verified", || async {
                browser
                    .script("const v = document.getElementById('verify'); return v.classList.contains('pass') ? v.textContent : null")
                    .await
                    .as_str()
                    .filter(|t| t.starts_with("verified: "))
                    .map(str::to_owned)
            })
            .await;
        // The oldest entry shown, which the signed checkpoint covers.
        let oldest = "#audit tbody tr:last-child a.proof";
        let seq = browser
            .script(&format!("return document.querySelector('{oldest}').dataset.seq"))
            .await;
        let seq: u64 = seq.as_str().unwrap().parse().unwrap();
        browser.click(oldest).await;
        let proof = browser
            .until("the inclusion proof", || async {
                browser
                    .script("const p = document.getElementById('proof'); return p.hidden ? null : p.textContent")
                    .await
                    .as_str()
                    .filter(|t| t.contains("root: "))
                    .map(str::to_owned)
            })
            .await;
        assert!(proof.contains("signed checkpoint:"), "{proof}");
        browser.screenshot("audit-proof").await;
        browser.close().await;
        // What the page shows is a proof that checks: the leaf's hash, and the path from it
        // to the root (RFC 9162), recomputed here with the ledger crate.
        let field = |name: &str| {
            proof
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name} in {proof}"))
                .to_owned()
        };
        let hash = |hex: &str| -> wharf_ledger::Hash {
            wharf_ledger::from_hex(hex.trim())
                .and_then(|b| b.try_into().ok())
                .unwrap_or_else(|| panic!("not a hash: {hex}"))
        };
        let size: u64 = proof
            .split("in the tree of ")
            .nth(1)
            .and_then(|t| t.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no tree size in {proof}"));
        assert!(proof.starts_with(&format!("entry {seq} ")), "{proof}");
        let leaf = hash(&field("leaf hash: "));
        assert_eq!(wharf_ledger::leaf_hash(field("leaf: ").as_bytes()), leaf);
        let path: Vec<wharf_ledger::Hash> = proof
            .split("proof (leaf side first):")
            .nth(1)
            .unwrap()
            .lines()
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            .map(hash)
            .collect();
        wharf_ledger::verify_inclusion(seq, size, &leaf, &path, &hash(&field("root: ")))
            .unwrap_or_else(|e| panic!("the page's proof does not check: {e:?}\n{proof}"));
        // …to the root the signed checkpoint shown beside it names (its size and root lines).
        let note: Vec<&str> = proof
            .split("signed checkpoint:\n")
            .nth(1)
            .unwrap()
            .lines()
            .collect();
        assert_eq!(note[1], size.to_string(), "{proof}");
        use base64::Engine as _;
        let signed = base64::engine::general_purpose::STANDARD
            .decode(note[2])
            .unwrap();
        assert_eq!(signed, hash(&field("root: ")), "{proof}");
    });
    load.stop();
}
