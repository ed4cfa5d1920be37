//! At-least-once, out-of-order delivery: the same events shuffled into every
//! order end in the same state as in order. The sender is simulated: an
//! event answered "retry later" is delivered again after the others.

// Test helpers outside `#[test]` functions may fail loudly too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod webhook_common;

use std::collections::VecDeque;

use rolegraph::scalekit::{Event, Handler, Source};
use rolegraph::{Engine, Policy};
use webhook_common::*;

/// Every permutation of `0..n` (Heap's algorithm, iterative).
fn permutations(n: usize) -> Vec<Vec<usize>> {
    let mut a: Vec<usize> = (0..n).collect();
    let mut out = vec![a.clone()];
    let mut c = vec![0; n];
    let mut i = 0;
    while i < n {
        if c[i] < i {
            if i % 2 == 0 {
                a.swap(0, i);
            } else {
                a.swap(c[i], i);
            }
            out.push(a.clone());
            c[i] += 1;
            i = 0;
        } else {
            c[i] = 0;
            i += 1;
        }
    }
    out
}

/// Delivers `events` in `order` the way a retrying sender would; returns
/// the final state as text (policy and memberships).
fn run(events: &[(String, Event)], order: &[usize], source: Option<&Policy>) -> String {
    let engine = Engine::new(&Policy::new()).unwrap();
    let mut handler = Handler::new(engine, verifier());
    if let Some(s) = source {
        handler = handler.with_source(s.clone());
    }
    let mut queue: VecDeque<usize> = order.iter().copied().collect();
    let mut stuck = 0;
    while let Some(i) = queue.pop_front() {
        let (id, event) = &events[i];
        let out = handler.apply_event(id, event, now());
        match out.label() {
            "retry_later" => {
                queue.push_back(i);
                stuck += 1;
                assert!(
                    stuck <= queue.len(),
                    "no progress in order {order:?}: {}",
                    out.body()
                );
            }
            "applied" | "stale" => stuck = 0,
            other => panic!("order {order:?}: event {i} was {other}: {}", out.body()),
        }
    }
    let snap = handler.engine().snapshot();
    let members: Vec<String> = snap
        .memberships_of("ann@example.com")
        .map(|(org, m)| format!("{org}: {:?}", m))
        .collect();
    format!(
        "{}\n{}",
        handler.engine().policy().to_json(),
        members.join("\n")
    )
}

fn parsed(bodies: Vec<Vec<u8>>) -> Vec<(String, Event)> {
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, b)| (format!("msg_{i}"), Event::parse(&b).unwrap()))
        .collect()
}

fn check_every_order(events: &[(String, Event)], source: Option<&Policy>, expected: &str) {
    let in_order: Vec<usize> = (0..events.len()).collect();
    let reference = run(events, &in_order, source);
    assert!(reference.contains(expected), "{reference}");
    let orders = permutations(events.len());
    assert_eq!(orders.len(), (1..=events.len()).product::<usize>());
    for order in orders {
        assert_eq!(run(events, &order, source), reference, "order {order:?}");
    }
}

/// Roles created and re-based, a user's roles set twice, a role deleted:
/// without a source.
#[test]
fn every_order_gives_the_in_order_state_without_a_source() {
    let events = parsed(vec![
        role_event("created", "e1", 1, "reader", None),
        role_event("created", "e2", 2, "writer", Some("reader")),
        user_event("updated", "e3", 3, "org_1", "ann", &["writer"], true),
        user_event(
            "updated",
            "e4",
            4,
            "org_1",
            "ann",
            &["reader", "writer"],
            true,
        ),
        role_event("updated", "e5", 5, "writer", None),
        role_event("deleted", "e6", 6, "reader", None),
    ]);
    check_every_order(&events, None, r#""name": "writer""#);
    // The in-order state, spelled out.
    let state = run(&events, &[0, 1, 2, 3, 4, 5], None);
    assert!(!state.contains(r#""name": "reader""#), "{state}");
    assert!(state.contains(r#"roles: ["writer"]"#), "{state}");
}

/// The same with a source (whose state is the final one): permissions are
/// fetched, and a deletion that finds dependents resyncs.
#[test]
fn every_order_gives_the_in_order_state_with_a_source() {
    let mut upstream = Policy::new();
    upstream.permissions.push(rolegraph::Permission {
        name: "docs:write".into(),
        description: Some("may docs:write".into()),
    });
    upstream
        .role("writer")
        .grant("docs:write")
        .display_name("WRITER")
        .description("the writer role");
    assert!(
        upstream
            .fetch_role_permissions(None, "writer")
            .unwrap()
            .len()
            == 1
    );
    let events = parsed(vec![
        permission_event("created", "e0", 0, "docs:write"),
        role_event("created", "e1", 1, "reader", None),
        role_event("created", "e2", 2, "writer", Some("reader")),
        user_event(
            "updated",
            "e4",
            4,
            "org_1",
            "ann",
            &["reader", "writer"],
            true,
        ),
        role_event("updated", "e5", 5, "writer", None),
        role_event("deleted", "e6", 6, "reader", None),
    ]);
    check_every_order(&events, Some(&upstream), r#""docs:write""#);
    let state = run(&events, &[0, 1, 2, 3, 4, 5], Some(&upstream));
    assert!(state.contains(r#"roles: ["writer"]"#), "{state}");
}

#[test]
fn heaps_algorithm_yields_distinct_orders() {
    let mut all = permutations(4);
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 24);
}

/// A source that takes a while to answer, so that deliveries fetching from
/// it overlap with others being applied.
struct Sleepy(Policy);

impl Source for Sleepy {
    fn fetch_role_permissions(
        &self,
        org: Option<&str>,
        name: &str,
    ) -> Result<Vec<rolegraph::Permission>, rolegraph::scalekit::SourceError> {
        std::thread::sleep(std::time::Duration::from_millis(3));
        self.0.fetch_role_permissions(org, name)
    }
    fn fetch_role(
        &self,
        org: Option<&str>,
        name: &str,
    ) -> Result<Option<rolegraph::Role>, rolegraph::scalekit::SourceError> {
        std::thread::sleep(std::time::Duration::from_millis(3));
        Source::fetch_role(&self.0, org, name)
    }
    fn fetch_policy(&self) -> Result<Policy, rolegraph::scalekit::SourceError> {
        std::thread::sleep(std::time::Duration::from_millis(3));
        Ok(self.0.clone())
    }
}

/// Delivers `events` from 4 threads at once, in `order`, each "retry later"
/// answer going back to the end of the shared queue; returns the final state.
fn run_concurrently(events: &[(String, Event)], order: &[usize], source: &Policy) -> String {
    use std::sync::{Arc, Mutex};
    let engine = Engine::new(&Policy::new()).unwrap();
    let handler = Arc::new(Handler::new(engine, verifier()).with_source(Sleepy(source.clone())));
    let queue = Arc::new(Mutex::new(
        order.iter().copied().collect::<VecDeque<usize>>(),
    ));
    let events = Arc::new(events.to_vec());
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (handler, queue, events) = (
                Arc::clone(&handler),
                Arc::clone(&queue),
                Arc::clone(&events),
            );
            std::thread::spawn(move || {
                for _ in 0..1000 {
                    let Some(i) = queue.lock().unwrap().pop_front() else {
                        return;
                    };
                    let (id, event) = &events[i];
                    let out = handler.apply_event(id, event, now());
                    match out.label() {
                        "retry_later" => queue.lock().unwrap().push_back(i),
                        "applied" | "stale" | "duplicate" => {}
                        other => panic!("event {i} was {other}: {}", out.body()),
                    }
                }
                panic!("no progress");
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let snap = handler.engine().snapshot();
    let members: Vec<String> = snap
        .memberships_of("ann@example.com")
        .map(|(org, m)| format!("{org}: {:?}", m))
        .collect();
    format!(
        "{}\n{}",
        handler.engine().policy().to_json(),
        members.join("\n")
    )
}

/// Fetches happen outside the handler's lock, so deliveries now overlap:
/// concurrent deliveries in many orders still end in the in-order state.
#[test]
fn concurrent_deliveries_with_a_slow_source_give_the_in_order_state() {
    let mut upstream = Policy::new();
    upstream.permissions.push(rolegraph::Permission {
        name: "docs:write".into(),
        description: Some("may docs:write".into()),
    });
    upstream
        .role("writer")
        .grant("docs:write")
        .display_name("WRITER")
        .description("the writer role");
    let events = parsed(vec![
        permission_event("created", "e0", 0, "docs:write"),
        role_event("created", "e1", 1, "reader", None),
        role_event("created", "e2", 2, "writer", Some("reader")),
        user_event("updated", "e3", 3, "org_1", "ann", &["writer"], true),
        user_event(
            "updated",
            "e4",
            4,
            "org_1",
            "ann",
            &["reader", "writer"],
            true,
        ),
        role_event("updated", "e5", 5, "writer", None),
        role_event("deleted", "e6", 6, "reader", None),
    ]);
    let reference = run(&events, &[0, 1, 2, 3, 4, 5, 6], Some(&upstream));
    // Every 97th of the 5,040 orders (52 orders), each from 4 threads.
    for order in permutations(events.len()).into_iter().step_by(97) {
        assert_eq!(
            run_concurrently(&events, &order, &upstream),
            reference,
            "order {order:?}"
        );
    }
}
