//! The immutable compiled policy.

use std::fmt;
use std::sync::Arc;

use crate::bits;
/// The scope number of environment roles (owned by [`crate::compiled`]).
pub(crate) use crate::compiled::ENV;
use crate::compiled::{Core, Grant};
use crate::ids::{PermissionId, RoleId};
use crate::membership::{MemberIndex, Members};
use crate::text::Quote;

/// A compiled policy: immutable, `Send + Sync`, and cheap to clone (one `Arc`).
///
/// # Invariant
///
/// Every `Snapshot` that exists is acyclic and its bitsets are transitively
/// closed: the row of a role is its direct grants (wildcards expanded) OR-ed
/// with the rows of every role it extends, directly or not. Only the compiler
/// builds snapshots, and it refuses any policy that breaks a validity rule,
/// so queries on a snapshot never fail for want of consistency.
///
/// # Examples
///
/// ```
/// use rolegraph::Policy;
///
/// let policy: Policy = r#"{
///     "permissions": [{"name": "projects:read"}, {"name": "projects:update"}],
///     "roles": [
///         {"name": "viewer", "permissions": ["projects:read"]},
///         {"name": "editor", "extends": "viewer", "permissions": ["projects:update"]}
///     ]
/// }"#.parse()?;
/// let snapshot = policy.compile()?;
/// let editor = snapshot.role(None, "editor").unwrap();
/// assert!(snapshot.role_has_permission(editor, "projects:read"));
/// assert_eq!(snapshot.roles_granting("projects:read")?.len(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Snapshot(Arc<Data>);

/// What a published snapshot is: a compiled policy, the memberships, and the
/// revision they were published at. Publishing a membership change shares
/// the compiled policy; the memberships map is persistent (structural
/// sharing), so neither is copied.
pub(crate) struct Data {
    pub(crate) revision: u64,
    pub(crate) core: Arc<Core>,
    pub(crate) members: Members,
    /// `members` keyed for the user path, resolved against `core`.
    pub(crate) index: MemberIndex,
}

impl std::ops::Deref for Data {
    type Target = Core;

    fn deref(&self) -> &Core {
        &self.core
    }
}

/// A name could not be resolved against a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LookupError {
    /// The permission is not declared.
    #[error("permission {} is not declared{}", Quote(name), wildcard_hint(name))]
    UnknownPermission {
        /// The name asked for.
        name: String,
    },
    /// No role of that name in reach.
    #[error("role {} does not exist{}", Quote(name), in_org(organization.as_deref()))]
    UnknownRole {
        /// The name asked for.
        name: String,
        /// The organization it was looked up in.
        organization: Option<String>,
    },
    /// The organization is not in the policy.
    #[error("organization {} does not exist", Quote(id))]
    UnknownOrganization {
        /// The id asked for.
        id: String,
    },
    /// An any-of or all-of requirement with no permission.
    #[error("a requirement needs at least one permission")]
    EmptyRequirement,
    /// A role id of another numbering: from an unrelated compile, or from
    /// before a full recompile renumbered the roles (see [`RoleId`]).
    #[error("role id {index} is from another compiled policy; resolve the role again by name")]
    ForeignRole {
        /// The id's index.
        index: usize,
    },
}

/// Why a wildcard is never declared: it is a grant's shorthand, and a check
/// names the one permission it needs.
fn wildcard_hint(name: &str) -> &'static str {
    if name.contains('*') {
        ": wildcards are for grants; a check names one declared permission"
    } else {
        ""
    }
}

fn in_org(org: Option<&str>) -> String {
    org.map(|o| format!(" in organization {}", Quote(o)))
        .unwrap_or_default()
}

/// A finding of [`Snapshot::warnings`]: worth a look, but the policy is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Warning {
    /// No role grants this permission, directly or by a wildcard.
    UngrantedPermission {
        /// The permission.
        name: String,
    },
    /// A wildcard grant that matches no declared permission yet.
    WildcardMatchesNothing {
        /// The granting role.
        role: String,
        /// Its organization, `None` for an environment role.
        organization: Option<String>,
        /// The grant as written (`projects:*`).
        grant: String,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::compile::RoleInScope;
        match self {
            Self::UngrantedPermission { name } => {
                write!(f, "permission {} is not granted by any role", Quote(name))
            }
            Self::WildcardMatchesNothing {
                role,
                organization,
                grant,
            } => write!(
                f,
                "{} grants {}, which matches no declared permission yet",
                RoleInScope(role, organization.as_deref()),
                Quote(grant)
            ),
        }
    }
}

impl Snapshot {
    pub(crate) fn from_core(core: Core) -> Self {
        Self(Arc::new(Data {
            revision: 0,
            core: Arc::new(core),
            members: Members::default(),
            index: MemberIndex::default(),
        }))
    }

    pub(crate) fn from_arc(data: Arc<Data>) -> Self {
        Self(data)
    }

    pub(crate) fn arc(&self) -> &Arc<Data> {
        &self.0
    }

    pub(crate) fn data(&self) -> &Data {
        &self.0
    }

    /// The revision this snapshot was published at: 0 for a direct compile,
    /// the engine's revision counter for a published one. It only grows.
    #[must_use]
    pub fn revision(&self) -> u64 {
        self.0.revision
    }

    /// Number of roles, environment and organization roles together.
    #[must_use]
    pub fn roles_len(&self) -> usize {
        self.0.roles_len()
    }

    /// Number of declared permissions.
    #[must_use]
    pub fn permissions_len(&self) -> usize {
        self.0.perms().len()
    }

    /// Number of organizations.
    #[must_use]
    pub fn organizations_len(&self) -> usize {
        self.0.orgs().len()
    }

    /// The longest inheritance chain, counted in roles (0 with no roles).
    #[must_use]
    pub fn max_depth(&self) -> usize {
        self.0.max_depth() as usize
    }

    /// Bytes taken by the permission bitsets alone: the distinct rows (see
    /// [`distinct_rows`](Self::distinct_rows)) and each role's 4-byte
    /// reference to its row.
    #[must_use]
    pub fn bitset_bytes(&self) -> usize {
        self.0.bitset_bytes()
    }

    /// The number of distinct permission rows stored.
    ///
    /// Each role's effective permissions are one bitset row, and equal rows
    /// are stored once: roles that only extend a role, or grant what it
    /// already grants, share its row. This is exactly the number of distinct
    /// effective permission sets among the roles, after a compile and after
    /// every live update; memory for rows grows with it, not with the number
    /// of roles.
    ///
    /// # Examples
    ///
    /// ```
    /// use rolegraph::Policy;
    ///
    /// let mut builder = Policy::builder();
    /// builder.permission("projects:read");
    /// builder.role("viewer").grant("projects:read");
    /// for i in 0..100 {
    ///     builder.organization(format!("org_{i}")).role("member").extends("viewer");
    /// }
    /// let snapshot = builder.build().compile()?;
    /// assert_eq!(snapshot.roles_len(), 101);
    /// assert_eq!(snapshot.distinct_rows(), 1, "101 roles, one row");
    /// # Ok::<(), rolegraph::CompileError>(())
    /// ```
    #[must_use]
    pub fn distinct_rows(&self) -> usize {
        self.0.rows_stored()
    }

    /// Bytes of heap the snapshot holds (bitsets, names, indexes), approximately.
    #[must_use]
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Data>() + self.0.memory_bytes()
    }

    /// Declared permission names, in name order.
    pub fn permissions(&self) -> impl Iterator<Item = &str> + '_ {
        let perms = self.0.perms();
        perms.sorted().iter().map(|id| perms.name(*id))
    }

    /// The id of a declared permission.
    #[must_use]
    pub fn permission_id(&self, name: &str) -> Option<PermissionId> {
        self.0.perms().id(name)
    }

    /// The name of a permission id (`None` for a deleted or foreign id).
    #[must_use]
    pub fn permission_name(&self, id: PermissionId) -> Option<&str> {
        self.0.perms().live_name(id)
    }

    /// Organization ids, in the order of the policy.
    pub fn organizations(&self) -> impl Iterator<Item = &str> + '_ {
        self.0.orgs().iter().map(|o| &*o.id)
    }

    /// Resolves a role name the way a token's role is resolved: among the
    /// organization's roles first, then among environment roles. An unknown
    /// or absent organization resolves environment roles only.
    ///
    /// # Complexity
    ///
    /// One or two hash lookups.
    #[must_use]
    #[inline]
    pub fn role(&self, organization: Option<&str>, name: &str) -> Option<RoleId> {
        self.role_in(self.scope_of(organization), name)
    }

    #[inline]
    pub(crate) fn scope_of(&self, organization: Option<&str>) -> u32 {
        organization
            .and_then(|o| self.0.org_number(o))
            .filter(|&ix| self.0.orgs().get(ix as usize).is_some_and(|o| o.has_roles))
            .unwrap_or(ENV)
    }

    #[inline]
    pub(crate) fn role_in(&self, scope: u32, name: &str) -> Option<RoleId> {
        let find = |s| self.0.find_role(s, name);
        if scope == ENV {
            find(ENV)
        } else {
            find(scope).or_else(|| find(ENV))
        }
    }

    /// Every role id, in id order.
    pub fn roles(&self) -> impl Iterator<Item = RoleId> + '_ {
        (0..self.roles_len()).filter_map(|i| self.0.role_id(i))
    }

    /// A role's name; empty for an id of another numbering (see [`RoleId`]).
    #[must_use]
    pub fn role_name(&self, role: RoleId) -> &str {
        self.0.index_of(role).map_or("", |i| self.0.role_name(i))
    }

    /// The organization a role belongs to, `None` for an environment role
    /// (or an id of another numbering).
    #[must_use]
    pub fn role_organization(&self, role: RoleId) -> Option<&str> {
        let scope = self.0.role_scope(self.0.index_of(role)?)?;
        self.0.orgs().get(scope as usize).map(|o| &*o.id)
    }

    /// The roles a role extends directly, in id order (none for an id of
    /// another numbering).
    pub fn role_bases(&self, role: RoleId) -> impl Iterator<Item = RoleId> + '_ {
        let bases = self.0.index_of(role).map_or(&[][..], |i| self.0.bases(i));
        bases.iter().filter_map(|&b| self.0.role_id(b as usize))
    }

    /// A role's row; empty (no permission) for an id of another numbering.
    pub(crate) fn row(&self, role: RoleId) -> &[u64] {
        self.0.index_of(role).map_or(&[], |i| self.0.row(i))
    }

    pub(crate) fn width(&self) -> usize {
        self.0.width()
    }

    /// Whether `role` has `permission`, directly or by inheritance.
    ///
    /// # Complexity
    ///
    /// One hash lookup for the name, then one word test.
    #[must_use]
    pub fn role_has_permission(&self, role: RoleId, permission: &str) -> bool {
        self.permission_id(permission)
            .is_some_and(|p| bits::test(self.row(role), p.index()))
    }

    /// Every role that has `permission`, directly or by inheritance, in id order.
    ///
    /// # Errors
    ///
    /// [`LookupError::UnknownPermission`] when it is not declared.
    ///
    /// # Complexity
    ///
    /// One word test per role: the snapshot keeps no reverse index, which
    /// would cost as much memory again as the bitsets.
    pub fn roles_granting(&self, permission: &str) -> Result<Vec<RoleId>, LookupError> {
        let id = self
            .permission_id(permission)
            .ok_or_else(|| LookupError::UnknownPermission {
                name: permission.to_owned(),
            })?;
        Ok(self
            .roles()
            .filter(|r| bits::test(self.row(*r), id.index()))
            .collect())
    }

    /// The environment's default creator role.
    #[must_use]
    pub fn default_creator_role(&self) -> Option<RoleId> {
        self.0.default_creator()
    }

    /// The default member role in `organization`: its override, else the
    /// environment's.
    #[must_use]
    pub fn default_member_role(&self, organization: Option<&str>) -> Option<RoleId> {
        organization
            .and_then(|o| self.0.org_number(o))
            .and_then(|ix| self.0.orgs().get(ix as usize))
            .and_then(|o| o.default_member)
            .or(self.0.default_member())
    }

    /// The roles a directory user gets in `organization` from their groups
    /// (given by id or display name): the union of the mapped roles, or the
    /// default member role when no group maps. Sorted by id, deduplicated.
    ///
    /// # Errors
    ///
    /// [`LookupError::UnknownOrganization`] for an organization the policy
    /// does not list.
    pub fn roles_for_groups<I, S>(
        &self,
        organization: &str,
        groups: I,
    ) -> Result<Vec<RoleId>, LookupError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let org = self
            .0
            .org_number(organization)
            .and_then(|ix| self.0.orgs().get(ix as usize))
            .ok_or_else(|| LookupError::UnknownOrganization {
                id: organization.to_owned(),
            })?;
        let mut roles = Vec::new();
        for group in groups {
            let group = group.as_ref();
            if let Ok(at) = org.groups.binary_search_by(|(g, _)| (**g).cmp(group)) {
                if let Some((_, mapped)) = org.groups.get(at) {
                    roles.extend_from_slice(mapped);
                }
            }
        }
        if roles.is_empty() {
            roles.extend(org.default_member.or(self.0.default_member()));
        }
        roles.sort_unstable();
        roles.dedup();
        Ok(roles)
    }

    /// What `lint` warns about: likely mistakes only, permissions no role
    /// grants and wildcards that match nothing yet. A role that nothing
    /// extends, maps or names as a default is not one: roles are assigned to
    /// users directly. Deterministic order.
    #[must_use]
    pub fn warnings(&self) -> Vec<Warning> {
        let d = &self.0;
        let mut out = Vec::new();
        let mut granted = vec![0u64; self.width()];
        for r in self.roles() {
            bits::or_into(&mut granted, self.row(r));
        }
        for id in d.perms().sorted() {
            if !bits::test(&granted, id.index()) {
                out.push(Warning::UngrantedPermission {
                    name: d.perms().name(*id).to_owned(),
                });
            }
        }
        let mut roles: Vec<RoleId> = self.roles().collect();
        roles.sort_by(|a, b| {
            (self.role_organization(*a), self.role_name(*a))
                .cmp(&(self.role_organization(*b), self.role_name(*b)))
        });
        for r in roles {
            let organization = self.role_organization(r).map(str::to_owned);
            for &g in d.grants(r.index()) {
                let Some(Grant::Prefix(prefix)) = d.grant(g) else {
                    continue;
                };
                if d.perms().matching(prefix).next().is_none() {
                    out.push(Warning::WildcardMatchesNothing {
                        role: self.role_name(r).to_owned(),
                        organization: organization.clone(),
                        grant: format!("{prefix}*"),
                    });
                }
            }
        }
        out
    }
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("revision", &self.revision())
            .field("roles", &self.roles_len())
            .field("permissions", &self.permissions_len())
            .field("organizations", &self.organizations_len())
            .finish_non_exhaustive()
    }
}

/// A role's direct grant, for explanations.
pub(crate) enum DirectGrant<'a> {
    /// The permission itself.
    Permission(PermissionId),
    /// A wildcard: the text before its `*`.
    Wildcard(&'a str),
}

impl Snapshot {
    /// A role's direct grants, as the policy wrote them.
    pub(crate) fn direct_grants(&self, role: RoleId) -> impl Iterator<Item = DirectGrant<'_>> + '_ {
        let d = &self.0;
        d.grants(role.index())
            .iter()
            .filter_map(move |&g| match d.grant(g)? {
                Grant::Exact(id) => Some(DirectGrant::Permission(id)),
                Grant::Prefix(p) => Some(DirectGrant::Wildcard(p)),
            })
    }

    /// Live permission ids sorted by name.
    pub(crate) fn permissions_by_name(&self) -> &[PermissionId] {
        self.0.perms().sorted()
    }

    /// The scope number of a listed organization.
    pub(crate) fn organization_scope(&self, organization: &str) -> Option<u32> {
        self.0.org_number(organization)
    }
}
