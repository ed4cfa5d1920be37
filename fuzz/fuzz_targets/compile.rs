//! An arbitrary policy structure → compile. Either a precise error (valid
//! policies are accepted, invalid ones rejected; a cycle names exactly the
//! roles that lie on a cycle, with a real path), or a snapshot whose every
//! effective set, default and depth equals the naive oracle's.

#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use rolegraph_fuzz::{APolicy, Naive};

fuzz_target!(|input: APolicy| {
    let policy = input.to_policy();
    let naive = Naive::new(&policy);
    match policy.compile() {
        Ok(snapshot) => {
            assert!(
                naive.valid(),
                "accepted a policy that breaks {:?}",
                naive.problems
            );
            assert_eq!(snapshot.roles_len(), naive.roles.len());
            let depth = naive.depth();
            assert_eq!(
                snapshot.max_depth(),
                depth.iter().copied().max().unwrap_or(0)
            );
            for (v, (scope, role)) in naive.roles.iter().enumerate() {
                let org = naive.scopes[*scope];
                let id = snapshot
                    .role(org, &role.name)
                    .unwrap_or_else(|| panic!("role {:?} of {org:?} is missing", role.name));
                assert_eq!(snapshot.role_organization(id), org);
                assert_eq!(snapshot.role_name(id), role.name);
                let principal = snapshot
                    .principal_from_roles(&[id])
                    .expect("a role of the snapshot");
                let got: BTreeSet<&str> = principal.permissions().into_iter().collect();
                assert_eq!(
                    got,
                    naive.effective(v),
                    "effective set of {:?} in {org:?}",
                    role.name
                );
            }
            let name = |r: Option<rolegraph::RoleId>| r.map(|r| snapshot.role_name(r).to_owned());
            assert_eq!(
                name(snapshot.default_creator_role()),
                policy.default_creator_role
            );
            assert_eq!(
                name(snapshot.default_member_role(None)),
                policy.default_member_role
            );
            for org in &policy.organizations {
                assert_eq!(
                    name(snapshot.default_member_role(Some(&org.id))),
                    org.default_member_role
                        .clone()
                        .or(policy.default_member_role.clone())
                );
            }
            // The other queries must not panic either.
            let _ = snapshot.warnings();
        }
        Err(err) => {
            assert!(!naive.valid(), "rejected a valid policy: {err}");
            assert!(!err.problems().is_empty());
            for problem in err.problems() {
                assert!(!problem.to_string().is_empty());
            }
            let mut reported = BTreeSet::new();
            for cycle in err.cycles() {
                let scope = naive
                    .scope(cycle.organization())
                    .unwrap_or_else(|| panic!("cycle in unknown scope: {cycle:?}"));
                let ids: Vec<usize> = cycle
                    .members()
                    .iter()
                    .map(|m| naive.index[&(scope, m.as_str())])
                    .collect();
                for (&a, m) in ids.iter().zip(cycle.members()) {
                    assert!(
                        naive.reaches(a, a),
                        "{m:?} is named in a cycle but is on none"
                    );
                    let reach = naive.reach(a);
                    for &b in &ids {
                        assert!(reach[b], "{cycle:?} is not one strongly connected set");
                    }
                    assert!(reported.insert((scope, a)), "{m:?} reported twice");
                }
                let path = cycle.path();
                assert!(path.len() >= 2, "{cycle:?}");
                assert_eq!(path.first(), path.last(), "{cycle:?}");
                for pair in path.windows(2) {
                    let a = naive.index[&(scope, pair[0].as_str())];
                    let b = naive.index[&(scope, pair[1].as_str())];
                    assert!(naive.edges[a].contains(&b), "{cycle:?}: no edge {pair:?}");
                    assert!(cycle.members().contains(&pair[0]), "{cycle:?}");
                }
            }
            let on_cycle: BTreeSet<(usize, usize)> = naive
                .on_cycle()
                .into_iter()
                .map(|v| (naive.roles[v].0, v))
                .collect();
            assert_eq!(
                reported, on_cycle,
                "not every role on a cycle was named: {err}"
            );
        }
    }
});
