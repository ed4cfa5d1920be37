//! The durable engine: what survives a reopen, how recovery uses the last
//! checkpoint and the journal after it, what a torn or corrupt journal does,
//! the audit history, the change feed, the counters, and guarded assignment.

#![expect(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    reason = "helpers outside #[test] functions may fail the test"
)]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use rolegraph::{
    AssignmentGuard, Change, ChangeError, ChangeMeta, Corruption, Engine, EngineOptions,
    EntityClock, Existing, Feed, JournalError, OpenError, Policy, Recovery, Requirement, Role,
    Snapshot,
};
use tempfile::TempDir;

/// The journal's file names (see `src/journal.rs`, "Files").
const LOG: &str = "journal.log";
const CHECKPOINT: &str = "checkpoint";
/// `journal.log` starts with a 12-byte file header; each record has a
/// 20-byte header whose first four bytes are the payload length.
const LOG_HEADER: usize = 12;
const RECORD_HEADER: usize = 20;

fn policy() -> Policy {
    let mut p = Policy::new();
    p.permission("docs:read")
        .permission("docs:write")
        .permission("docs:delete")
        .permission("users.write")
        .permission("roles.assign");
    p.role("viewer").grant("docs:read");
    p.role("editor").extends("viewer").grant("docs:write");
    p.role("admin").extends("editor").grant("docs:delete");
    p.role("owner").extends("admin");
    p.role("hr").grant("users.write");
    p.role("member").grant("docs:read");
    p.organization("org_1").role("lead").extends("editor");
    p.organization("org_2").role("auditor").grant("docs:read");
    p
}

/// A different policy: what `open` must ignore once the directory has state.
fn other_policy() -> Policy {
    let mut p = Policy::new();
    p.permission("x:y");
    p.role("stranger").grant("x:y");
    p
}

fn options(checkpoint_every: u64) -> EngineOptions {
    let mut o = EngineOptions::default();
    o.checkpoint_every = checkpoint_every;
    o
}

fn set_member(org: &str, user: &str, roles: &[&str]) -> Change {
    Change::SetMembership {
        organization: org.into(),
        user: user.into(),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        groups: None,
        creator: false,
    }
}

fn grant(role: &str, permission: &str) -> Change {
    Change::GrantPermission {
        organization: None,
        role: role.into(),
        permission: permission.into(),
    }
}

fn create_role(name: &str, extends: &[&str], grants: &[&str]) -> Change {
    let mut role = Role::named(name);
    for b in extends {
        role.extends(*b);
    }
    for g in grants {
        role.grant(*g);
    }
    Change::CreateRole {
        organization: None,
        role,
    }
}

/// Everything the engine answers, by name: effective permissions of every
/// role and every membership of the users `users`.
fn answers(engine: &Engine, users: &[&str]) -> Vec<String> {
    let s = engine.snapshot();
    let mut out = vec![
        format!("revision {}", s.revision()),
        format!("permissions {:?}", s.permissions().collect::<Vec<_>>()),
    ];
    let mut roles: Vec<String> = s
        .roles()
        .map(|r| {
            let org = s.role_organization(r);
            let eff: BTreeSet<String> = s
                .effective_permissions(org, s.role_name(r))
                .unwrap()
                .into_iter()
                .map(|e| e.name)
                .collect();
            format!("role {org:?}/{} {eff:?}", s.role_name(r))
        })
        .collect();
    roles.sort();
    out.extend(roles);
    for org in ["org_1", "org_2", "org_9"] {
        for user in users {
            out.push(format!(
                "member {org}/{user} {:?} {:?}",
                s.membership(org, user),
                user_permissions(&s, org, user)
            ));
        }
    }
    out
}

fn user_permissions(s: &Snapshot, org: &str, user: &str) -> Vec<String> {
    s.user_principal(org, user)
        .permissions()
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// The byte range of every record in a journal file.
fn record_spans(log: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut spans = Vec::new();
    let mut at = LOG_HEADER;
    while at < log.len() {
        let len = u32::from_le_bytes(log[at..at + 4].try_into().unwrap()) as usize;
        let end = at + RECORD_HEADER + len;
        spans.push(at..end);
        at = end;
    }
    assert_eq!(at, log.len(), "the log ends on a record boundary");
    spans
}

/// Waits for the engine's background checkpoint, if one is in flight.
fn settle(engine: &Engine) {
    let start = std::time::Instant::now();
    while engine.stats().checkpoint_in_progress {
        assert!(
            start.elapsed().as_secs() < 60,
            "a checkpoint never finished"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// The revision the checkpoint file holds (bytes 12..20 of its header).
fn checkpoint_revision(dir: &Path) -> u64 {
    let bytes = fs::read(dir.join(CHECKPOINT)).unwrap();
    assert_eq!(&bytes[..8], b"RGRAPHCP");
    u64::from_le_bytes(bytes[12..20].try_into().unwrap())
}

/// The live log segment: the one with the highest base revision
/// (`journal-<base>.log`), or `journal.log` before the first checkpoint.
fn log_path(tmp: &TempDir) -> PathBuf {
    segments(tmp.path())
        .pop()
        .map_or_else(|| tmp.path().join(LOG), |(_, path)| path)
}

/// Every log segment in `dir` with its base revision, oldest first.
fn segments(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut found: Vec<(u64, PathBuf)> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?.to_owned();
            if name == LOG {
                return Some((0, path));
            }
            let base = name.strip_prefix("journal-")?.strip_suffix(".log")?;
            Some((base.parse().ok()?, path))
        })
        .collect();
    found.sort();
    found
}

/// Five accepted changes, one revision each: membership `u1` … `u5` in
/// `org_1`, each by `admin@x` at a fixed time, each after any checkpoint in
/// flight finished (so a checkpoint's new segment starts at its revision).
fn five_members(engine: &Engine) {
    for k in 1..=5u64 {
        let out = engine
            .apply(
                set_member("org_1", &format!("u{k}"), &["viewer"]),
                ChangeMeta::by("admin@x").at(1_000 * k),
            )
            .unwrap();
        assert_eq!(out.revision, k);
        settle(engine);
    }
}

const USERS: [&str; 8] = ["u1", "u2", "u3", "u4", "u5", "u6", "ada", "bob"];

#[test]
fn reopen_restores_policy_revision_memberships_and_deliveries() {
    let tmp = TempDir::new().unwrap();
    let engine = Engine::open(tmp.path(), &policy()).unwrap();
    assert_eq!(engine.revision(), 0);
    engine
        .apply(grant("viewer", "docs:write"), ChangeMeta::by("alice"))
        .unwrap();
    engine
        .apply_batch(
            vec![
                Change::CreatePermission {
                    name: "billing:read".into(),
                    description: Some("See invoices".into()),
                },
                create_role("billing", &["viewer"], &["billing:read"]),
                set_member("org_1", "ada", &["billing", "lead"]),
            ],
            ChangeMeta::by("alice"),
        )
        .unwrap();
    engine
        .apply_batch(
            vec![
                Change::RecordDelivery {
                    id: "msg_1".into(),
                    received_ms: 5_000,
                    entities: vec![EntityClock {
                        entity: "user:org_2/bob".into(),
                        occurred_at_ns: 77,
                    }],
                    retention_ms: 60_000,
                },
                set_member("org_2", "bob", &["auditor"]),
            ],
            ChangeMeta::by("webhook:evt_1"),
        )
        .unwrap();
    engine
        .apply(
            Change::DeletePermission {
                name: "docs:delete".into(),
            },
            ChangeMeta::by("alice"),
        )
        .unwrap();
    assert_eq!(engine.revision(), 4);
    let before = answers(&engine, &USERS);
    let policy_before = engine.policy();
    drop(engine);

    // The initial policy only seeds an empty directory.
    let engine = Engine::open(tmp.path(), &other_policy()).unwrap();
    assert_eq!(engine.revision(), 4);
    assert_eq!(engine.stats().revision, 4);
    assert_eq!(engine.policy(), policy_before);
    assert_eq!(answers(&engine, &USERS), before);
    let s = engine.snapshot();
    assert!(s.role(None, "stranger").is_none());
    assert_eq!(
        s.membership("org_1", "ada").unwrap().roles,
        ["billing", "lead"]
    );
    assert_eq!(s.memberships_len(), 2);
    assert!(user_permissions(&s, "org_1", "ada").contains(&"billing:read".to_owned()));
    assert!(s.permission_id("docs:delete").is_none());
    // Delivery records survive: a redelivery is refused, a stale event too.
    assert!(engine.delivered("msg_1"));
    assert_eq!(engine.deliveries_len(), 1);
    assert_eq!(engine.entity_clock("user:org_2/bob"), Some(77));
    let redelivery = engine.apply_batch(
        vec![
            Change::RecordDelivery {
                id: "msg_1".into(),
                received_ms: 6_000,
                entities: vec![],
                retention_ms: 60_000,
            },
            set_member("org_2", "bob", &[]),
        ],
        ChangeMeta::default(),
    );
    assert!(
        matches!(redelivery, Err(ChangeError::Duplicate { ref id }) if id == "msg_1"),
        "{redelivery:?}"
    );
    let stale = engine.apply_batch(
        vec![
            Change::RecordDelivery {
                id: "msg_0".into(),
                received_ms: 6_000,
                entities: vec![EntityClock {
                    entity: "user:org_2/bob".into(),
                    occurred_at_ns: 10,
                }],
                retention_ms: 60_000,
            },
            Change::RemoveMembership {
                organization: "org_2".into(),
                user: "bob".into(),
            },
        ],
        ChangeMeta::default(),
    );
    assert!(matches!(stale, Err(ChangeError::Stale { .. })), "{stale:?}");
    assert_eq!(engine.revision(), 4);

    // The reopened engine keeps going from where it was.
    let out = engine
        .apply(
            set_member("org_2", "u6", &["member"]),
            ChangeMeta::by("alice"),
        )
        .unwrap();
    assert_eq!(out.revision, 5);
    let after = answers(&engine, &USERS);
    drop(engine);
    let engine = Engine::open(tmp.path(), &policy()).unwrap();
    assert_eq!(answers(&engine, &USERS), after);
    assert_eq!(engine.entries_since(0).unwrap().len(), 5);
}

#[test]
fn an_empty_directory_starts_from_the_initial_policy_which_must_be_valid() {
    let tmp = TempDir::new().unwrap();
    let mut bad = Policy::new();
    bad.role("a").extends("b");
    let err = Engine::open(tmp.path().join("state"), &bad).unwrap_err();
    assert!(matches!(err, OpenError::Invalid(_)), "{err}");
    assert!(err.to_string().contains("`b`"), "{err}");

    let engine = Engine::open(tmp.path().join("state"), &policy()).unwrap();
    assert_eq!(engine.revision(), 0);
    assert_eq!(engine.policy(), Engine::new(&policy()).unwrap().policy());
    assert!(tmp.path().join("state").join(LOG).is_file());
    assert_eq!(checkpoint_revision(&tmp.path().join("state")), 0);
}

#[test]
fn an_existing_directory_validates_initial_and_reconciles_on_request() {
    let tmp = TempDir::new().unwrap();
    let engine = Engine::open(tmp.path(), &policy()).unwrap();
    engine
        .apply(
            set_member("org_1", "ada", &["admin", "viewer"]),
            ChangeMeta::by("a"),
        )
        .unwrap();
    engine
        .apply(grant("member", "docs:write"), ChangeMeta::by("a"))
        .unwrap();
    drop(engine);

    // An invalid initial policy is refused even though the journal wins.
    let mut bad = policy();
    bad.role("viewer").extends("owner");
    let err = Engine::open(tmp.path(), &bad).unwrap_err();
    assert!(matches!(err, OpenError::Invalid(_)), "{err}");

    // The file in git changed: a role is gone, one is new, a grant moved.
    let mut edited = policy();
    edited.roles.retain(|r| r.name != "admin");
    edited.role("owner").extends.retain(|b| b != "admin");
    edited.role("owner").extends("editor").grant("docs:delete");
    edited.permission("docs:share");
    edited.role("sharer").extends("viewer").grant("docs:share");
    // Default: the journal's policy, untouched.
    let engine = Engine::open(tmp.path(), &edited).unwrap();
    assert_eq!(engine.revision(), 2);
    assert!(engine.snapshot().role(None, "admin").is_some());
    drop(engine);

    let reconcile = EngineOptions::default().with_on_existing(Existing::Reconcile);
    let (engine, recovery) = Engine::recover(tmp.path(), &edited, reconcile).unwrap();
    assert_eq!(recovery.reconciled, Some(3));
    assert_eq!(recovery.revision, 3);
    assert_eq!(engine.revision(), 3);
    assert_eq!(engine.policy(), Engine::new(&edited).unwrap().policy());
    // One audited batch; memberships are kept, minus the deleted role.
    let batch = engine.entries_since(2).unwrap();
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].actor.as_deref(), Some("rolegraph-reconcile"));
    assert_eq!(
        engine.snapshot().membership("org_1", "ada").unwrap().roles,
        ["viewer"]
    );
    assert_eq!(engine.user_role_history("org_1", "ada").unwrap().len(), 2);
    drop(engine);

    // Nothing left to reconcile: nothing applied.
    let (engine, recovery) = Engine::recover(tmp.path(), &edited, reconcile).unwrap();
    assert_eq!((recovery.reconciled, engine.revision()), (None, 3));
}

#[test]
fn one_engine_per_directory_at_a_time() {
    let tmp = TempDir::new().unwrap();
    let engine = Engine::open(tmp.path(), &policy()).unwrap();
    let clone = engine.clone();
    let err = Engine::open(tmp.path(), &policy()).unwrap_err();
    assert!(
        matches!(err, OpenError::Journal(JournalError::Locked { .. })),
        "{err}"
    );
    assert!(
        err.to_string()
            .ends_with("is in use by another open journal"),
        "{err}"
    );
    drop(engine);
    // A clone keeps the directory open.
    assert!(Engine::open(tmp.path(), &policy()).is_err());
    drop(clone);
    Engine::open(tmp.path(), &policy()).unwrap();
}

#[test]
fn recovery_replays_only_the_journal_after_the_last_checkpoint() {
    let tmp = TempDir::new().unwrap();
    let engine = Engine::open_with(tmp.path(), &policy(), options(3)).unwrap();
    settle(&engine);
    assert_eq!(checkpoint_revision(tmp.path()), 0);
    // Revision 2 records a delivery: replaying it a second time on top of a
    // checkpoint that already has it would be refused as a duplicate, so a
    // recovery that replayed records the checkpoint covers fails to open.
    engine
        .apply(grant("member", "docs:write"), ChangeMeta::by("a"))
        .unwrap();
    engine
        .apply_batch(
            vec![
                Change::RecordDelivery {
                    id: "msg_2".into(),
                    received_ms: 1,
                    entities: vec![],
                    retention_ms: u64::MAX,
                },
                set_member("org_1", "u2", &["member"]),
            ],
            ChangeMeta::by("webhook"),
        )
        .unwrap();
    settle(&engine);
    assert_eq!(checkpoint_revision(tmp.path()), 0);
    engine
        .apply(set_member("org_1", "u3", &["editor"]), ChangeMeta::by("a"))
        .unwrap();
    settle(&engine);
    assert_eq!(checkpoint_revision(tmp.path()), 3, "a checkpoint every 3");
    for k in 4..=8 {
        let mut batch = vec![set_member("org_1", &format!("u{k}"), &["viewer"])];
        if k == 6 {
            // The checkpoint's own revision: not to be replayed either.
            batch.insert(
                0,
                Change::RecordDelivery {
                    id: "msg_6".into(),
                    received_ms: 2,
                    entities: vec![],
                    retention_ms: u64::MAX,
                },
            );
        }
        engine.apply_batch(batch, ChangeMeta::by("a")).unwrap();
    }
    settle(&engine);
    assert_eq!(checkpoint_revision(tmp.path()), 6);
    let users = ["u2", "u3", "u4", "u5", "u6", "u7", "u8"];
    let before = answers(&engine, &users);
    let history = engine.entries_since(0).unwrap();
    drop(engine);

    let engine = Engine::open_with(tmp.path(), &other_policy(), options(3)).unwrap();
    assert_eq!(engine.revision(), 8, "checkpoint 6 plus records 7 and 8");
    assert_eq!(answers(&engine, &users), before);
    assert!(engine.delivered("msg_2") && engine.delivered("msg_6"));
    // The log keeps every record, before the checkpoint too: it is the audit log.
    assert_eq!(engine.entries_since(0).unwrap(), history);
    assert_eq!(
        engine
            .entries_since(0)
            .unwrap()
            .iter()
            .map(|e| e.revision)
            .collect::<Vec<_>>(),
        (1..=8).collect::<Vec<_>>()
    );

    // The counter restarts after a reopen: three more changes, a checkpoint.
    for k in 9..=11 {
        engine
            .apply(
                set_member("org_1", &format!("u{k}"), &["viewer"]),
                ChangeMeta::by("a"),
            )
            .unwrap();
    }
    settle(&engine);
    assert_eq!(checkpoint_revision(tmp.path()), 11);
    // An explicit checkpoint, then a change after it.
    engine
        .apply(set_member("org_1", "u12", &["viewer"]), ChangeMeta::by("a"))
        .unwrap();
    engine.checkpoint().unwrap();
    settle(&engine);
    assert_eq!(checkpoint_revision(tmp.path()), 12);
    engine
        .apply(set_member("org_1", "u13", &["viewer"]), ChangeMeta::by("a"))
        .unwrap();
    drop(engine);
    let engine = Engine::open_with(tmp.path(), &policy(), options(0)).unwrap();
    assert_eq!(engine.revision(), 13);
    assert_eq!(
        engine.snapshot().membership("org_1", "u13").unwrap().roles,
        ["viewer"]
    );
    assert_eq!(engine.entries_since(0).unwrap().len(), 13);
    // `checkpoint_every: 0` never checkpoints by itself.
    for k in 14..=20 {
        engine
            .apply(
                set_member("org_1", &format!("u{k}"), &["viewer"]),
                ChangeMeta::by("a"),
            )
            .unwrap();
    }
    settle(&engine);
    assert_eq!(checkpoint_revision(tmp.path()), 12);
}

#[test]
fn a_torn_tail_is_cut_and_the_engine_opens_with_the_earlier_records() {
    let tmp = TempDir::new().unwrap();
    let engine = Engine::open(tmp.path(), &policy()).unwrap();
    five_members(&engine);
    drop(engine);
    let log = fs::read(log_path(&tmp)).unwrap();
    let spans = record_spans(&log);
    assert_eq!(spans.len(), 5);

    // The last record loses its final 3 bytes.
    fs::write(log_path(&tmp), &log[..log.len() - 3]).unwrap();
    let engine = Engine::open(tmp.path(), &policy()).unwrap();
    assert_eq!(engine.revision(), 4);
    let s = engine.snapshot();
    assert!(s.membership("org_1", "u4").is_some());
    assert!(
        s.membership("org_1", "u5").is_none(),
        "nothing of the torn record"
    );
    assert_eq!(engine.entries_since(0).unwrap().len(), 4);
    assert_eq!(
        fs::metadata(log_path(&tmp)).unwrap().len(),
        spans[3].end as u64,
        "the file is cut back to the last whole record"
    );
    // Revision 5 is free again, and a new change takes it.
    let out = engine
        .apply(set_member("org_1", "u9", &["editor"]), ChangeMeta::by("b"))
        .unwrap();
    assert_eq!(out.revision, 5);
    drop(engine);
    let engine = Engine::open(tmp.path(), &policy()).unwrap();
    assert_eq!(engine.revision(), 5);
    let s = engine.snapshot();
    assert!(s.membership("org_1", "u5").is_none());
    assert_eq!(s.membership("org_1", "u9").unwrap().roles, ["editor"]);
    drop(engine);

    // Torn inside the record header, and a tail of zeros (a write that
    // landed as a hole): both are cut.
    let log = fs::read(log_path(&tmp)).unwrap();
    let spans = record_spans(&log);
    let last = spans.last().unwrap().clone();
    fs::write(log_path(&tmp), &log[..last.start + 7]).unwrap();
    let engine = Engine::open(tmp.path(), &policy()).unwrap();
    assert_eq!(engine.revision(), 4);
    drop(engine);
    let mut zeros = fs::read(log_path(&tmp)).unwrap();
    let whole = zeros.len() as u64;
    zeros.extend_from_slice(&[0; 64]);
    fs::write(log_path(&tmp), &zeros).unwrap();
    let engine = Engine::open(tmp.path(), &policy()).unwrap();
    assert_eq!(engine.revision(), 4);
    assert_eq!(fs::metadata(log_path(&tmp)).unwrap().len(), whole);
}

#[test]
fn recovery_reports_what_it_dropped_and_a_required_revision_is_enforced() {
    let tmp = TempDir::new().unwrap();
    let (engine, fresh) = Engine::recover(tmp.path(), &policy(), options(3)).unwrap();
    assert!(fresh.fresh && fresh.is_clean());
    assert_eq!((fresh.revision, fresh.checkpoint_revision), (0, None));
    assert_eq!(engine.recovery(), Some(&fresh));
    five_members(&engine);
    settle(&engine);
    drop(engine);

    // A clean reopen: checkpoint 3, records 4 and 5 replayed.
    let (engine, clean) = Engine::recover(tmp.path(), &policy(), options(3)).unwrap();
    let mut expected = Recovery::default();
    expected.revision = 5;
    expected.checkpoint_revision = Some(3);
    expected.records_replayed = 2;
    assert_eq!(clean, expected);
    drop(engine);

    // The last record loses its final 3 bytes: recovery says so.
    let log = fs::read(log_path(&tmp)).unwrap();
    let last = record_spans(&log).pop().unwrap();
    fs::write(log_path(&tmp), &log[..log.len() - 3]).unwrap();
    let backup = tmp.path().join("backup");
    fs::create_dir(&backup).unwrap();
    for entry in fs::read_dir(tmp.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            fs::copy(&path, backup.join(path.file_name().unwrap())).unwrap();
        }
    }
    let (engine, torn) = Engine::recover(tmp.path(), &policy(), options(3)).unwrap();
    expected.revision = 4;
    expected.records_replayed = 1;
    expected.dropped_bytes = (last.len() - 3) as u64;
    expected.dropped_records = 1;
    assert_eq!(torn, expected);
    assert!(!torn.is_clean());
    assert_eq!(engine.recovery(), Some(&torn));
    assert!(Engine::new(&policy()).unwrap().recovery().is_none());
    drop(engine);

    // A caller that knows revision 5 was acknowledged refuses revision 4.
    let err =
        Engine::recover(&backup, &policy(), options(3).with_required_revision(5)).unwrap_err();
    assert!(
        matches!(
            err,
            OpenError::Behind {
                recovered: 4,
                required: 5,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "`{}` recovered revision `4`, below the required revision `5`",
            backup.display()
        )
    );
    // Refused or not, the directory is usable at what it holds.
    let engine =
        Engine::open_with(&backup, &policy(), options(3).with_required_revision(4)).unwrap();
    assert_eq!(engine.revision(), 4);
}

#[test]
fn a_failing_checkpoint_is_reported_backs_off_and_recovers() {
    let tmp = TempDir::new().unwrap();
    let engine = Engine::open_with(tmp.path(), &policy(), options(1)).unwrap();
    // A directory where the checkpoint's temporary file goes: every
    // checkpoint fails to create it (even as root), while the journal, open
    // already, goes on appending.
    let blocker = tmp.path().join("checkpoint.tmp");
    fs::create_dir(&blocker).unwrap();
    let mut errors = Vec::new();
    for k in 1..=20 {
        let out = engine
            .apply(
                set_member("org_1", &format!("u{k}"), &["viewer"]),
                ChangeMeta::by("a"),
            )
            .unwrap();
        errors.push(out.checkpoint_error.is_some());
        settle(&engine);
    }
    let stats = engine.stats();
    // Attempts after batches 1, 3, 7 and 15 (the wait doubles), not 20.
    assert_eq!(stats.checkpoint_failures, 4, "{stats:?}");
    assert_eq!(stats.checkpoints_written, 0);
    let message = stats.last_checkpoint_error.unwrap();
    assert!(message.starts_with("cannot create `"), "{message}");
    assert!(message.contains("checkpoint.tmp"), "{message}");
    // Every outcome after the first failure carries the warning.
    assert!(!errors[0], "the first failure is not known yet");
    assert!(errors[1..].iter().all(|e| *e), "{errors:?}");
    assert_eq!(checkpoint_revision(tmp.path()), 0);

    // The disk is fixed: the next attempt (after batch 31) succeeds and the
    // warning goes.
    fs::remove_dir(&blocker).unwrap();
    let mut last = None;
    for k in 21..=31 {
        last = Some(
            engine
                .apply(
                    set_member("org_1", &format!("u{k}"), &["viewer"]),
                    ChangeMeta::by("a"),
                )
                .unwrap(),
        );
        settle(&engine);
    }
    assert!(
        last.unwrap().checkpoint_error.is_some(),
        "known only after it ran"
    );
    let stats = engine.stats();
    assert_eq!(
        (stats.checkpoints_written, stats.checkpoint_failures),
        (1, 4)
    );
    assert_eq!(stats.last_checkpoint_error, None);
    assert_eq!(stats.last_checkpoint_revision, Some(31));
    assert_eq!(checkpoint_revision(tmp.path()), 31);
    let out = engine
        .apply(set_member("org_1", "u32", &["viewer"]), ChangeMeta::by("a"))
        .unwrap();
    assert_eq!(out.checkpoint_error, None);
    // An explicit checkpoint reports its own failure.
    settle(&engine);
    fs::create_dir(&blocker).unwrap();
    let err = engine.checkpoint().unwrap_err();
    assert!(matches!(err, JournalError::Io { .. }), "{err:?}");
    assert_eq!(engine.stats().checkpoint_failures, 5);
}

#[test]
fn a_flipped_byte_in_the_middle_of_the_journal_is_a_clear_error() {
    let tmp = TempDir::new().unwrap();
    let engine = Engine::open(tmp.path(), &policy()).unwrap();
    five_members(&engine);
    drop(engine);
    let log = fs::read(log_path(&tmp)).unwrap();
    let spans = record_spans(&log);

    // In the payload of record 2, and in the header of record 3.
    let cases = [
        (spans[1].start + RECORD_HEADER + 5, spans[1].start),
        (spans[2].start + 1, spans[2].start),
    ];
    for (flip, reported) in cases {
        let mut bad = log.clone();
        bad[flip] ^= 0x40;
        fs::write(log_path(&tmp), &bad).unwrap();
        let err = Engine::open(tmp.path(), &policy()).unwrap_err();
        let OpenError::Journal(JournalError::Corrupt {
            path,
            offset,
            reason,
        }) = &err
        else {
            panic!("expected corruption, got {err:?}");
        };
        assert_eq!(path, &log_path(&tmp));
        assert_eq!(*offset, reported as u64);
        assert!(
            matches!(
                reason,
                Corruption::RecordPayloadChecksum | Corruption::RecordHeaderChecksum
            ),
            "{reason:?}"
        );
        let message = err.to_string();
        assert!(!message.contains('\n'), "one line: {message}");
        assert!(
            message.starts_with(&format!(
                "`{}` is corrupt at byte {reported}: record ",
                log_path(&tmp).display()
            )),
            "{message}"
        );
        // Nothing is repaired behind the operator's back.
        assert_eq!(fs::read(log_path(&tmp)).unwrap(), bad);
    }
    // Restored, it opens again.
    fs::write(log_path(&tmp), &log).unwrap();
    assert_eq!(Engine::open(tmp.path(), &policy()).unwrap().revision(), 5);
}

#[test]
fn a_corrupt_checkpoint_is_an_error_not_a_fresh_start() {
    let tmp = TempDir::new().unwrap();
    let engine = Engine::open_with(tmp.path(), &policy(), options(2)).unwrap();
    five_members(&engine);
    drop(engine);
    let path = tmp.path().join(CHECKPOINT);
    let mut bytes = fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    fs::write(&path, &bytes).unwrap();
    let err = Engine::open(tmp.path(), &policy()).unwrap_err();
    assert!(
        matches!(
            err,
            OpenError::Journal(JournalError::Corrupt {
                reason: Corruption::CheckpointChecksum,
                ..
            })
        ),
        "{err:?}"
    );
    assert!(!err.to_string().contains('\n'));
}

#[test]
fn the_audit_history_survives_a_reopen() {
    let tmp = TempDir::new().unwrap();
    let engine = Engine::open_with(tmp.path(), &policy(), options(2)).unwrap();
    let meta = |who: &str, at: u64| ChangeMeta::by(who).at(at);
    engine
        .apply(set_member("org_1", "ada", &["viewer"]), meta("alice", 10))
        .unwrap();
    engine
        .apply(grant("editor", "users.write"), meta("bob", 20))
        .unwrap();
    engine
        .apply(
            set_member("org_1", "ada", &["editor", "lead"]),
            meta("bob", 30),
        )
        .unwrap();
    engine
        .apply(set_member("org_2", "ada", &["auditor"]), meta("carol", 40))
        .unwrap();
    engine
        .apply(
            Change::RevokePermission {
                organization: None,
                role: "editor".into(),
                permission: "users.write".into(),
            },
            meta("carol", 50),
        )
        .unwrap();
    engine
        .apply(
            Change::RemoveMembership {
                organization: "org_1".into(),
                user: "ada".into(),
            },
            ChangeMeta::default().at(60),
        )
        .unwrap();

    let history = engine.user_role_history("org_1", "ada").unwrap();
    let steps: Vec<_> = history
        .iter()
        .map(|h| {
            (
                h.revision,
                h.at_ms,
                h.actor.as_deref(),
                h.before.clone(),
                h.after.clone(),
            )
        })
        .collect();
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        steps,
        [
            (1, 10, Some("alice"), s(&[]), s(&["viewer"])),
            (3, 30, Some("bob"), s(&["viewer"]), s(&["editor", "lead"])),
            (6, 60, None, s(&["editor", "lead"]), s(&[])),
        ]
    );
    let editor: Vec<u64> = engine
        .role_history(None, "editor")
        .unwrap()
        .iter()
        .map(|e| e.revision)
        .collect();
    assert_eq!(editor, [2, 5]);
    assert!(engine
        .role_history(Some("org_1"), "editor")
        .unwrap()
        .is_empty());
    let since = engine.entries_since(4).unwrap();
    assert_eq!(since.iter().map(|e| e.revision).collect::<Vec<_>>(), [5, 6]);
    assert_eq!(since[0].actor.as_deref(), Some("carol"));
    let org2 = engine.user_role_history("org_2", "ada").unwrap();
    let all = engine.entries_since(0).unwrap();
    drop(engine);

    let engine = Engine::open_with(tmp.path(), &policy(), options(2)).unwrap();
    assert_eq!(engine.user_role_history("org_1", "ada").unwrap(), history);
    assert_eq!(engine.user_role_history("org_2", "ada").unwrap(), org2);
    assert_eq!(
        engine
            .role_history(None, "editor")
            .unwrap()
            .iter()
            .map(|e| e.revision)
            .collect::<Vec<_>>(),
        editor
    );
    assert_eq!(engine.entries_since(0).unwrap(), all);
    assert_eq!(engine.entries_since(4).unwrap(), since);
    assert!(engine.entries_since(6).unwrap().is_empty());
    assert!(engine.entries_since(600).unwrap().is_empty());
}

#[test]
fn subscribers_get_accepted_batches_in_revision_order() {
    let tmp = TempDir::new().unwrap();
    let engine = Engine::open_with(tmp.path(), &policy(), options(25)).unwrap();
    engine
        .apply(
            set_member("org_1", "early", &["viewer"]),
            ChangeMeta::default(),
        )
        .unwrap();
    let feed = engine.subscribe();
    let dropped = engine.subscribe();
    drop(dropped);

    // Four writers at once: the feed still comes in revision order.
    std::thread::scope(|scope| {
        for w in 0..4 {
            let engine = engine.clone();
            scope.spawn(move || {
                for k in 0..50 {
                    let user = format!("w{w}-{k}");
                    engine
                        .apply(
                            set_member("org_1", &user, &["viewer"]),
                            ChangeMeta::by(&user),
                        )
                        .unwrap();
                    // Neither a no-op nor a refused change is delivered.
                    let again = engine
                        .apply(
                            set_member("org_1", &user, &["viewer"]),
                            ChangeMeta::by(&user),
                        )
                        .unwrap();
                    assert!(!again.changed);
                    engine
                        .apply(grant("viewer", "nope:nope"), ChangeMeta::by(&user))
                        .unwrap_err();
                }
            });
        }
    });
    let got: Vec<_> = feed
        .try_iter()
        .map(|f| match f {
            Feed::Entry(e) => e,
            lagged => panic!("{lagged:?}"),
        })
        .collect();
    assert_eq!(
        got.iter().map(|e| e.revision).collect::<Vec<_>>(),
        (2..=201).collect::<Vec<_>>()
    );
    for e in &got {
        let Change::SetMembership { user, .. } = &e.changes[0] else {
            panic!("{e:?}");
        };
        assert_eq!(e.actor.as_deref(), Some(user.as_str()));
        assert_eq!(e.memberships.len(), 1);
        assert_eq!(e.memberships[0].after, ["viewer"]);
    }
    // The feed and the journal tell the same story.
    assert_eq!(engine.entries_since(1).unwrap(), got);
    drop(engine);
    assert!(feed.recv().is_err(), "the feed ends with the engine");
}

#[test]
fn a_subscriber_that_falls_behind_is_told_where_to_resume() {
    let engine = Engine::new(&policy()).unwrap();
    let slow = engine.subscribe_with_capacity(3);
    let fast = engine.subscribe_with_capacity(3);
    for k in 1..=5 {
        engine
            .apply(
                set_member("org_1", &format!("u{k}"), &["viewer"]),
                ChangeMeta::by("a"),
            )
            .unwrap();
        if k <= 3 {
            assert!(matches!(fast.try_recv(), Ok(Feed::Entry(e)) if e.revision == k));
        }
    }
    let got: Vec<Feed> = slow.try_iter().collect();
    assert_eq!(got.len(), 4, "{got:?}");
    for (k, item) in got[..3].iter().enumerate() {
        assert!(
            matches!(item, Feed::Entry(e) if e.revision == k as u64 + 1),
            "{item:?}"
        );
    }
    assert_eq!(got[3], Feed::Lagged { resume_from: 4 });
    // The lagged subscription has ended; the other one goes on.
    assert!(slow.try_recv().is_err());
    assert!(slow.recv().is_err());
    assert!(matches!(fast.try_recv(), Ok(Feed::Entry(e)) if e.revision == 4));
    // Resuming: subscribe again, then catch up from the journal.
    let again = engine.subscribe();
    let missed = engine.entries_since(3).unwrap();
    assert_eq!(
        missed.iter().map(|e| e.revision).collect::<Vec<_>>(),
        [4, 5]
    );
    engine
        .apply(set_member("org_1", "u6", &["viewer"]), ChangeMeta::by("a"))
        .unwrap();
    assert!(matches!(again.try_recv(), Ok(Feed::Entry(e)) if e.revision == 6));
}

#[test]
fn stats_count_accepted_and_rejected_batches() {
    let tmp = TempDir::new().unwrap();
    let engine = Engine::open(tmp.path(), &policy()).unwrap();
    let fresh = engine.stats();
    assert_eq!((fresh.revision, fresh.accepted, fresh.rejected), (0, 0, 0));
    assert_eq!(fresh.last_accepted_ms, None);
    assert_eq!(fresh.last_rejected_ms, None);
    assert_eq!(fresh.last_error, None);

    // Incremental: a grant, a new role. Neither: a membership. Full: a deletion.
    engine
        .apply(grant("member", "docs:write"), ChangeMeta::default())
        .unwrap();
    engine
        .apply(create_role("guest", &[], &[]), ChangeMeta::default())
        .unwrap();
    engine
        .apply(set_member("org_1", "u", &["guest"]), ChangeMeta::default())
        .unwrap();
    engine
        .apply(
            Change::DeleteRole {
                organization: None,
                name: "hr".into(),
                reassign_to: None,
                reparent: None,
            },
            ChangeMeta::default(),
        )
        .unwrap();
    let err = engine
        .apply(grant("ghost", "docs:read"), ChangeMeta::default())
        .unwrap_err();
    let stats = engine.stats();
    assert_eq!(stats.revision, 4);
    assert_eq!((stats.accepted, stats.rejected), (4, 1));
    assert_eq!((stats.incremental_compiles, stats.full_compiles), (2, 1));
    assert_eq!(stats.last_error, Some(err.to_string()));
    assert_eq!(
        stats.last_error.as_deref(),
        Some("role `ghost` does not exist")
    );
    let (accepted_at, rejected_at) = (
        stats.last_accepted_ms.unwrap(),
        stats.last_rejected_ms.unwrap(),
    );
    assert!(accepted_at > 1_600_000_000_000 && rejected_at >= accepted_at);

    // A no-op is accepted; a redelivery is an answer, not a rejection.
    engine
        .apply(set_member("org_1", "u", &["guest"]), ChangeMeta::default())
        .unwrap();
    let delivery = |id: &str| Change::RecordDelivery {
        id: id.into(),
        received_ms: 1,
        entities: vec![],
        retention_ms: u64::MAX,
    };
    engine.apply(delivery("d1"), ChangeMeta::default()).unwrap();
    engine
        .apply(delivery("d1"), ChangeMeta::default())
        .unwrap_err();
    let stats = engine.stats();
    assert_eq!((stats.revision, stats.accepted, stats.rejected), (5, 6, 1));
    assert_eq!(
        stats.last_error.as_deref(),
        Some("role `ghost` does not exist")
    );

    // The counters are the process's; the revision is the directory's.
    drop(engine);
    let engine = Engine::open(tmp.path(), &policy()).unwrap();
    let stats = engine.stats();
    assert_eq!((stats.revision, stats.accepted, stats.rejected), (5, 0, 0));
}

/// `alice`'s principal in `org_1`: a token holding `roles`, plus `claimed`
/// permissions.
fn actor(engine: &Engine, roles: &[&str], claimed: &[&str]) -> rolegraph::Principal {
    engine
        .snapshot()
        .principal(Some("org_1"), roles)
        .with_permissions(claimed)
}

#[test]
fn guarded_assignment_needs_the_guard_and_roles_of_that_organization() {
    let tmp = TempDir::new().unwrap();
    let engine = Engine::open(tmp.path(), &policy()).unwrap();

    // Allowed: role `admin`, a role extending it, permission `users.write`
    // (through a role or claimed), permission `roles.assign`.
    let allowed: [(&str, &[&str], &[&str]); 5] = [
        ("admin", &["admin"], &[]),
        ("owner", &["owner"], &[]),
        ("hr", &["hr"], &[]),
        ("claims", &["member"], &["users.write"]),
        ("assigner", &[], &["roles.assign"]),
    ];
    for (i, (who, roles, claimed)) in allowed.iter().enumerate() {
        let user = format!("target{i}");
        let out = engine
            .assign_roles(
                &actor(&engine, roles, claimed),
                who,
                "org_1",
                &user,
                &["lead", "viewer"],
            )
            .unwrap();
        assert_eq!(out.revision, i as u64 + 1);
        assert_eq!(
            engine.snapshot().membership("org_1", &user).unwrap().roles,
            ["lead", "viewer"]
        );
        let history = engine.user_role_history("org_1", &user).unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].actor.as_deref(), Some(*who));
    }
    let revision = engine.revision();

    // Refused: a plain member, an unknown role name, nothing at all.
    let refused: [(&[&str], &[&str]); 3] = [
        (&["member"], &[]),
        (&["ghost"], &["ghost.perm"]),
        (&[], &[]),
    ];
    for (roles, claimed) in refused {
        let err = engine
            .assign_roles(
                &actor(&engine, roles, claimed),
                "mallory",
                "org_1",
                "victim",
                &["admin"],
            )
            .unwrap_err();
        let ChangeError::Forbidden {
            actor,
            organization,
            requirement,
        } = &err
        else {
            panic!("expected forbidden, got {err:?}");
        };
        assert_eq!(
            (actor.as_str(), organization.as_str()),
            ("mallory", "org_1")
        );
        assert!(requirement.contains("`admin`") && requirement.contains("`users.write`"));
        assert_eq!(
            err.to_string(),
            format!("`mallory` may not assign roles in organization `org_1`: needs {requirement}")
        );
    }
    // A role of another organization, or no role at all, is not assignable in `org_1`.
    let admin = actor(&engine, &["admin"], &[]);
    for role in ["auditor", "ghost"] {
        let err = engine
            .assign_roles(&admin, "alice", "org_1", "victim", &["viewer", role])
            .unwrap_err();
        assert!(
            matches!(&err, ChangeError::UnknownMembershipRole { organization, role: r } if organization == "org_1" && r == role),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!("role `{role}` does not exist in organization `org_1`")
        );
    }
    assert_eq!(engine.revision(), revision);
    assert!(engine.snapshot().membership("org_1", "victim").is_none());
    assert_eq!(engine.stats().rejected, 5);
    // It is allowed in its own organization.
    engine
        .assign_roles(&admin, "alice", "org_2", "victim", &["auditor"])
        .unwrap();

    // Guarded assignments are journaled like any change.
    drop(admin);
    drop(engine);
    let engine = Engine::open(tmp.path(), &policy()).unwrap();
    assert_eq!(engine.revision(), revision + 1);
    assert_eq!(
        engine.user_role_history("org_2", "victim").unwrap()[0]
            .actor
            .as_deref(),
        Some("alice")
    );
}

#[test]
fn a_guard_the_policy_cannot_meet_refuses_every_guarded_assignment() {
    let engine = Engine::new(&policy()).unwrap();
    let admin = actor(&engine, &["admin"], &["users.write", "roles.assign"]);

    // Names the policy does not declare are left out…
    engine
        .set_assignment_guard(AssignmentGuard {
            roles: vec!["superuser".into(), "hr".into()],
            permissions: vec!["perm.nope".into()],
        })
        .unwrap();
    let hr = actor(&engine, &["hr"], &[]);
    engine
        .assign_roles(&hr, "hr", "org_1", "u1", &["viewer"])
        .unwrap();
    let err = engine
        .assign_roles(
            &actor(&engine, &["admin"], &[]),
            "alice",
            "org_1",
            "u1",
            &["editor"],
        )
        .unwrap_err();
    assert!(matches!(err, ChangeError::Forbidden { .. }), "{err:?}");

    // …and when nothing is left, configuring says why, and every guarded
    // assignment is refused, whoever asks.
    let err = engine
        .set_assignment_guard(AssignmentGuard {
            roles: vec!["superuser".into()],
            permissions: vec!["perm.nope".into(), "x.y".into()],
        })
        .unwrap_err();
    let ChangeError::GuardUnavailable { reason } = &err else {
        panic!("expected guard unavailable, got {err:?}");
    };
    assert_eq!(
        reason,
        "none of the guard's roles (`superuser`) or permissions (`perm.nope`, `x.y`) exists in the policy"
    );
    assert_eq!(
        err.to_string(),
        format!("guarded assignment is refused: {reason}")
    );
    for principal in [&admin, &hr] {
        let err = engine
            .assign_roles(principal, "alice", "org_1", "u2", &["viewer"])
            .unwrap_err();
        assert!(
            matches!(err, ChangeError::GuardUnavailable { .. }),
            "{err:?}"
        );
    }
    assert!(engine.snapshot().membership("org_1", "u2").is_none());
    assert_eq!(engine.revision(), 1);

    // Once the policy declares a name of the guard, it can be met.
    engine
        .apply(
            Change::CreatePermission {
                name: "x.y".into(),
                description: None,
            },
            ChangeMeta::default(),
        )
        .unwrap();
    engine
        .apply(grant("hr", "x.y"), ChangeMeta::default())
        .unwrap();
    let hr = actor(&engine, &["hr"], &[]);
    engine
        .assign_roles(&hr, "hr", "org_1", "u2", &["viewer"])
        .unwrap();

    // The default guard on a policy that declares none of its names.
    let engine = Engine::new(&other_policy()).unwrap();
    let stranger = engine.snapshot().principal(Some("org_1"), ["stranger"]);
    let err = engine
        .assign_roles(&stranger, "s", "org_1", "u", &["stranger"])
        .unwrap_err();
    assert!(
        matches!(err, ChangeError::GuardUnavailable { .. }),
        "{err:?}"
    );
    assert_eq!(
        engine.set_assignment_guard(AssignmentGuard::default()).unwrap_err().to_string(),
        "guarded assignment is refused: none of the guard's roles (`admin`) or permissions (`users.write`, `roles.assign`) exists in the policy"
    );
}

#[test]
fn the_guard_checks_the_actors_principal_as_given() {
    // The caller builds the actor's principal (from a token or a
    // membership); a principal built before a grant does not have it, one
    // built after does.
    let engine = Engine::new(&policy()).unwrap();
    let before = actor(&engine, &["member"], &[]);
    let err = engine
        .assign_roles(&before, "m", "org_1", "u", &["viewer"])
        .unwrap_err();
    assert!(matches!(err, ChangeError::Forbidden { .. }), "{err:?}");
    engine
        .apply(grant("member", "users.write"), ChangeMeta::default())
        .unwrap();
    let err = engine
        .assign_roles(&before, "m", "org_1", "u", &["viewer"])
        .unwrap_err();
    assert!(matches!(err, ChangeError::Forbidden { .. }), "{err:?}");
    let after = actor(&engine, &["member"], &[]);
    engine
        .assign_roles(&after, "m", "org_1", "u", &["viewer"])
        .unwrap();
    let write = Requirement::permission(&engine.snapshot(), "users.write").unwrap();
    assert!(after.satisfies(&write) && !before.satisfies(&write));
}

#[test]
fn engine_types_cross_threads() {
    fn send_sync<T: Send + Sync + 'static>() {}
    fn send<T: Send + 'static>() {}
    send_sync::<Engine>();
    send_sync::<Recovery>();
    send_sync::<Feed>();
    send_sync::<OpenError>();
    send_sync::<EngineOptions>();
    send_sync::<Existing>();
    send_sync::<rolegraph::Stats>();
    // A subscription moves to the thread that consumes it.
    send::<rolegraph::Subscription>();
}

/// The `k`-th change of the rotation tests: one of six users of `org_1`
/// gets a role different from the one it had; every tenth change instead
/// grants or revokes `hr`'s `docs:read`.
fn rotation_change(k: u64) -> Change {
    if k % 10 == 9 {
        return if k % 20 == 9 {
            grant("hr", "docs:read")
        } else {
            Change::RevokePermission {
                organization: None,
                role: "hr".into(),
                permission: "docs:read".into(),
            }
        };
    }
    let roles = ["viewer", "editor", "admin"];
    set_member(
        "org_1",
        &format!("u{}", k % 6),
        &[roles[((k / 6) % 3) as usize]],
    )
}

const ROTATION_USERS: [&str; 6] = ["u0", "u1", "u2", "u3", "u4", "u5"];

/// The engine that applied `rotation_change(0..n)` in memory: the oracle.
fn rotation_oracle(n: u64) -> Engine {
    let engine = Engine::new(&policy()).unwrap();
    for k in 0..n {
        engine
            .apply(rotation_change(k), ChangeMeta::default())
            .unwrap();
    }
    engine
}

/// Every role assignment of the rotation users, read one page of `limit`
/// at a time.
fn paged_role_history(engine: &Engine, user: &str, limit: usize) -> Vec<u64> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = engine
            .user_role_history_page("org_1", user, after, limit)
            .unwrap();
        let Some(last) = page.last() else {
            return out;
        };
        after = last.revision;
        out.extend(page.iter().map(|a| a.revision));
    }
}

#[test]
fn checkpoints_rotate_the_log_and_history_spans_the_segments() {
    let tmp = TempDir::new().unwrap();
    let every = 7;
    let n = 60;
    let engine = Engine::open_with(tmp.path(), &policy(), options(every)).unwrap();
    for k in 0..n {
        engine
            .apply(rotation_change(k), ChangeMeta::default())
            .unwrap();
        settle(&engine);
        let applied = k + 1;
        // The live log holds exactly the changes since the last checkpoint.
        let live = fs::read(log_path(&tmp)).unwrap();
        assert_eq!(
            record_spans(&live).len() as u64,
            applied % every,
            "after {applied}"
        );
        assert_eq!(segments(tmp.path()).len() as u64, 1 + applied / every);
    }
    let oracle = rotation_oracle(n);
    let want = answers(&oracle, &ROTATION_USERS);
    assert_eq!(answers(&engine, &ROTATION_USERS), want);
    let entries = engine.entries_since(0).unwrap();
    let user_history: Vec<_> = ROTATION_USERS
        .iter()
        .map(|u| engine.user_role_history("org_1", u).unwrap())
        .collect();
    let role_history = engine.role_history(None, "hr").unwrap();
    assert_eq!(role_history.len(), 6);
    drop(engine);

    // Reopen equals the in-memory replay, replaying only the live segment.
    let (engine, recovery) = Engine::recover(tmp.path(), &policy(), options(every)).unwrap();
    assert_eq!(recovery.checkpoint_revision, Some(n / every * every));
    assert_eq!(recovery.records_replayed, n % every);
    assert_eq!(answers(&engine, &ROTATION_USERS), want);
    // The history, now read back from the sealed segments, is complete and
    // in order, and the same as before.
    let reread = engine.entries_since(0).unwrap();
    assert_eq!(
        reread.iter().map(|e| e.revision).collect::<Vec<_>>(),
        (1..=n).collect::<Vec<_>>()
    );
    assert_eq!(reread, entries);
    assert_eq!(engine.role_history(None, "hr").unwrap(), role_history);
    for (user, history) in ROTATION_USERS.iter().zip(&user_history) {
        assert_eq!(&engine.user_role_history("org_1", user).unwrap(), history);
        let revisions: Vec<u64> = history.iter().map(|a| a.revision).collect();
        assert!(revisions.len() >= 8, "{user}: {revisions:?}");
        for limit in [1, 3, 100] {
            assert_eq!(paged_role_history(&engine, user, limit), revisions);
        }
    }
    // Pages of the role history too.
    let page = engine.role_history_page(None, "hr", 30, 2).unwrap();
    let want: Vec<_> = role_history
        .iter()
        .filter(|e| e.revision > 30)
        .take(2)
        .cloned()
        .collect();
    assert_eq!(page, want);
    assert_eq!(page.len(), 2);
}

#[test]
fn a_crash_between_rotating_and_writing_the_checkpoint_recovers() {
    let tmp = TempDir::new().unwrap();
    let engine = Engine::open_with(tmp.path(), &policy(), options(5)).unwrap();
    for k in 0..5 {
        engine
            .apply(rotation_change(k), ChangeMeta::default())
            .unwrap();
    }
    settle(&engine);
    assert_eq!(checkpoint_revision(tmp.path()), 5);
    let old_checkpoint = fs::read(tmp.path().join(CHECKPOINT)).unwrap();
    for k in 5..13 {
        engine
            .apply(rotation_change(k), ChangeMeta::default())
            .unwrap();
    }
    settle(&engine);
    drop(engine);
    assert_eq!(checkpoint_revision(tmp.path()), 10);
    // The checkpoint of 10 is lost while its segment survives (a layout
    // the journal no longer makes: a segment starts only after its
    // checkpoint is durable; recovery still reads through it), and a crash
    // left a half-made next segment behind.
    fs::write(tmp.path().join(CHECKPOINT), &old_checkpoint).unwrap();
    fs::write(tmp.path().join("journal.log.tmp"), b"RGRAPH").unwrap();

    let (engine, recovery) = Engine::recover(tmp.path(), &policy(), options(5)).unwrap();
    assert_eq!(recovery.checkpoint_revision, Some(5));
    assert_eq!(recovery.records_replayed, 8);
    assert!(recovery.is_clean());
    let oracle = rotation_oracle(13);
    assert_eq!(
        answers(&engine, &ROTATION_USERS),
        answers(&oracle, &ROTATION_USERS)
    );
    assert_eq!(
        engine
            .entries_since(0)
            .unwrap()
            .iter()
            .map(|e| e.revision)
            .collect::<Vec<_>>(),
        (1..=13).collect::<Vec<_>>()
    );
    // It goes on: the next change lands after 13 and survives a reopen.
    engine
        .apply(rotation_change(13), ChangeMeta::default())
        .unwrap();
    drop(engine);
    let engine = Engine::open_with(tmp.path(), &policy(), options(5)).unwrap();
    assert_eq!(
        answers(&engine, &ROTATION_USERS),
        answers(&rotation_oracle(14), &ROTATION_USERS)
    );
}

#[test]
fn retention_deletes_old_segments_and_history_starts_at_the_oldest_kept() {
    let tmp = TempDir::new().unwrap();
    let opts = options(5).with_retain_segments(Some(1));
    let engine = Engine::open_with(tmp.path(), &policy(), opts).unwrap();
    for k in 0..30 {
        engine
            .apply(rotation_change(k), ChangeMeta::default())
            .unwrap();
        settle(&engine);
    }
    drop(engine);
    // The checkpoint's segment (25, sealed right after the checkpoint of
    // 30 was written), one before it (20) and the live one (30, empty).
    let bases: Vec<u64> = segments(tmp.path()).into_iter().map(|(b, _)| b).collect();
    assert_eq!(bases, [20, 25, 30]);
    let engine = Engine::open_with(tmp.path(), &policy(), opts).unwrap();
    assert_eq!(
        answers(&engine, &ROTATION_USERS),
        answers(&rotation_oracle(30), &ROTATION_USERS)
    );
    let kept: Vec<u64> = engine
        .entries_since(0)
        .unwrap()
        .iter()
        .map(|e| e.revision)
        .collect();
    assert_eq!(kept, (21..=30).collect::<Vec<_>>());
}

/// The files in `dir` (the lock aside), by name.
fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name != "lock")
        .collect();
    names.sort();
    names
}

/// Recovery from `dir` equals the in-memory engine that applied
/// `rotation_change(0..n)`: the same answers, snapshot and user path, and
/// every revision once in the history.
fn assert_recovers_as_the_oracle(dir: &Path, n: u64, opts: EngineOptions) {
    let (engine, recovery) = Engine::recover(dir, &policy(), opts).unwrap();
    assert!(recovery.is_clean(), "{recovery:?}");
    assert_eq!(recovery.revision, n);
    let oracle = rotation_oracle(n);
    assert_eq!(
        answers(&engine, &ROTATION_USERS),
        answers(&oracle, &ROTATION_USERS)
    );
    let (live, want) = (engine.snapshot(), oracle.snapshot());
    rolegraph_testkit::assert_equivalent(&live, &want, &rolegraph_testkit::Probe::default());
    for user in ROTATION_USERS {
        rolegraph_testkit::membership_equivalent(&live, "org_1", user).unwrap();
    }
    let revisions: Vec<u64> = engine
        .entries_since(0)
        .unwrap()
        .iter()
        .map(|e| e.revision)
        .collect();
    assert_eq!(revisions, (1..=n).collect::<Vec<_>>());
}

#[test]
fn a_failed_checkpoint_leaves_no_segment_behind_and_the_next_one_works() {
    let tmp = TempDir::new().unwrap();
    let opts = options(1);
    let engine = Engine::open_with(tmp.path(), &policy(), opts).unwrap();
    let before = file_names(tmp.path());
    assert_eq!(before, [CHECKPOINT, LOG]);
    // A real failure: a directory where `checkpoint.tmp` goes.
    let blocker = tmp.path().join("checkpoint.tmp");
    fs::create_dir(&blocker).unwrap();
    let mut n = 0;
    for _ in 0..16 {
        engine
            .apply(rotation_change(n), ChangeMeta::default())
            .unwrap();
        n += 1;
        settle(&engine);
        // Each attempt failed and left the directory as it was: no new
        // segment, no temporary file but the blocker.
        assert_eq!(
            file_names(tmp.path()),
            [CHECKPOINT, "checkpoint.tmp", LOG],
            "after {n}"
        );
    }
    let stats = engine.stats();
    assert_eq!(
        (stats.checkpoint_failures, stats.checkpoints_written),
        (4, 0)
    );
    assert_eq!(checkpoint_revision(tmp.path()), 0);
    // A crash now recovers everything from the old checkpoint.
    drop(engine);
    assert_recovers_as_the_oracle(tmp.path(), n, opts);

    // Fixed: the next attempt writes the checkpoint and starts a segment.
    let engine = Engine::open_with(tmp.path(), &policy(), opts).unwrap();
    fs::remove_dir(&blocker).unwrap();
    while engine.stats().checkpoints_written == 0 {
        assert!(n < 64, "no checkpoint was written");
        engine
            .apply(rotation_change(n), ChangeMeta::default())
            .unwrap();
        n += 1;
        settle(&engine);
    }
    assert_eq!(checkpoint_revision(tmp.path()), n);
    assert_eq!(
        file_names(tmp.path()),
        [
            CHECKPOINT.to_owned(),
            format!("journal-{n:020}.log"),
            LOG.to_owned()
        ]
    );
    for _ in 0..3 {
        engine
            .apply(rotation_change(n), ChangeMeta::default())
            .unwrap();
        n += 1;
        settle(&engine);
    }
    drop(engine);
    assert_recovers_as_the_oracle(tmp.path(), n, opts);
}
