//! The public types can cross threads, and the shared ones are cheap to clone
//! (aho-corasick's `testoibits`).

use std::panic::{RefUnwindSafe, UnwindSafe};

use rolegraph::{
    Claims, CompileError, Cycle, EffectivePermission, Explanation, LoadError, LookupError,
    PermissionId, Policy, Principal, Problem, Requirement, RoleId, Snapshot, Warning,
};

fn send_sync<T: Send + Sync + 'static>() {}
fn clone<T: Clone>() {}
fn unwind_safe<T: UnwindSafe + RefUnwindSafe>() {}

#[test]
fn public_types_are_send_and_sync() {
    send_sync::<Snapshot>();
    send_sync::<Principal>();
    send_sync::<Requirement>();
    send_sync::<Policy>();
    send_sync::<Claims>();
    send_sync::<CompileError>();
    send_sync::<Problem>();
    send_sync::<Cycle>();
    send_sync::<Explanation>();
    send_sync::<EffectivePermission>();
    send_sync::<LookupError>();
    send_sync::<LoadError>();
    send_sync::<Warning>();
    send_sync::<RoleId>();
    send_sync::<PermissionId>();
}

#[test]
fn shared_types_are_clone() {
    clone::<Snapshot>();
    clone::<Requirement>();
    clone::<Principal>();
    clone::<Policy>();
    clone::<CompileError>();
}

#[test]
fn query_types_are_unwind_safe() {
    unwind_safe::<Snapshot>();
    unwind_safe::<Principal>();
    unwind_safe::<Policy>();
}

#[test]
fn errors_are_std_errors() {
    fn error<E: std::error::Error + Send + Sync + 'static>() {}
    error::<CompileError>();
    error::<LookupError>();
    error::<LoadError>();
}

/// A snapshot and a requirement shared between threads give the same answers
/// there, and a clone is the same snapshot, not a copy.
#[test]
fn snapshots_and_requirements_work_across_threads() {
    let mut policy = Policy::new();
    policy.permission("a:read");
    policy.role("reader").grant("a:read");
    let snapshot = policy.compile().unwrap();
    let read = Requirement::permission(&snapshot, "a:read").unwrap();
    let role = Requirement::role(&snapshot, "reader").unwrap();
    let answers: Vec<(bool, bool)> = std::thread::scope(|scope| {
        let handles: Vec<_> = ["reader", "nobody"]
            .into_iter()
            .map(|name| {
                let (snapshot, read, role) = (snapshot.clone(), read.clone(), role.clone());
                scope.spawn(move || {
                    let p = snapshot.principal(None, [name]);
                    (p.satisfies(&read), p.satisfies(&role))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(answers, [(true, true), (false, false)]);
    let copy = snapshot.clone();
    assert!(
        copy.principal(None, ["reader"]).satisfies(&read),
        "same lineage"
    );
}
