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
    let columns = ENGINES.map(|e| (e, e));
    engine_table(m, &GROUPS, &columns, "rolegraph")
}

/// One row per group of `groups` (`(group, what its size means)`) and size,
/// one column per `(engine, title)`, each cell the median and, for every
/// engine but `base`, its median over `base`'s.
fn engine_table(
    m: &Medians,
    groups: &[(&str, &str)],
    columns: &[(&str, &str)],
    base: &str,
) -> String {
    let mut out = String::from("| workload | size |");
    for (_, title) in columns {
        let _ = write!(out, " {title} |");
    }
    out.push_str("\n|---|---:|");
    for _ in columns {
        out.push_str("---:|");
    }
    out.push('\n');
    for (group, what) in groups {
        for ((g, size), row) in m.range((group.to_string(), 0)..=(group.to_string(), u64::MAX)) {
            let b = row.get(base).copied();
            let _ = write!(
                out,
                "| `{}` | {size} {what} |",
                g.trim_start_matches("peers/")
            );
            for (e, _) in columns {
                match (row.get(*e), b) {
                    (Some(&v), Some(b)) if *e != base => {
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

/// W1 with rolegraph resolving the user (`rolegraph_user`), the path
/// comparable to casbin's and Cedar's: one row per W1 group and size, each
/// cell the median and the engine's median over `rolegraph_user`'s.
pub fn user_table(m: &Medians) -> String {
    let columns = [
        ("rolegraph_user", "rolegraph_user"),
        ("rolegraph", "rolegraph (token)"),
        ("casbin", "casbin"),
        ("casbin_cached", "casbin_cached"),
        ("cedar_per_role", "cedar_per_role"),
        ("cedar_flat", "cedar_flat"),
        ("naive", "naive"),
    ];
    let groups = [("peers/w1_allow", "roles"), ("peers/w1_deny", "roles")];
    engine_table(m, &groups, &columns, "rolegraph_user")
}

/// Every criterion result: full benchmark id (`check/principal/100`,
/// `peers/w1_allow/casbin/10000`) → median in nanoseconds.
pub type AllMedians = BTreeMap<String, f64>;

/// Every `new/benchmark.json` + `new/estimates.json` pair under
/// `criterion_dir`, whatever its group (criterion's `base/` copies and
/// reports are skipped).
///
/// # Errors
///
/// When a directory cannot be read or a JSON file does not parse.
pub fn read_all(criterion_dir: &Path) -> std::io::Result<AllMedians> {
    let mut out = AllMedians::new();
    walk(criterion_dir, &mut out)?;
    Ok(out)
}

fn walk(dir: &Path, out: &mut AllMedians) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if !path.is_dir() {
            continue;
        }
        match path.file_name().and_then(|n| n.to_str()) {
            Some("new") => {
                let (Ok(bench), Ok(est)) = (
                    std::fs::read_to_string(path.join("benchmark.json")),
                    std::fs::read_to_string(path.join("estimates.json")),
                ) else {
                    continue;
                };
                let bench: serde_json::Value = serde_json::from_str(&bench)?;
                let est: serde_json::Value = serde_json::from_str(&est)?;
                if let (Some(id), Some(m)) = (
                    bench["full_id"].as_str(),
                    est["median"]["point_estimate"].as_f64(),
                ) {
                    out.insert(id.to_owned(), m);
                }
            }
            Some("base" | "change" | "report") => {}
            _ => walk(&path, out)?,
        }
    }
    Ok(())
}

/// Orders ids the way a reader expects: `/100` before `/10000`.
fn natural(id: &str) -> Vec<(u8, u64, &str)> {
    id.split('/')
        .map(|s| match s.parse::<u64>() {
            Ok(n) => (0, n, ""),
            Err(_) => (1, 0, s),
        })
        .collect()
}

/// A `| benchmark id | median |` table of every id matching one of
/// `patterns` (an exact id, or a prefix ending in `*`), in pattern order,
/// sizes in numeric order, each id once.
///
/// # Errors
///
/// The patterns that match no result, one per line: a table that silently
/// lost a row would read as complete.
pub fn ids_table(all: &AllMedians, patterns: &[&str]) -> Result<String, String> {
    let mut out = String::from("| benchmark id | median |\n|---|---:|\n");
    let mut seen = std::collections::BTreeSet::new();
    let mut missing = Vec::new();
    for pattern in patterns {
        let mut ids: Vec<&String> = match pattern.strip_suffix('*') {
            Some(prefix) => all.keys().filter(|k| k.starts_with(prefix)).collect(),
            None => all.keys().filter(|k| k == pattern).collect(),
        };
        if ids.is_empty() {
            missing.push(format!("no criterion result matches `{pattern}`"));
        }
        ids.sort_by(|a, b| natural(a).cmp(&natural(b)));
        for id in ids {
            if seen.insert(id.clone()) {
                let _ = writeln!(out, "| `{id}` | {} |", human(all[id]));
            }
        }
    }
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(missing.join("\n"))
    }
}

/// One checked target: what it says, what was measured, whether it is met.
struct Row {
    target: String,
    measured: String,
    met: Option<bool>,
}

/// The performance targets (DESIGN.md, README, issue texts) against this
/// run's medians: `| target | measured | |`, "met", "**not met**" or "not
/// measured" (a result missing from the run).
pub fn targets(all: &AllMedians) -> String {
    let get = |id: &str| all.get(id).copied();
    let mut rows: Vec<Row> = Vec::new();
    let at_most = |rows: &mut Vec<Row>, id: &str, limit: f64| {
        let v = get(id);
        rows.push(Row {
            target: format!("`{id}` ≤ {}", human(limit)),
            measured: v.map_or_else(|| "—".into(), human),
            met: v.map(|v| v <= limit),
        });
    };
    at_most(&mut rows, "check/principal/100", 5.0);
    at_most(&mut rows, "check/principal/100000", 5.0);
    at_most(&mut rows, "check/token3/100", 150.0);
    at_most(&mut rows, "check/token3/100000", 150.0);
    at_most(&mut rows, "compile/roles/100000", 1e9);
    at_most(&mut rows, "update/role_grant/10000", 1e6);
    at_most(&mut rows, "update/role_grant/100000", 1e7);
    at_most(&mut rows, "update/extends/100000", 1e7);
    at_most(&mut rows, "webhook/verify", 5e3);
    at_most(&mut rows, "webhook/user_updated/100000", 1e6);
    // Issue 10, multi-tenant scale.
    at_most(&mut rows, "compile/org_roles/1000000", 1e9);
    at_most(&mut rows, "check/token3/1000000", 150.0);
    at_most(&mut rows, "check/membership/100000", 60.0);
    at_most(&mut rows, "load/memberships/100000", 1e8);
    at_most(&mut rows, "update/role_grant/1000000", 1e7);

    // Ratios: `slow / fast ≥ min`, or `a / b ≤ max` when `max` is set.
    let ratio_row = |target: String, num: &str, den: &str, bound: f64, at_least: bool| {
        let (n, d) = (get(num), get(den));
        let r = n.zip(d).map(|(n, d)| n / d);
        Row {
            target,
            measured: match (n, d, r) {
                (Some(n), Some(d), Some(r)) => {
                    format!("{} / {} = {}", human(n), human(d), ratio(r))
                }
                _ => "—".into(),
            },
            met: r.map(|r| if at_least { r >= bound } else { r <= bound }),
        }
    };
    rows.push(ratio_row(
        "`check/role_requirement_across_swaps/50000` within 2× of `check/role_requirement/50000`"
            .into(),
        "check/role_requirement_across_swaps/50000",
        "check/role_requirement/50000",
        2.0,
        false,
    ));
    rows.push(ratio_row(
        "`read_under_swaps/1000_per_s` within 2× of `read_under_swaps/idle`".into(),
        "read_under_swaps/1000_per_s",
        "read_under_swaps/idle",
        2.0,
        false,
    ));
    let (cached, base) = (get("http/authorize/cached_token"), get("http/baseline"));
    rows.push(Row {
        target: "`http/authorize/cached_token` ≤ 1 µs above `http/baseline`".into(),
        measured: match (cached, base) {
            (Some(c), Some(b)) => format!(
                "{} − {} = {}",
                human(c),
                human(b),
                if c >= b {
                    human(c - b)
                } else {
                    format!("−{}", human(b - c))
                }
            ),
            _ => "—".into(),
        },
        met: cached.zip(base).map(|(c, b)| c - b <= 1e3),
    });
    for w in ["w1_allow", "w1_deny"] {
        for (peer, min) in [("casbin", 1_000.0), ("cedar_flat", 10.0)] {
            for engine in ["rolegraph", "rolegraph_user"] {
                rows.push(ratio_row(
                    format!(
                        "`{engine}` ≥ {}× faster than `{peer}` on `{w}` at 10,000 roles",
                        ratio(min).trim_end_matches('×')
                    ),
                    &format!("peers/{w}/{peer}/10000"),
                    &format!("peers/{w}/{engine}/10000"),
                    min,
                    true,
                ));
            }
        }
    }
    for k in [1, 3, 10] {
        for (peer, min) in [("casbin", 1_000.0), ("cedar_flat", 10.0)] {
            rows.push(ratio_row(
                format!(
                    "`rolegraph` ≥ {}× faster than `{peer}` on `w6_claims` ({k} token roles)",
                    ratio(min).trim_end_matches('×')
                ),
                &format!("peers/w6_claims/{peer}/{k}"),
                &format!("peers/w6_claims/rolegraph/{k}"),
                min,
                true,
            ));
        }
    }
    rows.push(ratio_row(
        "flat in depth: `w2_chain` 64 deep within 1.5× of 1 deep".into(),
        "peers/w2_chain/rolegraph/64",
        "peers/w2_chain/rolegraph/1",
        1.5,
        false,
    ));
    for size in [1_000, 10_000] {
        let ours = get(&format!("peers/u1_update/rolegraph/{size}"));
        let best = ["casbin", "casbin_cached", "cedar_per_role", "cedar_flat"]
            .iter()
            .filter_map(|p| get(&format!("peers/u1_update/{p}/{size}")).map(|v| (v, *p)))
            .min_by(|a, b| a.0.total_cmp(&b.0));
        rows.push(Row {
            target: format!(
                "`u1_update` at {size} roles faster than every peer's (naive baseline aside)"
            ),
            measured: match (ours, best) {
                (Some(o), Some((b, p))) => format!("{} vs {p} {}", human(o), human(b)),
                _ => "—".into(),
            },
            met: ours.zip(best).map(|(o, (b, _))| o < b),
        });
    }
    rows.push(ratio_row(
        "`http/peer/rolegraph/10000` ≥ 100× faster than `http/peer/axum_casbin/10000`".into(),
        "http/peer/axum_casbin/10000",
        "http/peer/rolegraph/10000",
        100.0,
        true,
    ));
    // Like for like: rolegraph resolving the user from its memberships
    // inside the timed path, as casbin resolves its `g` rules.
    rows.push(ratio_row(
        "`http/peer/rolegraph_membership/10000` (the user resolved from the engine's \
         memberships, as casbin does) ≥ 100× faster than `http/peer/axum_casbin/10000`"
            .into(),
        "http/peer/axum_casbin/10000",
        "http/peer/rolegraph_membership/10000",
        100.0,
        true,
    ));
    // The same target where casbin's memo cannot answer: more active users
    // than its 200 entries, and each user's first request after a write.
    for (case, what) in [
        ("population", "10,000 active users"),
        (
            "after_change",
            "first request per user after a policy write",
        ),
    ] {
        rows.push(ratio_row(
            format!(
                "`http/peer/rolegraph_{case}/10000` ≥ 100× faster than \
                 `http/peer/axum_casbin_{case}/10000` ({what})"
            ),
            &format!("http/peer/axum_casbin_{case}/10000"),
            &format!("http/peer/rolegraph_{case}/10000"),
            100.0,
            true,
        ));
    }

    let mut out = String::from("| target | measured | |\n|---|---|---|\n");
    for r in rows {
        let verdict = match r.met {
            Some(true) => "met",
            Some(false) => "**not met**",
            None => "not measured",
        };
        let _ = writeln!(out, "| {} | {} | {verdict} |", r.target, r.measured);
    }
    out
}

const OPEN: &str = "<!-- generated:";
const CLOSE: &str = "<!-- /generated -->";

/// `doc` with the text between each `<!-- generated:SPEC -->` and the next
/// `<!-- /generated -->` replaced by `render(SPEC)`; the markers and all
/// other text are kept, so the prose around the tables survives.
///
/// # Errors
///
/// Every problem, one per line, in document order: a marker without its
/// end, or a block `render` refuses.
pub fn regenerate(
    doc: &str,
    mut render: impl FnMut(&str) -> Result<String, String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(doc.len());
    let mut errors = Vec::new();
    let mut rest = doc;
    while let Some(start) = find_marker(rest, out.is_empty() || out.ends_with('\n')) {
        let (before, from) = rest.split_at(start);
        out.push_str(before);
        let Some(end_of_open) = from.find("-->") else {
            errors.push("a `<!-- generated:` marker is not closed by `-->`".to_owned());
            rest = from;
            break;
        };
        let spec = from[OPEN.len()..end_of_open].trim();
        let body = &from[end_of_open + 3..];
        let Some(close) = body.find(CLOSE) else {
            errors.push(format!("block `{spec}` has no `{CLOSE}`"));
            rest = from;
            break;
        };
        if body[..close].contains(OPEN) {
            errors.push(format!(
                "block `{spec}` contains another block before its end"
            ));
        }
        out.push_str(&from[..end_of_open + 3]);
        out.push('\n');
        match render(spec) {
            Ok(text) => {
                out.push_str(text.trim_end());
                out.push('\n');
            }
            Err(e) => errors.push(format!("block `{spec}`: {e}")),
        }
        out.push_str(CLOSE);
        rest = &body[close + CLOSE.len()..];
    }
    out.push_str(rest);
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors.join("\n"))
    }
}

/// The first [`OPEN`] in `text` that starts a line (`line_start`: whether
/// `text` itself starts one), so that prose quoting the marker in backticks
/// is not taken for a block.
fn find_marker(text: &str, line_start: bool) -> Option<usize> {
    let mut from = 0;
    while let Some(at) = text.get(from..)?.find(OPEN) {
        let at = from + at;
        let starts_line = if at == 0 {
            line_start
        } else {
            text.as_bytes().get(at - 1) == Some(&b'\n')
        };
        if starts_line {
            return Some(at);
        }
        from = at + OPEN.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_quoted_inside_a_line_is_prose() {
        let doc = "between `<!-- generated:… -->` markers
<!-- generated:a -->
<!-- /generated -->
";
        let out = regenerate(doc, |spec| Ok(format!("new {spec}"))).unwrap();
        assert_eq!(
            out,
            "between `<!-- generated:… -->` markers
<!-- generated:a -->
new a
<!-- /generated -->
"
        );
    }

    #[test]
    fn blocks_are_replaced_and_prose_is_kept() {
        let doc = "intro\n<!-- generated:a -->\nold table\n<!-- /generated -->\nmiddle\n\
                   <!-- generated:b x y -->\n<!-- /generated -->\nend\n";
        let mut specs = Vec::new();
        let out = regenerate(doc, |spec| {
            specs.push(spec.to_owned());
            Ok(format!("new {spec}\n\n"))
        })
        .unwrap();
        assert_eq!(specs, ["a", "b x y"]);
        assert_eq!(
            out,
            "intro\n<!-- generated:a -->\nnew a\n<!-- /generated -->\nmiddle\n\
             <!-- generated:b x y -->\nnew b x y\n<!-- /generated -->\nend\n"
        );
        // Regenerating is idempotent.
        let again = regenerate(&out, |spec| Ok(format!("new {spec}"))).unwrap();
        assert_eq!(again, out);
    }

    #[test]
    fn every_problem_is_reported_in_order() {
        let doc = "<!-- generated:a -->\n<!-- /generated -->\n<!-- generated:b -->\n<!-- /generated -->\n<!-- generated:c -->\nno end";
        let err = regenerate(doc, |spec| Err(format!("refused {spec}"))).unwrap_err();
        assert_eq!(
            err,
            "block `a`: refused a\nblock `b`: refused b\nblock `c` has no `<!-- /generated -->`"
        );
    }

    #[test]
    fn engine_tables_put_each_median_over_its_base() {
        let m: Medians = [
            ("peers/w1_allow", 10_000, "rolegraph", 50.0),
            ("peers/w1_allow", 10_000, "rolegraph_user", 100.0),
            ("peers/w1_allow", 10_000, "casbin", 2_000_000.0),
            ("peers/w1_allow", 100, "casbin", 3_000.0),
            ("peers/w2_chain", 8, "rolegraph", 40.0),
        ]
        .into_iter()
        .fold(Medians::new(), |mut m, (g, size, e, v)| {
            m.entry((g.to_owned(), size))
                .or_default()
                .insert(e.to_owned(), v);
            m
        });
        let by_token = table(&m);
        let lines: Vec<&str> = by_token.lines().collect();
        assert_eq!(
            lines[0],
            "| workload | size | rolegraph | rolegraph_user | casbin | casbin_cached | cedar_per_role | cedar_flat | naive |"
        );
        // Sizes in numeric order; no base: the median alone.
        assert_eq!(
            lines[2],
            "| `w1_allow` | 100 roles | — | — | **3.00 µs** | — | — | — | — |"
        );
        assert_eq!(
            lines[3],
            "| `w1_allow` | 10000 roles | **50.0 ns** | 100 ns (2.00×) | 2.00 ms (40,000×) | — | — | — | — |"
        );
        assert_eq!(
            lines[4],
            "| `w2_chain` | 8 roles deep | **40.0 ns** | — | — | — | — | — | — |"
        );
        assert_eq!(lines.len(), 5);
        // The user table: over `rolegraph_user`, W1 only.
        let by_user = user_table(&m);
        let lines: Vec<&str> = by_user.lines().collect();
        assert_eq!(
            lines[3],
            "| `w1_allow` | 10000 roles | **100 ns** | 50.0 ns (0.50×) | 2.00 ms (20,000×) | — | — | — | — |"
        );
        assert_eq!(lines.len(), 4);
    }

    #[test]
    fn ids_are_listed_in_numeric_order_and_a_missing_pattern_is_an_error() {
        let all: AllMedians = [
            ("check/token3/100000", 300.0),
            ("check/token3/100", 120.0),
            ("check/token3/10000", 150.0),
            ("http/baseline", 215.0),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        assert_eq!(
            ids_table(
                &all,
                &["check/token3/*", "http/baseline", "check/token3/100"]
            )
            .unwrap(),
            "| benchmark id | median |\n|---|---:|\n\
             | `check/token3/100` | 120 ns |\n| `check/token3/10000` | 150 ns |\n\
             | `check/token3/100000` | 300 ns |\n| `http/baseline` | 215 ns |\n"
        );
        assert_eq!(
            ids_table(&all, &["nope/*", "http/baseline", "gone"]).unwrap_err(),
            "no criterion result matches `nope/*`\nno criterion result matches `gone`"
        );
    }

    #[test]
    fn targets_say_met_not_met_or_not_measured() {
        let all: AllMedians = [
            ("check/token3/100", 149.0),
            ("check/token3/100000", 151.0),
            ("http/baseline", 200.0),
            ("http/authorize/cached_token", 1_250.0),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let t = targets(&all);
        assert!(
            t.contains("| `check/token3/100` ≤ 150 ns | 149 ns | met |"),
            "{t}"
        );
        assert!(
            t.contains("| `check/token3/100000` ≤ 150 ns | 151 ns | **not met** |"),
            "{t}"
        );
        assert!(
            t.contains("| 1.25 µs − 200 ns = 1.05 µs | **not met** |"),
            "{t}"
        );
        assert!(
            t.contains("| `compile/roles/100000` ≤ 1.00 s | — | not measured |"),
            "{t}"
        );
    }

    #[test]
    fn the_peer_http_rows_compare_each_case_with_its_counterpart() {
        let all: AllMedians = [
            ("http/peer/axum_casbin/10000", 1_470.0),
            ("http/peer/rolegraph/10000", 878.0),
            ("http/peer/axum_casbin_population/10000", 16_400_000.0),
            ("http/peer/rolegraph_population/10000", 1_000.0),
            ("http/peer/rolegraph_after_change/10000", 900.0),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let t = targets(&all);
        let row = |case: &str| {
            t.lines()
                .find(|l| l.contains(&format!("`http/peer/rolegraph_{case}/10000`")))
                .unwrap_or_default()
                .to_owned()
        };
        assert!(
            t.contains("| 1.47 µs / 878 ns = 1.67× | **not met** |"),
            "{t}"
        );
        let population = row("population");
        assert!(population.contains("(10,000 active users)"), "{population}");
        assert!(
            population.ends_with("| 16.4 ms / 1.00 µs = 16,400× | met |"),
            "{population}"
        );
        // Only one side measured: not measured, never met.
        assert!(row("after_change").ends_with("| — | not measured |"), "{t}");
    }
}
