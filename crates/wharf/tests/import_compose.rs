//! `wharf import compose` through the real binary, in a fresh temp dir: the manifest on stdout
//! validates with `wharf validate`, warnings on stderr name compose file:line:column, and a
//! broken compose file exits 2 with nothing on stdout.

use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;

fn wharf(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("wharf").expect("wharf binary is built");
    cmd.current_dir(dir)
        .env_remove("WHARF_STATE_DIR")
        .env("NO_COLOR", "1");
    cmd
}

const COMPOSE: &str = "\
services:
  web:
    build: .
    command: gunicorn app:app --bind 0.0.0.0:8000
    env_file: .env
    ports:
      - \"8000:8000\"
    depends_on:
      db:
        condition: service_healthy
    stdin_open: true
  db:
    image: postgres:16
    volumes:
      - pg:/var/lib/postgresql/data
    healthcheck:
      test: [\"CMD-SHELL\", \"pg_isready -U postgres\"]
      interval: 5s
volumes:
  pg:
";

/// Writes `files` into a fresh temp dir named `shop` (the compose project name).
fn project(files: &[(&str, &str)]) -> (tempfile::TempDir, std::path::PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("shop");
    std::fs::create_dir(&dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    (root, dir)
}

#[test]
fn import_writes_a_manifest_that_validates_and_warns_on_stderr() {
    let (_root, dir) = project(&[
        ("docker-compose.yml", COMPOSE),
        (
            ".env",
            "SECRET_KEY=s3cr3t-from-the-env-file\nLOG_LEVEL=debug\n",
        ),
    ]);
    let output = wharf(&dir)
        .args(["import", "compose", "docker-compose.yml"])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stdout.starts_with("# imported from docker-compose.yml by wharf import compose"),
        "{stdout}"
    );
    assert!(stdout.contains("name: shop"), "{stdout}");
    assert!(
        stdout.contains("LOG_LEVEL: debug"),
        "the env file beside the compose file is read: {stdout}"
    );
    assert!(
        stdout.contains("SECRET_KEY: ${secret:SECRET_KEY}"),
        "a credential becomes a secret reference: {stdout}"
    );
    assert!(
        !stdout.contains("s3cr3t") && !stderr.contains("s3cr3t"),
        "the value is printed nowhere:\n{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("wharf secret set SECRET_KEY")
            && stderr.contains("`SECRET_KEY` in .env (env_file of web, line 5)"),
        "{stderr}"
    );
    assert!(
        stdout.contains("    build: .\n"),
        "compose's build is wharf's: {stdout}"
    );
    for expected in [
        "docker-compose.yml:11:5",
        "`services.web.stdin_open` is not carried over",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    // The image's named volume is carried; its top-level declaration needs nothing more.
    assert!(stdout.contains("- pg:/var/lib/postgresql/data"), "{stdout}");
    assert!(!stderr.contains("volumes"), "{stderr}");
    assert!(!stdout.contains("warning"), "warnings stay off stdout");
    std::fs::write(dir.join("wharf.yaml"), &stdout).unwrap();
    wharf(&dir)
        .args(["validate", "-f", "wharf.yaml"])
        .assert()
        .code(0)
        .stderr(predicate::str::contains("error").not());
    // The printed command works as printed against the imported manifest, the value on stdin.
    wharf(&dir)
        .args(["secret", "set", "SECRET_KEY"])
        .write_stdin("s3cr3t-from-the-env-file\n")
        .assert()
        .code(0);
    wharf(&dir)
        .args(["secret", "list"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("SECRET_KEY"))
        .stdout(predicate::str::contains("s3cr3t").not());
}

#[test]
fn invalid_yaml_exits_2_naming_file_line_and_column() {
    let broken = "services:\n  web:\n    image: nginx\n    ports: [\"80:80\"\n";
    let (_root, dir) = project(&[("docker-compose.yml", broken)]);
    wharf(&dir)
        .args(["import", "compose", "docker-compose.yml"])
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains("invalid YAML"))
        .stderr(predicate::str::is_match(r"docker-compose\.yml:\d+:\d+").unwrap());
}

#[test]
fn a_file_without_services_is_not_a_compose_file() {
    let (_root, dir) = project(&[("compose.yaml", "version: \"3\"\nvolumes:\n  data:\n")]);
    wharf(&dir)
        .args(["import", "compose", "compose.yaml"])
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains(
            "not a compose file: there is no top-level `services` key",
        ))
        .stderr(predicate::str::contains("compose.yaml:1:1"));
}

#[test]
fn a_missing_env_file_is_an_error_naming_it() {
    let (_root, dir) = project(&[("docker-compose.yml", COMPOSE)]);
    wharf(&dir)
        .args(["import", "compose", "docker-compose.yml"])
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains(
            "env_file `.env` could not be read",
        ))
        .stderr(predicate::str::contains("docker-compose.yml:5:15"));
}

#[test]
fn an_optional_missing_env_file_is_skipped() {
    let compose = "services:\n  web:\n    image: nginx\n    env_file:\n      - path: ./local.env\n        required: false\n";
    let (_root, dir) = project(&[("docker-compose.yml", compose)]);
    wharf(&dir)
        .args(["import", "compose", "docker-compose.yml"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("image: nginx"));
}

#[test]
fn a_missing_compose_file_exits_2() {
    let (_root, dir) = project(&[]);
    wharf(&dir)
        .args(["import", "compose", "nope.yml"])
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains(
            "cannot read compose file nope.yml",
        ));
}

#[test]
fn a_required_variable_is_checked_against_the_env_file_beside_the_compose_file() {
    let compose = "services:\n  web:\n    image: \"${WHARF_TEST_IMAGE:?set the image}\"\n";
    let (_root, dir) = project(&[("docker-compose.yml", compose)]);
    wharf(&dir)
        .env_remove("WHARF_TEST_IMAGE")
        .args(["import", "compose", "docker-compose.yml"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains(
            "image: ${WHARF_TEST_IMAGE:?set the image}",
        ))
        .stderr(predicate::str::contains(
            "`WHARF_TEST_IMAGE`: set the image",
        ))
        .stderr(predicate::str::contains("needs the fixes above"));
    std::fs::write(dir.join(".env"), "WHARF_TEST_IMAGE=nginx\n").unwrap();
    wharf(&dir)
        .env_remove("WHARF_TEST_IMAGE")
        .args(["import", "compose", "docker-compose.yml"])
        .assert()
        .code(0)
        .stderr(predicate::str::contains("needs the fixes above").not());
}

#[test]
fn every_compose_fixture_imports_into_a_manifest_wharf_validate_accepts() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../compose/tests/fixtures");
    for name in [
        "voting-app",
        "django-celery",
        "wordpress",
        "sentry-style",
        "node-mongo",
        "supabase",
        "immich",
        "mastodon",
        "gitea",
        "nextcloud",
        "airflow",
        "plausible",
    ] {
        let compose = ["docker-compose.yml", "docker-compose.yaml"]
            .iter()
            .map(|file| fixtures.join(name).join(file))
            .find(|path| path.exists())
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        // `wharf validate` interpolates from the `.env` beside wharf.yaml, as compose did
        // from the one beside the compose file.
        if let Ok(dotenv) = std::fs::read(fixtures.join(name).join(".env")) {
            std::fs::write(dir.path().join(".env"), dotenv).unwrap();
        }
        let output = wharf(dir.path())
            .args(["import", "compose"])
            .arg(&compose)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{name}: {stderr}");
        assert!(
            stderr.contains("docker-compose.y"),
            "{name}: warnings name the compose file: {stderr}"
        );
        assert!(
            !stderr.contains("needs the fixes above"),
            "{name}: {stderr}"
        );
        std::fs::write(dir.path().join("wharf.yaml"), &output.stdout).unwrap();
        wharf(dir.path())
            .args(["validate", "-f", "wharf.yaml"])
            .assert()
            .code(0);
    }
}

#[test]
fn output_json_gives_the_manifest_and_each_warning_with_its_position() {
    let (_root, dir) = project(&[
        ("docker-compose.yml", COMPOSE),
        (".env", "SECRET_KEY=s3cr3t-from-the-env-file\n"),
    ]);
    let output = wharf(&dir)
        .args([
            "import",
            "compose",
            "docker-compose.yml",
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(value["imported"], true);
    assert!(value["manifest"].as_str().unwrap().contains("services:"));
    let warnings = value["warnings"].as_array().unwrap();
    assert!(!warnings.is_empty(), "`stdin_open` is not carried over");
    for warning in warnings {
        assert_eq!(warning["file"], "docker-compose.yml");
        assert!(warning["line"].as_u64().unwrap() > 0, "{warning}");
        assert!(warning["message"].is_string());
    }
    let secrets = &value["secrets"];
    assert_eq!(secrets[0]["name"], "SECRET_KEY", "{value}");
    assert_eq!(secrets[0]["command"], "wharf secret set SECRET_KEY");
    assert_eq!(secrets[0]["sources"][0]["env_file"], ".env");
    assert_eq!(secrets[0]["sources"][0]["line"], 5);
    assert!(!value.to_string().contains("s3cr3t"), "{value}");
    // A broken file: the error and its diagnostics as JSON, exit 2.
    std::fs::write(dir.join("docker-compose.yml"), "services:\n  web: [\n").unwrap();
    let output = wharf(&dir)
        .args([
            "import",
            "compose",
            "docker-compose.yml",
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(value["imported"], false);
    assert!(
        value["diagnostics"][0]["line"].as_u64().is_some(),
        "{value}"
    );
}

/// A bind mount is relative to the compose file; written to a wharf.yaml in another
/// directory, it is rewritten relative to that one (and kept as is on a pipe, where the
/// wharf.yaml is taken to go beside the compose file).
#[test]
fn bind_mounts_follow_the_wharf_yaml_written_elsewhere() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("app")).unwrap();
    std::fs::write(
        root.path().join("app/docker-compose.yml"),
        "services:\n  web:\n    image: nginx:1.27\n    volumes:\n      - ./site:/usr/share/nginx/html:ro\n      - cache:/var/cache/nginx\n  api:\n    build: ./api\nvolumes:\n  cache:\n",
    )
    .unwrap();
    let out = std::fs::File::create(root.path().join("wharf.yaml")).unwrap();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["import", "compose", "app/docker-compose.yml"])
        .current_dir(root.path())
        .stdout(out)
        .status()
        .unwrap();
    assert!(status.success());
    let written = std::fs::read_to_string(root.path().join("wharf.yaml")).unwrap();
    assert!(
        written.contains("- ./app/site:/usr/share/nginx/html:ro"),
        "{written}"
    );
    assert!(written.contains("- cache:/var/cache/nginx"), "{written}");
    // A build context moves with the binds.
    assert!(written.contains("build: ./app/api\n"), "{written}");
    let piped = wharf(root.path())
        .args(["import", "compose", "app/docker-compose.yml"])
        .output()
        .unwrap();
    let piped = String::from_utf8(piped.stdout).unwrap();
    assert!(
        piped.contains("- ./site:/usr/share/nginx/html:ro"),
        "{piped}"
    );
    assert!(piped.contains("build: ./api\n"), "{piped}");
}
