"""Helm's own Go SDK (PyPI `helm-python-sdk`, Helm v4) for crates/wharf/tests/helm_chart.rs.

    python3 helm_chart.py lint CHART VALUES_FILE
    python3 helm_chart.py render CHART VALUES_FILE NAME NAMESPACE

VALUES_FILE is read as `helm -f` reads a values file. One JSON document on stdout:
- lint:   Helm's report ({"messages": [{"severity", "path", "error"}], "errors": [...]}).
- render: {"ok": true, "notes": TEXT, "yaml": every object as one multi-document stream,
          "objects": [{"template": PATH, "object": {...}}]}
          or {"ok": false, "error": TYPE, "message": TEXT} when Helm refuses the values or
          a template fails (the schema check, a `fail` in the chart).
Exit 0 either way: a refusal is an answer the test looks at; anything else is a crash.
"""

import json
import sys

import helm_python
import yaml


def lint(chart, values):
    return helm_python.lint(chart, values, strict=True)


def render(chart, values, name, namespace):
    try:
        files = helm_python.Chart.load(chart).render(values, name=name, namespace=namespace)
    except helm_python.HelmError as error:
        return {"ok": False, "error": type(error).__name__, "message": str(error)}
    notes, documents, objects = "", [], []
    for template in sorted(files):
        text = files[template]
        if template.endswith("NOTES.txt"):
            notes = text
            continue
        for document in yaml.safe_load_all(text):
            if document is None:
                continue
            objects.append({"template": template, "object": document})
            documents.append(yaml.safe_dump(document, sort_keys=False))
    return {"ok": True, "notes": notes, "yaml": "---\n".join(documents), "objects": objects}


def main(argv):
    action, chart, values_file = argv[1], argv[2], argv[3]
    with open(values_file, encoding="utf-8") as f:
        values = helm_python.values_from_yaml(f.read())
    if action == "lint":
        answer = lint(chart, values)
    elif action == "render":
        answer = render(chart, values, argv[4], argv[5])
    else:
        raise SystemExit(f"unknown action {action!r}: lint or render")
    json.dump(answer, sys.stdout)


if __name__ == "__main__":
    main(sys.argv)
