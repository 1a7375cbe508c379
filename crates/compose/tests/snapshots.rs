//! Snapshots of each fixture's whole import as a user sees it: the wharf.yaml on stdout and
//! the rendered warnings on stderr. A change to either shows up as a reviewable diff.

use std::path::Path;

use wharf_manifest::Diagnostic;

fn snapshot(name: &str) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let file = dir.join("docker-compose.yml");
    let text = std::fs::read_to_string(&file).expect("fixture exists");
    let read = |path: &str| std::fs::read_to_string(dir.join(path));
    let imported = wharf_compose::convert(&text, &file, &read).expect("fixture imports");
    let warnings: Vec<Diagnostic> = imported
        .warnings
        .iter()
        .map(|w| w.diagnostic.clone())
        .collect();
    let rendered =
        wharf_manifest::diagnostic::render(&warnings, "docker-compose.yml", &text, false);
    format!("{}\n---- stderr ----\n{rendered}", imported.yaml)
}

#[test]
fn voting_app() {
    insta::assert_snapshot!(snapshot("voting-app"));
}

#[test]
fn django_celery() {
    insta::assert_snapshot!(snapshot("django-celery"));
}

#[test]
fn wordpress() {
    insta::assert_snapshot!(snapshot("wordpress"));
}

#[test]
fn sentry_style() {
    insta::assert_snapshot!(snapshot("sentry-style"));
}

#[test]
fn node_mongo() {
    insta::assert_snapshot!(snapshot("node-mongo"));
}
