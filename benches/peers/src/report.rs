//! Reads criterion's output for the `peers/*` groups and renders the
//! BENCHMARKS.md table and the latency plot (SVG written by hand: no
//! plotting dependency).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// The engines, in the order tables and legends list them.
pub const ENGINES: [&str; 7] = [
    "rolegraph",
    "rolegraph_user",
    "casbin",
    "casbin_cached",
    "cedar_per_role",
    "cedar_flat",
    "naive",
];

/// The groups, in the order the table lists them, with what their size means.
pub const GROUPS: [(&str, &str); 8] = [
    ("peers/w1_allow", "roles"),
    ("peers/w1_deny", "roles"),
    ("peers/w2_chain", "roles deep"),
    ("peers/w3_diamond_allow", "roles"),
    ("peers/w3_diamond_deny", "roles"),
    ("peers/w6_claims", "token roles"),
    ("peers/u1_update", "roles"),
    ("peers/build", "roles"),
];

/// `(group, size) → engine → median in nanoseconds`.
pub type Medians = BTreeMap<(String, u64), BTreeMap<String, f64>>;

/// Every `new/estimates.json` under `criterion_dir` whose group starts with
/// `peers/`.
///
/// # Errors
///
/// When the directory cannot be read.
pub fn read(criterion_dir: &Path) -> std::io::Result<Medians> {
    let mut out = Medians::new();
    for group in std::fs::read_dir(criterion_dir)? {
        let group = group?.path();
        if !group
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("peers_"))
        {
            continue;
        }
        for engine in std::fs::read_dir(&group)? {
            let engine = engine?.path();
            if !engine.is_dir() {
                continue;
            }
            for size in std::fs::read_dir(&engine)? {
                let new = size?.path().join("new");
                let (Ok(bench), Ok(est)) = (
                    std::fs::read_to_string(new.join("benchmark.json")),
                    std::fs::read_to_string(new.join("estimates.json")),
                ) else {
                    continue;
                };
                let bench: serde_json::Value = serde_json::from_str(&bench)?;
                let est: serde_json::Value = serde_json::from_str(&est)?;
                let (Some(g), Some(f), Some(v), Some(m)) = (
                    bench["group_id"].as_str(),
                    bench["function_id"].as_str(),
                    bench["value_str"]
                        .as_str()
                        .and_then(|v| v.parse::<u64>().ok()),
                    est["median"]["point_estimate"].as_f64(),
                ) else {
                    continue;
                };
                out.entry((g.to_owned(), v))
                    .or_default()
                    .insert(f.to_owned(), m);
            }
        }
    }
    Ok(out)
}

/// A duration in nanoseconds, three significant digits and a unit.
pub fn human(ns: f64) -> String {
    let (v, unit) = if ns >= 1e9 {
        (ns / 1e9, "s")
    } else if ns >= 1e6 {
        (ns / 1e6, "ms")
    } else if ns >= 1e3 {
        (ns / 1e3, "µs")
    } else {
        (ns, "ns")
    };
    if v >= 100.0 {
        format!("{v:.0} {unit}")
    } else if v >= 10.0 {
        format!("{v:.1} {unit}")
    } else {
        format!("{v:.2} {unit}")
    }
}

/// A ratio with thousands separators: `152,076×`, `45×`, `0.07×`, `0.0032×`.
pub fn ratio(r: f64) -> String {
    if r < 0.01 {
        return format!("{r:.4}×");
    }
    if r < 10.0 {
        return format!("{r:.2}×");
    }
    let digits = format!("{r:.0}");
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out + "×"
}

/// The Markdown table: one row per group and size, one column per engine,
/// each cell the median and, for peers, the peer's median over rolegraph's.
pub fn table(m: &Medians) -> String {
    let mut out = String::from("| workload | size |");
    for e in ENGINES {
        let _ = write!(out, " {e} |");
    }
    out.push_str("\n|---|---:|");
    for _ in ENGINES {
        out.push_str("---:|");
    }
    out.push('\n');
    for (group, what) in &GROUPS {
        for ((g, size), row) in m.range((group.to_string(), 0)..=(group.to_string(), u64::MAX)) {
            let base = row.get("rolegraph").copied();
            let _ = write!(
                out,
                "| `{}` | {size} {what} |",
                g.trim_start_matches("peers/")
            );
            for e in ENGINES {
                match (row.get(e), base) {
                    (Some(&v), Some(b)) if e != "rolegraph" => {
                        let _ = write!(out, " {} ({}) |", human(v), ratio(v / b));
                    }
                    (Some(&v), _) => {
                        let _ = write!(out, " **{}** |", human(v));
                    }
                    (None, _) => out.push_str(" — |"),
                }
            }
            out.push('\n');
        }
    }
    out
}

const COLORS: [&str; 7] = [
    "#d62728", "#9467bd", "#1f77b4", "#17becf", "#ff7f0e", "#2ca02c", "#7f7f7f",
];

/// One log–log panel: `group`'s medians against its size, every engine.
fn panel(out: &mut String, m: &Medians, group: &str, what: &str, x0: f64, y0: f64) {
    const W: f64 = 420.0;
    const H: f64 = 300.0;
    let (left, right, top, bottom) = (x0 + 60.0, x0 + W - 25.0, y0 + 30.0, y0 + H - 45.0);
    let rows: Vec<(&u64, &BTreeMap<String, f64>)> = m
        .range((group.to_owned(), 0)..=(group.to_owned(), u64::MAX))
        .map(|((_, s), r)| (s, r))
        .collect();
    if rows.is_empty() {
        return;
    }
    let sizes: Vec<f64> = rows.iter().map(|(s, _)| **s as f64).collect();
    let values: Vec<f64> = rows.iter().flat_map(|(_, r)| r.values().copied()).collect();
    let (sx0, sx1) = (
        sizes.iter().copied().fold(f64::MAX, f64::min).log10(),
        sizes.iter().copied().fold(f64::MIN, f64::max).log10(),
    );
    let (dy0, dy1) = (
        values
            .iter()
            .copied()
            .fold(f64::MAX, f64::min)
            .log10()
            .floor(),
        values
            .iter()
            .copied()
            .fold(f64::MIN, f64::max)
            .log10()
            .ceil(),
    );
    let span_x = (sx1 - sx0).max(1e-9);
    let px = |s: f64| left + (s.log10() - sx0) / span_x * (right - left);
    let py = |v: f64| bottom - (v.log10() - dy0) / (dy1 - dy0).max(1e-9) * (bottom - top);
    let _ = writeln!(
        out,
        r#"<text x="{:.0}" y="{:.0}" font-size="14" font-weight="bold">{}</text>"#,
        left,
        y0 + 18.0,
        group.trim_start_matches("peers/")
    );
    let _ = writeln!(
        out,
        r##"<rect x="{left:.0}" y="{top:.0}" width="{:.0}" height="{:.0}" fill="none" stroke="#444"/>"##,
        right - left,
        bottom - top
    );
    // Decades on y.
    let mut d = dy0;
    while d <= dy1 + 1e-9 {
        let y = py(10f64.powf(d));
        let _ = writeln!(
            out,
            r##"<line x1="{left:.0}" y1="{y:.1}" x2="{right:.0}" y2="{y:.1}" stroke="#ddd"/><text x="{:.0}" y="{:.1}" font-size="10" text-anchor="end">{}</text>"##,
            left - 4.0,
            y + 3.0,
            human(10f64.powf(d))
        );
        d += 1.0;
    }
    for &s in &sizes {
        let x = px(s);
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{bottom:.0}" x2="{x:.1}" y2="{:.0}" stroke="#444"/><text x="{x:.1}" y="{:.0}" font-size="10" text-anchor="middle">{s}</text>"##,
            bottom + 4.0,
            bottom + 15.0
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{:.0}" y="{:.0}" font-size="11" text-anchor="middle">{what} (log)</text>"#,
        (left + right) / 2.0,
        bottom + 32.0
    );
    for (e, color) in ENGINES.iter().zip(COLORS) {
        let points: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|(s, r)| r.get(*e).map(|v| (px(**s as f64), py(*v))))
            .collect();
        if points.is_empty() {
            continue;
        }
        let path: Vec<String> = points
            .iter()
            .map(|(x, y)| format!("{x:.1},{y:.1}"))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
            path.join(" ")
        );
        for (x, y) in points {
            let _ = writeln!(
                out,
                r#"<circle cx="{x:.1}" cy="{y:.1}" r="3" fill="{color}"/>"#
            );
        }
    }
}

/// The plot: check latency (median, log) against policy size (log) for
/// every engine, one panel per check workload with more than one size.
pub fn svg(m: &Medians) -> String {
    let panels = [
        ("peers/w1_allow", "roles"),
        ("peers/w1_deny", "roles"),
        ("peers/w2_chain", "chain depth (roles)"),
        (
            "peers/w6_claims",
            "roles in the token (W3 policy, 1,000 roles)",
        ),
    ];
    let (w, h) = (860.0, 700.0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif">"#
    );
    let _ = writeln!(out, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="20" y="22" font-size="16" font-weight="bold">Check latency (criterion median, log scale) against policy size</text>"#
    );
    for (i, (group, what)) in panels.iter().enumerate() {
        let x0 = 10.0 + (i % 2) as f64 * 430.0;
        let y0 = 35.0 + (i / 2) as f64 * 310.0;
        panel(&mut out, m, group, what, x0, y0);
    }
    for (i, (e, color)) in ENGINES.iter().zip(COLORS).enumerate() {
        let x = 20.0 + i as f64 * 140.0;
        let _ = writeln!(
            out,
            r#"<rect x="{x}" y="670" width="14" height="4" fill="{color}"/><text x="{}" y="676" font-size="12">{e}</text>"#,
            x + 18.0
        );
    }
    out.push_str("</svg>\n");
    out
}
