//! Three instances writing concurrently through one Redis stream end
//! identical, and equal to one engine replaying the stream alone.

mod fleet_common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use fleet_common::{initial, random_batch, state, Redis};
use rolegraph::fleet::FleetOptions;
use rolegraph::{Change, ChangeError, ChangeMeta, Engine, EngineOptions};

const INSTANCES: usize = 3;
const BATCHES: usize = 80;

fn options(redis: &Redis, key: &str, name: &str) -> FleetOptions {
    FleetOptions::new(redis.url())
        .with_key(key)
        .with_instance(name)
        .with_checkpoint_every(25)
        // Nothing trimmed: the test replays the whole stream.
        .with_keep_checkpoints(100)
}

#[test]
fn three_instances_converge_to_what_the_stream_replays_to() {
    let redis = Redis::start();
    let dirs: Vec<_> = (0..INSTANCES)
        .map(|_| tempfile::tempdir().unwrap())
        .collect();
    let engines: Vec<Engine> = dirs
        .iter()
        .enumerate()
        .map(|(i, dir)| {
            let engine = Engine::open_with(
                dir.path(),
                &initial(),
                EngineOptions::default()
                    .with_sync(false)
                    .with_checkpoint_every(10),
            )
            .unwrap();
            engine
                .join_fleet(options(&redis, "conv", &format!("i{i}")))
                .unwrap();
            engine
        })
        .collect();

    // Each writer: (submitted batch, outcome) for every batch it tried.
    let handles: Vec<_> = engines
        .iter()
        .enumerate()
        .map(|(i, engine)| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                let mut rng = rolegraph_testkit::Rng::new(0xf1ee7 + i as u64);
                let mut log = Vec::new();
                for _ in 0..BATCHES {
                    let batch = random_batch(&mut rng);
                    let result = engine.apply_batch(batch.clone(), ChangeMeta::by(format!("i{i}")));
                    log.push((batch, result));
                }
                log
            })
        })
        .collect();
    let logs: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();

    let entries = redis.entries("conv");
    let top = entries.last().map_or(0, |e| e.revision);
    assert!(top > 20, "only {top} batches were accepted");
    // The stream is gapless from 1; checkpoints were published meanwhile.
    for (k, e) in entries.iter().enumerate() {
        assert_eq!(e.revision, k as u64 + 1, "the stream skips a revision");
    }
    let checkpoints = redis.checkpoints("conv");
    assert!(checkpoints.len() >= 2, "{checkpoints:?}");

    // Every acknowledged batch is in the stream at its revision, as sent;
    // every refused one is not (its content appears nowhere as a whole
    // batch of that writer at a revision it was told).
    let by_revision: BTreeMap<u64, &rolegraph::Entry> =
        entries.iter().map(|e| (e.revision, e)).collect();
    let mut acknowledged = BTreeSet::new();
    let (mut conflicts, mut refused, mut duplicates) = (0, 0, 0);
    for (i, log) in logs.iter().enumerate() {
        for (batch, result) in log {
            match result {
                Ok(outcome) if outcome.changed => {
                    assert!(
                        acknowledged.insert(outcome.revision),
                        "two writers were told revision {}",
                        outcome.revision
                    );
                    let entry = by_revision.get(&outcome.revision).unwrap_or_else(|| {
                        panic!("revision {} is not in the stream", outcome.revision)
                    });
                    assert_eq!(&entry.changes, batch, "revision {}", outcome.revision);
                    assert_eq!(entry.actor.as_deref(), Some(format!("i{i}").as_str()));
                }
                Ok(_) => {}
                Err(ChangeError::Journal(m)) if m.contains("moved on") => conflicts += 1,
                Err(ChangeError::Journal(m)) => panic!("the log failed: {m}"),
                Err(ChangeError::Duplicate { .. }) => duplicates += 1,
                Err(_) => refused += 1,
            }
        }
    }
    assert_eq!(
        acknowledged.len() as u64,
        top,
        "every revision of the stream was acknowledged to exactly one writer"
    );
    assert!(refused > 0, "the workload must include invalid batches");
    eprintln!("accepted {top}, refused {refused}, duplicates {duplicates}, conflicts reported {conflicts}");

    // A delivery is applied once across the fleet.
    let mut delivered = BTreeSet::new();
    for e in &entries {
        for c in &e.changes {
            if let Change::RecordDelivery { id, .. } = c {
                assert!(delivered.insert(id.clone()), "delivery {id} applied twice");
            }
        }
    }

    for engine in &engines {
        assert!(
            engine.wait_for_revision(top, Duration::from_secs(20)),
            "an instance stayed at {} below {top}",
            engine.revision()
        );
    }
    let states: Vec<_> = engines.iter().map(state).collect();
    for s in &states[1..] {
        assert_eq!(s, &states[0]);
    }

    // One engine replaying the stream alone reaches the same state.
    let alone = Engine::new(&initial()).unwrap();
    for e in &entries {
        let mut meta = ChangeMeta::default().at(e.at_ms);
        meta.actor.clone_from(&e.actor);
        let outcome = alone.apply_batch(e.changes.clone(), meta).unwrap();
        assert_eq!(outcome.revision, e.revision);
    }
    assert_eq!(state(&alone), states[0]);
    let stats = engines[0].stats();
    assert!(stats.remote_applied > 0);
    assert_eq!(stats.fleet_error, None);
    assert_eq!(stats.fleet_stopped_at, None);
    // Equivalence of the compiled snapshots, by the shared oracle.
    rolegraph_testkit::assert_equivalent(
        &engines[1].snapshot(),
        &alone.snapshot(),
        &rolegraph_testkit::Probe::default(),
    );
}

#[test]
fn a_write_returns_a_revision_another_instance_can_wait_for() {
    let redis = Redis::start();
    let a = Engine::new(&initial()).unwrap();
    let b = Engine::new(&initial()).unwrap();
    a.join_fleet(options(&redis, "fresh", "a")).unwrap();
    b.join_fleet(options(&redis, "fresh", "b")).unwrap();
    let outcome = a
        .apply(
            Change::GrantPermission {
                organization: None,
                role: "viewer".into(),
                permission: "billing:read".into(),
            },
            ChangeMeta::by("admin"),
        )
        .unwrap();
    assert!(b.wait_for_revision(outcome.revision, Duration::from_secs(5)));
    let viewer = b.snapshot().role(None, "viewer").unwrap();
    assert!(b.snapshot().role_has_permission(viewer, "billing:read"));
    // A revision nobody wrote is not reached.
    assert!(!b.wait_for_revision(outcome.revision + 1, Duration::from_millis(300)));
    // B writes on top of A's batch, not over it.
    let again = b
        .apply(
            Change::RevokePermission {
                organization: None,
                role: "viewer".into(),
                permission: "billing:read".into(),
            },
            ChangeMeta::by("admin"),
        )
        .unwrap();
    assert_eq!(again.revision, outcome.revision + 1);
    assert!(a.wait_for_revision(again.revision, Duration::from_secs(5)));
    // Joining twice is refused.
    assert!(matches!(
        a.join_fleet(options(&redis, "fresh", "a")),
        Err(rolegraph::fleet::FleetError::AlreadyJoined)
    ));
}
