//! Readers never see a torn snapshot and are never blocked: several reader
//! threads check continuously while one writer publishes thousands of
//! changes.
//!
//! The writer's change `k` (published as revision `k`) is one batch that
//! touches three separately stored parts of a snapshot: it replaces the
//! grants of role `counter` with permission `p{k mod M}` (so the compiled
//! rows of `counter` and of `twin`, which extends it, change), sets the
//! membership of user `probe` to role `holder{k mod H}`, and declares a
//! new permission `seq{k}` (the permission table). A reader checks that
//! all of them, and `Snapshot::revision`, name the same `k` within one
//! snapshot; a read that mixed two revisions would fail at least one check.

#![expect(
    clippy::unwrap_used,
    reason = "helpers outside #[test] functions may fail the test"
)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rolegraph::{Change, ChangeMeta, Engine, Feed, Policy, Requirement, Snapshot};

/// Changes the writer publishes.
const CHANGES: u64 = 3_000;
const READERS: usize = 3;
/// Permissions `counter` cycles through.
const M: u64 = 13;
/// Roles `probe` cycles through.
const H: u64 = 5;

fn policy() -> Policy {
    let mut p = Policy::new();
    for i in 0..M {
        p.permission(format!("p{i}"));
    }
    for i in 0..H {
        p.permission(format!("h{i}"));
        p.role(format!("holder{i}")).grant(format!("h{i}"));
    }
    p.role("counter").grant("p0");
    p.role("twin").extends("counter");
    p.organization("org_1");
    p
}

fn change(k: u64) -> Vec<Change> {
    vec![
        Change::UpdateRole {
            organization: None,
            name: "counter".into(),
            display_name: None,
            description: None,
            permissions: Some(vec![format!("p{}", k % M)]),
            extends: None,
        },
        Change::SetMembership {
            organization: "org_1".into(),
            user: "probe".into(),
            roles: vec![format!("holder{}", k % H)],
            groups: None,
            creator: false,
        },
        Change::CreatePermission {
            name: format!("seq{k}"),
            description: None,
        },
    ]
}

/// Requirements resolved once, on the first snapshot, as a service would:
/// they keep working across the swaps.
struct Requirements {
    counter: Vec<Requirement>,
    holder: Vec<Requirement>,
}

/// Checks that everything in `s` names the same revision; returns it.
fn check(s: &Snapshot, req: &Requirements) -> u64 {
    let k = s.revision();
    // The compiled rows: `counter` and `twin` have exactly `p{k mod M}`.
    for role in ["counter", "twin"] {
        let principal = s.principal(None, [role]);
        for (i, r) in req.counter.iter().enumerate() {
            assert_eq!(
                principal.satisfies(r),
                i as u64 == k % M,
                "revision {k}: `{role}` and permission p{i}"
            );
        }
    }
    // The memberships.
    let probe = s.membership("org_1", "probe");
    let holder = if k == 0 {
        assert!(probe.is_none(), "revision 0 has no probe");
        None
    } else {
        assert_eq!(
            probe.unwrap().roles,
            [format!("holder{}", k % H)],
            "revision {k}"
        );
        Some(k % H)
    };
    let principal = s.user_principal("org_1", "probe");
    for (i, r) in req.holder.iter().enumerate() {
        assert_eq!(
            principal.satisfies(r),
            Some(i as u64) == holder,
            "revision {k}"
        );
    }
    // The permission table: `seq1` … `seq{k}` are declared, `seq{k+1}` not.
    assert_eq!(s.permissions_len() as u64, M + H + k, "revision {k}");
    if k > 0 {
        assert!(
            s.permission_id(&format!("seq{k}")).is_some(),
            "revision {k}"
        );
    }
    assert!(
        s.permission_id(&format!("seq{}", k + 1)).is_none(),
        "revision {k}"
    );
    k
}

#[test]
fn readers_see_whole_revisions_and_keep_going_while_a_writer_publishes() {
    let engine = Engine::new(&policy()).unwrap();
    let first = engine.snapshot();
    let req = Arc::new(Requirements {
        counter: (0..M)
            .map(|i| Requirement::permission(&first, &format!("p{i}")).unwrap())
            .collect(),
        holder: (0..H)
            .map(|i| Requirement::permission(&first, &format!("h{i}")).unwrap())
            .collect(),
    });
    drop(first);
    let done = Arc::new(AtomicBool::new(false));
    // The writer's progress, for the readers to sample.
    let published = Arc::new(AtomicU64::new(0));
    let feed = engine.subscribe_with_capacity(CHANGES as usize);
    let started = Instant::now();

    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let (engine, req, done, published) = (
                engine.clone(),
                Arc::clone(&req),
                Arc::clone(&done),
                Arc::clone(&published),
            );
            std::thread::spawn(move || {
                let mut checks = 0u64;
                let mut last = 0;
                let mut distinct = 0u64;
                // For each tenth of the writer's run, whether this reader
                // checked a snapshot then.
                let mut tenths = [false; 10];
                while !done.load(Ordering::Acquire) {
                    let writer_at = published.load(Ordering::Acquire);
                    let k = check(&engine.snapshot(), &req);
                    assert!(k >= last, "revision went back from {last} to {k}");
                    assert!(k >= writer_at, "a published revision is visible at once");
                    distinct += u64::from(k != last);
                    last = k;
                    checks += 1;
                    tenths[(writer_at * 10 / CHANGES).min(9) as usize] = true;
                    // Three spinning readers and a writer share 2 cores
                    // here: let the writer in, or it crawls.
                    std::thread::yield_now();
                }
                // After the writer is done, the last revision is visible.
                assert_eq!(check(&engine.snapshot(), &req), CHANGES);
                (checks, distinct, tenths)
            })
        })
        .collect();

    for k in 1..=CHANGES {
        let outcome = engine
            .apply_batch(change(k), ChangeMeta::by("writer"))
            .unwrap();
        assert_eq!(outcome.revision, k);
        published.store(k, Ordering::Release);
        if k % 100 == 0 {
            // Let the readers in on a loaded 2-core machine as well.
            std::thread::yield_now();
        }
    }
    let writing = started.elapsed();
    done.store(true, Ordering::Release);

    let mut total = 0;
    for reader in readers {
        let (checks, distinct, tenths) = reader.join().unwrap();
        total += checks;
        assert!(checks >= 100, "a reader made {checks} checks");
        assert!(distinct >= 10, "a reader saw only {distinct} revisions");
        let active = tenths.iter().filter(|t| **t).count();
        assert!(
            active >= 3,
            "a reader checked in only {active} tenths of the run: {tenths:?}"
        );
    }
    // The feed saw every revision, in order.
    let revisions: Vec<u64> = feed
        .try_iter()
        .map(|f| match f {
            Feed::Entry(e) => e.revision,
            lagged => panic!("{lagged:?}"),
        })
        .collect();
    assert_eq!(revisions, (1..=CHANGES).collect::<Vec<_>>());
    eprintln!(
        "{CHANGES} changes in {writing:?} ({:?} each) while {READERS} readers made {total} checks",
        writing / u32::try_from(CHANGES).unwrap()
    );
    assert!(writing < Duration::from_secs(120));
}

#[test]
fn a_snapshot_taken_before_a_change_keeps_answering_for_its_revision() {
    let engine = Engine::new(&policy()).unwrap();
    let first = engine.snapshot();
    let req = Requirements {
        counter: (0..M)
            .map(|i| Requirement::permission(&first, &format!("p{i}")).unwrap())
            .collect(),
        holder: (0..H)
            .map(|i| Requirement::permission(&first, &format!("h{i}")).unwrap())
            .collect(),
    };
    let mut held = vec![first];
    for k in 1..=40 {
        engine
            .apply_batch(change(k), ChangeMeta::default())
            .unwrap();
        held.push(engine.snapshot());
    }
    for (k, s) in held.iter().enumerate() {
        assert_eq!(check(s, &req), k as u64);
    }
}
