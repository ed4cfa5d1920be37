//! The workloads, described once in engine-neutral terms: permissions as
//! `(object, action)` pairs, roles with direct grants and base roles, users
//! holding roles, and queries. Every engine is built from the same [`Spec`]
//! and asked the same [`Query`]s; [`Spec::decide`] is the reference answer
//! (plain reachability, so it is right by construction).

use std::collections::VecDeque;

/// The deterministic generator of `benches/common`, so that a workload means
/// the same thing in every run and every crate.
pub use crate::common::SplitMix64;

/// Seed of the random workloads (W3 / W6); changing it changes the numbers.
const SEED: u64 = 0x7065_6572_7332_3032; // "peers2025"

/// Roles in the W3 / W6 policy.
pub const DIAMOND_ROLES: usize = 1_000;

/// Base roles each W3 role extends (fewer for the first few).
pub const DIAMOND_FAN_IN: usize = 4;

/// A permission: `object:action` for rolegraph and the naive baseline,
/// `(object, action)` for casbin and Cedar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Perm {
    /// The object (`data3`), Cedar's `Data` resource.
    pub object: String,
    /// The action (`read`), Cedar's `Action`.
    pub action: String,
}

impl Perm {
    /// `object:action`, rolegraph's permission name.
    pub fn name(&self) -> String {
        format!("{}:{}", self.object, self.action)
    }
}

/// A role: its direct grants and the roles it extends (indexes into [`Spec`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleDef {
    /// The role's name.
    pub name: String,
    /// Indexes into [`Spec::permissions`].
    pub grants: Vec<usize>,
    /// Indexes into [`Spec::roles`]: the roles this one extends.
    pub bases: Vec<usize>,
}

/// A user and the roles it holds (casbin's `g` lines, Cedar's `User` parents).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserDef {
    /// The user's name.
    pub name: String,
    /// Indexes into [`Spec::roles`].
    pub roles: Vec<usize>,
}

/// Who asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A user the engine knows (casbin's and Cedar's native shape); rolegraph
    /// and the naive baseline are handed that user's token, i.e. its roles.
    User(usize),
    /// A token carrying these roles.
    Token(Vec<usize>),
}

/// One question: may `subject` do `permission`?
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Who asks.
    pub subject: Subject,
    /// An index into [`Spec::permissions`].
    pub permission: usize,
}

/// A workload's data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spec {
    /// Declared permissions.
    pub permissions: Vec<Perm>,
    /// Roles, in an order where every base comes first when the workload is
    /// acyclic (the semantic tests build cyclic ones too).
    pub roles: Vec<RoleDef>,
    /// Users holding roles.
    pub users: Vec<UserDef>,
}

impl Spec {
    /// The roles a subject holds.
    pub fn subject_roles<'a>(&'a self, subject: &'a Subject) -> &'a [usize] {
        match subject {
            Subject::User(u) => &self.users[*u].roles,
            Subject::Token(roles) => roles,
        }
    }

    /// The reference answer: some role reachable from the subject's roles
    /// through `bases` grants the permission. Unbounded depth; a cycle is
    /// walked once.
    pub fn decide(&self, query: &Query) -> bool {
        let mut seen = vec![false; self.roles.len()];
        let mut queue: VecDeque<usize> = VecDeque::new();
        for &r in self.subject_roles(&query.subject) {
            if !seen[r] {
                seen[r] = true;
                queue.push_back(r);
            }
        }
        while let Some(r) = queue.pop_front() {
            if self.roles[r].grants.contains(&query.permission) {
                return true;
            }
            for &b in &self.roles[r].bases {
                if !seen[b] {
                    seen[b] = true;
                    queue.push_back(b);
                }
            }
        }
        false
    }

    /// The most inheritance hops any query of `queries` needs, counted from
    /// the subject (a user's own roles are one hop away from the user).
    /// casbin's role manager walks at most `max_hierarchy_level - 1` hops.
    pub fn hops_needed(&self, queries: &[Query]) -> usize {
        let mut most = 0;
        for q in queries {
            let (starts, extra) = match &q.subject {
                Subject::User(u) => (&self.users[*u].roles, 1),
                Subject::Token(roles) => (roles, 0),
            };
            // Shortest distance to every role that grants the permission.
            let mut dist = vec![usize::MAX; self.roles.len()];
            let mut queue = VecDeque::new();
            for &r in starts {
                dist[r] = 0;
                queue.push_back(r);
            }
            while let Some(r) = queue.pop_front() {
                if self.roles[r].grants.contains(&q.permission) {
                    most = most.max(dist[r] + extra);
                    break;
                }
                for &b in &self.roles[r].bases {
                    if dist[b] == usize::MAX {
                        dist[b] = dist[r] + 1;
                        queue.push_back(b);
                    }
                }
            }
        }
        most
    }
}

/// A workload with the queries the benchmarks time (each labelled) and the
/// extra queries only the agreement check asks.
#[derive(Debug, Clone)]
pub struct Workload {
    /// The data.
    pub spec: Spec,
    /// `(benchmark group suffix, query)`: what is timed.
    pub timed: Vec<(&'static str, Query)>,
    /// Asked before timing, with `timed`, to prove the engines agree.
    pub extra: Vec<Query>,
}

impl Workload {
    /// Every query of the workload, timed ones first.
    pub fn all_queries(&self) -> Vec<Query> {
        self.timed
            .iter()
            .map(|(_, q)| q.clone())
            .chain(self.extra.iter().cloned())
            .collect()
    }
}

fn read(object: String) -> Perm {
    Perm {
        object,
        action: "read".into(),
    }
}

/// W1, the shape of casbin's own published benchmark: `r` roles `group{i}`
/// granting `data{i/10}:read`, `10·r` users `user{j}` holding `group{j/10}`.
/// Timed: `user{5r+1}` on `data{r/20}` (allow) and on `data{3r/20}` (deny).
pub fn w1(r: usize) -> Workload {
    assert!(
        r >= 20 && r.is_multiple_of(20),
        "r must be a multiple of 20"
    );
    // `data{3r/20}` is granted by no role: declared so that rolegraph can
    // resolve the deny query's permission (casbin and Cedar need no
    // declaration); the update workload grants it.
    let permissions = (0..r / 10)
        .chain([3 * r / 20])
        .map(|k| read(format!("data{k}")))
        .collect();
    let roles = (0..r)
        .map(|i| RoleDef {
            name: format!("group{i}"),
            grants: vec![i / 10],
            bases: Vec::new(),
        })
        .collect();
    let users = (0..10 * r)
        .map(|j| UserDef {
            name: format!("user{j}"),
            roles: vec![j / 10],
        })
        .collect();
    let user = 5 * r + 1;
    let ask = |permission| Query {
        subject: Subject::User(user),
        permission,
    };
    let extra = (0..r / 10)
        .step_by((r / 100).max(1))
        .map(|p| Query {
            subject: Subject::User((p * 97 + 13) % (10 * r)),
            permission: p,
        })
        .chain([0, r / 20, r / 10 - 1].map(|p| Query {
            subject: Subject::Token(vec![r / 2, r - 1]),
            permission: p,
        }))
        .collect();
    Workload {
        spec: Spec {
            permissions,
            roles,
            users,
        },
        timed: vec![("w1_allow", ask(r / 20)), ("w1_deny", ask(r / 10))],
        extra,
    }
}

/// W2: a chain of `depth` roles, `chain{i}` extending `chain{i-1}`; the root
/// grants `doc:read`, the token holds the leaf.
pub fn w2(depth: usize) -> Workload {
    assert!(depth >= 1);
    let permissions = vec![read("doc".into()), read("other".into())];
    let roles = (0..depth)
        .map(|i| RoleDef {
            name: format!("chain{i}"),
            grants: if i == 0 { vec![0] } else { Vec::new() },
            bases: if i == 0 { Vec::new() } else { vec![i - 1] },
        })
        .collect();
    let leaf = Subject::Token(vec![depth - 1]);
    Workload {
        spec: Spec {
            permissions,
            roles,
            users: Vec::new(),
        },
        timed: vec![(
            "w2_chain",
            Query {
                subject: leaf.clone(),
                permission: 0,
            },
        )],
        extra: vec![
            Query {
                subject: leaf,
                permission: 1,
            },
            Query {
                subject: Subject::Token(vec![0]),
                permission: 0,
            },
        ],
    }
}

/// The W3 policy: [`DIAMOND_ROLES`] roles `role{i}`, each extending
/// [`DIAMOND_FAN_IN`] distinct earlier roles (all earlier ones for the first
/// few) and granting `res{i}:read`. Plenty of diamonds: many paths lead to
/// the same base.
pub fn diamond_spec() -> Spec {
    let n = DIAMOND_ROLES;
    let mut rng = SplitMix64::new(SEED);
    let permissions = (0..n).map(|i| read(format!("res{i}"))).collect();
    let roles = (0..n)
        .map(|i| {
            let mut bases: Vec<usize> = Vec::new();
            if i <= DIAMOND_FAN_IN {
                bases.extend(0..i);
            } else {
                while bases.len() < DIAMOND_FAN_IN {
                    let b = rng.below(i);
                    if !bases.contains(&b) {
                        bases.push(b);
                    }
                }
            }
            RoleDef {
                name: format!("role{i}"),
                grants: vec![i],
                bases,
            }
        })
        .collect();
    Spec {
        permissions,
        roles,
        users: Vec::new(),
    }
}

/// W3: the diamond policy; the token holds `role998`. Allow: the permission
/// of its farthest ancestor (most hops on the shortest path, then lowest
/// index). Deny: `res999:read`, granted only by a later role.
pub fn w3() -> Workload {
    let spec = diamond_spec();
    let holder = DIAMOND_ROLES - 2;
    let far = farthest_ancestor(&spec, holder);
    let token = Subject::Token(vec![holder]);
    let ask = |permission| Query {
        subject: token.clone(),
        permission,
    };
    let extra = (0..DIAMOND_ROLES)
        .step_by(37)
        .flat_map(|r| {
            [0, r, DIAMOND_ROLES - 1].map(|p| Query {
                subject: Subject::Token(vec![r]),
                permission: p,
            })
        })
        .collect();
    Workload {
        timed: vec![
            ("w3_diamond_allow", ask(far)),
            ("w3_diamond_deny", ask(DIAMOND_ROLES - 1)),
        ],
        extra,
        spec,
    }
}

fn farthest_ancestor(spec: &Spec, from: usize) -> usize {
    let mut dist = vec![usize::MAX; spec.roles.len()];
    dist[from] = 0;
    let mut queue = VecDeque::from([from]);
    while let Some(r) = queue.pop_front() {
        for &b in &spec.roles[r].bases {
            if dist[b] == usize::MAX {
                dist[b] = dist[r] + 1;
                queue.push_back(b);
            }
        }
    }
    let best = dist
        .iter()
        .filter(|d| **d != usize::MAX)
        .max()
        .copied()
        .unwrap_or(0);
    dist.iter().position(|d| *d == best).unwrap_or(from)
}

/// W6: a token with `k` roles on the W3 policy, `role{998-7(k-1)}` …
/// `role991`, `role998`, in ascending order. The permission checked,
/// `res998:read`, is granted by the last role only (no earlier role can
/// extend a later one), so an engine that asks role by role walks every one.
pub fn w6(k: usize) -> Workload {
    assert!((1..=100).contains(&k));
    let spec = diamond_spec();
    let last = DIAMOND_ROLES - 2;
    let roles: Vec<usize> = (0..k).rev().map(|i| last - 7 * i).collect();
    let extra = vec![
        Query {
            subject: Subject::Token(roles.clone()),
            permission: DIAMOND_ROLES - 1,
        },
        Query {
            subject: Subject::Token(roles.clone()),
            permission: 0,
        },
    ];
    Workload {
        timed: vec![(
            "w6_claims",
            Query {
                subject: Subject::Token(roles),
                permission: last,
            },
        )],
        extra,
        spec,
    }
}

/// U1: the W1 policy at `r` roles. The change: `group{r/2}`'s grants are
/// replaced, alternately by `data{3r/20}:read` and back by `data{r/20}:read`;
/// the check after it asks whether `user{5r+1}` may read `data{3r/20}`.
pub fn u1(r: usize) -> (Workload, Change) {
    let mut w = w1(r);
    let ask = w.timed[1].1.clone();
    w.timed = vec![("u1_update", ask.clone())];
    let change = Change {
        role: r / 2,
        before: r / 20,
        after: r / 10,
        query: ask,
    };
    (w, change)
}

/// One role's direct grants replaced: `before` → `after` (one permission each),
/// then `query`, whose answer flips with the change.
#[derive(Debug, Clone)]
pub struct Change {
    /// The role whose grants change.
    pub role: usize,
    /// Its only grant before.
    pub before: usize,
    /// Its only grant after.
    pub after: usize,
    /// Answered deny before the change and allow after it.
    pub query: Query,
}

impl Change {
    /// The grant the role has in `state` (`false`: before, `true`: after).
    pub fn grant(&self, state: bool) -> usize {
        if state {
            self.after
        } else {
            self.before
        }
    }
}
