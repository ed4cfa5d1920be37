//! Test support shared by rolegraph's integration tests and its fuzz
//! targets: the one oracle that says whether two snapshots compiled from
//! the same policy answer alike.
//!
//! The incremental recompiler must produce, after any sequence of changes,
//! a snapshot that answers exactly like a fresh full compile of the engine's
//! policy. Role ids may differ between the two (a full compile numbers roles
//! afresh), so everything is compared by name: roles by (organization,
//! name), permissions by name. [`equivalent`] compares
//!
//! - every compiled bit: `role_has_permission` for every role × every
//!   permission, and the permissions of a principal holding that one role
//!   (the row as a request reads it);
//! - every explanation: `effective_permissions` of every role (names, paths,
//!   grants), which must also list exactly the permissions the row holds;
//! - the structure: bases, defaults, group mappings, depth, warnings;
//! - answers to requests: principals over pseudo-random role sets and
//!   token claims, their permissions, their decisions on permission, any-of,
//!   all-of and role requirements, and the explanations of those decisions.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use rolegraph::{Claims, Requirement, RoleId, Snapshot};

/// A role by name: (organization, role name).
pub type RoleKey = (Option<String>, String);

/// What to probe beyond the snapshots' own listings.
#[derive(Debug, Clone, Copy)]
pub struct Probe<'a> {
    /// Directory group names to resolve in every organization (a snapshot
    /// does not list the groups it maps).
    pub groups: &'a [&'a str],
    /// Seeds the pseudo-random role sets and claims.
    pub seed: u64,
    /// How many random principals to compare.
    pub principals: usize,
}

impl Default for Probe<'_> {
    fn default() -> Self {
        Self {
            groups: &[],
            seed: 0x5eed,
            principals: 24,
        }
    }
}

/// Everything a snapshot's policy answers about its roles, by name, one line
/// per fact, in a deterministic order (memberships excluded: a fresh compile
/// has none).
#[must_use]
pub fn answers(s: &Snapshot, groups: &[&str]) -> Vec<String> {
    let mut out = vec![
        format!("permissions {:?}", s.permissions().collect::<Vec<_>>()),
        format!("max_depth {}", s.max_depth()),
        format!(
            "roles {} permissions {} organizations {}",
            s.roles_len(),
            s.permissions_len(),
            s.organizations_len()
        ),
    ];
    let name = |r: Option<RoleId>| r.map(|r| key(s, r));
    out.push(format!(
        "creator {:?} member {:?}",
        name(s.default_creator_role()),
        name(s.default_member_role(None))
    ));
    let mut roles: Vec<String> = s
        .roles()
        .map(|r| {
            let org = s.role_organization(r);
            let eff: Vec<String> = s
                .effective_permissions(org, s.role_name(r))
                .map(|list| {
                    list.iter()
                        .map(|e| format!("{}<{}<{}", e.name, list.path(e).join("<"), e.grant))
                        .collect()
                })
                .unwrap_or_else(|e| vec![format!("error: {e}")]);
            let bases: BTreeSet<RoleKey> = s.role_bases(r).map(|b| key(s, b)).collect();
            format!(
                "role {org:?}/{} bases {bases:?} eff {eff:?}",
                s.role_name(r)
            )
        })
        .collect();
    roles.sort();
    out.extend(roles);
    let mut orgs: Vec<String> = s.organizations().map(str::to_owned).collect();
    orgs.sort();
    for org in orgs {
        out.push(format!(
            "org {org} member {:?}",
            name(s.default_member_role(Some(&org)))
        ));
        for g in groups.iter().chain(&["group_nobody_maps"]) {
            let roles: BTreeSet<RoleKey> = s
                .roles_for_groups(&org, [g])
                .map(|ids| ids.into_iter().map(|r| key(s, r)).collect())
                .unwrap_or_default();
            out.push(format!("org {org} group {g} {roles:?}"));
        }
    }
    let mut warnings: Vec<String> = s.warnings().iter().map(ToString::to_string).collect();
    warnings.sort();
    out.extend(warnings);
    out
}

/// A role's name key.
#[must_use]
pub fn key(s: &Snapshot, r: RoleId) -> RoleKey {
    (
        s.role_organization(r).map(str::to_owned),
        s.role_name(r).to_owned(),
    )
}

/// Every role of a snapshot by name.
#[must_use]
pub fn roles_by_key(s: &Snapshot) -> BTreeMap<RoleKey, RoleId> {
    s.roles().map(|r| (key(s, r), r)).collect()
}

/// A small deterministic generator (xorshift64*), so that a failure replays.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (any value, zero included).
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9e37_79b9_7f4a_7c15 | 1)
    }

    /// The next number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        if n == 0 {
            0
        } else {
            (x % n as u64) as usize
        }
    }

    /// A random element of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        let i = self.below(items.len());
        items.get(i)
    }
}

/// Whether `live` (say, an engine's incrementally patched snapshot) answers
/// exactly like `full` (a fresh compile of the same policy). `Err` names the
/// first difference found.
///
/// # Errors
///
/// A one-paragraph description of the first difference.
pub fn equivalent(live: &Snapshot, full: &Snapshot, probe: &Probe<'_>) -> Result<(), String> {
    // Structure and explanations.
    let (a, b) = (answers(live, probe.groups), answers(full, probe.groups));
    if a != b {
        let first = a
            .iter()
            .zip(&b)
            .find(|(x, y)| x != y)
            .map(|(x, y)| format!("live: {x}\nfull: {y}"))
            .unwrap_or_else(|| format!("{} lines vs {} lines", a.len(), b.len()));
        return Err(format!("answers differ\n{first}"));
    }
    let live_roles = roles_by_key(live);
    let full_roles = roles_by_key(full);
    if live_roles.keys().ne(full_roles.keys()) || live_roles.len() != live.roles_len() {
        return Err(format!(
            "role sets differ: live {:?} full {:?}",
            live_roles.keys().collect::<Vec<_>>(),
            full_roles.keys().collect::<Vec<_>>()
        ));
    }
    let perms: Vec<String> = full.permissions().map(str::to_owned).collect();

    // Every compiled bit, through the row and through a one-role principal,
    // and the row against the role's own explanation.
    for ((k, &l), &f) in live_roles.iter().zip(full_roles.values()) {
        for p in &perms {
            let (x, y) = (
                live.role_has_permission(l, p),
                full.role_has_permission(f, p),
            );
            if x != y {
                return Err(format!("role {k:?} permission `{p}`: live {x}, full {y}"));
            }
        }
        let (x, y) = (one_role(live, l), one_role(full, f));
        if x != y {
            return Err(format!("principal of role {k:?}: live {x:?}, full {y:?}"));
        }
        let explained: Vec<String> = live
            .effective_permissions(k.0.as_deref(), &k.1)
            .map_err(|e| format!("role {k:?} does not explain itself: {e}"))?
            .into_iter()
            .map(|e| e.name)
            .collect();
        if explained != x {
            return Err(format!(
                "role {k:?}: row holds {x:?} but the explanation lists {explained:?}"
            ));
        }
    }
    for p in &perms {
        let granting = |s: &Snapshot| -> Result<BTreeSet<RoleKey>, String> {
            Ok(s.roles_granting(p)
                .map_err(|e| format!("`{p}`: {e}"))?
                .into_iter()
                .map(|r| key(s, r))
                .collect())
        };
        let (x, y) = (granting(live)?, granting(full)?);
        if x != y {
            return Err(format!("roles granting `{p}`: live {x:?}, full {y:?}"));
        }
    }

    // Requests: random role sets and token claims.
    let keys: Vec<&RoleKey> = full_roles.keys().collect();
    let mut orgs: Vec<Option<String>> = vec![None, Some("org_nobody_lists".into())];
    orgs.extend(full.organizations().map(|o| Some(o.to_owned())));
    let mut rng = Rng::new(probe.seed);
    for _ in 0..probe.principals {
        let n = 1 + rng.below(4);
        let set: Vec<&RoleKey> = (0..n).filter_map(|_| rng.pick(&keys).copied()).collect();
        let ids = |roles: &BTreeMap<RoleKey, RoleId>| -> Vec<RoleId> {
            set.iter().filter_map(|k| roles.get(*k).copied()).collect()
        };
        let principal = |s: &Snapshot, roles| {
            s.principal_from_roles(&ids(roles))
                .map(|p| permissions(&p))
                .map_err(|e| format!("principal of {set:?}: {e}"))
        };
        let (x, y) = (principal(live, &live_roles)?, principal(full, &full_roles)?);
        if x != y {
            return Err(format!("principal of {set:?}: live {x:?}, full {y:?}"));
        }

        let mut claims = Claims {
            organization: rng.pick(&orgs).cloned().flatten(),
            ..Claims::default()
        };
        for _ in 0..n {
            match rng.pick(&keys) {
                Some(k) if rng.below(8) != 0 => claims.roles.push(k.1.clone()),
                _ => claims.roles.push("role_nobody_declares".into()),
            }
        }
        if let Some(p) = rng.pick(&perms) {
            if rng.below(4) == 0 {
                claims.permissions.push(p.clone());
            }
        }
        let requirements = requirement_specs(&mut rng, &perms, &keys);
        for spec in &requirements {
            let (x, y) = (decide(live, &claims, spec), decide(full, &claims, spec));
            if x != y {
                return Err(format!(
                    "claims {claims:?} requirement {spec:?}:\nlive {x}\nfull {y}"
                ));
            }
        }
    }
    Ok(())
}

/// [`equivalent`], panicking with the difference.
///
/// # Panics
///
/// When the snapshots answer differently.
pub fn assert_equivalent(live: &Snapshot, full: &Snapshot, probe: &Probe<'_>) {
    if let Err(e) = equivalent(live, full, probe) {
        panic!("the incremental snapshot differs from a full compile: {e}");
    }
}

fn one_role(s: &Snapshot, r: RoleId) -> Vec<String> {
    s.principal_from_roles(&[r])
        .map(|p| permissions(&p))
        .unwrap_or_else(|e| vec![format!("error: {e}")])
}

fn permissions(p: &rolegraph::Principal) -> Vec<String> {
    p.permissions().into_iter().map(str::to_owned).collect()
}

/// A requirement by names, built on each snapshot separately.
#[derive(Debug, Clone)]
enum Spec {
    Permission(String),
    AnyOf(Vec<String>),
    AllOf(Vec<String>),
    Role(String),
}

fn requirement_specs(rng: &mut Rng, perms: &[String], keys: &[&RoleKey]) -> Vec<Spec> {
    let mut out = Vec::new();
    let two = |rng: &mut Rng| -> Vec<String> {
        (0..2)
            .filter_map(|_| rng.pick(perms).cloned())
            .collect::<Vec<_>>()
    };
    if let Some(p) = rng.pick(perms) {
        out.push(Spec::Permission(p.clone()));
    }
    out.push(Spec::AnyOf(two(rng)));
    out.push(Spec::AllOf(two(rng)));
    if let Some(k) = rng.pick(keys) {
        out.push(Spec::Role(k.1.clone()));
    }
    out
}

/// The decision, the principal's permissions and the explanation, as text.
fn decide(s: &Snapshot, claims: &Claims, spec: &Spec) -> String {
    let requirement = match spec {
        Spec::Permission(p) => Requirement::permission(s, p),
        Spec::AnyOf(ps) => Requirement::any_of(s, ps),
        Spec::AllOf(ps) => Requirement::all_of(s, ps),
        Spec::Role(r) => Requirement::role(s, r),
    };
    let principal = s.principal_for(claims);
    let mut out = format!(
        "permissions {:?} unknown roles {} ",
        principal.permissions(),
        principal.unknown_roles()
    );
    match requirement {
        Ok(req) => {
            let _ = write!(
                out,
                "satisfies {} explain {}",
                principal.satisfies(&req),
                s.explain(claims, &req)
            );
        }
        Err(e) => {
            let _ = write!(out, "requirement error {e}");
        }
    }
    out
}

/// The number of distinct effective permission sets among a snapshot's
/// roles, computed from their explanations (a walk of bases and grants that
/// never reads a compiled row): what `Snapshot::distinct_rows` must report,
/// since each distinct row is stored exactly once.
///
/// # Panics
///
/// When a role of the snapshot cannot explain itself.
#[must_use]
pub fn distinct_permission_sets(s: &Snapshot) -> usize {
    let sets: BTreeSet<Vec<String>> = s
        .roles()
        .map(|r| {
            let (org, name) = key(s, r);
            s.effective_permissions(org.as_deref(), &name)
                .unwrap_or_else(|e| panic!("role {name} does not explain itself: {e}"))
                .into_iter()
                .map(|e| e.name)
                .collect()
        })
        .collect();
    sets.len()
}

/// [`distinct_permission_sets`] against the rows the snapshot stores.
///
/// # Errors
///
/// The two counts, when they differ.
pub fn rows_match_distinct_sets(s: &Snapshot) -> Result<(), String> {
    let (stored, distinct) = (s.distinct_rows(), distinct_permission_sets(s));
    if stored == distinct {
        Ok(())
    } else {
        Err(format!(
            "{stored} rows stored for {distinct} distinct permission sets"
        ))
    }
}

/// The membership oracle: what `user` holds in `organization`, computed
/// naively from the snapshot's ordered membership listing
/// ([`Snapshot::memberships_of`]) and the policy's name resolution, never
/// from the snapshot's membership index. Each role name resolved in the
/// organization, then the environment; the directory groups' mapped roles
/// (or the default member role when none maps); sorted by id, deduplicated.
/// `None` for a user who is not a member.
#[must_use]
pub fn membership_roles(s: &Snapshot, organization: &str, user: &str) -> Option<Vec<RoleId>> {
    let (_, m) = s.memberships_of(user).find(|(o, _)| *o == organization)?;
    let mut roles: Vec<RoleId> = m
        .roles
        .iter()
        .filter_map(|r| s.role(Some(organization), r))
        .collect();
    if !m.groups.is_empty() {
        roles.extend(
            s.roles_for_groups(organization, &m.groups)
                .unwrap_or_default(),
        );
    }
    roles.sort_unstable();
    roles.dedup();
    Some(roles)
}

/// Whether the snapshot's fast user path (`membership`, `user_roles`,
/// `user_principal`) agrees with [`membership_roles`] for `user` in
/// `organization`, the principal permission by permission against the OR
/// of the roles' rows. `Err` names the difference.
///
/// # Errors
///
/// A one-line description of the first difference.
pub fn membership_equivalent(s: &Snapshot, organization: &str, user: &str) -> Result<(), String> {
    let listed = s
        .memberships_of(user)
        .find(|(o, _)| *o == organization)
        .map(|(_, m)| m.clone());
    let indexed = s.membership(organization, user).cloned();
    if listed != indexed {
        return Err(format!(
            "membership {organization}/{user}: listed {listed:?}, indexed {indexed:?}"
        ));
    }
    let expected = membership_roles(s, organization, user).unwrap_or_default();
    let got = s.user_roles(organization, user);
    if got != expected {
        return Err(format!(
            "roles of {organization}/{user}: index {got:?}, oracle {expected:?}"
        ));
    }
    let principal = s.user_principal(organization, user);
    if principal.roles() != expected.as_slice() {
        return Err(format!(
            "principal of {organization}/{user} holds {:?}, oracle {expected:?}",
            principal.roles()
        ));
    }
    for p in s.permissions() {
        let want = expected.iter().any(|r| s.role_has_permission(*r, p));
        let id = s.permission_id(p);
        let has = id.is_some_and(|id| principal.has(id));
        if has != want {
            return Err(format!(
                "principal of {organization}/{user} on `{p}`: {has}, rows say {want}"
            ));
        }
    }
    Ok(())
}
