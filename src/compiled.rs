//! The compiled policy, and the one place that writes it.
//!
//! # Invariant
//!
//! A [`Core`] holds, for every role, its direct grants and its bases, and one
//! bitset row that is their transitive closure: the direct grants (wildcards
//! expanded over the live permissions) OR-ed with the rows of every role it
//! extends, directly or not. The bases graph is acyclic, the reverse edges
//! (`dependents`) are its exact transpose, `depth` is the longest chain from
//! each role, and a retired permission's column is clear in every row.
//!
//! Every field is private: nothing outside this module writes a row, an
//! edge, a permission slot or a role name. The full compile hands its
//! validated parts to [`Core::build`]; the incremental patch changes a copy
//! through a [`Draft`]. Both order the roles to compute with the one
//! [`topological_order`] and compute them with the one [`Core::flatten`], so
//! a patch equals a full compile by construction, and differs only in which
//! roles it recomputes (the changed ones and everything inheriting from
//! them).
//!
//! Each distinct row is stored once, in a [`RowArena`]: a role holds the key
//! of its row ([`Core::row_key`]), roles with equal rows hold equal keys, and
//! the rows stored are exactly the distinct permission sets of the roles
//! ([`Core::rows_stored`]). A row is never written while a role points at
//! it: a patched role is re-pointed (copy-on-write), and a row whose last
//! role leaves is dropped at once (reference counts), its slot reused; freed
//! slots are given back when they outnumber the rows in use, so memory stays
//! within twice the rows live plus a constant. A full compile starts a fresh,
//! dense arena.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use ahash::AHashMap;
use hashbrown::HashTable;

use crate::bits;
use crate::ids::{PermissionId, RoleId};

/// The scope number of environment roles.
pub(crate) const ENV: u32 = u32::MAX;
/// Marks a direct grant entry as a wildcard index rather than a permission id
/// (permission ids stay below it: [`PermissionId::LIMIT`]).
pub(crate) const WILDCARD: u32 = 1 << 31;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A process-unique number for a new compiled policy or lineage.
pub(crate) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// What one direct grant entry means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Grant<'a> {
    /// One permission.
    Exact(PermissionId),
    /// Every live permission whose name starts with the prefix.
    Prefix(&'a str),
}

/// The bytes of a hash table (hashbrown's layout) able to hold `capacity`
/// entries of `entry` bytes: buckets are a power of two at most 7/8 full,
/// each with a control byte.
fn table_bytes(capacity: usize, entry: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    let buckets = if capacity < 8 {
        capacity + 1
    } else {
        (capacity / 7 * 8).next_power_of_two()
    };
    buckets * (entry + 1) + 16
}

/// `len + add` as a `u32` offset, `None` when it does not fit.
fn end_offset(len: usize, add: usize) -> Option<u32> {
    u32::try_from(len.checked_add(add)?).ok()
}

/// A list of names, each distinct name stored once: org role names repeat
/// across organizations (`admin` in each of 100,000 of them), so the list
/// holds a 4-byte reference per entry and the text of each distinct name.
#[derive(Clone, Default)]
pub(crate) struct Names {
    /// The distinct names, packed end to end.
    text: String,
    ends: Vec<u32>,
    /// Entry -> its distinct name.
    ids: Vec<u32>,
    /// The distinct names, by content.
    index: HashTable<u32>,
    state: ahash::RandomState,
}

impl std::fmt::Debug for Names {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries((0..self.ids.len()).map(|i| self.get(i)))
            .finish()
    }
}

/// Distinct name `d` of a packed name table: the text between the end of
/// name `d - 1` and the end of name `d` (empty for a number it never gave).
fn packed<'a>(text: &'a str, ends: &[u32], d: u32) -> &'a str {
    let start = match (d as usize).checked_sub(1) {
        Some(prev) => ends.get(prev).copied().unwrap_or(0),
        None => 0,
    } as usize;
    let end = ends.get(d as usize).copied().unwrap_or(0) as usize;
    text.get(start..end).unwrap_or("")
}

impl Names {
    /// Room for `n` entries, all distinct if need be (see
    /// [`shrink_to_fit`](Self::shrink_to_fit)).
    pub(crate) fn with_capacity(n: usize) -> Self {
        Self {
            ids: Vec::with_capacity(n),
            index: HashTable::with_capacity(n),
            ..Self::default()
        }
    }

    /// Gives back the room the distinct names did not need.
    fn shrink_to_fit(&mut self) {
        self.text.shrink_to_fit();
        self.ends.shrink_to_fit();
        self.ids.shrink_to_fit();
        let (text, ends, state) = (&self.text, &self.ends, &self.state);
        self.index
            .shrink_to_fit(|&d| state.hash_one(packed(text, ends, d)));
    }

    fn distinct(&self, d: u32) -> &str {
        packed(&self.text, &self.ends, d)
    }

    /// The number of distinct names.
    fn distinct_len(&self) -> usize {
        self.ends.len()
    }

    /// Appends `name`; `None` (and nothing appended) when the packed text
    /// would outgrow its `u32` offsets.
    #[must_use]
    pub(crate) fn push(&mut self, name: &str) -> Option<()> {
        let hash = self.state.hash_one(name);
        let d = match self.find_name(name) {
            Some(d) => d,
            None => {
                let end = end_offset(self.text.len(), name.len())?;
                let d = u32::try_from(self.ends.len()).ok()?;
                self.text.push_str(name);
                self.ends.push(end);
                let (text, ends, state) = (&self.text, &self.ends, &self.state);
                self.index
                    .insert_unique(hash, d, |&d| state.hash_one(packed(text, ends, d)));
                d
            }
        };
        self.ids.push(d);
        Some(())
    }

    pub(crate) fn get(&self, i: usize) -> &str {
        self.ids.get(i).map_or("", |&d| self.distinct(d))
    }

    /// The distinct name of entry `i` (`u32::MAX` out of range).
    #[inline]
    fn name_id(&self, i: usize) -> u32 {
        self.ids.get(i).copied().unwrap_or(u32::MAX)
    }

    /// The distinct name equal to `name`, if any entry has it.
    #[inline]
    fn find_name(&self, name: &str) -> Option<u32> {
        let hash = self.state.hash_one(name);
        self.index
            .find(hash, |&d| self.distinct(d) == name)
            .copied()
    }

    fn heap_bytes(&self) -> usize {
        self.text.capacity()
            + (self.ends.capacity() + self.ids.capacity()) * 4
            + table_bytes(self.index.capacity(), 4)
    }
}

/// Compressed sparse rows: a list of `u32` per item.
#[derive(Debug, Clone, Default)]
pub(crate) struct Csr {
    offsets: Vec<u32>,
    items: Vec<u32>,
}

impl Csr {
    pub(crate) fn with_capacity(n: usize) -> Self {
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0);
        Self {
            offsets,
            items: Vec::with_capacity(n),
        }
    }

    /// Appends a list; `None` (and nothing appended) when the items would
    /// outgrow their `u32` offsets.
    #[must_use]
    pub(crate) fn push(&mut self, list: &[u32]) -> Option<()> {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        let end = end_offset(self.items.len(), list.len())?;
        self.items.extend_from_slice(list);
        self.offsets.push(end);
        Some(())
    }

    pub(crate) fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub(crate) fn items_len(&self) -> usize {
        self.items.len()
    }

    pub(crate) fn get(&self, i: usize) -> &[u32] {
        let start = self.offsets.get(i).copied().unwrap_or(0) as usize;
        let end = self.offsets.get(i + 1).copied().unwrap_or(0) as usize;
        self.items.get(start..end).unwrap_or(&[])
    }

    /// `n` lists: this one's, with `replaced` (sorted by item, unique)
    /// substituted, and empty lists for items past the end. The unchanged
    /// runs between replacements are copied whole (their offsets shifted),
    /// so a patch of a few lists costs a copy, not a push per list.
    fn rebuilt(&self, n: usize, replaced: &[(usize, Vec<u32>)]) -> Option<Self> {
        let added: usize = replaced.iter().map(|(_, l)| l.len()).sum();
        let mut out = Self {
            offsets: Vec::with_capacity(n + 1),
            items: Vec::with_capacity(self.items.len() + added),
        };
        out.offsets.push(0);
        let len = self.len();
        // Copies lists `from..to` of this one (those that exist).
        let copy = |out: &mut Self, from: usize, to: usize| -> Option<()> {
            let to = to.min(len);
            if from >= to {
                return Some(());
            }
            let start = self.offsets.get(from).copied().unwrap_or(0);
            let end = self.offsets.get(to).copied().unwrap_or(start);
            let base = end_offset(out.items.len(), 0)?;
            end_offset(out.items.len(), (end - start) as usize)?;
            out.items
                .extend_from_slice(self.items.get(start as usize..end as usize)?);
            let shifted = self
                .offsets
                .get(from + 1..=to)?
                .iter()
                .map(|&o| o - start + base);
            out.offsets.extend(shifted);
            Some(())
        };
        let mut at = 0;
        for (i, list) in replaced.iter().filter(|(i, _)| *i < n) {
            copy(&mut out, at, *i)?;
            // Lists past this one's end up to `i` are empty.
            while out.len() < *i {
                out.push(&[])?;
            }
            out.push(list)?;
            at = i + 1;
        }
        copy(&mut out, at, n)?;
        while out.len() < n {
            out.push(&[])?;
        }
        Some(out)
    }

    /// The reverse lists: for every `j` in `get(i)`, `i` is in `transpose.get(j)`.
    fn transpose(&self, n: usize) -> Self {
        let mut counts = vec![0u32; n + 1];
        for &j in &self.items {
            if let Some(c) = counts.get_mut(j as usize + 1) {
                *c += 1;
            }
        }
        for i in 1..counts.len() {
            let prev = counts.get(i - 1).copied().unwrap_or(0);
            if let Some(c) = counts.get_mut(i) {
                *c += prev;
            }
        }
        let mut fill = counts.clone();
        let mut items = vec![0u32; self.items.len()];
        for i in 0..self.len() {
            for &j in self.get(i) {
                if let Some(at) = fill.get_mut(j as usize) {
                    if let Some(slot) = items.get_mut(*at as usize) {
                        *slot = i as u32;
                    }
                    *at += 1;
                }
            }
        }
        Self {
            offsets: counts,
            items,
        }
    }

    fn shrink_to_fit(&mut self) {
        self.offsets.shrink_to_fit();
        self.items.shrink_to_fit();
    }

    fn heap_bytes(&self) -> usize {
        (self.offsets.capacity() + self.items.capacity()) * 4
    }
}

/// "No role": an empty slot of [`RoleIndex::env`].
const NO_ROLE: u32 = u32::MAX;

/// Organization roles a lookup scans before it searches by halves.
const SCAN_ENTRIES: usize = 16;

/// Role lookup by `(scope, name)` without storing the names twice, laid
/// out so that a lookup touches few cache lines at a million roles: the
/// name is hashed once, in the small table of distinct names ([`Names`]),
/// and the role is then found by that name's number
///
/// - among environment roles, in a direct array by name number (one load);
/// - among an organization's roles, in that organization's own slice of
///   `(name number, role)` pairs, sorted by name number: the roles of one
///   organization sit together, so the three roles of a token share one or
///   two cache lines (scanned when short, searched by halves when long).
///
/// A patch adds roles to `added` (so a draft resolves them at once) and
/// [`settle`](Self::settle) merges them into the slices when it finishes.
#[derive(Clone, Default)]
struct RoleIndex {
    /// Distinct name number -> the environment role of that name, or [`NO_ROLE`].
    env: Vec<u32>,
    /// Organization scope `s`: its roles are `entries[starts[s]..starts[s + 1]]`.
    starts: Vec<u32>,
    /// `(name number, role)`, sorted by name number within each scope.
    entries: Vec<(u32, u32)>,
    /// Organization roles added by a draft, not in `entries` yet.
    added: AHashMap<(u32, u32), u32>,
}

impl RoleIndex {
    fn build(names: &Names, scopes: &[u32]) -> Self {
        let mut env = vec![NO_ROLE; names.distinct_len()];
        let orgs = scopes
            .iter()
            .filter(|&&s| s != ENV)
            .map(|&s| s as usize + 1)
            .max()
            .unwrap_or(0);
        // Counting sort by scope: `starts` ends as each scope's first entry.
        let mut starts = vec![0u32; orgs + 1];
        for &s in scopes.iter().filter(|&&s| s != ENV) {
            if let Some(c) = starts.get_mut(s as usize + 1) {
                *c += 1;
            }
        }
        for i in 1..starts.len() {
            let prev = starts.get(i - 1).copied().unwrap_or(0);
            if let Some(c) = starts.get_mut(i) {
                *c += prev;
            }
        }
        let total = starts.last().copied().unwrap_or(0) as usize;
        let mut fill = starts.clone();
        let mut entries = vec![(0u32, 0u32); total];
        for (id, &s) in scopes.iter().enumerate() {
            let d = names.name_id(id);
            if s == ENV {
                if let Some(slot) = env.get_mut(d as usize) {
                    *slot = id as u32;
                }
            } else if let Some(at) = fill.get_mut(s as usize) {
                if let Some(slot) = entries.get_mut(*at as usize) {
                    *slot = (d, id as u32);
                }
                *at += 1;
            }
        }
        for s in 0..orgs {
            let (a, b) = (starts.get(s), starts.get(s + 1));
            if let (Some(&a), Some(&b)) = (a, b) {
                if let Some(slice) = entries.get_mut(a as usize..b as usize) {
                    slice.sort_unstable();
                }
            }
        }
        Self {
            env,
            starts,
            entries,
            added: AHashMap::default(),
        }
    }

    /// Adds role `id`, already pushed to `names` and `scopes` (resolvable
    /// at once; an organization role joins its scope's slice at
    /// [`settle`](Self::settle)).
    fn insert(&mut self, names: &Names, scope: u32, id: u32) {
        let d = names.name_id(id as usize);
        if scope == ENV {
            if self.env.len() <= d as usize {
                self.env.resize(d as usize + 1, NO_ROLE);
            }
            if let Some(slot) = self.env.get_mut(d as usize) {
                *slot = id;
            }
        } else {
            self.added.insert((scope, d), id);
        }
    }

    /// Merges the roles a draft added into their scopes' slices: one pass
    /// copying the unchanged slices, plus a sort of each changed one.
    fn settle(&mut self) {
        if self.added.is_empty() {
            return;
        }
        let mut added: Vec<(u32, u32, u32)> =
            self.added.drain().map(|((s, d), id)| (s, d, id)).collect();
        added.sort_unstable();
        let old_orgs = self.starts.len().saturating_sub(1);
        let orgs = added
            .last()
            .map_or(0, |&(s, _, _)| s as usize + 1)
            .max(old_orgs);
        let mut starts = Vec::with_capacity(orgs + 1);
        let mut entries = Vec::with_capacity(self.entries.len() + added.len());
        let mut next = added.as_slice();
        for s in 0..orgs {
            starts.push(entries.len() as u32);
            let old = self.scope_entries(s);
            let split = next.partition_point(|&(scope, _, _)| scope as usize <= s);
            let (mine, rest) = next.split_at(split);
            next = rest;
            let from = entries.len();
            entries.extend_from_slice(old);
            if !mine.is_empty() {
                entries.extend(mine.iter().map(|&(_, d, id)| (d, id)));
                if let Some(slice) = entries.get_mut(from..) {
                    slice.sort_unstable();
                }
            }
        }
        starts.push(entries.len() as u32);
        self.starts = starts;
        self.entries = entries;
        self.added = AHashMap::default();
    }

    /// Organization scope `s`'s slice of `(name number, role)`.
    #[inline]
    fn scope_entries(&self, s: usize) -> &[(u32, u32)] {
        match (self.starts.get(s), self.starts.get(s + 1)) {
            (Some(&a), Some(&b)) => self.entries.get(a as usize..b as usize).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// The role of name number `d` in exactly `scope`.
    #[inline]
    fn find_id(&self, scope: u32, d: u32) -> Option<usize> {
        if scope == ENV {
            return self
                .env
                .get(d as usize)
                .filter(|&&id| id != NO_ROLE)
                .map(|&id| id as usize);
        }
        let slice = self.scope_entries(scope as usize);
        let found = if slice.len() <= SCAN_ENTRIES {
            slice.iter().find(|e| e.0 == d).map(|e| e.1)
        } else {
            slice
                .binary_search_by_key(&d, |e| e.0)
                .ok()
                .and_then(|at| slice.get(at))
                .map(|e| e.1)
        };
        match found {
            Some(id) => Some(id as usize),
            None if self.added.is_empty() => None,
            None => self.added.get(&(scope, d)).map(|&id| id as usize),
        }
    }

    /// The role `name` in exactly `scope`.
    #[inline]
    fn find(&self, names: &Names, scope: u32, name: &str) -> Option<usize> {
        self.find_id(scope, names.find_name(name)?)
    }

    /// The role `name` in `scope`, else among environment roles (the name
    /// hashed once).
    #[inline]
    fn resolve(&self, names: &Names, scope: u32, name: &str) -> Option<usize> {
        let d = names.find_name(name)?;
        let own = if scope == ENV {
            None
        } else {
            self.find_id(scope, d)
        };
        own.or_else(|| self.find_id(ENV, d))
    }

    fn heap_bytes(&self) -> usize {
        (self.env.capacity() + self.starts.capacity()) * 4
            + self.entries.capacity() * 8
            + table_bytes(self.added.capacity(), 12)
    }
}

/// "No row yet": the key of a role added by a patch before it is flattened.
const NO_ROW: u32 = u32::MAX;

/// The distinct permission rows, each stored once (hash-consed).
///
/// Roles point at a row by key (a slot number). A row is never written
/// while a role points at it: a role whose permissions change is re-pointed
/// at another row (an existing equal one, or a new one), so a row shared by
/// 50,000 roles is copy-on-write by construction. Every slot in use holds a
/// row some role points at (`refs` counts them): a row whose last role
/// leaves is removed from the table at once and its slot reused, so the
/// stored rows are exactly the distinct effective permission sets. Slots
/// never outnumber the rows ever live at once; [`RowArena::compacted`] gives
/// the memory of freed slots back when they dominate.
#[derive(Clone)]
struct RowArena {
    width: usize,
    /// Slot `k`'s row at `k * width`.
    words: Vec<u64>,
    /// Slot -> the roles pointing at it; 0 for a free slot.
    refs: Vec<u32>,
    free: Vec<u32>,
    /// The slots in use, by row content.
    table: HashTable<u32>,
    state: ahash::RandomState,
}

impl RowArena {
    fn new(width: usize) -> Self {
        Self {
            width,
            words: Vec::new(),
            refs: Vec::new(),
            free: Vec::new(),
            table: HashTable::new(),
            state: ahash::RandomState::new(),
        }
    }

    /// Gives back the room the rows did not need (after a compile sized the
    /// table for as many rows as roles, to insert without rehashing).
    fn shrink_to_fit(&mut self) {
        self.words.shrink_to_fit();
        self.refs.shrink_to_fit();
        let (words, width, state) = (&self.words, self.width, &self.state);
        self.table.shrink_to_fit(|&k| {
            let s = k as usize * width;
            state.hash_one(words.get(s..s + width).unwrap_or(&[]))
        });
    }

    #[inline]
    fn row(&self, key: u32) -> &[u64] {
        let start = (key as usize).saturating_mul(self.width);
        self.words
            .get(start..start.saturating_add(self.width))
            .unwrap_or(&[])
    }

    /// Rows stored (slots in use).
    fn live(&self) -> usize {
        self.refs.len() - self.free.len()
    }

    fn hash(&self, row: &[u64]) -> u64 {
        self.state.hash_one(row)
    }

    /// The key of a row equal to `row` (`width` words), one more role
    /// pointing at it: an existing row, else a new one. `None` when keys
    /// run out.
    fn intern(&mut self, row: &[u64]) -> Option<u32> {
        let hash = self.hash(row);
        let (words, width) = (&self.words, self.width);
        let at = |k: u32| {
            let s = k as usize * width;
            words.get(s..s + width)
        };
        if let Some(&k) = self.table.find(hash, |&k| at(k) == Some(row)) {
            if let Some(r) = self.refs.get_mut(k as usize) {
                *r += 1;
            }
            return Some(k);
        }
        let k = match self.free.pop() {
            Some(k) => {
                let s = k as usize * width;
                if let Some(dst) = self.words.get_mut(s..s + width) {
                    dst.copy_from_slice(row);
                }
                k
            }
            None => {
                let k = u32::try_from(self.refs.len())
                    .ok()
                    .filter(|&k| k != NO_ROW)?;
                self.words.extend_from_slice(row);
                self.refs.push(0);
                k
            }
        };
        if let Some(r) = self.refs.get_mut(k as usize) {
            *r = 1;
        }
        let (words, state) = (&self.words, &self.state);
        self.table.insert_unique(hash, k, |&k| {
            let s = k as usize * width;
            state.hash_one(words.get(s..s + width).unwrap_or(&[]))
        });
        Some(k)
    }

    /// One more role points at `key`.
    #[inline]
    fn retain(&mut self, key: u32) {
        if let Some(r) = self.refs.get_mut(key as usize) {
            *r += 1;
        }
    }

    /// One role fewer points at `key`; the row is dropped with its last role.
    fn release(&mut self, key: u32) {
        let Some(r) = self.refs.get_mut(key as usize) else {
            return;
        };
        *r = r.saturating_sub(1);
        if *r > 0 {
            return;
        }
        let hash = self.hash(self.row(key));
        if let Ok(entry) = self.table.find_entry(hash, |&k| k == key) {
            entry.remove();
        }
        self.free.push(key);
    }

    /// The same rows, `width` words wide (cut, or padded with zeros), and
    /// `remap` from old keys to new ones: rows made equal by the cut (or by
    /// `clear`, bits cleared in every row) are merged, and only live rows
    /// are kept, densely numbered. `NO_ROW` maps to itself.
    fn compacted(&self, width: usize, clear: &[usize]) -> (Self, Vec<u32>) {
        let mut out = Self::new(width);
        out.state = self.state.clone();
        let mut remap = vec![NO_ROW; self.refs.len()];
        let mut row = vec![0u64; width];
        let mut keep = vec![u64::MAX; width];
        for &bit in clear {
            let (word, mask) = bits::locate(bit);
            if let Some(w) = keep.get_mut(word) {
                *w &= !mask;
            }
        }
        for (k, &refs) in self.refs.iter().enumerate() {
            if refs == 0 {
                continue;
            }
            row.fill(0);
            let src = self.row(k as u32);
            let n = src.len().min(width);
            if let (Some(d), Some(s)) = (row.get_mut(..n), src.get(..n)) {
                d.copy_from_slice(s);
            }
            if !clear.is_empty() {
                for (w, k) in row.iter_mut().zip(&keep) {
                    *w &= k;
                }
            }
            let Some(new) = out.intern(&row) else {
                continue;
            };
            // `intern` counted one role; the old row's roles all move over.
            if let Some(r) = out.refs.get_mut(new as usize) {
                *r += refs - 1;
            }
            if let Some(slot) = remap.get_mut(k) {
                *slot = new;
            }
        }
        (out, remap)
    }

    fn heap_bytes(&self) -> usize {
        self.words.capacity() * 8
            + (self.refs.capacity() + self.free.capacity()) * 4
            + table_bytes(self.table.capacity(), 4)
    }
}

/// One organization's defaults and group mapping.
#[derive(Debug, Clone)]
pub(crate) struct Org {
    pub(crate) id: Box<str>,
    /// Whether the organization defines roles of its own: when it does not,
    /// a token's role names resolve among environment roles in one probe.
    pub(crate) has_roles: bool,
    pub(crate) default_member: Option<RoleId>,
    /// Sorted by group.
    pub(crate) groups: Vec<(Box<str>, Vec<RoleId>)>,
}

/// The permission table of a lineage: ids are never reused for another name.
#[derive(Clone, Default)]
pub(crate) struct Permissions {
    /// Names by id; a retired id keeps its name here.
    names: Arc<Vec<Box<str>>>,
    /// The live (declared) permissions.
    index: Arc<AHashMap<Box<str>, PermissionId>>,
    /// Retired permissions, so that one declared again gets its id back.
    retired: Arc<AHashMap<Box<str>, PermissionId>>,
    /// Live ids sorted by name.
    sorted: Arc<Vec<PermissionId>>,
}

impl Permissions {
    /// The table a compile in the lineage of `previous` starts from: every
    /// name `previous` knew, retired until declared again (so it gets its id
    /// back); empty for a new lineage.
    pub(crate) fn continuing(previous: Option<&Core>) -> Self {
        let Some(p) = previous.map(|c| &c.perms) else {
            return Self::default();
        };
        let mut retired = (*p.retired).clone();
        retired.extend(p.index.iter().map(|(name, id)| (name.clone(), *id)));
        Self {
            names: Arc::clone(&p.names),
            index: Arc::default(),
            retired: Arc::new(retired),
            sorted: Arc::default(),
        }
    }

    /// The id of a live permission.
    #[inline]
    pub(crate) fn id(&self, name: &str) -> Option<PermissionId> {
        self.index.get(name).copied()
    }

    /// The name an id was given (retired ones included; empty for a foreign id).
    pub(crate) fn name(&self, id: PermissionId) -> &str {
        self.names.get(id.index()).map_or("", |s| s)
    }

    /// The name of a live permission id.
    pub(crate) fn live_name(&self, id: PermissionId) -> Option<&str> {
        let name = self.names.get(id.index())?;
        (self.index.get(name) == Some(&id)).then_some(&**name)
    }

    /// Live permissions.
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    /// Ids ever given in the lineage (the width of a row, in bits).
    pub(crate) fn slots(&self) -> usize {
        self.names.len()
    }

    /// Live ids in name order.
    pub(crate) fn sorted(&self) -> &[PermissionId] {
        &self.sorted
    }

    /// The live permissions whose names start with `prefix`, in name order.
    pub(crate) fn matching<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = PermissionId> + 'a {
        let start = self.sorted.partition_point(|id| self.name(*id) < prefix);
        self.sorted
            .get(start..)
            .unwrap_or(&[])
            .iter()
            .copied()
            .take_while(move |id| self.name(*id).starts_with(prefix))
    }

    /// Declares `name`, not live yet: its retired id back, else the next id.
    /// `None` when ids run out. Leaves the name order to the caller.
    pub(crate) fn declare(&mut self, name: &str) -> Option<PermissionId> {
        let id = match self.retired.get(name) {
            Some(&id) => {
                Arc::make_mut(&mut self.retired).remove(name);
                id
            }
            None => {
                let id = PermissionId::from_index(self.names.len())?;
                Arc::make_mut(&mut self.names).push(name.into());
                id
            }
        };
        Arc::make_mut(&mut self.index).insert(name.into(), id);
        Some(id)
    }

    /// Sorts every live id by name (after a full compile's declarations).
    pub(crate) fn sort(&mut self) {
        let mut sorted: Vec<PermissionId> = self.index.values().copied().collect();
        sorted.sort_unstable_by(|a, b| self.name(*a).cmp(self.name(*b)));
        self.sorted = Arc::new(sorted);
    }

    fn insert_sorted(&mut self, id: PermissionId) {
        let name = self.name(id);
        let at = self.sorted.partition_point(|p| self.name(*p) < name);
        Arc::make_mut(&mut self.sorted).insert(at, id);
    }

    fn retire(&mut self, name: &str) -> Option<PermissionId> {
        let id = Arc::make_mut(&mut self.index).remove(name)?;
        Arc::make_mut(&mut self.retired).insert(name.into(), id);
        Arc::make_mut(&mut self.sorted).retain(|p| *p != id);
        Some(id)
    }

    fn heap_bytes(&self) -> usize {
        let text: usize = self.names.iter().map(|p| p.len()).sum();
        self.names.capacity() * 16
            + text * 2
            + table_bytes(self.index.capacity(), 24)
            + table_bytes(self.retired.capacity(), 24)
            + self.sorted.capacity() * 4
    }
}

/// The validated, resolved parts a full compile hands to [`Core::build`].
pub(crate) struct Parts {
    /// The lineage to join (a fresh one for an unrelated compile).
    pub(crate) lineage: u64,
    /// The role numbering the compiler tagged role ids with.
    pub(crate) numbering: u32,
    pub(crate) perms: Permissions,
    pub(crate) role_names: Names,
    pub(crate) role_scope: Vec<u32>,
    /// Role -> the roles it extends (deduplicated, sorted by id).
    pub(crate) bases: Csr,
    /// Role -> direct grants: a permission id, or `WILDCARD | index into wildcards`.
    pub(crate) grants: Csr,
    pub(crate) wildcards: Vec<Box<str>>,
    pub(crate) orgs: Vec<Org>,
    pub(crate) org_index: AHashMap<Box<str>, u32>,
    pub(crate) default_creator: Option<RoleId>,
    pub(crate) default_member: Option<RoleId>,
}

/// Role name -> a bitset over role ids.
type RoleSets = AHashMap<Box<str>, Arc<[u64]>>;

/// At most this many role names keep their [`Core::roles_extending`] set.
const EXTENDING_MEMO: usize = 1024;

/// The compiled policy. Large parts sit behind their own `Arc` so that an
/// incremental patch copies only the parts a change touches.
///
/// See the module documentation for the invariant.
#[derive(Clone)]
pub(crate) struct Core {
    /// Unique per compiled policy (keys caches of derived data).
    id: u64,
    /// Shared by compiled policies whose permission ids agree.
    lineage: u64,
    /// Shared by compiled policies whose role ids agree (a compile and its
    /// patches): the tag of every [`RoleId`] they hand out.
    numbering: u32,
    perms: Permissions,
    role_names: Arc<Names>,
    role_scope: Arc<Vec<u32>>,
    role_index: Arc<RoleIndex>,
    /// Role -> the roles it extends (deduplicated, sorted by id).
    bases: Arc<Csr>,
    /// The transpose of `bases`: role -> the roles extending it directly.
    dependents: Arc<Csr>,
    /// Role -> direct grants: a permission id, or `WILDCARD | index into wildcards`.
    grants: Arc<Csr>,
    wildcards: Arc<Vec<Box<str>>>,
    /// Wildcard prefix -> its index in `wildcards`.
    wildcard_ix: Arc<AHashMap<Box<str>, u32>>,
    /// Wildcard index -> the roles whose direct grants hold it (sorted), so
    /// that declaring a permission finds the roles it adds to without a
    /// pass over every role's grants.
    holders: Arc<Csr>,
    /// The distinct rows, each stored once.
    rows: Arc<RowArena>,
    /// Role -> the key of its row in `rows`.
    row_keys: Arc<Vec<u32>>,
    /// Role -> the longest chain from it, counted in roles.
    depth: Arc<Vec<u32>>,
    max_depth: u32,
    orgs: Arc<Vec<Org>>,
    org_index: Arc<AHashMap<Box<str>, u32>>,
    default_creator: Option<RoleId>,
    default_member: Option<RoleId>,
    /// [`roles_extending`](Self::roles_extending), per role name; never
    /// shared with another compiled policy.
    extending: Arc<Mutex<RoleSets>>,
}

impl Core {
    /// Flattens validated parts; when the bases have a cycle, gives them
    /// back (for the compiler to find and report every cycle: ordering an
    /// acyclic graph is cheaper than looking for cycles first).
    pub(crate) fn build(mut parts: Parts) -> Result<Self, Csr> {
        let n = parts.role_scope.len();
        parts.bases.shrink_to_fit();
        parts.grants.shrink_to_fit();
        parts.role_names.shrink_to_fit();
        let role_index = RoleIndex::build(&parts.role_names, &parts.role_scope);
        let dependents = parts.bases.transpose(n);
        let holders = wildcard_holders(&parts.grants, parts.wildcards.len());
        let wildcard_ix = (0u32..)
            .zip(parts.wildcards.iter())
            .map(|(ix, w)| (w.clone(), ix))
            .collect();
        let width = bits::words_for(parts.perms.slots());
        let mut core = Self {
            id: next_id(),
            lineage: parts.lineage,
            numbering: parts.numbering,
            perms: parts.perms,
            role_names: Arc::new(parts.role_names),
            role_scope: Arc::new(parts.role_scope),
            role_index: Arc::new(role_index),
            bases: Arc::new(parts.bases),
            dependents: Arc::new(dependents),
            grants: Arc::new(parts.grants),
            wildcards: Arc::new(parts.wildcards),
            wildcard_ix: Arc::new(wildcard_ix),
            holders: Arc::new(holders),
            rows: Arc::new(RowArena {
                table: HashTable::with_capacity(n),
                ..RowArena::new(width)
            }),
            row_keys: Arc::new(vec![NO_ROW; n]),
            depth: Arc::new(vec![0; n]),
            max_depth: 0,
            orgs: Arc::new(parts.orgs),
            org_index: Arc::new(parts.org_index),
            default_creator: parts.default_creator,
            default_member: parts.default_member,
            extending: Arc::default(),
        };
        let Some(order) = topological_order(&core.bases, &core.dependents, None) else {
            return Err(Arc::unwrap_or_clone(core.bases));
        };
        core.flatten(&order);
        // A compile knows every row it stores: no room kept for more.
        Arc::make_mut(&mut core.rows).shrink_to_fit();
        Ok(core)
    }

    /// Recomputes the rows and depths of `order`, which lists roles bases
    /// first and includes every role inheriting from any role in it.
    ///
    /// INVARIANT: a role's row is computed after the rows of its bases, from
    /// its own grants and those rows only, so every role of `order` ends
    /// closed if the roles outside it were.
    fn flatten(&mut self, order: &[usize]) {
        let rows = Arc::make_mut(&mut self.rows);
        let keys = Arc::make_mut(&mut self.row_keys);
        // Copied only when a depth changes, which a grant never does.
        let depth = &mut self.depth;
        let mut scratch = vec![0u64; rows.width];
        let mut changed = false;
        for &r in order {
            let grants = self.grants.get(r);
            let bases = self.bases.get(r);
            let key_of = |b: u32| keys.get(b as usize).copied().unwrap_or(NO_ROW);
            // A role that only extends roles sharing one row has that row:
            // the common case of multi-tenant policies, found without
            // reading a word (the result is the same as computing it).
            let shared = match bases.split_first() {
                Some((&first, rest)) if grants.is_empty() => {
                    let k = key_of(first);
                    (k != NO_ROW && rest.iter().all(|&b| key_of(b) == k)).then_some(k)
                }
                _ => None,
            };
            let new = match shared {
                Some(k) => {
                    rows.retain(k);
                    k
                }
                None => {
                    scratch.fill(0);
                    for &g in grants {
                        match decode(&self.wildcards, g) {
                            Some(Grant::Exact(id)) => bits::set(&mut scratch, id.index()),
                            Some(Grant::Prefix(prefix)) => {
                                for id in self.perms.matching(prefix) {
                                    bits::set(&mut scratch, id.index());
                                }
                            }
                            None => {}
                        }
                    }
                    for &b in bases {
                        bits::or_into(&mut scratch, rows.row(key_of(b)));
                    }
                    // INVARIANT: keys cannot run out: there are fewer
                    // distinct rows than roles, whose ids fit below `NO_ROW`.
                    rows.intern(&scratch).unwrap_or(NO_ROW)
                }
            };
            // The new row is counted before the old one is released, so a
            // row that stays the same is never freed and stored again.
            if let Some(slot) = keys.get_mut(r) {
                let old = std::mem::replace(slot, new);
                if old != NO_ROW {
                    rows.release(old);
                }
            }
            let mut d = 0;
            for &b in bases {
                d = d.max(depth.get(b as usize).copied().unwrap_or(0));
            }
            if depth.get(r).is_some_and(|&old| old != d + 1) {
                if let Some(slot) = Arc::make_mut(depth).get_mut(r) {
                    *slot = d + 1;
                    changed = true;
                }
            }
        }
        if changed {
            self.max_depth = depth.iter().copied().max().unwrap_or(0);
        }
    }

    /// Renumbers the rows densely when freed slots outnumber the rows in
    /// use (after patches moved many roles off their rows), and at a new
    /// `width`, or with the columns `clear` cleared in every row, always.
    fn compact(&mut self, width: usize, clear: &[usize]) {
        let (rows, remap) = self.rows.compacted(width, clear);
        let identity = remap.iter().enumerate().all(|(k, &n)| n as usize == k);
        if !identity {
            for key in Arc::make_mut(&mut self.row_keys).iter_mut() {
                if let Some(&n) = remap.get(*key as usize) {
                    *key = n;
                }
            }
        }
        self.rows = Arc::new(rows);
    }

    /// The wildcard holders once the roles of `replaced` (sorted by role,
    /// unique) have those direct grants: only the wildcards they gained or
    /// lost get new lists.
    fn holders_after(&self, replaced: &[(usize, Vec<u32>)]) -> Option<Csr> {
        let wild = |list: &[u32]| -> Vec<u32> {
            let mut w: Vec<u32> = list
                .iter()
                .filter(|&&g| g & WILDCARD != 0)
                .map(|&g| g & !WILDCARD)
                .collect();
            w.sort_unstable();
            w
        };
        // (wildcard, role, gained): what each replaced role changes.
        let mut moves: Vec<(u32, u32, bool)> = Vec::new();
        for (r, new) in replaced {
            let (old, new) = (wild(self.grants.get(*r)), wild(new));
            let role = u32::try_from(*r).ok()?;
            let lost = old.iter().filter(|w| new.binary_search(w).is_err());
            let gained = new.iter().filter(|w| old.binary_search(w).is_err());
            moves.extend(lost.map(|&w| (w, role, false)));
            moves.extend(gained.map(|&w| (w, role, true)));
        }
        moves.sort_unstable();
        let mut lists: Vec<(usize, Vec<u32>)> = Vec::new();
        for group in moves.chunk_by(|a, b| a.0 == b.0) {
            let Some(&(w, _, _)) = group.first() else {
                continue;
            };
            // Sorted, as `group` is.
            let lost: Vec<u32> = group.iter().filter(|m| !m.2).map(|m| m.1).collect();
            let mut list = self.holders.get(w as usize).to_vec();
            list.retain(|r| lost.binary_search(r).is_err());
            list.extend(group.iter().filter(|m| m.2).map(|m| m.1));
            list.sort_unstable();
            list.dedup();
            lists.push((w as usize, list));
        }
        self.holders.rebuilt(self.wildcards.len(), &lists)
    }

    /// A copy to patch; see [`Draft`].
    pub(crate) fn draft(&self) -> Draft {
        let mut core = self.clone();
        core.extending = Arc::default();
        Draft {
            core,
            cleared: Vec::new(),
            dirty: Vec::new(),
            new_bases: Vec::new(),
            new_grants: Vec::new(),
        }
    }

    /// Unique per compiled policy.
    #[inline]
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Shared by the compiled policies whose permission ids agree.
    #[inline]
    pub(crate) fn lineage(&self) -> u64 {
        self.lineage
    }

    /// The id of role `index`, tagged with this policy's numbering.
    #[inline]
    pub(crate) fn role_id(&self, index: usize) -> Option<RoleId> {
        (index < self.roles_len())
            .then(|| RoleId::new(index, self.numbering))
            .flatten()
    }

    /// The index of `role` if it is one of this policy's ids (its
    /// numbering, in range), else `None`.
    #[inline]
    pub(crate) fn index_of(&self, role: RoleId) -> Option<usize> {
        (role.numbering() == self.numbering && role.index() < self.roles_len())
            .then(|| role.index())
    }

    /// The permission table.
    #[inline]
    pub(crate) fn perms(&self) -> &Permissions {
        &self.perms
    }

    /// Number of roles.
    #[inline]
    pub(crate) fn roles_len(&self) -> usize {
        self.role_scope.len()
    }

    /// A role's name (empty for an out-of-range index).
    #[inline]
    pub(crate) fn role_name(&self, role: usize) -> &str {
        self.role_names.get(role)
    }

    /// A role's scope: an organization number, or [`ENV`].
    #[inline]
    pub(crate) fn role_scope(&self, role: usize) -> Option<u32> {
        self.role_scope.get(role).copied()
    }

    /// The roles a role extends directly, sorted by id.
    #[inline]
    pub(crate) fn bases(&self, role: usize) -> &[u32] {
        self.bases.get(role)
    }

    /// The roles extending a role directly, sorted by id.
    #[inline]
    pub(crate) fn dependents(&self, role: usize) -> &[u32] {
        self.dependents.get(role)
    }

    /// A role's direct grant entries (see [`grant`](Self::grant)).
    #[inline]
    pub(crate) fn grants(&self, role: usize) -> &[u32] {
        self.grants.get(role)
    }

    /// What a direct grant entry means.
    #[inline]
    pub(crate) fn grant(&self, entry: u32) -> Option<Grant<'_>> {
        decode(&self.wildcards, entry)
    }

    /// A role's closed permission row (empty for an out-of-range index).
    #[inline]
    pub(crate) fn row(&self, role: usize) -> &[u64] {
        self.row_by_key(self.row_key(role))
    }

    /// The key of a role's row: roles with equal rows have equal keys
    /// (`u32::MAX`, which keys no row, for an out-of-range index).
    #[inline]
    pub(crate) fn row_key(&self, role: usize) -> u32 {
        self.row_keys.get(role).copied().unwrap_or(NO_ROW)
    }

    /// The row stored under `key` (empty for a key no row has).
    #[inline]
    pub(crate) fn row_by_key(&self, key: u32) -> &[u64] {
        self.rows.row(key)
    }

    /// The number of distinct rows stored: exactly the number of distinct
    /// permission sets among the roles.
    pub(crate) fn rows_stored(&self) -> usize {
        self.rows.live()
    }

    /// Row width in words.
    #[inline]
    pub(crate) fn width(&self) -> usize {
        self.rows.width
    }

    /// The longest inheritance chain, counted in roles.
    pub(crate) fn max_depth(&self) -> u32 {
        self.max_depth
    }

    /// Organizations, by number.
    #[inline]
    pub(crate) fn orgs(&self) -> &[Org] {
        &self.orgs
    }

    /// The number of a listed organization.
    #[inline]
    pub(crate) fn org_number(&self, id: &str) -> Option<u32> {
        self.org_index.get(id).copied()
    }

    /// The environment's default creator role.
    pub(crate) fn default_creator(&self) -> Option<RoleId> {
        self.default_creator
    }

    /// The environment's default member role.
    pub(crate) fn default_member(&self) -> Option<RoleId> {
        self.default_member
    }

    /// The role `name` in exactly this scope (no fallback to the environment).
    #[inline]
    pub(crate) fn find_role(&self, scope: u32, name: &str) -> Option<RoleId> {
        self.role_index
            .find(&self.role_names, scope, name)
            .and_then(|i| RoleId::new(i, self.numbering))
    }

    /// The role `name` as seen from `scope`: its own roles, then the environment's.
    #[inline]
    pub(crate) fn resolve_role(&self, scope: u32, name: &str) -> Option<RoleId> {
        self.role_index
            .resolve(&self.role_names, scope, name)
            .and_then(|i| RoleId::new(i, self.numbering))
    }

    /// The scope number of an organization, `ENV` when it is not listed.
    pub(crate) fn scope_number(&self, organization: Option<&str>) -> u32 {
        organization.and_then(|o| self.org_number(o)).unwrap_or(ENV)
    }

    /// A bitset over role ids: the roles named `name` (any scope) and every
    /// role that extends one of them, directly or not. Computed once per
    /// compiled policy and name (for the first [`EXTENDING_MEMO`] names).
    pub(crate) fn roles_extending(&self, name: &str) -> Arc<[u64]> {
        let memo = |m: &Mutex<RoleSets>| {
            m.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(name)
                .cloned()
        };
        if let Some(set) = memo(&self.extending) {
            return set;
        }
        let set: Arc<[u64]> = self.walk_extending(name).into();
        let mut map = self
            .extending
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if map.len() < EXTENDING_MEMO {
            map.insert(name.into(), Arc::clone(&set));
        }
        set
    }

    fn walk_extending(&self, name: &str) -> Vec<u64> {
        let n = self.roles_len();
        let mut members = vec![0u64; bits::words_for(n)];
        let mut stack: Vec<usize> = (0..n).filter(|&r| self.role_name(r) == name).collect();
        for &r in &stack {
            bits::set(&mut members, r);
        }
        while let Some(r) = stack.pop() {
            for &d in self.dependents(r) {
                if !bits::test(&members, d as usize) {
                    bits::set(&mut members, d as usize);
                    stack.push(d as usize);
                }
            }
        }
        members
    }

    /// Bytes taken by the permission rows: the distinct rows' words, and
    /// each role's key (the arena's counts and table are in
    /// [`memory_bytes`](Self::memory_bytes)).
    pub(crate) fn bitset_bytes(&self) -> usize {
        self.rows.words.capacity() * 8 + self.row_keys.capacity() * 4
    }

    /// Bytes of heap held, approximately.
    pub(crate) fn memory_bytes(&self) -> usize {
        let org_bytes: usize = self
            .orgs
            .iter()
            .map(|o| {
                std::mem::size_of::<Org>()
                    + o.id.len()
                    + o.groups
                        .iter()
                        .map(|(g, r)| g.len() + r.capacity() * 4 + 40)
                        .sum::<usize>()
            })
            .sum();
        std::mem::size_of::<Self>()
            + self.depth.capacity() * 4
            + self.perms.heap_bytes()
            + self.role_names.heap_bytes()
            + self.role_scope.capacity() * 4
            + self.role_index.heap_bytes()
            + self.bases.heap_bytes()
            + self.dependents.heap_bytes()
            + self.grants.heap_bytes()
            + self
                .wildcards
                .iter()
                .map(|w| w.len() * 2 + 16)
                .sum::<usize>()
            + table_bytes(self.wildcard_ix.capacity(), 20)
            + self.holders.heap_bytes()
            + self.rows.heap_bytes()
            + self.row_keys.capacity() * 4
            + org_bytes
            + table_bytes(self.org_index.capacity(), 24)
            + self.org_index.keys().map(|k| k.len()).sum::<usize>()
    }
}

fn decode(wildcards: &[Box<str>], entry: u32) -> Option<Grant<'_>> {
    if entry & WILDCARD == 0 {
        PermissionId::from_index(entry as usize).map(Grant::Exact)
    } else {
        wildcards
            .get((entry & !WILDCARD) as usize)
            .map(|p| Grant::Prefix(p))
    }
}

/// Wildcard index -> the roles whose direct grants hold it, in role order.
fn wildcard_holders(grants: &Csr, wildcards: usize) -> Csr {
    let mut held = Csr::with_capacity(grants.len());
    let mut list = Vec::new();
    for r in 0..grants.len() {
        list.clear();
        list.extend(
            grants
                .get(r)
                .iter()
                .filter(|&&g| g & WILDCARD != 0)
                .map(|&g| g & !WILDCARD),
        );
        // INVARIANT: a sub-list of `grants`, whose offsets fit.
        let _ = held.push(&list);
    }
    held.transpose(wildcards)
}

/// A compiled policy being patched: the incremental recompiler's only way
/// to change one. Changes are recorded; [`finish`](Self::finish) rebuilds
/// the edges they touch and recomputes, with [`Core::flatten`], the rows of
/// the changed roles and of every role inheriting from them.
pub(crate) struct Draft {
    core: Core,
    /// Columns of retired permissions, cleared in every row by `finish`
    /// (in one pass over the rows, however many a batch retires).
    cleared: Vec<usize>,
    /// Roles whose rows must be recomputed (with everything extending them).
    dirty: Vec<usize>,
    new_bases: Vec<(usize, Vec<u32>)>,
    new_grants: Vec<(usize, Vec<u32>)>,
}

impl Draft {
    /// The policy as patched so far, for lookups (roles added are
    /// resolvable; rows and edges are the old ones until `finish`).
    pub(crate) fn core(&self) -> &Core {
        &self.core
    }

    /// Retires a live permission: its id is kept for the name, and its
    /// column is cleared in every row. `None` when it is not live.
    pub(crate) fn retire_permission(&mut self, name: &str) -> Option<()> {
        let id = self.core.perms.retire(name)?;
        // INVARIANT: the bit can only come from a grant of the permission,
        // which the caller also removes, a wildcard, which no longer matches
        // it, or a base's row, cleared here too: clearing it everywhere is
        // what recomputing every row would give. Rows that differed only in
        // it are merged, so each distinct row stays stored once. `finish`
        // clears it before it computes any row.
        self.cleared.push(id.index());
        Some(())
    }

    /// Declares a permission that is not live: its retired id back, else the
    /// next one. Roles with a wildcard matching it are recomputed. `None`
    /// when it is live already or ids run out.
    pub(crate) fn declare_permission(&mut self, name: &str) -> Option<PermissionId> {
        if self.core.perms.id(name).is_some() {
            return None;
        }
        let id = self.core.perms.declare(name)?;
        self.core.perms.insert_sorted(id);
        // The wildcards matching `name` are its prefixes: each is looked up
        // (names are at most `MAX_NAME_LEN` bytes), and the roles holding
        // it are recomputed. A role given a wildcard earlier in this draft
        // is not among the holders yet, but is recomputed anyway (dirty).
        let core = &self.core;
        let ends = name.char_indices().map(|(i, _)| i).chain([name.len()]);
        for prefix in ends.filter_map(|end| name.get(..end)) {
            if let Some(&ix) = core.wildcard_ix.get(prefix) {
                self.dirty
                    .extend(core.holders.get(ix as usize).iter().map(|&r| r as usize));
            }
        }
        Some(id)
    }

    /// Adds a role with no grants and no bases (set them with
    /// [`set_bases`](Self::set_bases) and [`set_grants`](Self::set_grants)).
    /// `None` when ids or the name table run out.
    pub(crate) fn add_role(&mut self, scope: u32, name: &str) -> Option<RoleId> {
        let core = &mut self.core;
        let id = RoleId::new(core.role_scope.len(), core.numbering)?;
        Arc::make_mut(&mut core.role_names).push(name)?;
        Arc::make_mut(&mut core.role_scope).push(scope);
        let index = Arc::make_mut(&mut core.role_index);
        index.insert(&core.role_names, scope, id.index() as u32);
        self.dirty.push(id.index());
        Some(id)
    }

    /// The grant entry of wildcard `prefix*`, interned. `None` when wildcard
    /// indexes run out.
    pub(crate) fn wildcard(&mut self, prefix: &str) -> Option<u32> {
        if let Some(&ix) = self.core.wildcard_ix.get(prefix) {
            return Some(WILDCARD | ix);
        }
        let ix = u32::try_from(self.core.wildcards.len())
            .ok()
            .filter(|&ix| ix & WILDCARD == 0)?;
        Arc::make_mut(&mut self.core.wildcards).push(prefix.into());
        Arc::make_mut(&mut self.core.wildcard_ix).insert(prefix.into(), ix);
        Some(WILDCARD | ix)
    }

    /// Replaces a role's bases (role ids).
    pub(crate) fn set_bases(&mut self, role: RoleId, mut bases: Vec<u32>) {
        bases.sort_unstable();
        bases.dedup();
        self.new_bases.push((role.index(), bases));
        self.dirty.push(role.index());
    }

    /// Replaces a role's direct grant entries (permission ids, or entries
    /// from [`wildcard`](Self::wildcard)).
    pub(crate) fn set_grants(&mut self, role: RoleId, mut grants: Vec<u32>) {
        grants.sort_unstable();
        grants.dedup();
        self.new_grants.push((role.index(), grants));
        self.dirty.push(role.index());
    }

    /// Replaces the defaults and the organizations' mappings.
    pub(crate) fn set_scopes(
        &mut self,
        default_creator: Option<RoleId>,
        default_member: Option<RoleId>,
        orgs: Vec<Org>,
    ) {
        self.core.default_creator = default_creator;
        self.core.default_member = default_member;
        self.core.orgs = Arc::new(orgs);
    }

    /// The patched policy, its invariant restored. `None` when the new bases
    /// make a cycle (the caller then lets the full compiler explain it).
    pub(crate) fn finish(mut self) -> Option<Core> {
        let core = &mut self.core;
        let n = core.role_scope.len();
        if !core.role_index.added.is_empty() {
            Arc::make_mut(&mut core.role_index).settle();
        }
        if !self.new_bases.is_empty() || core.bases.len() != n {
            normalize(&mut self.new_bases);
            core.bases = Arc::new(core.bases.rebuilt(n, &self.new_bases)?);
            core.dependents = Arc::new(core.bases.transpose(n));
        }
        if !self.new_grants.is_empty() || core.grants.len() != n {
            normalize(&mut self.new_grants);
            let holders = core.holders_after(&self.new_grants)?;
            core.holders = Arc::new(holders);
            core.grants = Arc::new(core.grants.rebuilt(n, &self.new_grants)?);
        }
        let width = bits::words_for(core.perms.slots());
        if width != core.rows.width || !self.cleared.is_empty() {
            core.compact(width, &self.cleared);
        }
        if core.row_keys.len() != n {
            Arc::make_mut(&mut core.row_keys).resize(n, NO_ROW);
        }
        if core.depth.len() != n {
            Arc::make_mut(&mut core.depth).resize(n, 0);
        }
        self.dirty.sort_unstable();
        self.dirty.dedup();
        let order = topological_order(&core.bases, &core.dependents, Some(&self.dirty))?;
        core.flatten(&order);
        // Slots freed by the patch are reused by the next one; when they
        // outnumber the rows in use, they are given back (bounded memory).
        let rows = &core.rows;
        if rows.free.len() > 64 && rows.free.len() > rows.live() {
            core.compact(width, &[]);
        }
        core.id = next_id();
        Some(self.core)
    }
}

/// Sorted by item; of two entries for one item, the last one set wins.
fn normalize(lists: &mut Vec<(usize, Vec<u32>)>) {
    lists.reverse();
    lists.sort_by_key(|(at, _)| *at);
    lists.dedup_by_key(|(at, _)| *at);
}

/// The roles to compute, bases first: every role (`seeds` `None`), by
/// Kahn's algorithm over `role -> base` edges; or `seeds` and every role
/// extending one of them, by a depth-first walk of the dependents whose
/// reverse postorder puts each role after its bases. The walk costs what it
/// visits plus two bitsets (`n / 4` bytes), not a pass over every role. `None`
/// when they cannot all be ordered, which means a cycle.
fn topological_order(bases: &Csr, dependents: &Csr, seeds: Option<&[usize]>) -> Option<Vec<usize>> {
    match seeds {
        None => kahn(bases, dependents),
        Some(seeds) => reverse_postorder(dependents, bases.len(), seeds),
    }
}

fn kahn(bases: &Csr, dependents: &Csr) -> Option<Vec<usize>> {
    let n = bases.len();
    let mut pending: Vec<u32> = (0..n).map(|r| bases.get(r).len() as u32).collect();
    let mut order: Vec<usize> = (0..n).filter(|&r| bases.get(r).is_empty()).collect();
    order.reserve(n - order.len());
    // `order` is its own queue: roles from `next` on are ready, not expanded.
    let mut next = 0;
    while let Some(&r) = order.get(next) {
        next += 1;
        for &d in dependents.get(r) {
            if let Some(p) = pending.get_mut(d as usize) {
                *p -= 1;
                if *p == 0 {
                    order.push(d as usize);
                }
            }
        }
    }
    (order.len() == n).then_some(order)
}

fn reverse_postorder(dependents: &Csr, n: usize, seeds: &[usize]) -> Option<Vec<usize>> {
    let words = bits::words_for(n);
    // Entered, and finished: entered but not finished is on the stack, so
    // meeting it again closes a cycle.
    let (mut entered, mut finished) = (vec![0u64; words], vec![0u64; words]);
    let mut post = Vec::new();
    let mut stack: Vec<(usize, usize)> = Vec::new();
    for &seed in seeds {
        if seed >= n || bits::test(&entered, seed) {
            continue;
        }
        bits::set(&mut entered, seed);
        stack.push((seed, 0));
        while let Some((r, next)) = stack.last_mut() {
            let r = *r;
            match dependents.get(r).get(*next) {
                Some(&d) => {
                    *next += 1;
                    let d = d as usize;
                    if !bits::test(&entered, d) {
                        bits::set(&mut entered, d);
                        stack.push((d, 0));
                    } else if !bits::test(&finished, d) {
                        return None;
                    }
                }
                None => {
                    bits::set(&mut finished, r);
                    post.push(r);
                    stack.pop();
                }
            }
        }
    }
    post.reverse();
    Some(post)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr(lists: &[&[u32]]) -> Csr {
        let mut c = Csr::with_capacity(lists.len());
        for l in lists {
            c.push(l).unwrap();
        }
        c
    }

    /// The `diamond` fixture: `top` extends `left` and `right`, which
    /// extend `base`; permission `p{i}` is granted by role `i` (`base` also
    /// grants the wildcard `w*`), with `grants` overriding role 0's.
    fn diamond(perm_names: &[&str], base_grants: &[u32], numbering: u32) -> Core {
        let mut perms = Permissions::continuing(None);
        for p in perm_names {
            perms.declare(p).unwrap();
        }
        perms.sort();
        let mut role_names = Names::default();
        for n in ["base", "left", "right", "top"] {
            role_names.push(n).unwrap();
        }
        let mut grants = Csr::default();
        grants.push(base_grants).unwrap();
        for g in [&[1][..], &[2], &[3]] {
            grants.push(g).unwrap();
        }
        Core::build(Parts {
            lineage: 1,
            numbering,
            perms,
            role_names,
            role_scope: vec![ENV; 4],
            bases: csr(&[&[], &[0], &[0], &[1, 2]]),
            grants,
            wildcards: vec!["w".into()],
            orgs: Vec::new(),
            org_index: AHashMap::new(),
            default_creator: None,
            default_member: None,
        })
        .ok()
        .unwrap()
    }

    fn rows(core: &Core) -> Vec<Vec<usize>> {
        (0..core.roles_len())
            .map(|r| bits::ones(core.row(r)).collect())
            .collect()
    }

    #[test]
    fn a_patched_diamond_equals_the_diamond_built_whole() {
        let names = ["p0", "p1", "p2", "p3", "w:x"];
        let before = diamond(&names, &[0], 1);
        assert_eq!(
            rows(&before),
            [vec![0], vec![0, 1], vec![0, 2], vec![0, 1, 2, 3]]
        );
        assert_eq!(before.max_depth(), 3);
        assert_eq!(before.dependents(0), [1, 2]);

        // `base` now grants the wildcard: every role inherits `w:x`.
        let mut draft = before.draft();
        let w = draft.wildcard("w").unwrap();
        draft.set_grants(RoleId::new(0, 1).unwrap(), vec![w]);
        let patched = draft.finish().unwrap();
        let whole = diamond(&names, &[WILDCARD], 1);
        assert_eq!(rows(&patched), rows(&whole));
        assert_eq!(
            rows(&patched),
            [vec![4], vec![1, 4], vec![2, 4], vec![1, 2, 3, 4]]
        );
        assert_ne!(patched.id(), before.id());
        assert_eq!(
            rows(&before)[3],
            [0, 1, 2, 3],
            "the old policy is untouched"
        );

        // Retiring `p1` clears its column (the caller drops its grants, as
        // the model does); declaring it again gets its id back, and a new
        // permission the wildcard matches reaches every role.
        let mut draft = patched.draft();
        draft.retire_permission("p1").unwrap();
        draft.set_grants(RoleId::new(1, 1).unwrap(), Vec::new());
        let retired = draft.finish().unwrap();
        assert!(rows(&retired).iter().all(|r| !r.contains(&1)));
        let mut draft = retired.draft();
        assert_eq!(draft.declare_permission("p1").map(|p| p.index()), Some(1));
        assert_eq!(draft.declare_permission("w:y").map(|p| p.index()), Some(5));
        assert!(draft.declare_permission("w:y").is_none(), "already live");
        let declared = draft.finish().unwrap();
        assert_eq!(rows(&declared)[0], [4, 5]);
        assert_eq!(rows(&declared)[3], [2, 3, 4, 5], "p1's grant went with it");

        // A base that closes a loop cannot be ordered: the patch gives up.
        let mut draft = declared.draft();
        draft.set_bases(RoleId::new(0, 1).unwrap(), vec![3]);
        assert!(draft.finish().is_none());
    }

    #[test]
    fn the_row_arena_stores_each_row_once_and_reuses_freed_slots() {
        let mut arena = RowArena::new(2);
        let a = arena.intern(&[1, 0]).unwrap();
        let b = arena.intern(&[0, 1]).unwrap();
        assert_eq!(arena.intern(&[1, 0]), Some(a), "equal rows share a key");
        assert_eq!((arena.live(), arena.refs[a as usize]), (2, 2));
        arena.release(a);
        assert_eq!(arena.live(), 2, "one role still uses it");
        arena.release(a);
        assert_eq!(arena.live(), 1, "dropped with its last role");
        assert!(arena.row(b) == [0, 1]);
        let c = arena.intern(&[1, 1]).unwrap();
        assert_eq!(c, a, "the freed slot is reused");
        let d = arena.intern(&[1, 0]).unwrap();
        assert_ne!(d, c);

        // Clearing bit 64 makes `[0, 1]` equal to `[0, 0]`... and `[1, 1]`
        // equal to `[1, 0]`: merged, with their roles counted together.
        let (cleared, remap) = arena.compacted(2, &[64]);
        assert_eq!(cleared.live(), 2);
        assert_eq!(remap[c as usize], remap[d as usize]);
        assert_eq!(cleared.refs[remap[c as usize] as usize], 2);
        assert!(cleared.row(remap[b as usize]) == [0, 0]);
        // A wider arena keeps every row, padded.
        let (wide, _) = arena.compacted(3, &[]);
        assert_eq!(wide.live(), 3);
    }

    #[test]
    fn topological_order_puts_bases_first_and_finds_cycles() {
        // diamond: 3 extends 1 and 2, which extend 0.
        let bases = csr(&[&[], &[0], &[0], &[1, 2]]);
        let deps = bases.transpose(4);
        let order = topological_order(&bases, &deps, None).unwrap();
        let at = |r| order.iter().position(|&x| x == r).unwrap();
        assert!(at(0) < at(1) && at(1) < at(3) && at(2) < at(3));
        let part = topological_order(&bases, &deps, Some(&[1])).unwrap();
        assert_eq!(part, [1, 3]);
        let cycle = csr(&[&[1], &[0], &[]]);
        assert!(topological_order(&cycle, &cycle.transpose(3), None).is_none());
    }

    #[test]
    fn lists_and_names_refuse_to_outgrow_their_offsets() {
        let mut c = Csr::default();
        assert!(c.push(&[1, 2]).is_some());
        assert_eq!(c.get(0), [1, 2]);
        let rebuilt = c.rebuilt(3, &[(2, vec![7])]).unwrap();
        assert_eq!(
            (rebuilt.get(0), rebuilt.get(1), rebuilt.get(2)),
            (&[1, 2][..], &[][..], &[7][..])
        );
        let mut names = Names::default();
        names.push("ab").unwrap();
        names.push("").unwrap();
        names.push("cde").unwrap();
        assert_eq!(
            (names.get(0), names.get(1), names.get(2), names.get(3)),
            ("ab", "", "cde", "")
        );
        // An end past `u32::MAX` is refused, never saturated.
        assert_eq!(end_offset(7, 3), Some(10));
        assert_eq!(end_offset(u32::MAX as usize - 1, 1), Some(u32::MAX));
        assert_eq!(end_offset(u32::MAX as usize, 1), None);
        assert_eq!(end_offset(usize::MAX, 1), None);
    }

    /// The role index against a naive list of `(scope, name)`: built whole,
    /// then with roles added (environment and organization, into a scope
    /// the build did not have), before and after they are merged; with one
    /// organization long enough to be searched by halves.
    #[test]
    fn the_role_index_finds_what_a_naive_list_finds() {
        let mut names = Names::with_capacity(0);
        let mut scopes = Vec::new();
        let push = |names: &mut Names, scopes: &mut Vec<u32>, scope: u32, name: String| {
            names.push(&name).unwrap();
            scopes.push(scope);
        };
        for i in 0..5 {
            push(&mut names, &mut scopes, ENV, format!("env-{i}"));
        }
        // Scope 2: 3 roles sharing names with the environment and scope 0,
        // whose names are numbered first; scope 1: none; scope 0: 40 roles,
        // so that role order and name-number order differ.
        for name in ["env-1", "r-30", "own"] {
            push(&mut names, &mut scopes, 2, name.to_owned());
        }
        for j in 0..40 {
            push(&mut names, &mut scopes, 0, format!("r-{j}"));
        }
        let mut index = RoleIndex::build(&names, &scopes);
        let check = |index: &RoleIndex, names: &Names, scopes: &[u32]| {
            let mut probes: Vec<String> = (0..41).map(|j| format!("r-{j}")).collect();
            for name in ["env-0", "env-1", "env-4", "own", "new", "x"] {
                probes.push(name.to_owned());
            }
            for scope in [ENV, 0, 1, 2, 3, 4] {
                for name in probes.iter().map(String::as_str) {
                    let naive = (0..scopes.len())
                        .find(|&i| scopes.get(i) == Some(&scope) && names.get(i) == name);
                    assert_eq!(index.find(names, scope, name), naive, "{scope} {name}");
                    let env = (0..scopes.len())
                        .find(|&i| scopes.get(i) == Some(&ENV) && names.get(i) == name);
                    let resolved = if scope == ENV { env } else { naive.or(env) };
                    assert_eq!(index.resolve(names, scope, name), resolved);
                }
            }
        };
        check(&index, &names, &scopes);
        for (scope, name) in [(ENV, "new"), (0, "new"), (0, "own"), (1, "x"), (4, "r-0")] {
            push(&mut names, &mut scopes, scope, name.to_owned());
            let id = scopes.len() as u32 - 1;
            index.insert(&names, scope, id);
        }
        check(&index, &names, &scopes);
        index.settle();
        assert!(index.added.is_empty());
        check(&index, &names, &scopes);
        assert_eq!(index.entries.len(), 40 + 3 + 4);
    }
}
