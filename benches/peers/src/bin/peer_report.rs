//! Renders the benchmarks' results from criterion's output.
//!
//! ```text
//! cargo run -p rolegraph-peers --bin peer_report -- [CRITERION_DIR] [SVG_OUT]
//! cargo run -p rolegraph-peers --bin peer_report -- --markdown FILE \
//!     [--criterion DIR] [--svg OUT] [--text NAME=PATH]...
//! ```
//!
//! The first form prints the peer table (Markdown, stdout) and writes the
//! latency plot (SVG). Defaults: `target/criterion` (or
//! `$CARGO_TARGET_DIR/criterion`) and `benches/peers/plot.svg`.
//!
//! The second form rewrites FILE in place (`benches/regenerate.sh` uses it
//! for BENCHMARKS.md): the text between each `<!-- generated:SPEC -->` and
//! the next `<!-- /generated -->` is replaced, everything else is kept.
//! SPEC is one of
//!
//! - `peers`: the peer table (medians, ratios over rolegraph's);
//! - `peers_user`: W1 with ratios over `rolegraph_user`'s;
//! - `ids PATTERN...`: `| benchmark id | median |` for every result whose id
//!   is PATTERN, or starts with it when it ends in `*`;
//! - `targets`: the performance targets, met or not, at this run;
//! - `text NAME`: the contents of the file given as `--text NAME=PATH`
//!   (the run's stamp, the memory examples' output).
//!
//! A block whose results are missing is an error (FILE is left untouched and
//! every problem is printed, one per line), never a silently shorter table.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use rolegraph_peers::report;

fn default_criterion_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").unwrap_or_else(|| "target".into());
    PathBuf::from(target).join("criterion")
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--markdown") {
        return markdown(&args);
    }
    let mut args = args.into_iter();
    let dir = args
        .next()
        .map_or_else(default_criterion_dir, PathBuf::from);
    let out = args
        .next()
        .map_or_else(|| PathBuf::from("benches/peers/plot.svg"), PathBuf::from);
    let medians =
        report::read(&dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    assert!(
        !medians.is_empty(),
        "no peers/* results under {}",
        dir.display()
    );
    print!("{}", report::table(&medians));
    std::fs::write(&out, report::svg(&medians))
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
    eprintln!("wrote {}", out.display());
    ExitCode::SUCCESS
}

fn fail(message: &str) -> ExitCode {
    for line in message.lines() {
        eprintln!("peer_report: {line}");
    }
    ExitCode::FAILURE
}

fn markdown(args: &[String]) -> ExitCode {
    let mut file = None;
    let mut dir = default_criterion_dir();
    let mut svg = None;
    let mut texts = BTreeMap::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let Some(value) = it.next() else {
            return fail(&format!("`{flag}` needs a value"));
        };
        match flag.as_str() {
            "--markdown" => file = Some(PathBuf::from(value)),
            "--criterion" => dir = PathBuf::from(value),
            "--svg" => svg = Some(PathBuf::from(value)),
            "--text" => {
                let Some((name, path)) = value.split_once('=') else {
                    return fail(&format!("`--text {value}` is not NAME=PATH"));
                };
                match std::fs::read_to_string(path) {
                    Ok(text) => {
                        texts.insert(name.to_owned(), text);
                    }
                    Err(e) => return fail(&format!("cannot read `{path}`: {e}")),
                }
            }
            _ => return fail(&format!("unknown option `{flag}`")),
        }
    }
    let Some(file) = file else {
        return fail("`--markdown FILE` is required");
    };
    let all = match report::read_all(&dir) {
        Ok(all) => all,
        Err(e) => return fail(&format!("cannot read `{}`: {e}", dir.display())),
    };
    let peers = match report::read(&dir) {
        Ok(m) => m,
        Err(e) => return fail(&format!("cannot read `{}`: {e}", dir.display())),
    };
    let doc = match std::fs::read_to_string(&file) {
        Ok(doc) => doc,
        Err(e) => return fail(&format!("cannot read `{}`: {e}", file.display())),
    };
    let rendered = report::regenerate(&doc, |spec| {
        let mut words = spec.split_whitespace();
        match (words.next(), words.collect::<Vec<_>>().as_slice()) {
            (Some("peers"), []) if !peers.is_empty() => Ok(report::table(&peers)),
            (Some("peers_user"), []) if !peers.is_empty() => Ok(report::user_table(&peers)),
            (Some("peers" | "peers_user"), []) => Err("no peers/* results".into()),
            (Some("ids"), patterns) if !patterns.is_empty() => report::ids_table(&all, patterns),
            (Some("targets"), []) => Ok(report::targets(&all)),
            (Some("text"), [name]) => texts
                .get(*name)
                .cloned()
                .ok_or_else(|| format!("no `--text {name}=PATH` given")),
            _ => {
                Err("unknown block (peers, peers_user, ids PATTERN..., targets, text NAME)".into())
            }
        }
    });
    let rendered = match rendered {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    if let Err(e) = std::fs::write(&file, rendered) {
        return fail(&format!("cannot write `{}`: {e}", file.display()));
    }
    if let Some(svg) = svg {
        if peers.is_empty() {
            return fail("no peers/* results to plot");
        }
        if let Err(e) = std::fs::write(&svg, report::svg(&peers)) {
            return fail(&format!("cannot write `{}`: {e}", svg.display()));
        }
    }
    eprintln!(
        "peer_report: rewrote {} from {} results",
        file.display(),
        all.len()
    );
    ExitCode::SUCCESS
}
