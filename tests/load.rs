//! Reading policies: load errors, the JSON round trip, the example policy.

#![expect(
    clippy::panic,
    clippy::unwrap_used,
    reason = "helpers outside #[test] functions may fail the test"
)]

use std::path::Path;

use rolegraph::{LoadError, Policy, Warning};

fn load_err(text: &str) -> String {
    match Policy::from_json(text) {
        Ok(p) => panic!("should not load, got {p:?}"),
        Err(e) => e.to_string(),
    }
}

/// One line, lowercase start, no trailing period.
fn assert_style(msg: &str) {
    assert!(!msg.contains('\n'), "one line: {msg}");
    let first = msg.chars().next().unwrap();
    assert!(first.is_lowercase(), "lowercase: {msg}");
    assert!(!msg.ends_with('.'), "no period: {msg}");
}

#[test]
fn an_unknown_field_is_an_error_naming_its_path() {
    let msg = load_err(r#"{"roles": [{"name": "a"}, {"name": "b", "permisions": ["x:y"]}]}"#);
    assert_style(&msg);
    assert!(msg.contains("unknown field `permisions`"), "{msg}");
    assert!(msg.contains("roles[1]"), "{msg}");

    let msg = load_err(
        r#"{"organizations": [{"id": "org_1", "group_roles": [{"group": "g", "role": ["a"]}]}]}"#,
    );
    assert_style(&msg);
    assert!(msg.contains("unknown field `role`"), "{msg}");
    assert!(msg.contains("organizations[0].group_roles[0]"), "{msg}");

    let msg = load_err(r#"{"permissions": [], "default_role": "a"}"#);
    assert_style(&msg);
    assert!(msg.contains("unknown field `default_role`"), "{msg}");
}

#[test]
fn invalid_json_is_a_one_line_error() {
    for text in [
        r#"{"roles": [}"#,
        "",
        "{} {}",
        r#"{"roles": [{"name": "a",}]}"#,
        "\n\n{\"roles\":\n 3}",
        r#"{"roles": [{"extends": "a"}]}"#,
        r#"{"roles": [{"name": "a", "extends": 7}]}"#,
    ] {
        let msg = load_err(text);
        assert_style(&msg);
        assert!(msg.starts_with("invalid policy: "), "{msg}");
    }
    let msg = load_err("\n\n{\"roles\":\n 3}");
    assert!(msg.contains("line 4"), "{msg}");
    assert!(msg.contains("`roles`"), "{msg}");
    let msg = load_err(r#"{"roles": [{"extends": "a"}]}"#);
    assert!(msg.contains("missing field `name`"), "{msg}");
}

#[test]
fn file_errors_name_the_file() {
    let missing = Path::new("/nonexistent/rolegraph/policy.json");
    let err = Policy::from_path(missing).unwrap_err();
    assert!(matches!(err, LoadError::Io { .. }));
    let msg = err.to_string();
    assert_style(&msg);
    assert!(
        msg.contains("`/nonexistent/rolegraph/policy.json`"),
        "{msg}"
    );

    let dir = std::env::temp_dir().join(format!("rolegraph-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"roles": [{"name": "a", "extend": "b"}]}"#).unwrap();
    let msg = Policy::from_path(&bad).unwrap_err().to_string();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_style(&msg);
    assert!(msg.contains(&format!("`{}`", bad.display())), "{msg}");
    assert!(msg.contains("unknown field `extend`"), "{msg}");
}

#[test]
fn json_round_trips() {
    let mut p = Policy::new();
    p.permission("projects:read").permission("tasks:assign");
    p.permissions[0].description = Some("View projects".into());
    p.role("viewer")
        .display_name("Viewer")
        .description("Read only")
        .grant("projects:read");
    p.role("lead")
        .extends("viewer")
        .extends("planner")
        .grant("projects:*");
    p.role("planner").grant("tasks:assign");
    p.set_default_member_role("viewer")
        .set_default_creator_role("lead");
    let org = p.organization("org_1");
    org.role("manager").extends("lead");
    org.set_default_member_role("manager");
    org.map_group("Engineering", ["viewer", "manager"]);
    org.map_group("dirgroup_1", Vec::<String>::new());

    let text = p.to_json();
    let back = Policy::from_json(&text).unwrap();
    assert_eq!(back, p);
    assert_eq!(back.to_json(), text);
    let parsed: Policy = text.parse().unwrap();
    assert_eq!(parsed, p);

    // One base is written the Scalekit way, as a string; several as a list.
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        value["roles"][1]["extends"],
        serde_json::json!(["viewer", "planner"])
    );
    assert_eq!(value["organizations"][0]["roles"][0]["extends"], "lead");
    assert!(value["roles"][2].get("extends").is_none());

    // Compiling the copy gives the same answers.
    let (a, b) = (p.compile().unwrap(), back.compile().unwrap());
    assert_eq!(
        a.effective_permissions(Some("org_1"), "manager").unwrap(),
        b.effective_permissions(Some("org_1"), "manager").unwrap()
    );
}

#[test]
fn minimal_fields_load() {
    let p = Policy::from_json(
        r#"{"roles": [{"name": "a"}], "organizations": [{"id": "org_1", "group_roles": [{"group": "g"}]}]}"#,
    )
    .unwrap();
    assert!(p.permissions.is_empty());
    assert!(p.organizations[0].group_roles[0].roles.is_empty());
    assert!(p.compile().is_ok());
    assert_eq!(Policy::from_json("{}").unwrap(), Policy::new());
}

/// The organization of the example policy.
const ORG: &str = "org_69615647365005430";

fn example() -> Policy {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/policy.json");
    Policy::from_path(path).unwrap()
}

#[test]
fn the_example_policy_compiles_with_the_expected_facts() {
    let s = example().compile().unwrap();
    assert_eq!(s.roles_len(), 9);
    assert_eq!(s.permissions_len(), 18);
    assert_eq!(s.organizations_len(), 1);
    // admin -> maintainer -> writer -> viewer.
    assert_eq!(s.max_depth(), 4);
    assert_eq!(s.organizations().collect::<Vec<_>>(), [ORG]);
    let org = Some(ORG);

    let names = |eff: rolegraph::EffectivePermissions| -> Vec<String> {
        eff.into_iter().map(|e| e.name).collect()
    };
    assert_eq!(
        names(s.effective_permissions(None, "viewer").unwrap()),
        ["issues:read", "repos:read"]
    );
    let admin = s.effective_permissions(None, "admin").unwrap();
    let billing = admin.iter().find(|e| e.name == "billing:manage").unwrap();
    assert_eq!(admin.path(billing), ["admin"]);
    assert_eq!(billing.grant, "billing:*");
    let read = admin.iter().find(|e| e.name == "repos:read").unwrap();
    assert_eq!(
        admin.path(read),
        ["admin", "maintainer", "writer", "viewer"]
    );
    assert!(!admin.iter().any(|e| e.name.starts_with("projects:")));

    let pa = s.effective_permissions(None, "project_admin").unwrap();
    let delete = pa.iter().find(|e| e.name == "projects:delete").unwrap();
    assert_eq!(
        (pa.path(delete), delete.grant.as_str()),
        (vec!["project_admin"], "projects:*")
    );
    let tasks = pa.iter().find(|e| e.name == "tasks:read").unwrap();
    assert_eq!(
        pa.path(tasks),
        ["project_admin", "project_manager", "team_member"]
    );
    assert!(pa.iter().any(|e| e.name == "repos:write"));
    assert!(!pa.iter().any(|e| e.name == "pulls:merge"));

    let lead = s.role(org, "delivery_lead").unwrap();
    for p in ["pulls:merge", "tasks:assign", "repos:read", "tasks:read"] {
        assert!(s.role_has_permission(lead, p), "{p}");
    }
    assert!(!s.role_has_permission(lead, "billing:read"));
    assert_eq!(s.role(None, "delivery_lead"), None);

    let role_names = |ids: Vec<rolegraph::RoleId>| -> Vec<&str> {
        let mut v: Vec<&str> = ids.into_iter().map(|r| s.role_name(r)).collect();
        v.sort_unstable();
        v
    };
    assert_eq!(
        role_names(s.roles_for_groups(ORG, ["Managers", "Finance"]).unwrap()),
        ["billing_admin", "delivery_lead", "project_admin"]
    );
    assert_eq!(
        role_names(
            s.roles_for_groups(ORG, ["dirgroup_38862741498233423"])
                .unwrap()
        ),
        ["project_manager"]
    );
    assert_eq!(
        role_names(s.roles_for_groups(ORG, ["Sales"]).unwrap()),
        ["team_member"]
    );
    assert_eq!(
        s.default_creator_role().map(|r| s.role_name(r)),
        Some("admin")
    );
    assert_eq!(
        s.default_member_role(None).map(|r| s.role_name(r)),
        Some("viewer")
    );
    assert_eq!(
        role_names(s.roles_granting("repos:delete").unwrap()),
        ["admin"]
    );
    let ws: Vec<Warning> = s.warnings();
    assert!(ws.is_empty(), "{ws:?}");
}
