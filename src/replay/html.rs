//! The report as one self-contained HTML page: inline CSS and SVG, no scripts, nothing fetched.

use std::fmt::Write as _;

use super::report::{human_duration, thousands, Report};

/// The timeline's colours, by verdict (a challenge is turned away too, so it is in "blocked or challenged" there).
const COLOURS: [(&str, &str); 4] =
    [("forwarded", "#3f8f5f"), ("blocked or challenged", "#c8453c"), ("invalid", "#e0a030"), ("error", "#888888")];
/// The per-actor bars' colours: challenges apart from blocks.
const ACTOR_COLOURS: [(&str, &str); 5] = [
    ("forwarded", "#3f8f5f"),
    ("blocked", "#c8453c"),
    ("challenged", "#7a5cc0"),
    ("invalid", "#e0a030"),
    ("error", "#888888"),
];

fn esc(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Stacked bars of verdicts per timeline bucket.
fn timeline_svg(report: &Report) -> String {
    let (w, h, left, bottom, top) = (900.0, 260.0, 60.0, 30.0, 10.0);
    let buckets = &report.timeline.buckets;
    let peak = buckets.iter().map(|b| b.iter().sum::<u64>()).max().unwrap_or(0).max(1) as f64;
    let plot_w = w - left - 10.0;
    let plot_h = h - bottom - top;
    let bar_w = plot_w / buckets.len().max(1) as f64;
    let mut svg =
        format!(r#"<svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="decisions over time">"#);
    for i in 0..=4 {
        let y = top + plot_h * (1.0 - i as f64 / 4.0);
        let value = peak * i as f64 / 4.0;
        let _ = write!(
            svg,
            r##"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
            w - 10.0,
            left - 6.0,
            y + 4.0,
            thousands(value.round() as u64)
        );
    }
    for (i, bucket) in buckets.iter().enumerate() {
        let x = left + i as f64 * bar_w;
        let mut y = top + plot_h;
        for (k, (name, colour)) in COLOURS.iter().enumerate() {
            let n = bucket[k];
            if n == 0 {
                continue;
            }
            let bh = plot_h * n as f64 / peak;
            y -= bh;
            let _ = write!(
                svg,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{bh:.1}" fill="{colour}"><title>{}: {} {name}</title></rect>"#,
                (bar_w - 1.0).max(0.5),
                human_duration(i as f64 * report.timeline.bucket_seconds),
                thousands(n)
            );
        }
    }
    let ticks = 6;
    for i in 0..=ticks {
        let x = left + plot_w * i as f64 / ticks as f64;
        let t = report.virtual_seconds * i as f64 / ticks as f64;
        let _ = write!(
            svg,
            r#"<text x="{x:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"#,
            h - 10.0,
            human_duration(t)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// One horizontal stacked bar per actor: shares of forwarded / blocked / invalid / errors.
fn actors_svg(report: &Report) -> String {
    let row = 26.0;
    let (w, left, right) = (900.0, 200.0, 90.0);
    let h = row * report.actors.len() as f64 + 10.0;
    let plot_w = w - left - right;
    let mut svg =
        format!(r#"<svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="verdicts per actor">"#);
    for (i, a) in report.actors.iter().enumerate() {
        let y = 5.0 + i as f64 * row;
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="end">{} ({})</text>"#,
            left - 8.0,
            y + 15.0,
            esc(&a.name),
            a.kind.as_str()
        );
        let c = &a.counts;
        let parts = [c.forwarded, c.blocked, c.challenged, c.invalid, c.errors];
        let total = parts.iter().sum::<u64>().max(1) as f64;
        let mut x = left;
        for (k, (name, colour)) in ACTOR_COLOURS.iter().enumerate() {
            if parts[k] == 0 {
                continue;
            }
            let bw = plot_w * parts[k] as f64 / total;
            let _ = write!(
                svg,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{bw:.1}" height="{:.1}" fill="{colour}"><title>{} {name} ({:.1}%)</title></rect>"#,
                row - 6.0,
                thousands(parts[k]),
                parts[k] as f64 * 100.0 / total
            );
            x += bw;
        }
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" font-size="12">{}</text>"#,
            w - right + 6.0,
            y + 15.0,
            thousands(a.counts.sent)
        );
    }
    svg.push_str("</svg>");
    svg
}

fn legend(colours: &[(&str, &str)]) -> String {
    let mut out = String::from(r#"<p class="legend">"#);
    for (name, colour) in colours {
        let _ = write!(out, r#"<span><i style="background:{colour}"></i>{name}</span>"#);
    }
    out.push_str("</p>");
    out
}

pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let title = format!("stuffgate replay — {}", esc(&report.scenario));
    let _ = write!(
        out,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title><style>
body{{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:960px;color:#222}}
h1{{font-size:1.5em}} h2{{font-size:1.15em;margin-top:2em}}
table{{border-collapse:collapse;width:100%}} th,td{{padding:4px 8px;border-bottom:1px solid #e4e4e4;text-align:right}}
th:first-child,td:first-child,th:nth-child(2),td:nth-child(2){{text-align:left}} td.o{{text-align:left}}
.kpi{{display:flex;gap:1em;flex-wrap:wrap}} .kpi div{{border:1px solid #ddd;border-radius:6px;padding:.6em 1em;min-width:9em}}
.kpi b{{display:block;font-size:1.4em}} .legend span{{margin-right:1.2em}} .legend i{{display:inline-block;width:.9em;height:.9em;margin-right:.3em;vertical-align:-1px}}
.muted{{color:#666}}
</style></head><body><h1>{title}</h1>"#
    );
    let speed = if report.speed == 0.0 { "as fast as possible".to_string() } else { format!("×{}", report.speed) };
    let against = match (&report.target, &report.policy) {
        (Some(t), _) => format!("Online run against {}", esc(t)),
        (None, Some(p)) => format!("Offline run through the engine with {}", esc(p)),
        (None, None) => "Offline run".into(),
    };
    let _ = write!(
        out,
        r#"<p class="muted">{against}; seed {}; speed {speed}; {} of virtual time in {:.1} s; {} requests ({}/s)"#,
        report.seed,
        human_duration(report.virtual_seconds),
        report.wall_seconds,
        thousands(report.totals.sent),
        thousands(report.requests_per_second.round() as u64)
    );
    if let Some(l) = &report.latency {
        let _ = write!(out, "; latency p50 {:.2} ms, p99 {:.2} ms", l.p50_ms, l.p99_ms);
    }
    out.push_str("</p>");

    let h = &report.harm;
    let l = &report.legit;
    let _ = write!(
        out,
        r#"<div class="kpi"><div>accounts taken over<b>{}</b></div><div>valid pairs confirmed<b>{}</b></div><div>fraudulent top-ups<b>¥{}</b></div><div>reset links sent elsewhere<b>{}</b></div><div>fake sign-ups<b>{}</b></div><div>legitimate users got in<b>{:.1}%</b>{} of {}</div></div>"#,
        thousands(h.accounts_taken_over),
        thousands(h.valid_pairs_confirmed),
        thousands(h.fraudulent_topup_yen),
        thousands(h.reset_links_sent_elsewhere),
        thousands(h.fake_signups),
        l.got_in_percent,
        thousands(l.got_in),
        thousands(l.visits)
    );

    out.push_str("<h2>Decisions over (virtual) time</h2>");
    out.push_str(&legend(&COLOURS));
    out.push_str(&timeline_svg(report));
    out.push_str("<h2>Verdicts per actor</h2>");
    out.push_str(&legend(&ACTOR_COLOURS));
    out.push_str(&actors_svg(report));

    out.push_str("<h2>Per actor</h2><table><tr><th>actor</th><th>kind</th><th>sent</th><th>forwarded</th><th>blocked</th><th>challenged</th><th>invalid</th><th>errors</th><th>taken over</th><th>¥ topped up</th><th>legit got in</th></tr>");
    for a in &report.actors {
        let legit = a
            .legit
            .as_ref()
            .map(|l| format!("{} / {} ({:.1}%)", thousands(l.got_in), thousands(l.visits), l.got_in_percent))
            .unwrap_or_default();
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&a.name),
            a.kind.as_str(),
            thousands(a.counts.sent),
            thousands(a.counts.forwarded),
            thousands(a.counts.blocked),
            thousands(a.counts.challenged),
            thousands(a.counts.invalid),
            thousands(a.counts.errors),
            thousands(a.harm.accounts_taken_over),
            thousands(a.harm.fraudulent_topup_yen),
            legit
        );
    }
    out.push_str("</table>");
    if !report.blocked_by.is_empty() {
        out.push_str("<h2>Answered by defense</h2><p class=\"muted\">Requests each defense blocked or challenged");
        out.push_str(if report.target.is_some() {
            ", from the gateway's findings counters over the run.</p>"
        } else {
            ", as the engine decided them.</p>"
        });
        out.push_str("<table><tr><th>defense</th><th></th><th>requests</th></tr>");
        let mut by: Vec<_> = report.blocked_by.iter().collect();
        by.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (defense, n) in by {
            let _ = write!(out, "<tr><td>{}</td><td></td><td>{}</td></tr>", esc(defense), thousands(*n));
        }
        out.push_str("</table>");
    }
    if let Some(policy) = &report.policy {
        let ran = if report.target.is_some() { "The policy the gateway ran" } else { "The policy the engine ran" };
        let _ = write!(out, "<h2>Policy</h2><p>{ran}: <code>{}</code>.</p>", esc(policy));
    }
    if let Some(u) = &report.upstream {
        let _ = write!(
            out,
            "<h2>What the demo upstream counted</h2><p>{} logins ok, {} failed; {} resets ({} links sent elsewhere); {} top-ups worth ¥{}; {} sign-ups.</p>",
            thousands(u.logins_ok),
            thousands(u.logins_failed),
            thousands(u.resets),
            thousands(u.reset_links_elsewhere),
            thousands(u.topups),
            thousands(u.topup_yen),
            thousands(u.signups)
        );
    }
    if !report.notes.is_empty() {
        out.push_str("<h2>Notes</h2><ul>");
        for note in &report.notes {
            let _ = write!(out, "<li>{}</li>", esc(note));
        }
        out.push_str("</ul>");
    }
    out.push_str("</body></html>\n");
    out
}
