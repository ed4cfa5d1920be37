//! Who holds which roles in which organization, kept beside the compiled policy.

use std::sync::Arc;

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
    /// The low half of the key's hash: where the entry's probe starts in
    /// its shard (so a shard grows without hashing a key again), and a
    /// filter that skips the key compare of almost every other entry.
    tag: u32,
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

/// `user` then `org` as an inline key (length, bytes zero-padded), when
/// they fit.
#[inline]
fn pack(user: &str, org: &str) -> Option<(u8, [u8; INLINE_KEY])> {
    let mut bytes = [0; INLINE_KEY];
    let len = u8::try_from(user.len() + org.len()).ok()?;
    let (u, rest) = bytes.split_at_mut_checked(user.len())?;
    u.copy_from_slice(user.as_bytes());
    rest.get_mut(..org.len())?.copy_from_slice(org.as_bytes());
    Some((len, bytes))
}

impl Key {
    fn new(user: &str, org: &str, buffer: &mut String) -> Self {
        match pack(user, org) {
            Some((len, bytes)) => Self::Inline { len, bytes },
            None => {
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

/// A key as a lookup asks for it: the two strings and their hash.
struct Probe<'a> {
    org: &'a str,
    user: &'a str,
    hash: u64,
}

impl<'a> Probe<'a> {
    #[inline]
    fn new(org: &'a str, user: &'a str, hash: u64) -> Self {
        Self { org, user, hash }
    }

    /// What an entry of this key keeps as its [`Resolved::tag`].
    #[inline]
    fn tag(&self) -> u32 {
        self.hash as u32
    }
}

/// `a == b` for the short strings keys are: two overlapping word compares
/// up to 16 bytes (a call to `memcmp` per string, of a length only known
/// at run time, cost more than the rest of the compare).
#[inline]
fn eq_short(a: &[u8], b: &[u8]) -> bool {
    #[inline]
    fn word<const N: usize>(s: &[u8], at: usize) -> [u8; N] {
        s.get(at..at + N)
            .and_then(|w| w.try_into().ok())
            .unwrap_or([0; N])
    }
    let n = a.len();
    n == b.len()
        && match n {
            0 => true,
            1..=3 => a.first() == b.first() && a.get(n / 2) == b.get(n / 2) && a.last() == b.last(),
            4..=7 => {
                word::<4>(a, 0) == word::<4>(b, 0) && word::<4>(a, n - 4) == word::<4>(b, n - 4)
            }
            8..=16 => {
                word::<8>(a, 0) == word::<8>(b, 0) && word::<8>(a, n - 8) == word::<8>(b, n - 8)
            }
            _ => a == b,
        }
}

impl Resolved {
    /// Whether this is the entry `probe` asks for.
    #[inline]
    fn is(&self, probe: &Probe<'_>) -> bool {
        self.tag == probe.tag() && self.key_is(probe)
    }

    /// Whether the key is `probe`'s (the tag aside).
    #[inline]
    fn key_is(&self, probe: &Probe<'_>) -> bool {
        let (user, org) = (probe.user.as_bytes(), probe.org.as_bytes());
        let key = self.key.bytes();
        self.user_len as usize == user.len()
            && key.len() == user.len() + org.len()
            && key
                .split_at_checked(user.len())
                .is_some_and(|(u, o)| eq_short(u, user) && eq_short(o, org))
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
/// of the index. At most half full, a shard of 32 is 64 slots (4 KiB), what
/// a hashbrown shard of 64 entries took: `update/membership` does not pay
/// for the emptier slots (with 64 it did, about 2 µs more).
const SHARD_TARGET: usize = 32;

/// Slots of the smallest shard that holds an entry.
const MIN_SLOTS: usize = 8;

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

/// One shard: open addressing with linear probing over one array of
/// one-cache-line slots, kept at most half full. The group holds the
/// array's pointer and length itself, so a lookup goes from the group
/// straight to the slot its probe starts at: no table header and no control
/// bytes to load first, one dependent load where a hashbrown table behind
/// an `Arc` takes three. At most half full, a probe that finds its entry
/// reads 1.5 slots on average, the next one an adjacent line.
///
/// Copy-on-write: a batch that changes a shard shared with a published
/// snapshot copies its slots once.
#[derive(Clone, Default)]
struct Shard {
    /// A power of two of slots, or none.
    slots: Arc<[Option<Resolved>]>,
    /// Slots in use.
    len: usize,
}

impl Shard {
    /// A shard with room for `n` entries (none for 0).
    fn with_capacity(n: usize) -> Self {
        let slots = if n == 0 {
            0
        } else {
            (n * 2).next_power_of_two().max(MIN_SLOTS)
        };
        Self {
            slots: (0..slots).map(|_| None).collect(),
            len: 0,
        }
    }

    #[inline]
    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    /// The entry `probe` asks for.
    #[inline]
    fn find(&self, probe: &Probe<'_>) -> Option<&Resolved> {
        let mask = self.mask();
        let mut i = probe.tag() as usize & mask;
        // At most half full: an empty slot ends every probe. The bound
        // only keeps a broken invariant from looping.
        for _ in 0..self.slots.len() {
            let r = self.slots.get(i)?.as_ref()?;
            if r.is(probe) {
                return Some(r);
            }
            i = (i + 1) & mask;
        }
        None
    }

    /// The slot holding `probe`'s entry, or else the empty slot where its
    /// probe ends.
    fn position(&self, probe: &Probe<'_>) -> Result<usize, usize> {
        let mask = self.mask();
        let mut i = probe.tag() as usize & mask;
        for _ in 0..self.slots.len() {
            match self.slots.get(i) {
                Some(Some(r)) if r.is(probe) => return Ok(i),
                Some(Some(_)) => i = (i + 1) & mask,
                _ => return Err(i),
            }
        }
        Err(i)
    }

    /// Stores `entry` (whose key is `probe`'s), replacing the entry of that
    /// key if any; whether it is new.
    fn insert(&mut self, probe: &Probe<'_>, entry: Resolved) -> bool {
        let mut found = self.position(probe);
        if found.is_err() && (self.len + 1) * 2 > self.slots.len() {
            self.grow();
            found = self.position(probe);
        }
        let slots = Arc::make_mut(&mut self.slots);
        match found {
            Ok(i) | Err(i) => {
                if let Some(slot) = slots.get_mut(i) {
                    let new = slot.is_none();
                    *slot = Some(entry);
                    self.len += usize::from(new);
                    new
                } else {
                    false
                }
            }
        }
    }

    /// Twice the slots (at least [`MIN_SLOTS`]), every entry placed again
    /// by its tag: no key is hashed again.
    fn grow(&mut self) {
        let n = (self.slots.len() * 2).max(MIN_SLOTS);
        let mask = n - 1;
        let mut slots: Vec<Option<Resolved>> = (0..n).map(|_| None).collect();
        for r in self.slots.iter().flatten() {
            let mut i = r.tag as usize & mask;
            while let Some(Some(_)) = slots.get(i) {
                i = (i + 1) & mask;
            }
            if let Some(slot) = slots.get_mut(i) {
                *slot = Some(r.clone());
            }
        }
        self.slots = slots.into();
    }

    /// Removes `probe`'s entry; whether there was one. The entries after it
    /// in its run shift back into the hole, so no probe ever needs a
    /// tombstone.
    fn remove(&mut self, probe: &Probe<'_>) -> bool {
        let Ok(mut hole) = self.position(probe) else {
            return false;
        };
        let mask = self.mask();
        let slots = Arc::make_mut(&mut self.slots);
        if let Some(slot) = slots.get_mut(hole) {
            *slot = None;
        }
        self.len -= 1;
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let home = match slots.get(j) {
                Some(Some(r)) => r.tag as usize & mask,
                _ => break,
            };
            // The entry at `j` moves into the hole when the hole lies on its
            // probe path (from its home slot to `j`).
            if j.wrapping_sub(home) & mask >= j.wrapping_sub(hole) & mask {
                slots.swap(hole, j);
                hole = j;
            }
        }
        true
    }

    /// Every entry, in slot order.
    fn iter(&self) -> impl Iterator<Item = &Resolved> {
        self.slots.iter().flatten()
    }
}

/// One level of the two-level shard table: the shards of one group.
type Group = Arc<[Shard]>;

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
        let per = if n == 0 { 0 } else { n / shards + 1 };
        Self {
            hasher: ahash::RandomState::new(),
            groups: (0..groups)
                .map(|_| {
                    (0..1usize << group_bits)
                        .map(|_| Shard::with_capacity(per))
                        .collect()
                })
                .collect(),
            group_bits,
            len: 0,
        }
    }

    #[inline]
    fn hash(&self, org: &str, user: &str) -> u64 {
        self.hasher.hash_one((org, user))
    }

    #[inline]
    fn probe<'a>(&self, org: &'a str, user: &'a str) -> Probe<'a> {
        Probe::new(org, user, self.hash(org, user))
    }

    /// The group and the shard in it: the high bits pick them (the low
    /// ones, the slot in the shard).
    #[inline]
    fn shard_of(&self, hash: u64) -> (usize, usize) {
        let bits = (hash >> 32) as usize;
        let shard = bits & ((1 << self.group_bits) - 1);
        let group = (bits >> self.group_bits) & (self.groups.len() - 1);
        (group, shard)
    }

    #[inline]
    fn shard(&self, hash: u64) -> Option<&Shard> {
        let (group, shard) = self.shard_of(hash);
        self.groups.get(group)?.get(shard)
    }

    /// The resolved membership of `user` in `org`.
    #[inline]
    pub(crate) fn get(&self, org: &str, user: &str) -> Option<&Resolved> {
        let probe = self.probe(org, user);
        self.shard(probe.hash)?.find(&probe)
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
        for r in self
            .groups
            .iter()
            .flat_map(|g| g.iter())
            .flat_map(|s| s.iter())
        {
            // The new index hashes with its own keys: a new tag.
            let (user, org) = r.user_org();
            let probe = index.probe(org, user);
            let mut r = r.clone();
            r.tag = probe.tag();
            if let Some(shard) = index.shard_mut(probe.hash) {
                if shard.insert(&probe, r) {
                    index.len += 1;
                }
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

    fn shard_mut(&mut self, hash: u64) -> Option<&mut Shard> {
        let (group, shard) = self.shard_of(hash);
        let groups = Arc::make_mut(&mut self.groups);
        let shards = Arc::make_mut(groups.get_mut(group)?);
        shards.get_mut(shard)
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
        let probe = self.probe(org, user);
        let resolved = Resolved {
            key: Key::new(user, org, key),
            user_len: u32::try_from(user.len()).unwrap_or(u32::MAX),
            tag: probe.tag(),
            membership: Arc::clone(m),
            roles,
        };
        if let Some(shard) = self.shard_mut(probe.hash) {
            if shard.insert(&probe, resolved) {
                self.len += 1;
            }
        }
    }

    fn remove(&mut self, org: &str, user: &str) {
        let probe = self.probe(org, user);
        let found = self
            .shard(probe.hash)
            .is_some_and(|s| s.find(&probe).is_some());
        if !found {
            return;
        }
        if let Some(shard) = self.shard_mut(probe.hash) {
            if shard.remove(&probe) {
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
            Some(r) => self.principal_of_distinct(&r.roles),
            None => self.principal_of_distinct(&[]),
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
    use std::collections::BTreeMap;

    use proptest::prelude::*;

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
        // An empty slot costs no more than a full one.
        assert_eq!(std::mem::size_of::<Option<Resolved>>(), 64);
    }

    fn entry(org: &str, user: &str, tag: u32, role: u32) -> Resolved {
        Resolved {
            key: Key::new(user, org, &mut String::new()),
            user_len: u32::try_from(user.len()).unwrap(),
            tag,
            membership: Arc::default(),
            roles: SmallVec::from_slice(&[role]),
        }
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
                tag: 7,
                membership: Arc::default(),
                roles: SmallVec::new(),
            };
            assert_eq!(r.user_org(), (user, org));
            // Every probe below has the entry's tag: the key alone decides.
            fn probe<'a>(org: &'a str, user: &'a str) -> Probe<'a> {
                Probe::new(org, user, 7)
            }
            assert!(r.is(&probe(org, user)), "{user}/{org}");
            assert!(!r.is(&Probe::new(org, user, 8)), "another tag");
            // The same bytes cut elsewhere are another membership.
            let concat = format!("{user}{org}");
            for cut in (0..=concat.len()).filter(|&c| c != user.len()) {
                if let (Some(u), Some(o)) = (concat.get(..cut), concat.get(cut..)) {
                    assert!(!r.is(&probe(o, u)), "{u}/{o} is not {user}/{org}");
                }
            }
            assert!(!r.is(&probe(org, &format!("{user}x"))));
            assert!(!r.is(&probe(&format!("{org}x"), user)));
            // Same lengths, one byte changed.
            if let Some(last) = user.len().checked_sub(1).filter(|_| user.is_ascii()) {
                let other = format!(
                    "{}{}",
                    &user[..last],
                    if user.ends_with('z') { 'y' } else { 'z' }
                );
                assert!(!r.is(&probe(org, &other)), "{other}/{org}");
            }
        }
    }

    #[test]
    fn short_compares_agree_with_slice_equality() {
        for n in 0..=24u8 {
            let a: Vec<u8> = (0..n).map(|i| b'a' + i).collect();
            assert!(eq_short(&a, &a.clone()), "length {n}");
            for at in 0..usize::from(n) {
                let mut b = a.clone();
                b[at] = b'#';
                assert!(!eq_short(&a, &b), "length {n}, byte {at} differs");
            }
            let mut longer = a.clone();
            longer.push(0);
            assert!(
                !eq_short(&a, &longer) && !eq_short(&longer, &a),
                "length {n}"
            );
        }
    }

    /// One operation on a shard: insert (or replace) or remove a key of a
    /// small key space, with a tag from a smaller one (so runs collide,
    /// wrap around the end, and deletions shift entries back).
    #[derive(Debug, Clone)]
    enum Op {
        Set(u8, u32),
        Remove(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u8..40, any::<u32>()).prop_map(|(k, r)| Op::Set(k, r)),
            2 => (0u8..40).prop_map(Op::Remove),
        ]
    }

    /// Key `k`: short keys inline, every fourth one too long to be; its
    /// tag: one of few values, near the end of the slot range.
    fn key(k: u8) -> (String, String, u32) {
        let user = if k.is_multiple_of(4) {
            format!("user-{k}-{}", "x".repeat(20))
        } else {
            format!("u{k}")
        };
        (format!("org-{}", k % 3), user, u32::from(k % 5) + 5)
    }

    proptest! {
        /// A shard answers like a map after every operation, including
        /// when a copy of it (a published snapshot) is kept unchanged.
        #[test]
        fn a_shard_is_a_map(
            start in 0usize..20,
            ops in proptest::collection::vec(op(), 1..200),
        ) {
            let mut shard = Shard::with_capacity(start);
            let mut model: BTreeMap<u8, u32> = BTreeMap::new();
            let mut kept: Vec<(Shard, BTreeMap<u8, u32>)> = Vec::new();
            for (n, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Set(k, role) => {
                        let (org, user, tag) = key(k);
                        let probe = Probe::new(&org, &user, u64::from(tag));
                        let new = shard.insert(&probe, entry(&org, &user, tag, role));
                        prop_assert_eq!(new, model.insert(k, role).is_none());
                    }
                    Op::Remove(k) => {
                        let (org, user, tag) = key(k);
                        let probe = Probe::new(&org, &user, u64::from(tag));
                        prop_assert_eq!(shard.remove(&probe), model.remove(&k).is_some());
                    }
                }
                if n.is_multiple_of(16) {
                    kept.push((shard.clone(), model.clone()));
                }
                prop_assert_eq!(shard.len, model.len());
                prop_assert!(shard.len * 2 <= shard.slots.len() || shard.len == 0);
                prop_assert_eq!(shard.iter().count(), model.len());
            }
            kept.push((shard, model));
            for (shard, model) in &kept {
                for k in 0..40 {
                    let (org, user, tag) = key(k);
                    let probe = Probe::new(&org, &user, u64::from(tag));
                    let found = shard.find(&probe).map(|r| r.roles[0]);
                    prop_assert_eq!(found, model.get(&k).copied(), "key {}", k);
                    prop_assert_eq!(shard.position(&probe).is_ok(), found.is_some());
                }
            }
        }
    }
}
