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

use std::sync::Arc;

use crate::compiled::{Core, Org, ENV};
use crate::engine::model::{Effects, Model, RoleKey};
use crate::ids::RoleId;
use crate::model::Role;
use crate::name::{classify_grant, is_valid_name, GrantKind};

/// Patches `prev` into the compiled form of `model`, or `None` when the
/// batch needs (or may need) the full compiler.
///
/// This function validates and resolves names against the model; every
/// write to the compiled form goes through a [`Draft`](crate::compiled::Draft),
/// whose `finish` recomputes rows with the same flattener as the full compile.
pub(crate) fn patch(prev: &Arc<Core>, model: &Model, fx: &Effects) -> Option<Arc<Core>> {
    if fx.structural {
        return None;
    }
    if fx.policy_changes == 0 {
        return Some(Arc::clone(prev));
    }
    let mut draft = prev.draft();

    // Deleted permissions retire their ids; new ones get a retired id back or a new one.
    for name in &fx.perms_deleted {
        draft.retire_permission(name)?;
    }
    for name in &fx.perms_created {
        if !is_valid_name(name) {
            return None;
        }
        draft.declare_permission(name)?;
    }

    // New roles: appended, with empty lists until filled in below.
    for (org, name) in &fx.created {
        let core = draft.core();
        let scope = scope_of(core, org.as_deref())?;
        let clashes = match org {
            None => model.orgs.values().any(|s| s.roles.contains_key(name)),
            Some(_) => model.env.roles.contains_key(name),
        };
        if !is_valid_name(name) || clashes || core.find_role(scope, name).is_some() {
            return None;
        }
        draft.add_role(scope, name)?;
    }

    // Changed roles: lists rebuilt from the model, validated as the compiler
    // would. Bases are rebuilt only where they changed (or the role is new).
    let mut rebased: Vec<RoleId> = Vec::with_capacity(fx.rebased.len() + fx.created.len());
    for key in fx.rebased.iter().chain(&fx.created) {
        rebased.push(find(draft.core(), key)?);
    }
    let mut regranted: Vec<RoleId> = Vec::with_capacity(fx.roles.len() + fx.created.len());
    for key in fx.roles.iter().chain(&fx.created) {
        regranted.push(find(draft.core(), key)?);
    }
    for list in [&mut rebased, &mut regranted] {
        list.sort_unstable();
        list.dedup();
    }
    for &id in &rebased {
        let core = draft.core();
        let scope = core.role_scope(id.index())?;
        let role = model_role(model, core, scope, core.role_name(id.index()))?;
        let mut bases = Vec::with_capacity(role.extends.len());
        for b in &role.extends {
            bases.push(core.resolve_role(scope, b)?.index() as u32);
        }
        draft.set_bases(id, bases);
    }
    for &id in &regranted {
        let core = draft.core();
        let scope = core.role_scope(id.index())?;
        let role = model_role(model, core, scope, core.role_name(id.index()))?;
        let mut grants = Vec::with_capacity(role.permissions.len());
        for g in &role.permissions {
            match classify_grant(g) {
                GrantKind::Exact(p) => {
                    grants.push(draft.core().perms().id(p)?.index() as u32);
                }
                GrantKind::Prefix(prefix) => grants.push(draft.wildcard(prefix)?),
                GrantKind::Invalid => return None,
            }
        }
        draft.set_grants(id, grants);
    }

    // Defaults and group mappings: small, so rebuilt whole.
    if fx.defaults || !fx.created.is_empty() {
        let core = draft.core();
        let default_creator = resolve_opt(core, ENV, model.default_creator.as_deref())?;
        let default_member = resolve_opt(core, ENV, model.env.default_member.as_deref())?;
        let mut orgs = Vec::with_capacity(core.orgs().len());
        for org in core.orgs() {
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
                default_member: resolve_opt(core, scope, s.default_member.as_deref())?,
                groups,
            });
        }
        draft.set_scopes(default_creator, default_member, orgs);
    }

    // A cycle (necessarily through a changed base) leaves roles unordered:
    // the full compiler then reports it.
    draft.finish().map(Arc::new)
}

fn scope_of(core: &Core, org: Option<&str>) -> Option<u32> {
    match org {
        None => Some(ENV),
        Some(o) => core.org_number(o),
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
        model.orgs.get(&*core.orgs().get(scope as usize)?.id)?
    };
    s.roles.get(name)
}
