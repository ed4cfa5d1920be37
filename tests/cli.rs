//! The `rolegraph` binary, run as a user runs it: exit codes, stdout and
//! stderr, exactly.

#![expect(
    clippy::expect_used,
    clippy::panic,
    reason = "the helpers are not #[test] functions, yet a broken setup must fail the test"
)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/policy.json");
const ORG: &str = "org_69615647365005430";

/// What one run of the binary did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Asserts the run exited with `code` and did not panic.
    #[track_caller]
    fn exits(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "exit code of {self:#?}");
        assert!(
            !self.stderr.contains("panicked") && !self.stderr.contains("RUST_BACKTRACE"),
            "a panic: {self:#?}"
        );
        self
    }

    fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().collect()
    }
}

fn run_with(args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rolegraph"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        // A command that fails before reading stdin closes it: not an error here.
        let _ = pipe.write_all(input.as_bytes());
    }
    let output = child.wait_with_output().expect("the binary finishes");
    Run {
        code: output.status.code().expect("an exit code, not a signal"),
        stdout: String::from_utf8(output.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("utf-8 stderr"),
    }
}

fn run(args: &[&str]) -> Run {
    run_with(args, None)
}

/// A file in the temporary directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(extension: &str, content: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "rolegraph-cli-test-{}-{n}.{extension}",
            std::process::id()
        ));
        std::fs::write(&path, content).expect("the temporary file is written");
        Self(path)
    }

    fn json(content: &str) -> Self {
        Self::new("json", content)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("a utf-8 temporary path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A valid policy with one finding of each warning kind.
const WARNINGS: &str = r#"{
  "permissions": [{"name": "a:read"}, {"name": "a:write"}],
  "roles": [
    {"name": "base", "permissions": ["a:read", "b:*"]},
    {"name": "top", "extends": "base"}
  ]
}"#;

/// An invalid policy: two cycles, a dangling `extends`, an undeclared grant.
const INVALID: &str = r#"{
  "permissions": [{"name": "a:read"}],
  "roles": [
    {"name": "lead", "extends": "planner"},
    {"name": "planner", "extends": ["lead"], "permissions": ["a:read"]},
    {"name": "dangling", "extends": "ghost"},
    {"name": "granter", "permissions": ["x:y"]}
  ],
  "organizations": [
    {"id": "org_1", "roles": [
      {"name": "m", "extends": "n"},
      {"name": "n", "extends": "m"}
    ]}
  ]
}"#;

// ---------------------------------------------------------------- lint

#[test]
fn lint_summarizes_the_example() {
    let r = run(&["lint", "--policy", EXAMPLE]);
    r.exits(0);
    assert_eq!(
        r.stdout,
        "ok: 9 roles, 18 permissions, 1 organization, deepest chain 4 roles\n"
    );
    assert_eq!(r.stderr, "");
}

#[test]
fn lint_warns_and_still_succeeds() {
    let policy = TempFile::json(WARNINGS);
    let r = run(&["lint", "--policy", policy.path()]);
    r.exits(0);
    assert_eq!(
        r.stdout,
        "ok: 2 roles, 2 permissions, 0 organizations, deepest chain 2 roles, 2 warnings\n"
    );
    assert_eq!(
        r.stderr_lines(),
        [
            "warning: permission `a:write` is not granted by any role",
            "warning: role `base` grants `b:*`, which matches no declared permission yet",
        ]
    );
}

/// Roles assigned to users directly are normal in Scalekit: a large policy
/// of them gave 20,000 warning lines, one per role nothing extends or maps.
#[test]
fn lint_of_a_large_policy_of_directly_assigned_roles_is_quiet() {
    let permissions: Vec<String> = (0..100)
        .map(|i| format!(r#"{{"name": "p:{i}"}}"#))
        .collect();
    let roles = |prefix: &str, n: usize| -> Vec<String> {
        (0..n)
            .map(|i| {
                format!(
                    r#"{{"name": "{prefix}{i}", "permissions": ["p:{}"]}}"#,
                    i % 100
                )
            })
            .collect()
    };
    let policy = TempFile::json(&format!(
        r#"{{"permissions": [{}], "roles": [{}], "organizations": [{{"id": "org_1", "roles": [{}]}}]}}"#,
        permissions.join(","),
        roles("r", 20_000).join(","),
        roles("o", 1_000).join(",")
    ));
    let r = run(&["lint", "--policy", policy.path()]);
    r.exits(0);
    assert_eq!(
        r.stdout,
        "ok: 21000 roles, 100 permissions, 1 organization, deepest chain 1 role\n"
    );
    assert_eq!(r.stderr, "");
}

#[test]
fn lint_summary_uses_singulars() {
    let policy = TempFile::json(
        r#"{"permissions": [{"name": "a:read"}], "roles": [{"name": "solo", "permissions": ["a:read", "b:*"]}],
            "organizations": [{"id": "org_1"}]}"#,
    );
    let r = run(&["lint", "--policy", policy.path()]);
    r.exits(0);
    assert_eq!(
        r.stdout,
        "ok: 1 role, 1 permission, 1 organization, deepest chain 1 role, 1 warning\n"
    );
    assert_eq!(
        r.stderr_lines(),
        ["warning: role `solo` grants `b:*`, which matches no declared permission yet"]
    );
}

#[test]
fn lint_of_an_empty_policy() {
    let policy = TempFile::json("{}");
    let r = run(&["lint", "--policy", policy.path()]);
    r.exits(0);
    assert_eq!(
        r.stdout,
        "ok: 0 roles, 0 permissions, 0 organizations, deepest chain 0 roles\n"
    );
    assert_eq!(r.stderr, "");
}

#[test]
fn lint_reports_every_problem_in_order() {
    let policy = TempFile::json(INVALID);
    let r = run(&["lint", "--policy", policy.path()]);
    r.exits(2);
    assert_eq!(r.stdout, "");
    assert_eq!(
        r.stderr_lines(),
        [
            "error: role `dangling` extends unknown role `ghost` (environment roles may extend environment roles only)",
            "error: role `granter` grants undeclared permission `x:y`",
            "error: role inheritance has a cycle among `lead`, `planner`: `lead` -> `planner` -> `lead`",
            "error: role inheritance has a cycle in organization `org_1` among `m`, `n`: `m` -> `n` -> `m`",
        ]
    );
    // Deterministic: the same report every time.
    assert_eq!(run(&["lint", "--policy", policy.path()]).stderr, r.stderr);
}

#[test]
fn every_command_rejects_an_invalid_policy() {
    let policy = TempFile::json(INVALID);
    let p = policy.path();
    for args in [
        vec!["check", "--policy", p, "--roles", "lead", "a:read"],
        vec!["eval", "--policy", p],
        vec!["explain", "--policy", p, "--role", "lead"],
    ] {
        let r = run_with(&args, Some("{\"check\": \"a:read\"}\n"));
        r.exits(2);
        assert_eq!(r.stdout, "", "{args:?}");
        assert_eq!(r.stderr_lines().len(), 4, "{args:?}: {r:#?}");
        assert!(r.stderr_lines().iter().all(|l| l.starts_with("error: ")));
    }
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let missing = std::env::temp_dir().join("rolegraph-cli-test-no-such-policy.json");
    let missing = missing.to_str().expect("a utf-8 path");
    for args in [
        vec!["lint", "--policy", missing],
        vec!["check", "--policy", missing, "a:read"],
        vec!["eval", "--policy", missing],
        vec!["explain", "--policy", missing, "--role", "viewer"],
    ] {
        let r = run_with(&args, Some(""));
        r.exits(2);
        assert_eq!(r.stdout, "", "{args:?}");
        let lines = r.stderr_lines();
        assert_eq!(lines.len(), 1, "{r:#?}");
        assert!(
            lines[0].starts_with(&format!("error: cannot read `{missing}`: ")),
            "{r:#?}"
        );
    }
}

#[test]
fn invalid_json_is_an_error() {
    let policy = TempFile::json("{\"roles\": [\n  {\"name\": \"viewer\",}\n]}");
    let r = run(&["lint", "--policy", policy.path()]);
    r.exits(2);
    assert_eq!(r.stdout, "");
    let lines = r.stderr_lines();
    assert_eq!(lines.len(), 1, "{r:#?}");
    assert!(
        lines[0].starts_with(&format!("error: invalid policy `{}`: ", policy.path())),
        "{r:#?}"
    );
    assert!(lines[0].contains("line 2"), "{r:#?}");
}

#[test]
fn an_unknown_policy_field_is_an_error_naming_it() {
    let policy = TempFile::json(r#"{"roles": [{"name": "viewer", "permisions": ["a:read"]}]}"#);
    let r = run(&["lint", "--policy", policy.path()]);
    r.exits(2);
    assert_eq!(r.stdout, "");
    assert_eq!(r.stderr_lines().len(), 1, "{r:#?}");
    assert!(r.stderr.contains("`permisions`"), "{r:#?}");
    assert!(r.stderr.contains("roles[0]"), "{r:#?}");
}

#[test]
fn toml_policies_are_read_as_toml() {
    let policy = TempFile::new(
        "toml",
        r#"
default_member_role = "viewer"

[[permissions]]
name = "projects:read"

[[permissions]]
name = "projects:update"

[[roles]]
name = "viewer"
permissions = ["projects:read"]

[[roles]]
name = "editor"
extends = "viewer"
permissions = ["projects:update"]

[[organizations]]
id = "org_1"
roles = [{ name = "manager", extends = ["editor"] }]
group_roles = [{ group = "Managers", roles = ["manager"] }]
"#,
    );
    let p = policy.path();
    let r = run(&["lint", "--policy", p]);
    r.exits(0);
    assert_eq!(
        r.stdout,
        "ok: 3 roles, 2 permissions, 1 organization, deepest chain 3 roles\n"
    );
    assert_eq!(r.stderr, "");
    let r = run(&[
        "check",
        "--policy",
        p,
        "--org",
        "org_1",
        "--roles",
        "manager",
        "projects:update",
    ]);
    r.exits(0);
    assert_eq!(r.stdout, "allow\n");
    let r = run(&[
        "check",
        "--policy",
        p,
        "--roles",
        "viewer",
        "projects:update",
    ]);
    r.exits(1);
    assert_eq!(r.stdout, "deny\n");

    let broken = TempFile::new("toml", "[[roles]]\nname = \"viewer\"\nbogus = 1\n");
    let r = run(&["lint", "--policy", broken.path()]);
    r.exits(2);
    assert_eq!(r.stdout, "");
    assert_eq!(r.stderr_lines().len(), 1, "{r:#?}");
    assert!(r.stderr.contains("`bogus`"), "{r:#?}");
}

#[test]
fn toml_errors_give_the_line_and_column() {
    let broken = TempFile::new(
        "toml",
        "[[permissions]]\nname = \"a:b\"\n[[roles]]\nname = \"v\n",
    );
    let r = run(&["lint", "--policy", broken.path()]);
    r.exits(2);
    assert_eq!(
        r.stderr_lines(),
        [format!(
            "error: invalid policy `{}`: invalid basic string, expected `\"` (line 4, column 10)",
            broken.path()
        )]
    );
    let broken = TempFile::new("toml", "[[roles]]\nname = 5\n");
    let r = run(&["lint", "--policy", broken.path()]);
    r.exits(2);
    assert_eq!(
        r.stderr_lines(),
        [format!(
            "error: invalid policy `{}`: invalid type: integer `5`, expected a string at `roles[0].name` (line 2, column 8)",
            broken.path()
        )]
    );
}

/// Editors on Windows start UTF-8 files with a byte order mark; both
/// parsers said "expected value".
#[test]
fn a_byte_order_mark_is_skipped() {
    let json = TempFile::json(
        "\u{feff}{\"permissions\": [{\"name\": \"a:b\"}], \"roles\": [{\"name\": \"v\", \"permissions\": [\"a:b\"]}]}",
    );
    let toml = TempFile::new(
        "toml",
        "\u{feff}[[permissions]]\nname = \"a:b\"\n[[roles]]\nname = \"v\"\npermissions = [\"a:b\"]\n",
    );
    for policy in [json.path(), toml.path()] {
        let r = run(&["lint", "--policy", policy]);
        r.exits(0);
        assert_eq!(
            r.stdout,
            "ok: 1 role, 1 permission, 0 organizations, deepest chain 1 role\n"
        );
        assert_eq!(r.stderr, "");
    }
}

// ---------------------------------------------------------------- check

#[test]
fn check_allows_and_denies() {
    let r = run(&[
        "check",
        "--policy",
        EXAMPLE,
        "--roles",
        "writer",
        "issues:read",
    ]);
    r.exits(0);
    assert_eq!(r.stdout, "allow\n");
    assert_eq!(r.stderr, "");

    let r = run(&[
        "check",
        "--policy",
        EXAMPLE,
        "--roles",
        "writer",
        "pulls:merge",
    ]);
    r.exits(1);
    assert_eq!(r.stdout, "deny\n");
    assert_eq!(r.stderr, "");

    // No roles at all: deny, not an error.
    let r = run(&["check", "--policy", EXAMPLE, "issues:read"]);
    r.exits(1);
    assert_eq!(r.stdout, "deny\n");
}

#[test]
fn check_of_an_undeclared_permission_denies_with_exit_2() {
    let r = run(&[
        "check",
        "--policy",
        EXAMPLE,
        "--roles",
        "admin",
        "issues:nope",
    ]);
    r.exits(2);
    assert_eq!(r.stdout, "deny\n");
    assert_eq!(
        r.stderr_lines(),
        ["error: permission `issues:nope` is not declared"]
    );
    let r = run(&[
        "check",
        "--policy",
        EXAMPLE,
        "--roles",
        "admin",
        "--explain",
        "issues:*",
    ]);
    r.exits(2);
    assert_eq!(r.stdout, "deny\n");
    assert_eq!(
        r.stderr_lines(),
        ["error: permission `issues:*` is not declared: wildcards are for grants; a check names one declared permission"]
    );
}

#[test]
fn messages_stay_on_one_line_whatever_the_input() {
    let r = run(&["check", "--policy", EXAMPLE, "issues:\nread"]);
    r.exits(2);
    assert_eq!(r.stdout, "deny\n");
    assert_eq!(
        r.stderr,
        "error: permission `issues:\\nread` is not declared\n"
    );
    let policy =
        TempFile::json(r#"{"roles": [{"name": "two\nlines"}, {"name": "x", "extends": "a\rb"}]}"#);
    let r = run(&["lint", "--policy", policy.path()]);
    r.exits(2);
    assert_eq!(
        r.stderr_lines(),
        [
            "error: role name `two\\nlines` is invalid: use 1-128 characters from `A-Z a-z 0-9 _ . : -`",
            "error: role `x` extends unknown role `a\\rb` (environment roles may extend environment roles only)",
        ]
    );
}

#[cfg(target_os = "linux")]
#[test]
fn a_failing_stdout_is_an_error() {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full opens");
    let output = Command::new(env!("CARGO_BIN_EXE_rolegraph"))
        .args(["lint", "--policy", EXAMPLE])
        .stdout(full)
        .output()
        .expect("the binary runs");
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "error: cannot write the output: no space left on device (os error 28)\n"
    );
}

#[test]
fn check_ignores_empty_list_items() {
    let r = run(&[
        "check",
        "--policy",
        EXAMPLE,
        "--roles",
        ",team_member,,",
        "--permissions",
        "tasks:assign,,",
        "tasks:assign",
    ]);
    r.exits(0);
    assert_eq!(r.stdout, "allow\n");
    assert_eq!(r.stderr, "");
    // Repeating the flag adds to the list.
    let r = run(&[
        "check",
        "--policy",
        EXAMPLE,
        "--roles",
        "viewer",
        "--roles",
        "project_manager",
        "tasks:assign",
    ]);
    r.exits(0);
    assert_eq!(r.stdout, "allow\n");
}

#[test]
fn check_with_claimed_permissions() {
    let r = run(&[
        "check",
        "--policy",
        EXAMPLE,
        "--roles",
        "viewer",
        "--permissions",
        "billing:read",
        "billing:read",
    ]);
    r.exits(0);
    assert_eq!(r.stdout, "allow\n");
    // Claiming one permission grants nothing else.
    let r = run(&[
        "check",
        "--policy",
        EXAMPLE,
        "--permissions",
        "billing:read",
        "billing:manage",
    ]);
    r.exits(1);
    assert_eq!(r.stdout, "deny\n");
}

#[test]
fn check_warns_about_unknown_roles_and_ignored_permissions() {
    let r = run(&[
        "check",
        "--policy",
        EXAMPLE,
        "--roles",
        "ghost,viewer,ghost",
        "--permissions",
        "typo:x",
        "repos:read",
    ]);
    r.exits(0);
    assert_eq!(r.stdout, "allow\n");
    assert_eq!(
        r.stderr_lines(),
        [
            "warning: unknown role `ghost`: ignored",
            "warning: undeclared claimed permission `typo:x`: ignored",
        ]
    );
}

#[test]
fn check_resolves_organization_roles() {
    let r = run(&[
        "check",
        "--policy",
        EXAMPLE,
        "--org",
        ORG,
        "--roles",
        "billing_admin",
        "billing:manage",
    ]);
    r.exits(0);
    assert_eq!(r.stdout, "allow\n");
    assert_eq!(r.stderr, "");
    // An organization role inherits environment roles.
    let r = run(&[
        "check",
        "--policy",
        EXAMPLE,
        "--org",
        ORG,
        "--roles",
        "delivery_lead",
        "pulls:merge",
    ]);
    r.exits(0);
    assert_eq!(r.stdout, "allow\n");
    // Environment roles resolve inside an organization too.
    let r = run(&[
        "check",
        "--policy",
        EXAMPLE,
        "--org",
        ORG,
        "--roles",
        "viewer",
        "repos:read",
    ]);
    r.exits(0);
    assert_eq!(r.stdout, "allow\n");
    // Without the organization, its roles do not resolve.
    let r = run(&[
        "check",
        "--policy",
        EXAMPLE,
        "--roles",
        "billing_admin",
        "billing:manage",
    ]);
    r.exits(1);
    assert_eq!(r.stdout, "deny\n");
    assert_eq!(
        r.stderr_lines(),
        ["warning: unknown role `billing_admin`: ignored"]
    );
}

#[test]
fn check_with_an_organization_the_policy_does_not_list() {
    // Environment roles only; a warning, not an error.
    let r = run(&[
        "check",
        "--policy",
        EXAMPLE,
        "--org",
        "org_other",
        "--roles",
        "admin",
        "billing:read",
    ]);
    r.exits(0);
    assert_eq!(r.stdout, "allow\n");
    assert_eq!(
        r.stderr_lines(),
        ["warning: organization `org_other` is not in the policy: only environment roles resolve"]
    );
    let r = run(&[
        "check",
        "--policy",
        EXAMPLE,
        "--org",
        "org_other",
        "--roles",
        "billing_admin",
        "billing:read",
    ]);
    r.exits(1);
    assert_eq!(r.stdout, "deny\n");
}

#[test]
fn check_explains() {
    let r = run(&[
        "check",
        "--policy",
        EXAMPLE,
        "--org",
        ORG,
        "--roles",
        "delivery_lead,ghost",
        "--explain",
        "issues:read",
    ]);
    r.exits(0);
    assert_eq!(
        r.stdout,
        "allow\n\
         `issues:read`: granted by `delivery_lead` -> `maintainer` -> `writer` -> `viewer` (grants `issues:read`)\n\
         unknown token role `ghost`: ignored\n"
    );
    assert_eq!(r.stderr, "");

    let r = run(&[
        "check",
        "--policy",
        EXAMPLE,
        "--roles",
        "admin",
        "--explain",
        "billing:read",
    ]);
    r.exits(0);
    assert_eq!(
        r.stdout,
        "allow\n`billing:read`: granted by `admin` (grants `billing:*`)\n"
    );

    let r = run(&[
        "check",
        "--policy",
        EXAMPLE,
        "--roles",
        "viewer",
        "--permissions",
        "typo:x",
        "--explain",
        "repos:write",
    ]);
    r.exits(1);
    assert_eq!(
        r.stdout,
        "deny\n\
         `repos:write`: missing: no token role grants it and the token does not claim it\n\
         undeclared claimed permission `typo:x`: ignored\n"
    );

    let r = run(&[
        "check",
        "--policy",
        EXAMPLE,
        "--permissions",
        "tasks:read",
        "--explain",
        "tasks:read",
    ]);
    r.exits(0);
    assert_eq!(
        r.stdout,
        "allow\n`tasks:read`: claimed in the token's permissions\n"
    );
}

// ---------------------------------------------------------------- eval

#[test]
fn eval_answers_a_decision_table() {
    let queries = [
        r#"{"roles": ["viewer"], "check": "issues:read"}"#,
        r#"{"roles": ["viewer"], "check": "issues:write"}"#,
        r#"{"roles": ["team_member"], "any": ["projects:update", "tasks:update"]}"#,
        r#"{"roles": ["team_member"], "any": ["projects:update", "tasks:assign"]}"#,
        r#"{"roles": ["project_manager"], "all": ["projects:update", "tasks:assign", "tasks:read"]}"#,
        r#"{"roles": ["project_manager"], "all": ["projects:update", "repos:read"]}"#,
        r#"{"roles": ["viewer"], "permissions": ["tasks:assign"], "check": "tasks:assign"}"#,
        r#"{"roles": ["ghost", "viewer"], "check": "repos:read"}"#,
        r#"{"org": "org_69615647365005430", "roles": ["billing_admin"], "check": "billing:manage"}"#,
        r#"{"roles": ["billing_admin"], "check": "billing:manage"}"#,
        "",
        "not json",
        r#"{"roles": ["admin"], "check": "issues:nope"}"#,
        r#"{"roles": ["admin"], "any": []}"#,
        r#"{"roles": ["admin"], "check": "issues:read", "any": ["issues:read"]}"#,
        r#"{"roles": ["admin"]}"#,
        r#"{"roles": ["admin"], "check": "issues:read", "role": "x"}"#,
        r#"{"roles": ["viewer"], "permissions": ["typo:x"], "check": "issues:read"}"#,
        r#"{"org": "org_other", "roles": ["admin"], "check": "billing:read"}"#,
        r#"{"org": "org_69615647365005430", "roles": ["viewer"], "all": ["issues:read"]}"#,
        "   ",
        r#"[{"check": "issues:read"}]"#,
        r#"{"roles": "admin", "check": "issues:read"}"#,
        r#"{"org": null, "roles": [], "permissions": [], "check": "issues:read"}"#,
        r#"{"check": "issues:read", "any": ["issues:read"], "all": ["issues:read"]}"#,
        r#"{"check": null, "all": ["issues:read", "repos:read"], "roles": ["viewer"]}"#,
    ];
    let expected = [
        r#"{"allowed":true}"#,
        r#"{"allowed":false}"#,
        r#"{"allowed":true}"#,
        r#"{"allowed":false}"#,
        r#"{"allowed":true}"#,
        r#"{"allowed":false}"#,
        r#"{"allowed":true}"#,
        r#"{"allowed":true,"unknown_roles":["ghost"]}"#,
        r#"{"allowed":true}"#,
        r#"{"allowed":false,"unknown_roles":["billing_admin"]}"#,
        r#"{"allowed":false,"error":"line 12: invalid json: expected ident (column 2)"}"#,
        r#"{"allowed":false,"error":"line 13: permission `issues:nope` is not declared"}"#,
        r#"{"allowed":false,"error":"line 14: `any` is empty: a requirement needs at least one permission"}"#,
        r#"{"allowed":false,"error":"line 15: the query has `check` and `any`: it needs exactly one of `check`, `any`, `all`"}"#,
        r#"{"allowed":false,"error":"line 16: the query needs exactly one of `check`, `any`, `all`"}"#,
        r#"{"allowed":false,"error":"line 17: invalid query: unknown field `role`, expected one of `org`, `roles`, `permissions`, `check`, `any`, `all` (column 51)"}"#,
        r#"{"allowed":true,"ignored_permissions":["typo:x"]}"#,
        r#"{"allowed":true}"#,
        r#"{"allowed":true}"#,
        r#"{"allowed":false,"error":"line 22: invalid query: expected a json object, found an array"}"#,
        r#"{"allowed":false,"error":"line 23: invalid query: invalid type: string \"admin\", expected a sequence (column 17)"}"#,
        r#"{"allowed":false}"#,
        r#"{"allowed":false,"error":"line 25: the query has `check`, `any` and `all`: it needs exactly one of `check`, `any`, `all`"}"#,
        r#"{"allowed":true}"#,
    ];
    // The last line has no newline at its end: still a query.
    let input = queries.join("\n");
    let r = run_with(&["eval", "--policy", EXAMPLE], Some(&input));
    r.exits(0);
    assert_eq!(r.stderr, "");
    let got: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(got, expected);
    assert!(r.stdout.ends_with('\n'));
    // Every answer is one JSON object with a boolean `allowed`.
    for line in got {
        let v: serde_json::Value = serde_json::from_str(line).expect("each answer is JSON");
        assert!(v["allowed"].is_boolean(), "{line}");
    }
}

#[test]
fn eval_counts_lines_across_crlf_and_bad_utf8() {
    let mut input = b"{\"roles\": [\"viewer\"], \"check\": \"issues:read\"}\r\n".to_vec();
    input.extend_from_slice(b"\xff\xfe\n");
    input.extend_from_slice(b"{\"check\": \"issues:read\"\n");
    let mut child = Command::new(env!("CARGO_BIN_EXE_rolegraph"))
        .args(["eval", "--policy", EXAMPLE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(&input)
        .expect("stdin accepts the input");
    let output = child.wait_with_output().expect("the binary finishes");
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "{\"allowed\":true}\n\
         {\"allowed\":false,\"error\":\"line 2: invalid json: the line is not utf-8\"}\n\
         {\"allowed\":false,\"error\":\"line 3: invalid json: EOF while parsing an object (column 23)\"}\n"
    );
}

#[test]
fn eval_of_empty_input_prints_nothing() {
    let r = run_with(&["eval", "--policy", EXAMPLE], Some(""));
    r.exits(0);
    assert_eq!(r.stdout, "");
    assert_eq!(r.stderr, "");
    let r = run_with(&["eval", "--policy", EXAMPLE], Some("\n\n  \n"));
    r.exits(0);
    assert_eq!(r.stdout, "");
}

#[test]
fn eval_stops_quietly_when_stdout_closes() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rolegraph"))
        .args(["eval", "--policy", EXAMPLE])
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    // The reader goes away before the first answer.
    drop(child.stdout.take());
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let line = b"{\"roles\": [\"viewer\"], \"check\": \"issues:read\"}\n";
    for _ in 0..20_000 {
        // Once the binary has stopped, writing fails: that is expected.
        if stdin.write_all(line).is_err() {
            break;
        }
    }
    drop(stdin);
    let output = child.wait_with_output().expect("the binary finishes");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr, "");
}

#[test]
fn eval_answers_an_overlong_line_with_an_error_and_continues() {
    let query = r#"{"roles": ["viewer"], "check": "issues:read"}"#;
    let long = format!(r#"{{"check": "{}"}}"#, "x".repeat(3 << 20));
    let input = format!("{query}\n{long}\n{query}\n{long}");
    let r = run_with(&["eval", "--policy", EXAMPLE], Some(&input));
    r.exits(0);
    assert_eq!(r.stderr, "");
    let over = format!(
        "the line is {} bytes, over the 1048576-byte limit",
        long.len()
    );
    assert_eq!(
        r.stdout,
        format!(
            "{{\"allowed\":true}}\n\
             {{\"allowed\":false,\"error\":\"line 2: {over}\"}}\n\
             {{\"allowed\":true}}\n\
             {{\"allowed\":false,\"error\":\"line 4: {over}\"}}\n"
        )
    );

    // The limit is a flag; a line of exactly the limit is read.
    let limit = query.len().to_string();
    let input = format!("{query}\n{query} \n{query}\r\n");
    let r = run_with(
        &["eval", "--policy", EXAMPLE, "--max-line-bytes", &limit],
        Some(&input),
    );
    r.exits(0);
    let over = format!(
        "the line is {} bytes, over the {limit}-byte limit",
        query.len() + 1
    );
    assert_eq!(
        r.stdout,
        format!(
            "{{\"allowed\":true}}\n\
             {{\"allowed\":false,\"error\":\"line 2: {over}\"}}\n\
             {{\"allowed\":false,\"error\":\"line 3: {over}\"}}\n"
        )
    );
}

/// A 1,000,000-character name gave 2 MB of stderr; quoted input is cut
/// after 64 characters, with its length.
#[test]
fn messages_cap_quoted_input_with_its_length() {
    let huge = "r".repeat(1_000_000);
    let cut = format!("`{}…` (1000000 characters)", "r".repeat(64));
    let policy = TempFile::json(&format!(
        r#"{{"roles": [{{"name": "{huge}"}}, {{"name": "x", "extends": "{huge}"}}]}}"#
    ));
    let r = run(&["lint", "--policy", policy.path()]);
    r.exits(2);
    assert_eq!(
        r.stderr_lines(),
        [
            format!("error: role name {cut} is invalid: use 1-128 characters from `A-Z a-z 0-9 _ . : -`"),
            format!("error: role `x` extends unknown role {cut} (environment roles may extend environment roles only)"),
        ]
    );

    // An unknown field is echoed by the parser: capped too.
    let policy = TempFile::json(&format!(r#"{{"{huge}": 1}}"#));
    let r = run(&["lint", "--policy", policy.path()]);
    r.exits(2);
    assert!(r.stderr.len() < 400, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("unknown field {cut}")),
        "{}",
        r.stderr
    );

    // Command-line arguments (at most 128 KiB each on Linux).
    let long = "p".repeat(100_000);
    let r = run(&["check", "--policy", EXAMPLE, "--roles", &long, &long]);
    r.exits(2);
    let cut = format!("`{}…` (100000 characters)", "p".repeat(64));
    assert_eq!(
        r.stderr_lines(),
        [format!("error: permission {cut} is not declared")]
    );
    let r = run(&["explain", "--policy", EXAMPLE, "--role", &long]);
    r.exits(2);
    assert_eq!(
        r.stderr_lines(),
        [format!("error: role {cut} does not exist")]
    );

    // `eval` answers: an undeclared permission and an unknown field.
    let input = format!("{{\"check\": \"{long}\"}}\n{{\"{long}\": 1}}\n");
    let r = run_with(&["eval", "--policy", EXAMPLE], Some(&input));
    r.exits(0);
    let answers: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON answer"))
        .collect();
    assert_eq!(
        answers[0]["error"],
        format!("line 1: permission {cut} is not declared")
    );
    let second = answers[1]["error"].as_str().expect("an error");
    assert!(
        second.starts_with(&format!("line 2: invalid query: unknown field {cut}")),
        "{second}"
    );
    assert!(second.len() < 400, "{second}");
}

// ---------------------------------------------------------------- explain

#[test]
fn explain_prints_the_inheritance_tree() {
    let r = run(&[
        "explain",
        "--policy",
        EXAMPLE,
        "--org",
        ORG,
        "--role",
        "delivery_lead",
    ]);
    r.exits(0);
    assert_eq!(r.stderr, "");
    assert_eq!(
        r.stdout,
        "\
role `delivery_lead` in organization `org_69615647365005430`: 12 effective permissions from 6 roles
delivery_lead
maintainer via delivery_lead
  pulls:merge
  repos:settings
project_manager via delivery_lead
  projects:create
  projects:update
  tasks:assign
writer via maintainer
  issues:write
  repos:write
team_member via project_manager
  projects:read
  tasks:read
  tasks:update
viewer via writer
  issues:read
  repos:read
"
    );
}

#[test]
fn explain_shows_wildcards_and_shortest_paths() {
    // `project_admin`'s wildcard gives `projects:create` before
    // `project_manager` is reached; `writer` (one step) comes before
    // `team_member` (two steps) although it sorts after it.
    let r = run(&["explain", "--policy", EXAMPLE, "--role", "project_admin"]);
    r.exits(0);
    assert_eq!(
        r.stdout,
        "\
role `project_admin`: 11 effective permissions from 5 roles
project_admin
  projects:create (grants projects:*)
  projects:delete (grants projects:*)
  projects:read (grants projects:*)
  projects:update (grants projects:*)
project_manager via project_admin
  tasks:assign
writer via project_admin
  issues:write
  repos:write
team_member via project_manager
  tasks:read
  tasks:update
viewer via writer
  issues:read
  repos:read
"
    );
}

#[test]
fn explain_a_role_without_permissions() {
    let policy = TempFile::json(
        r#"{"permissions": [{"name": "a:read"}], "roles": [{"name": "empty"}, {"name": "one", "permissions": ["a:read"]}]}"#,
    );
    let r = run(&["explain", "--policy", policy.path(), "--role", "empty"]);
    r.exits(0);
    assert_eq!(
        r.stdout,
        "role `empty`: 0 effective permissions from 1 role\nempty\n"
    );
    let r = run(&["explain", "--policy", policy.path(), "--role", "one"]);
    r.exits(0);
    assert_eq!(
        r.stdout,
        "role `one`: 1 effective permission from 1 role\none\n  a:read\n"
    );
}

fn explain_json(args: &[&str]) -> serde_json::Value {
    let r = run(args);
    r.exits(0);
    assert_eq!(r.stderr, "");
    serde_json::from_str(&r.stdout).expect("explain --json prints one JSON document")
}

/// Every permission of an `explain --json` document with its path, rebuilt
/// from the `via` pointers, and its grant.
fn json_paths(doc: &serde_json::Value) -> Vec<(String, Vec<String>, String)> {
    let roles = doc["roles"].as_array().expect("a roles array");
    let mut out = Vec::new();
    for (i, role) in roles.iter().enumerate() {
        let mut path = Vec::new();
        let mut at = Some(i);
        while let Some(j) = at {
            assert!(j <= i, "a parent comes before its children");
            let parent = roles
                .get(j)
                .unwrap_or_else(|| panic!("`via` {j} is an index into roles"));
            path.push(parent["name"].as_str().expect("a name").to_owned());
            at = parent["via"].as_u64().map(|v| v as usize);
        }
        path.reverse();
        assert_eq!(role["depth"].as_u64(), Some(path.len() as u64 - 1));
        for p in role["permissions"].as_array().expect("a permissions array") {
            out.push((
                p["name"].as_str().expect("a name").to_owned(),
                path.clone(),
                p["grant"].as_str().expect("a grant").to_owned(),
            ));
        }
    }
    out.sort();
    out
}

fn row(name: &str, path: &[&str], grant: &str) -> (String, Vec<String>, String) {
    (
        name.to_owned(),
        path.iter().map(|s| (*s).to_owned()).collect(),
        grant.to_owned(),
    )
}

#[test]
fn explain_json_gives_the_tree_with_parent_pointers() {
    let doc = explain_json(&["explain", "--policy", EXAMPLE, "--role", "admin", "--json"]);
    assert_eq!(doc["role"], "admin");
    assert!(doc["organization"].is_null());
    assert_eq!(doc["effective_permissions"], 11);
    assert_eq!(doc["roles"][0]["name"], "admin");
    assert!(doc["roles"][0]["via"].is_null());
    let paths = json_paths(&doc);
    assert_eq!(paths.len(), 11);
    assert!(paths.contains(&row(
        "issues:read",
        &["admin", "maintainer", "writer", "viewer"],
        "issues:read"
    )));
    assert!(paths.contains(&row("billing:read", &["admin"], "billing:*")));
    assert!(!paths.iter().any(|(name, _, _)| name == "projects:read"));

    let doc = explain_json(&[
        "explain",
        "--policy",
        EXAMPLE,
        "--org",
        ORG,
        "--role",
        "billing_admin",
        "--json",
    ]);
    assert_eq!(doc["role"], "billing_admin");
    assert_eq!(doc["organization"], ORG);
    assert_eq!(doc["roles"][0]["organization"], ORG);
    assert!(
        doc["roles"][1]["organization"].is_null(),
        "viewer is an environment role"
    );
    assert!(json_paths(&doc).contains(&row(
        "repos:read",
        &["billing_admin", "viewer"],
        "repos:read"
    )));
    // An environment role looked up through an organization belongs to none.
    let doc = explain_json(&[
        "explain", "--policy", EXAMPLE, "--org", ORG, "--role", "viewer", "--json",
    ]);
    assert!(doc["organization"].is_null());
    assert_eq!(doc["effective_permissions"], 2);
}

#[test]
fn explain_json_paths_are_the_libraries_effective_permissions() {
    let snapshot: rolegraph::Policy = std::fs::read_to_string(EXAMPLE)
        .expect("the example")
        .parse()
        .expect("a policy");
    let snapshot = snapshot.compile().expect("valid");
    for role in ["admin", "project_admin", "viewer", "writer"] {
        let doc = explain_json(&["explain", "--policy", EXAMPLE, "--role", role, "--json"]);
        let effective = snapshot.effective_permissions(None, role).expect("a role");
        let mut expected: Vec<_> = effective
            .iter()
            .map(|e| {
                let path: Vec<String> = effective.path(e).into_iter().map(str::to_owned).collect();
                (e.name.clone(), path, e.grant.clone())
            })
            .collect();
        expected.sort();
        assert_eq!(json_paths(&doc), expected, "{role}");
    }
}

/// A chain `r0` <- `r1` <- ... <- `r99999` where every 100th role grants a
/// permission of its own: every path is a prefix of the longest, so printing
/// each permission's whole path is quadratic (over 300 MB here); the tree is
/// linear. (One permission per role would be the same, but its 100,000 ×
/// 100,000-bit rows take 1.25 GB to compile.)
#[test]
fn explain_of_a_100k_role_chain_is_linear() {
    const N: usize = 100_000;
    const EVERY: usize = 100;
    let mut json = String::from("{\"permissions\": [");
    for i in (0..N).step_by(EVERY) {
        json.push_str(&format!(
            "{}{{\"name\": \"p:{i}\"}}",
            if i > 0 { "," } else { "" }
        ));
    }
    json.push_str("], \"roles\": [");
    for i in 0..N {
        let extends = if i > 0 {
            format!(", \"extends\": \"r{}\"", i - 1)
        } else {
            String::new()
        };
        let grants = if i % EVERY == 0 {
            format!(", \"permissions\": [\"p:{i}\"]")
        } else {
            String::new()
        };
        json.push_str(&format!(
            "{}{{\"name\": \"r{i}\"{grants}{extends}}}",
            if i > 0 { "," } else { "" }
        ));
    }
    json.push_str("]}");
    let policy = TempFile::json(&json);
    let top = format!("r{}", N - 1);
    let r = run(&["explain", "--policy", policy.path(), "--role", &top]);
    r.exits(0);
    assert!(
        r.stdout.len() < 100 * N,
        "{} bytes for {N} roles",
        r.stdout.len()
    );
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 1 + N + N / EVERY);
    assert_eq!(
        lines[0],
        "role `r99999`: 1000 effective permissions from 100000 roles"
    );
    assert_eq!(
        lines[1..4],
        ["r99999", "r99998 via r99999", "r99997 via r99998"]
    );
    assert_eq!(
        lines[lines.len() - 3..],
        ["r1 via r2", "r0 via r1", "  p:0"]
    );
    assert!(lines.contains(&"r100 via r101"));
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("  p:")).count(),
        N / EVERY
    );

    let r = run(&[
        "explain",
        "--policy",
        policy.path(),
        "--role",
        &top,
        "--json",
    ]);
    r.exits(0);
    assert!(
        r.stdout.len() < 200 * N,
        "{} bytes for {N} roles",
        r.stdout.len()
    );
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).expect("one JSON document");
    assert_eq!(doc["effective_permissions"], N / EVERY);
    let last = &doc["roles"][N - 1];
    assert_eq!(last["name"], "r0");
    assert_eq!(last["via"], N - 2);
    assert_eq!(last["depth"], N - 1);
}

#[test]
fn explain_of_an_unknown_role_or_organization_is_an_error() {
    let r = run(&["explain", "--policy", EXAMPLE, "--role", "nobody"]);
    r.exits(2);
    assert_eq!(r.stdout, "");
    assert_eq!(r.stderr_lines(), ["error: role `nobody` does not exist"]);

    // An organization role needs its organization.
    let r = run(&[
        "explain",
        "--policy",
        EXAMPLE,
        "--role",
        "billing_admin",
        "--json",
    ]);
    r.exits(2);
    assert_eq!(r.stdout, "");
    assert_eq!(
        r.stderr_lines(),
        ["error: role `billing_admin` does not exist"]
    );

    let r = run(&[
        "explain", "--policy", EXAMPLE, "--org", ORG, "--role", "nobody",
    ]);
    r.exits(2);
    assert_eq!(
        r.stderr_lines(),
        ["error: role `nobody` does not exist in organization `org_69615647365005430`"]
    );

    let r = run(&[
        "explain",
        "--policy",
        EXAMPLE,
        "--org",
        "org_other",
        "--role",
        "admin",
    ]);
    r.exits(2);
    assert_eq!(r.stdout, "");
    assert_eq!(
        r.stderr_lines(),
        ["error: organization `org_other` does not exist"]
    );
}

// ---------------------------------------------------------------- usage

#[test]
fn every_command_has_help() {
    for command in [
        vec!["--help"],
        vec!["help"],
        vec!["lint", "--help"],
        vec!["check", "--help"],
        vec!["eval", "--help"],
        vec!["explain", "--help"],
        vec!["help", "check"],
    ] {
        let r = run(&command);
        r.exits(0);
        assert!(r.stdout.contains("Usage: rolegraph"), "{command:?}: {r:#?}");
        assert!(r.stdout.contains("Exit status"), "{command:?}: {r:#?}");
        assert_eq!(r.stderr, "", "{command:?}");
    }
    let r = run(&["check", "--help"]);
    for needle in [
        "--policy <FILE>",
        "--org <ORG>",
        "--roles <ROLES>",
        "--explain",
        "<PERMISSION>",
    ] {
        assert!(r.stdout.contains(needle), "{needle}: {}", r.stdout);
    }
    let r = run(&["--version"]);
    r.exits(0);
    assert_eq!(
        r.stdout,
        format!("rolegraph {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec![],
        vec!["frobnicate"],
        vec!["lint"],
        vec!["check", "--policy", EXAMPLE],
        vec!["explain", "--policy", EXAMPLE],
        vec!["lint", "--policy", EXAMPLE, "--bogus"],
    ] {
        let r = run(&args);
        r.exits(2);
        assert_eq!(r.stdout, "", "{args:?}");
        assert!(!r.stderr.is_empty(), "{args:?}");
    }
}

#[test]
fn a_path_that_is_a_directory_is_an_error() {
    let dir: &Path = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = dir.join("examples");
    let r = run(&["lint", "--policy", dir.to_str().expect("a utf-8 path")]);
    r.exits(2);
    assert_eq!(r.stdout, "");
    assert_eq!(r.stderr_lines().len(), 1, "{r:#?}");
    assert!(r.stderr.starts_with("error: cannot read `"), "{r:#?}");
}
