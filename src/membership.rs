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

/// user → organization → membership. A persistent hash map (HAMT) keyed by
/// user: a snapshot holds a clone in O(1), one update copies O(log₃₂ n)
/// small nodes, and a probe hashes the key once instead of comparing it
/// with O(log n) keys behind pointers. Its iteration order is arbitrary:
/// whatever reports or stores memberships in order sorts them
/// ([`Members::sorted`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Members {
    users: imbl::GenericHashMap<
        Arc<str>,
        UserOrgs,
        ahash::RandomState,
        imbl::shared_ptr::DefaultSharedPtr,
    >,
    len: usize,
}

/// One user's memberships by organization id. Most users belong to one
/// organization: that one is kept inline (no map node, about 500 bytes,
/// per user); more go to a persistent ordered map, so a user in many
/// organizations still costs O(log n) per update.
#[derive(Debug, Clone)]
pub(crate) enum UserOrgs {
    One(Arc<str>, Arc<Membership>),
    Many(imbl::OrdMap<Arc<str>, Arc<Membership>>),
}

impl PartialEq for UserOrgs {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for UserOrgs {}

impl UserOrgs {
    /// The membership in `org`.
    pub(crate) fn get(&self, org: &str) -> Option<&Arc<Membership>> {
        match self {
            Self::One(o, m) => (**o == *org).then_some(m),
            Self::Many(map) => map.get(org),
        }
    }

    /// The key `org` is stored under.
    fn key_of(&self, org: &str) -> Option<&Arc<str>> {
        match self {
            Self::One(o, _) => (**o == *org).then_some(o),
            Self::Many(map) => map.get_key_value(org).map(|(o, _)| o),
        }
    }

    /// Number of organizations.
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::One(..) => 1,
            Self::Many(map) => map.len(),
        }
    }

    /// Every organization and membership, by organization id.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Arc<Membership>)> {
        let (one, many) = match self {
            Self::One(o, m) => (Some((o, m)), None),
            Self::Many(map) => (None, Some(map.iter())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }

    /// Sets the membership in `org`; the organization's key as stored.
    fn insert(&mut self, org: &str, m: Arc<Membership>) -> Arc<str> {
        match self {
            Self::One(o, old) if **o == *org => {
                *old = m;
                Arc::clone(o)
            }
            Self::One(o, old) => {
                let key: Arc<str> = Arc::from(org);
                let mut map = imbl::OrdMap::new();
                map.insert(Arc::clone(o), Arc::clone(old));
                map.insert(Arc::clone(&key), m);
                *self = Self::Many(map);
                key
            }
            Self::Many(map) => match map.get_key_value(org) {
                Some((o, _)) => {
                    let key = Arc::clone(o);
                    map.insert(Arc::clone(&key), m);
                    key
                }
                None => {
                    let key: Arc<str> = Arc::from(org);
                    map.insert(Arc::clone(&key), m);
                    key
                }
            },
        }
    }

    /// Removes `org`'s membership; `None` when it was the last one (the
    /// caller drops the user).
    fn remove(&mut self, org: &str) -> Option<Arc<Membership>> {
        match self {
            Self::One(..) => None,
            Self::Many(map) => {
                let removed = map.remove(org);
                if map.len() == 1 {
                    if let Some((o, m)) = map.iter().next() {
                        *self = Self::One(Arc::clone(o), Arc::clone(m));
                    }
                }
                removed
            }
        }
    }
}

impl Members {
    /// The membership of `user` in `org`.
    pub(crate) fn get(&self, org: &str, user: &str) -> Option<&Arc<Membership>> {
        self.users.get(user)?.get(org)
    }

    /// `user`'s key as stored, and their memberships.
    pub(crate) fn user(&self, user: &str) -> Option<(&Arc<str>, &UserOrgs)> {
        self.users.get_key_value(user)
    }

    /// Number of (user, organization) memberships.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Sets `user`'s membership in `org`; the (organization, user) keys as
    /// stored. Each key is allocated once, when first seen.
    pub(crate) fn insert(
        &mut self,
        org: &str,
        user: &str,
        m: Arc<Membership>,
    ) -> (Arc<str>, Arc<str>) {
        match self.users.get_key_value_mut(user) {
            Some((u, orgs)) => {
                let before = orgs.len();
                let o = orgs.insert(org, m);
                self.len += orgs.len() - before;
                (o, Arc::clone(u))
            }
            None => {
                let (o, u): (Arc<str>, Arc<str>) = (Arc::from(org), Arc::from(user));
                self.users
                    .insert(Arc::clone(&u), UserOrgs::One(Arc::clone(&o), m));
                self.len += 1;
                (o, u)
            }
        }
    }

    /// [`insert`](Self::insert) for a user who has no membership yet: one
    /// insertion, no probe first. Still right when the user has one (the
    /// map is then put back and the membership added the usual way).
    pub(crate) fn insert_user(
        &mut self,
        org: &str,
        user: &str,
        m: Arc<Membership>,
    ) -> (Arc<str>, Arc<str>) {
        let (o, u): (Arc<str>, Arc<str>) = (Arc::from(org), Arc::from(user));
        match self.users.insert(
            Arc::clone(&u),
            UserOrgs::One(Arc::clone(&o), Arc::clone(&m)),
        ) {
            None => {
                self.len += 1;
                (o, u)
            }
            Some(orgs) => {
                self.users.insert(u, orgs);
                self.insert(org, user, m)
            }
        }
    }

    /// Removes `user`'s membership in `org`, if any: the keys as stored and
    /// the membership.
    pub(crate) fn remove(
        &mut self,
        org: &str,
        user: &str,
    ) -> Option<(Arc<str>, Arc<str>, Arc<Membership>)> {
        let (u, orgs) = self.users.get_key_value(user)?;
        let u = Arc::clone(u);
        let o = Arc::clone(orgs.key_of(org)?);
        let removed = match self.users.get_mut(user)?.remove(org) {
            Some(m) => Some(m),
            None => match self.users.remove(user) {
                Some(UserOrgs::One(_, m)) => Some(m),
                _ => None,
            },
        };
        let m = removed?;
        self.len -= 1;
        Some((o, u, m))
    }

    /// Removes every membership of `user`.
    pub(crate) fn remove_user(&mut self, user: &str) -> Option<UserOrgs> {
        let orgs = self.users.remove(user)?;
        self.len -= orgs.len();
        Some(orgs)
    }

    /// Every (user, organization, membership), in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Arc<str>, &Arc<Membership>)> {
        self.users
            .iter()
            .flat_map(|(user, orgs)| orgs.iter().map(move |(org, m)| (user, org, m)))
    }

    /// [`iter`](Self::iter) sorted by user, then organization: for whatever
    /// reports or stores them (outcomes, checkpoints). O(n log n).
    pub(crate) fn sorted(&self) -> Vec<(&Arc<str>, &Arc<str>, &Arc<Membership>)> {
        let mut all: Vec<_> = self.iter().collect();
        all.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        all
    }
}

/// One membership as the fast user path reads it: the membership and the
/// roles it resolves to (sorted by id, deduplicated), computed once: when
/// the batch that set it is validated, or when the index is built whole
/// (a batch that renames, renumbers or remaps roles).
///
/// One cache line (aligned to one): a probe that finds a short key reads
/// nothing else.
#[derive(Debug, Clone)]
#[repr(align(64))]
pub(crate) struct Resolved {
    /// The user key then the organization id.
    key: Key,
    user_len: u32,
    membership: Arc<Membership>,
    /// Role indexes in the snapshot's numbering.
    roles: SmallVec<[u32; 4]>,
}

/// Longest (user key + organization id) kept inline in an index entry.
const INLINE_KEY: usize = 22;

/// The user key then the organization id: inline when they fit (a probe
/// follows no pointer), else in one shared allocation (copying a shard
/// copies no string).
#[derive(Debug, Clone)]
enum Key {
    Inline { len: u8, bytes: [u8; INLINE_KEY] },
    Heap(Arc<str>),
}

impl Key {
    fn new(user: &str, org: &str, buffer: &mut String) -> Self {
        let mut bytes = [0; INLINE_KEY];
        let len = user.len() + org.len();
        let (u, rest) = bytes.split_at_mut_checked(user.len()).unwrap_or_default();
        match (u.len() == user.len(), rest.get_mut(..org.len())) {
            (true, Some(o)) => {
                u.copy_from_slice(user.as_bytes());
                o.copy_from_slice(org.as_bytes());
                Self::Inline {
                    len: u8::try_from(len).unwrap_or(u8::MAX),
                    bytes,
                }
            }
            _ => {
                buffer.clear();
                buffer.push_str(user);
                buffer.push_str(org);
                Self::Heap(Arc::from(buffer.as_str()))
            }
        }
    }

    #[inline]
    fn bytes(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => bytes.get(..usize::from(*len)).unwrap_or_default(),
            Self::Heap(key) => key.as_bytes(),
        }
    }
}

impl Resolved {
    #[inline]
    fn is(&self, org: &str, user: &str) -> bool {
        let key = self.key.bytes();
        key.len() == org.len() + user.len()
            && key.split_at_checked(self.user_len as usize)
                == Some((user.as_bytes(), org.as_bytes()))
    }

    /// The user key and the organization id (the key is made of two
    /// strings, cut where the user key ends).
    fn user_org(&self) -> (&str, &str) {
        let (user, org) = self
            .key
            .bytes()
            .split_at_checked(self.user_len as usize)
            .unwrap_or_default();
        (
            std::str::from_utf8(user).unwrap_or_default(),
            std::str::from_utf8(org).unwrap_or_default(),
        )
    }

    /// The roles, as ids of `core`'s numbering (the one they were resolved
    /// against).
    fn role_ids(&self, core: &crate::compiled::Core) -> SmallVec<[RoleId; 4]> {
        self.roles
            .iter()
            .filter_map(|&i| core.role_id(i as usize))
            .collect()
    }
}

/// Entries per shard the index aims at: a batch copies the shards it
/// touches, so a change costs about this many entry copies, not the size
/// of the index.
const SHARD_TARGET: usize = 64;

/// A membership's (organization, user) keys, as the model stores them.
pub(crate) type MemberKey = (Arc<str>, Arc<str>);

/// A membership's roles as an index entry holds them: role indexes in the
/// snapshot's numbering, sorted, deduplicated.
pub(crate) type Roles = SmallVec<[u32; 4]>;

/// A membership a batch touched, as the batch leaves it: the membership
/// and its roles resolved against the batch's policy, or `None` when it
/// was removed. The engine resolves it once, when it validates the batch;
/// the index stores that resolution as is.
pub(crate) type Touched = (MemberKey, Option<(Arc<Membership>, Roles)>);

fn to_indexes(roles: &[RoleId]) -> Roles {
    roles
        .iter()
        .filter_map(|r| u32::try_from(r.index()).ok())
        .collect()
}

/// One level of the two-level shard table: the shards of one group.
type Group = Arc<[Arc<HashTable<Resolved>>]>;

/// (organization, user) → [`Resolved`]: one hash of the two keys and one
/// probe. Sharded copy-on-write tables behind a two-level table of
/// pointers: a published snapshot shares every shard (and every group of
/// shards) a batch did not touch, so a change copies about √shards
/// pointers and one shard of about [`SHARD_TARGET`] entries, not the
/// index; the shard count is fixed at the last full build, which happens
/// again when the index outgrows it fourfold.
#[derive(Clone)]
pub(crate) struct MemberIndex {
    hasher: ahash::RandomState,
    groups: Arc<[Group]>,
    /// log₂ of the shards per group.
    group_bits: u32,
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
            .field("groups", &self.groups.len())
            .field("shards_per_group", &(1usize << self.group_bits))
            .finish()
    }
}

impl MemberIndex {
    fn with_capacity(n: usize) -> Self {
        let shards = (n / SHARD_TARGET).max(1).next_power_of_two();
        let bits = shards.trailing_zeros();
        // √shards groups of √shards shards (the groups take the odd bit).
        let group_bits = bits / 2;
        let groups = shards >> group_bits;
        let per = n / shards + 1;
        let shard = || Arc::new(HashTable::with_capacity(if n == 0 { 0 } else { per }));
        Self {
            hasher: ahash::RandomState::new(),
            groups: (0..groups)
                .map(|_| (0..1usize << group_bits).map(|_| shard()).collect())
                .collect(),
            group_bits,
            len: 0,
        }
    }

    #[inline]
    fn hash(&self, org: &str, user: &str) -> u64 {
        self.hasher.hash_one((org, user))
    }

    /// The group and the shard in it: the high bits pick them (hashbrown
    /// uses the low and the top 7).
    #[inline]
    fn shard_of(&self, hash: u64) -> (usize, usize) {
        let bits = (hash >> 32) as usize;
        let shard = bits & ((1 << self.group_bits) - 1);
        let group = (bits >> self.group_bits) & (self.groups.len() - 1);
        (group, shard)
    }

    #[inline]
    fn shard(&self, hash: u64) -> Option<&HashTable<Resolved>> {
        let (group, shard) = self.shard_of(hash);
        self.groups.get(group)?.get(shard).map(|s| &**s)
    }

    /// The resolved membership of `user` in `org`.
    #[inline]
    pub(crate) fn get(&self, org: &str, user: &str) -> Option<&Resolved> {
        let hash = self.hash(org, user);
        self.shard(hash)?.find(hash, |r| r.is(org, user))
    }

    /// Number of memberships.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Every membership of `members`, resolved against `snapshot`'s policy:
    /// O(memberships).
    pub(crate) fn build(snapshot: &Snapshot, members: &Members) -> Self {
        let mut index = Self::with_capacity(members.len());
        let mut key = String::new();
        for (user, org, m) in members.iter() {
            let roles = to_indexes(&snapshot.roles_of(org, m));
            index.insert(org, user, m, roles, &mut key);
        }
        index
    }

    /// This index with the memberships a batch `touched` stored as the
    /// batch resolved them (the rest, resolved against the same role
    /// numbering, kept as they are): only the shards they fall in are
    /// copied. `len` is the number of memberships after the batch.
    ///
    /// A batch that touches more than a quarter of the index (a bulk load)
    /// gets an index built anew, sized for `len`: the kept entries are
    /// copied over and the touched ones added, none resolved again. One
    /// that leaves the index four times over its shards is rebuilt the
    /// same way.
    pub(crate) fn updated(&self, len: usize, touched: &[Touched]) -> Self {
        if touched.len() > self.len / 4 + SHARD_TARGET {
            return self.rebuilt(len, touched);
        }
        let mut index = self.clone();
        index.apply(touched);
        let shards = index.groups.len() << index.group_bits;
        if index.len > shards * SHARD_TARGET * 4 {
            return index.rebuilt(len, &[]);
        }
        index
    }

    /// A new index sized for `len` with this one's entries, then `touched`.
    fn rebuilt(&self, len: usize, touched: &[Touched]) -> Self {
        let mut index = Self::with_capacity(len);
        let hasher = index.hasher.clone();
        for r in self
            .groups
            .iter()
            .flat_map(|g| g.iter())
            .flat_map(|s| s.iter())
        {
            let (user, org) = r.user_org();
            let hash = index.hash(org, user);
            if let Some(shard) = index.shard_mut(hash) {
                shard.insert_unique(hash, r.clone(), |r| {
                    let (user, org) = r.user_org();
                    hasher.hash_one((org, user))
                });
                index.len += 1;
            }
        }
        index.apply(touched);
        index
    }

    fn apply(&mut self, touched: &[Touched]) {
        let mut key = String::new();
        for ((org, user), after) in touched {
            match after {
                Some((m, roles)) => self.insert(org, user, m, roles.clone(), &mut key),
                None => self.remove(org, user),
            }
        }
    }

    fn shard_mut(&mut self, hash: u64) -> Option<&mut HashTable<Resolved>> {
        let (group, shard) = self.shard_of(hash);
        let groups = Arc::make_mut(&mut self.groups);
        let shards = Arc::make_mut(groups.get_mut(group)?);
        shards.get_mut(shard).map(Arc::make_mut)
    }

    /// Stores `user`'s membership `m` in `org`, with its resolved `roles`;
    /// `key` is a buffer for the entry's key, kept across calls.
    fn insert(
        &mut self,
        org: &str,
        user: &str,
        m: &Arc<Membership>,
        roles: Roles,
        key: &mut String,
    ) {
        let resolved = Resolved {
            key: Key::new(user, org, key),
            user_len: u32::try_from(user.len()).unwrap_or(u32::MAX),
            membership: Arc::clone(m),
            roles,
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
                    let (user, org) = r.user_org();
                    hasher.hash_one((org, user))
                });
                self.len += 1;
            }
        }
    }

    fn remove(&mut self, org: &str, user: &str) {
        let hash = self.hash(org, user);
        let found = self
            .shard(hash)
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
            .user(user)
            .into_iter()
            .flat_map(|(_, orgs)| orgs.iter().map(|(o, m)| (&**o, &**m)))
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
            .map(|r| r.role_ids(&self.arc().core).to_vec())
            .unwrap_or_default()
    }

    /// What [`user_roles`](Self::user_roles) answers for membership `m` in
    /// `organization`, computed from the policy.
    pub(crate) fn roles_of(&self, organization: &str, m: &Membership) -> SmallVec<[RoleId; 4]> {
        self.resolve_membership(organization, m).0
    }

    /// [`roles_of`](Self::roles_of), and the first of `m`'s role names (in
    /// its order) that resolves to no role, if any: the engine's validation
    /// and the index's resolution in one pass.
    pub(crate) fn resolve_membership<'m>(
        &self,
        organization: &str,
        m: &'m Membership,
    ) -> (SmallVec<[RoleId; 4]>, Option<&'m String>) {
        // The organization's scope once, not once per role name.
        let scope = self.scope_of(Some(organization));
        let mut unknown = None;
        let mut roles: SmallVec<[RoleId; 4]> = SmallVec::with_capacity(m.roles.len());
        for r in &m.roles {
            match self.role_in(scope, r) {
                Some(id) => roles.push(id),
                None => {
                    unknown.get_or_insert(r);
                }
            }
        }
        if !m.groups.is_empty() {
            if let Ok(mapped) = self.roles_for_groups(organization, &m.groups) {
                roles.extend(mapped);
            }
        }
        roles.sort_unstable();
        roles.dedup();
        (roles, unknown)
    }

    /// `m`'s roles in `organization` as the index stores them (role indexes
    /// of this snapshot's numbering), or the first role name that resolves
    /// to no role.
    pub(crate) fn index_roles<'m>(
        &self,
        organization: &str,
        m: &'m Membership,
    ) -> Result<Roles, &'m String> {
        match self.resolve_membership(organization, m) {
            (_, Some(unknown)) => Err(unknown),
            (roles, None) => Ok(to_indexes(&roles)),
        }
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
            Some(r) => self.principal_of(&r.role_ids(&self.arc().core)),
            None => self.principal_of(&[]),
        }
    }
}

impl Snapshot {
    /// A snapshot of `core` with no memberships: what memberships are
    /// resolved against.
    pub(crate) fn policy_only(core: &Arc<crate::compiled::Core>) -> Self {
        Self::from_arc(Arc::new(crate::snapshot::Data {
            revision: 0,
            core: Arc::clone(core),
            members: Members::default(),
            index: MemberIndex::default(),
        }))
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
        before: Option<(&Self, &[Touched])>,
    ) -> Self {
        let index = match before {
            Some((data, touched)) => data.index.updated(members.len(), touched),
            None => MemberIndex::build(&Snapshot::policy_only(&core), &members),
        };
        Self {
            revision,
            core,
            members,
            index,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(role: &str) -> Arc<Membership> {
        Arc::new(Membership {
            roles: vec![role.to_owned()],
            groups: Vec::new(),
        })
    }

    /// `insert_user` is told the user is new; when they are not, it must
    /// still keep their other organizations and count right.
    #[test]
    fn inserting_a_user_thought_new_keeps_their_memberships() {
        let mut members = Members::default();
        members.insert_user("o1", "u", m("a"));
        assert_eq!(members.len(), 1);
        members.insert_user("o2", "u", m("b"));
        members.insert_user("o1", "u", m("c"));
        members.insert_user("o1", "v", m("d"));
        assert_eq!(members.len(), 3);
        let roles = |o, u| members.get(o, u).map(|m| m.roles.clone());
        assert_eq!(roles("o1", "u"), Some(vec!["c".to_owned()]));
        assert_eq!(roles("o2", "u"), Some(vec!["b".to_owned()]));
        assert_eq!(roles("o1", "v"), Some(vec!["d".to_owned()]));
        assert_eq!(members.user("u").map(|(_, orgs)| orgs.len()), Some(2));
    }

    #[test]
    fn an_index_entry_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Resolved>(), 64);
        assert_eq!(std::mem::align_of::<Resolved>(), 64);
    }

    #[test]
    fn keys_inline_up_to_the_limit_and_on_the_heap_beyond() {
        let mut buffer = String::new();
        let cases = [
            ("", ""),
            ("u", ""),
            ("", "o"),
            ("user-1", "org-1"),
            ("a".repeat(11).leak(), "b".repeat(11).leak()), // 22: inline
            ("a".repeat(12).leak(), "b".repeat(11).leak()), // 23: heap
            ("a".repeat(23).leak(), ""),
            ("", "b".repeat(23).leak()),
            ("usr_é", "org_ü"),
        ];
        for (user, org) in cases {
            let key = Key::new(user, org, &mut buffer);
            let inline = user.len() + org.len() <= INLINE_KEY;
            assert_eq!(matches!(key, Key::Inline { .. }), inline, "{user}/{org}");
            let r = Resolved {
                key,
                user_len: u32::try_from(user.len()).unwrap(),
                membership: Arc::default(),
                roles: SmallVec::new(),
            };
            assert_eq!(r.user_org(), (user, org));
            assert!(r.is(org, user), "{user}/{org}");
            // The same bytes cut elsewhere are another membership.
            let concat = format!("{user}{org}");
            for cut in (0..=concat.len()).filter(|&c| c != user.len()) {
                if let (Some(u), Some(o)) = (concat.get(..cut), concat.get(cut..)) {
                    assert!(!r.is(o, u), "{u}/{o} is not {user}/{org}");
                }
            }
            assert!(!r.is(org, &format!("{user}x")));
            assert!(!r.is(&format!("{org}x"), user));
        }
    }
}
