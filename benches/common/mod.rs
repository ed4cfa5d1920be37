//! Shared, deterministic workloads for the benches and `examples/memory.rs`.
//!
//! One shape everywhere, so that numbers from different benches (and from
//! the peer engines, later) describe the same policy: a random forest of
//! environment roles, each extending at most one earlier role, chains at
//! most [`MAX_DEPTH`] roles deep, each role granting 1–3 of
//! [`PERMISSIONS`] permissions directly.
//!
//! The generator is a hand-written SplitMix64 rather than `rand`'s `StdRng`,
//! whose output may change between `rand` releases: a benchmark id must mean
//! the same workload for as long as its numbers are compared.

// Each bench target includes this module and uses a different part of it.
#![allow(dead_code)]

use rolegraph::{Permission, Policy, Role};

/// Declared permissions in every workload.
pub const PERMISSIONS: usize = 1_000;

/// The longest inheritance chain, counted in roles (a root has depth 1).
pub const MAX_DEPTH: u32 = 16;

/// Roles held by the principal of the check benches (a token's `roles`).
pub const PRINCIPAL_ROLES: usize = 3;

/// Seed of every workload; change it and old numbers stop being comparable.
const SEED: u64 = 0x726f_6c65_6772_6170; // "rolegrap"

/// One in this many roles starts a new tree instead of extending one.
const ROOT_ONE_IN: u64 = 16;

const ACTIONS: [&str; 10] = [
    "read", "create", "update", "delete", "list", "assign", "approve", "export", "import", "admin",
];

/// SplitMix64 (Steele, Lea & Flood 2014): tiny, fast, and fixed forever.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`); the modulo bias is irrelevant here.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// The name of permission `i`: `r000:read`, `r000:create`, … `r099:admin`.
pub fn permission_name(i: usize) -> String {
    format!("r{:03}:{}", i / ACTIONS.len(), ACTIONS[i % ACTIONS.len()])
}

/// The name of role `i`.
pub fn role_name(i: usize) -> String {
    format!("role-{i}")
}

/// A generated policy plus what the check benches need to query it.
#[derive(Debug, Clone)]
pub struct Workload {
    /// The policy, already parsed (built in code; no JSON involved).
    pub policy: Policy,
    /// Each role's depth, counted in roles (a root has depth 1).
    pub depth: Vec<u32>,
    /// Each role's base, `None` for a root.
    pub parent: Vec<Option<usize>>,
    /// Indexes of the roles the principal holds: [`PRINCIPAL_ROLES`] of the
    /// deepest roles, so that a check exercises the longest inheritance.
    pub principal_roles: Vec<usize>,
    /// The permission checked: a direct grant of the root of the first
    /// principal role's chain, so that the principal holds it by inheritance
    /// from the far end of that chain and the answer is allow.
    pub checked_permission: String,
}

impl Workload {
    /// The workload with `roles` roles and [`PERMISSIONS`] permissions.
    pub fn new(roles: usize) -> Self {
        assert!(roles >= PRINCIPAL_ROLES, "too few roles for a principal");
        let mut rng = SplitMix64::new(SEED ^ roles as u64);
        let permissions: Vec<Permission> = (0..PERMISSIONS)
            .map(|i| Permission {
                name: permission_name(i),
                description: None,
            })
            .collect();

        // Public fields rather than `Policy::role`, whose lookup by name is
        // linear: building 100,000 roles with it would be quadratic.
        let mut depth: Vec<u32> = Vec::with_capacity(roles);
        let mut parent: Vec<Option<usize>> = Vec::with_capacity(roles);
        let mut defs: Vec<Role> = Vec::with_capacity(roles);
        for i in 0..roles {
            let base = if i == 0 || rng.next_u64().is_multiple_of(ROOT_ONE_IN) {
                None
            } else {
                // A few tries to find a base with room below it; else a root.
                (0..4).map(|_| rng.below(i)).find(|&j| depth[j] < MAX_DEPTH)
            };
            depth.push(base.map_or(1, |j| depth[j] + 1));
            parent.push(base);

            let mut role = Role::named(role_name(i));
            for _ in 0..1 + rng.below(3) {
                role.grant(permission_name(rng.below(PERMISSIONS)));
            }
            if let Some(j) = base {
                role.extends(role_name(j));
            }
            defs.push(role);
        }

        // The deepest roles, ties broken by index for determinism.
        let mut by_depth: Vec<usize> = (0..roles).collect();
        by_depth.sort_by_key(|&i| (std::cmp::Reverse(depth[i]), i));
        let principal_roles: Vec<usize> = by_depth[..PRINCIPAL_ROLES].to_vec();

        let mut root = principal_roles[0];
        while let Some(up) = parent[root] {
            root = up;
        }
        let checked_permission = defs[root].permissions[0].clone();

        Self {
            policy: Policy {
                permissions,
                roles: defs,
                ..Policy::default()
            },
            depth,
            parent,
            principal_roles,
            checked_permission,
        }
    }

    /// The names of the principal's roles, as a token carries them.
    pub fn principal_role_names(&self) -> Vec<String> {
        self.principal_roles.iter().map(|&i| role_name(i)).collect()
    }

    /// The longest chain actually generated, counted in roles.
    pub fn max_depth(&self) -> u32 {
        self.depth.iter().copied().max().unwrap_or(0)
    }
}

/// Permissions of the multi-tenant workload ([`OrgRoles`]): a wide policy,
/// so that a principal's bitset (79 words) does not fit a small inline buffer.
pub const ORG_PERMISSIONS: usize = 5_000;

/// Environment roles of the multi-tenant workload.
pub const ORG_ENV_ROLES: usize = 20;

/// Roles each organization defines in the multi-tenant workload.
pub const ROLES_PER_ORG: usize = 10;

/// The id of organization `i`: `org_000042`.
pub fn org_id(i: usize) -> String {
    format!("org_{i:06}")
}

/// The name of environment role `i` of the multi-tenant workload.
pub fn env_role_name(i: usize) -> String {
    format!("env-{i}")
}

/// The name of the `j`-th role of every organization.
pub fn org_role_name(j: usize) -> String {
    format!("org-role-{j}")
}

/// The multi-tenant workload of issue 10: `orgs` organizations, each with
/// [`ROLES_PER_ORG`] roles that only extend one of [`ORG_ENV_ROLES`]
/// environment roles, over [`ORG_PERMISSIONS`] permissions. Environment role
/// `e` grants 50 permissions (a contiguous block) and extends role `e - 1`
/// for every odd `e`. Organization role `j` of organization `o` extends
/// environment role `(o + j) % ORG_ENV_ROLES`, so every org role's row equals
/// one environment role's row: 100,000 organizations give 1,000,020 roles and
/// only [`ORG_ENV_ROLES`] distinct rows.
#[derive(Debug, Clone)]
pub struct OrgRoles {
    /// The policy, built in code.
    pub policy: Policy,
    /// Organizations in it.
    pub orgs: usize,
}

impl OrgRoles {
    /// The workload with `orgs` organizations (1,000,000 roles at 100,000).
    pub fn new(orgs: usize) -> Self {
        let permissions: Vec<Permission> = (0..ORG_PERMISSIONS)
            .map(|i| Permission {
                name: permission_name(i),
                description: None,
            })
            .collect();
        let block = ORG_PERMISSIONS / 100;
        let roles: Vec<Role> = (0..ORG_ENV_ROLES)
            .map(|e| {
                let mut role = Role::named(env_role_name(e));
                for p in e * block..(e + 1) * block {
                    role.grant(permission_name(p));
                }
                if e % 2 == 1 {
                    role.extends(env_role_name(e - 1));
                }
                role
            })
            .collect();
        let organizations = (0..orgs)
            .map(|o| rolegraph::Organization {
                id: org_id(o),
                roles: (0..ROLES_PER_ORG)
                    .map(|j| {
                        let mut role = Role::named(org_role_name(j));
                        role.extends(env_role_name((o + j) % ORG_ENV_ROLES));
                        role
                    })
                    .collect(),
                ..rolegraph::Organization::default()
            })
            .collect();
        Self {
            policy: Policy {
                permissions,
                roles,
                organizations,
                ..Policy::default()
            },
            orgs,
        }
    }

    /// A token's three organization role names for request `i` (rotating).
    pub fn token_roles(i: usize) -> [String; 3] {
        [0, 3, 7].map(|j| org_role_name((j + i) % ROLES_PER_ORG))
    }
}
