//! Per-request checks: a [`Principal`] built once from token claims, and
//! [`Requirement`]s resolved once when a route declares them.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ahash::AHashSet;
use arc_swap::ArcSwapOption;
use smallvec::SmallVec;

use crate::bits;
use crate::ids::{PermissionId, RoleId};
use crate::snapshot::{LookupError, Snapshot};

/// Roles a principal is built with before duplicates are found with a set
/// rather than a scan.
const SCAN_ROLES: usize = 16;

/// Words kept inline in a principal: 1,024 permissions without a heap allocation.
const INLINE_WORDS: usize = 16;

/// Distinct rows a principal of a wide policy (more than [`INLINE_WORDS`]
/// words) reads in place before it copies their union: a check ORs one word
/// of each, so up to this many rows cost a few loads and no allocation.
const LAZY_ROWS: usize = 8;

/// The verified claims of an access token that authorization reads.
///
/// Deserializes straight from a Scalekit access token's payload (`oid`,
/// `roles`, `permissions`; every other claim is ignored). `org` is accepted
/// for `oid`, as in the CLI's `eval` queries.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct Claims {
    /// The organization of the request (`oid`).
    #[serde(default, rename = "oid", alias = "org")]
    pub organization: Option<String>,
    /// Role names, resolved in the organization first, then the environment.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Permissions claimed directly; undeclared ones are ignored.
    #[serde(default)]
    pub permissions: Vec<String>,
}

/// What one request may do: the union of its roles' rows and its declared
/// claimed permissions.
///
/// Built once per request ([`Snapshot::principal`]); every check after that
/// reads a few words and never fails. It keeps the snapshot it was built from
/// alive (one reference count), so a request sees one consistent policy even
/// if a newer one is published meanwhile.
#[derive(Clone)]
pub struct Principal {
    snapshot: Snapshot,
    lineage: u64,
    bits: Bits,
    roles: SmallVec<[RoleId; 4]>,
    unknown_roles: usize,
}

/// A principal's permissions: rows of its snapshot read in place, or a copy.
///
/// One distinct row (a single role, or roles whose rows are equal, as the
/// organization roles that only extend an environment role) is never copied.
/// In a narrow policy (at most [`INLINE_WORDS`] words) a union of several
/// rows is copied inline, so a check stays one load; in a wide one, up to
/// [`LAZY_ROWS`] distinct rows are read in place and OR-ed per checked word,
/// so no request of a few roles touches the heap.
#[derive(Clone, Debug)]
enum Bits {
    /// The OR of these rows (distinct keys) of the principal's snapshot.
    Rows(SmallVec<[u32; LAZY_ROWS]>),
    /// A copied union (plus claimed permissions), `width` words.
    Owned(SmallVec<[u64; INLINE_WORDS]>),
}

impl Snapshot {
    /// A principal from a token's organization and role names.
    ///
    /// Role names resolve in the organization first, then among environment
    /// roles; unknown names contribute nothing (see [`Snapshot::explain`]).
    /// Add claimed permissions with [`Principal::with_permissions`].
    ///
    /// # Complexity
    ///
    /// One hash lookup per role name plus one row OR per resolved role:
    /// independent of the number of roles in the policy and of their depth.
    ///
    /// # Examples
    ///
    /// ```
    /// # let snapshot = rolegraph::Policy::from_json(r#"{"permissions":[{"name":"a:b"}],
    /// #   "roles":[{"name":"viewer","permissions":["a:b"]}]}"#)?.compile()?;
    /// use rolegraph::Requirement;
    ///
    /// let read = Requirement::permission(&snapshot, "a:b")?;
    /// let principal = snapshot.principal(None, ["viewer", "nobody"]);
    /// assert!(principal.satisfies(&read));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn principal<I>(&self, organization: Option<&str>, roles: I) -> Principal
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let data = self.data();
        // An organization without roles of its own has an empty slice in
        // the role index: no need to read its record to skip it.
        let scope = data.scope_number(organization);
        let mut principal = self.empty_principal();
        let mut seen = None;
        for name in roles {
            match data.resolve_role(scope, name.as_ref()) {
                Some(role) => principal.add_role(role, &mut seen),
                None => principal.unknown_roles += 1,
            }
        }
        principal
    }

    /// A principal holding exactly these roles (from [`user_roles`](Self::user_roles)
    /// or [`roles_for_groups`](Self::roles_for_groups), say).
    ///
    /// # Errors
    ///
    /// [`LookupError::ForeignRole`] for an id this snapshot did not number:
    /// one from an unrelated compile, or from before a full recompile of the
    /// engine renumbered the roles (ids survive incremental patches). It
    /// would otherwise mean whichever role has its index here.
    ///
    /// # Examples
    ///
    /// ```
    /// # let policy = rolegraph::Policy::from_json(r#"{"permissions":[{"name":"a:b"}],
    /// #   "roles":[{"name":"viewer","permissions":["a:b"]}]}"#)?;
    /// let snapshot = policy.compile()?;
    /// let viewer = snapshot.role(None, "viewer").unwrap();
    /// assert!(snapshot.principal_from_roles(&[viewer])?.permissions() == ["a:b"]);
    /// let other = policy.compile()?;
    /// assert!(other.principal_from_roles(&[viewer]).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn principal_from_roles(&self, roles: &[RoleId]) -> Result<Principal, LookupError> {
        if let Some(foreign) = roles.iter().find(|r| self.data().index_of(**r).is_none()) {
            return Err(LookupError::ForeignRole {
                index: foreign.index(),
            });
        }
        Ok(self.principal_of(roles))
    }

    /// A principal holding these roles, all of this snapshot's numbering.
    pub(crate) fn principal_of(&self, roles: &[RoleId]) -> Principal {
        let mut principal = self.empty_principal();
        let mut seen = None;
        for &role in roles {
            principal.add_role(role, &mut seen);
        }
        principal
    }

    /// A principal holding the roles of these indexes of this snapshot's
    /// numbering, distinct (as the membership index keeps them): no
    /// duplicate to look for, so the rows are gathered in one pass and the
    /// principal written once. Indexes out of range are skipped.
    #[inline]
    pub(crate) fn principal_of_distinct(&self, roles: &[u32]) -> Principal {
        let data = self.data();
        let mut ids: SmallVec<[RoleId; 4]> = SmallVec::new();
        let mut keys: SmallVec<[u32; LAZY_ROWS]> = SmallVec::new();
        // The union of the rows past the first LAZY_ROWS, if any.
        let mut more: Option<SmallVec<[u64; INLINE_WORDS]>> = None;
        for &index in roles {
            let Some(id) = data.role_id(index as usize) else {
                continue;
            };
            ids.push(id);
            let key = data.row_key(index as usize);
            if keys.contains(&key) {
                continue;
            }
            if keys.len() < LAZY_ROWS {
                keys.push(key);
            } else {
                let words = more.get_or_insert_with(|| SmallVec::from_elem(0, data.width()));
                bits::or_into(words, data.row_by_key(key));
            }
        }
        // What `add_row` leaves: one row, or up to LAZY_ROWS of a wide
        // policy, read in place; else their union.
        let bits = match more {
            None if keys.len() <= 1 || data.width() > INLINE_WORDS => Bits::Rows(keys),
            more => {
                let mut words = more.unwrap_or_else(|| SmallVec::from_elem(0, data.width()));
                for &k in &keys {
                    bits::or_into(&mut words, data.row_by_key(k));
                }
                Bits::Owned(words)
            }
        };
        Principal {
            snapshot: self.clone(),
            lineage: data.lineage(),
            bits,
            roles: ids,
            unknown_roles: 0,
        }
    }

    /// A principal from a token's claims: [`principal`](Self::principal) plus
    /// the claimed permissions.
    #[must_use]
    pub fn principal_for(&self, claims: &Claims) -> Principal {
        self.principal(claims.organization.as_deref(), &claims.roles)
            .with_permissions(&claims.permissions)
    }

    fn empty_principal(&self) -> Principal {
        Principal {
            snapshot: self.clone(),
            lineage: self.data().lineage(),
            bits: Bits::Rows(SmallVec::new()),
            roles: SmallVec::new(),
            unknown_roles: 0,
        }
    }
}

impl Principal {
    /// Adds a role once: a scan of the few roles held so far, or past
    /// [`SCAN_ROLES`] a set (`seen`), so that a principal of many roles is
    /// built in linear time.
    #[inline]
    fn add_role(&mut self, role: RoleId, seen: &mut Option<AHashSet<RoleId>>) {
        let new = match seen {
            Some(set) => set.insert(role),
            None if self.roles.len() < SCAN_ROLES => !self.roles.contains(&role),
            None => {
                let mut set: AHashSet<RoleId> = self.roles.iter().copied().collect();
                let new = set.insert(role);
                *seen = Some(set);
                new
            }
        };
        if new {
            self.roles.push(role);
            if let Some(index) = self.snapshot.data().index_of(role) {
                self.add_row(self.snapshot.data().row_key(index));
            }
        }
    }

    /// ORs in the row stored under `key`: kept by key while it is the only
    /// distinct row (or, in a wide policy, one of at most [`LAZY_ROWS`]),
    /// else copied.
    #[inline]
    fn add_row(&mut self, key: u32) {
        let width = self.snapshot.width();
        match &mut self.bits {
            Bits::Rows(keys) if keys.contains(&key) => {}
            Bits::Rows(keys)
                if keys.is_empty() || (width > INLINE_WORDS && keys.len() < LAZY_ROWS) =>
            {
                keys.push(key);
            }
            Bits::Rows(_) => {
                self.materialize();
                self.add_row(key);
            }
            Bits::Owned(words) => {
                bits::or_into(words, self.snapshot.data().row_by_key(key));
            }
        }
    }

    /// Turns read-in-place rows into a copy of their union.
    fn materialize(&mut self) {
        if let Bits::Rows(keys) = &self.bits {
            let data = self.snapshot.data();
            let mut words: SmallVec<[u64; INLINE_WORDS]> = SmallVec::from_elem(0, data.width());
            for &k in keys {
                bits::or_into(&mut words, data.row_by_key(k));
            }
            self.bits = Bits::Owned(words);
        }
    }

    /// Adds claimed permissions; undeclared names are ignored.
    #[must_use]
    pub fn with_permissions<I>(mut self, permissions: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        for name in permissions {
            if let Some(id) = self.snapshot.permission_id(name.as_ref()) {
                if !self.has(id) {
                    self.materialize();
                    if let Bits::Owned(words) = &mut self.bits {
                        bits::set(words, id.index());
                    }
                }
            }
        }
        self
    }

    /// Whether the principal meets the requirement.
    ///
    /// A requirement resolved against a snapshot of another lineage (an
    /// unrelated compile of the same policy, say) is resolved again, by
    /// name, against the principal's snapshot (once per lineage, then
    /// cached): it answers as if it had been built on that snapshot.
    ///
    /// # Complexity
    ///
    /// Permission requirements: one word test per distinct word the
    /// requirement touches, whatever the size or depth of the hierarchy.
    /// Role requirements: one bit test per role of the principal (plus, once
    /// per compiled policy and role name, a walk of the graph to find the
    /// roles that extend the required one).
    #[must_use]
    #[inline]
    pub fn satisfies(&self, requirement: &Requirement) -> bool {
        if self.lineage != requirement.lineage {
            return requirement.rebound(self);
        }
        // The common case, one permission, without the recursive evaluator.
        match &requirement.node {
            Node::One { word, mask, .. } => self.word(*word) & mask != 0,
            node => node.eval(self),
        }
    }

    /// Whether the principal has this permission.
    #[must_use]
    #[inline]
    pub fn has(&self, permission: PermissionId) -> bool {
        let (word, mask) = bits::locate(permission.index());
        u32::try_from(word).is_ok_and(|w| self.word(w) & mask != 0)
    }

    /// The resolved roles, in the order first seen.
    #[must_use]
    pub fn roles(&self) -> &[RoleId] {
        &self.roles
    }

    /// How many role names did not resolve.
    #[must_use]
    pub fn unknown_roles(&self) -> usize {
        self.unknown_roles
    }

    /// The snapshot the principal was built from.
    #[must_use]
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Every permission the principal has, in name order.
    #[must_use]
    pub fn permissions(&self) -> Vec<&str> {
        let data = self.snapshot.data();
        let words: Vec<u64> = (0..data.width()).map(|w| self.word(w as u32)).collect();
        let mut out: Vec<&str> = bits::ones(&words)
            .filter_map(PermissionId::from_index)
            .filter_map(|id| self.snapshot.permission_name(id))
            .collect();
        out.sort_unstable();
        out
    }

    /// Word `word` of the principal's permissions (0 past the end).
    #[inline]
    fn word(&self, word: u32) -> u64 {
        let w = word as usize;
        match &self.bits {
            Bits::Owned(words) => words.get(w).copied().unwrap_or(0),
            Bits::Rows(keys) => {
                let data = self.snapshot.data();
                keys.iter().fold(0, |acc, &k| {
                    acc | data.row_by_key(k).get(w).copied().unwrap_or(0)
                })
            }
        }
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("roles", &self.roles)
            .field("unknown_roles", &self.unknown_roles)
            .field("permissions", &self.permissions())
            .finish()
    }
}

/// A route's requirement, resolved once against a snapshot so a typo fails at
/// start-up and a check does no name lookups.
///
/// Permission ids are stable across the snapshots of one lineage (an
/// [`Engine`](crate::Engine)'s successive snapshots, full recompiles
/// included), so a requirement keeps working across swaps; if its
/// permission is later deleted, it denies, and if declared again, it
/// allows again. Checked against a principal of another lineage (another
/// compile of the policy, `Engine::new` versus `Policy::compile`), a
/// requirement is resolved again by name for that lineage (once, then
/// cached), so it answers as if built there: never a silent deny.
/// Role requirements are resolved by name per compiled policy, once.
///
/// # Examples
///
/// Scalekit's documented admin check: role `admin`, or permission
/// `users.write`, or permission `roles.assign`.
///
/// ```
/// use rolegraph::{Policy, Requirement};
///
/// let mut policy = Policy::new();
/// policy.permission("users.write").permission("roles.assign").permission("x:y");
/// policy.role("admin").grant("x:y");
/// policy.role("owner").extends("admin");
/// policy.role("hr").grant("users.write");
/// policy.role("guest");
/// let snapshot = policy.compile()?;
///
/// let admin = Requirement::role(&snapshot, "admin")?
///     .or(Requirement::any_of(&snapshot, ["users.write", "roles.assign"])?);
/// assert!(snapshot.principal(None, ["owner"]).satisfies(&admin));
/// assert!(snapshot.principal(None, ["hr"]).satisfies(&admin));
/// assert!(!snapshot.principal(None, ["guest"]).satisfies(&admin));
/// assert!(Requirement::permission(&snapshot, "users.wirte").is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Requirement {
    lineage: u64,
    node: Node,
    /// The same requirement resolved by name in the lineage that last asked
    /// from another one.
    rebound: Arc<ArcSwapOption<Rebound>>,
}

/// A requirement resolved again for another lineage.
#[derive(Debug)]
struct Rebound {
    /// The lineage, or when a name did not resolve there, the compiled
    /// policy (a later one of the lineage may declare it).
    key: u64,
    per_core: bool,
    node: Node,
}

type Masks = SmallVec<[(u32, u64); 2]>;

#[derive(Clone, Debug)]
enum Node {
    One {
        word: u32,
        mask: u64,
        id: PermissionId,
        name: Arc<str>,
    },
    Any {
        masks: Masks,
        names: Arc<[Box<str>]>,
    },
    All {
        masks: Masks,
        names: Arc<[Box<str>]>,
    },
    Role(Arc<RoleNode>),
    Or(Vec<Node>),
    And(Vec<Node>),
    /// Rebound only: a permission not declared where the requirement was
    /// resolved again, which no principal there holds.
    Never,
}

/// How many compiled policies a role requirement keeps the role set of:
/// principals from the snapshots before and after a swap interleave.
const ROLE_SLOTS: usize = 4;

#[derive(Debug)]
struct RoleNode {
    name: Box<str>,
    /// The roles that are or extend `name`, for the compiled policies that
    /// last asked (a few, so interleaved snapshots do not evict each other).
    slots: [ArcSwapOption<RoleSet>; ROLE_SLOTS],
    next: AtomicUsize,
}

#[derive(Debug)]
struct RoleSet {
    core: u64,
    members: Arc<[u64]>,
}

impl RoleNode {
    fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            slots: Default::default(),
            next: AtomicUsize::new(0),
        }
    }

    fn matches(&self, p: &Principal) -> bool {
        let core = p.snapshot.data();
        let id = core.id();
        for slot in &self.slots {
            if let Some(set) = slot.load().as_ref() {
                if set.core == id {
                    return p.roles.iter().any(|r| bits::test(&set.members, r.index()));
                }
            }
        }
        // Once per compiled policy and name, whatever the requirement: the
        // compiled policy keeps the set.
        let members = core.roles_extending(&self.name);
        let held = p.roles.iter().any(|r| bits::test(&members, r.index()));
        let victim = self.next.fetch_add(1, Ordering::Relaxed) % ROLE_SLOTS;
        if let Some(slot) = self.slots.get(victim) {
            slot.store(Some(Arc::new(RoleSet { core: id, members })));
        }
        held
    }
}

impl Node {
    fn eval(&self, p: &Principal) -> bool {
        match self {
            Self::One { word, mask, .. } => p.word(*word) & mask != 0,
            Self::Any { masks, .. } => masks.iter().any(|(w, m)| p.word(*w) & m != 0),
            Self::All { masks, .. } => masks.iter().all(|(w, m)| p.word(*w) & m == *m),
            Self::Role(role) => role.matches(p),
            Self::Or(nodes) => nodes.iter().any(|n| n.eval(p)),
            Self::And(nodes) => nodes.iter().all(|n| n.eval(p)),
            Self::Never => false,
        }
    }

    /// This node resolved by name against `snapshot`, and whether every
    /// name resolved.
    fn rebind(&self, snapshot: &Snapshot) -> (Self, bool) {
        let perms = snapshot.data().perms();
        let masks = |names: &[Box<str>]| -> (Masks, usize) {
            let mut masks = Masks::new();
            let mut found = 0;
            for id in names.iter().filter_map(|n| perms.id(n)) {
                found += 1;
                add_mask(&mut masks, id);
            }
            masks.sort_unstable();
            (masks, found)
        };
        match self {
            Self::One { name, .. } => match perms.id(name) {
                Some(id) => {
                    let (word, mask) = bits::locate(id.index());
                    let node = Self::One {
                        word: word as u32,
                        mask,
                        id,
                        name: Arc::clone(name),
                    };
                    (node, true)
                }
                None => (Self::Never, false),
            },
            Self::Any { names, .. } => {
                let (masks, found) = masks(names);
                let node = Self::Any {
                    masks,
                    names: Arc::clone(names),
                };
                (node, found == names.len())
            }
            Self::All { names, .. } => {
                let (masks, found) = masks(names);
                if found < names.len() {
                    return (Self::Never, false);
                }
                let node = Self::All {
                    masks,
                    names: Arc::clone(names),
                };
                (node, true)
            }
            // Resolved by name per compiled policy already.
            Self::Role(role) => (Self::Role(Arc::clone(role)), true),
            Self::Or(nodes) | Self::And(nodes) => {
                let mut complete = true;
                let rebound = nodes
                    .iter()
                    .map(|n| {
                        let (node, all) = n.rebind(snapshot);
                        complete &= all;
                        node
                    })
                    .collect();
                let node = if matches!(self, Self::Or(_)) {
                    Self::Or(rebound)
                } else {
                    Self::And(rebound)
                };
                (node, complete)
            }
            Self::Never => (Self::Never, false),
        }
    }

    fn visit<'a>(&'a self, perms: &mut Vec<&'a str>, roles: &mut Vec<&'a str>) {
        match self {
            Self::One { name, .. } => perms.push(name),
            Self::Any { names, .. } | Self::All { names, .. } => {
                perms.extend(names.iter().map(|n| &**n));
            }
            Self::Role(role) => roles.push(&role.name),
            Self::Or(nodes) | Self::And(nodes) => {
                for n in nodes {
                    n.visit(perms, roles);
                }
            }
            Self::Never => {}
        }
    }
}

/// `any of `a`, `b``: how a requirement (and an HTTP route's rule) names
/// a list of permissions.
pub(crate) fn fmt_list(f: &mut fmt::Formatter<'_>, what: &str, names: &[Box<str>]) -> fmt::Result {
    write!(f, "{what} of ")?;
    for (i, n) in names.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "`{n}`")?;
    }
    Ok(())
}

/// `(a) or (b)`: how a requirement (and an HTTP route's rule) names a
/// combination.
pub(crate) fn fmt_joined<T: fmt::Display>(
    f: &mut fmt::Formatter<'_>,
    sep: &str,
    parts: &[T],
) -> fmt::Result {
    for (i, n) in parts.iter().enumerate() {
        if i > 0 {
            f.write_str(sep)?;
        }
        write!(f, "({n})")?;
    }
    Ok(())
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (list, join) = (fmt_list, fmt_joined::<Node>);
        match self {
            Self::One { name, .. } => write!(f, "`{name}`"),
            Self::Any { names, .. } => list(f, "any", names),
            Self::All { names, .. } => list(f, "all", names),
            Self::Role(role) => write!(f, "role `{}` or a role extending it", role.name),
            Self::Or(nodes) => join(f, " or ", nodes),
            Self::And(nodes) => join(f, " and ", nodes),
            Self::Never => f.write_str("nothing"),
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.node.fmt(f)
    }
}

fn add_mask(masks: &mut Masks, id: PermissionId) {
    let (word, mask) = bits::locate(id.index());
    let word = word as u32;
    match masks.iter_mut().find(|(w, _)| *w == word) {
        Some((_, m)) => *m |= mask,
        None => masks.push((word, mask)),
    }
}

fn masks_for(snapshot: &Snapshot, names: &[Box<str>]) -> Result<Masks, LookupError> {
    if names.is_empty() {
        return Err(LookupError::EmptyRequirement);
    }
    let mut masks = Masks::new();
    for name in names {
        let id = snapshot
            .permission_id(name)
            .ok_or_else(|| LookupError::UnknownPermission {
                name: name.to_string(),
            })?;
        add_mask(&mut masks, id);
    }
    masks.sort_unstable();
    Ok(masks)
}

impl Requirement {
    /// One permission.
    ///
    /// # Errors
    ///
    /// [`LookupError::UnknownPermission`] when it is not declared.
    pub fn permission(snapshot: &Snapshot, name: &str) -> Result<Self, LookupError> {
        let id = snapshot
            .permission_id(name)
            .ok_or_else(|| LookupError::UnknownPermission {
                name: name.to_owned(),
            })?;
        let (word, mask) = bits::locate(id.index());
        Ok(Self::new(
            snapshot,
            Node::One {
                word: word as u32,
                mask,
                id,
                name: name.into(),
            },
        ))
    }

    /// At least one of the permissions.
    ///
    /// # Errors
    ///
    /// [`LookupError::UnknownPermission`] for the first undeclared name,
    /// [`LookupError::EmptyRequirement`] for an empty list.
    pub fn any_of<I>(snapshot: &Snapshot, names: I) -> Result<Self, LookupError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let names: Arc<[Box<str>]> = names.into_iter().map(|n| n.as_ref().into()).collect();
        let masks = masks_for(snapshot, &names)?;
        Ok(Self::new(snapshot, Node::Any { masks, names }))
    }

    /// Every one of the permissions.
    ///
    /// # Errors
    ///
    /// As [`any_of`](Self::any_of).
    pub fn all_of<I>(snapshot: &Snapshot, names: I) -> Result<Self, LookupError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let names: Arc<[Box<str>]> = names.into_iter().map(|n| n.as_ref().into()).collect();
        let masks = masks_for(snapshot, &names)?;
        Ok(Self::new(snapshot, Node::All { masks, names }))
    }

    /// The role `name` (in any scope) or a role that extends it, directly or not.
    ///
    /// # Errors
    ///
    /// [`LookupError::UnknownRole`] when no role has that name.
    pub fn role(snapshot: &Snapshot, name: &str) -> Result<Self, LookupError> {
        let members = snapshot.data().roles_extending(name);
        if members.iter().all(|w| *w == 0) {
            return Err(LookupError::UnknownRole {
                name: name.to_owned(),
                organization: None,
            });
        }
        let node = RoleNode::new(name);
        if let Some(slot) = node.slots.first() {
            slot.store(Some(Arc::new(RoleSet {
                core: snapshot.data().id(),
                members,
            })));
        }
        Ok(Self::new(snapshot, Node::Role(Arc::new(node))))
    }

    /// Met when either requirement is met.
    #[must_use]
    pub fn or(self, other: Self) -> Self {
        let lineage = if self.lineage == other.lineage {
            self.lineage
        } else {
            0
        };
        let node = match (self.node, other.node) {
            (Node::Or(mut a), Node::Or(b)) => {
                a.extend(b);
                Node::Or(a)
            }
            (Node::Or(mut a), b) => {
                a.push(b);
                Node::Or(a)
            }
            (a, b) => Node::Or(vec![a, b]),
        };
        Self::combined(lineage, node)
    }

    /// Met when both requirements are met.
    #[must_use]
    pub fn and(self, other: Self) -> Self {
        let lineage = if self.lineage == other.lineage {
            self.lineage
        } else {
            0
        };
        let node = match (self.node, other.node) {
            (Node::And(mut a), Node::And(b)) => {
                a.extend(b);
                Node::And(a)
            }
            (Node::And(mut a), b) => {
                a.push(b);
                Node::And(a)
            }
            (a, b) => Node::And(vec![a, b]),
        };
        Self::combined(lineage, node)
    }

    fn new(snapshot: &Snapshot, node: Node) -> Self {
        Self::combined(snapshot.data().lineage(), node)
    }

    fn combined(lineage: u64, node: Node) -> Self {
        Self {
            lineage,
            node,
            rebound: Arc::default(),
        }
    }

    /// [`Principal::satisfies`] for a principal of another lineage than the
    /// one the requirement was resolved in: resolved again by name.
    #[cold]
    #[inline(never)]
    fn rebound(&self, p: &Principal) -> bool {
        let core = p.snapshot.data();
        if let Some(r) = self.rebound.load().as_ref() {
            let key = if r.per_core {
                core.id()
            } else {
                core.lineage()
            };
            if r.key == key {
                return r.node.eval(p);
            }
        }
        let (node, complete) = self.node.rebind(&p.snapshot);
        let held = node.eval(p);
        self.rebound.store(Some(Arc::new(Rebound {
            key: if complete { core.lineage() } else { core.id() },
            per_core: !complete,
            node,
        })));
        held
    }

    /// The permission names and role names the requirement mentions, in order.
    pub(crate) fn names(&self) -> (Vec<&str>, Vec<&str>) {
        let (mut perms, mut roles) = (Vec::new(), Vec::new());
        self.node.visit(&mut perms, &mut roles);
        (perms, roles)
    }

    /// The permission, when the requirement is a single one.
    #[must_use]
    pub fn as_permission(&self) -> Option<PermissionId> {
        match &self.node {
            Node::One { id, .. } => Some(*id),
            _ => None,
        }
    }
}
