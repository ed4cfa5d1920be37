//! The handler end to end: fixtures, every mapped event type, HTTP answers,
//! idempotency (also across a restart), staleness, dependencies out of
//! order, rejected events, resync.

// Test helpers outside `#[test]` functions may fail loudly too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod webhook_common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rolegraph::scalekit::{
    Event, EventKind, Handler, HandlerOptions, Lifecycle, Source, SourceError, UserKey,
    WebhookError, WebhookOutcome,
};
use rolegraph::{Engine, EngineOptions, Permission, Policy, Requirement, Role};
use serde_json::json;
use webhook_common::*;

fn base_policy() -> Policy {
    let mut p = projects_policy();
    p.role("member");
    p.role("billing_admin");
    p.set_default_member_role("viewer");
    p
}

fn handler(policy: &Policy) -> Handler {
    Handler::new(Engine::new(policy).unwrap(), verifier())
}

fn fixture(name: &str) -> Vec<u8> {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let ours = std::fs::read(here.join("tests/data/scalekit").join(name)).unwrap();
    // The copies here are the shared fixtures, byte for byte, when those are
    // beside the repository.
    if let Ok(shared) = std::fs::read(here.join("../shared/fixtures").join(name)) {
        assert_eq!(
            ours, shared,
            "tests/data/scalekit/{name} differs from shared/fixtures"
        );
    }
    ours
}

/// A source whose state the test changes as it goes.
#[derive(Clone, Default)]
struct Live(Arc<Mutex<Policy>>);

impl Live {
    fn new(p: Policy) -> Self {
        Self(Arc::new(Mutex::new(p)))
    }
}

impl Source for Live {
    fn fetch_role_permissions(
        &self,
        org: Option<&str>,
        name: &str,
    ) -> Result<Vec<Permission>, SourceError> {
        self.0.lock().unwrap().fetch_role_permissions(org, name)
    }
    fn fetch_role(&self, org: Option<&str>, name: &str) -> Result<Option<Role>, SourceError> {
        Source::fetch_role(&*self.0.lock().unwrap(), org, name)
    }
    fn fetch_policy(&self) -> Result<Policy, SourceError> {
        Ok(self.0.lock().unwrap().clone())
    }
}

/// A source that is down.
struct Down;

impl Source for Down {
    fn fetch_role_permissions(
        &self,
        _: Option<&str>,
        _: &str,
    ) -> Result<Vec<Permission>, SourceError> {
        Err(SourceError::Other("source is down".into()))
    }
    fn fetch_role(&self, _: Option<&str>, _: &str) -> Result<Option<Role>, SourceError> {
        Err(SourceError::Other("source is down".into()))
    }
    fn fetch_policy(&self) -> Result<Policy, SourceError> {
        Err(SourceError::Other("source is down".into()))
    }
}

// ---------------------------------------------------------------- fixtures

#[test]
fn the_fixture_payloads_parse() {
    let e = Event::parse(&fixture("directory_user_updated.json")).unwrap();
    assert_eq!(e.event_type, "organization.directory.user_updated");
    assert_eq!(e.occurred_at_ns, Some(1_736_189_065_153_954_000));
    let EventKind::DirectoryUser { change, user } = &e.kind else {
        panic!("{e:?}")
    };
    assert_eq!(*change, Lifecycle::Updated);
    assert_eq!(user.id, "diruser_12312312312312");
    assert_eq!(
        user.organization_id.as_deref(),
        Some("org_53879494091473415")
    );
    assert_eq!(user.email.as_deref(), Some("john.doe@example.com"));
    assert_eq!(user.active, Some(true));
    assert_eq!(user.roles, ["billing_admin"]);

    let e = Event::parse(&fixture("directory_group_created.json")).unwrap();
    let EventKind::DirectoryGroup { change, group } = &e.kind else {
        panic!("{e:?}")
    };
    assert_eq!(*change, Lifecycle::Created);
    assert_eq!(group.id, "dirgroup_38862741498233423");
    assert_eq!(group.display_name.as_deref(), Some("Avengers"));
    assert_eq!(e.occurred_at_ns, Some(1_727_231_199_036_398_577));

    let e = Event::parse(&fixture("role_created.json")).unwrap();
    let EventKind::Role { change, role } = &e.kind else {
        panic!("{e:?}")
    };
    assert_eq!(*change, Lifecycle::Created);
    assert_eq!(role.name, "viewer");
    assert_eq!(role.extends.as_deref(), Some("member"));
    assert_eq!(role.permissions, None);
}

#[test]
fn the_directory_user_fixture_sets_the_membership() {
    for (key, user) in [
        (UserKey::Email, "john.doe@example.com"),
        (UserKey::DirectoryUserId, "diruser_12312312312312"),
    ] {
        let h = handler(&base_policy()).with_options(HandlerOptions::default().with_user_key(key));
        let out = deliver(&h, "msg_fixture", &fixture("directory_user_updated.json"));
        assert_eq!(label(&out), ("applied", 200), "{}", out.body());
        let snap = h.engine().snapshot();
        let m = snap.membership("org_53879494091473415", user).unwrap();
        assert_eq!(m.roles, ["billing_admin"]);
        assert!(m.groups.is_empty());
    }
}

#[test]
fn the_role_fixture_creates_the_role_with_the_sources_permissions() {
    let mut p = Policy::new();
    p.role("member");
    // Without a source: no direct permissions.
    let h = handler(&p);
    let out = deliver(&h, "msg_role", &fixture("role_created.json"));
    assert_eq!(label(&out), ("applied", 200), "{}", out.body());
    let role = h
        .engine()
        .policy()
        .roles
        .into_iter()
        .find(|r| r.name == "viewer")
        .unwrap();
    assert_eq!(role.extends, ["member"]);
    assert_eq!(role.display_name.as_deref(), Some("Viewer"));
    assert!(role.permissions.is_empty());

    // With one: the permissions come in the same batch, declared as needed.
    let mut upstream = Policy::new();
    upstream.permission("projects:read");
    upstream.role("member");
    upstream
        .role("viewer")
        .extends("member")
        .grant("projects:read");
    let h = handler(&p).with_source(upstream);
    let out = deliver(&h, "msg_role", &fixture("role_created.json"));
    assert_eq!(label(&out), ("applied", 200), "{}", out.body());
    let snap = h.engine().snapshot();
    let read = Requirement::permission(&snap, "projects:read").unwrap();
    assert!(snap.principal(None, ["viewer"]).satisfies(&read));
}

#[test]
fn the_group_fixture_is_recorded() {
    let h = handler(&base_policy());
    let before = h.engine().policy();
    let out = deliver(&h, "msg_group", &fixture("directory_group_created.json"));
    assert_eq!(label(&out), ("applied", 200), "{}", out.body());
    assert_eq!(h.engine().policy(), before);
    assert!(h.engine().delivered("msg_group"));
    assert_eq!(
        h.engine()
            .entity_clock("group:org_38609339635728478/dirgroup_38862741498233423"),
        Some(1_727_231_199_036_398_577)
    );
}

// ------------------------------------------------------------- HTTP answers

#[test]
fn outcomes_map_onto_http() {
    let h = handler(&base_policy());
    // Bad signature: 401, nothing changes.
    let body = user_event("updated", "evt_1", 10, "org_1", "ann", &["editor"], true);
    let mut bad = headers("msg_1", &body);
    bad[2].1 = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into();
    let out = h.handle_at(bad, &body, now());
    assert_eq!(label(&out), ("unauthorized", 401));
    assert!(
        out.body().contains("\"status\":\"unauthorized\""),
        "{}",
        out.body()
    );
    assert_eq!(h.engine().revision(), 0);

    // Signed garbage: 400.
    let out = deliver(&h, "msg_2", b"{not json");
    assert_eq!(label(&out), ("malformed", 400));
    let out = deliver(&h, "msg_3", br#"{"id":"evt","type":"role.created","occurred_at":"2025-01-01T00:00:00Z","data":{"display_name":"x"}}"#);
    assert_eq!(label(&out), ("malformed", 400), "{}", out.body());
    let out = deliver(
        &h,
        "msg_4",
        br#"{"id":"evt","type":"role.created","data":{"name":"x"}}"#,
    );
    assert_eq!(label(&out), ("malformed", 400), "{}", out.body());
    assert!(out.body().contains("occurred_at"), "{}", out.body());

    // Unknown type: acknowledged, ignored, counted.
    let out = deliver(
        &h,
        "msg_5",
        br#"{"id":"evt_9","type":"user.login","data":{}}"#,
    );
    assert_eq!(label(&out), ("ignored", 200));
    assert_eq!(out.body(), r#"{"status":"ignored","type":"user.login"}"#);

    // Applied, then the same delivery again.
    let out = deliver(&h, "msg_1", &body);
    assert_eq!(label(&out), ("applied", 200));
    assert_eq!(out.body(), r#"{"status":"applied","revision":1}"#);
    let out = deliver(&h, "msg_1", &body);
    assert_eq!(label(&out), ("duplicate", 200));
    assert!(out.retry_after().is_none());

    let s = h.stats();
    assert_eq!(
        (
            s.bad_signature,
            s.malformed,
            s.ignored,
            s.applied,
            s.duplicates
        ),
        (1, 3, 1, 1, 1)
    );
    assert_eq!(h.engine().revision(), 1);
}

// ------------------------------------------------------------ idempotency

#[test]
fn a_redelivery_is_a_no_op() {
    let h = handler(&base_policy());
    let body = user_event("updated", "evt_1", 10, "org_1", "ann", &["editor"], true);
    assert_eq!(deliver(&h, "msg_1", &body).label(), "applied");
    let rev = h.engine().revision();
    // The same message again, and again with a new attempt timestamp.
    assert_eq!(deliver(&h, "msg_1", &body).label(), "duplicate");
    let later = now() + Duration::from_secs(120);
    let ts = (NOW_S + 120).to_string();
    let sig = verifier().sign("msg_1", NOW_S + 120, &body);
    let out = h.handle_at(
        [
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", ts.as_str()),
            ("webhook-signature", sig.as_str()),
        ],
        &body,
        later,
    );
    assert_eq!(out.label(), "duplicate");
    assert_eq!(h.engine().revision(), rev);
}

#[test]
fn a_redelivery_after_a_restart_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let body = user_event("updated", "evt_1", 10, "org_1", "ann", &["editor"], true);
    {
        let engine = Engine::open(dir.path(), &base_policy()).unwrap();
        let h = Handler::new(engine, verifier());
        assert_eq!(deliver(&h, "msg_1", &body).label(), "applied");
    }
    let engine = Engine::open(dir.path(), &base_policy()).unwrap();
    let rev = engine.revision();
    assert!(engine.delivered("msg_1"));
    let h = Handler::new(engine, verifier());
    assert_eq!(roles_of(&h, "org_1", "ann").unwrap(), ["editor"]);
    assert_eq!(deliver(&h, "msg_1", &body).label(), "duplicate");
    // Per-entity order survives too.
    let older = user_event("updated", "evt_0", 5, "org_1", "ann", &["viewer"], true);
    assert_eq!(deliver(&h, "msg_0", &older).label(), "stale");
    assert_eq!(h.engine().revision(), rev);
    // Also after a checkpoint.
    h.engine().checkpoint().unwrap();
    drop(h);
    let engine = Engine::open_with(dir.path(), &base_policy(), EngineOptions::default()).unwrap();
    let h = Handler::new(engine, verifier());
    assert_eq!(deliver(&h, "msg_1", &body).label(), "duplicate");
}

#[test]
fn delivery_ids_expire_after_the_retention() {
    let h = handler(&base_policy())
        .with_options(HandlerOptions::default().with_retention(Duration::from_secs(3600)));
    let a = user_event("updated", "evt_a", 10, "org_1", "ann", &["editor"], true);
    assert_eq!(deliver(&h, "msg_a", &a).label(), "applied");
    assert!(h.engine().delivered("msg_a"));
    let b = user_event("updated", "evt_b", 20, "org_1", "bob", &["editor"], true);
    let later_s = NOW_S + 7200;
    let later = now() + Duration::from_secs(7200);
    let ts = later_s.to_string();
    let sig = verifier().sign("msg_b", later_s, &b);
    let out = h.handle_at(
        [
            ("webhook-id", "msg_b"),
            ("webhook-timestamp", ts.as_str()),
            ("webhook-signature", sig.as_str()),
        ],
        &b,
        later,
    );
    assert_eq!(out.label(), "applied");
    assert!(!h.engine().delivered("msg_a"));
    assert_eq!(
        HandlerOptions::default().retention,
        Duration::from_secs(3 * 24 * 3600)
    );
}

// ------------------------------------------------------------------- order

#[test]
fn an_older_event_about_the_same_user_is_stale() {
    let h = handler(&base_policy());
    let newer = user_event("updated", "evt_2", 20, "org_1", "ann", &["admin"], true);
    let older = user_event("updated", "evt_1", 10, "org_1", "ann", &["viewer"], true);
    assert_eq!(deliver(&h, "msg_2", &newer).label(), "applied");
    let out = deliver(&h, "msg_1", &older);
    assert_eq!(label(&out), ("stale", 200));
    assert_eq!(
        out.body(),
        r#"{"status":"stale","entity":"user:org_1/ann@example.com"}"#
    );
    assert_eq!(roles_of(&h, "org_1", "ann").unwrap(), ["admin"]);
    // Another user is another entity.
    let bob = user_event("updated", "evt_0", 5, "org_1", "bob", &["viewer"], true);
    assert_eq!(deliver(&h, "msg_0", &bob).label(), "applied");
    assert_eq!(h.stats().stale, 1);
}

// --------------------------------------------------------- directory shape

/// Scalekit's documented directory example: the Engineering group maps to
/// `editor`, Managers to `admin`; Scalekit sends each user's resulting roles.
#[test]
fn a_directory_scenario_in_scalekits_shape() {
    let mut p = base_policy();
    p.organization("org_1")
        .map_group("dirgroup_eng", ["editor"])
        .map_group("dirgroup_mgr", ["admin"])
        .set_default_member_role("member");
    for opt_in in [false, true] {
        let h =
            handler(&p).with_options(HandlerOptions::default().with_default_member_role(opt_in));
        let steps: [(&[&str], &[&str]); 4] = [
            (&["editor"], &["editor"]),                    // joins Engineering
            (&["editor", "admin"], &["admin", "editor"]),  // joins Managers too
            (&["admin"], &["admin"]),                      // leaves Engineering
            (&[], if opt_in { &["member"] } else { &[] }), // leaves both
        ];
        for (i, (sent, want)) in steps.iter().enumerate() {
            let body = user_event(
                "updated",
                &format!("evt_{i}"),
                10 + i as u32,
                "org_1",
                "ann",
                sent,
                true,
            );
            let out = deliver(&h, &format!("msg_{i}"), &body);
            assert_eq!(out.label(), "applied", "{}", out.body());
            assert_eq!(
                roles_of(&h, "org_1", "ann").unwrap(),
                *want,
                "step {i}, opt-in {opt_in}"
            );
        }
        // Checks follow: ann, in no group, may not update projects.
        let snap = h.engine().snapshot();
        let update = Requirement::permission(&snap, "projects:update").unwrap();
        assert!(!snap
            .user_principal("org_1", "ann@example.com")
            .satisfies(&update));
    }
}

#[test]
fn a_new_user_without_roles_gets_the_default_only_when_opted_in() {
    let mut p = base_policy();
    p.organization("org_1");
    let off = handler(&p);
    let body = user_event("created", "evt_1", 10, "org_1", "ann", &[], true);
    assert_eq!(deliver(&off, "msg_1", &body).label(), "applied");
    assert_eq!(
        roles_of(&off, "org_1", "ann").unwrap(),
        Vec::<String>::new()
    );
    let on = handler(&p).with_options(HandlerOptions::default().with_default_member_role(true));
    assert_eq!(deliver(&on, "msg_1", &body).label(), "applied");
    // No organization override: the environment's default.
    assert_eq!(roles_of(&on, "org_1", "ann").unwrap(), ["viewer"]);
}

#[test]
fn an_inactive_user_loses_every_role_and_a_deleted_one_the_membership() {
    let h = handler(&base_policy())
        .with_options(HandlerOptions::default().with_default_member_role(true));
    let body = user_event("updated", "evt_1", 10, "org_1", "ann", &["admin"], true);
    assert_eq!(deliver(&h, "msg_1", &body).label(), "applied");
    let body = user_event("updated", "evt_2", 11, "org_1", "ann", &["admin"], false);
    assert_eq!(deliver(&h, "msg_2", &body).label(), "applied");
    assert_eq!(roles_of(&h, "org_1", "ann").unwrap(), Vec::<String>::new());
    let gone = event(
        "organization.directory.user_deleted",
        "evt_3",
        12,
        Some("org_1"),
        json!({"id": "diruser_ann", "organization_id": "org_1", "dp_id": "x", "email": "ann@example.com"}),
    );
    assert_eq!(deliver(&h, "msg_3", &gone).label(), "applied");
    assert_eq!(roles_of(&h, "org_1", "ann"), None);
}

#[test]
fn a_deleted_group_loses_its_mapping() {
    let mut p = base_policy();
    p.organization("org_1")
        .map_group("dirgroup_eng", ["editor"])
        .map_group("Managers", ["admin"])
        .map_group("dirgroup_other", ["viewer"]);
    let h = handler(&p);
    for (i, (id, name)) in [
        ("dirgroup_eng", "Engineering"),
        ("dirgroup_mgr", "Managers"),
    ]
    .into_iter()
    .enumerate()
    {
        let body = event(
            "organization.directory.group_deleted",
            &format!("evt_{i}"),
            10,
            Some("org_1"),
            json!({"id": id, "organization_id": "org_1", "directory_id": "dir_1",
                   "display_name": name, "external_id": null, "raw_attributes": {}}),
        );
        assert_eq!(deliver(&h, &format!("msg_{i}"), &body).label(), "applied");
    }
    let org = h
        .engine()
        .policy()
        .organizations
        .into_iter()
        .next()
        .unwrap();
    let groups: Vec<_> = org.group_roles.iter().map(|g| g.group.as_str()).collect();
    assert_eq!(groups, ["dirgroup_other"]);
    // A group of an organization the policy does not list is simply recorded.
    let body = event(
        "organization.directory.group_deleted",
        "evt_9",
        10,
        Some("org_9"),
        json!({"id": "dirgroup_x", "organization_id": "org_9"}),
    );
    assert_eq!(deliver(&h, "msg_9", &body).label(), "applied");
}

#[test]
fn membership_events_key_by_user_id_and_deletions_drop_the_email_key_too() {
    let h = handler(&base_policy());
    let body = user_event("updated", "evt_1", 10, "org_1", "ann", &["admin"], true);
    assert_eq!(deliver(&h, "msg_1", &body).label(), "applied");
    let created = event(
        "user.organization_membership_created",
        "evt_2",
        11,
        Some("org_1"),
        json!({"user": {"id": "usr_1", "email": "bob@example.com"}}),
    );
    // No roles in the payload and no source to fetch them from: the sender
    // keeps the event and delivers it again.
    let out = deliver(&h, "msg_2", &created);
    assert_eq!(label(&out), ("retry_later", 503), "{}", out.body());
    assert!(out.body().contains("`usr_1`"), "{}", out.body());
    let deleted = event(
        "user.organization_membership_deleted",
        "evt_3",
        12,
        Some("org_1"),
        json!({"user": {"id": "usr_1", "email": "Ann@Example.com"}}),
    );
    assert_eq!(deliver(&h, "msg_3", &deleted).label(), "applied");
    assert_eq!(roles_of(&h, "org_1", "ann"), None);
}

// ------------------------------------------------------ roles, permissions

#[test]
fn permission_events_declare_describe_and_remove() {
    let h = handler(&base_policy());
    assert_eq!(
        deliver(
            &h,
            "m1",
            &permission_event("created", "e1", 10, "tasks:assign")
        )
        .label(),
        "applied"
    );
    let p = h.engine().policy();
    let perm = p
        .permissions
        .iter()
        .find(|p| p.name == "tasks:assign")
        .unwrap();
    assert_eq!(perm.description.as_deref(), Some("may tasks:assign"));
    let updated = event(
        "permission.updated",
        "e2",
        11,
        None,
        json!({"id": "perm_x", "name": "tasks:assign", "description": "assign tasks"}),
    );
    assert_eq!(deliver(&h, "m2", &updated).label(), "applied");
    let p = h.engine().policy();
    let perm = p
        .permissions
        .iter()
        .find(|p| p.name == "tasks:assign")
        .unwrap();
    assert_eq!(perm.description.as_deref(), Some("assign tasks"));
    // Deleting a permission that roles still grant drops the grants.
    let out = deliver(
        &h,
        "m3",
        &permission_event("deleted", "e3", 12, "projects:update"),
    );
    assert_eq!(out.label(), "applied");
    assert!(
        out.body().contains(r#""roles_affected":["editor"]"#),
        "{}",
        out.body()
    );
    let snap = h.engine().snapshot();
    assert!(snap.permission_id("projects:update").is_none());
    // A late `permission.created` for it is stale: the deletion is newer.
    assert_eq!(
        deliver(
            &h,
            "m4",
            &permission_event("created", "e0", 5, "projects:update")
        )
        .label(),
        "stale"
    );
}

#[test]
fn role_updates_rebase_and_rename_and_keep_grants_without_a_source() {
    let h = handler(&base_policy());
    let out = deliver(
        &h,
        "m1",
        &role_event("updated", "e1", 10, "admin", Some("viewer")),
    );
    assert_eq!(out.label(), "applied", "{}", out.body());
    let p = h.engine().policy();
    let admin = p.roles.iter().find(|r| r.name == "admin").unwrap();
    assert_eq!(admin.extends, ["viewer"]);
    assert_eq!(admin.display_name.as_deref(), Some("ADMIN"));
    assert_eq!(admin.permissions, ["users:write"]);
    // Removing the base.
    assert_eq!(
        deliver(&h, "m2", &role_event("updated", "e2", 11, "admin", None)).label(),
        "applied"
    );
    let p = h.engine().policy();
    assert!(p
        .roles
        .iter()
        .find(|r| r.name == "admin")
        .unwrap()
        .extends
        .is_empty());
}

#[test]
fn role_updates_take_the_sources_grants_atomically() {
    let mut upstream = base_policy();
    upstream.role("admin").permissions = vec!["projects:read".into()];
    let h = handler(&base_policy()).with_source(upstream);
    let out = deliver(&h, "m1", &role_event("updated", "e1", 10, "admin", None));
    assert_eq!(out.label(), "applied", "{}", out.body());
    let p = h.engine().policy();
    assert_eq!(
        p.roles
            .iter()
            .find(|r| r.name == "admin")
            .unwrap()
            .permissions,
        ["projects:read"]
    );
    // A source that is down: retry later, nothing changed.
    let h = handler(&base_policy()).with_source(Down);
    let rev = h.engine().revision();
    let out = deliver(&h, "m1", &role_event("updated", "e1", 10, "admin", None));
    assert_eq!(label(&out), ("retry_later", 503));
    assert!(out.body().contains("source is down"), "{}", out.body());
    assert_eq!(h.engine().revision(), rev);
    assert!(!h.engine().delivered("m1"));
}

#[test]
fn a_cycle_is_rejected_visibly_and_not_retried() {
    let h = handler(&base_policy());
    let before = h.engine().policy();
    let rev = h.engine().revision();
    let out = deliver(
        &h,
        "m1",
        &role_event("updated", "e1", 10, "viewer", Some("admin")),
    );
    assert_eq!(label(&out), ("rejected", 200));
    let body = out.body();
    assert!(body.contains("cycle") && body.contains("`admin`"), "{body}");
    let WebhookOutcome::Rejected(WebhookError::Change(rolegraph::ChangeError::Invalid(e))) = &out
    else {
        panic!("{out:?}")
    };
    let cycle = e.cycles().next().unwrap();
    assert_eq!(cycle.members(), ["admin", "editor", "viewer"]);
    assert_eq!(h.engine().policy(), before);
    assert_eq!(h.engine().revision(), rev);
    assert_eq!(h.stats().rejected, 1);
    assert!(h.engine().stats().last_error.unwrap().contains("cycle"));
    // The same delivery again is rejected again, still with a 2xx.
    assert_eq!(
        label(&deliver(
            &h,
            "m1",
            &role_event("updated", "e1", 10, "viewer", Some("admin"))
        )),
        ("rejected", 200)
    );
    // An invalid name is rejected the same way.
    assert_eq!(
        deliver(
            &h,
            "m2",
            &role_event("created", "e2", 11, "bad name!", None)
        )
        .label(),
        "rejected"
    );
}

// ------------------------------------------------- dependencies out of order

#[test]
fn a_missing_dependency_without_a_source_asks_for_a_retry() {
    let h = handler(&base_policy());
    let child = role_event("created", "e2", 20, "auditor", Some("reviewer"));
    let out = deliver(&h, "m2", &child);
    assert_eq!(label(&out), ("retry_later", 503));
    assert_eq!(out.retry_after(), Some(Duration::from_secs(30)));
    assert!(out.body().contains("`reviewer`"), "{}", out.body());
    let user = user_event("updated", "e3", 30, "org_1", "ann", &["auditor"], true);
    assert_eq!(deliver(&h, "m3", &user).label(), "retry_later");
    // The dependency arrives; the sender's retries then apply.
    assert_eq!(
        deliver(
            &h,
            "m1",
            &role_event("created", "e1", 10, "reviewer", Some("viewer"))
        )
        .label(),
        "applied"
    );
    assert_eq!(deliver(&h, "m2", &child).label(), "applied");
    assert_eq!(deliver(&h, "m3", &user).label(), "applied");
    assert_eq!(roles_of(&h, "org_1", "ann").unwrap(), ["auditor"]);
    assert_eq!(h.stats().retry_later, 2);
}

#[test]
fn a_missing_dependency_is_fetched_from_the_source() {
    let mut upstream = base_policy();
    upstream.permission("audit:read");
    upstream
        .role("reviewer")
        .extends("viewer")
        .grant("audit:read");
    upstream.role("auditor").extends("reviewer");
    let h = handler(&base_policy()).with_source(upstream);
    // The user's role and its base are both unknown here: two rounds.
    let user = user_event("updated", "e3", 30, "org_1", "ann", &["auditor"], true);
    let out = deliver(&h, "m3", &user);
    assert_eq!(out.label(), "applied", "{}", out.body());
    let WebhookOutcome::Applied(a) = &out else {
        unreachable!()
    };
    assert_eq!(a.fetched, ["auditor", "reviewer"]);
    assert!(
        out.body().contains(r#""fetched":["auditor","reviewer"]"#),
        "{}",
        out.body()
    );
    let snap = h.engine().snapshot();
    let audit = Requirement::permission(&snap, "audit:read").unwrap();
    assert!(snap
        .user_principal("org_1", "ann@example.com")
        .satisfies(&audit));
    assert_eq!(h.stats().fetched_roles, 2);
    // A role the source does not know either: retry later.
    let ghost = user_event("updated", "e4", 31, "org_1", "bob", &["ghost"], true);
    assert_eq!(deliver(&h, "m4", &ghost).label(), "retry_later");
}

#[test]
fn a_role_deleted_after_the_event_is_dropped_from_it() {
    let h = handler(&base_policy());
    assert_eq!(
        deliver(&h, "m1", &role_event("created", "e1", 10, "temp", None)).label(),
        "applied"
    );
    assert_eq!(
        deliver(&h, "m3", &role_event("deleted", "e3", 30, "temp", None)).label(),
        "applied"
    );
    // This user event (t=20) was sent while `temp` existed.
    let user = user_event(
        "updated",
        "e2",
        20,
        "org_1",
        "ann",
        &["temp", "viewer"],
        true,
    );
    let out = deliver(&h, "m2", &user);
    assert_eq!(out.label(), "applied", "{}", out.body());
    assert!(
        out.body().contains(r#""dropped":["temp"]"#),
        "{}",
        out.body()
    );
    assert_eq!(roles_of(&h, "org_1", "ann").unwrap(), ["viewer"]);
    // A late create of the deleted role is stale.
    assert_eq!(
        deliver(&h, "m0", &role_event("created", "e0", 5, "temp", None)).label(),
        "stale"
    );
}

// ----------------------------------------------------------- role deletion

#[test]
fn a_deleted_role_without_a_source_detaches_dependents_and_says_so() {
    let h = handler(&base_policy());
    let user = user_event(
        "updated",
        "e1",
        10,
        "org_1",
        "ann",
        &["editor", "viewer"],
        true,
    );
    assert_eq!(deliver(&h, "m1", &user).label(), "applied");
    let out = deliver(
        &h,
        "m2",
        &role_event("deleted", "e2", 20, "editor", Some("viewer")),
    );
    assert_eq!(out.label(), "applied", "{}", out.body());
    let WebhookOutcome::Applied(a) = &out else {
        unreachable!()
    };
    assert_eq!(a.outcome.roles_reparented, ["admin"]);
    assert_eq!(a.outcome.users_affected, ["org_1/ann@example.com"]);
    assert!(!a.resynced);
    let body = out.body();
    assert!(
        body.contains(r#""roles_reparented":["admin"]"#)
            && body.contains(r#""users_affected":["org_1/ann@example.com"]"#),
        "{body}"
    );
    let p = h.engine().policy();
    assert!(p.roles.iter().all(|r| r.name != "editor"));
    assert!(p
        .roles
        .iter()
        .find(|r| r.name == "admin")
        .unwrap()
        .extends
        .is_empty());
    assert_eq!(roles_of(&h, "org_1", "ann").unwrap(), ["viewer"]);
    // Deleting it again (a new event) is recorded and changes nothing more.
    assert_eq!(
        deliver(&h, "m3", &role_event("deleted", "e3", 21, "editor", None)).label(),
        "applied"
    );
}

#[test]
fn a_deleted_role_with_a_source_resyncs_its_dependents() {
    let mut upstream = base_policy();
    upstream.roles.retain(|r| r.name != "editor");
    // Upstream re-parented admin onto viewer and gave it the editor's grant.
    upstream.role("admin").extends = vec!["viewer".into()];
    upstream.role("admin").grant("projects:update");
    let h = handler(&base_policy()).with_source(upstream);
    let out = deliver(
        &h,
        "m1",
        &role_event("deleted", "e1", 20, "editor", Some("viewer")),
    );
    assert_eq!(out.label(), "applied", "{}", out.body());
    let WebhookOutcome::Applied(a) = &out else {
        unreachable!()
    };
    assert!(a.resynced);
    let p = h.engine().policy();
    let admin = p.roles.iter().find(|r| r.name == "admin").unwrap();
    assert_eq!(admin.extends, ["viewer"]);
    assert_eq!(admin.permissions, ["users:write", "projects:update"]);
    assert_eq!(h.stats().resyncs, 1);
}

#[test]
fn a_deleted_organization_takes_its_roles_and_memberships() {
    let mut p = base_policy();
    p.organization("org_1").role("local").grant("projects:read");
    let h = handler(&p);
    let user = user_event("updated", "e1", 10, "org_1", "ann", &["local"], true);
    assert_eq!(deliver(&h, "m1", &user).label(), "applied");
    let gone = event(
        "organization.deleted",
        "e2",
        20,
        Some("org_1"),
        json!({"id": "org_1", "display_name": "Acme"}),
    );
    assert_eq!(deliver(&h, "m2", &gone).label(), "applied");
    assert!(h.engine().policy().organizations.is_empty());
    assert_eq!(roles_of(&h, "org_1", "ann"), None);
    // An older event about that organization, arriving late, is stale.
    let late = user_event("updated", "e0", 15, "org_1", "bob", &["viewer"], true);
    let out = deliver(&h, "m0", &late);
    assert_eq!(out.label(), "stale");
    assert!(out.body().contains("organization:org_1"), "{}", out.body());
}

// ------------------------------------------------------------------ resync

#[test]
fn bootstrap_starts_an_empty_engine_from_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let mut upstream = base_policy();
    upstream
        .organization("org_1")
        .map_group("dirgroup_eng", ["editor"]);
    let live = Live::new(upstream.clone());
    {
        let engine = Engine::open(dir.path(), &Policy::new()).unwrap();
        let h = Handler::new(engine, verifier()).with_source(live.clone());
        assert!(h.bootstrap().unwrap());
        assert_eq!(h.stats().resyncs, 1);
        let mut got = h.engine().policy();
        got.roles.sort_by(|a, b| a.name.cmp(&b.name));
        let mut want = upstream.clone();
        want.roles.sort_by(|a, b| a.name.cmp(&b.name));
        want.permissions.sort_by(|a, b| a.name.cmp(&b.name));
        got.permissions.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(got, want);
        // Role events from before the resync are stale (it holds their effect);
        // user events are not (a resync holds no memberships).
        let old_role = role_event("updated", "e1", 10, "admin", None);
        assert_eq!(deliver(&h, "m1", &old_role).label(), "stale");
        let old_user = user_event("updated", "e2", 10, "org_1", "ann", &["admin"], true);
        assert_eq!(deliver(&h, "m2", &old_user).label(), "applied");
    }
    // A restart recovers the journal instead.
    let engine = Engine::open(dir.path(), &Policy::new()).unwrap();
    let h = Handler::new(engine, verifier()).with_source(live);
    assert!(!h.bootstrap().unwrap());
    assert_eq!(roles_of(&h, "org_1", "ann").unwrap(), ["admin"]);
}

#[test]
fn a_resync_needs_a_source() {
    let h = handler(&base_policy());
    assert!(matches!(h.resync(), Err(WebhookError::NoSource)));
    let h = handler(&base_policy()).with_source(Down);
    assert!(matches!(h.resync(), Err(WebhookError::Source(_))));
}

#[test]
fn organization_roles_come_from_the_envelope() {
    let h = handler(&base_policy());
    let body = event(
        "role.created",
        "e1",
        10,
        Some("org_7"),
        json!({"id": "role_x", "name": "org_admin", "display_name": "Org admin", "extends": "admin"}),
    );
    let out = deliver(&h, "m1", &body);
    assert_eq!(out.label(), "applied", "{}", out.body());
    let snap = h.engine().snapshot();
    let id = snap.role(Some("org_7"), "org_admin").unwrap();
    assert_eq!(snap.role_organization(id), Some("org_7"));
    assert!(snap.role(None, "org_admin").is_none());
}

#[test]
fn the_handler_is_send_and_sync() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<Handler>();
    send_sync::<WebhookOutcome>();
    send_sync::<WebhookError>();
    send_sync::<rolegraph::scalekit::Verifier>();
}
