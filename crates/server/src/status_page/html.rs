//! The status page as one self-contained HTML document: inline CSS, no script, no font, image
//! or stylesheet from anywhere (the server's Content-Security-Policy forbids them too), a meta
//! refresh every 30 s. Every text from the manifest or an incident is escaped.

use std::fmt::Write;

use wharf_api::status_page::{Indicator, PublicIncident};

use super::Page;

/// `&`, `<`, `>`, `"` and `'` as entities: safe in text and in quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1f2328}
main{max-width:880px;margin:0 auto;padding:24px 16px}
h1{font-size:1.6rem;margin:8px 0 20px}
h2{font-size:1.1rem;margin:28px 0 10px}
.banner{border-radius:6px;padding:16px 20px;color:#fff;font-size:1.2rem;font-weight:600}
.none{background:#2e8540}.minor{background:#c47f00}.major{background:#d4551e}.critical{background:#c0262d}.maintenance{background:#2f6fb3}
.card{background:#fff;border:1px solid #d8dee4;border-radius:6px;padding:14px 18px;margin:10px 0}
.row{display:flex;justify-content:space-between;align-items:baseline;gap:12px;flex-wrap:wrap}
.name{font-weight:600}.desc{color:#57606a;font-size:.9rem}
.state{font-weight:600}
.s-operational{color:#2e8540}.s-degraded_performance{color:#c47f00}.s-partial_outage{color:#d4551e}.s-major_outage{color:#c0262d}.s-under_maintenance{color:#2f6fb3}
.bars{display:flex;gap:2px;margin:10px 0 4px;height:28px}
.bar{flex:1;border-radius:2px;background:#d0d7de}
.b-full{background:#2e8540}.b-most{background:#8cb369}.b-some{background:#c47f00}.b-low{background:#c0262d}
.uptime{color:#57606a;font-size:.85rem}
.update{border-left:3px solid #d0d7de;padding:2px 10px;margin:8px 0}
.when{color:#57606a;font-size:.8rem}
footer{color:#57606a;font-size:.8rem;margin-top:32px}
";

fn indicator_class(indicator: Indicator) -> &'static str {
    match indicator {
        Indicator::None => "none",
        Indicator::Minor => "minor",
        Indicator::Major => "major",
        Indicator::Critical => "critical",
        Indicator::Maintenance => "maintenance",
    }
}

/// An RFC 3339 time as people read it (`2027-01-15 08:00 UTC`); anything else escaped as is.
fn when(text: &str) -> String {
    match text.parse::<jiff::Timestamp>() {
        Ok(time) => time.strftime("%Y-%m-%d %H:%M UTC").to_string(),
        Err(_) => escape(text),
    }
}

fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "no data".to_owned(), |v| format!("{v:.2}%"))
}

fn bar_class(value: Option<f64>) -> &'static str {
    match value {
        None => "bar",
        Some(v) if v >= 99.95 => "bar b-full",
        Some(v) if v >= 99.0 => "bar b-most",
        Some(v) if v >= 90.0 => "bar b-some",
        Some(_) => "bar b-low",
    }
}

/// The whole page.
pub fn render(page: &Page) -> String {
    let summary = &page.summary;
    let title = escape(&summary.page.name);
    let mut out = String::with_capacity(8 << 10);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"30\">\
         <title>{title} status</title><style>{STYLE}</style></head><body><main>\
         <h1>{title}</h1><div class=\"banner {}\" role=\"status\">{}</div>",
        indicator_class(summary.status.indicator),
        escape(&summary.status.description)
    );
    for maintenance in &summary.scheduled_maintenances {
        let names: Vec<String> = maintenance
            .components
            .iter()
            .map(|c| escape(&c.name))
            .collect();
        let until = maintenance
            .scheduled_until
            .as_deref()
            .map(|t| format!(" until {}", when(t)))
            .unwrap_or_default();
        let _ = write!(
            out,
            "<div class=\"card\"><div class=\"name s-under_maintenance\">{}</div>\
             <div class=\"desc\">{}: since {}{until}</div></div>",
            escape(&maintenance.name),
            names.join(", "),
            when(&maintenance.started_at),
        );
    }
    incidents(&mut out, "Active incidents", &summary.incidents);
    out.push_str("<h2>Components</h2>");
    for (component, bars) in summary.components.iter().zip(&page.bars) {
        let status = component.status;
        let _ = write!(
            out,
            "<div class=\"card\"><div class=\"row\"><span class=\"name\">{}</span>\
             <span class=\"state s-{}\">{}</span></div>",
            escape(&component.name),
            status.as_str(),
            status.label()
        );
        if let Some(description) = &component.description {
            let _ = write!(out, "<div class=\"desc\">{}</div>", escape(description));
        }
        out.push_str("<div class=\"bars\" aria-label=\"uptime per day, last 30 days\">");
        for (age, value) in bars.iter().enumerate().rev() {
            let _ = write!(
                out,
                "<div class=\"{}\" title=\"{} day(s) ago: {}\"></div>",
                bar_class(*value),
                age,
                percent(*value)
            );
        }
        let _ = write!(
            out,
            "</div><div class=\"row uptime\"><span>30 days ago</span><span>today</span></div>\
             <div class=\"uptime\">Uptime — 24 hours: {} · 7 days: {} · 30 days: {}</div></div>",
            percent(component.uptime.last_24h),
            percent(component.uptime.last_7d),
            percent(component.uptime.last_30d)
        );
    }
    incidents(&mut out, "Recent incidents", &page.recent);
    let _ = writeln!(
        out,
        "<footer>Updated {}. Uptime leaves out declared maintenance. \
         Also as JSON: <a href=\"api/v2/summary.json\">summary.json</a>.</footer>\
         </main></body></html>",
        when(&summary.page.updated_at)
    );
    out
}

fn incidents(out: &mut String, heading: &str, list: &[PublicIncident]) {
    if list.is_empty() {
        return;
    }
    let _ = write!(out, "<h2>{heading}</h2>");
    for incident in list {
        let affected: Vec<String> = incident
            .components
            .iter()
            .map(|c| escape(&c.name))
            .collect();
        let _ = write!(
            out,
            "<div class=\"card\"><div class=\"row\"><span class=\"name\">{}</span>\
             <span class=\"state\">{}</span></div>",
            escape(&incident.name),
            incident.status.label()
        );
        if !affected.is_empty() {
            let _ = write!(
                out,
                "<div class=\"desc\">Affects {}</div>",
                affected.join(", ")
            );
        }
        for update in &incident.incident_updates {
            let _ = write!(
                out,
                "<div class=\"update\"><strong>{}</strong> — {}<div class=\"when\">{}</div></div>",
                update.status.label(),
                escape(&update.body),
                when(&update.created_at)
            );
        }
        out.push_str("</div>");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_minutes_in_utc_and_anything_else_is_escaped() {
        assert_eq!(
            when("2027-01-15T08:00:59.123456789Z"),
            "2027-01-15 08:00 UTC"
        );
        assert_eq!(when("<b>"), "&lt;b&gt;");
    }

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"y\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;"
        );
    }
}
