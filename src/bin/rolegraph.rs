//! `rolegraph`: lint a policy file, check a request against it, evaluate a
//! decision table, and explain where a role's permissions come from.
//!
//! Exit codes follow grep: 0 allow / success, 1 deny, 2 error. Every message
//! on stderr is one line, lowercase, with the offending input in backticks;
//! bad input is reported, never a panic.

use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde::{Deserialize, Serialize};

use rolegraph::{Claims, LookupError, Policy, Requirement, Snapshot};

/// The library's message helpers: user input quoted the same way, capped.
#[allow(dead_code, reason = "the binary uses some of the helpers only")]
#[path = "../text.rs"]
mod text;

use text::{CapQuotes, Quote};

/// The exit-status paragraph every help page ends with.
macro_rules! exit_status {
    () => {
        "Exit status: 0 allow or success, 1 deny, 2 error (bad arguments, an unreadable
or invalid policy, an undeclared permission). Policy files ending in `.toml`
are read as TOML, any other file as JSON."
    };
}

/// Compile, lint, query and explain rolegraph policies.
///
/// A policy declares permissions, roles that extend other roles, and
/// organizations with their own roles. rolegraph compiles it into one flat
/// permission set per role; these commands check that it is valid and show
/// what it allows.
#[derive(Debug, Parser)]
#[command(
    name = "rolegraph",
    version,
    after_help = concat!(
        "Examples:
  rolegraph lint --policy policy.json
  rolegraph check --policy policy.json --roles editor projects:update
  rolegraph explain --policy policy.json --role editor
  rolegraph eval --policy policy.json < queries.jsonl

",
        exit_status!()
    ),
    subcommand_required = true,
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Lint(LintArgs),
    Check(CheckArgs),
    Eval(EvalArgs),
    Explain(ExplainArgs),
    #[cfg(feature = "jwt")]
    MintToken(MintTokenArgs),
}

/// The policy file every command reads.
#[derive(Debug, Args)]
struct PolicyArg {
    /// The policy file (`.toml` as TOML, anything else as JSON).
    #[arg(long, short = 'p', value_name = "FILE")]
    policy: PathBuf,
}

/// Validate a policy and summarize it.
///
/// Prints one summary line on stdout (roles, permissions, organizations, the
/// deepest inheritance chain counted in roles) and exits 0 when the policy is
/// valid; likely mistakes that do not make it invalid (a permission no role
/// grants, a wildcard that matches nothing yet) are printed on stderr as
/// `warning: ...` lines. A role nothing extends or maps is not one: roles are
/// assigned to users directly. When the policy is invalid, every problem
/// is printed on stderr as an `error: ...` line, in a deterministic order, and
/// the exit status is 2.
#[derive(Debug, Args)]
#[command(after_help = concat!(
    "Examples:
  rolegraph lint --policy policy.json
  rolegraph lint --policy policy.toml

",
    exit_status!()
))]
struct LintArgs {
    #[command(flatten)]
    policy: PolicyArg,
}

/// Check whether a request holds a permission.
///
/// The request is an organization, role names and directly claimed
/// permissions, as in an access token. Role names resolve among the
/// organization's roles first, then among environment roles; an organization
/// the policy does not list resolves environment roles only. Unknown role
/// names and undeclared claimed permissions are ignored (with a warning).
///
/// Prints `allow` (exit 0) or `deny` (exit 1). An undeclared PERMISSION prints
/// `deny` and the reason on stderr, and exits 2.
#[derive(Debug, Args)]
#[command(after_help = concat!(
    "Examples:
  rolegraph check --policy policy.json --roles editor projects:update
  rolegraph check --policy policy.json --org org_123 --roles manager,viewer --explain tasks:assign
  rolegraph check --policy policy.json --roles viewer --permissions tasks:assign,tasks:update tasks:update

",
    exit_status!()
))]
struct CheckArgs {
    #[command(flatten)]
    policy: PolicyArg,
    /// The request's organization id (a token's `oid`).
    #[arg(long, value_name = "ORG")]
    org: Option<String>,
    /// The request's role names, comma-separated or repeated.
    #[arg(long, value_name = "ROLES", value_delimiter = ',')]
    roles: Vec<String>,
    /// Permissions the request claims directly, comma-separated or repeated.
    #[arg(long, value_name = "PERMISSIONS", value_delimiter = ',')]
    permissions: Vec<String>,
    /// Print why: after `allow` or `deny`, one line per reason.
    #[arg(long)]
    explain: bool,
    /// The permission to check, e.g. `projects:update`.
    #[arg(value_name = "PERMISSION")]
    permission: String,
}

/// Evaluate a decision table: JSON queries on stdin, one answer per line.
///
/// Each non-blank stdin line is one query, a JSON object:
///
///   {"org": "org_123", "roles": ["editor"], "permissions": ["tasks:assign"],
///    "check": "projects:update"}
///
/// with exactly one of "check": PERMISSION, "any": [PERMISSION, ...] or
/// "all": [PERMISSION, ...]. "org", "roles" and "permissions" are optional;
/// no other field is allowed.
///
/// Each query is answered by one JSON line on stdout, in order:
///
///   {"allowed":true}
///   {"allowed":false,"unknown_roles":["ghost"],"ignored_permissions":["typo"]}
///
/// "unknown_roles" and "ignored_permissions" appear when some role names do
/// not resolve or some claimed permissions are not declared. A query that is
/// itself wrong (invalid JSON, an unknown field, not exactly one of
/// check/any/all, an undeclared permission, an empty list) is answered
///
///   {"allowed":false,"error":"line N: ..."}
///
/// and evaluation continues. Blank lines are skipped but counted. A line
/// longer than --max-line-bytes (1 MiB by default) is not read into memory:
///
///   {"allowed":false,"error":"line N: the line is 104857600 bytes, over the 1048576-byte limit"}
///
/// Exits 0 once every line is answered, 2 when the policy cannot be loaded.
#[derive(Debug, Args)]
#[command(
    verbatim_doc_comment,
    after_help = concat!(
        "Examples:
  echo '{\"roles\": [\"editor\"], \"any\": [\"projects:update\"]}' | rolegraph eval --policy policy.json
  rolegraph eval --policy policy.json < queries.jsonl > answers.jsonl

",
        exit_status!()
    )
)]
struct EvalArgs {
    #[command(flatten)]
    policy: PolicyArg,
    /// The longest query line read, in bytes; a longer line is skipped
    /// (never held in memory) and answered with an error.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    max_line_bytes: usize,
}

/// Show where a role's effective permissions come from, as a tree.
///
/// Prints a summary line, then every role ROLE extends, directly or not,
/// once each, breadth-first from ROLE: a line `NAME via PARENT` (PARENT is
/// the role that extends NAME on the shortest path from ROLE, ties broken by
/// role name; ROLE's own line has no `via`), then, indented by two spaces,
/// the permissions NAME is the first to grant on that walk, sorted by name,
/// with `(grants WILDCARD)` when a wildcard gives them. A permission's path
/// is its role's chain of `via` up to ROLE: the shortest path that grants
/// it, ties broken by role name. The output is linear in the roles and
/// permissions, however deep the chain. An unknown role or organization is
/// an error (exit 2).
#[derive(Debug, Args)]
#[command(after_help = concat!(
    "Examples:
  rolegraph explain --policy policy.json --role editor
  rolegraph explain --policy policy.json --org org_123 --role manager --json

",
    exit_status!()
))]
struct ExplainArgs {
    #[command(flatten)]
    policy: PolicyArg,
    /// Look the role up in this organization first, then among environment roles.
    #[arg(long, value_name = "ORG")]
    org: Option<String>,
    /// The role to explain.
    #[arg(long, value_name = "ROLE")]
    role: String,
    /// Print one JSON document instead of text, the same tree with one
    /// role per line: {"role", "organization", "effective_permissions": N,
    /// "roles": [{"name", "organization", "via", "depth", "permissions":
    /// [{"name", "grant"}]}]}. "via" is the index in "roles" of the role
    /// that extends this one (null for ROLE, entry 0); a permission's path
    /// is the chain of "via" from its role up to entry 0.
    #[arg(long)]
    json: bool,
}

/// Mint a development access token (RS256), shaped like Scalekit's.
///
/// Prints the token on stdout. The key is a PKCS#8 (or PKCS#1) RSA private
/// key in PEM, for example from
/// `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out dev.pem`;
/// without `--key` a fresh key is generated, and `--jwks FILE` writes the
/// key set that verifies the token. For development and tests only.
/// Defaults fit the example app (`cargo run --example app --features
/// axum,jwt,scalekit -- --key dev.pem`).
#[cfg(feature = "jwt")]
#[derive(Debug, Args)]
#[command(after_help = concat!(
    "Examples:
  rolegraph mint-token --key dev.pem --sub usr_bob --org org_69615647365005430 --roles project_manager
  rolegraph mint-token --sub usr_1 --org org_1 --roles admin,viewer --jwks jwks.json --ttl 600

",
    exit_status!()
))]
struct MintTokenArgs {
    /// `sub`: the Scalekit user id.
    #[arg(long, value_name = "USER")]
    sub: String,
    /// `oid`: the organization.
    #[arg(long, value_name = "ORG")]
    org: Option<String>,
    /// `roles`, comma-separated.
    #[arg(long, value_name = "ROLE,...", value_delimiter = ',')]
    roles: Vec<String>,
    /// `permissions`, comma-separated.
    #[arg(long, value_name = "PERMISSION,...", value_delimiter = ',')]
    permissions: Vec<String>,
    /// `email`.
    #[arg(long, value_name = "EMAIL")]
    email: Option<String>,
    /// The RSA private key (PEM) to sign with; a fresh one without it.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// The key id (`kid`) written in the token's header.
    #[arg(long, value_name = "KID", default_value = "dev-key-1")]
    kid: String,
    /// `iss`.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:3000")]
    issuer: String,
    /// `aud`.
    #[arg(long, value_name = "AUDIENCE", default_value = "skc_dev")]
    audience: String,
    /// Seconds until `exp`.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    ttl: u64,
    /// Also write the key set (JWKS) that verifies the token to this file.
    #[arg(long, value_name = "FILE")]
    jwks: Option<PathBuf>,
}

#[cfg(feature = "jwt")]
fn mint_token(args: &MintTokenArgs) -> Outcome {
    use rolegraph::token::{DevClaims, DevIssuer};
    let issuer = match &args.key {
        Some(path) => {
            let pem = std::fs::read_to_string(path).map_err(|e| {
                Failure::one(format!(
                    "cannot read `{}`: {}",
                    path.display(),
                    lowercase_first(&e.to_string())
                ))
            })?;
            DevIssuer::from_pkcs8_pem(&args.kid, &pem)
        }
        None => DevIssuer::generate(&args.kid),
    }
    .map_err(|e| Failure::one(lowercase_first(&e.to_string())))?;
    let mut claims = DevClaims::new(&args.sub, &args.issuer, [&args.audience]);
    claims.organization = args.org.clone();
    claims.roles = items(&args.roles);
    claims.permissions = items(&args.permissions);
    claims.email = args.email.clone();
    claims.expires_at = claims.issued_at.saturating_add(args.ttl);
    let token = issuer
        .mint(&claims)
        .map_err(|e| Failure::one(lowercase_first(&e.to_string())))?;
    if let Some(path) = &args.jwks {
        std::fs::write(path, issuer.jwks_json()).map_err(|e| {
            Failure::one(format!(
                "cannot write `{}`: {}",
                path.display(),
                lowercase_first(&e.to_string())
            ))
        })?;
    }
    writeln!(io::stdout().lock(), "{token}")?;
    Ok(ExitCode::SUCCESS)
}

/// Why a command stopped.
enum Failure {
    /// Report these lines on stderr (each prefixed `error: `) and exit 2.
    Error(Vec<String>),
    /// Stdout is closed (a pipe whose reader left): stop quietly.
    BrokenPipe,
}

impl Failure {
    fn one(message: impl Into<String>) -> Self {
        Self::Error(vec![message.into()])
    }
}

impl From<io::Error> for Failure {
    fn from(err: io::Error) -> Self {
        if err.kind() == io::ErrorKind::BrokenPipe {
            Self::BrokenPipe
        } else {
            Self::one(format!(
                "cannot write the output: {}",
                lowercase_first(&err.to_string())
            ))
        }
    }
}

type Outcome = Result<ExitCode, Failure>;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // Help and version go to stdout and exit 0; usage errors exit 2.
            let _ = err.print();
            return ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(2));
        }
    };
    let outcome = match cli.command {
        Command::Lint(args) => lint(&args),
        Command::Check(args) => check(&args),
        Command::Eval(args) => eval(&args),
        Command::Explain(args) => explain(&args),
        #[cfg(feature = "jwt")]
        Command::MintToken(args) => mint_token(&args),
    };
    match outcome {
        Ok(code) => code,
        // A reader that went away wanted no more output; like ripgrep, exit 0.
        Err(Failure::BrokenPipe) => ExitCode::SUCCESS,
        Err(Failure::Error(lines)) => {
            for line in lines {
                diagnostic("error", &line);
            }
            ExitCode::from(2)
        }
    }
}

/// Writes `kind: message` on stderr, as one line even when the offending
/// input holds a line break; a failing stderr is ignored (there is nowhere
/// left to report it).
fn diagnostic(kind: &str, message: &str) {
    let mut line = String::with_capacity(message.len());
    for c in message.chars() {
        if c.is_control() {
            line.extend(c.escape_default());
        } else {
            line.push(c);
        }
    }
    let _ = writeln!(io::stderr().lock(), "{kind}: {line}");
}

fn warning(message: &str) {
    diagnostic("warning", message);
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `n thing` or `n things`.
fn count(n: usize, singular: &str, plural: &str) -> String {
    format!("{n} {}", if n == 1 { singular } else { plural })
}

fn load(path: &Path) -> Result<Policy, Failure> {
    Policy::from_path(path).map_err(|e| Failure::one(e.to_string()))
}

fn compile(path: &Path) -> Result<Snapshot, Failure> {
    load(path)?
        .compile()
        .map_err(|e| Failure::Error(e.problems().iter().map(ToString::to_string).collect()))
}

/// Comma-list items, trimmed, empty ones dropped (`a,,b,` is `a`, `b`).
fn items(list: &[String]) -> Vec<String> {
    list.iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn lint(args: &LintArgs) -> Outcome {
    let snapshot = compile(&args.policy.policy)?;
    let warnings = snapshot.warnings();
    for w in &warnings {
        warning(&w.to_string());
    }
    let mut summary = format!(
        "ok: {}, {}, {}, deepest chain {}",
        count(snapshot.roles_len(), "role", "roles"),
        count(snapshot.permissions_len(), "permission", "permissions"),
        count(
            snapshot.organizations_len(),
            "organization",
            "organizations"
        ),
        count(snapshot.max_depth(), "role", "roles"),
    );
    if !warnings.is_empty() {
        summary.push_str(&format!(
            ", {}",
            count(warnings.len(), "warning", "warnings")
        ));
    }
    let mut out = io::stdout().lock();
    writeln!(out, "{summary}")?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Role names that resolve to no role, in order, without repeats.
fn unknown_roles<'a>(snapshot: &Snapshot, org: Option<&str>, roles: &'a [String]) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for name in roles {
        if snapshot.role(org, name).is_none() && !out.contains(&name.as_str()) {
            out.push(name);
        }
    }
    out
}

/// Claimed permissions that are not declared, in order, without repeats.
fn ignored_permissions<'a>(snapshot: &Snapshot, permissions: &'a [String]) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for name in permissions {
        if snapshot.permission_id(name).is_none() && !out.contains(&name.as_str()) {
            out.push(name);
        }
    }
    out
}

fn check(args: &CheckArgs) -> Outcome {
    let snapshot = compile(&args.policy.policy)?;
    let claims = Claims {
        organization: args.org.clone(),
        roles: items(&args.roles),
        permissions: items(&args.permissions),
    };
    let mut out = io::stdout().lock();
    let requirement = match Requirement::permission(&snapshot, &args.permission) {
        Ok(requirement) => requirement,
        Err(err) => {
            writeln!(out, "deny")?;
            out.flush()?;
            return Err(Failure::one(err.to_string()));
        }
    };
    if let Some(org) = claims.organization.as_deref() {
        if !snapshot.organizations().any(|o| o == org) {
            warning(&format!(
                "organization {} is not in the policy: only environment roles resolve",
                Quote(org)
            ));
        }
    }
    let allowed = if args.explain {
        // The explanation lists unknown roles and ignored permissions itself.
        let explanation = snapshot.explain(&claims, &requirement);
        writeln!(out, "{explanation}")?;
        explanation.allowed
    } else {
        let org = claims.organization.as_deref();
        for name in unknown_roles(&snapshot, org, &claims.roles) {
            warning(&format!("unknown role {}: ignored", Quote(name)));
        }
        for name in ignored_permissions(&snapshot, &claims.permissions) {
            warning(&format!(
                "undeclared claimed permission {}: ignored",
                Quote(name)
            ));
        }
        let allowed = snapshot.principal_for(&claims).satisfies(&requirement);
        writeln!(out, "{}", if allowed { "allow" } else { "deny" })?;
        allowed
    };
    out.flush()?;
    Ok(if allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// One `eval` query line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a query object")]
struct Query {
    #[serde(default)]
    org: Option<String>,
    #[serde(default)]
    roles: Option<Vec<String>>,
    #[serde(default)]
    permissions: Option<Vec<String>>,
    #[serde(default)]
    check: Option<String>,
    #[serde(default)]
    any: Option<Vec<String>>,
    #[serde(default)]
    all: Option<Vec<String>>,
}

/// One `eval` answer line.
#[derive(Debug, Default, Serialize)]
struct Answer {
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    unknown_roles: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ignored_permissions: Vec<String>,
}

/// A serde_json error as `invalid json: ...` (syntax) or `invalid query: ...`
/// (shape), without serde_json's ` at line L column C` tail but with the column.
fn json_message(err: &serde_json::Error) -> String {
    let full = err.to_string();
    let message = match full.rfind(" at line ") {
        Some(cut) if err.line() > 0 => full.get(..cut).unwrap_or(&full),
        _ => &full,
    };
    let kind = match err.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "invalid json",
        serde_json::error::Category::Data | serde_json::error::Category::Io => "invalid query",
    };
    let message = CapQuotes(message);
    if err.column() > 0 {
        format!("{kind}: {message} (column {})", err.column())
    } else {
        format!("{kind}: {message}")
    }
}

/// Parses one query line. Only an object is a query: serde would otherwise
/// read a JSON array positionally into the fields.
fn parse_query(text: &str) -> Result<Query, String> {
    if text.trim_start().starts_with('{') {
        return serde_json::from_str(text).map_err(|e| json_message(&e));
    }
    let found = match serde_json::from_str::<serde_json::Value>(text) {
        Err(e) => return Err(json_message(&e)),
        Ok(serde_json::Value::Array(_)) => "an array",
        Ok(serde_json::Value::String(_)) => "a string",
        Ok(serde_json::Value::Number(_)) => "a number",
        Ok(serde_json::Value::Bool(_)) => "a boolean",
        Ok(serde_json::Value::Null | serde_json::Value::Object(_)) => "`null`",
    };
    Err(format!(
        "invalid query: expected a json object, found {found}"
    ))
}

fn owned(names: Vec<&str>) -> Vec<String> {
    names.into_iter().map(str::to_owned).collect()
}

/// Parses and answers one query; `Err` is the error text (without the line number).
fn answer_query(snapshot: &Snapshot, text: &str) -> Result<Answer, String> {
    let query = parse_query(text)?;
    let given: Vec<&str> = [
        ("check", query.check.is_some()),
        ("any", query.any.is_some()),
        ("all", query.all.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, present)| present.then_some(name))
    .collect();
    let requirement = match (&query.check, &query.any, &query.all) {
        (Some(p), None, None) => Requirement::permission(snapshot, p),
        (None, Some(ps), None) => Requirement::any_of(snapshot, ps),
        (None, None, Some(ps)) => Requirement::all_of(snapshot, ps),
        _ => {
            let listed = match given.as_slice() {
                [a, b] => format!("`{a}` and `{b}`"),
                _ => "`check`, `any` and `all`".to_owned(),
            };
            return Err(if given.is_empty() {
                "the query needs exactly one of `check`, `any`, `all`".to_owned()
            } else {
                format!("the query has {listed}: it needs exactly one of `check`, `any`, `all`")
            });
        }
    };
    let requirement = requirement.map_err(|err| match err {
        LookupError::EmptyRequirement => format!(
            "`{}` is empty: a requirement needs at least one permission",
            given.first().copied().unwrap_or("any")
        ),
        other => other.to_string(),
    })?;
    let org = query.org.as_deref();
    let roles = query.roles.as_deref().unwrap_or_default();
    let permissions = query.permissions.as_deref().unwrap_or_default();
    let allowed = snapshot
        .principal(org, roles)
        .with_permissions(permissions)
        .satisfies(&requirement);
    Ok(Answer {
        allowed,
        error: None,
        unknown_roles: owned(unknown_roles(snapshot, org, roles)),
        ignored_permissions: owned(ignored_permissions(snapshot, permissions)),
    })
}

fn eval(args: &EvalArgs) -> Outcome {
    let snapshot = compile(&args.policy.policy)?;
    // A large reader buffer: reads bypass stdin's own smaller one.
    let mut input = BufReader::with_capacity(64 * 1024, io::stdin().lock());
    let mut out = BufWriter::new(io::stdout().lock());
    let mut bytes = Vec::new();
    let mut number: usize = 0;
    loop {
        let line = read_line(&mut input, &mut bytes, args.max_line_bytes).map_err(|e| {
            Failure::one(format!(
                "cannot read stdin: {}",
                lowercase_first(&e.to_string())
            ))
        })?;
        let Some(line) = line else {
            break;
        };
        number += 1;
        let answer = match (line, std::str::from_utf8(&bytes)) {
            (Line::TooLong(length), _) => Some(Err(format!(
                "the line is {length} bytes, over the {}-byte limit",
                args.max_line_bytes
            ))),
            (Line::Read, Ok(text)) if text.trim().is_empty() => None,
            (Line::Read, Ok(text)) => Some(answer_query(&snapshot, text.trim_end())),
            (Line::Read, Err(_)) => Some(Err("invalid json: the line is not utf-8".to_owned())),
        };
        if let Some(answer) = answer {
            let answer = answer.unwrap_or_else(|error| Answer {
                allowed: false,
                error: Some(format!("line {number}: {error}")),
                ..Answer::default()
            });
            serde_json::to_writer(&mut out, &answer).map_err(io::Error::from)?;
            out.write_all(b"\n")?;
        }
        // Answer promptly when the caller waits for it (an interactive pipe);
        // batch the writes while more input is already at hand.
        if input.buffer().is_empty() {
            out.flush()?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// What [`read_line`] read.
enum Line {
    /// The line is in the buffer, without its `\n`.
    Read,
    /// The line has this many bytes (without its `\n`), over the limit: it
    /// was skipped, and the buffer holds none of it.
    TooLong(u64),
}

/// Reads one line into `line`, holding at most `limit` bytes of it in
/// memory whatever its length: a longer line is read to its end and
/// dropped. `None` at the end of the input.
fn read_line(
    input: &mut impl BufRead,
    line: &mut Vec<u8>,
    limit: usize,
) -> io::Result<Option<Line>> {
    line.clear();
    let mut length: u64 = 0;
    let mut started = false;
    loop {
        let chunk = match input.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            break;
        }
        started = true;
        let end = chunk.iter().position(|&b| b == b'\n');
        let part = chunk.get(..end.unwrap_or(chunk.len())).unwrap_or_default();
        length += part.len() as u64;
        if length <= limit as u64 {
            line.extend_from_slice(part);
        } else if !line.is_empty() {
            line.clear();
            line.shrink_to(limit);
        }
        let used = end.map_or(chunk.len(), |at| at + 1);
        input.consume(used);
        if end.is_some() {
            break;
        }
    }
    Ok(started.then_some(if length > limit as u64 {
        Line::TooLong(length)
    } else {
        Line::Read
    }))
}

/// `explain --json`: one role of the tree (see `ExplainArgs`).
#[derive(Debug, Serialize)]
struct TreeRole<'a> {
    name: &'a str,
    organization: Option<&'a str>,
    via: Option<usize>,
    depth: usize,
    permissions: Vec<TreeGrant<'a>>,
}

#[derive(Debug, Serialize)]
struct TreeGrant<'a> {
    name: &'a str,
    grant: &'a str,
}

/// Writes the tree as it walks it: output linear in the roles and grants,
/// never one string for the whole of it.
fn explain(args: &ExplainArgs) -> Outcome {
    let snapshot = compile(&args.policy.policy)?;
    let org = args.org.as_deref();
    let tree = snapshot
        .inheritance(org, &args.role)
        .map_err(|e| Failure::one(e.to_string()))?;
    // The organization the role belongs to: an environment role looked up
    // through an organization still belongs to none.
    let role_org = tree.roles().first().and_then(|r| r.organization.as_deref());
    let mut out = BufWriter::new(io::stdout().lock());
    if args.json {
        write!(out, "{{\"role\":")?;
        serde_json::to_writer(&mut out, &args.role).map_err(io::Error::from)?;
        write!(out, ",\"organization\":")?;
        serde_json::to_writer(&mut out, &role_org).map_err(io::Error::from)?;
        write!(
            out,
            ",\"effective_permissions\":{},\"roles\":[",
            tree.permissions_len()
        )?;
        for (i, role) in tree.roles().iter().enumerate() {
            out.write_all(if i == 0 { b"\n" } else { b",\n" })?;
            let entry = TreeRole {
                name: &role.name,
                organization: role.organization.as_deref(),
                via: role.via,
                depth: role.depth,
                permissions: role
                    .grants
                    .iter()
                    .map(|g| TreeGrant {
                        name: &g.permission,
                        grant: &g.grant,
                    })
                    .collect(),
            };
            serde_json::to_writer(&mut out, &entry).map_err(io::Error::from)?;
        }
        writeln!(out, "\n]}}")?;
    } else {
        write!(out, "role {}", Quote(&args.role))?;
        if let Some(o) = role_org {
            write!(out, " in organization {}", Quote(o))?;
        }
        writeln!(
            out,
            ": {} from {}",
            count(
                tree.permissions_len(),
                "effective permission",
                "effective permissions"
            ),
            count(tree.roles().len(), "role", "roles")
        )?;
        for role in tree.roles() {
            match role.via.and_then(|p| tree.roles().get(p)) {
                Some(parent) => writeln!(out, "{} via {}", role.name, parent.name)?,
                None => writeln!(out, "{}", role.name)?,
            }
            for g in &role.grants {
                if g.grant == g.permission {
                    writeln!(out, "  {}", g.permission)?;
                } else {
                    writeln!(out, "  {} (grants {})", g.permission, g.grant)?;
                }
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
