//! Who holds which roles in which organization, kept beside the compiled policy.

use std::sync::Arc;

use hashbrown::HashTable;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

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

/// One membership as the fast user path reads it: the membership and the
/// roles it resolves to (sorted by id, deduplicated), computed when the
/// snapshot is published.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    /// The user key then the organization id, in one allocation so that a
    /// probe compares both with one cache line (shared: copying a shard
    /// copies no string).
    key: Arc<str>,
    user_len: u32,
    membership: Arc<Membership>,
    roles: SmallVec<[RoleId; 4]>,
}

impl Resolved {
    #[inline]
    fn is(&self, org: &str, user: &str) -> bool {
        self.key.len() == org.len() + user.len()
            && self.key.split_at_checked(self.user_len as usize) == Some((user, org))
    }
}

/// Entries per shard the index aims at: a batch copies the shards it
/// touches, so a change costs about this many entry copies, not the size
/// of the index.
const SHARD_TARGET: usize = 256;

/// (organization, user) → [`Resolved`]: one hash of the two keys and one
/// probe. Sharded copy-on-write tables: a published snapshot shares every
/// shard a batch did not touch, so a batch costs O(changed × shard size),
/// not O(memberships); the shard count is fixed at the last full build,
/// which happens again when the index outgrows it fourfold.
#[derive(Clone)]
pub(crate) struct MemberIndex {
    hasher: ahash::RandomState,
    shards: Arc<[Arc<HashTable<Resolved>>]>,
    len: usize,
}

impl Default for MemberIndex {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl std::fmt::Debug for MemberIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberIndex")
            .field("len", &self.len)
            .field("shards", &self.shards.len())
            .finish()
    }
}

impl MemberIndex {
    fn with_capacity(n: usize) -> Self {
        let shards = (n / SHARD_TARGET).max(1).next_power_of_two();
        let per = n / shards + 1;
        Self {
            hasher: ahash::RandomState::new(),
            shards: (0..shards)
                .map(|_| Arc::new(HashTable::with_capacity(if n == 0 { 0 } else { per })))
                .collect(),
            len: 0,
        }
    }

    #[inline]
    fn hash(&self, org: &str, user: &str) -> u64 {
        self.hasher.hash_one((org, user))
    }

    #[inline]
    fn shard_of(&self, hash: u64) -> usize {
        // The high bits pick the shard; hashbrown uses the low and top 7.
        ((hash >> 32) as usize) & (self.shards.len() - 1)
    }

    /// The resolved membership of `user` in `org`.
    #[inline]
    pub(crate) fn get(&self, org: &str, user: &str) -> Option<&Resolved> {
        let hash = self.hash(org, user);
        self.shards
            .get(self.shard_of(hash))?
            .find(hash, |r| r.is(org, user))
    }

    /// Number of memberships.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Every membership of `members`, resolved against `snapshot`'s policy:
    /// O(memberships).
    pub(crate) fn build(snapshot: &Snapshot, members: &Members) -> Self {
        let n = members.values().map(imbl::OrdMap::len).sum();
        let mut index = Self::with_capacity(n);
        for (user, orgs) in members.iter() {
            for (org, m) in orgs.iter() {
                index.insert(snapshot, org, user, m);
            }
        }
        index
    }

    /// This index with the memberships `touched` (organization, user) read
    /// again from `members` and resolved against `snapshot`: only the shards
    /// they fall in are copied. Rebuilt whole when it outgrew its shards.
    pub(crate) fn updated(
        &self,
        snapshot: &Snapshot,
        members: &Members,
        touched: &[(String, String)],
    ) -> Self {
        // A bulk load touches more than the index holds: build it whole,
        // sized for the result, rather than grow one shard.
        if touched.len() > self.len / 4 + SHARD_TARGET {
            return Self::build(snapshot, members);
        }
        let mut index = self.clone();
        for (org, user) in touched {
            let (org, user) = (org.as_str(), user.as_str());
            let found = members
                .get_key_value(user)
                .and_then(|(u, orgs)| orgs.get_key_value(org).map(|(o, m)| (u, o, m)));
            match found {
                Some((u, o, m)) => index.insert(snapshot, o, u, m),
                None => index.remove(org, user),
            }
        }
        if index.len > index.shards.len() * SHARD_TARGET * 4 {
            return Self::build(snapshot, members);
        }
        index
    }

    fn shard_mut(&mut self, hash: u64) -> Option<&mut HashTable<Resolved>> {
        let at = self.shard_of(hash);
        let shards = Arc::make_mut(&mut self.shards);
        shards.get_mut(at).map(Arc::make_mut)
    }

    fn insert(
        &mut self,
        snapshot: &Snapshot,
        org: &Arc<str>,
        user: &Arc<str>,
        m: &Arc<Membership>,
    ) {
        let mut key = String::with_capacity(user.len() + org.len());
        key.push_str(user);
        key.push_str(org);
        let resolved = Resolved {
            key: Arc::from(key),
            user_len: u32::try_from(user.len()).unwrap_or(u32::MAX),
            membership: Arc::clone(m),
            roles: snapshot.roles_of(org, m).into_iter().collect(),
        };
        let hash = self.hash(org, user);
        let hasher = self.hasher.clone();
        let Some(shard) = self.shard_mut(hash) else {
            return;
        };
        match shard.find_mut(hash, |r| r.is(org, user)) {
            Some(slot) => *slot = resolved,
            None => {
                shard.insert_unique(hash, resolved, |r| {
                    let (user, org) = r
                        .key
                        .split_at_checked(r.user_len as usize)
                        .unwrap_or((&r.key, ""));
                    hasher.hash_one((org, user))
                });
                self.len += 1;
            }
        }
    }

    fn remove(&mut self, org: &str, user: &str) {
        let hash = self.hash(org, user);
        let found = self
            .shards
            .get(self.shard_of(hash))
            .is_some_and(|s| s.find(hash, |r| r.is(org, user)).is_some());
        if !found {
            return;
        }
        if let Some(shard) = self.shard_mut(hash) {
            if let Ok(entry) = shard.find_entry(hash, |r| r.is(org, user)) {
                entry.remove();
                self.len -= 1;
            }
        }
    }
}

impl Snapshot {
    /// The membership of `user` in `organization`, if any.
    ///
    /// # Complexity
    ///
    /// One hash of the two keys and one probe.
    #[must_use]
    pub fn membership(&self, organization: &str, user: &str) -> Option<&Membership> {
        self.arc()
            .index
            .get(organization, user)
            .map(|r| &*r.membership)
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
        self.arc().index.len()
    }

    /// The roles `user` holds in `organization`: the roles assigned to them,
    /// plus the roles their directory groups map to — or, when they are in
    /// groups none of which maps, the organization's default member role.
    /// Names that resolve to no role are skipped. Sorted by id, deduplicated;
    /// empty for a user who is not a member.
    ///
    /// Resolved when the snapshot was published: one probe and a copy.
    #[must_use]
    pub fn user_roles(&self, organization: &str, user: &str) -> Vec<RoleId> {
        self.arc()
            .index
            .get(organization, user)
            .map(|r| r.roles.to_vec())
            .unwrap_or_default()
    }

    /// What [`user_roles`](Self::user_roles) answers for membership `m` in
    /// `organization`, computed from the policy.
    pub(crate) fn roles_of(&self, organization: &str, m: &Membership) -> Vec<RoleId> {
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
    ///
    /// # Complexity
    ///
    /// One probe of the membership index (the roles were resolved when the
    /// snapshot was published), then one row key per role: no allocation
    /// for a user of up to 4 roles.
    #[must_use]
    pub fn user_principal(&self, organization: &str, user: &str) -> Principal {
        match self.arc().index.get(organization, user) {
            // Resolved against this snapshot's policy: its numbering.
            Some(r) => self.principal_of(&r.roles),
            None => self.principal_of(&[]),
        }
    }
}

impl crate::snapshot::Data {
    /// What the engine publishes: `core` and `members`, with the membership
    /// index built whole (`before` is `None`), or updated from the previous
    /// snapshot's for the memberships a batch `touched` — valid only when
    /// the batch changed no role name, numbering, default or group mapping
    /// (those change how every membership resolves).
    pub(crate) fn published(
        revision: u64,
        core: Arc<crate::compiled::Core>,
        members: Members,
        before: Option<(&Self, &[(String, String)])>,
    ) -> Self {
        let policy = Snapshot::from_arc(Arc::new(Self {
            revision,
            core: Arc::clone(&core),
            members: Members::default(),
            index: MemberIndex::default(),
        }));
        let index = match before {
            Some((data, touched)) => data.index.updated(&policy, &members, touched),
            None => MemberIndex::build(&policy, &members),
        };
        Self {
            revision,
            core,
            members,
            index,
        }
    }
}
