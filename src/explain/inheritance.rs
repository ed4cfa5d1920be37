//! Where a role's permissions come from: the breadth-first tree of its
//! ancestors, each role once, each permission once at the role that gives it.
//!
//! The tree is linear in the roles reached and the permissions granted; a
//! permission's path (what [`EffectivePermissions::path`] walks) is the
//! chain of parent pointers from its role up to the root.

use std::collections::HashSet;
use std::fmt;

use crate::ids::{PermissionId, RoleId};
use crate::snapshot::{DirectGrant, LookupError, Snapshot};

/// A role's inheritance: every role it extends, directly or not, once, in
/// breadth-first order, with the permissions each is the first to grant.
///
/// Produced by [`Snapshot::inheritance`]. Entry 0 is the role asked about;
/// every other entry names, in [`InheritedRole::via`], the entry that extends
/// it on a shortest path from the root (ties broken by role name), so each
/// entry's index is larger than its parent's. A permission sits at the first
/// role in that order whose direct grant (a permission or a wildcard) gives
/// it: its path is then the shortest, ties broken by role name, as
/// [`Snapshot::effective_permissions`] reports it.
///
/// # Complexity
///
/// Size linear in the roles reached plus the permissions granted, however
/// deep the chain: a 100,000-role chain is 100,000 entries, not 5 billion
/// path steps. [`path`](Self::path) walks parent pointers on demand.
///
/// # Examples
///
/// ```
/// use rolegraph::Policy;
///
/// let mut policy = Policy::new();
/// policy.permission("projects:read");
/// policy.permission("projects:update");
/// policy.role("viewer").grant("projects:*");
/// policy.role("editor").extends("viewer").grant("projects:update");
/// let snapshot = policy.compile()?;
///
/// let tree = snapshot.inheritance(None, "editor")?;
/// assert_eq!(tree.permissions_len(), 2);
/// let [editor, viewer] = tree.roles() else { panic!("two roles") };
/// assert_eq!((editor.name.as_str(), editor.via), ("editor", None));
/// assert_eq!(editor.grants[0].permission, "projects:update");
/// assert_eq!((viewer.name.as_str(), viewer.via), ("viewer", Some(0)));
/// // `projects:update` is editor's already: viewer's wildcard adds `projects:read` only.
/// assert_eq!(viewer.grants.len(), 1);
/// assert_eq!(viewer.grants[0].grant, "projects:*");
/// assert_eq!(tree.path(1), ["editor", "viewer"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inheritance {
    roles: Vec<InheritedRole>,
    permissions: usize,
}

/// One role of an [`Inheritance`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct InheritedRole {
    /// The role's id in the snapshot the tree was built from.
    pub id: RoleId,
    /// The role's name.
    pub name: String,
    /// Its organization, `None` for an environment role.
    pub organization: Option<String>,
    /// The index (in [`Inheritance::roles`]) of the role that extends this
    /// one on the shortest path; `None` for a root.
    pub via: Option<usize>,
    /// Its distance from the root, in `extends` steps (0 for a root).
    pub depth: usize,
    /// The permissions this role is the first to grant, by name.
    pub grants: Vec<Granted>,
}

/// A permission an [`InheritedRole`] gives.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Granted {
    /// The permission.
    pub permission: String,
    /// The direct grant that matched: the permission itself or a wildcard.
    pub grant: String,
}

impl Inheritance {
    /// The roles, breadth-first from the root (entry 0).
    #[must_use]
    pub fn roles(&self) -> &[InheritedRole] {
        &self.roles
    }

    /// The number of effective permissions: the grants of every role together.
    #[must_use]
    pub fn permissions_len(&self) -> usize {
        self.permissions
    }

    /// The role names from the root down to entry `index` (empty when out of
    /// range).
    ///
    /// # Complexity
    ///
    /// Proportional to the entry's depth.
    #[must_use]
    pub fn path(&self, index: usize) -> Vec<&str> {
        let mut path = Vec::new();
        let mut at = Some(index);
        while let Some(role) = at.and_then(|i| self.roles.get(i)) {
            path.push(role.name.as_str());
            at = role.via;
        }
        path.reverse();
        path
    }

    /// Every effective permission with the index of the role that gives it,
    /// in tree order.
    pub fn permissions(&self) -> impl Iterator<Item = (usize, &Granted)> + '_ {
        self.roles
            .iter()
            .enumerate()
            .flat_map(|(i, r)| r.grants.iter().map(move |g| (i, g)))
    }
}

/// A role's effective permissions, sorted by name, each with the role whose
/// direct grant gives it: what Scalekit's `permissions:all` returns (a
/// permission and its `role_name`), plus the inheritance tree that leads
/// there.
///
/// Produced by [`Snapshot::effective_permissions`]. A permission's path, from
/// the role asked about to the granting role, is not stored with it but walked
/// on demand ([`path`](Self::path)) through the shared tree, so the result is
/// linear in size: a chain of 10,000 roles that each grant a permission gives
/// 10,000 entries and 10,000 tree nodes, not 50 million path steps.
///
/// # Examples
///
/// ```
/// use rolegraph::Policy;
///
/// let mut policy = Policy::new();
/// policy.permission("projects:read");
/// policy.permission("projects:update");
/// policy.role("viewer").grant("projects:*");
/// policy.role("editor").extends("viewer").grant("projects:update");
/// let snapshot = policy.compile()?;
///
/// let effective = snapshot.effective_permissions(None, "editor")?;
/// let read = effective.get("projects:read").expect("inherited");
/// assert_eq!((read.role.as_str(), read.grant.as_str()), ("viewer", "projects:*"));
/// assert_eq!(effective.path(read), ["editor", "viewer"]);
/// let names: Vec<&str> = effective.iter().map(|p| p.name.as_str()).collect();
/// assert_eq!(names, ["projects:read", "projects:update"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct EffectivePermissions {
    tree: Inheritance,
    list: Vec<EffectivePermission>,
}

/// A permission a role has, and the role it comes from.
///
/// Serializes as Scalekit's `permissions:all` entry plus the grant:
/// `{"name", "role_name", "grant"}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct EffectivePermission {
    /// The permission.
    pub name: String,
    /// The role whose direct grant gives it: the end of the shortest path from
    /// the role asked about (ties broken by role name).
    #[serde(rename = "role_name")]
    pub role: String,
    /// The index of that role in [`EffectivePermissions::inheritance`]'s
    /// [`roles`](Inheritance::roles); [`EffectivePermissions::path`] walks up
    /// from it.
    #[serde(skip)]
    pub via: usize,
    /// The direct grant that matched: the permission itself or a wildcard.
    pub grant: String,
}

impl EffectivePermission {
    /// The role whose direct grant gives the permission.
    #[must_use]
    pub fn source_role(&self) -> &str {
        &self.role
    }
}

impl fmt::Display for EffectivePermission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}`: `{}` grants `{}`",
            self.name, self.role, self.grant
        )
    }
}

impl EffectivePermissions {
    /// The number of effective permissions.
    #[must_use]
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether the role has no permission at all.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The permissions, sorted by name.
    #[must_use]
    pub fn as_slice(&self) -> &[EffectivePermission] {
        &self.list
    }

    /// The permissions, sorted by name.
    pub fn iter(&self) -> std::slice::Iter<'_, EffectivePermission> {
        self.list.iter()
    }

    /// The permission `name`, when the role has it (a binary search).
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&EffectivePermission> {
        self.list
            .binary_search_by(|p| p.name.as_str().cmp(name))
            .ok()
            .and_then(|i| self.list.get(i))
    }

    /// The role names from the role asked about down to the one whose grant
    /// gives `permission` (an entry of this result).
    ///
    /// # Complexity
    ///
    /// Proportional to the length of that path: built on demand, never stored.
    #[must_use]
    pub fn path(&self, permission: &EffectivePermission) -> Vec<&str> {
        self.tree.path(permission.via)
    }

    /// The inheritance tree the permissions come from: each role reached once,
    /// with the index of the role that extends it.
    #[must_use]
    pub fn inheritance(&self) -> &Inheritance {
        &self.tree
    }

    /// The permissions, sorted by name, without the tree.
    #[must_use]
    pub fn into_vec(self) -> Vec<EffectivePermission> {
        self.list
    }
}

/// Two results are equal when they list the same permissions, granted the
/// same way, through the same tree of role names: role ids, which differ
/// between two compiles of one policy, are not compared.
impl PartialEq for EffectivePermissions {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (&self.tree.roles, &other.tree.roles);
        self.list == other.list
            && a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| {
                (&x.name, &x.organization, x.via, x.depth, &x.grants)
                    == (&y.name, &y.organization, y.via, y.depth, &y.grants)
            })
    }
}

impl Eq for EffectivePermissions {}

/// The permission at `index` in name order, as a slice indexes.
impl std::ops::Index<usize> for EffectivePermissions {
    type Output = EffectivePermission;

    #[expect(
        clippy::indexing_slicing,
        reason = "panics out of range, as the slice it stands for"
    )]
    fn index(&self, index: usize) -> &EffectivePermission {
        &self.list[index]
    }
}

impl<'a> IntoIterator for &'a EffectivePermissions {
    type Item = &'a EffectivePermission;
    type IntoIter = std::slice::Iter<'a, EffectivePermission>;

    fn into_iter(self) -> Self::IntoIter {
        self.list.iter()
    }
}

impl IntoIterator for EffectivePermissions {
    type Item = EffectivePermission;
    type IntoIter = std::vec::IntoIter<EffectivePermission>;

    fn into_iter(self) -> Self::IntoIter {
        self.list.into_iter()
    }
}

impl Snapshot {
    /// A role's inheritance tree: every role it extends once, each with the
    /// permissions it is the first to grant (see [`Inheritance`]). The role
    /// is looked up as [`effective_permissions`](Self::effective_permissions)
    /// does.
    ///
    /// # Errors
    ///
    /// [`LookupError::UnknownOrganization`] or [`LookupError::UnknownRole`].
    ///
    /// # Complexity
    ///
    /// Linear in the roles reached, their `extends` edges and the permissions
    /// granted (a wildcard visits each matching permission once per tree, not
    /// once per granting role), plus one table the size of the role count.
    pub fn inheritance(
        &self,
        organization: Option<&str>,
        role: &str,
    ) -> Result<Inheritance, LookupError> {
        Ok(self.inheritance_from(&[self.lookup_role(organization, role)?]))
    }

    /// The inheritance forest of several roles at once, such as a
    /// [`Principal`](crate::Principal)'s [`roles`](crate::Principal::roles):
    /// the roots (each `via: None`) are the given roles in name order, without
    /// repeats; every role they extend is listed once, under the root nearest
    /// to it, and each permission once, at the nearest role that grants it.
    /// Ids of another snapshot are skipped.
    ///
    /// # Complexity
    ///
    /// As [`inheritance`](Self::inheritance).
    ///
    /// # Examples
    ///
    /// ```
    /// use rolegraph::Policy;
    ///
    /// let mut policy = Policy::new();
    /// policy.permission("projects:read");
    /// policy.permission("billing:read");
    /// policy.role("viewer").grant("projects:read");
    /// policy.role("editor").extends("viewer");
    /// policy.role("billing").grant("billing:read");
    /// let snapshot = policy.compile()?;
    ///
    /// let principal = snapshot.principal(None, ["editor", "billing"]);
    /// let tree = snapshot.inheritance_of(principal.roles());
    /// let names: Vec<&str> = tree.roles().iter().map(|r| r.name.as_str()).collect();
    /// assert_eq!(names, ["billing", "editor", "viewer"]);
    /// assert_eq!(tree.path(2), ["editor", "viewer"]);
    /// assert_eq!(tree.permissions_len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn inheritance_of(&self, roles: &[RoleId]) -> Inheritance {
        let known: Vec<RoleId> = roles
            .iter()
            .copied()
            // Every role of this snapshot has a name; an id of another
            // numbering has none.
            .filter(|&r| !self.role_name(r).is_empty())
            .collect();
        self.inheritance_from(&known)
    }

    /// The effective permissions of a role, sorted by name, each with the
    /// role whose direct grant gives it, and the tree that leads there: what
    /// Scalekit's `permissions:all` returns, with the path on demand (see
    /// [`EffectivePermissions`]).
    ///
    /// # Errors
    ///
    /// [`LookupError::UnknownOrganization`] or [`LookupError::UnknownRole`].
    ///
    /// # Complexity
    ///
    /// As [`inheritance`](Self::inheritance), plus sorting the permissions:
    /// the result is linear in the roles reached and the permissions they
    /// grant, however deep the chain.
    pub fn effective_permissions(
        &self,
        organization: Option<&str>,
        role: &str,
    ) -> Result<EffectivePermissions, LookupError> {
        let tree = self.inheritance(organization, role)?;
        let mut list: Vec<EffectivePermission> = Vec::with_capacity(tree.permissions_len());
        for (i, g) in tree.permissions() {
            list.push(EffectivePermission {
                name: g.permission.clone(),
                role: tree
                    .roles
                    .get(i)
                    .map(|r| r.name.clone())
                    .unwrap_or_default(),
                via: i,
                grant: g.grant.clone(),
            });
        }
        list.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        Ok(EffectivePermissions { tree, list })
    }

    /// The role `name` as the explain queries look it up: the organization
    /// must exist; its roles first, then the environment's.
    fn lookup_role(&self, organization: Option<&str>, name: &str) -> Result<RoleId, LookupError> {
        let scope = match organization {
            Some(org) => self
                .organization_scope(org)
                .ok_or_else(|| LookupError::UnknownOrganization { id: org.to_owned() })?,
            None => crate::compiled::ENV,
        };
        self.role_in(scope, name)
            .ok_or_else(|| LookupError::UnknownRole {
                name: name.to_owned(),
                organization: organization.map(str::to_owned),
            })
    }

    /// The forest of `starts`' ancestors: breadth-first, the starts and each
    /// role's bases taken in name order, so the first path to a role is a
    /// shortest one, ties broken by role name; each permission goes to the
    /// first role met whose direct grant gives it.
    pub(crate) fn inheritance_from(&self, starts: &[RoleId]) -> Inheritance {
        let by_name = |a: &RoleId, b: &RoleId| self.role_name(*a).cmp(self.role_name(*b));
        let mut seen = vec![false; self.roles_len()];
        let mut roots: Vec<RoleId> = starts.to_vec();
        roots.sort_unstable_by(by_name);
        roots.dedup();
        let mut roles: Vec<InheritedRole> = Vec::new();
        let mut visit = |roles: &mut Vec<InheritedRole>, id: RoleId, via: Option<usize>| {
            let Some(flag) = seen.get_mut(id.index()) else {
                return;
            };
            if *flag {
                return;
            }
            *flag = true;
            let depth = via
                .and_then(|p| roles.get(p))
                .map_or(0, |parent| parent.depth + 1);
            roles.push(InheritedRole {
                id,
                name: self.role_name(id).to_owned(),
                organization: self.role_organization(id).map(str::to_owned),
                via,
                depth,
                grants: Vec::new(),
            });
        };
        for &root in &roots {
            visit(&mut roles, root, None);
        }
        let mut grants = Grants::new(self);
        let mut head = 0;
        while let Some(role) = roles.get_mut(head) {
            let id = role.id;
            role.grants = grants.first_given_by(id);
            let mut bases: Vec<RoleId> = self.role_bases(id).collect();
            bases.sort_unstable_by(by_name);
            for base in bases {
                visit(&mut roles, base, Some(head));
            }
            head += 1;
        }
        Inheritance {
            permissions: grants.assigned.len(),
            roles,
        }
    }
}

/// Which permissions are given already, while walking a tree.
struct Grants<'a> {
    snapshot: &'a Snapshot,
    assigned: HashSet<PermissionId>,
    /// Name-sorted positions no wildcard has visited yet (allocated at the
    /// first wildcard): each position is visited once per tree, so a `*`
    /// granted by every role of a long chain costs the permissions once,
    /// not once per role.
    unvisited: Option<Unvisited>,
}

impl<'a> Grants<'a> {
    fn new(snapshot: &'a Snapshot) -> Self {
        Self {
            snapshot,
            assigned: HashSet::new(),
            unvisited: None,
        }
    }

    /// The permissions `role`'s direct grants give that no earlier role gave,
    /// sorted by name. Exact grants go first, then wildcards from the longest
    /// prefix: the most specific grant is named, whatever the order the
    /// policy declares grants in.
    fn first_given_by(&mut self, role: RoleId) -> Vec<Granted> {
        let s = self.snapshot;
        let mut wildcards: Vec<&str> = Vec::new();
        let mut out = Vec::new();
        for grant in s.direct_grants(role) {
            match grant {
                DirectGrant::Permission(id) => {
                    if self.assigned.insert(id) {
                        let name = s.permission_name(id).unwrap_or_default();
                        out.push(Granted {
                            permission: name.to_owned(),
                            grant: name.to_owned(),
                        });
                    }
                }
                DirectGrant::Wildcard(prefix) => wildcards.push(prefix),
            }
        }
        wildcards.sort_unstable_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        wildcards.dedup();
        let sorted = s.permissions_by_name();
        let name = |id: &PermissionId| s.permission_name(*id).unwrap_or_default();
        for prefix in wildcards {
            let start = sorted.partition_point(|id| name(id) < prefix);
            let end =
                sorted.partition_point(|id| name(id) < prefix || name(id).starts_with(prefix));
            let unvisited = self
                .unvisited
                .get_or_insert_with(|| Unvisited::new(sorted.len()));
            let mut at = unvisited.find(start);
            while at < end {
                unvisited.remove(at);
                if let Some(&id) = sorted.get(at) {
                    if self.assigned.insert(id) {
                        out.push(Granted {
                            permission: name(&id).to_owned(),
                            grant: format!("{prefix}*"),
                        });
                    }
                }
                at = unvisited.find(at + 1);
            }
        }
        out.sort_unstable_by(|a, b| a.permission.cmp(&b.permission));
        out
    }
}

/// Positions `0..n` with removal and "the first one left at or after `i`",
/// in near-constant amortized time (a union-find with path compression, in
/// loops: nothing recurses).
struct Unvisited {
    next: Vec<usize>,
}

impl Unvisited {
    fn new(n: usize) -> Self {
        Self {
            next: (0..=n).collect(),
        }
    }

    /// The first position left at or after `i` (`n` when none is).
    fn find(&mut self, i: usize) -> usize {
        let mut root = i;
        while let Some(&up) = self.next.get(root) {
            if up == root {
                break;
            }
            root = up;
        }
        let mut at = i;
        while let Some(slot) = self.next.get_mut(at) {
            if *slot == root || at == root {
                break;
            }
            at = std::mem::replace(slot, root);
        }
        root
    }

    fn remove(&mut self, i: usize) {
        if let Some(slot) = self.next.get_mut(i) {
            *slot = i + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Unvisited;
    use crate::Policy;

    /// Overlapping wildcards along a chain: each permission goes to the
    /// nearest role, and within a role to the exact grant, else the longest
    /// wildcard; a wildcard met again further up gives only what is left.
    #[test]
    fn wildcards_along_a_chain_give_each_permission_once() {
        let mut p = Policy::new();
        for name in ["a:x:1", "a:x:2", "a:y", "b:1", "c"] {
            p.permission(name);
        }
        p.role("base").grant("*").grant("a:x:1");
        p.role("mid").extends("base").grant("a:*").grant("a:x:*");
        p.role("top").extends("mid").grant("a:x:2").grant("*");
        p.role("other").grant("b:*");
        let s = p.compile().unwrap();
        let tree = s.inheritance(None, "top").unwrap();
        let got: Vec<(Vec<&str>, &str, &str)> = tree
            .permissions()
            .map(|(i, g)| (tree.path(i), g.permission.as_str(), g.grant.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (vec!["top"], "a:x:1", "*"),
                (vec!["top"], "a:x:2", "a:x:2"),
                (vec!["top"], "a:y", "*"),
                (vec!["top"], "b:1", "*"),
                (vec!["top"], "c", "*"),
            ]
        );
        assert_eq!(tree.roles().len(), 3);
        assert!(tree.roles()[1..].iter().all(|r| r.grants.is_empty()));

        let tree = s.inheritance(None, "mid").unwrap();
        let got: Vec<(usize, &str, &str)> = tree
            .permissions()
            .map(|(i, g)| (i, g.permission.as_str(), g.grant.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (0, "a:x:1", "a:x:*"),
                (0, "a:x:2", "a:x:*"),
                (0, "a:y", "a:*"),
                (1, "b:1", "*"),
                (1, "c", "*"),
            ]
        );
        assert_eq!(tree.permissions_len(), 5);
        assert_eq!(tree.path(1), ["mid", "base"]);
        assert!(tree.path(2).is_empty());
    }

    /// A diamond: the shared base is listed once, under the parent that
    /// sorts first, at its shortest depth.
    #[test]
    fn a_diamond_lists_the_shared_base_once() {
        let mut p = Policy::new();
        p.permission("p:1");
        p.role("base").grant("p:1");
        p.role("right").extends("base");
        p.role("left").extends("base");
        p.role("top").extends("right").extends("left");
        let s = p.compile().unwrap();
        let tree = s.inheritance(None, "top").unwrap();
        let names: Vec<(&str, Option<usize>, usize)> = tree
            .roles()
            .iter()
            .map(|r| (r.name.as_str(), r.via, r.depth))
            .collect();
        assert_eq!(
            names,
            [
                ("top", None, 0),
                ("left", Some(0), 1),
                ("right", Some(0), 1),
                ("base", Some(1), 2)
            ]
        );
        assert_eq!(tree.path(3), ["top", "left", "base"]);
    }

    /// Several roots (a principal's roles): each permission at the nearest
    /// role under any root, repeated roots once, ids of another snapshot
    /// skipped.
    #[test]
    fn a_forest_of_held_roles_takes_the_nearest_grant() {
        let mut p = Policy::new();
        p.permission("p:1").permission("p:2");
        p.role("base").grant("p:1").grant("p:2");
        p.role("mid").extends("base");
        p.role("deep").extends("mid");
        p.role("near").grant("p:2");
        let s = p.compile().unwrap();
        let other = p.compile().unwrap();
        let id = |name: &str| s.role(None, name).unwrap();
        let foreign = other.role(None, "base").unwrap();
        let tree = s.inheritance_of(&[id("deep"), id("near"), id("deep"), foreign]);
        let got: Vec<(Vec<&str>, &str)> = tree
            .permissions()
            .map(|(i, g)| (tree.path(i), g.permission.as_str()))
            .collect();
        assert_eq!(
            got,
            [(vec!["near"], "p:2"), (vec!["deep", "mid", "base"], "p:1"),]
        );
        let roots: Vec<&str> = tree
            .roles()
            .iter()
            .filter(|r| r.via.is_none())
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(roots, ["deep", "near"]);
        assert_eq!(tree.roles().len(), 4);
        assert_eq!(s.inheritance_of(&[foreign]).roles().len(), 0);
    }

    #[test]
    fn unvisited_skips_removed_positions() {
        let mut u = Unvisited::new(5);
        assert_eq!(u.find(0), 0);
        u.remove(1);
        u.remove(2);
        assert_eq!(u.find(1), 3);
        assert_eq!(u.find(0), 0);
        u.remove(0);
        assert_eq!(u.find(0), 3);
        u.remove(3);
        u.remove(4);
        assert_eq!(u.find(0), 5);
        assert_eq!(u.find(5), 5);
    }
}
