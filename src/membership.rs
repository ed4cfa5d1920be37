//! Who holds which roles in which organization, kept beside the compiled policy.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::check::Principal;
use crate::ids::RoleId;
use crate::snapshot::Snapshot;

/// One user's standing in one organization: roles assigned to them directly,
/// and the directory groups they belong to (mapped to roles by the
/// organization's group mapping).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Membership {
    /// Roles assigned directly (role names, resolved in the organization
    /// first, then among environment roles).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Directory groups, by id or display name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// user → organization → membership. Persistent maps: a snapshot holds a
/// clone in O(1) and one update copies O(log n) nodes.
pub(crate) type Members = imbl::OrdMap<Arc<str>, imbl::OrdMap<Arc<str>, Arc<Membership>>>;

impl Snapshot {
    /// The membership of `user` in `organization`, if any.
    #[must_use]
    pub fn membership(&self, organization: &str, user: &str) -> Option<&Membership> {
        self.arc()
            .members
            .get(user)
            .and_then(|orgs| orgs.get(organization))
            .map(|m| &**m)
    }

    /// Every organization `user` is a member of, with the membership, by id.
    pub fn memberships_of<'a>(
        &'a self,
        user: &str,
    ) -> impl Iterator<Item = (&'a str, &'a Membership)> + 'a {
        self.arc()
            .members
            .get(user)
            .into_iter()
            .flat_map(|orgs| orgs.iter().map(|(o, m)| (&**o, &**m)))
    }

    /// Number of (user, organization) memberships.
    #[must_use]
    pub fn memberships_len(&self) -> usize {
        self.arc().members.values().map(imbl::OrdMap::len).sum()
    }

    /// The roles `user` holds in `organization`: the roles assigned to them,
    /// plus the roles their directory groups map to — or, when they are in
    /// groups none of which maps, the organization's default member role.
    /// Names that resolve to no role are skipped. Sorted by id, deduplicated;
    /// empty for a user who is not a member.
    #[must_use]
    pub fn user_roles(&self, organization: &str, user: &str) -> Vec<RoleId> {
        let Some(m) = self.membership(organization, user) else {
            return Vec::new();
        };
        let mut roles: Vec<RoleId> = m
            .roles
            .iter()
            .filter_map(|r| self.role(Some(organization), r))
            .collect();
        if !m.groups.is_empty() {
            if let Ok(mapped) = self.roles_for_groups(organization, &m.groups) {
                roles.extend(mapped);
            }
        }
        roles.sort_unstable();
        roles.dedup();
        roles
    }

    /// A principal for `user` in `organization` from the current memberships
    /// rather than from a token: a role revoked a moment ago is already gone.
    #[must_use]
    pub fn user_principal(&self, organization: &str, user: &str) -> Principal {
        // The ids come from this snapshot: always its numbering.
        self.principal_of(&self.user_roles(organization, user))
    }
}
