//! Memberships reachable by a token's `sub`: `user.organization_membership_*`
//! events keyed by the Scalekit user id (`usr_…`), their roles fetched from
//! the source; and the handler never reading the source under its lock (a
//! slow fetch delays only the delivery that needs it).

// Test helpers outside `#[test]` functions may fail loudly too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod webhook_common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rolegraph::scalekit::{Handler, Source, SourceError, WebhookError};
use rolegraph::{Change, ChangeMeta, Engine, Permission, Policy, Requirement, Role};
use serde_json::json;
use webhook_common::*;

fn base_policy() -> Policy {
    let mut p = projects_policy();
    p.set_default_member_role("viewer");
    p
}

/// A Scalekit environment with memberships: the policy, each user's roles
/// per organization, and how often each kind of data was fetched.
#[derive(Default)]
struct Directory {
    policy: Mutex<Policy>,
    members: Mutex<BTreeMap<(String, String), Vec<String>>>,
    user_fetches: AtomicUsize,
    policy_fetches: AtomicUsize,
    /// Run once, after the first policy read returns its state (a change
    /// landing while the resync was reading).
    after_first_read: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl Directory {
    fn new(policy: Policy) -> Arc<Self> {
        Arc::new(Self {
            policy: Mutex::new(policy),
            ..Self::default()
        })
    }

    fn set(&self, org: &str, user: &str, roles: &[&str]) {
        self.members.lock().unwrap().insert(
            (org.into(), user.into()),
            roles.iter().map(|r| r.to_string()).collect(),
        );
    }

    fn remove(&self, org: &str, user: &str) {
        self.members
            .lock()
            .unwrap()
            .remove(&(org.into(), user.into()));
    }
}

impl Source for Directory {
    fn fetch_role_permissions(
        &self,
        org: Option<&str>,
        name: &str,
    ) -> Result<Vec<Permission>, SourceError> {
        self.policy
            .lock()
            .unwrap()
            .fetch_role_permissions(org, name)
    }
    fn fetch_role(&self, org: Option<&str>, name: &str) -> Result<Option<Role>, SourceError> {
        Source::fetch_role(&*self.policy.lock().unwrap(), org, name)
    }
    fn fetch_policy(&self) -> Result<Policy, SourceError> {
        self.policy_fetches.fetch_add(1, Ordering::SeqCst);
        let state = self.policy.lock().unwrap().clone();
        if let Some(then) = self.after_first_read.lock().unwrap().take() {
            then();
        }
        Ok(state)
    }
    fn fetch_user_roles(&self, org: &str, user: &str) -> Result<Option<Vec<String>>, SourceError> {
        self.user_fetches.fetch_add(1, Ordering::SeqCst);
        Ok(self
            .members
            .lock()
            .unwrap()
            .get(&(org.to_owned(), user.to_owned()))
            .cloned())
    }
}

/// `user.organization_membership_{kind}` in Scalekit's shape (no roles).
fn membership_event(kind: &str, evt: &str, t: u32, org: &str, usr: &str, email: &str) -> Vec<u8> {
    event(
        &format!("user.organization_membership_{kind}"),
        evt,
        t,
        Some(org),
        json!({
            "organization": {"id": org, "display_name": "Acme", "external_id": null},
            "user": {"id": usr, "email": email, "external_id": null},
        }),
    )
}

fn roles(h: &Handler, org: &str, user: &str) -> Option<Vec<String>> {
    membership_roles(h, org, user)
}

fn may(h: &Handler, org: &str, user: &str, permission: &str) -> bool {
    let snap = h.engine().snapshot();
    let need = Requirement::permission(&snap, permission).unwrap();
    snap.user_principal(org, user).satisfies(&need)
}

#[test]
fn membership_events_key_by_the_scalekit_user_id_with_fetched_roles() {
    let dir = Directory::new(base_policy());
    dir.set("org_1", "usr_1", &["editor"]);
    let h = Handler::new(Engine::new(&base_policy()).unwrap(), verifier())
        .with_source(Arc::clone(&dir));

    let created = membership_event("created", "e1", 10, "org_1", "usr_1", "Ann@Example.com");
    let out = deliver(&h, "m1", &created);
    assert_eq!(label(&out), ("applied", 200), "{}", out.body());
    assert_eq!(roles(&h, "org_1", "usr_1").unwrap(), ["editor"]);
    // Reachable by the token's `sub`, and not under the email.
    assert!(may(&h, "org_1", "usr_1", "projects:update"));
    assert!(!may(&h, "org_1", "usr_1", "users:write"));
    assert_eq!(roles(&h, "org_1", "ann@example.com"), None);

    // Scalekit changes the roles; the update event fetches the new ones.
    dir.set("org_1", "usr_1", &["viewer"]);
    let updated = membership_event("updated", "e2", 20, "org_1", "usr_1", "Ann@Example.com");
    assert_eq!(deliver(&h, "m2", &updated).label(), "applied");
    assert_eq!(roles(&h, "org_1", "usr_1").unwrap(), ["viewer"]);
    assert!(!may(&h, "org_1", "usr_1", "projects:update"));
    assert_eq!(dir.user_fetches.load(Ordering::SeqCst), 2);

    // An older event about the same membership is stale, without a fetch.
    dir.set("org_1", "usr_1", &["admin"]);
    let late = membership_event("updated", "e0", 15, "org_1", "usr_1", "Ann@Example.com");
    assert_eq!(deliver(&h, "m0", &late).label(), "stale");
    assert_eq!(dir.user_fetches.load(Ordering::SeqCst), 2);
    assert_eq!(roles(&h, "org_1", "usr_1").unwrap(), ["viewer"]);

    // A redelivery is a duplicate, also without a fetch.
    assert_eq!(deliver(&h, "m2", &updated).label(), "duplicate");
    assert_eq!(dir.user_fetches.load(Ordering::SeqCst), 2);

    // Deleted: the membership goes, and so does the one directory events
    // keyed by the same user's email.
    let ann = user_event("updated", "e3", 25, "org_1", "ann", &["admin"], true);
    assert_eq!(deliver(&h, "m3", &ann).label(), "applied");
    assert_eq!(roles(&h, "org_1", "ann@example.com").unwrap(), ["admin"]);
    let deleted = membership_event("deleted", "e4", 30, "org_1", "usr_1", "Ann@Example.com");
    let out = deliver(&h, "m4", &deleted);
    assert_eq!(out.label(), "applied", "{}", out.body());
    assert_eq!(roles(&h, "org_1", "usr_1"), None);
    assert_eq!(roles(&h, "org_1", "ann@example.com"), None);
    assert!(!may(&h, "org_1", "usr_1", "projects:read"));
    // A late `_created` after the deletion is stale.
    let again = membership_event("created", "e5", 12, "org_1", "usr_1", "Ann@Example.com");
    assert_eq!(deliver(&h, "m5", &again).label(), "stale");
    assert_eq!(roles(&h, "org_1", "usr_1"), None);
}

#[test]
fn a_membership_the_source_no_longer_knows_is_removed() {
    let dir = Directory::new(base_policy());
    dir.set("org_1", "usr_2", &["admin"]);
    let h = Handler::new(Engine::new(&base_policy()).unwrap(), verifier())
        .with_source(Arc::clone(&dir));
    let created = membership_event("created", "e1", 10, "org_1", "usr_2", "bo@example.com");
    assert_eq!(deliver(&h, "m1", &created).label(), "applied");
    assert_eq!(roles(&h, "org_1", "usr_2").unwrap(), ["admin"]);
    // The user was removed in Scalekit before this (older) update was
    // processed: the source's answer is the truth now.
    dir.remove("org_1", "usr_2");
    let updated = membership_event("updated", "e2", 20, "org_1", "usr_2", "bo@example.com");
    assert_eq!(deliver(&h, "m2", &updated).label(), "applied");
    assert_eq!(roles(&h, "org_1", "usr_2"), None);
}

#[test]
fn payload_roles_need_no_source_and_no_source_means_retry() {
    let h = Handler::new(Engine::new(&base_policy()).unwrap(), verifier());
    let with_roles = event(
        "user.organization_membership_created",
        "e1",
        10,
        Some("org_1"),
        json!({"user": {"id": "usr_3", "email": "cy@example.com"},
               "roles": [{"name": "admin"}]}),
    );
    let out = deliver(&h, "m1", &with_roles);
    assert_eq!(out.label(), "applied", "{}", out.body());
    assert_eq!(roles(&h, "org_1", "usr_3").unwrap(), ["admin"]);

    let without = membership_event("updated", "e2", 20, "org_1", "usr_3", "cy@example.com");
    let out = deliver(&h, "m2", &without);
    assert_eq!(label(&out), ("retry_later", 503), "{}", out.body());
    assert_eq!(roles(&h, "org_1", "usr_3").unwrap(), ["admin"]);

    // A source that cannot fetch a user's roles (a fixed policy): retry too.
    let h =
        Handler::new(Engine::new(&base_policy()).unwrap(), verifier()).with_source(base_policy());
    let out = deliver(&h, "m2", &without);
    assert_eq!(label(&out), ("retry_later", 503), "{}", out.body());
    assert!(out.body().contains("cannot fetch"), "{}", out.body());
    assert_eq!(roles(&h, "org_1", "usr_3"), None);
}

#[test]
fn fetched_roles_missing_locally_are_fetched_too() {
    // Scalekit knows a role this engine has not heard of yet.
    let mut upstream = base_policy();
    upstream.permission("billing:read");
    upstream.role("billing").grant("billing:read");
    let dir = Directory::new(upstream);
    dir.set("org_1", "usr_4", &["billing", "viewer"]);
    let h = Handler::new(Engine::new(&base_policy()).unwrap(), verifier())
        .with_source(Arc::clone(&dir));
    let created = membership_event("created", "e1", 10, "org_1", "usr_4", "di@example.com");
    let out = deliver(&h, "m1", &created);
    assert_eq!(out.label(), "applied", "{}", out.body());
    assert!(out.body().contains("billing"), "{}", out.body());
    assert_eq!(roles(&h, "org_1", "usr_4").unwrap(), ["billing", "viewer"]);
    assert!(may(&h, "org_1", "usr_4", "billing:read"));
}

/// A source whose role-permission fetch waits until the test releases it.
struct Slow {
    entered: Mutex<mpsc::Sender<()>>,
    release: Mutex<mpsc::Receiver<()>>,
    policy: Policy,
}

impl Source for Slow {
    fn fetch_role_permissions(
        &self,
        org: Option<&str>,
        name: &str,
    ) -> Result<Vec<Permission>, SourceError> {
        self.entered.lock().unwrap().send(()).unwrap();
        let _ = self
            .release
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(5));
        self.policy.fetch_role_permissions(org, name)
    }
    fn fetch_role(&self, org: Option<&str>, name: &str) -> Result<Option<Role>, SourceError> {
        Source::fetch_role(&self.policy, org, name)
    }
    fn fetch_policy(&self) -> Result<Policy, SourceError> {
        Ok(self.policy.clone())
    }
}

#[test]
fn a_slow_source_fetch_does_not_block_an_unrelated_delivery() {
    let mut upstream = base_policy();
    upstream.role("auditor").grant("projects:read");
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel();
    let slow = Slow {
        entered: Mutex::new(entered_tx),
        release: Mutex::new(release_rx),
        policy: upstream,
    };
    let h =
        Arc::new(Handler::new(Engine::new(&base_policy()).unwrap(), verifier()).with_source(slow));
    // A role event whose permissions are fetched: the fetch hangs.
    let h1 = Arc::clone(&h);
    let role = std::thread::spawn(move || {
        let body = role_event("created", "e1", 10, "auditor", None);
        deliver(&h1, "m1", &body)
    });
    entered_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    // Meanwhile a directory user event, which needs nothing from the source.
    let h2 = Arc::clone(&h);
    let (done_tx, done_rx) = mpsc::channel();
    let started = Instant::now();
    std::thread::spawn(move || {
        let body = user_event("updated", "e2", 11, "org_1", "ann", &["editor"], true);
        done_tx.send(deliver(&h2, "m2", &body)).unwrap();
    });
    let user = done_rx.recv_timeout(Duration::from_secs(2));
    let waited = started.elapsed();
    release_tx.send(()).unwrap();
    let user = user.expect("the user delivery waited for the role fetch");
    assert_eq!(user.label(), "applied", "{}", user.body());
    assert!(waited < Duration::from_secs(2), "{waited:?}");
    assert_eq!(roles_of(&h, "org_1", "ann").unwrap(), ["editor"]);
    // The role event still lands, with the fetched grant.
    let out = role.join().unwrap();
    assert_eq!(out.label(), "applied", "{}", out.body());
    let auditor = h
        .engine()
        .policy()
        .roles
        .into_iter()
        .find(|r| r.name == "auditor")
        .unwrap();
    assert_eq!(auditor.permissions, ["projects:read"]);
}

#[test]
fn a_resync_does_not_undo_a_change_that_landed_while_it_read() {
    let dir = Directory::new(base_policy());
    let engine = Engine::new(&base_policy()).unwrap();
    let h = Handler::new(engine.clone(), verifier()).with_source(Arc::clone(&dir));
    // While the first read is on its way back, Scalekit gains a role and
    // the engine hears of it (as a delivery would apply it).
    let (dir2, engine2) = (Arc::clone(&dir), engine.clone());
    *dir.after_first_read.lock().unwrap() = Some(Box::new(move || {
        let mut role = Role::named("support");
        role.grant("projects:read");
        dir2.policy.lock().unwrap().roles.push(role.clone());
        engine2
            .apply(
                Change::CreateRole {
                    organization: None,
                    role,
                },
                ChangeMeta::by("test"),
            )
            .unwrap();
    }));
    h.resync().unwrap();
    // The first read missed the role; it was read again rather than applied.
    assert_eq!(dir.policy_fetches.load(Ordering::SeqCst), 2);
    assert!(engine.snapshot().role(None, "support").is_some());
}

#[test]
fn a_resync_gives_up_when_the_policy_never_holds_still() {
    let engine = Engine::new(&base_policy()).unwrap();
    // Every read is followed by a local change the source never has.
    struct Churn {
        engine: Engine,
        reads: AtomicUsize,
    }
    impl Source for Churn {
        fn fetch_role_permissions(
            &self,
            _: Option<&str>,
            _: &str,
        ) -> Result<Vec<Permission>, SourceError> {
            Ok(Vec::new())
        }
        fn fetch_role(&self, _: Option<&str>, _: &str) -> Result<Option<Role>, SourceError> {
            Ok(None)
        }
        fn fetch_policy(&self) -> Result<Policy, SourceError> {
            let n = self.reads.fetch_add(1, Ordering::SeqCst);
            let mut role = Role::named(format!("churn_{n}"));
            role.grant("projects:read");
            self.engine
                .apply(
                    Change::CreateRole {
                        organization: None,
                        role,
                    },
                    ChangeMeta::by("test"),
                )
                .unwrap();
            Ok(base_policy())
        }
    }
    let h = Handler::new(engine.clone(), verifier()).with_source(Churn {
        engine: engine.clone(),
        reads: AtomicUsize::new(0),
    });
    let err = h.resync().unwrap_err();
    assert!(
        matches!(err, WebhookError::Contended { attempts: 4 }),
        "{err}"
    );
    // Nothing was undone.
    assert!(engine.snapshot().role(None, "churn_3").is_some());
}

#[test]
fn a_role_deletion_resync_does_not_undo_what_landed_while_the_source_was_read() {
    // Locally: `writer` (description v1) extends `reader`.
    let mut local = Policy::new();
    local.permission("docs:read");
    local.role("reader").grant("docs:read");
    local.role("writer").extends("reader").description("v1");
    // Scalekit: `reader` deleted (`writer` detached), `writer` at v2.
    let mut upstream = Policy::new();
    upstream.permission("docs:read");
    upstream.role("writer").description("v2");
    let dir = Directory::new(upstream);
    let engine = Engine::new(&local).unwrap();
    let h = Handler::new(engine.clone(), verifier()).with_source(Arc::clone(&dir));
    // Right after the first read, Scalekit moves `writer` to v3 and that
    // event is applied here before the deletion's batch.
    let (dir2, engine2) = (Arc::clone(&dir), engine.clone());
    *dir.after_first_read.lock().unwrap() = Some(Box::new(move || {
        let mut p = dir2.policy.lock().unwrap();
        p.roles
            .iter_mut()
            .find(|r| r.name == "writer")
            .unwrap()
            .description = Some("v3".into());
        engine2
            .apply(
                Change::UpdateRole {
                    organization: None,
                    name: "writer".into(),
                    display_name: None,
                    description: Some("v3".into()),
                    permissions: None,
                    extends: None,
                },
                ChangeMeta::by("test"),
            )
            .unwrap();
    }));
    let deleted = role_event("deleted", "e1", 10, "reader", None);
    let out = deliver(&h, "m1", &deleted);
    assert_eq!(out.label(), "applied", "{}", out.body());
    assert!(out.body().contains("\"resynced\":true"), "{}", out.body());
    // The state read before v3 landed was not applied over it.
    assert_eq!(dir.policy_fetches.load(Ordering::SeqCst), 2);
    let writer = engine
        .policy()
        .roles
        .into_iter()
        .find(|r| r.name == "writer")
        .unwrap();
    assert_eq!(writer.description.as_deref(), Some("v3"));
    assert!(writer.extends.is_empty());
    assert!(engine.snapshot().role(None, "reader").is_none());
}
