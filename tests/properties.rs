//! Properties of the compiler and the snapshot against a naive oracle that
//! reads the written policy directly: depth-first reachability with a visited
//! set, wildcards as prefix matches over the declared names, breadth-first
//! distances for explanation paths.

#![expect(
    clippy::indexing_slicing,
    clippy::panic,
    clippy::unwrap_used,
    reason = "the oracle and the checks outside #[test] functions may fail the test"
)]

use std::collections::{BTreeSet, VecDeque};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use rolegraph::{Claims, Cycle, PermissionReason, Policy, Requirement, Role, Snapshot};

/// Permission names a policy may declare: prefixes overlap on purpose (`a`,
/// `a:`, `ab:`), and `.` / `-` sort differently from `:`.
const VOCAB: &[&str] = &["a", "a:r", "a:w", "ab:r", "ab:w", "b:r", "b.x", "c-d:e"];
/// Wildcard grants; `z:*` never matches.
const WILDCARDS: &[&str] = &["*", "a*", "a:*", "ab:*", "b*", "z:*"];
/// An organization id no policy lists.
const UNLISTED_ORG: &str = "org_unlisted";

/// One role of the written policy, with bases as indexes into `Model::nodes`.
#[derive(Debug, Clone)]
struct Node {
    name: String,
    org: Option<usize>,
    extends: Vec<usize>,
    grants: Vec<String>,
}

/// The written policy, as the oracle sees it. Environment roles come first;
/// organization `o` has the id `org_{o}`.
#[derive(Debug, Clone)]
struct Model {
    declared: Vec<String>,
    orgs: usize,
    nodes: Vec<Node>,
}

/// A role before its references are resolved: a name letter, bases (each
/// with whether it may point forward), grants.
type RawRole = (u8, Vec<(bool, Index)>, Vec<Index>);

fn raw_role() -> impl Strategy<Value = RawRole> {
    (
        0u8..26,
        vec((prop::bool::weighted(0.2), any::<Index>()), 0..4),
        vec(any::<Index>(), 0..4),
    )
}

/// Random policies. Acyclic ones only extend roles declared earlier (an
/// organization role: any environment role or an earlier role of its own
/// organization); in cyclic ones, some bases may be any role in reach, the
/// role itself included.
fn model(cyclic: bool) -> impl Strategy<Value = Model> {
    (
        vec(any::<bool>(), VOCAB.len()),
        vec(raw_role(), 1..10),
        vec(vec(raw_role(), 0..5), 0..3),
    )
        .prop_map(move |(mask, env, orgs)| build(cyclic, &mask, &env, &orgs))
}

fn build(cyclic: bool, mask: &[bool], env: &[RawRole], orgs: &[Vec<RawRole>]) -> Model {
    let declared: Vec<String> = VOCAB
        .iter()
        .zip(mask)
        .filter(|(_, m)| **m)
        .map(|(v, _)| (*v).to_owned())
        .collect();
    let pool: Vec<String> = declared
        .iter()
        .cloned()
        .chain(WILDCARDS.iter().map(|w| (*w).to_owned()))
        .collect();
    let grants = |ix: &[Index]| -> Vec<String> {
        ix.iter()
            .map(|i| pool[i.index(pool.len())].clone())
            .collect()
    };
    let letter = |l: u8| char::from(b'a' + l);
    let n_env = env.len();
    let mut nodes = Vec::new();
    for (i, (l, ext, gr)) in env.iter().enumerate() {
        let extends = ext
            .iter()
            .filter_map(|(forward, x)| match (cyclic && *forward, i) {
                (true, _) => Some(x.index(n_env)),
                (false, 0) => None,
                (false, _) => Some(x.index(i)),
            })
            .collect();
        nodes.push(Node {
            name: format!("{}{i}", letter(*l)),
            org: None,
            extends,
            grants: grants(gr),
        });
    }
    for (o, roles) in orgs.iter().enumerate() {
        let first = nodes.len();
        for (k, (l, ext, gr)) in roles.iter().enumerate() {
            let extends = ext
                .iter()
                .map(|(forward, x)| {
                    let reach = n_env + if cyclic && *forward { roles.len() } else { k };
                    x.index(reach)
                })
                .map(|j| match j {
                    j if j < n_env => j,
                    j => first + (j - n_env),
                })
                .collect();
            // Organization role names never shadow environment ones; two
            // organizations may use the same names.
            nodes.push(Node {
                name: format!("{}{k}_o", letter(*l)),
                org: Some(o),
                extends,
                grants: grants(gr),
            });
        }
    }
    Model {
        declared,
        orgs: orgs.len(),
        nodes,
    }
}

fn org_id(o: usize) -> String {
    format!("org_{o}")
}

impl Model {
    fn policy(&self) -> Policy {
        let mut p = Policy::new();
        for d in &self.declared {
            p.permission(d.as_str());
        }
        for o in 0..self.orgs {
            p.organization(org_id(o));
        }
        for n in &self.nodes {
            let role = Role {
                name: n.name.clone(),
                extends: n
                    .extends
                    .iter()
                    .map(|&b| self.nodes[b].name.clone())
                    .collect(),
                permissions: n.grants.clone(),
                ..Role::default()
            };
            match n.org {
                None => p.roles.push(role),
                Some(o) => p.organizations[o].roles.push(role),
            }
        }
        p
    }

    fn org_of(&self, v: usize) -> Option<String> {
        self.nodes[v].org.map(org_id)
    }

    /// Every node reachable from `v` through `extends`, `v` included.
    fn reach(&self, v: usize) -> Vec<bool> {
        let mut seen = vec![false; self.nodes.len()];
        let mut stack = vec![v];
        seen[v] = true;
        while let Some(u) = stack.pop() {
            for &b in &self.nodes[u].extends {
                if !seen[b] {
                    seen[b] = true;
                    stack.push(b);
                }
            }
        }
        seen
    }

    fn matches(&self, grant: &str, perm: &str) -> bool {
        match grant.strip_suffix('*') {
            Some(prefix) => perm.starts_with(prefix),
            None => grant == perm,
        }
    }

    /// The declared permissions `v` grants directly.
    fn direct(&self, v: usize) -> BTreeSet<String> {
        self.declared
            .iter()
            .filter(|p| self.nodes[v].grants.iter().any(|g| self.matches(g, p)))
            .cloned()
            .collect()
    }

    fn effective(&self, v: usize) -> BTreeSet<String> {
        let seen = self.reach(v);
        (0..self.nodes.len())
            .filter(|&u| seen[u])
            .flat_map(|u| self.direct(u))
            .collect()
    }

    /// A role name resolved in an organization (`None`: environment only).
    fn resolve(&self, org: Option<usize>, name: &str) -> Option<usize> {
        let find = |scope: Option<usize>| {
            (0..self.nodes.len())
                .find(|&v| self.nodes[v].org == scope && self.nodes[v].name == name)
        };
        org.and_then(|o| find(Some(o))).or_else(|| find(None))
    }

    /// Whether `v` can reach itself through at least one edge.
    fn on_cycle(&self, v: usize) -> bool {
        self.nodes[v].extends.iter().any(|&b| self.reach(b)[v])
    }

    /// Breadth-first distance from `v` to the nearest node granting `perm`.
    fn dist(&self, v: usize, perm: &str) -> Option<usize> {
        let mut d = vec![usize::MAX; self.nodes.len()];
        let mut queue = VecDeque::from([v]);
        d[v] = 0;
        while let Some(u) = queue.pop_front() {
            if self.direct(u).contains(perm) {
                return Some(d[u]);
            }
            for &b in &self.nodes[u].extends {
                if d[b] == usize::MAX {
                    d[b] = d[u] + 1;
                    queue.push_back(b);
                }
            }
        }
        None
    }

    /// The smallest path by role names among the shortest paths from any of
    /// `starts` to a node granting `perm`: greedy descent on distances.
    fn best_path(&self, starts: &[usize], perm: &str) -> Option<Vec<String>> {
        let mut at = starts
            .iter()
            .filter_map(|&s| self.dist(s, perm).map(|d| (d, &self.nodes[s].name, s)))
            .min()?
            .2;
        let mut path = vec![self.nodes[at].name.clone()];
        while let Some(d) = self.dist(at, perm).filter(|d| *d > 0) {
            at = self.nodes[at]
                .extends
                .iter()
                .filter(|&&b| self.dist(b, perm) == Some(d - 1))
                .min_by_key(|&&b| &self.nodes[b].name)
                .copied()?;
            path.push(self.nodes[at].name.clone());
        }
        Some(path)
    }

    /// The longest chain counted in roles (acyclic models only: bases come
    /// before the roles extending them).
    fn max_depth(&self) -> usize {
        let mut depth = vec![0; self.nodes.len()];
        for v in 0..self.nodes.len() {
            depth[v] = 1 + self.nodes[v]
                .extends
                .iter()
                .map(|&b| depth[b])
                .max()
                .unwrap_or(0);
        }
        depth.into_iter().max().unwrap_or(0)
    }

    /// A path of role names read in scope `org` walks real `extends` edges,
    /// and its last role has a grant equal to `grant` that matches `perm`.
    fn check_grant_path(&self, org: Option<usize>, path: &[String], grant: &str, perm: &str) {
        let ids: Vec<usize> = path
            .iter()
            .map(|n| {
                self.resolve(org, n)
                    .unwrap_or_else(|| panic!("`{n}` not in reach"))
            })
            .collect();
        for w in ids.windows(2) {
            assert!(
                self.nodes[w[0]].extends.contains(&w[1]),
                "`{}` does not extend `{}`",
                self.nodes[w[0]].name,
                self.nodes[w[1]].name
            );
        }
        let last = &self.nodes[*ids.last().unwrap()];
        assert!(
            last.grants.iter().any(|g| g == grant),
            "{grant} not granted by {last:?}"
        );
        assert!(self.matches(grant, perm), "{grant} does not match {perm}");
        // The most specific grant: the permission itself, else the matching
        // wildcard with the longest prefix.
        let best = last
            .grants
            .iter()
            .filter(|g| self.matches(g, perm))
            .max_by_key(|g| (!g.ends_with('*'), g.len()))
            .unwrap();
        assert_eq!(grant, best, "{last:?}");
    }
}

/// The closure, `roles_granting` and the sets `effective_permissions` lists
/// agree with the oracle.
fn check_closure(m: &Model, s: &Snapshot) {
    assert_eq!(s.roles_len(), m.nodes.len());
    assert_eq!(s.permissions_len(), m.declared.len());
    for (v, node) in m.nodes.iter().enumerate() {
        let org = m.org_of(v);
        let id = s.role(org.as_deref(), &node.name).unwrap();
        assert_eq!(s.role_name(id), node.name);
        assert_eq!(s.role_organization(id), org.as_deref());
        let effective = m.effective(v);
        for p in VOCAB.iter().chain(&["nope:x"]) {
            assert_eq!(
                s.role_has_permission(id, p),
                effective.contains(*p),
                "{} has {p}",
                node.name
            );
        }

        let listed = s.effective_permissions(org.as_deref(), &node.name).unwrap();
        let names: Vec<&str> = listed.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            effective.iter().map(String::as_str).collect::<Vec<_>>()
        );
    }
    for p in &m.declared {
        let got: BTreeSet<(Option<String>, String)> = s
            .roles_granting(p)
            .unwrap()
            .into_iter()
            .map(|r| {
                (
                    s.role_organization(r).map(str::to_owned),
                    s.role_name(r).to_owned(),
                )
            })
            .collect();
        let want: BTreeSet<(Option<String>, String)> = (0..m.nodes.len())
            .filter(|&v| m.effective(v).contains(p))
            .map(|v| (m.org_of(v), m.nodes[v].name.clone()))
            .collect();
        assert_eq!(got, want, "roles granting {p}");
    }
}

/// Every path `effective_permissions` gives starts at the role, walks real
/// `extends` edges, ends at a role whose most specific matching grant is
/// named, has the oracle's breadth-first length, and is the smallest by role
/// names among the shortest.
fn check_paths(m: &Model, s: &Snapshot) {
    for (v, node) in m.nodes.iter().enumerate() {
        let listed = s
            .effective_permissions(m.org_of(v).as_deref(), &node.name)
            .unwrap();
        for e in &listed {
            let path: Vec<String> = listed.path(e).into_iter().map(str::to_owned).collect();
            assert_eq!(path.first(), Some(&node.name));
            assert_eq!(path.last(), Some(&e.role), "the source role ends the path");
            m.check_grant_path(node.org, &path, &e.grant, &e.name);
            assert_eq!(
                Some(path.len() - 1),
                m.dist(v, &e.name),
                "not shortest: {e}"
            );
            assert_eq!(Some(&path), m.best_path(&[v], &e.name).as_ref(), "tie: {e}");
        }
    }
}

/// The same policy with every list of roles (and of bases) reversed.
fn reversed(p: &Policy) -> Policy {
    let mut p = p.clone();
    p.permissions.reverse();
    p.roles.reverse();
    for r in &mut p.roles {
        r.extends.reverse();
        r.permissions.reverse();
    }
    for o in &mut p.organizations {
        o.roles.reverse();
        for r in &mut o.roles {
            r.extends.reverse();
            r.permissions.reverse();
        }
    }
    p
}

/// Effective permissions, with paths and grants, of every role: what must
/// not depend on declaration order.
fn all_effective(m: &Model, s: &Snapshot) -> Vec<Vec<String>> {
    (0..m.nodes.len())
        .map(|v| {
            let listed = s
                .effective_permissions(m.org_of(v).as_deref(), &m.nodes[v].name)
                .unwrap();
            listed
                .iter()
                .map(|e| format!("{e} via {:?}", listed.path(e)))
                .collect()
        })
        .collect()
}

/// A token: organization choice, role names, claimed permissions.
type RawToken = (Index, Vec<Index>, Vec<Index>);

fn raw_token() -> impl Strategy<Value = RawToken> {
    (
        any::<Index>(),
        vec(any::<Index>(), 0..5),
        vec(any::<Index>(), 0..4),
    )
}

fn check_principal(m: &Model, s: &Snapshot, token: &RawToken, req_sets: &[Vec<Index>]) {
    let (scope_ix, role_ix, claim_ix) = token;
    let (org, scope) = match scope_ix.index(m.orgs + 2) {
        0 => (None, None),
        i if i <= m.orgs => (Some(org_id(i - 1)), Some(i - 1)),
        _ => (Some(UNLISTED_ORG.to_owned()), None),
    };
    let mut candidates: Vec<String> = m.nodes.iter().map(|n| n.name.clone()).collect();
    candidates.push("ghost".into());
    let claim_candidates: Vec<&str> = VOCAB.iter().copied().chain(["nope:x", "*", "a*"]).collect();
    let roles: Vec<String> = role_ix
        .iter()
        .map(|i| candidates[i.index(candidates.len())].clone())
        .collect();
    let claimed: Vec<String> = claim_ix
        .iter()
        .map(|i| claim_candidates[i.index(claim_candidates.len())].to_owned())
        .collect();

    let resolved: Vec<usize> = roles.iter().filter_map(|r| m.resolve(scope, r)).collect();
    let mut granted: BTreeSet<String> = resolved.iter().flat_map(|&v| m.effective(v)).collect();
    granted.extend(claimed.iter().filter(|c| m.declared.contains(c)).cloned());

    let claims = Claims {
        organization: org.clone(),
        roles: roles.clone(),
        permissions: claimed.clone(),
    };
    let principal = s.principal_for(&claims);
    assert_eq!(
        principal.permissions(),
        granted.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert_eq!(principal.unknown_roles(), roles.len() - resolved.len());
    for p in &m.declared {
        let req = Requirement::permission(s, p).unwrap();
        assert_eq!(principal.satisfies(&req), granted.contains(p), "{p}");
        assert_eq!(
            principal.has(s.permission_id(p).unwrap()),
            granted.contains(p)
        );
    }
    if m.declared.is_empty() {
        return;
    }
    for set in req_sets {
        let names: Vec<&str> = set
            .iter()
            .map(|i| m.declared[i.index(m.declared.len())].as_str())
            .collect();
        let any = Requirement::any_of(s, &names).unwrap();
        let all = Requirement::all_of(s, &names).unwrap();
        let want_any = names.iter().any(|n| granted.contains(*n));
        let want_all = names.iter().all(|n| granted.contains(*n));
        assert_eq!(principal.satisfies(&any), want_any, "any of {names:?}");
        assert_eq!(principal.satisfies(&all), want_all, "all of {names:?}");
        assert_eq!(principal.satisfies(&any.clone().and(all.clone())), want_all);
        assert_eq!(principal.satisfies(&any.clone().or(all.clone())), want_any);

        let why = s.explain(&claims, &all);
        assert_eq!(why.allowed, want_all);
        let unknown: BTreeSet<&String> = roles
            .iter()
            .filter(|r| m.resolve(scope, r).is_none())
            .collect();
        assert_eq!(why.unknown_roles.iter().collect::<BTreeSet<_>>(), unknown);
        for reason in &why.permissions {
            match reason {
                PermissionReason::ByRole {
                    permission,
                    path,
                    grant,
                } => {
                    m.check_grant_path(scope, path, grant, permission);
                    assert_eq!(Some(path), m.best_path(&resolved, permission).as_ref());
                }
                PermissionReason::Claimed { permission } => {
                    assert_eq!(m.best_path(&resolved, permission), None);
                    assert!(claimed.contains(permission));
                }
                PermissionReason::Missing { permission } => {
                    assert!(!granted.contains(permission));
                }
                other => panic!("unexpected reason {other:?}"),
            }
        }
    }
}

/// Every role on a cycle is named once, in a group holding exactly its
/// strongly connected set; every path is a real closed loop.
fn check_cycles(m: &Model, cycles: &[&Cycle]) {
    let on_cycle: BTreeSet<usize> = (0..m.nodes.len()).filter(|&v| m.on_cycle(v)).collect();
    let mut named: BTreeSet<usize> = BTreeSet::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for c in cycles {
        let org = c
            .organization()
            .map(|o| o.strip_prefix("org_").unwrap().parse::<usize>().unwrap());
        assert!(c.members().windows(2).all(|w| w[0] < w[1]), "sorted: {c}");
        let ids: Vec<usize> = c
            .members()
            .iter()
            .map(|n| m.resolve(org, n).unwrap())
            .collect();
        for &v in &ids {
            assert_eq!(m.nodes[v].org, org, "{c}");
            assert!(named.insert(v), "`{}` named twice", m.nodes[v].name);
        }
        // One strongly connected set: every member reaches every other.
        for &a in &ids {
            let reach = m.reach(a);
            assert!(ids.iter().all(|&b| reach[b]), "not strongly connected: {c}");
        }
        let path = c.path();
        assert!(path.len() >= 2, "{c}");
        assert_eq!(path.first(), c.members().first());
        assert_eq!(path.first(), path.last());
        let path_ids: Vec<usize> = path.iter().map(|n| m.resolve(org, n).unwrap()).collect();
        for w in path_ids.windows(2) {
            assert!(m.nodes[w[0]].extends.contains(&w[1]), "not an edge in {c}");
            assert!(ids.contains(&w[1]));
        }
        groups.push(ids);
    }
    assert_eq!(named, on_cycle, "roles named vs roles on a cycle");
    // Different groups are different strongly connected sets.
    for (i, g) in groups.iter().enumerate() {
        for h in &groups[i + 1..] {
            let (a, b) = (g[0], h[0]);
            assert!(!(m.reach(a)[b] && m.reach(b)[a]), "one set split in two");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// (1) Acyclic policies: the compiled closure, `max_depth` and every
    /// principal (roles, claimed permissions, any-of / all-of requirements,
    /// explanations) agree with the oracle.
    #[test]
    fn compiled_closure_and_principals_match_the_oracle(
        m in model(false),
        tokens in vec(raw_token(), 1..4),
        req_sets in vec(vec(any::<Index>(), 1..4), 0..3),
    ) {
        let s = m.policy().compile().unwrap();
        check_closure(&m, &s);
        prop_assert_eq!(s.max_depth(), m.max_depth());
        for token in &tokens {
            check_principal(&m, &s, token, &req_sets);
        }
    }

    /// (3) Effective-permission paths are valid and shortest, ties broken by
    /// role name, with the most specific grant; none of it depends on the
    /// order the policy declares permissions, roles, bases or grants in.
    #[test]
    fn effective_permission_paths_are_valid_shortest_and_stable(m in model(false)) {
        let policy = m.policy();
        let s = policy.compile().unwrap();
        check_paths(&m, &s);
        let again = reversed(&policy).compile().unwrap();
        prop_assert_eq!(all_effective(&m, &again), all_effective(&m, &s));
        prop_assert_eq!(again.max_depth(), s.max_depth());
    }

    /// (2) Policies with cycles: compile fails iff the oracle finds a cycle;
    /// the roles named across all cycle problems are exactly the roles on a
    /// cycle, grouped by strongly connected set; paths are closed loops of
    /// real edges; the error does not depend on declaration order.
    #[test]
    fn every_cycle_is_reported_and_nothing_else(m in model(true)) {
        let policy = m.policy();
        let has_cycle = (0..m.nodes.len()).any(|v| m.on_cycle(v));
        match policy.compile() {
            Ok(s) => {
                prop_assert!(!has_cycle, "a cycle was accepted");
                check_closure(&m, &s);
                check_paths(&m, &s);
            }
            Err(err) => {
                prop_assert!(has_cycle, "rejected without a cycle: {}", err);
                let cycles: Vec<&Cycle> = err.cycles().collect();
                prop_assert_eq!(cycles.len(), err.problems().len(), "only cycles: {}", err);
                check_cycles(&m, &cycles);
                prop_assert_eq!(err.to_string().lines().count(), cycles.len());
                let again = reversed(&policy).compile().unwrap_err();
                prop_assert_eq!(again.to_string(), err.to_string());
            }
        }
    }
}
