//! Validation, interning, cycle detection and flattening: all failure happens here.
//!
//! The compiler reads a [`Policy`], checks every rule of DESIGN.md's
//! "Validity" section (collecting every problem rather than stopping at the
//! first), interns names to dense ids, resolves names one scope at a time
//! (each organization's roles in a small table of their own), orders the
//! `extends` graph by Kahn's algorithm and flattens it into one bitset row
//! per distinct permission set. Only when the graph cannot be ordered (or
//! other problems are reported anyway) are its strongly connected sets found,
//! with petgraph's iterative Kosaraju, to report every cycle.
//!
//! Nothing here recurses: a 100,000-role chain or cycle costs linear time and
//! constant stack.

mod error;

use std::collections::VecDeque;

use std::collections::hash_map::Entry;

use ahash::{AHashMap, AHashSet};
use petgraph::algo::kosaraju_scc;
use petgraph::graph::{DiGraph, NodeIndex};

pub(crate) use error::RoleInScope;
pub use error::{CompileError, Cycle, DefaultRole, Problem};

use crate::compiled::{self, Core, Csr, Names, Org, Parts, Permissions, ENV, WILDCARD};
use crate::ids::RoleId;
use crate::model::{Policy, Role};
use crate::name::{classify_grant, is_valid_name, GrantKind};

/// Compiles `policy` from scratch, in a new lineage.
pub(crate) fn compile(policy: &Policy) -> Result<Core, CompileError> {
    compile_with(policy, None)
}

/// Compiles `policy`; with `previous`, permissions keep the ids they had there
/// (removed ones are retired, keeping their ids for their names) and the
/// result joins its lineage, so that requirements resolved against
/// `previous` stay valid.
pub(crate) fn compile_with(policy: &Policy, previous: Option<&Core>) -> Result<Core, CompileError> {
    let mut problems = Vec::new();

    // Permissions: a name the lineage knew gets its id back.
    let mut perms = Permissions::continuing(previous);
    for p in &policy.permissions {
        if !is_valid_name(&p.name) {
            problems.push(Problem::InvalidPermissionName {
                name: p.name.clone(),
            });
            continue;
        }
        if perms.id(&p.name).is_some() {
            problems.push(Problem::DuplicatePermission {
                name: p.name.clone(),
            });
            continue;
        }
        if perms.declare(&p.name).is_none() {
            problems.push(Problem::TooMany {
                what: "permissions",
                count: policy.permissions.len(),
            });
            break;
        }
    }
    perms.sort();

    // Organizations: the first occurrence of an id wins.
    let mut org_index: AHashMap<Box<str>, u32> =
        AHashMap::with_capacity(policy.organizations.len());
    let mut orgs_in: Vec<&crate::model::Organization> = Vec::new();
    for org in &policy.organizations {
        if org.id.is_empty() {
            problems.push(Problem::InvalidOrganizationId { id: org.id.clone() });
            continue;
        }
        if org_index.contains_key(org.id.as_str()) {
            problems.push(Problem::DuplicateOrganization { id: org.id.clone() });
            continue;
        }
        let Ok(ix) = u32::try_from(orgs_in.len()) else {
            problems.push(Problem::TooMany {
                what: "organizations",
                count: policy.organizations.len(),
            });
            break;
        };
        org_index.insert(org.id.as_str().into(), ix);
        orgs_in.push(org);
    }
    let org_name =
        |scope: u32| -> Option<String> { orgs_in.get(scope as usize).map(|o| o.id.clone()) };

    // Roles, their bases and grants, and the mappings, one scope at a time
    // (the environment first, then each organization): a name resolves in
    // its scope's own small table, then in the environment's, so lookups
    // stay in cache however many organizations there are. Role ids are
    // tagged with a new numbering (a patch keeps it, another compile not).
    let numbering = compiled::next_id() as u32;
    let total_roles = policy.roles.len()
        + orgs_in
            .iter()
            .map(|o| o.roles.len())
            .fold(0usize, usize::saturating_add);
    let mut defs: Vec<(&Role, u32)> = Vec::with_capacity(total_roles);
    let mut env_roles: AHashMap<&str, RoleId> = AHashMap::with_capacity(policy.roles.len());
    let mut own_roles: AHashMap<&str, RoleId> = AHashMap::new();
    let mut too_many_roles = false;
    let mut wildcards: Vec<Box<str>> = Vec::new();
    let mut wildcard_index: AHashMap<&str, usize> = AHashMap::new();
    let (mut too_many_wildcards, mut too_many_edges) = (false, false);
    let mut bases = Csr::with_capacity(total_roles);
    let mut grants = Csr::with_capacity(total_roles);
    let mut scratch: Vec<u32> = Vec::new();
    let (mut default_creator, mut default_member) = (None, None);
    let mut orgs = Vec::with_capacity(orgs_in.len());
    let scopes = std::iter::once((ENV, None))
        .chain(orgs_in.iter().zip(0u32..).map(|(o, ix)| (ix, Some(*o))));
    'scopes: for (scope, org) in scopes {
        let first = defs.len();
        own_roles.clear();
        let roles = org.map_or(policy.roles.as_slice(), |o| o.roles.as_slice());
        for role in roles {
            // The organization's name is only copied into a problem.
            if !is_valid_name(&role.name) {
                problems.push(Problem::InvalidRoleName {
                    organization: org_name(scope),
                    name: role.name.clone(),
                });
                continue;
            }
            if scope != ENV && env_roles.contains_key(role.name.as_str()) {
                problems.push(Problem::ShadowsEnvironmentRole {
                    organization: org_name(scope).unwrap_or_default(),
                    name: role.name.clone(),
                });
                continue;
            }
            let table = if scope == ENV {
                &mut env_roles
            } else {
                &mut own_roles
            };
            match table.entry(role.name.as_str()) {
                Entry::Occupied(_) => problems.push(Problem::DuplicateRole {
                    organization: org_name(scope),
                    name: role.name.clone(),
                }),
                Entry::Vacant(slot) => {
                    let Some(id) = RoleId::new(defs.len(), numbering) else {
                        too_many_roles = true;
                        break 'scopes;
                    };
                    slot.insert(id);
                    defs.push((role, scope));
                }
            }
        }
        let resolve = |name: &str| -> Option<RoleId> {
            let own = if scope == ENV {
                None
            } else {
                own_roles.get(name).copied()
            };
            own.or_else(|| env_roles.get(name).copied())
        };

        // Edges and direct grants.
        for (role, _) in defs.get(first..).unwrap_or(&[]) {
            scratch.clear();
            for base in &role.extends {
                match resolve(base) {
                    Some(id) => scratch.push(id.index() as u32),
                    None => problems.push(Problem::UnknownBaseRole {
                        organization: org_name(scope),
                        role: role.name.clone(),
                        base: base.clone(),
                    }),
                }
            }
            scratch.sort_unstable();
            scratch.dedup();
            too_many_edges |= bases.push(&scratch).is_none();

            scratch.clear();
            for grant in &role.permissions {
                match classify_grant(grant) {
                    GrantKind::Exact(name) => match perms.id(name) {
                        Some(id) => scratch.push(id.index() as u32),
                        None => problems.push(Problem::UnknownPermission {
                            organization: org_name(scope),
                            role: role.name.clone(),
                            permission: grant.clone(),
                        }),
                    },
                    GrantKind::Prefix(prefix) => {
                        let next = wildcards.len();
                        let ix = *wildcard_index.entry(prefix).or_insert_with(|| {
                            wildcards.push(prefix.into());
                            next
                        });
                        match u32::try_from(ix).ok().filter(|ix| ix & WILDCARD == 0) {
                            Some(ix) => scratch.push(WILDCARD | ix),
                            None => too_many_wildcards = true,
                        }
                    }
                    GrantKind::Invalid => problems.push(Problem::InvalidGrant {
                        organization: org_name(scope),
                        role: role.name.clone(),
                        grant: grant.clone(),
                    }),
                }
            }
            scratch.sort_unstable();
            scratch.dedup();
            too_many_edges |= grants.push(&scratch).is_none();
        }

        // Defaults and group mappings.
        let mut default_role = |which: DefaultRole, name: &Option<String>| {
            let name = name.as_deref()?;
            let found = resolve(name);
            if found.is_none() {
                problems.push(Problem::UnknownDefaultRole {
                    organization: org_name(scope),
                    which,
                    role: name.to_owned(),
                });
            }
            found
        };
        let Some(org) = org else {
            default_creator = default_role(DefaultRole::Creator, &policy.default_creator_role);
            default_member = default_role(DefaultRole::Member, &policy.default_member_role);
            continue;
        };
        let org_default = default_role(DefaultRole::Member, &org.default_member_role);
        let mut groups: Vec<(Box<str>, Vec<RoleId>)> = Vec::new();
        if !org.group_roles.is_empty() {
            let mut by_group: AHashMap<&str, Vec<RoleId>> = AHashMap::new();
            for mapping in &org.group_roles {
                let entry = by_group.entry(mapping.group.as_str()).or_default();
                for role in &mapping.roles {
                    match resolve(role) {
                        Some(id) => entry.push(id),
                        None => problems.push(Problem::UnknownGroupRole {
                            organization: org.id.clone(),
                            group: mapping.group.clone(),
                            role: role.clone(),
                        }),
                    }
                }
            }
            groups = by_group
                .into_iter()
                .map(|(g, mut roles)| {
                    roles.sort_unstable();
                    roles.dedup();
                    (Box::from(g), roles)
                })
                .collect();
            groups.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        }
        orgs.push(Org {
            has_roles: !org.roles.is_empty(),
            id: org.id.as_str().into(),
            default_member: org_default,
            groups,
        });
    }
    if too_many_roles {
        problems.push(Problem::TooMany {
            what: "roles",
            count: defs.len(),
        });
    }
    if too_many_wildcards {
        problems.push(Problem::TooMany {
            what: "distinct wildcard grants",
            count: wildcards.len(),
        });
    }
    if too_many_edges {
        problems.push(Problem::TooMany {
            what: "grants and bases",
            count: defs
                .iter()
                .map(|(r, _)| r.permissions.len() + r.extends.len())
                .sum(),
        });
    }

    // Cycles: an acyclic graph is simply ordered and flattened; only when
    // it cannot be (or other problems are reported anyway) are the strongly
    // connected sets searched, to report every cycle with a path.
    let cycles = |bases: &Csr| {
        let names: Vec<&str> = defs.iter().map(|(r, _)| r.name.as_str()).collect();
        find_cycles(bases, &names, |i| {
            defs.get(i).and_then(|(_, s)| org_name(*s))
        })
    };
    if !problems.is_empty() {
        problems.extend(cycles(&bases));
        return Err(CompileError::new(problems));
    }

    let mut role_names = Names::with_capacity(defs.len());
    let mut role_scope = Vec::with_capacity(defs.len());
    for (role, scope) in &defs {
        if role_names.push(&role.name).is_none() {
            return Err(CompileError::new(vec![Problem::TooMany {
                what: "bytes of role names",
                count: defs.iter().map(|(r, _)| r.name.len()).sum(),
            }]));
        }
        role_scope.push(*scope);
    }
    // Flattened in topological order by the compiled core's one flattener.
    let built = Core::build(Parts {
        lineage: previous.map_or_else(compiled::next_id, Core::lineage),
        numbering,
        perms,
        role_names,
        role_scope,
        bases,
        grants,
        wildcards,
        orgs,
        org_index,
        default_creator,
        default_member,
    });
    // The roles could not all be ordered: there is a cycle to report.
    built.map_err(|bases| CompileError::new(cycles(&bases)))
}

/// Every strongly connected set with a cycle, each with one concrete path.
fn find_cycles(
    bases: &Csr,
    names: &[&str],
    organization: impl Fn(usize) -> Option<String>,
) -> Vec<Problem> {
    let n = bases.len();
    let mut graph: DiGraph<(), (), u32> = DiGraph::with_capacity(n, bases.items_len());
    for _ in 0..n {
        graph.add_node(());
    }
    for r in 0..n {
        for &b in bases.get(r) {
            graph.add_edge(NodeIndex::new(r), NodeIndex::new(b as usize), ());
        }
    }
    let name = |i: usize| names.get(i).copied().unwrap_or("");
    let mut component = vec![u32::MAX; n];
    let mut out = Vec::new();
    for (c, scc) in kosaraju_scc(&graph).into_iter().enumerate() {
        let self_loop = match scc.as_slice() {
            [only] => bases.get(only.index()).contains(&(only.index() as u32)),
            _ => false,
        };
        if scc.len() < 2 && !self_loop {
            continue;
        }
        for v in &scc {
            if let Some(slot) = component.get_mut(v.index()) {
                *slot = c as u32;
            }
        }
        let mut members: Vec<usize> = scc.iter().map(|v| v.index()).collect();
        members.sort_unstable_by(|a, b| name(*a).cmp(name(*b)));
        let Some(&start) = members.first() else {
            continue;
        };
        let path = cycle_path(bases, &component, c as u32, start, &name);
        out.push(Problem::Cycle(Cycle {
            organization: organization(start),
            members: members.iter().map(|&m| name(m).to_owned()).collect(),
            path,
        }));
    }
    out
}

/// The shortest cycle through `start` inside its component, neighbours taken
/// in name order (breadth-first, so no recursion).
fn cycle_path<'a>(
    bases: &Csr,
    component: &[u32],
    c: u32,
    start: usize,
    name: &impl Fn(usize) -> &'a str,
) -> Vec<String> {
    let mut parent: AHashMap<usize, usize> = AHashMap::new();
    let mut seen: AHashSet<usize> = AHashSet::new();
    let mut queue = VecDeque::from([start]);
    seen.insert(start);
    let mut last = None;
    'bfs: while let Some(v) = queue.pop_front() {
        let mut next: Vec<usize> = bases
            .get(v)
            .iter()
            .map(|&b| b as usize)
            .filter(|&b| component.get(b) == Some(&c))
            .collect();
        next.sort_unstable_by(|a, b| name(*a).cmp(name(*b)));
        for w in next {
            if w == start {
                last = Some(v);
                break 'bfs;
            }
            if seen.insert(w) {
                parent.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    // Walk back from the role closing the loop, then read it forwards.
    let mut back = Vec::new();
    let mut v = last;
    while let Some(at) = v {
        back.push(at);
        v = if at == start {
            None
        } else {
            parent.get(&at).copied()
        };
    }
    back.reverse();
    back.push(start);
    back.into_iter().map(|v| name(v).to_owned()).collect()
}
