//! The message of a guard the policy cannot meet stays one short line however
//! many and however long the guard's names are.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test fails on any error"
)]

use rolegraph::{AssignmentGuard, ChangeError, Engine, Policy};

fn policy() -> Policy {
    let mut p = Policy::new();
    p.permission("docs:read");
    p.role("viewer").grant("docs:read");
    p
}

fn reason(guard: AssignmentGuard) -> String {
    let engine = Engine::new(&policy()).unwrap();
    match engine.set_assignment_guard(guard).unwrap_err() {
        ChangeError::GuardUnavailable { reason } => reason,
        other => panic!("expected guard unavailable, got {other:?}"),
    }
}

#[test]
fn a_short_guard_is_listed_in_full() {
    assert_eq!(
        reason(AssignmentGuard {
            roles: vec![],
            permissions: vec!["a.b".into(), "c.d".into()],
        }),
        "none of the guard's roles (none) or permissions (`a.b`, `c.d`) exists in the policy"
    );
}

#[test]
fn long_names_are_cut_with_their_length_and_many_names_are_counted() {
    let long = "r".repeat(1_000_000);
    let many: Vec<String> = (0..10_000).map(|i| format!("p{i}.x")).collect();
    let reason = reason(AssignmentGuard {
        roles: vec![long, "admin".into()],
        permissions: many,
    });
    assert_eq!(
        reason,
        format!(
            "none of the guard's roles (`{}…` (1000000 characters), `admin`) or permissions \
             (`p0.x`, `p1.x`, `p2.x`, `p3.x`, `p4.x`, `p5.x`, `p6.x`, `p7.x` and 9992 more) \
             exists in the policy",
            "r".repeat(64)
        )
    );
}
