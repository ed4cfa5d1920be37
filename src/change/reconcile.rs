//! The difference between two policies as one batch of changes: used by
//! [`Existing::Reconcile`](crate::Existing::Reconcile) when the engine opens
//! and by the Scalekit handler's resync.

use std::collections::{BTreeMap, BTreeSet};

use crate::change::{Change, Reparent};
use crate::model::{Organization, Policy, Role};

/// The changes that turn `current` into `target`, in an order the engine
/// accepts as one batch: declare, create and update first, then delete
/// what `target` lacks (dependents detached, holders dropping the role),
/// then set defaults and group mappings, then drop organizations and
/// permissions that are gone.
///
/// Only differences are emitted; equal parts cost nothing but the
/// comparison.
pub(crate) fn reconcile_changes(current: &Policy, target: &Policy) -> Vec<Change> {
    let mut out = Vec::new();
    let cur_perms: BTreeMap<&str, &Option<String>> = current
        .permissions
        .iter()
        .map(|p| (p.name.as_str(), &p.description))
        .collect();
    for p in &target.permissions {
        match cur_perms.get(p.name.as_str()) {
            None => out.push(Change::CreatePermission {
                name: p.name.clone(),
                description: p.description.clone(),
            }),
            Some(d) if **d != p.description => out.push(Change::UpdatePermission {
                name: p.name.clone(),
                description: p.description.clone(),
            }),
            Some(_) => {}
        }
    }
    let cur_orgs: BTreeMap<&str, &Organization> = current
        .organizations
        .iter()
        .map(|o| (o.id.as_str(), o))
        .collect();
    for org in &target.organizations {
        if !cur_orgs.contains_key(org.id.as_str()) {
            out.push(Change::CreateOrganization { id: org.id.clone() });
        }
    }
    upsert_roles(&mut out, None, &current.roles, &target.roles);
    for org in &target.organizations {
        let existing = cur_orgs.get(org.id.as_str()).map_or(&[][..], |o| &o.roles);
        upsert_roles(&mut out, Some(&org.id), existing, &org.roles);
    }
    delete_roles(&mut out, None, &current.roles, &target.roles);
    let targets: BTreeMap<&str, &Organization> = target
        .organizations
        .iter()
        .map(|o| (o.id.as_str(), o))
        .collect();
    for org in &current.organizations {
        if let Some(t) = targets.get(org.id.as_str()) {
            delete_roles(&mut out, Some(&org.id), &org.roles, &t.roles);
        }
    }
    out.push(Change::SetDefaultRoles {
        creator: target.default_creator_role.clone(),
        member: target.default_member_role.clone(),
    });
    for org in &target.organizations {
        out.push(Change::SetOrganizationDefaultRole {
            organization: org.id.clone(),
            role: org.default_member_role.clone(),
        });
        let mut mapped = BTreeSet::new();
        for g in &org.group_roles {
            mapped.insert(g.group.as_str());
            out.push(Change::SetGroupRoles {
                organization: org.id.clone(),
                group: g.group.clone(),
                roles: g.roles.clone(),
            });
        }
        if let Some(cur) = cur_orgs.get(org.id.as_str()) {
            for g in &cur.group_roles {
                if !mapped.contains(g.group.as_str()) {
                    out.push(Change::SetGroupRoles {
                        organization: org.id.clone(),
                        group: g.group.clone(),
                        roles: Vec::new(),
                    });
                }
            }
        }
    }
    for org in &current.organizations {
        if !targets.contains_key(org.id.as_str()) {
            out.push(Change::DeleteOrganization { id: org.id.clone() });
        }
    }
    let target_perms: BTreeSet<&str> = target.permissions.iter().map(|p| p.name.as_str()).collect();
    for p in &current.permissions {
        if !target_perms.contains(p.name.as_str()) {
            out.push(Change::DeletePermission {
                name: p.name.clone(),
            });
        }
    }
    out
}

fn upsert_roles(out: &mut Vec<Change>, org: Option<&str>, current: &[Role], target: &[Role]) {
    let cur: BTreeMap<&str, &Role> = current.iter().map(|r| (r.name.as_str(), r)).collect();
    for role in target {
        if cur.get(role.name.as_str()).is_none_or(|c| *c != role) {
            out.push(Change::CreateRole {
                organization: org.map(str::to_owned),
                role: role.clone(),
            });
        }
    }
}

fn delete_roles(out: &mut Vec<Change>, org: Option<&str>, current: &[Role], target: &[Role]) {
    let keep: BTreeSet<&str> = target.iter().map(|r| r.name.as_str()).collect();
    for role in current {
        if !keep.contains(role.name.as_str()) {
            out.push(Change::DeleteRole {
                organization: org.map(str::to_owned),
                name: role.name.clone(),
                reassign_to: None,
                reparent: Some(Reparent::Detach),
            });
        }
    }
}
