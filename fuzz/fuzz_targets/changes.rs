//! An arbitrary sequence of change batches applied to a live engine.
//!
//! After every batch, accepted or rejected (a light probe, so that a run
//! executes many inputs): the revision moved by one exactly when the batch
//! changed something; a rejected batch changed neither the revision, the
//! engine's policy nor any membership; the live snapshot has the role and
//! permission counts of a full compile of the engine's own policy, and the
//! compiled rows of a few pseudo-random roles (every permission) equal the
//! full compile's; every membership names roles that exist.
//!
//! At the end of each input, the full comparison: the engine's snapshot
//! answers exactly like a full compile of its policy (same roles, bases,
//! effective permissions with their paths, defaults, group mappings,
//! warnings, every compiled permission bit, principals and explanations: the
//! oracle of `rolegraph-testkit`), and requirements resolved on the first
//! snapshot answer like the full compile's `role_has_permission`. A fault
//! that leaves a row stale (say, dependents not recomputed) shows at the step
//! when a probed role is hit, and at the end unless a later change repairs it.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use rolegraph::{
    Change, ChangeMeta, Engine, EntityClock, Policy, Reparent, Requirement, Role, Snapshot,
};
use rolegraph_fuzz::{org_id, perm_name, role_name, APolicy, ARole, Grant, Name};
use rolegraph_testkit::{Probe, Rng};

/// An organization for a role change: `None` is the environment. Mostly pool
/// organizations, sometimes one that does not exist.
fn scope(org: Option<u8>) -> Option<String> {
    org.map(|o| {
        if o % 8 == 7 {
            "org_missing".into()
        } else {
            org_id(o)
        }
    })
}

#[derive(Arbitrary, Debug)]
enum AChange {
    CreatePermission(u8, bool),
    UpdatePermission(u8, Option<u8>),
    DeletePermission(u8),
    CreateRole(Option<u8>, ARole),
    UpdateRole {
        org: Option<u8>,
        name: u8,
        permissions: Option<Vec<Grant>>,
        extends: Option<Vec<Name>>,
        display_name: Option<u8>,
    },
    GrantPermission(Option<u8>, u8, Grant),
    RevokePermission(Option<u8>, u8, Grant),
    DeleteRole {
        org: Option<u8>,
        name: u8,
        reassign_to: Option<u8>,
        reparent: u8,
        to: u8,
    },
    SetDefaultRoles(Option<u8>, Option<u8>),
    CreateOrganization(u8),
    DeleteOrganization(u8),
    SetOrganizationDefaultRole(u8, Option<u8>),
    SetGroupRoles(u8, u8, Vec<u8>),
    SetMembership {
        org: u8,
        user: u8,
        roles: Vec<u8>,
        groups: Option<Vec<u8>>,
        creator: bool,
    },
    AddMembershipRoles(u8, u8, Vec<u8>),
    RemoveMembershipRoles(u8, u8, Vec<u8>),
    RemoveMembership(u8, u8),
    RemoveUser(u8),
    RecordDelivery {
        id: u8,
        received: u8,
        entity: Option<u8>,
        occurred: u8,
    },
}

const GROUPS: [&str; 3] = ["Eng", "Ops", "dirgroup_1"];

fn org(o: u8) -> String {
    scope(Some(o)).unwrap_or_default()
}

fn user(u: u8) -> String {
    format!("u{}", u % 4)
}

fn roles(rs: &[u8]) -> Vec<String> {
    rs.iter().take(4).map(|&r| role_name(r)).collect()
}

impl AChange {
    fn to_change(&self) -> Change {
        match self {
            Self::CreatePermission(p, described) => Change::CreatePermission {
                name: perm_name(*p),
                description: described.then(|| "described".into()),
            },
            Self::UpdatePermission(p, d) => Change::UpdatePermission {
                name: perm_name(*p),
                description: d.map(|d| format!("d{d}")),
            },
            Self::DeletePermission(p) => Change::DeletePermission {
                name: perm_name(*p),
            },
            Self::CreateRole(o, role) => Change::CreateRole {
                organization: scope(*o),
                role: role.to_role(),
            },
            Self::UpdateRole {
                org,
                name,
                permissions,
                extends,
                display_name,
            } => Change::UpdateRole {
                organization: scope(*org),
                name: role_name(*name),
                display_name: display_name.map(|d| format!("Role {d}")),
                description: None,
                permissions: permissions
                    .as_ref()
                    .map(|g| g.iter().take(4).map(Grant::text).collect()),
                extends: extends
                    .as_ref()
                    .map(|e| e.iter().take(4).map(Name::role).collect()),
            },
            Self::GrantPermission(o, r, g) => Change::GrantPermission {
                organization: scope(*o),
                role: role_name(*r),
                permission: g.text(),
            },
            Self::RevokePermission(o, r, g) => Change::RevokePermission {
                organization: scope(*o),
                role: role_name(*r),
                permission: g.text(),
            },
            Self::DeleteRole {
                org,
                name,
                reassign_to,
                reparent,
                to,
            } => Change::DeleteRole {
                organization: scope(*org),
                name: role_name(*name),
                reassign_to: reassign_to.map(role_name),
                reparent: match reparent % 4 {
                    0 => None,
                    1 => Some(Reparent::Detach),
                    2 => Some(Reparent::ToBases),
                    _ => Some(Reparent::To(role_name(*to))),
                },
            },
            Self::SetDefaultRoles(c, m) => Change::SetDefaultRoles {
                creator: c.map(role_name),
                member: m.map(role_name),
            },
            Self::CreateOrganization(o) => Change::CreateOrganization { id: org(*o) },
            Self::DeleteOrganization(o) => Change::DeleteOrganization { id: org(*o) },
            Self::SetOrganizationDefaultRole(o, r) => Change::SetOrganizationDefaultRole {
                organization: org(*o),
                role: r.map(role_name),
            },
            Self::SetGroupRoles(o, g, rs) => Change::SetGroupRoles {
                organization: org(*o),
                group: GROUPS[usize::from(*g) % 3].into(),
                roles: roles(rs),
            },
            Self::SetMembership {
                org: o,
                user: u,
                roles: rs,
                groups,
                creator,
            } => Change::SetMembership {
                organization: org(*o),
                user: user(*u),
                roles: roles(rs),
                groups: groups.as_ref().map(|g| {
                    g.iter()
                        .take(3)
                        .map(|&g| GROUPS[usize::from(g) % 3].into())
                        .collect()
                }),
                creator: *creator,
            },
            Self::AddMembershipRoles(o, u, rs) => Change::AddMembershipRoles {
                organization: org(*o),
                user: user(*u),
                roles: roles(rs),
            },
            Self::RemoveMembershipRoles(o, u, rs) => Change::RemoveMembershipRoles {
                organization: org(*o),
                user: user(*u),
                roles: roles(rs),
            },
            Self::RemoveMembership(o, u) => Change::RemoveMembership {
                organization: org(*o),
                user: user(*u),
            },
            Self::RemoveUser(u) => Change::RemoveUser { user: user(*u) },
            Self::RecordDelivery {
                id,
                received,
                entity,
                occurred,
            } => Change::RecordDelivery {
                id: format!("evt_{}", id % 8),
                received_ms: u64::from(*received) * 1_000,
                entities: entity
                    .iter()
                    .map(|e| EntityClock {
                        entity: format!("role:{}", role_name(*e)),
                        occurred_at_ns: u64::from(*occurred),
                    })
                    .collect(),
                retention_ms: 60_000,
            },
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    initial: Option<APolicy>,
    batches: Vec<Vec<AChange>>,
}

/// A valid starting point when the arbitrary one does not compile.
fn fallback() -> Policy {
    let mut p = Policy::new();
    for i in 0..9 {
        p.permission(perm_name(i));
    }
    let mut roles: Vec<Role> = (0..6u8).map(|i| Role::named(role_name(i))).collect();
    for (i, r) in roles.iter_mut().enumerate() {
        r.grant(perm_name(i as u8));
        if i > 0 {
            r.extends(role_name((i / 2) as u8));
        }
    }
    p.roles = roles;
    p.organization(org_id(0))
        .role("lead")
        .extends(role_name(1))
        .grant("task:*");
    p.organization(org_id(0)).map_group("Eng", [role_name(0)]);
    p.organization(org_id(1));
    p.set_default_member_role(role_name(0));
    p
}

fn memberships(s: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    for o in 0..8u8 {
        for u in 0..4u8 {
            let (o, u) = (org(o), user(u));
            out.push(format!("{o}/{u} {:?}", s.membership(&o, &u)));
        }
    }
    out
}

/// Roles whose whole compiled row each step compares with the full compile.
const PROBED_ROLES: usize = 4;

/// The per-step check: counts, and the rows of [`PROBED_ROLES`]
/// pseudo-random roles against the full compile, by name.
fn light_probe(live: &Snapshot, full: &Snapshot, rng: &mut Rng) {
    assert_eq!(live.roles_len(), full.roles_len(), "role count");
    assert_eq!(
        live.permissions_len(),
        full.permissions_len(),
        "permission count"
    );
    let roles: Vec<_> = full.roles().collect();
    let permissions: Vec<&str> = full.permissions().collect();
    for _ in 0..PROBED_ROLES {
        let Some(&f) = rng.pick(&roles) else {
            return;
        };
        let org = full.role_organization(f);
        let name = full.role_name(f);
        let l = live
            .role(org, name)
            .unwrap_or_else(|| panic!("{org:?}/{name} is missing from the live snapshot"));
        for p in &permissions {
            assert_eq!(
                live.role_has_permission(l, p),
                full.role_has_permission(f, p),
                "{org:?}/{name} on `{p}`: live vs full compile"
            );
        }
    }
}

/// Every membership names roles that exist.
fn memberships_name_roles(s: &Snapshot) {
    for o in 0..8u8 {
        for u in 0..4u8 {
            let (o, u) = (org(o), user(u));
            if let Some(m) = s.membership(&o, &u) {
                for r in &m.roles {
                    assert!(
                        s.role(Some(&o), r).is_some(),
                        "{o}/{u} holds missing role {r}"
                    );
                }
            }
        }
    }
}

/// Applies one batch and checks it (revision, a rejected batch changes
/// nothing, the light probe against a full compile of the engine's policy);
/// `policy` is the engine's policy before, and after on return. Whether the
/// batch was accepted.
fn apply_checked(
    engine: &Engine,
    changes: Vec<Change>,
    policy: &mut Policy,
    rng: &mut Rng,
) -> bool {
    let before = engine.snapshot();
    let before_members = memberships(&before);
    let outcome = engine.apply_batch(changes, ChangeMeta::default());
    let after = engine.snapshot();
    let after_policy = engine.policy();
    let accepted = match outcome {
        Ok(outcome) => {
            assert_eq!(outcome.revision, after.revision());
            let expected = before.revision() + u64::from(outcome.changed);
            assert_eq!(after.revision(), expected);
            true
        }
        Err(err) => {
            assert!(!err.to_string().is_empty());
            assert_eq!(after.revision(), before.revision(), "{err}");
            assert!(
                after_policy == *policy,
                "{err}: a rejected batch changed the policy"
            );
            assert_eq!(memberships(&after), before_members, "{err}");
            false
        }
    };
    *policy = after_policy;
    let full = policy
        .compile()
        .unwrap_or_else(|e| panic!("the engine holds a policy that does not compile: {e}"));
    light_probe(&after, &full, rng);
    memberships_name_roles(&after);
    accepted
}

fuzz_target!(|input: Input| {
    let mut initial = input.initial.as_ref().map(APolicy::to_policy);
    if let (Some(p), Some(a)) = (&mut initial, &input.initial) {
        // Long chains make every step's full compile and comparison slow
        // without adding behaviours; the compile target covers them.
        if a.chain.is_some() && p.roles.len() + p.organizations.len() > 200 {
            initial = None;
        }
    }
    // A policy without inheritance (most valid arbitrary ones) never makes
    // the patch recompute a dependent: start from the fallback's chains then.
    let engine = match initial.as_ref().map(Engine::new) {
        Some(Ok(engine)) if engine.snapshot().max_depth() >= 2 => engine,
        _ => Engine::new(&fallback()).expect("the fallback policy compiles"),
    };
    let first = engine.snapshot();
    let stable: Vec<(String, Requirement)> = first
        .permissions()
        .map(|p| {
            (
                p.to_owned(),
                Requirement::permission(&first, p).expect("declared"),
            )
        })
        .collect();
    let mut policy = engine.policy();
    let mut rng = Rng::new(input.batches.len() as u64);
    let mut applied = false;
    for batch in input.batches.iter().take(32) {
        if batch.is_empty() {
            continue;
        }
        applied = true;
        let changes: Vec<Change> = batch.iter().take(4).map(AChange::to_change).collect();
        let singles = changes.clone();
        if !apply_checked(&engine, changes, &mut policy, &mut rng) && singles.len() > 1 {
            // Most arbitrary batches hold one change that fails; apply the
            // others one by one, so that accepted changes (and the patches
            // they make) are common rather than rare.
            for change in singles {
                apply_checked(&engine, vec![change], &mut policy, &mut rng);
            }
        }
    }

    // The full comparison, once per input that applied something (a fresh
    // engine against a fresh compile is the compile target's and the
    // tests' business).
    if !applied {
        return;
    }
    let live = engine.snapshot();
    let full = policy
        .compile()
        .unwrap_or_else(|e| panic!("the engine holds a policy that does not compile: {e}"));
    // Every compiled bit, answer and explanation, by name.
    let probe = Probe {
        groups: &GROUPS,
        seed: live.revision(),
        ..Probe::default()
    };
    rolegraph_testkit::assert_equivalent(&live, &full, &probe);
    memberships_name_roles(&live);
    // Requirements resolved on the first snapshot answer as the full
    // compile does.
    let full_roles = rolegraph_testkit::roles_by_key(&full);
    for (name, req) in &stable {
        for r in live.roles() {
            let same = full_roles[&rolegraph_testkit::key(&live, r)];
            assert_eq!(
                live.principal_from_roles(&[r])
                    .expect("a role of the snapshot")
                    .satisfies(req),
                full.role_has_permission(same, name),
                "{name} on {}",
                live.role_name(r)
            );
        }
    }
});
