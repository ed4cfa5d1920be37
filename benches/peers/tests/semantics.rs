//! Where the engines differ in meaning, not speed: casbin's depth limit,
//! cycles and self loops, and that every engine agrees on every workload
//! (small sizes, so that this runs in a debug build).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use casbin::CoreApi;
use rolegraph_peers::engines::{
    self, casbin_enforcer, cedar_flat_entities, cedar_per_role_entities, rolegraph_policy, Casbin,
    CasbinCached, CedarFlat, CedarPerRole, Config, Naive, Peer, Rolegraph, RolegraphUser,
    CASBIN_DEFAULT_LEVEL,
};
use rolegraph_peers::workload::{self, Perm, Query, RoleDef, Spec, Subject, UserDef};

fn leaf_reads_root(depth: usize, level: usize) -> bool {
    let w = workload::w2(depth);
    let e = casbin_enforcer(&w.spec, level).unwrap();
    e.enforce((format!("chain{}", depth - 1), "doc", "read"))
        .unwrap()
}

#[test]
fn casbin_cuts_inheritance_off_silently_at_its_hierarchy_level() {
    // A token holding the leaf of a chain of `depth` roles needs depth - 1
    // hops; casbin's default level of 10 walks 9.
    assert!(leaf_reads_root(10, CASBIN_DEFAULT_LEVEL));
    assert!(
        !leaf_reads_root(11, CASBIN_DEFAULT_LEVEL),
        "the 11th role up is out of reach: deny, and no error"
    );
    assert!(!leaf_reads_root(64, CASBIN_DEFAULT_LEVEL));
    // Raised, it walks the whole chain; the benchmarks raise it per workload.
    assert!(leaf_reads_root(11, 11));
    assert!(leaf_reads_root(64, 64));
    assert!(!leaf_reads_root(65, 64));

    // The reference (and rolegraph, Cedar, naive) answer allow at any depth.
    let w = workload::w2(64);
    let q = &w.timed[0].1;
    assert!(w.spec.decide(q));
    let config = Config::for_queries(&w.spec, &w.all_queries());
    assert_eq!(config.casbin_max_hierarchy_level, 64);
    rolegraph_peers::agree::<Casbin>(&w.spec, config, &w.all_queries());
    rolegraph_peers::agree::<Rolegraph>(&w.spec, config, &w.all_queries());
}

#[test]
fn a_user_costs_casbin_one_level() {
    // casbin's native shape asks about a user holding the leaf: one more hop.
    let mut w = workload::w2(10);
    w.spec.users.push(UserDef {
        name: "alice".into(),
        roles: vec![9],
    });
    let e = casbin_enforcer(&w.spec, CASBIN_DEFAULT_LEVEL).unwrap();
    assert!(e.enforce(("chain9", "doc", "read")).unwrap());
    assert!(!e.enforce(("alice", "doc", "read")).unwrap());
}

/// `a` extends `b`, `b` extends `a` (and `c` extends itself when `self_loop`).
fn cyclic(self_loop: bool) -> Spec {
    let mut roles = vec![
        RoleDef {
            name: "a".into(),
            grants: vec![0],
            bases: vec![1],
        },
        RoleDef {
            name: "b".into(),
            grants: vec![1],
            bases: vec![0],
        },
    ];
    if self_loop {
        roles.push(RoleDef {
            name: "c".into(),
            grants: vec![0],
            bases: vec![2],
        });
    }
    Spec {
        permissions: vec![
            Perm {
                object: "x".into(),
                action: "read".into(),
            },
            Perm {
                object: "y".into(),
                action: "read".into(),
            },
        ],
        roles,
        users: vec![UserDef {
            name: "u".into(),
            roles: vec![1],
        }],
    }
}

#[test]
fn rolegraph_rejects_a_cycle_and_names_its_members() {
    let err = rolegraph_policy(&cyclic(false)).compile().unwrap_err();
    let cycle = err.cycles().next().unwrap();
    assert_eq!(cycle.members(), ["a", "b"]);
    let err = rolegraph_policy(&cyclic(true)).compile().unwrap_err();
    let members: Vec<&[String]> = err.cycles().map(|c| c.members()).collect();
    assert!(members.contains(&&["c".to_owned()][..]), "{err}");
}

#[test]
fn casbin_accepts_a_cycle_silently_and_answers_the_union() {
    for self_loop in [false, true] {
        let spec = cyclic(self_loop);
        let e = casbin_enforcer(&spec, CASBIN_DEFAULT_LEVEL).unwrap();
        // Both roles of the cycle hold both grants; the walk terminates.
        for sub in ["a", "b", "u"] {
            assert!(e.enforce((sub, "x", "read")).unwrap(), "{sub}");
            assert!(e.enforce((sub, "y", "read")).unwrap(), "{sub}");
        }
        if self_loop {
            assert!(e.enforce(("c", "x", "read")).unwrap());
            assert!(!e.enforce(("c", "y", "read")).unwrap());
        }
    }
}

/// The one entity Cedar's error names: `HasCycle { vertex_with_loop }`.
fn cedar_cycle_vertex<T>(
    result: Result<T, Box<cedar_policy::entities_errors::EntitiesError>>,
) -> String {
    let Err(err) = result else {
        panic!("Cedar accepted a cyclic hierarchy")
    };
    assert_eq!(
        err.to_string(),
        "transitive closure computation/enforcement error"
    );
    let debug = format!("{err:?}");
    assert!(debug.contains("HasCycle"), "{debug}");
    let at = debug.find("Eid(\"").unwrap() + 5;
    debug[at..].split('"').next().unwrap().to_owned()
}

#[test]
fn cedar_rejects_a_cycle_in_either_encoding_naming_one_entity() {
    let spec = cyclic(false);
    let one = cedar_cycle_vertex(cedar_per_role_entities(&spec));
    assert!(one == "a" || one == "b", "{one}");
    let one = cedar_cycle_vertex(cedar_flat_entities(&spec));
    assert!(one == "a" || one == "b", "{one}");
}

#[test]
fn cedar_rejects_a_self_loop() {
    let mut spec = cyclic(true);
    spec.roles.truncate(0);
    spec.roles.push(RoleDef {
        name: "c".into(),
        grants: vec![0],
        bases: vec![0],
    });
    spec.users[0].roles = vec![0];
    assert_eq!(cedar_cycle_vertex(cedar_per_role_entities(&spec)), "c");
    assert_eq!(cedar_cycle_vertex(cedar_flat_entities(&spec)), "c");
}

#[test]
fn naive_walks_a_cycle_once() {
    let spec = cyclic(true);
    let naive = Naive::build(&spec, Config::default());
    for (roles, perm, expected) in [
        (vec![0], 1, true),
        (vec![1], 0, true),
        (vec![2], 0, true),
        (vec![2], 1, false),
    ] {
        let q = Query {
            subject: Subject::Token(roles),
            permission: perm,
        };
        assert_eq!(spec.decide(&q), expected);
        assert_eq!(naive.decide(&naive.request(&spec, &q)), expected);
    }
}

fn all_agree(w: &workload::Workload) {
    let queries = w.all_queries();
    let config = Config::for_queries(&w.spec, &queries);
    rolegraph_peers::agree::<Rolegraph>(&w.spec, config, &queries);
    rolegraph_peers::agree::<RolegraphUser>(&w.spec, config, &queries);
    rolegraph_peers::agree::<Casbin>(&w.spec, config, &queries);
    rolegraph_peers::agree::<CasbinCached>(&w.spec, config, &queries);
    rolegraph_peers::agree::<CedarPerRole>(&w.spec, config, &queries);
    rolegraph_peers::agree::<CedarFlat>(&w.spec, config, &queries);
    rolegraph_peers::agree::<Naive>(&w.spec, config, &queries);
}

#[test]
fn every_engine_agrees_on_every_workload() {
    all_agree(&workload::w1(100));
    for d in [1, 4, 16] {
        all_agree(&workload::w2(d));
    }
    all_agree(&workload::w3());
    for k in [1, 3, 10] {
        all_agree(&workload::w6(k));
    }
}

fn update_agrees<P: Peer>(w: &workload::Workload, change: &workload::Change) {
    let queries = w.all_queries();
    let config = Config::for_queries(&w.spec, &queries);
    let mut engine = rolegraph_peers::agree::<P>(&w.spec, config, &queries);
    let request = engine.request(&w.spec, &change.query);
    assert!(!engine.decide(&request), "{}", P::NAME);
    for round in 0..4 {
        let state = round % 2 == 0;
        engine.apply(&w.spec, change, state);
        assert_eq!(engine.decide(&request), state, "{} round {round}", P::NAME);
    }
}

#[test]
fn every_engine_applies_the_update_and_shows_it_to_the_next_check() {
    let (w, change) = workload::u1(100);
    update_agrees::<Rolegraph>(&w, &change);
    update_agrees::<Casbin>(&w, &change);
    update_agrees::<CasbinCached>(&w, &change);
    update_agrees::<CedarPerRole>(&w, &change);
    update_agrees::<CedarFlat>(&w, &change);
    update_agrees::<Naive>(&w, &change);
}

#[test]
fn casbin_level_is_raised_only_where_needed() {
    let w = workload::w1(100);
    let c = Config::for_queries(&w.spec, &w.all_queries());
    assert_eq!(c.casbin_max_hierarchy_level, CASBIN_DEFAULT_LEVEL);
    let w = workload::w3();
    let c = Config::for_queries(&w.spec, &w.all_queries());
    println!("w3 needs casbin level {}", c.casbin_max_hierarchy_level);
    let _ = engines::CASBIN_MODEL;
}
