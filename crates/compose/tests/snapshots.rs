//! Snapshots of each fixture's whole import as a user sees it: the wharf.yaml on stdout, the
//! rendered warnings and the secrets to store on stderr. A change to any shows up as a
//! reviewable diff.

use std::path::Path;

use wharf_manifest::Diagnostic;

fn snapshot(name: &str) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let file = ["docker-compose.yml", "docker-compose.yaml"]
        .iter()
        .map(|f| dir.join(f))
        .find(|f| f.exists())
        .expect("fixture exists");
    let text = std::fs::read_to_string(&file).expect("fixture exists");
    let read = |path: &str| std::fs::read_to_string(dir.join(path));
    let imported = wharf_compose::convert(&text, &file, &read).expect("fixture imports");
    let warnings: Vec<Diagnostic> = imported
        .warnings
        .iter()
        .map(|w| w.diagnostic.clone())
        .collect();
    let display = file.file_name().unwrap().to_string_lossy();
    let rendered = wharf_manifest::diagnostic::render(&warnings, &display, &text, false);
    let secrets: String = imported
        .secrets
        .iter()
        .map(|s| format!("{}  # {}\n", s.command(), s.origin()))
        .collect();
    format!(
        "{}\n---- stderr ----\n{rendered}\n---- secrets ----\n{secrets}",
        imported.yaml
    )
}

macro_rules! fixtures {
    ($($test:ident => $name:literal),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                insta::assert_snapshot!(snapshot($name));
            }
        )*
    };
}

fixtures! {
    voting_app => "voting-app",
    django_celery => "django-celery",
    wordpress => "wordpress",
    sentry_style => "sentry-style",
    node_mongo => "node-mongo",
    supabase => "supabase",
    immich => "immich",
    mastodon => "mastodon",
    gitea => "gitea",
    nextcloud => "nextcloud",
    airflow => "airflow",
    plausible => "plausible",
}
