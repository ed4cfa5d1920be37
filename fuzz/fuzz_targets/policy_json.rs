//! Arbitrary bytes → parse as a JSON policy → compile: never a panic. A
//! policy that parses also survives a round trip through `to_json`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rolegraph::Policy;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let policy = match Policy::from_json(text) {
        Ok(policy) => policy,
        Err(err) => {
            assert!(!err.to_string().is_empty());
            return;
        }
    };
    let again = Policy::from_json(&policy.to_json()).expect("to_json output parses");
    assert_eq!(again, policy, "JSON round trip changed the policy");
    match policy.compile() {
        Ok(snapshot) => {
            let _ = snapshot.warnings();
            for role in snapshot.roles() {
                let org = snapshot.role_organization(role);
                let effective = snapshot
                    .effective_permissions(org, snapshot.role_name(role))
                    .expect("a compiled role explains itself");
                // Each path runs from the role to the one named as its source.
                for p in &effective {
                    let path = effective.path(p);
                    assert_eq!(path.first(), Some(&snapshot.role_name(role)));
                    assert_eq!(path.last(), Some(&p.role.as_str()));
                }
            }
        }
        Err(err) => assert!(!err.to_string().is_empty()),
    }
});
