//! Property tests of the importer (STYLE rule 15: parsers of outside input): arbitrary text
//! never panics and every warning points inside the file; a credential written anywhere a
//! compose file may hold it — `environment` (both forms), an env file, a URL's password,
//! shared by services under different names — never reaches the output, and the output
//! validates with every secret declared.

use std::io;
use std::path::Path;

use proptest::prelude::*;
use wharf_compose::convert;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        max_shrink_iters: 64,
        ..ProptestConfig::default()
    }
}

fn no_files(path: &str) -> io::Result<String> {
    Err(io::Error::new(io::ErrorKind::NotFound, path.to_owned()))
}

/// Names that read as credentials, in the spellings compose files use.
fn secret_name() -> impl Strategy<Value = String> {
    let stem = prop::sample::select(vec![
        "PASSWORD",
        "DB_PASS",
        "SECRET_KEY_BASE",
        "AWS_SECRET_ACCESS_KEY",
        "API_TOKEN",
        "JWT_SECRET",
        "SMTP_PASSWORD",
        "PRIVATE_KEY",
        "GITEA__database__PASSWD",
    ]);
    (
        prop::sample::select(vec!["", "APP_", "POSTGRES_", "X_"]),
        stem,
    )
        .prop_map(|(prefix, stem)| format!("{prefix}{stem}"))
}

/// A value that looks like nothing else in a compose file, so finding it means it leaked.
fn secret_value() -> impl Strategy<Value = String> {
    "[A-Za-z0-9]{6,16}".prop_map(|v| format!("Zq{v}9"))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_text_never_panics_and_warnings_point_into_it(text in "\\PC{0,400}") {
        if let Ok(imported) = convert(&text, Path::new("/p/docker-compose.yml"), &no_files) {
            for warning in &imported.warnings {
                let span = warning.diagnostic.span;
                prop_assert!(span.start <= span.end && span.end <= text.len(), "{warning:?}");
            }
        }
    }

    #[test]
    fn arbitrary_services_never_panic(
        keys in prop::collection::vec(
            prop::sample::select(vec![
                "image: x", "build: .", "command: run", "restart: on-failure:3", "restart: no",
                "ports: [\"$P:80/tcp\", \"8080:80\"]", "environment: [A=1, PASSWORD=pw]",
                "depends_on: [a]", "volumes: [d:/d]", "<<: *t", "healthcheck: {test: x}",
                "deploy: {restart_policy: {condition: on-failure, max_attempts: 2}}",
            ]),
            0..6,
        ),
    ) {
        let body: String = keys.iter().map(|k| format!("    {k}\n")).collect();
        let text = format!("x-t: &t\n  user: root\n  image: postgres:16\nservices:\n  a:\n    image: redis\n  b:\n{body}");
        let _ = convert(&text, Path::new("/p/docker-compose.yml"), &no_files);
    }

    #[test]
    fn no_credential_reaches_the_output(
        name in secret_name(),
        other in secret_name(),
        value in secret_value(),
        url_password in secret_value(),
        file_value in secret_value(),
        list_form in any::<bool>(),
    ) {
        let environment = if list_form {
            format!("      - {name}={value}\n      - DATABASE_URL=postgres://app:{url_password}@db:5432/app\n")
        } else {
            format!("      {name}: \"{value}\"\n      DATABASE_URL: postgres://app:{url_password}@db:5432/app\n")
        };
        let text = format!(
            "services:\n  db:\n    image: postgres:16\n    environment:\n      POSTGRES_PASSWORD: \"{url_password}\"\n  app:\n    image: app\n    env_file: app.env\n    environment:\n{environment}  worker:\n    image: app\n    environment:\n      {other}: \"{value}\"\n"
        );
        let env_file = format!("FILE_{other}={file_value}\nPLAIN=kept\n");
        let read = |_: &str| Ok(env_file.clone());
        let imported = convert(&text, Path::new("/p/docker-compose.yml"), &read)
            .map_err(|e| TestCaseError::fail(format!("{e}: {:?}", e.diagnostics())))?;
        let everything = format!("{imported:?}");
        for secret in [&value, &url_password, &file_value] {
            prop_assert!(!everything.contains(secret.as_str()), "{secret} in:\n{}", imported.yaml);
        }
        prop_assert!(imported.yaml.contains("PLAIN: kept"));
        let loaded = wharf_manifest::load(
            &imported.yaml,
            wharf_manifest::EnvironmentChoice::Default,
            &|_: &str| None,
        );
        prop_assert!(!loaded.has_errors(), "{}\n{:#?}", imported.yaml, loaded.diagnostics);
        // The URL's password and the database's are one secret.
        let db = imported.secrets.iter().find(|s| s.name == "POSTGRES_PASSWORD").unwrap();
        prop_assert!(db.sources.iter().any(|s| s.key == "services.app.environment.DATABASE_URL"));
    }
}
