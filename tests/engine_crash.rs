//! A process killed at any instant loses no acknowledged change, and leaves
//! nothing half-applied.
//!
//! The test runs its own binary again as a child (`child_writer`, ignored in
//! a normal run) that opens a durable engine on a directory and applies a
//! deterministic workload, printing `accepted <revision>` after each apply
//! returns. The parent kills it with `SIGKILL` at a random moment, reopens
//! the directory, and checks the recovered state against the same workload
//! replayed in memory. Each directory goes through several crash–recover
//! cycles, so crashes also land in recovery, in checkpoints and in the
//! first creation of the files.
//!
//! Reproduce a run with `ROLEGRAPH_CRASH_SEED=<seed>` (the seed is printed).

#![cfg(unix)]
#![expect(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    reason = "helpers outside #[test] functions may fail the test"
)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rolegraph::{Change, ChangeMeta, Engine, EngineOptions, Policy, Role, Snapshot};
use tempfile::TempDir;

/// The environment variable that gives the child its directory.
const DIR_VAR: &str = "ROLEGRAPH_CRASH_DIR";
/// Directories, and crash–recover cycles on each.
const DIRS: usize = 3;
const CYCLES: usize = 10;
/// How many permissions `counter` cycles through.
const COUNTER_PERMS: u64 = 7;
const BASE_ROLES: [&str; 3] = ["viewer", "editor", "admin"];

fn initial() -> Policy {
    let mut p = Policy::new();
    p.permission("docs:read").permission("docs:write");
    for i in 0..COUNTER_PERMS {
        p.permission(format!("p{i}"));
    }
    p.role("viewer").grant("docs:read");
    p.role("editor").extends("viewer").grant("docs:write");
    p.role("admin").extends("editor");
    p.role("counter").grant("p0");
    p.role("twin").extends("counter");
    p.role("grower");
    p.organization("org_1");
    p.organization("org_2");
    p
}

/// Sync on (it is the point), and frequent checkpoints so that kills land
/// in them too.
fn options() -> EngineOptions {
    let mut o = EngineOptions::default();
    o.checkpoint_every = 5;
    o.sync = true;
    o
}

fn set_member(org: &str, user: &str, role: &str) -> Change {
    Change::SetMembership {
        organization: org.into(),
        user: user.into(),
        roles: vec![role.into()],
        groups: None,
        creator: false,
    }
}

/// The workload: step `k` is published as revision `k`, and each step
/// changes something, so presence is checkable step by step.
fn step(k: u64) -> Vec<Change> {
    match k % 4 {
        // A webhook: the delivery record (replaying it twice would be
        // refused as a duplicate) and a membership.
        0 => vec![
            Change::RecordDelivery {
                id: format!("d{k}"),
                received_ms: k,
                entities: vec![],
                retention_ms: u64::MAX,
            },
            set_member("org_1", &format!("u{k}"), BASE_ROLES[(k / 4 % 3) as usize]),
        ],
        // Replace one role's grants (never the same twice in a row).
        1 => vec![Change::UpdateRole {
            organization: None,
            name: "counter".into(),
            display_name: None,
            description: None,
            permissions: Some(vec![format!("p{}", k % COUNTER_PERMS)]),
            extends: None,
        }],
        // A batch: a permission, a role granting it, a member holding it.
        2 => {
            let mut role = Role::named(format!("r{k}"));
            role.extends("viewer").grant(format!("n{k}"));
            vec![
                Change::CreatePermission {
                    name: format!("n{k}"),
                    description: None,
                },
                Change::CreateRole {
                    organization: None,
                    role,
                },
                set_member("org_1", &format!("u{k}"), &format!("r{k}")),
            ]
        }
        // A batch: a new grant, the previous step's permission deleted
        // (and with it the grant of `r{k-1}`), a membership elsewhere.
        _ => vec![
            Change::CreatePermission {
                name: format!("g{k}"),
                description: None,
            },
            Change::GrantPermission {
                organization: None,
                role: "grower".into(),
                permission: format!("g{k}"),
            },
            Change::DeletePermission {
                name: format!("n{}", k - 1),
            },
            set_member("org_2", &format!("u{k}"), "grower"),
        ],
    }
}

fn meta(k: u64) -> ChangeMeta {
    ChangeMeta::by(format!("writer-{}", k % 3)).at(k)
}

/// The child: applies the workload from the recovered revision on, until
/// killed.
#[test]
#[ignore = "run as a child process by crash_recovery_keeps_every_acknowledged_change"]
fn child_writer() {
    let Some(dir) = std::env::var_os(DIR_VAR) else {
        return;
    };
    let engine = Engine::open_with(&dir, &initial(), options()).unwrap();
    let mut out = std::io::stdout().lock();
    let start = engine.revision();
    // On a line of its own: libtest may have printed `test child_writer ... `.
    writeln!(out, "\n@opened {start}").unwrap();
    out.flush().unwrap();
    // Bounded, in case the parent dies without killing it.
    for k in start + 1..start + 20_000 {
        let outcome = engine.apply_batch(step(k), meta(k)).unwrap();
        assert_eq!(outcome.revision, k);
        writeln!(out, "@accepted {k}").unwrap();
        out.flush().unwrap();
    }
}

/// A child process that is killed when dropped, so a failing parent leaves
/// no writer behind.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Everything the engine answers, by name.
fn answers(s: &Snapshot, users: u64) -> Vec<String> {
    let mut out = vec![
        format!("revision {}", s.revision()),
        format!("permissions {:?}", s.permissions().collect::<Vec<_>>()),
        format!("memberships {}", s.memberships_len()),
    ];
    for r in s.roles() {
        let org = s.role_organization(r);
        let eff: BTreeSet<String> = s
            .effective_permissions(org, s.role_name(r))
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        out.push(format!("role {org:?}/{} {eff:?}", s.role_name(r)));
    }
    for k in 1..=users {
        let user = format!("u{k}");
        for (org, m) in s.memberships_of(&user) {
            let principal = s.user_principal(org, &user);
            let granted = principal.permissions();
            out.push(format!("member {org}/{user} {:?} {granted:?}", m.roles));
        }
    }
    out.sort();
    out
}

/// Step by step: what is there for every applied step, nothing of the steps
/// after it.
fn check_steps(s: &Snapshot, recovered: u64) {
    let roles = |org: &str, user: &str| s.membership(org, user).map(|m| m.roles.clone());
    for k in 1..=recovered {
        let user = format!("u{k}");
        match k % 4 {
            0 => assert_eq!(
                roles("org_1", &user),
                Some(vec![BASE_ROLES[(k / 4 % 3) as usize].to_owned()]),
                "step {k}"
            ),
            1 => {}
            2 => {
                let role = s.role(None, &format!("r{k}"));
                assert!(role.is_some(), "step {k}: role");
                assert_eq!(roles("org_1", &user), Some(vec![format!("r{k}")]), "{k}");
                // Step k+1 deletes the permission again.
                assert_eq!(
                    s.permission_id(&format!("n{k}")).is_some(),
                    k == recovered,
                    "step {k}: permission"
                );
                assert_eq!(
                    s.role_has_permission(role.unwrap(), &format!("n{k}")),
                    k == recovered
                );
            }
            _ => {
                let grower = s.role(None, "grower").unwrap();
                assert!(s.role_has_permission(grower, &format!("g{k}")), "step {k}");
                assert_eq!(roles("org_2", &user), Some(vec!["grower".to_owned()]));
            }
        }
    }
    // The counter shows the last step that set it.
    let last = (1..=recovered).rev().find(|k| k % 4 == 1).unwrap_or(0);
    let counter = s.role(None, "counter").unwrap();
    let twin = s.role(None, "twin").unwrap();
    for i in 0..COUNTER_PERMS {
        let p = format!("p{i}");
        let expected = i == last % COUNTER_PERMS;
        assert_eq!(s.role_has_permission(counter, &p), expected, "counter {p}");
        assert_eq!(s.role_has_permission(twin, &p), expected, "twin {p}");
    }
    for k in recovered + 1..=recovered + 8 {
        let user = format!("u{k}");
        assert_eq!(
            s.memberships_of(&user).count(),
            0,
            "step {k} is not applied"
        );
        assert!(s.role(None, &format!("r{k}")).is_none(), "step {k}");
        assert!(s.permission_id(&format!("n{k}")).is_none(), "step {k}");
        assert!(s.permission_id(&format!("g{k}")).is_none(), "step {k}");
    }
}

/// Reopens `dir` after a kill and checks it against `mirror`, the workload
/// applied in memory. `acknowledged` is the last revision the child (or
/// the parent) saw accepted. Returns the recovered revision, after the
/// parent has applied one more step itself.
fn recover_and_check(dir: &Path, acknowledged: u64, opened: bool, mirror: &Engine) -> u64 {
    let engine = Engine::open_with(dir, &initial(), options()).unwrap();
    let recovered = engine.revision();
    // Everything acknowledged is there; at most the one change the child
    // was writing when it died is there too, unacknowledged.
    assert!(
        recovered == acknowledged || (opened && recovered == acknowledged + 1),
        "recovered revision {recovered}, last acknowledged {acknowledged}"
    );
    while mirror.revision() < recovered {
        let k = mirror.revision() + 1;
        mirror.apply_batch(step(k), meta(k)).unwrap();
    }
    let s = engine.snapshot();
    check_steps(&s, recovered);
    for k in (1..=recovered + 8).filter(|k| k % 4 == 0) {
        assert_eq!(
            engine.delivered(&format!("d{k}")),
            k <= recovered,
            "delivery d{k}"
        );
    }
    assert_eq!(engine.deliveries_len() as u64, recovered / 4);
    let expected = answers(&mirror.snapshot(), recovered + 8);
    assert_eq!(answers(&s, recovered + 8), expected);
    assert_eq!(engine.policy(), mirror.policy());
    // The journal holds exactly the workload, with its audit data.
    // (The in-memory mirror keeps only the latest 10,000 batches.)
    let journal = engine.entries_since(0).unwrap();
    let memory = mirror.entries_since(0).unwrap();
    assert_eq!(journal.len() as u64, recovered);
    assert!(journal.ends_with(&memory) && !memory.is_empty() || recovered == 0);
    drop(engine);

    // Reopening again is stable, and the engine takes new changes.
    let engine = Engine::open_with(dir, &initial(), options()).unwrap();
    assert_eq!(engine.revision(), recovered);
    assert_eq!(answers(&engine.snapshot(), recovered + 8), expected);
    let next = recovered + 1;
    assert_eq!(
        engine.apply_batch(step(next), meta(next)).unwrap().revision,
        next
    );
    mirror.apply_batch(step(next), meta(next)).unwrap();
    check_steps(&engine.snapshot(), next);
    recovered
}

enum Event {
    Opened(u64),
    Accepted(u64),
}

#[test]
fn crash_recovery_keeps_every_acknowledged_change() {
    let seed = std::env::var("ROLEGRAPH_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("ROLEGRAPH_CRASH_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let exe = std::env::current_exe().unwrap();
    let started = Instant::now();
    let (mut kills, mut early, mut mid_write, mut unacknowledged, mut changes) = (0, 0, 0, 0, 0);

    for _ in 0..DIRS {
        let tmp = TempDir::new().unwrap();
        let mirror = Engine::new(&initial()).unwrap();
        // The last revision known to be on disk: verified and extended by
        // the parent after each crash.
        let mut known = 0;
        for _ in 0..CYCLES {
            let mut child = Command::new(&exe)
                .args([
                    "--exact",
                    "child_writer",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(DIR_VAR, tmp.path())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let stdout = child.stdout.take().unwrap();
            let mut stderr = child.stderr.take().unwrap();
            let mut child = Killed(child);
            let (tx, rx) = mpsc::channel();
            let reader = std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let line = line.unwrap();
                    let event = if let Some(r) = line.strip_prefix("@opened ") {
                        Event::Opened(r.parse().unwrap())
                    } else if let Some(r) = line.strip_prefix("@accepted ") {
                        Event::Accepted(r.parse().unwrap())
                    } else {
                        continue;
                    };
                    if tx.send(event).is_err() {
                        break;
                    }
                }
            });

            // One kill in five lands anywhere from start-up on (in the
            // recovery or the first creation of the files); the others
            // while the workload runs.
            let mut opened = false;
            if rng.random_range(0..5) == 0 {
                std::thread::sleep(Duration::from_micros(rng.random_range(0..8_000)));
            } else {
                match rx.recv_timeout(Duration::from_secs(30)) {
                    Ok(Event::Opened(r)) => {
                        assert_eq!(r, known, "the child recovered {r}");
                        opened = true;
                    }
                    _ => {
                        drop(child);
                        panic!("the child did not start: {}", read_all(&mut stderr));
                    }
                }
                std::thread::sleep(Duration::from_micros(rng.random_range(0..120_000)));
            }
            if let Some(status) = child.0.try_wait().unwrap() {
                panic!(
                    "the child exited by itself ({status}): {}",
                    read_all(&mut stderr)
                );
            }
            child.0.kill().unwrap();
            let status = child.0.wait().unwrap();
            assert_eq!(status.signal(), Some(9), "{status}");
            reader.join().unwrap();
            kills += 1;

            // What the child reported: where it started, then every
            // revision in order.
            let mut acknowledged = known;
            for event in rx.try_iter() {
                match event {
                    Event::Opened(r) => {
                        assert_eq!(r, known);
                        opened = true;
                    }
                    Event::Accepted(r) => {
                        assert!(opened);
                        assert_eq!(r, acknowledged + 1, "accepted in order");
                        acknowledged = r;
                    }
                }
            }
            changes += acknowledged - known;
            let recovered = recover_and_check(tmp.path(), acknowledged, opened, &mirror);
            if !opened {
                early += 1;
            } else if acknowledged > known {
                mid_write += 1;
            }
            if recovered > acknowledged {
                unacknowledged += 1;
            }
            known = recovered + 1;
        }
    }
    eprintln!(
        "{kills} kills ({early} before the engine opened, {mid_write} after acknowledged \
         changes, {unacknowledged} with a journaled but unacknowledged change), {changes} \
         acknowledged changes, {:?}",
        started.elapsed()
    );
    assert_eq!(kills, DIRS * CYCLES);
    assert!(
        mid_write >= kills / 2,
        "most kills should land while the workload runs: {mid_write} of {kills}"
    );
}

fn read_all(stderr: &mut impl Read) -> String {
    let mut text = String::new();
    stderr.read_to_string(&mut text).unwrap();
    text
}
