//! Shared by the fuzz targets: arbitrary policies built from small name
//! pools (so that references usually hit, and cycles, self loops, dangling
//! names and deep chains are common), and a naive oracle of DESIGN.md's
//! semantics to compare the compiler with.

use std::collections::{BTreeSet, HashMap, VecDeque};

use arbitrary::Arbitrary;
use rolegraph::{GroupRoles, Organization, Permission, Policy, Role};

/// Role names `r0` … `r11`.
pub const ROLE_POOL: usize = 12;
/// Permission names `doc:0`, `task:0`, `user:0`, `doc:1`, … (12 of them).
pub const PERM_POOL: usize = 12;
/// Organization ids `org_0` … `org_2`.
pub const ORG_POOL: usize = 3;
/// The longest generated chain, in roles: deep enough to matter, short
/// enough for the quadratic oracle (`tests/` covers 100,000-role chains).
pub const MAX_CHAIN: usize = 300;

/// Permission `i` of the pool.
pub fn perm_name(i: u8) -> String {
    let i = usize::from(i) % PERM_POOL;
    format!("{}:{}", ["doc", "task", "user"][i % 3], i / 3)
}

/// Role `i` of the pool.
pub fn role_name(i: u8) -> String {
    format!("r{}", usize::from(i) % ROLE_POOL)
}

/// Organization `i` of the pool.
pub fn org_id(i: u8) -> String {
    format!("org_{}", usize::from(i) % ORG_POOL)
}

/// A name: usually from a pool, sometimes arbitrary text (often invalid).
#[derive(Arbitrary, Debug, Clone)]
pub enum Name {
    /// From the pool.
    Pool(u8),
    /// Anything.
    Raw(String),
}

impl Name {
    /// As a role name.
    pub fn role(&self) -> String {
        match self {
            Self::Pool(i) => role_name(*i),
            Self::Raw(s) => s.clone(),
        }
    }

    /// As a permission name.
    pub fn perm(&self) -> String {
        match self {
            Self::Pool(i) => perm_name(*i),
            Self::Raw(s) => s.clone(),
        }
    }

    /// As an organization id.
    pub fn org(&self) -> String {
        match self {
            Self::Pool(i) => org_id(*i),
            Self::Raw(s) => s.clone(),
        }
    }
}

/// A direct grant.
#[derive(Arbitrary, Debug, Clone)]
pub enum Grant {
    /// A pool permission.
    Perm(u8),
    /// A wildcard: `doc:*`, `task:*`, `user:*`, `d*`, `doc:1*`, `nope:*`.
    Prefix(u8),
    /// `*`.
    All,
    /// Anything.
    Raw(String),
}

impl Grant {
    /// As written in a policy.
    pub fn text(&self) -> String {
        match self {
            Self::Perm(i) => perm_name(*i),
            Self::Prefix(i) => {
                ["doc:*", "task:*", "user:*", "d*", "doc:1*", "nope:*"][usize::from(*i) % 6].into()
            }
            Self::All => "*".into(),
            Self::Raw(s) => s.clone(),
        }
    }
}

/// A role.
#[derive(Arbitrary, Debug, Clone)]
pub struct ARole {
    /// Its name.
    pub name: Name,
    /// Direct grants.
    pub grants: Vec<Grant>,
    /// Base roles.
    pub extends: Vec<Name>,
}

impl ARole {
    /// As a policy role.
    pub fn to_role(&self) -> Role {
        Role {
            name: self.name.role(),
            permissions: self.grants.iter().map(Grant::text).collect(),
            extends: self.extends.iter().map(Name::role).collect(),
            ..Role::default()
        }
    }
}

/// An organization.
#[derive(Arbitrary, Debug, Clone)]
pub struct AOrg {
    /// Its id.
    pub id: Name,
    /// Its default member role.
    pub default_member: Option<Name>,
    /// Its roles.
    pub roles: Vec<ARole>,
    /// Directory group (pool of 3) → roles.
    pub groups: Vec<(u8, Vec<Name>)>,
}

/// A chain `c0` ← `c1` ← … (each extending the previous), optionally closed
/// into one big cycle, in the environment or in one organization.
#[derive(Arbitrary, Debug, Clone)]
pub struct Chain {
    /// Roles in the chain (modulo [`MAX_CHAIN`] + 1).
    pub len: u16,
    /// `c0` extends the last role: a cycle through every role of the chain.
    pub close: bool,
    /// The organization (an index into the generated ones), else the environment.
    pub org: Option<u8>,
    /// `c0`'s grant.
    pub grant: Grant,
    /// `c0` also extends this pool role.
    pub root_extends: Option<u8>,
}

/// An arbitrary policy structure.
#[derive(Arbitrary, Debug, Clone)]
pub struct APolicy {
    /// Declared permissions.
    pub perms: Vec<Name>,
    /// Environment roles.
    pub roles: Vec<ARole>,
    /// Organizations.
    pub orgs: Vec<AOrg>,
    /// A deep chain, maybe.
    pub chain: Option<Chain>,
    /// `default_creator_role`.
    pub default_creator: Option<Name>,
    /// `default_member_role`.
    pub default_member: Option<Name>,
}

impl APolicy {
    /// As a policy.
    pub fn to_policy(&self) -> Policy {
        let mut policy = Policy {
            permissions: self
                .perms
                .iter()
                .map(|p| Permission {
                    name: p.perm(),
                    description: None,
                })
                .collect(),
            roles: self.roles.iter().map(ARole::to_role).collect(),
            default_creator_role: self.default_creator.as_ref().map(Name::role),
            default_member_role: self.default_member.as_ref().map(Name::role),
            organizations: self
                .orgs
                .iter()
                .map(|o| Organization {
                    id: o.id.org(),
                    default_member_role: o.default_member.as_ref().map(Name::role),
                    roles: o.roles.iter().map(ARole::to_role).collect(),
                    group_roles: o
                        .groups
                        .iter()
                        .map(|(g, roles)| GroupRoles {
                            group: ["Eng", "Ops", "dirgroup_1"][usize::from(*g) % 3].into(),
                            roles: roles.iter().map(Name::role).collect(),
                        })
                        .collect(),
                })
                .collect(),
        };
        if let Some(chain) = &self.chain {
            let len = usize::from(chain.len) % (MAX_CHAIN + 1);
            let roles: Vec<Role> = (0..len)
                .map(|i| {
                    let mut role = Role::named(format!("c{i}"));
                    if i == 0 {
                        role.permissions.push(chain.grant.text());
                        if chain.close && len > 0 {
                            role.extends.push(format!("c{}", len - 1));
                        }
                        if let Some(base) = chain.root_extends {
                            role.extends.push(role_name(base));
                        }
                    } else {
                        role.extends.push(format!("c{}", i - 1));
                    }
                    role
                })
                .collect();
            let n = policy.organizations.len();
            match chain.org {
                Some(o) if n > 0 => policy.organizations[usize::from(o) % n].roles.extend(roles),
                _ => policy.roles.extend(roles),
            }
        }
        policy
    }
}

// ------------------------------------------------------------------ oracle

const MAX_NAME_LEN: usize = 128;

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-')
}

/// DESIGN.md: 1–128 characters from `A–Z a–z 0–9 _ . : -`.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_NAME_LEN && s.bytes().all(is_name_byte)
}

/// The role definitions a policy keeps (the first of duplicates, valid names,
/// no shadowing), their inheritance edges, and every validity problem found
/// by rereading DESIGN.md's rules directly.
#[derive(Debug)]
pub struct Naive<'a> {
    /// Scope 0 is the environment; scope `i + 1` is kept organization `i`.
    pub scopes: Vec<Option<&'a str>>,
    /// Kept roles: (scope, definition).
    pub roles: Vec<(usize, &'a Role)>,
    /// `(scope, name)` → index into `roles`.
    pub index: HashMap<(usize, &'a str), usize>,
    /// Kept permission names.
    pub perms: BTreeSet<&'a str>,
    /// Role → the roles it extends (deduplicated).
    pub edges: Vec<Vec<usize>>,
    /// What breaks a validity rule, in words (for failure messages).
    pub problems: Vec<String>,
}

impl<'a> Naive<'a> {
    /// Reads `policy`.
    pub fn new(policy: &'a Policy) -> Self {
        let mut problems = Vec::new();
        let mut perms = BTreeSet::new();
        for p in &policy.permissions {
            if !valid_name(&p.name) {
                problems.push(format!("invalid permission {:?}", p.name));
            } else if !perms.insert(p.name.as_str()) {
                problems.push(format!("duplicate permission {:?}", p.name));
            }
        }
        let mut scopes: Vec<Option<&str>> = vec![None];
        let mut orgs: Vec<&Organization> = Vec::new();
        for o in &policy.organizations {
            if o.id.is_empty() {
                problems.push("empty organization id".into());
            } else if scopes.contains(&Some(o.id.as_str())) {
                problems.push(format!("duplicate organization {:?}", o.id));
            } else {
                scopes.push(Some(o.id.as_str()));
                orgs.push(o);
            }
        }
        let mut roles: Vec<(usize, &Role)> = Vec::new();
        let mut index: HashMap<(usize, &str), usize> = HashMap::new();
        let scoped = std::iter::once((0, &policy.roles))
            .chain(orgs.iter().enumerate().map(|(i, o)| (i + 1, &o.roles)));
        for (scope, defs) in scoped {
            for r in defs {
                if !valid_name(&r.name) {
                    problems.push(format!("invalid role name {:?}", r.name));
                } else if index.contains_key(&(scope, r.name.as_str())) {
                    problems.push(format!("duplicate role {:?}", r.name));
                } else if scope != 0 && index.contains_key(&(0, r.name.as_str())) {
                    problems.push(format!("organization role {:?} shadows", r.name));
                } else {
                    index.insert((scope, r.name.as_str()), roles.len());
                    roles.push((scope, r));
                }
            }
        }
        let resolve = |scope: usize, name: &str| -> Option<usize> {
            let own = if scope == 0 {
                None
            } else {
                index.get(&(scope, name)).copied()
            };
            own.or_else(|| index.get(&(0, name)).copied())
        };
        let mut edges = Vec::with_capacity(roles.len());
        for (scope, r) in &roles {
            let mut out: Vec<usize> = Vec::new();
            for base in &r.extends {
                match resolve(*scope, base) {
                    Some(b) => out.push(b),
                    None => problems.push(format!("{:?} extends missing {base:?}", r.name)),
                }
            }
            out.sort_unstable();
            out.dedup();
            edges.push(out);
            for g in &r.permissions {
                if let Some(prefix) = g.strip_suffix('*') {
                    let ok = prefix.is_empty()
                        || (prefix.len() < MAX_NAME_LEN && prefix.bytes().all(is_name_byte));
                    if !ok {
                        problems.push(format!("invalid wildcard {g:?}"));
                    }
                } else if !valid_name(g) {
                    problems.push(format!("invalid grant {g:?}"));
                } else if !perms.contains(g.as_str()) {
                    problems.push(format!("undeclared grant {g:?}"));
                }
            }
        }
        let mut default = |scope: usize, name: &Option<String>, what: &str| {
            if let Some(name) = name {
                if resolve(scope, name).is_none() {
                    problems.push(format!("{what} {name:?} missing"));
                }
            }
        };
        // Environment defaults resolve among environment roles only.
        default(0, &policy.default_creator_role, "default creator");
        default(0, &policy.default_member_role, "default member");
        for (i, o) in orgs.iter().enumerate() {
            default(i + 1, &o.default_member_role, "org default member");
            for g in &o.group_roles {
                for r in &g.roles {
                    default(i + 1, &Some(r.clone()), "group role");
                }
            }
        }
        let mut naive = Self {
            scopes,
            roles,
            index,
            perms,
            edges,
            problems,
        };
        for v in naive.on_cycle() {
            let (scope, r) = naive.roles[v];
            naive
                .problems
                .push(format!("{:?} in scope {scope} is on a cycle", r.name));
        }
        naive
    }

    /// Whether every validity rule holds.
    pub fn valid(&self) -> bool {
        self.problems.is_empty()
    }

    /// The scope number of an organization id (`None`: the environment).
    pub fn scope(&self, organization: Option<&str>) -> Option<usize> {
        self.scopes.iter().position(|s| *s == organization)
    }

    /// Every role reachable from `from` (itself included) through `extends`.
    pub fn reach(&self, from: usize) -> Vec<bool> {
        let mut seen = vec![false; self.roles.len()];
        seen[from] = true;
        let mut queue = VecDeque::from([from]);
        while let Some(v) = queue.pop_front() {
            for &w in &self.edges[v] {
                if !seen[w] {
                    seen[w] = true;
                    queue.push_back(w);
                }
            }
        }
        seen
    }

    /// Whether `to` is reachable from `from` in one or more steps.
    pub fn reaches(&self, from: usize, to: usize) -> bool {
        self.edges[from].iter().any(|&w| self.reach(w)[to])
    }

    /// Every role that lies on a cycle (reaches itself in one or more steps).
    pub fn on_cycle(&self) -> Vec<usize> {
        (0..self.roles.len())
            .filter(|&v| self.reaches(v, v))
            .collect()
    }

    /// The permissions `role` has: every grant of every role it reaches,
    /// wildcards expanded over the declared permissions.
    pub fn effective(&self, role: usize) -> BTreeSet<&'a str> {
        let mut out = BTreeSet::new();
        for (v, reached) in self.reach(role).into_iter().enumerate() {
            if !reached {
                continue;
            }
            for g in &self.roles[v].1.permissions {
                match g.strip_suffix('*') {
                    Some(prefix) => {
                        out.extend(self.perms.iter().filter(|p| p.starts_with(prefix)));
                    }
                    None => {
                        if let Some(p) = self.perms.get(g.as_str()) {
                            out.insert(*p);
                        }
                    }
                }
            }
        }
        out
    }

    /// The longest chain from `role` counted in roles (acyclic graphs only).
    pub fn depth(&self) -> Vec<usize> {
        // Memoized, iteratively, in an order where bases come first.
        let n = self.roles.len();
        let mut depth = vec![0usize; n];
        let mut pending: Vec<usize> = self.edges.iter().map(Vec::len).collect();
        let mut dependents = vec![Vec::new(); n];
        for (v, bases) in self.edges.iter().enumerate() {
            for &b in bases {
                dependents[b].push(v);
            }
        }
        let mut queue: VecDeque<usize> = (0..n).filter(|&v| pending[v] == 0).collect();
        while let Some(v) = queue.pop_front() {
            depth[v] = 1 + self.edges[v].iter().map(|&b| depth[b]).max().unwrap_or(0);
            for &d in &dependents[v] {
                pending[d] -= 1;
                if pending[d] == 0 {
                    queue.push_back(d);
                }
            }
        }
        depth
    }
}
