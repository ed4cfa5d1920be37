//! Incremental recompile: patch the previous compiled policy where a batch
//! touched it, instead of compiling the whole policy again.
//!
//! The fast path handles what changes most often: grants and bases of
//! existing roles, new roles, new and deleted permissions, defaults and group
//! mappings. It recomputes the rows of the changed roles and of every role
//! that inherits from them (in topological order of that sub-graph only),
//! rows granted by a wildcard a new permission matches, and nothing else.
//! Role deletions and organization changes take the full compile.
//!
//! The fast path is conservative: whenever it meets something that may be
//! invalid (an unknown base, an undeclared grant, a cycle, a name clash) it
//! gives up and the caller runs the full compiler, whose errors are the
//! canonical ones. It never accepts what the compiler would refuse.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::bits;
use crate::compile::{matching, perm_name};
use crate::engine::model::{Effects, Model, RoleKey};
use crate::ids::{PermissionId, RoleId};
use crate::model::Role;
use crate::name::{classify_grant, is_valid_name, GrantKind};
use crate::snapshot::{Core, Csr, Org, ENV, WILDCARD};

/// Patches `prev` into the compiled form of `model`, or `None` when the
/// batch needs (or may need) the full compiler.
/// The transpose of a `bases` list: kept by the writer between changes and
/// valid while the bases are the same allocation.
pub(crate) type Reverse = Option<(Arc<Csr>, Arc<Csr>)>;

pub(crate) fn patch(
    prev: &Arc<Core>,
    model: &Model,
    fx: &Effects,
    reverse: &mut Reverse,
) -> Option<Arc<Core>> {
    if fx.structural {
        return None;
    }
    if fx.policy_changes == 0 {
        return Some(Arc::clone(prev));
    }
    let mut core: Core = (**prev).clone();
    let mut dirty: Vec<RoleId> = Vec::new();

    // Deleted permissions: retire the id and clear its column everywhere.
    for name in &fx.perms_deleted {
        let id = *core.perm_index.get(name.as_str())?;
        Arc::make_mut(&mut core.perm_index).remove(name.as_str());
        Arc::make_mut(&mut core.retired).insert(name.as_str().into(), id);
        Arc::make_mut(&mut core.perm_sorted).retain(|p| *p != id);
        Arc::make_mut(&mut core.rows).clear_column(id.index());
    }

    // New permissions: an old id back if the name was retired, else a new one.
    for name in &fx.perms_created {
        if !is_valid_name(name) || core.perm_index.contains_key(name.as_str()) {
            return None;
        }
        let id = match Arc::make_mut(&mut core.retired).remove(name.as_str()) {
            Some(id) => id,
            None => {
                let id = PermissionId::from_index(core.perms.len())?;
                Arc::make_mut(&mut core.perms).push(name.as_str().into());
                id
            }
        };
        Arc::make_mut(&mut core.perm_index).insert(name.as_str().into(), id);
        let perms = Arc::clone(&core.perms);
        let sorted = Arc::make_mut(&mut core.perm_sorted);
        let at = sorted.partition_point(|p| perm_name(&perms, *p) < name.as_str());
        sorted.insert(at, id);
        // Roles with a wildcard matching the new name must be recomputed.
        for r in 0..core.grants.len() {
            let hit = core.grants.get(r).iter().any(|&g| {
                g & WILDCARD != 0
                    && core
                        .wildcards
                        .get((g & !WILDCARD) as usize)
                        .is_some_and(|p| name.starts_with(&**p))
            });
            if hit {
                dirty.extend(RoleId::from_index(r));
            }
        }
    }
    let width = bits::words_for(core.perms.len());
    if width > core.rows.width() {
        core.rows = Arc::new(core.rows.widened(width));
    }

    // New roles: appended, with empty lists until filled in below.
    for (org, name) in &fx.created {
        let scope = scope_of(&core, org.as_deref())?;
        let clashes = match org {
            None => model.orgs.values().any(|s| s.roles.contains_key(name)),
            Some(_) => model.env.roles.contains_key(name),
        };
        if !is_valid_name(name) || clashes || core.find_role(scope, name).is_some() {
            return None;
        }
        let id = RoleId::from_index(core.role_scope.len())?;
        Arc::make_mut(&mut core.role_names).push(name);
        Arc::make_mut(&mut core.role_scope).push(scope);
        let (names, scopes) = (Arc::clone(&core.role_names), Arc::clone(&core.role_scope));
        Arc::make_mut(&mut core.role_index).insert(&names, &scopes, id);
        Arc::make_mut(&mut core.bases).push(&[]);
        Arc::make_mut(&mut core.grants).push(&[]);
        Arc::make_mut(&mut core.rows).push_row();
        Arc::make_mut(&mut core.depth).push(0);
        dirty.push(id);
    }

    // Changed roles: lists rebuilt from the model, validated as the compiler
    // would. Bases are rebuilt only where they changed (or the role is new).
    let mut rebased: Vec<RoleId> = Vec::with_capacity(fx.rebased.len() + fx.created.len());
    for key in fx.rebased.iter().chain(&fx.created) {
        rebased.push(find(&core, key)?);
    }
    let mut regranted: Vec<RoleId> = Vec::with_capacity(fx.roles.len() + fx.created.len());
    for key in fx.roles.iter().chain(&fx.created) {
        regranted.push(find(&core, key)?);
    }
    for list in [&mut rebased, &mut regranted] {
        list.sort_unstable();
        list.dedup();
    }
    dirty.extend(&regranted);
    dirty.extend(&rebased);
    dirty.sort_unstable();
    dirty.dedup();
    let mut new_bases: Vec<(usize, Vec<u32>)> = Vec::with_capacity(rebased.len());
    for &id in &rebased {
        let scope = *core.role_scope.get(id.index())?;
        let role = model_role(model, &core, scope, core.role_names.get(id.index()))?;
        let mut bases = Vec::with_capacity(role.extends.len());
        for b in &role.extends {
            bases.push(core.resolve_role(scope, b)?.index() as u32);
        }
        bases.sort_unstable();
        bases.dedup();
        new_bases.push((id.index(), bases));
    }
    let mut new_grants: Vec<(usize, Vec<u32>)> = Vec::with_capacity(regranted.len());
    for &id in &regranted {
        let scope = *core.role_scope.get(id.index())?;
        let role = model_role(model, &core, scope, core.role_names.get(id.index()))?;
        let mut grants = Vec::with_capacity(role.permissions.len());
        for g in &role.permissions {
            match classify_grant(g) {
                GrantKind::Exact(p) => grants.push(core.perm_index.get(p)?.index() as u32),
                GrantKind::Prefix(prefix) => {
                    let ix = match core.wildcards.iter().position(|w| **w == *prefix) {
                        Some(ix) => ix,
                        None => {
                            Arc::make_mut(&mut core.wildcards).push(prefix.into());
                            core.wildcards.len() - 1
                        }
                    };
                    grants.push(WILDCARD | u32::try_from(ix).ok()?);
                }
                GrantKind::Invalid => return None,
            }
        }
        grants.sort_unstable();
        grants.dedup();
        new_grants.push((id.index(), grants));
    }
    if !new_bases.is_empty() {
        core.bases = Arc::new(substitute(&core.bases, &new_bases));
    }
    if !new_grants.is_empty() {
        core.grants = Arc::new(substitute(&core.grants, &new_grants));
    }

    // The reverse graph, reused while the bases are the same allocation.
    let dependents = match reverse.as_ref() {
        Some((bases, deps)) if Arc::ptr_eq(bases, &core.bases) => Arc::clone(deps),
        _ => {
            let deps = Arc::new(core.bases.transpose(core.bases.len()));
            *reverse = Some((Arc::clone(&core.bases), Arc::clone(&deps)));
            deps
        }
    };

    // Everything that inherits from a dirty role, in topological order; a
    // cycle (necessarily through a changed base) leaves nodes unordered.
    let order = closure_order(&core.bases, &dependents, &dirty)?;
    let rows = Arc::make_mut(&mut core.rows);
    let depth = Arc::make_mut(&mut core.depth);
    let mut depth_changed = false;
    for &r in &order {
        let row = rows.row_mut(r);
        row.fill(0);
        for &g in core.grants.get(r) {
            if g & WILDCARD == 0 {
                bits::set(row, g as usize);
            } else if let Some(prefix) = core.wildcards.get((g & !WILDCARD) as usize) {
                for id in matching(&core.perms, &core.perm_sorted, prefix) {
                    bits::set(row, id.index());
                }
            }
        }
        let mut d = 0;
        for &b in core.bases.get(r) {
            rows.or_row(r, b as usize);
            d = d.max(depth.get(b as usize).copied().unwrap_or(0));
        }
        if let Some(slot) = depth.get_mut(r) {
            depth_changed |= *slot != d + 1;
            *slot = d + 1;
        }
    }
    if depth_changed {
        core.max_depth = depth.iter().copied().max().unwrap_or(0);
    }

    // Defaults and group mappings: small, so rebuilt whole.
    if fx.defaults || !fx.created.is_empty() {
        core.default_creator = resolve_opt(&core, ENV, model.default_creator.as_deref())?;
        core.default_member = resolve_opt(&core, ENV, model.env.default_member.as_deref())?;
        let mut orgs = Vec::with_capacity(core.orgs.len());
        for org in core.orgs.iter() {
            let scope = core.scope_number(Some(&org.id));
            let s = model.orgs.get(&*org.id)?;
            let mut groups: Vec<(Box<str>, Vec<RoleId>)> = Vec::with_capacity(s.groups.len());
            for (group, roles) in s.groups.iter() {
                let mut ids = Vec::with_capacity(roles.len());
                for r in roles {
                    ids.push(core.resolve_role(scope, r)?);
                }
                ids.sort_unstable();
                ids.dedup();
                groups.push((Box::from(group.as_str()), ids));
            }
            groups.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            orgs.push(Org {
                has_roles: !s.roles.is_empty(),
                id: org.id.clone(),
                default_member: resolve_opt(&core, scope, s.default_member.as_deref())?,
                groups,
            });
        }
        core.orgs = Arc::new(orgs);
    }

    core.id = crate::snapshot::next_snapshot_id();
    Some(Arc::new(core))
}

fn scope_of(core: &Core, org: Option<&str>) -> Option<u32> {
    match org {
        None => Some(ENV),
        Some(o) => core.org_index.get(o).copied(),
    }
}

fn find(core: &Core, (org, name): &RoleKey) -> Option<RoleId> {
    core.find_role(scope_of(core, org.as_deref())?, name)
}

/// `Some(None)` for no role, `Some(Some(id))` for a resolved one, `None`
/// when the name does not resolve (invalid: let the compiler say so).
fn resolve_opt(core: &Core, scope: u32, name: Option<&str>) -> Option<Option<RoleId>> {
    match name {
        None => Some(None),
        Some(n) => core.resolve_role(scope, n).map(Some),
    }
}

fn model_role<'m>(model: &'m Model, core: &Core, scope: u32, name: &str) -> Option<&'m Role> {
    let s = if scope == ENV {
        &model.env
    } else {
        model.orgs.get(&*core.orgs.get(scope as usize)?.id)?
    };
    s.roles.get(name)
}

/// `csr` with the lists of some items replaced.
fn substitute(csr: &Csr, replaced: &[(usize, Vec<u32>)]) -> Csr {
    if replaced.is_empty() {
        return csr.clone();
    }
    let mut out = Csr::with_capacity(csr.len());
    let mut next = replaced.iter().peekable();
    for i in 0..csr.len() {
        match next.peek() {
            Some((at, list)) if *at == i => {
                out.push(list);
                next.next();
            }
            _ => out.push(csr.get(i)),
        }
    }
    out
}

/// The dirty roles and every role extending them, bases first. `None` when
/// they cannot all be ordered, which means a cycle.
fn closure_order(bases: &Csr, dependents: &Csr, dirty: &[RoleId]) -> Option<Vec<usize>> {
    let n = bases.len();
    let mut member = vec![false; n];
    let mut stack: Vec<usize> = dirty.iter().map(|r| r.index()).collect();
    let mut nodes = Vec::new();
    while let Some(r) = stack.pop() {
        match member.get_mut(r) {
            Some(m) if !*m => *m = true,
            _ => continue,
        }
        nodes.push(r);
        stack.extend(dependents.get(r).iter().map(|&d| d as usize));
    }
    // Kahn's algorithm on the closure: count bases inside it.
    let mut pending = vec![0u32; n];
    for &r in &nodes {
        let inside = bases
            .get(r)
            .iter()
            .filter(|&&b| member.get(b as usize) == Some(&true))
            .count();
        if let Some(p) = pending.get_mut(r) {
            *p = inside as u32;
        }
    }
    let mut queue: VecDeque<usize> = nodes
        .iter()
        .copied()
        .filter(|&r| pending.get(r) == Some(&0))
        .collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(r) = queue.pop_front() {
        order.push(r);
        for &d in dependents.get(r) {
            if let Some(p) = pending.get_mut(d as usize) {
                *p -= 1;
                if *p == 0 {
                    queue.push_back(d as usize);
                }
            }
        }
    }
    (order.len() == nodes.len()).then_some(order)
}
