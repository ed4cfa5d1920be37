//! The engine's source of truth: the policy and memberships as persistent
//! maps, so that a batch is applied to an O(1) copy and a refused batch is
//! simply dropped.

use std::collections::HashSet;
use std::sync::Arc;

use imbl::{OrdMap, OrdSet};

use crate::change::{Change, ChangeError, Outcome, Reparent};
use crate::membership::{MemberKey, Members, Membership};
use crate::model::{GroupRoles, Organization, Permission, Policy, Role};

/// Roles, defaults and group mapping of one scope (the environment or an
/// organization).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Scope {
    pub(crate) roles: OrdMap<String, Role>,
    pub(crate) default_member: Option<String>,
    pub(crate) groups: OrdMap<String, Vec<String>>,
}

/// The whole mutable state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Model {
    pub(crate) permissions: OrdMap<String, Option<String>>,
    pub(crate) env: Scope,
    pub(crate) default_creator: Option<String>,
    pub(crate) orgs: OrdMap<String, Scope>,
    pub(crate) members: Members,
    /// Delivery id -> when it was received (ms), for idempotency.
    pub(crate) deliveries: OrdMap<String, u64>,
    /// The same, ordered by time, for expiry.
    pub(crate) delivery_times: OrdMap<(u64, String), ()>,
    /// Entity -> `occurred_at` (ns) of the last event applied to it.
    pub(crate) clocks: OrdMap<String, u64>,
    /// Which roles grant each name directly, so that deleting a permission
    /// costs the roles that grant it, not every role.
    grants: GrantIndex,
}

/// Grant -> the roles whose direct grants name it (wildcards included, as
/// written).
///
/// INVARIANT: equals [`GrantIndex::of`] over the model's roles. Every change
/// to a role's `permissions`, and every role created or removed, goes
/// through [`GrantIndex::add`] / [`GrantIndex::remove`]; the roles of a
/// scope are never edited elsewhere.
///
/// Persistent like the rest of the model, so a batch's O(1) copy stays
/// O(1); names are `Arc<str>`, so the nodes a change copies bump counts
/// instead of copying strings. A set per grant iterates in [`RoleKey`]
/// order — the environment, then organizations by id, each by role name —
/// the order the scan over every scope that it replaces reported roles in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct GrantIndex(OrdMap<Arc<str>, OrdSet<SharedRoleKey>>);

/// A [`RoleKey`] whose copies share their text.
type SharedRoleKey = (Option<Arc<str>>, Arc<str>);

fn shared_key(org: Option<&str>, name: &str) -> SharedRoleKey {
    (org.map(Arc::from), Arc::from(name))
}

impl GrantIndex {
    /// The index recomputed from scratch (what the invariant compares to).
    fn of<'a>(roles: impl Iterator<Item = (Option<&'a str>, &'a Role)>) -> Self {
        let mut index = Self::default();
        for (org, role) in roles {
            index.add(org, &role.name, &role.permissions);
        }
        index
    }

    /// Records that role (`org`, `name`) grants each of `grants`.
    fn add(&mut self, org: Option<&str>, name: &str, grants: &[String]) {
        let key = shared_key(org, name);
        for grant in grants {
            match self.0.get_mut(grant.as_str()) {
                Some(holders) => {
                    holders.insert(key.clone());
                }
                None => {
                    self.0
                        .insert(Arc::from(grant.as_str()), OrdSet::unit(key.clone()));
                }
            }
        }
    }

    /// Records that role (`org`, `name`) no longer grants any of `grants`.
    fn remove(&mut self, org: Option<&str>, name: &str, grants: &[String]) {
        let key = shared_key(org, name);
        for grant in grants {
            if let Some(holders) = self.0.get_mut(grant.as_str()) {
                holders.remove(&key);
                if holders.is_empty() {
                    self.0.remove(grant.as_str());
                }
            }
        }
    }

    /// Removes `grant`, returning the roles that granted it, in order.
    fn take(&mut self, grant: &str) -> impl Iterator<Item = RoleKey> {
        let holders = self.0.remove(grant).unwrap_or_default();
        holders
            .into_iter()
            .map(|(org, name)| (org.map(|o| o.to_string()), name.to_string()))
    }
}

/// At most this many delivery ids are remembered, whatever the retention.
pub(crate) const MAX_DELIVERIES: usize = 200_000;

/// A role's address: organization (`None` for the environment) and name.
pub(crate) type RoleKey = (Option<String>, String);

/// What a batch touched, for the incremental recompiler.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    /// Something the incremental path does not handle: recompile in full.
    pub(crate) structural: bool,
    /// Existing roles whose grants or bases changed.
    pub(crate) roles: Vec<RoleKey>,
    /// Of those, the ones whose bases changed.
    pub(crate) rebased: Vec<RoleKey>,
    /// New roles, in creation order.
    pub(crate) created: Vec<RoleKey>,
    pub(crate) perms_created: Vec<String>,
    pub(crate) perms_deleted: Vec<String>,
    /// Defaults or group mappings changed.
    pub(crate) defaults: bool,
    /// Memberships touched, (organization, user), each once, in the order
    /// first touched (the keys as the model stores them: no copy).
    pub(crate) members: Vec<MemberKey>,
    /// Each of `members` as it was before the batch (by position).
    pub(crate) members_before: Vec<Option<Arc<Membership>>>,
    /// Each of `members` as the batch leaves it (by position; `None` when
    /// removed): the validation and the index read it here, not from the
    /// model again.
    pub(crate) members_after: Vec<Option<Arc<Membership>>>,
    /// `members` → its position, so that each is recorded once and a later
    /// change of it in the batch updates its `after`.
    members_seen: hashbrown::HashMap<MemberKey, usize, ahash::RandomState>,
    /// Whether the batch has deleted an organization (that one scanned the
    /// memberships).
    deleted_an_organization: bool,
    /// Organization → the users with a membership in it: built by one scan
    /// of the memberships at the batch's second `DeleteOrganization` and
    /// kept up to date by the batch's later memberships, so that k deletions
    /// in one batch cost two scans, not k (entries whose membership has
    /// ended since are skipped when read).
    members_by_org: Option<hashbrown::HashMap<Arc<str>, Vec<Arc<str>>, ahash::RandomState>>,
    /// How many policy-level changes (not memberships, not descriptions).
    pub(crate) policy_changes: usize,
    pub(crate) outcome: Outcome,
}

impl Effects {
    /// The users with a membership in `org`, which the batch is deleting:
    /// sorted by user key (whatever the map's order), each once. The first
    /// deletion of a batch scans the memberships; a second builds
    /// `members_by_org` by one more scan, so k deletions cost two scans,
    /// not k.
    fn members_of_deleted(&mut self, members: &Members, org: &str) -> Vec<Arc<str>> {
        let mut users: Vec<Arc<str>> = if self.deleted_an_organization {
            let by_org = self.members_by_org.get_or_insert_with(|| {
                let mut by_org = hashbrown::HashMap::default();
                for (user, org, _) in members.iter() {
                    by_org
                        .entry(Arc::clone(org))
                        .or_insert_with(Vec::new)
                        .push(Arc::clone(user));
                }
                by_org
            });
            by_org.remove(org).unwrap_or_default()
        } else {
            // The usual batch deletes one: a scan, no map.
            self.deleted_an_organization = true;
            members
                .iter()
                .filter(|(_, o, _)| ***o == *org)
                .map(|(user, _, _)| Arc::clone(user))
                .collect()
        };
        // The map also lists users since removed, or listed twice.
        users.sort_unstable();
        users.dedup();
        users.retain(|user| members.get(org, user).is_some());
        users
    }

    /// Room for `n` touched memberships: a batch of `n` changes touches
    /// about that many (a bulk load exactly), so the set is not rehashed
    /// as it grows.
    pub(crate) fn reserve_members(&mut self, n: usize) {
        self.members.reserve(n);
        self.members_before.reserve(n);
        self.members_after.reserve(n);
        self.members_seen.reserve(n);
    }

    /// Records that the membership (`org`, `user`) changed from `before`
    /// to `after`; `before` is what it was before this change, which is
    /// what it was before the batch when the batch had not touched it yet.
    fn touch_member(
        &mut self,
        org: Arc<str>,
        user: Arc<str>,
        before: Option<Arc<Membership>>,
        after: Option<Arc<Membership>>,
    ) {
        match self
            .members_seen
            .entry((Arc::clone(&org), Arc::clone(&user)))
        {
            hashbrown::hash_map::Entry::Occupied(seen) => {
                if let Some(slot) = self.members_after.get_mut(*seen.get()) {
                    *slot = after;
                }
            }
            hashbrown::hash_map::Entry::Vacant(seen) => {
                seen.insert(self.members.len());
                self.members.push((org, user));
                self.members_before.push(before);
                self.members_after.push(after);
            }
        }
    }
}

fn key_text(org: Option<&str>, name: &str) -> String {
    match org {
        Some(o) => format!("{o}/{name}"),
        None => name.to_owned(),
    }
}

impl Model {
    pub(crate) fn from_policy(policy: &Policy) -> Self {
        let mut m = Self {
            default_creator: policy.default_creator_role.clone(),
            ..Self::default()
        };
        for p in &policy.permissions {
            m.permissions.insert(p.name.clone(), p.description.clone());
        }
        m.env = scope_from(&policy.roles, policy.default_member_role.clone(), &[]);
        for org in &policy.organizations {
            m.orgs.insert(
                org.id.clone(),
                scope_from(
                    &org.roles,
                    org.default_member_role.clone(),
                    &org.group_roles,
                ),
            );
        }
        m.grants = GrantIndex::of(m.all_roles());
        m
    }

    /// Every role with its organization.
    fn all_roles(&self) -> impl Iterator<Item = (Option<&str>, &Role)> {
        let env = self.env.roles.values().map(|r| (None, r));
        let orgs = self
            .orgs
            .iter()
            .flat_map(|(id, s)| s.roles.values().map(move |r| (Some(id.as_str()), r)));
        env.chain(orgs)
    }

    /// Whether the grant index equals a recomputation from the roles.
    #[cfg(test)]
    pub(crate) fn grants_consistent(&self) -> bool {
        self.grants == GrantIndex::of(self.all_roles())
    }

    pub(crate) fn to_policy(&self) -> Policy {
        Policy {
            permissions: self
                .permissions
                .iter()
                .map(|(name, description)| Permission {
                    name: name.clone(),
                    description: description.clone(),
                })
                .collect(),
            roles: self.env.roles.values().cloned().collect(),
            default_creator_role: self.default_creator.clone(),
            default_member_role: self.env.default_member.clone(),
            organizations: self
                .orgs
                .iter()
                .map(|(id, s)| Organization {
                    id: id.clone(),
                    default_member_role: s.default_member.clone(),
                    roles: s.roles.values().cloned().collect(),
                    group_roles: s
                        .groups
                        .iter()
                        .map(|(group, roles)| GroupRoles {
                            group: group.clone(),
                            roles: roles.clone(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    fn scope(&self, org: Option<&str>) -> Option<&Scope> {
        match org {
            None => Some(&self.env),
            Some(o) => self.orgs.get(o),
        }
    }

    fn scope_mut(&mut self, org: Option<&str>) -> Result<&mut Scope, ChangeError> {
        match org {
            None => Ok(&mut self.env),
            Some(o) => self
                .orgs
                .get_mut(o)
                .ok_or_else(|| ChangeError::UnknownOrganization { id: o.to_owned() }),
        }
    }

    fn role_mut(&mut self, org: Option<&str>, name: &str) -> Result<&mut Role, ChangeError> {
        self.scope_mut(org)?
            .roles
            .get_mut(name)
            .ok_or_else(|| ChangeError::UnknownRole {
                organization: org.map(str::to_owned),
                name: name.to_owned(),
            })
    }

    /// Applies one change to the model, recording its effects. Validity of the
    /// resulting policy is the compiler's business; this refuses only what
    /// cannot even be expressed (a missing role to update, dependents left
    /// dangling by a delete).
    pub(crate) fn apply(&mut self, change: &Change, fx: &mut Effects) -> Result<(), ChangeError> {
        match change {
            Change::CreatePermission { name, description } => match self.permissions.get(name) {
                Some(old) if description.is_none() || old == description => {}
                Some(_) => {
                    self.permissions.insert(name.clone(), description.clone());
                    fx.outcome.changed = true;
                }
                None => {
                    self.permissions.insert(name.clone(), description.clone());
                    fx.perms_created.push(name.clone());
                    fx.policy_changes += 1;
                    fx.outcome.changed = true;
                }
            },
            Change::UpdatePermission { name, description } => {
                let old = self
                    .permissions
                    .get_mut(name)
                    .ok_or_else(|| ChangeError::UnknownPermission { name: name.clone() })?;
                if old != description {
                    old.clone_from(description);
                    fx.outcome.changed = true;
                }
            }
            Change::DeletePermission { name } => {
                if self.permissions.remove(name).is_none() {
                    return Ok(()); // already gone: deleting is idempotent
                }
                fx.perms_deleted.push(name.clone());
                fx.policy_changes += 1;
                fx.outcome.changed = true;
                // The roles that grant it, from the index: not a scan of
                // every role (a batch of n deletions was O(n × roles)).
                for (org, role) in self.grants.take(name) {
                    self.role_mut(org.as_deref(), &role)?
                        .permissions
                        .retain(|p| p != name);
                    fx.outcome
                        .roles_affected
                        .push(key_text(org.as_deref(), &role));
                    fx.roles.push((org, role));
                }
            }
            Change::CreateRole { organization, role } => {
                let org = organization.as_deref();
                let scope = self.scope_mut(org)?;
                match scope.roles.get(&role.name) {
                    Some(old) if old == role => {}
                    Some(old) => {
                        let rebased = old.extends != role.extends;
                        let old = scope.roles.insert(role.name.clone(), role.clone());
                        let old_grants = old.map(|r| r.permissions).unwrap_or_default();
                        self.grants.remove(org, &role.name, &old_grants);
                        self.grants.add(org, &role.name, &role.permissions);
                        self.touched_role(org, &role.name, rebased, fx);
                    }
                    None => {
                        scope.roles.insert(role.name.clone(), role.clone());
                        self.grants.add(org, &role.name, &role.permissions);
                        fx.created.push((organization.clone(), role.name.clone()));
                        fx.policy_changes += 1;
                        fx.outcome.changed = true;
                    }
                }
            }
            Change::UpdateRole {
                organization,
                name,
                display_name,
                description,
                permissions,
                extends,
            } => {
                let org = organization.as_deref();
                let role = self.role_mut(org, name)?;
                let mut meta_changed = false;
                if display_name.is_some() && role.display_name != *display_name {
                    role.display_name.clone_from(display_name);
                    meta_changed = true;
                }
                if description.is_some() && role.description != *description {
                    role.description.clone_from(description);
                    meta_changed = true;
                }
                let mut old_grants = None;
                if let Some(p) = permissions.as_ref().filter(|p| **p != role.permissions) {
                    old_grants = Some(std::mem::replace(&mut role.permissions, p.clone()));
                }
                let mut rebased = false;
                if let Some(e) = extends.as_ref().filter(|e| **e != role.extends) {
                    role.extends.clone_from(e);
                    rebased = true;
                }
                fx.outcome.changed |= meta_changed;
                let grants_changed = old_grants.is_some();
                if let (Some(old), Some(new)) = (old_grants, permissions) {
                    self.grants.remove(org, name, &old);
                    self.grants.add(org, name, new);
                }
                if grants_changed || rebased {
                    self.touched_role(org, name, rebased, fx);
                }
            }
            Change::GrantPermission {
                organization,
                role,
                permission,
            } => {
                let org = organization.as_deref();
                let r = self.role_mut(org, role)?;
                if !r.permissions.contains(permission) {
                    r.permissions.push(permission.clone());
                    self.grants.add(org, role, std::slice::from_ref(permission));
                    self.touched_role(org, role, false, fx);
                }
            }
            Change::RevokePermission {
                organization,
                role,
                permission,
            } => {
                let org = organization.as_deref();
                let r = self.role_mut(org, role)?;
                if r.permissions.contains(permission) {
                    r.permissions.retain(|p| p != permission);
                    self.grants
                        .remove(org, role, std::slice::from_ref(permission));
                    self.touched_role(org, role, false, fx);
                }
            }
            Change::DeleteRole {
                organization,
                name,
                reassign_to,
                reparent,
            } => self.delete_role(
                organization.as_deref(),
                name,
                reassign_to.as_deref(),
                reparent.as_ref(),
                fx,
            )?,
            Change::SetDefaultRoles { creator, member } => {
                if self.default_creator != *creator || self.env.default_member != *member {
                    self.default_creator.clone_from(creator);
                    self.env.default_member.clone_from(member);
                    self.defaults_changed(fx);
                }
            }
            Change::CreateOrganization { id } => {
                if !self.orgs.contains_key(id) {
                    self.orgs.insert(id.clone(), Scope::default());
                    fx.structural = true;
                    fx.policy_changes += 1;
                    fx.outcome.changed = true;
                }
            }
            Change::DeleteOrganization { id } => {
                let removed = self.orgs.remove(id);
                if let Some(scope) = &removed {
                    for role in scope.roles.values() {
                        self.grants
                            .remove(Some(id.as_str()), &role.name, &role.permissions);
                    }
                }
                let had_org = removed.is_some();
                let dropped = fx.members_of_deleted(&self.members, id);
                for user in &dropped {
                    self.set_membership(id, user, None, fx);
                    fx.outcome.users_affected.push(format!("{id}/{user}"));
                }
                if had_org {
                    fx.structural = true;
                    fx.policy_changes += 1;
                }
                fx.outcome.changed |= had_org || !dropped.is_empty();
            }
            Change::SetOrganizationDefaultRole { organization, role } => {
                let scope = self.scope_mut(Some(organization))?;
                if scope.default_member != *role {
                    scope.default_member.clone_from(role);
                    self.defaults_changed(fx);
                }
            }
            Change::SetGroupRoles {
                organization,
                group,
                roles,
            } => {
                let scope = self.scope_mut(Some(organization))?;
                let changed = if roles.is_empty() {
                    scope.groups.remove(group).is_some()
                } else if scope.groups.get(group) != Some(roles) {
                    scope.groups.insert(group.clone(), roles.clone());
                    true
                } else {
                    false
                };
                if changed {
                    self.defaults_changed(fx);
                }
            }
            Change::SetMembership {
                organization,
                user,
                roles,
                groups,
                creator,
            } => {
                // One probe: whether the user has any membership, and theirs
                // in this organization.
                let present = self
                    .members
                    .user(user)
                    .map(|(_, orgs)| orgs.get(organization).cloned());
                let existing = present.as_ref().and_then(Option::as_deref);
                let mut next = Membership {
                    roles: dedup(roles),
                    groups: match groups {
                        Some(g) => dedup(g),
                        None => existing.map(|m| m.groups.clone()).unwrap_or_default(),
                    },
                };
                if existing.is_none() && next.roles.is_empty() {
                    let default = if *creator {
                        self.default_creator.clone()
                    } else {
                        self.orgs
                            .get(organization.as_str())
                            .and_then(|s| s.default_member.clone())
                            .or_else(|| self.env.default_member.clone())
                    };
                    next.roles.extend(default);
                }
                self.set_membership_known(organization, user, present, Some(next), fx);
            }
            Change::AddMembershipRoles {
                organization,
                user,
                roles,
            } => {
                let mut next = self
                    .membership(organization, user)
                    .cloned()
                    .unwrap_or_default();
                for r in roles {
                    if !next.roles.contains(r) {
                        next.roles.push(r.clone());
                    }
                }
                self.set_membership(organization, user, Some(next), fx);
            }
            Change::RemoveMembershipRoles {
                organization,
                user,
                roles,
            } => {
                if let Some(m) = self.membership(organization, user) {
                    let mut next = m.clone();
                    next.roles.retain(|r| !roles.contains(r));
                    self.set_membership(organization, user, Some(next), fx);
                }
            }
            Change::RemoveMembership { organization, user } => {
                self.set_membership(organization, user, None, fx);
            }
            Change::RecordDelivery {
                id,
                received_ms,
                entities,
                retention_ms,
            } => {
                if self.deliveries.contains_key(id) {
                    return Err(ChangeError::Duplicate { id: id.clone() });
                }
                for e in entities {
                    if let Some(&last) = self.clocks.get(&e.entity) {
                        if last > e.occurred_at_ns {
                            return Err(ChangeError::Stale {
                                entity: e.entity.clone(),
                                last_ns: last,
                                got_ns: e.occurred_at_ns,
                            });
                        }
                    }
                }
                for e in entities {
                    self.clocks.insert(e.entity.clone(), e.occurred_at_ns);
                }
                self.deliveries.insert(id.clone(), *received_ms);
                self.delivery_times.insert((*received_ms, id.clone()), ());
                let cutoff = received_ms.saturating_sub(*retention_ms);
                while let Some(((at, old), ())) = self.delivery_times.get_min().cloned() {
                    if at >= cutoff && self.deliveries.len() <= MAX_DELIVERIES {
                        break;
                    }
                    self.delivery_times.remove(&(at, old.clone()));
                    self.deliveries.remove(&old);
                }
                fx.outcome.changed = true;
            }
            Change::RemoveUser { user } => {
                if let Some((key, _)) = self.members.user(user) {
                    let key = Arc::clone(key);
                    if let Some(orgs) = self.members.remove_user(user) {
                        for (org, m) in orgs.iter() {
                            fx.touch_member(
                                Arc::clone(org),
                                Arc::clone(&key),
                                Some(Arc::clone(m)),
                                None,
                            );
                        }
                        fx.outcome.changed = true;
                    }
                }
            }
        }
        Ok(())
    }

    fn touched_role(&mut self, org: Option<&str>, name: &str, rebased: bool, fx: &mut Effects) {
        let key = (org.map(str::to_owned), name.to_owned());
        if rebased {
            fx.rebased.push(key.clone());
        }
        fx.roles.push(key);
        fx.policy_changes += 1;
        fx.outcome.changed = true;
    }

    fn defaults_changed(&mut self, fx: &mut Effects) {
        fx.defaults = true;
        fx.policy_changes += 1;
        fx.outcome.changed = true;
    }

    pub(crate) fn membership(&self, org: &str, user: &str) -> Option<&Membership> {
        self.members.get(org, user).map(|m| &**m)
    }

    fn set_membership(
        &mut self,
        org: &str,
        user: &str,
        next: Option<Membership>,
        fx: &mut Effects,
    ) {
        let present = self
            .members
            .user(user)
            .map(|(_, orgs)| orgs.get(org).cloned());
        self.set_membership_known(org, user, present, next, fx);
    }

    /// [`set_membership`](Self::set_membership) when the caller has looked
    /// the user up already: `present` is `None` when the user has no
    /// membership at all, else their membership in `org`, if any. Saves a
    /// bulk load's second and third probe of the map.
    fn set_membership_known(
        &mut self,
        org: &str,
        user: &str,
        present: Option<Option<Arc<Membership>>>,
        next: Option<Membership>,
        fx: &mut Effects,
    ) {
        let new_user = present.is_none();
        let before = present.flatten();
        if before.as_deref() == next.as_ref() {
            return;
        }
        let (org, user, after) = match next {
            Some(m) => {
                let m = Arc::new(m);
                let (org, user) = if new_user {
                    self.members.insert_user(org, user, Arc::clone(&m))
                } else {
                    self.members.insert(org, user, Arc::clone(&m))
                };
                (org, user, Some(m))
            }
            None => match self.members.remove(org, user) {
                Some((org, user, _)) => (org, user, None),
                None => return,
            },
        };
        if let (Some(by_org), None, Some(_)) = (&mut fx.members_by_org, &before, &after) {
            by_org
                .entry(Arc::clone(&org))
                .or_insert_with(Vec::new)
                .push(Arc::clone(&user));
        }
        fx.touch_member(org, user, before, after);
        fx.outcome.changed = true;
    }

    fn scopes(&self) -> impl Iterator<Item = (Option<String>, &Scope)> {
        std::iter::once((None, &self.env))
            .chain(self.orgs.iter().map(|(id, s)| (Some(id.clone()), s)))
    }

    /// The scopes a role of `org` named `name` is visible from: its own
    /// organization, or for an environment role every scope that does not
    /// have a role of its own by that name.
    fn scopes_reaching(&self, org: Option<&str>, name: &str) -> Vec<Option<String>> {
        self.scopes()
            .filter(|(o, s)| match org {
                Some(org) => o.as_deref() == Some(org),
                None => o.is_none() || !s.roles.contains_key(name),
            })
            .map(|(o, _)| o)
            .collect()
    }

    fn delete_role(
        &mut self,
        org: Option<&str>,
        name: &str,
        reassign_to: Option<&str>,
        reparent: Option<&Reparent>,
        fx: &mut Effects,
    ) -> Result<(), ChangeError> {
        let Some(scope) = self.scope(org) else {
            return Err(ChangeError::UnknownOrganization {
                id: org.unwrap_or_default().to_owned(),
            });
        };
        let Some(deleted) = scope.roles.get(name).cloned() else {
            return Ok(()); // already gone: deleting is idempotent
        };
        if reassign_to == Some(name) {
            return Err(ChangeError::Malformed(format!(
                "cannot reassign the holders of role `{name}` to the role being deleted"
            )));
        }
        let reach = self.scopes_reaching(org, name);
        // Roles in reach of the deleted one that extend it.
        let mut dependents: Vec<RoleKey> = Vec::new();
        for o in &reach {
            let Some(s) = self.scope(o.as_deref()) else {
                continue;
            };
            for (r, role) in s.roles.iter() {
                if role.extends.iter().any(|b| b == name) && !(o.as_deref() == org && r == name) {
                    dependents.push((o.clone(), r.clone()));
                }
            }
        }
        if !dependents.is_empty() && reparent.is_none() {
            let mut names: Vec<String> = dependents
                .iter()
                .map(|(o, r)| key_text(o.as_deref(), r))
                .collect();
            names.sort();
            return Err(ChangeError::HasDependents {
                organization: org.map(str::to_owned),
                name: name.to_owned(),
                dependents: names,
            });
        }
        for (o, r) in &dependents {
            let role = self.role_mut(o.as_deref(), r)?;
            let mut next: Vec<String> = Vec::new();
            for b in &role.extends {
                if b != name {
                    next.push(b.clone());
                    continue;
                }
                match reparent {
                    Some(Reparent::ToBases) => next.extend(deleted.extends.iter().cloned()),
                    Some(Reparent::To(to)) => next.push(to.clone()),
                    Some(Reparent::Detach) | None => {}
                }
            }
            role.extends = dedup(&next);
            fx.outcome.roles_reparented.push(key_text(o.as_deref(), r));
        }
        self.scope_mut(org)?.roles.remove(name);
        self.grants.remove(org, name, &deleted.permissions);
        // Defaults and group mappings naming it follow the reassignment, or drop it.
        let replace = |slot: &mut Option<String>| {
            if slot.as_deref() == Some(name) {
                *slot = reassign_to.map(str::to_owned);
            }
        };
        if org.is_none() {
            replace(&mut self.default_creator);
        }
        for o in &reach {
            let s = self.scope_mut(o.as_deref())?;
            replace(&mut s.default_member);
            let groups: Vec<(String, Vec<String>)> = s
                .groups
                .iter()
                .filter(|(_, roles)| roles.iter().any(|r| r == name))
                .map(|(g, roles)| {
                    let mut next: Vec<String> = Vec::new();
                    for r in roles {
                        if r == name {
                            next.extend(reassign_to.map(str::to_owned));
                        } else {
                            next.push(r.clone());
                        }
                    }
                    (g.clone(), dedup(&next))
                })
                .collect();
            for (g, roles) in groups {
                if roles.is_empty() {
                    s.groups.remove(&g);
                } else {
                    s.groups.insert(g, roles);
                }
            }
        }
        // Members holding it.
        let mut moved = Vec::new();
        for (user, o, m) in self.members.iter() {
            let in_reach = match org {
                Some(org) => &**o == org,
                None => !self
                    .orgs
                    .get(&**o)
                    .is_some_and(|s| s.roles.contains_key(name)),
            };
            if in_reach && m.roles.iter().any(|r| r == name) {
                let mut next = (**m).clone();
                let mut roles: Vec<String> = Vec::new();
                for r in &m.roles {
                    if r == name {
                        roles.extend(reassign_to.map(str::to_owned));
                    } else {
                        roles.push(r.clone());
                    }
                }
                next.roles = dedup(&roles);
                moved.push((o.to_string(), user.to_string(), next));
            }
        }
        // By user, then organization, whatever the map's order.
        moved.sort_unstable_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
        for (o, user, next) in moved {
            fx.outcome.users_affected.push(format!("{o}/{user}"));
            self.set_membership(&o, &user, Some(next), fx);
        }
        fx.structural = true;
        fx.policy_changes += 1;
        fx.outcome.changed = true;
        Ok(())
    }
}

fn scope_from(roles: &[Role], default_member: Option<String>, groups: &[GroupRoles]) -> Scope {
    let mut s = Scope {
        default_member,
        ..Scope::default()
    };
    for r in roles {
        s.roles.insert(r.name.clone(), r.clone());
    }
    for g in groups {
        let entry = s.groups.entry(g.group.clone()).or_default();
        entry.extend(g.roles.iter().cloned());
        *entry = dedup(entry);
    }
    s
}

/// `items` without repeats, first occurrences in order: one hash-set probe
/// per item (a webhook's role list is input, so never quadratic).
fn dedup(items: &[String]) -> Vec<String> {
    // A membership's few roles: a scan of what is kept costs less than a
    // hash set (at most 8 × 8 comparisons).
    if items.len() <= 8 {
        let mut out: Vec<String> = Vec::with_capacity(items.len());
        for i in items {
            if !out.contains(i) {
                out.push(i.clone());
            }
        }
        return out;
    }
    let mut seen: HashSet<&str> = HashSet::with_capacity(items.len());
    items
        .iter()
        .filter(|i| seen.insert(i.as_str()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Small name spaces, so that names repeat: roles grant, lose and
    /// re-grant the same permissions, and organizations come and go.
    fn perm(i: u8) -> String {
        format!("p{i}")
    }

    fn org(i: Option<u8>) -> Option<String> {
        i.map(|o| format!("org_{o}"))
    }

    fn grants(ps: &[u8]) -> Vec<String> {
        ps.iter().map(|&p| perm(p)).collect()
    }

    /// Every change that edits a role's grants or the set of roles, plus
    /// permission deletes: what the grant index must follow.
    fn change() -> impl Strategy<Value = Change> {
        let o = prop::option::of(0u8..3);
        let r = 0u8..5;
        let p = 0u8..6;
        let ps = prop::collection::vec(0u8..6, 0..4);
        prop_oneof![
            p.clone().prop_map(|p| Change::CreatePermission {
                name: perm(p),
                description: None,
            }),
            p.clone()
                .prop_map(|p| Change::DeletePermission { name: perm(p) }),
            (o.clone(), r.clone(), ps.clone(), prop::option::of(0u8..5)).prop_map(
                |(o, r, ps, base)| {
                    let mut role = Role::named(format!("r{r}"));
                    role.permissions = grants(&ps);
                    // A wildcard now and then: indexed as written, never
                    // touched by a permission delete.
                    if ps.len() == 3 {
                        role.permissions.push("p*".into());
                    }
                    role.extends.extend(base.map(|b| format!("r{b}")));
                    Change::CreateRole {
                        organization: org(o),
                        role,
                    }
                }
            ),
            (o.clone(), r.clone(), prop::option::of(ps)).prop_map(|(o, r, ps)| {
                Change::UpdateRole {
                    organization: org(o),
                    name: format!("r{r}"),
                    display_name: None,
                    description: Some(format!("{ps:?}")),
                    permissions: ps.map(|ps| grants(&ps)),
                    extends: None,
                }
            }),
            (o.clone(), r.clone(), p.clone()).prop_map(|(o, r, p)| {
                Change::GrantPermission {
                    organization: org(o),
                    role: format!("r{r}"),
                    permission: perm(p),
                }
            }),
            (o.clone(), r.clone(), p).prop_map(|(o, r, p)| Change::RevokePermission {
                organization: org(o),
                role: format!("r{r}"),
                permission: perm(p),
            }),
            (o, r).prop_map(|(o, r)| Change::DeleteRole {
                organization: org(o),
                name: format!("r{r}"),
                reassign_to: None,
                reparent: Some(Reparent::Detach),
            }),
            (0u8..3).prop_map(|o| Change::CreateOrganization {
                id: format!("org_{o}")
            }),
            (0u8..3).prop_map(|o| Change::DeleteOrganization {
                id: format!("org_{o}")
            }),
        ]
    }

    /// The deletion as it was before the index: scan every role of every
    /// scope. Returns the model after it, with the roles it reported.
    fn naive_delete(model: &Model, name: &str) -> (Model, Vec<RoleKey>) {
        let mut m = model.clone();
        let mut touched = Vec::new();
        if m.permissions.remove(name).is_none() {
            return (m, touched);
        }
        for (o, scope) in model.scopes() {
            for (r, role) in scope.roles.iter() {
                if role.permissions.iter().any(|p| p == name) {
                    touched.push((o.clone(), r.clone()));
                }
            }
        }
        for (o, r) in &touched {
            m.role_mut(o.as_deref(), r)
                .unwrap()
                .permissions
                .retain(|p| p != name);
        }
        m.grants = GrantIndex::of(m.all_roles());
        (m, touched)
    }

    /// The index of a model built from a policy file.
    #[test]
    fn from_policy_indexes_every_grant() {
        let mut policy = Policy::new();
        policy.permission("a").permission("b");
        policy.role("viewer").grant("a").grant("b*");
        policy.organization("org_1").role("viewer").grant("a");
        let model = Model::from_policy(&policy);
        assert!(model.grants_consistent());
        let holders: Vec<SharedRoleKey> =
            model.grants.0.get("a").unwrap().iter().cloned().collect();
        assert_eq!(
            holders,
            [
                shared_key(None, "viewer"),
                shared_key(Some("org_1"), "viewer")
            ]
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// After every change of a random sequence, the grant index equals a
        /// recomputation from the roles; and every permission delete leaves
        /// the model, the roles it reports and the roles it hands the
        /// recompiler exactly as the scan of every role did.
        #[test]
        fn grant_index_follows_every_change(
            changes in prop::collection::vec(change(), 0..40),
        ) {
            let mut model = Model::default();
            for p in 0..6 {
                model.permissions.insert(perm(p), None);
            }
            for change in &changes {
                let before = model.clone();
                let mut fx = Effects::default();
                if model.apply(change, &mut fx).is_err() {
                    // As the engine does: a refused batch is dropped.
                    model = before;
                    continue;
                }
                prop_assert!(model.grants_consistent(), "after {:?}", change);
                if let Change::DeletePermission { name } = change {
                    let (expected, touched) = naive_delete(&before, name);
                    prop_assert_eq!(&model, &expected);
                    prop_assert_eq!(&fx.roles, &touched);
                    let texts: Vec<String> = touched
                        .iter()
                        .map(|(o, r)| key_text(o.as_deref(), r))
                        .collect();
                    prop_assert_eq!(&fx.outcome.roles_affected, &texts);
                }
            }
        }
    }

    #[test]
    fn dedup_keeps_first_occurrences_in_order() {
        let items: Vec<String> = ["b", "a", "b", "c", "a", "b"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert_eq!(dedup(&items), ["b", "a", "c"]);
        assert!(dedup(&[]).is_empty());
    }

    #[test]
    fn a_membership_with_a_huge_role_list_is_linear() {
        // 100,000 distinct names: a quadratic dedup makes 10¹⁰ string
        // comparisons (minutes); a linear one takes milliseconds.
        let roles: Vec<String> = (0..100_000).map(|i| format!("role_{i}")).collect();
        let mut model = Model::default();
        model.orgs.insert("org_1".into(), Scope::default());
        let start = std::time::Instant::now();
        let mut fx = Effects::default();
        model
            .apply(
                &Change::SetMembership {
                    organization: "org_1".into(),
                    user: "u".into(),
                    roles: roles.iter().chain(&roles).cloned().collect(),
                    groups: Some(roles.clone()),
                    creator: false,
                },
                &mut fx,
            )
            .unwrap();
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(model.membership("org_1", "u").unwrap().roles, roles);
    }
}
