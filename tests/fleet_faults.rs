//! A fleet under faults: an instance killed and restarted, Redis restarted
//! and stopped, the stream trimmed past a stopped instance, corrupt and
//! foreign entries. Each against a real `redis-server`.

#![cfg(unix)]
#![expect(clippy::unwrap_used, clippy::panic, reason = "tests")]

mod fleet_common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fleet_common::{initial, random_batch, state, Redis};
use rolegraph::fleet::{FleetError, FleetOptions};
use rolegraph::{Change, ChangeError, ChangeMeta, Engine, EngineOptions, Outcome};

const DIR_VAR: &str = "ROLEGRAPH_FLEET_DIR";
const URL_VAR: &str = "ROLEGRAPH_FLEET_URL";
const WRITES_VAR: &str = "ROLEGRAPH_FLEET_WRITES";
const TARGET_VAR: &str = "ROLEGRAPH_FLEET_TARGET";

fn fleet(redis: &Redis, key: &str, name: &str) -> FleetOptions {
    FleetOptions::new(redis.url())
        .with_key(key)
        .with_instance(name)
        .with_checkpoint_every(20)
        .with_keep_checkpoints(1000)
        .with_timeout(Duration::from_millis(500))
}

fn grant(role: &str, permission: &str) -> Change {
    Change::GrantPermission {
        organization: None,
        role: role.into(),
        permission: permission.into(),
    }
}

fn member(user: &str, role: &str) -> Change {
    Change::SetMembership {
        organization: "org_1".into(),
        user: user.into(),
        roles: vec![role.into()],
        groups: None,
        creator: false,
    }
}

/// Opens `dir`, retrying while a dropped engine's tail thread still holds
/// it for a moment.
fn reopen(dir: &std::path::Path) -> Engine {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Engine::open_with(dir, &initial(), EngineOptions::default().with_sync(false)) {
            Ok(engine) => return engine,
            Err(e) if Instant::now() < deadline => {
                eprintln!("reopen: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// Every acknowledged batch is in the stream at its revision, as sent, and
/// no revision was acknowledged twice.
fn assert_acknowledged_in_stream(redis: &Redis, key: &str, acks: &[(Vec<Change>, Outcome)]) {
    let entries: BTreeMap<u64, rolegraph::Entry> = redis
        .entries(key)
        .into_iter()
        .map(|e| (e.revision, e))
        .collect();
    let mut seen = BTreeSet::new();
    for (batch, outcome) in acks {
        assert!(
            seen.insert(outcome.revision),
            "revision {} acknowledged twice",
            outcome.revision
        );
        let entry = entries
            .get(&outcome.revision)
            .unwrap_or_else(|| panic!("acknowledged revision {} was lost", outcome.revision));
        assert_eq!(&entry.changes, batch);
    }
}

/// The child instance of the SIGKILL test (ignored in a normal run): joins
/// the fleet on its directory, writes, prints `accepted <revision>` after
/// each acknowledged batch; with a target revision, waits for it and prints
/// its state.
#[test]
#[ignore = "run by sigkilled_instance_restarts_and_catches_up as a child process"]
fn child_instance() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return;
    };
    let url = std::env::var(URL_VAR).unwrap();
    let engine = Engine::open(&dir, &initial()).unwrap();
    engine
        .join_fleet(
            FleetOptions::new(url)
                .with_key("kill")
                .with_instance("child")
                .with_checkpoint_every(20)
                .with_keep_checkpoints(1000),
        )
        .unwrap();
    println!("joined {}", engine.revision());
    let writes: usize = std::env::var(WRITES_VAR).unwrap().parse().unwrap();
    let mut rng = rolegraph_testkit::Rng::new(std::process::id().into());
    for _ in 0..writes {
        if let Ok(outcome) = engine.apply_batch(random_batch(&mut rng), ChangeMeta::by("child")) {
            if outcome.changed {
                println!("accepted {}", outcome.revision);
            }
        }
    }
    if let Ok(target) = std::env::var(TARGET_VAR) {
        let target: u64 = target.parse().unwrap();
        assert!(engine.wait_for_revision(target, Duration::from_secs(20)));
        println!("state {}", state(&engine));
    }
}

fn child(
    dir: &std::path::Path,
    redis: &Redis,
    writes: usize,
    target: Option<u64>,
) -> std::process::Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--ignored",
        "--exact",
        "child_instance",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(DIR_VAR, dir)
    .env(URL_VAR, redis.url())
    .env(WRITES_VAR, writes.to_string())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    if let Some(t) = target {
        cmd.env(TARGET_VAR, t.to_string());
    }
    cmd.spawn().unwrap()
}

#[test]
fn sigkilled_instance_restarts_and_catches_up() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let parent = Engine::new(&initial()).unwrap();
    parent.join_fleet(fleet(&redis, "kill", "parent")).unwrap();

    let mut proc = child(dir.path(), &redis, 100_000, None);
    let lines = BufReader::new(proc.stdout.take().unwrap()).lines();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // Write from the parent while the child writes, then kill the child
    // mid-stream.
    let mut rng = rolegraph_testkit::Rng::new(7);
    let mut child_acks = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child_acks.len() < 40 {
        assert!(
            Instant::now() < deadline,
            "the child acknowledged only {child_acks:?}"
        );
        let _ = parent.apply_batch(random_batch(&mut rng), ChangeMeta::by("parent"));
        // Leave the child (which fsyncs every batch) room to win a few.
        std::thread::sleep(Duration::from_millis(5));
        while let Ok(line) = rx.try_recv() {
            if let Some(rev) = line.strip_prefix("accepted ") {
                child_acks.push(rev.parse::<u64>().unwrap());
            }
        }
    }
    proc.kill().unwrap(); // SIGKILL
    proc.wait().unwrap();
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
        if let Some(rev) = line.strip_prefix("accepted ") {
            child_acks.push(rev.parse::<u64>().unwrap());
        }
    }
    // The fleet goes on without it.
    for _ in 0..30 {
        let _ = parent.apply_batch(random_batch(&mut rng), ChangeMeta::by("parent"));
    }
    let entries = redis.entries("kill");
    let top = entries.last().unwrap().revision;
    assert!(parent.wait_for_revision(top, Duration::from_secs(10)));
    // What the child acknowledged is in the stream, as its own.
    for rev in &child_acks {
        let e = entries.iter().find(|e| e.revision == *rev).unwrap();
        assert_eq!(e.actor.as_deref(), Some("child"), "revision {rev}");
    }

    // Restarted on its directory, it recovers locally and catches up.
    let mut proc = child(dir.path(), &redis, 0, Some(top));
    let out = BufReader::new(proc.stdout.take().unwrap());
    let mut child_state = None;
    for line in out.lines().map_while(Result::ok) {
        if let Some(s) = line.strip_prefix("state ") {
            child_state = Some(s.to_owned());
        }
    }
    assert!(proc.wait().unwrap().success());
    assert_eq!(
        child_state.expect("the child printed no state"),
        state(&parent)
    );
}

#[test]
fn redis_restarted_mid_run_loses_no_acknowledged_batch_and_applies_none_twice() {
    let mut redis = Redis::start();
    let a = Engine::new(&initial()).unwrap();
    let b = Engine::new(&initial()).unwrap();
    a.join_fleet(fleet(&redis, "restart", "a")).unwrap();
    b.join_fleet(fleet(&redis, "restart", "b")).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = [a.clone(), b.clone()]
        .into_iter()
        .enumerate()
        .map(|(i, engine)| {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut rng = rolegraph_testkit::Rng::new(100 + i as u64);
                let (mut acks, mut failed) = (Vec::new(), 0);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let batch = random_batch(&mut rng);
                    match engine.apply_batch(batch.clone(), ChangeMeta::by("w")) {
                        Ok(o) if o.changed => acks.push((batch, o)),
                        Err(ChangeError::Journal(_)) => failed += 1,
                        _ => {}
                    }
                }
                (acks, failed)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    redis.restart();
    std::thread::sleep(Duration::from_millis(600));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acks = Vec::new();
    let mut failed = 0;
    for w in writers {
        let (a, f) = w.join().unwrap();
        acks.extend(a);
        failed += f;
    }
    eprintln!(
        "acknowledged {}, failed during the restart {failed}",
        acks.len()
    );
    assert_acknowledged_in_stream(&redis, "restart", &acks);
    let entries = redis.entries("restart");
    let top = entries.last().unwrap().revision;
    for (k, e) in entries.iter().enumerate() {
        assert_eq!(e.revision, k as u64 + 1);
    }
    assert!(a.wait_for_revision(top, Duration::from_secs(10)));
    assert!(b.wait_for_revision(top, Duration::from_secs(10)));
    assert_eq!(state(&a), state(&b));
    // Nothing applied twice: replaying the stream alone gives the same.
    let alone = Engine::new(&initial()).unwrap();
    for e in &entries {
        alone
            .apply_batch(e.changes.clone(), ChangeMeta::default().at(e.at_ms))
            .unwrap();
    }
    assert_eq!(state(&alone), state(&a));
}

#[test]
fn an_instance_stopped_past_the_trim_boots_from_a_checkpoint() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let opts = || {
        fleet(&redis, "trim", "x")
            .with_checkpoint_every(10)
            .with_keep_checkpoints(1)
    };
    let a = reopen(dir.path());
    a.join_fleet(opts()).unwrap();
    a.apply(grant("viewer", "billing:read"), ChangeMeta::by("a"))
        .unwrap();
    a.apply(member("u1", "viewer"), ChangeMeta::by("a"))
        .unwrap();
    drop(a);

    let b = Engine::new(&initial()).unwrap();
    b.join_fleet(opts()).unwrap();
    let mut rng = rolegraph_testkit::Rng::new(3);
    while b.revision() < 60 {
        let _ = b.apply_batch(random_batch(&mut rng), ChangeMeta::by("b"));
    }
    // The tail publishes checkpoints; wait for one past 50 and the trim.
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis.entries("trim").first().unwrap().revision <= 2 {
        assert!(Instant::now() < deadline, "the stream was never trimmed");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Read a consistent pair: the checkpoints did not move around the read.
    let (first, checkpoints) = loop {
        let before = redis.checkpoints("trim");
        let first = redis.entries("trim").first().unwrap().revision;
        if redis.checkpoints("trim") == before {
            break (first, before);
        }
    };
    // The trim keeps the oldest kept checkpoint's own entry and everything
    // after it (`XTRIM MINID`), so the stream never starts above it; it may
    // start below it for a moment, between dropping the older checkpoints
    // and trimming the stream.
    assert_eq!(checkpoints.len(), 1);
    assert!(first <= checkpoints[0], "trimmed above the checkpoint");

    let a = reopen(dir.path());
    assert_eq!(a.revision(), 2);
    a.join_fleet(opts()).unwrap();
    assert!(a.wait_for_revision(b.revision(), Duration::from_secs(10)));
    assert_eq!(state(&a), state(&b));
    assert_eq!(a.stats().fleet_checkpoint_loads, 1);
    // The local journal kept the fleet's checkpoint: a restart alone (Redis
    // out of reach) serves the same last-known-good state.
    let rev = a.revision();
    let expected = state(&a);
    drop(a);
    let alone = reopen(dir.path());
    assert_eq!((alone.revision(), state(&alone)), (rev, expected));
}

#[test]
fn redis_down_reads_answer_writes_fail_cleanly_and_all_converge_after() {
    let mut redis = Redis::start();
    let a = Engine::new(&initial()).unwrap();
    let b = Engine::new(&initial()).unwrap();
    a.join_fleet(fleet(&redis, "down", "a")).unwrap();
    b.join_fleet(fleet(&redis, "down", "b")).unwrap();
    a.apply(member("u1", "editor"), ChangeMeta::by("a"))
        .unwrap();
    assert!(b.wait_for_revision(1, Duration::from_secs(5)));

    redis.kill();
    let started = Instant::now();
    let err = b
        .apply(member("u2", "viewer"), ChangeMeta::by("b"))
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    let ChangeError::Journal(message) = &err else {
        panic!("{err:?}");
    };
    assert!(
        message.starts_with("the fleet's log is unreachable: redis at `127.0.0.1:"),
        "{message}"
    );
    assert!(!message.contains('\n'));
    // Reads keep serving the last snapshot.
    assert_eq!(b.revision(), 1);
    let m = b.snapshot().membership("org_1", "u1").cloned().unwrap();
    assert_eq!(m.roles, ["editor"]);
    // The tail reports it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while a.stats().fleet_error.is_none() {
        assert!(Instant::now() < deadline, "the outage is not in the stats");
        std::thread::sleep(Duration::from_millis(20));
    }

    redis.restart();
    // The first write after Redis is back succeeds: a connection that died
    // with the old process is replaced, not reported.
    let out = b
        .apply(member("u2", "viewer"), ChangeMeta::by("b"))
        .unwrap();
    assert_eq!(out.revision, 2);
    assert!(a.wait_for_revision(2, Duration::from_secs(10)));
    assert_eq!(state(&a), state(&b));
    let deadline = Instant::now() + Duration::from_secs(5);
    while a.stats().fleet_error.is_some() {
        assert!(Instant::now() < deadline, "{:?}", a.stats().fleet_error);
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A stream key, the id to write at, the fields.
type BadEntry = (&'static str, &'static str, Vec<(&'static str, String)>);

#[test]
fn a_corrupt_or_foreign_entry_stops_the_tail_at_its_id() {
    let redis = Redis::start();
    let bad: [BadEntry; 4] = [
        ("garbage", "3-1", vec![("v", "1".into()), ("entry", "{not json".into())]),
        ("foreign", "3-1", vec![("kind", "someone else's".into())]),
        ("foreign-id", "3-7", vec![("v", "1".into()), ("entry", "{}".into())]),
        (
            "diverging",
            "3-1",
            vec![
                ("v", "1".into()),
                (
                    "entry",
                    serde_json::json!({
                        "revision": 3, "at_ms": 1,
                        "changes": [{"op": "set_membership", "organization": "org_1", "user": "u9", "roles": ["no-such-role"]}]
                    })
                    .to_string(),
                ),
            ],
        ),
    ];
    for (key, id, fields) in bad {
        let a = Engine::new(&initial()).unwrap();
        let b = Engine::new(&initial()).unwrap();
        a.join_fleet(fleet(&redis, key, "a")).unwrap();
        b.join_fleet(fleet(&redis, key, "b")).unwrap();
        a.apply(member("u1", "viewer"), ChangeMeta::by("a"))
            .unwrap();
        a.apply(member("u2", "viewer"), ChangeMeta::by("a"))
            .unwrap();
        assert!(b.wait_for_revision(2, Duration::from_secs(5)));
        let mut con = redis.connection().unwrap();
        let mut xadd = redis::cmd("XADD");
        xadd.arg(format!("{key}:log")).arg(id);
        for (k, v) in &fields {
            xadd.arg(*k).arg(v);
        }
        xadd.query::<String>(&mut con).unwrap();
        // Good entries after it are not applied either.
        let deadline = Instant::now() + Duration::from_secs(5);
        while b.stats().fleet_stopped_at.is_none() {
            assert!(Instant::now() < deadline, "{key}: the tail did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
        let stats = b.stats();
        assert_eq!(stats.fleet_stopped_at.as_deref(), Some(id), "{key}");
        let error = stats.fleet_error.unwrap();
        assert!(
            error.starts_with(&format!("the fleet's log entry `{id}` is refused (")),
            "{key}: {error}"
        );
        assert_eq!(b.revision(), 2, "{key}: applied garbage");
        // A writer there cannot write past it either.
        let err = a
            .apply(member("u3", "viewer"), ChangeMeta::by("a"))
            .unwrap_err();
        assert!(
            err.to_string().contains(&format!("`{id}` is refused")),
            "{key}: {err}"
        );
        assert_eq!(a.revision(), 2);
        // Reads still answer.
        assert!(b.snapshot().membership("org_1", "u2").is_some());
    }
}

#[test]
fn joining_a_redis_that_lost_acknowledged_batches_is_refused() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let a = reopen(dir.path());
    a.join_fleet(fleet(&redis, "lost", "a")).unwrap();
    for user in ["u1", "u2", "u3"] {
        a.apply(member(user, "viewer"), ChangeMeta::by("a"))
            .unwrap();
    }
    drop(a);
    drop(redis);
    // Another Redis, where the fleet started over.
    let other = Redis::start();
    let b = Engine::new(&initial()).unwrap();
    b.join_fleet(fleet(&other, "lost", "b")).unwrap();
    b.apply(member("u1", "admin"), ChangeMeta::by("b")).unwrap();
    let a = reopen(dir.path());
    let err = a.join_fleet(fleet(&other, "lost", "a")).unwrap_err();
    assert_eq!(
        err,
        FleetError::Behind {
            top: 1,
            revision: 3
        }
    );
    assert_eq!(
        err.to_string(),
        "the fleet's log ends at revision `1`, below this instance's revision `3`: it lost acknowledged batches"
    );
    // It goes on alone, serving its own state.
    assert_eq!(a.revision(), 3);
}

/// Waits up to 20 s for `done`.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "{what} never happened");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_checkpoint_the_fleet_refuses_is_reported_retried_and_published_once_it_can_be() {
    let redis = Redis::start();
    let mut admin = redis.connection().unwrap();
    let a = Engine::new(&initial()).unwrap();
    a.join_fleet(
        fleet(&redis, "refused", "a")
            .with_checkpoint_every(5)
            .with_poll(Duration::from_millis(20)),
    )
    .unwrap();
    let published_at_join = redis.checkpoints("refused");
    // A real refusal: Redis denies `SET` (how a checkpoint is stored) to
    // the fleet's user; appends (a script) and reads still work.
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg("default")
        .arg("-set")
        .query::<()>(&mut admin)
        .unwrap();
    for k in 0..12 {
        a.apply(member(&format!("u{k}"), "viewer"), ChangeMeta::by("a"))
            .unwrap();
    }
    eventually("a reported failure", || {
        a.stats().fleet_checkpoint_failures > 0
    });
    let stats = a.stats();
    let message = stats.last_fleet_checkpoint_error.unwrap();
    assert!(
        message.starts_with("cannot publish the checkpoint of revision `"),
        "{message}"
    );
    assert!(!message.contains('\n'), "{message}");
    assert_eq!(redis.checkpoints("refused"), published_at_join);
    // Writes go on meanwhile, and the stream is not trimmed.
    let out = a
        .apply(member("u12", "viewer"), ChangeMeta::by("a"))
        .unwrap();
    assert_eq!(out.revision, 13);
    assert_eq!(redis.entries("refused").len(), 13);
    // Backed off: the waits double (40 ms, 80 ms, … up to 1.28 s), so the
    // next 2 s see a few attempts, not one per poll (without the backoff
    // this machine made about one every 120 ms).
    let before = a.stats().fleet_checkpoint_failures;
    std::thread::sleep(Duration::from_secs(2));
    let attempts = a.stats().fleet_checkpoint_failures - before;
    assert!(attempts <= 8, "{attempts} attempts in 2 s");

    // Allowed again: the next attempt publishes and the error goes.
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg("default")
        .arg("+set")
        .query::<()>(&mut admin)
        .unwrap();
    eventually("a published checkpoint", || {
        redis.checkpoints("refused").iter().any(|r| *r >= 10)
    });
    eventually("the error cleared", || {
        a.stats().last_fleet_checkpoint_error.is_none()
    });
    // A new instance boots from it and agrees.
    let b = Engine::new(&initial()).unwrap();
    b.join_fleet(fleet(&redis, "refused", "b")).unwrap();
    assert!(b.wait_for_revision(13, Duration::from_secs(10)));
    assert_eq!(state(&b), state(&a));
}
