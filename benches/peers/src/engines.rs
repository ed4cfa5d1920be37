//! The engines, each built from a [`Spec`] and asked a [`Query`] the way its
//! users would ask it. See BENCHMARKS.md for why each is configured as it is.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;

use casbin::{
    CachedEnforcer, CoreApi, DefaultModel, DefaultRoleManager, Enforcer, MemoryAdapter, MgmtApi,
};
use cedar_policy::entities_errors::EntitiesError;
use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid, Policy,
    PolicyId, PolicySet, Request, RestrictedExpression,
};
use parking_lot::RwLock;
use rolegraph::{ChangeMeta, Engine, Requirement};

use crate::workload::{Change, Query, Spec, Subject};

/// How engines are configured for one workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// casbin's `DefaultRoleManager::max_hierarchy_level`: it walks at most
    /// this many levels minus one, and silently answers deny beyond.
    pub casbin_max_hierarchy_level: usize,
}

/// casbin's own default.
pub const CASBIN_DEFAULT_LEVEL: usize = 10;

impl Config {
    /// The configuration every engine needs to answer `queries` on `spec`
    /// completely: casbin's level raised above its default of 10 only where
    /// the workload is deeper.
    pub fn for_queries(spec: &Spec, queries: &[Query]) -> Self {
        Self {
            casbin_max_hierarchy_level: CASBIN_DEFAULT_LEVEL.max(spec.hops_needed(queries) + 1),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            casbin_max_hierarchy_level: CASBIN_DEFAULT_LEVEL,
        }
    }
}

/// One engine under test.
pub trait Peer: Sized {
    /// The benchmark id's function name.
    const NAME: &'static str;
    /// What a request carries in: names, resolved at start-up only where a
    /// real application would resolve them once (a route's permission).
    type Request;

    /// From the workload's data to a ready engine.
    fn build(spec: &Spec, config: Config) -> Self;
    /// The request for `query`, as it arrives (not yet resolved).
    fn request(&self, spec: &Spec, query: &Query) -> Self::Request;
    /// The decision: the timed path, from the request's names to allow/deny.
    fn decide(&self, request: &Self::Request) -> bool;
    /// Applies U1's change: `change.role` grants `change.grant(state)` only.
    fn apply(&mut self, spec: &Spec, change: &Change, state: bool);
}

// ---------------------------------------------------------------- rolegraph

/// rolegraph's live [`Engine`]: a check is one snapshot load, a principal
/// built from the token's role names, and a bit test.
pub struct Rolegraph {
    engine: Engine,
}

/// A token's role names and the route's requirement (resolved at start-up).
pub struct RolegraphRequest {
    roles: Vec<String>,
    requirement: Requirement,
}

/// The spec as a rolegraph policy (public fields: `Policy::role` is linear).
pub fn rolegraph_policy(spec: &Spec) -> rolegraph::Policy {
    rolegraph::Policy {
        permissions: spec
            .permissions
            .iter()
            .map(|p| rolegraph::Permission {
                name: p.name(),
                description: None,
            })
            .collect(),
        roles: spec
            .roles
            .iter()
            .map(|r| rolegraph::Role {
                name: r.name.clone(),
                permissions: r
                    .grants
                    .iter()
                    .map(|&p| spec.permissions[p].name())
                    .collect(),
                extends: r
                    .bases
                    .iter()
                    .map(|&b| spec.roles[b].name.clone())
                    .collect(),
                ..rolegraph::Role::default()
            })
            .collect(),
        ..rolegraph::Policy::default()
    }
}

impl Rolegraph {
    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

impl Peer for Rolegraph {
    const NAME: &'static str = "rolegraph";
    type Request = RolegraphRequest;

    fn build(spec: &Spec, _: Config) -> Self {
        Self {
            engine: Engine::new(&rolegraph_policy(spec)).unwrap(),
        }
    }

    fn request(&self, spec: &Spec, query: &Query) -> RolegraphRequest {
        let name = spec.permissions[query.permission].name();
        RolegraphRequest {
            roles: spec
                .subject_roles(&query.subject)
                .iter()
                .map(|&r| spec.roles[r].name.clone())
                .collect(),
            requirement: Requirement::permission(&self.engine.snapshot(), &name).unwrap(),
        }
    }

    #[inline]
    fn decide(&self, request: &RolegraphRequest) -> bool {
        self.engine
            .snapshot()
            .principal(None, &request.roles)
            .satisfies(&request.requirement)
    }

    fn apply(&mut self, spec: &Spec, change: &Change, state: bool) {
        let grant = spec.permissions[change.grant(state)].name();
        self.engine
            .apply(
                rolegraph::Change::UpdateRole {
                    organization: None,
                    name: spec.roles[change.role].name.clone(),
                    display_name: None,
                    description: None,
                    permissions: Some(vec![grant]),
                    extends: None,
                },
                ChangeMeta::default(),
            )
            .unwrap();
    }
}

// ---------------------------------------------------------- rolegraph_user

/// The organization [`RolegraphUser`] keeps its memberships in.
pub const USER_ORG: &str = "org_1";

/// Every user of `spec` as a membership in [`USER_ORG`] holding the user's
/// roles: what [`RolegraphUser`] and the HTTP peer bench's membership mode
/// load into their engines.
pub fn user_memberships(spec: &Spec) -> Vec<rolegraph::Change> {
    spec.users
        .iter()
        .map(|u| rolegraph::Change::SetMembership {
            organization: USER_ORG.to_owned(),
            user: u.name.clone(),
            roles: u
                .roles
                .iter()
                .map(|&r| spec.roles[r].name.clone())
                .collect(),
            groups: None,
            creator: false,
        })
        .collect()
}

/// rolegraph asked about a *user*, as casbin and Cedar are: the engine
/// stores every user's membership (user → roles, in [`USER_ORG`]), and the
/// timed path resolves the user's roles from it — one snapshot load, the
/// membership index probe (the role names were resolved when the snapshot
/// was published), then the principal and the bit test ([`Snapshot::user_principal`](rolegraph::Snapshot::user_principal)).
/// Tokens (W2, W3, W6) go the token way, as [`Rolegraph`] does.
pub struct RolegraphUser {
    engine: Engine,
}

/// A user's key, or a token's role names; and the route's requirement.
pub enum RolegraphUserRequest {
    /// Resolved through the memberships inside the timed path.
    User(String, Requirement),
    /// A token's role names.
    Token(Vec<String>, Requirement),
}

impl Peer for RolegraphUser {
    const NAME: &'static str = "rolegraph_user";
    type Request = RolegraphUserRequest;

    fn build(spec: &Spec, _: Config) -> Self {
        let mut policy = rolegraph_policy(spec);
        policy.organization(USER_ORG);
        let engine = Engine::new(&policy).unwrap();
        let memberships = user_memberships(spec);
        if !memberships.is_empty() {
            engine
                .apply_batch(memberships, ChangeMeta::default())
                .unwrap();
        }
        Self { engine }
    }

    fn request(&self, spec: &Spec, query: &Query) -> RolegraphUserRequest {
        let name = spec.permissions[query.permission].name();
        let requirement = Requirement::permission(&self.engine.snapshot(), &name).unwrap();
        match &query.subject {
            Subject::User(u) => {
                RolegraphUserRequest::User(spec.users[*u].name.clone(), requirement)
            }
            Subject::Token(roles) => RolegraphUserRequest::Token(
                roles.iter().map(|&r| spec.roles[r].name.clone()).collect(),
                requirement,
            ),
        }
    }

    #[inline]
    fn decide(&self, request: &RolegraphUserRequest) -> bool {
        let snapshot = self.engine.snapshot();
        match request {
            RolegraphUserRequest::User(user, requirement) => snapshot
                .user_principal(USER_ORG, user)
                .satisfies(requirement),
            RolegraphUserRequest::Token(roles, requirement) => {
                snapshot.principal(None, roles).satisfies(requirement)
            }
        }
    }

    fn apply(&mut self, spec: &Spec, change: &Change, state: bool) {
        let grant = spec.permissions[change.grant(state)].name();
        self.engine
            .apply(
                rolegraph::Change::UpdateRole {
                    organization: None,
                    name: spec.roles[change.role].name.clone(),
                    display_name: None,
                    description: None,
                    permissions: Some(vec![grant]),
                    extends: None,
                },
                ChangeMeta::default(),
            )
            .unwrap();
    }
}

// ---------------------------------------------------------------- casbin

/// casbin's RBAC model with one role definition, as in its own examples and
/// benchmarks (`examples/rbac_model.conf`).
pub const CASBIN_MODEL: &str = "\
[request_definition]
r = sub, obj, act

[policy_definition]
p = sub, obj, act

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = g(r.sub, p.sub) && r.obj == p.obj && r.act == p.act
";

/// casbin's API is async; its in-memory adapter never waits, so a
/// current-thread runtime is enough for setup and changes.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

/// The spec as casbin rules: `p` lines (role, object, action) and `g` lines
/// (user or role, role it holds or extends).
pub fn casbin_rules(spec: &Spec) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    let mut p = Vec::new();
    for r in &spec.roles {
        for &g in &r.grants {
            let perm = &spec.permissions[g];
            p.push(vec![
                r.name.clone(),
                perm.object.clone(),
                perm.action.clone(),
            ]);
        }
    }
    let mut g = Vec::new();
    for r in &spec.roles {
        for &b in &r.bases {
            g.push(vec![r.name.clone(), spec.roles[b].name.clone()]);
        }
    }
    for u in &spec.users {
        for &r in &u.roles {
            g.push(vec![u.name.clone(), spec.roles[r].name.clone()]);
        }
    }
    (p, g)
}

/// Builds a casbin enforcer (plain or cached) from `spec`: the role manager
/// replaced by one with `level`, rules added in bulk, role links built once.
async fn load_casbin<E: CoreApi + MgmtApi>(spec: &Spec, level: usize) -> casbin::Result<E> {
    let model = DefaultModel::from_str(CASBIN_MODEL).await?;
    let mut e = E::new(model, MemoryAdapter::default()).await?;
    // Bulk load: link roles once at the end, as casbin's own benchmark does.
    e.enable_auto_build_role_links(false);
    e.set_role_manager(Arc::new(RwLock::new(DefaultRoleManager::new(level))))?;
    let (p, g) = casbin_rules(spec);
    if !p.is_empty() {
        e.add_policies(p).await?;
    }
    if !g.is_empty() {
        e.add_grouping_policies(g).await?;
    }
    e.build_role_links()?;
    e.enable_auto_build_role_links(true);
    Ok(e)
}

/// Builds casbin's plain [`Enforcer`] (exposed for the semantic tests).
pub fn casbin_enforcer(spec: &Spec, level: usize) -> casbin::Result<Enforcer> {
    runtime().block_on(load_casbin(spec, level))
}

/// casbin's subjects, object and action for a query: a user is asked about
/// by name; a token's roles are asked about one by one (any allows).
pub struct CasbinRequest {
    subjects: Vec<String>,
    object: String,
    action: String,
}

fn casbin_request(spec: &Spec, query: &Query) -> CasbinRequest {
    let perm = &spec.permissions[query.permission];
    let subjects = match &query.subject {
        Subject::User(u) => vec![spec.users[*u].name.clone()],
        Subject::Token(roles) => roles.iter().map(|&r| spec.roles[r].name.clone()).collect(),
    };
    CasbinRequest {
        subjects,
        object: perm.object.clone(),
        action: perm.action.clone(),
    }
}

/// Replaces U1's grant: `remove_policy` of the old line, `add_policy` of
/// the new one (no role links change, so none are rebuilt).
async fn casbin_change<E: MgmtApi>(e: &mut E, spec: &Spec, change: &Change, state: bool) {
    let role = &spec.roles[change.role].name;
    let line = |p: usize| {
        let perm = &spec.permissions[p];
        vec![role.clone(), perm.object.clone(), perm.action.clone()]
    };
    assert!(e.remove_policy(line(change.grant(!state))).await.unwrap());
    assert!(e.add_policy(line(change.grant(state))).await.unwrap());
}

/// A casbin 2.20 enforcer kind, with the name its rows are reported under.
pub trait CasbinKind: CoreApi + MgmtApi {
    /// The engine's name in benchmark ids and reports.
    const NAME: &'static str;
}

impl CasbinKind for Enforcer {
    const NAME: &'static str = "casbin";
}

/// Decisions memoized per request tuple (cache of 200), cleared on every
/// policy change.
impl CasbinKind for CachedEnforcer {
    const NAME: &'static str = "casbin_cached";
}

/// casbin 2.20, in memory: [`Casbin`] and [`CasbinCached`].
pub struct CasbinPeer<E> {
    enforcer: E,
    runtime: tokio::runtime::Runtime,
}

/// casbin 2.20's [`Enforcer`], in memory.
pub type Casbin = CasbinPeer<Enforcer>;

/// casbin 2.20's [`CachedEnforcer`]: decisions memoized per request tuple
/// (cache of 200), cleared on every policy change.
pub type CasbinCached = CasbinPeer<CachedEnforcer>;

impl<E: CasbinKind> Peer for CasbinPeer<E> {
    const NAME: &'static str = E::NAME;
    type Request = CasbinRequest;

    fn build(spec: &Spec, config: Config) -> Self {
        let runtime = runtime();
        let enforcer = runtime
            .block_on(load_casbin(spec, config.casbin_max_hierarchy_level))
            .unwrap();
        Self { enforcer, runtime }
    }

    fn request(&self, spec: &Spec, query: &Query) -> CasbinRequest {
        casbin_request(spec, query)
    }

    #[inline]
    fn decide(&self, r: &CasbinRequest) -> bool {
        r.subjects.iter().any(|s| {
            self.enforcer
                .enforce((s.as_str(), r.object.as_str(), r.action.as_str()))
                .unwrap()
        })
    }

    fn apply(&mut self, spec: &Spec, change: &Change, state: bool) {
        self.runtime
            .block_on(casbin_change(&mut self.enforcer, spec, change, state));
    }
}

// ---------------------------------------------------------------- Cedar

/// Entity type names, parsed once.
#[derive(Clone)]
struct Types {
    user: EntityTypeName,
    role: EntityTypeName,
    perm: EntityTypeName,
    data: EntityTypeName,
    action: EntityTypeName,
}

impl Types {
    fn new() -> Self {
        let t = |s: &str| EntityTypeName::from_str(s).unwrap();
        Self {
            user: t("User"),
            role: t("Role"),
            perm: t("Perm"),
            data: t("Data"),
            action: t("Action"),
        }
    }

    fn uid(ty: &EntityTypeName, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
    }
}

/// The subject of a token request in the flat encoding: not an entity of the
/// store, like the `sub` of a token the policy knows nothing about.
const TOKEN_SUBJECT: &str = "token-subject";

/// Cedar's request names, as they arrive: the principal (a user) or the
/// token's role names, and the permission.
pub struct CedarRequest {
    user: Option<String>,
    roles: Vec<String>,
    object: String,
    action: String,
    perm: String,
}

fn cedar_request(spec: &Spec, query: &Query) -> CedarRequest {
    let perm = &spec.permissions[query.permission];
    let (user, roles) = match &query.subject {
        Subject::User(u) => (Some(spec.users[*u].name.clone()), Vec::new()),
        Subject::Token(roles) => (
            None,
            roles.iter().map(|&r| spec.roles[r].name.clone()).collect(),
        ),
    };
    CedarRequest {
        user,
        roles,
        object: perm.object.clone(),
        action: perm.action.clone(),
        perm: perm.name(),
    }
}

/// One policy per role and grant, `principal in Role::"r"`, over entities
/// that mirror the hierarchy (a role's parents are the roles it extends, a
/// user's parents the roles it holds). A token's roles are asked about one
/// by one, each as the principal (Cedar's `principal` is a single entity).
pub struct CedarPerRole {
    types: Types,
    authorizer: Authorizer,
    policies: PolicySet,
    entities: Entities,
}

fn per_role_policy(spec: &Spec, role: usize, perm: usize) -> Policy {
    let r = &spec.roles[role];
    let p = &spec.permissions[perm];
    let text = format!(
        "permit(principal in Role::\"{}\", action == Action::\"{}\", resource == Data::\"{}\");",
        r.name, p.action, p.object
    );
    Policy::parse(
        Some(PolicyId::new(format!("{}/{}", r.name, p.name()))),
        text,
    )
    .unwrap()
}

/// The per-role encoding's entities (exposed for the semantic tests).
pub fn cedar_per_role_entities(spec: &Spec) -> Result<Entities, Box<EntitiesError>> {
    let types = Types::new();
    let roles = spec.roles.iter().map(|r| {
        Entity::new_no_attrs(
            Types::uid(&types.role, &r.name),
            r.bases
                .iter()
                .map(|&b| Types::uid(&types.role, &spec.roles[b].name))
                .collect(),
        )
    });
    let users = spec.users.iter().map(|u| {
        Entity::new_no_attrs(
            Types::uid(&types.user, &u.name),
            u.roles
                .iter()
                .map(|&r| Types::uid(&types.role, &spec.roles[r].name))
                .collect(),
        )
    });
    Entities::from_entities(roles.chain(users), None).map_err(Box::new)
}

impl Peer for CedarPerRole {
    const NAME: &'static str = "cedar_per_role";
    type Request = CedarRequest;

    fn build(spec: &Spec, _: Config) -> Self {
        let mut policies = PolicySet::new();
        for (i, r) in spec.roles.iter().enumerate() {
            for &g in &r.grants {
                policies.add(per_role_policy(spec, i, g)).unwrap();
            }
        }
        Self {
            types: Types::new(),
            authorizer: Authorizer::new(),
            policies,
            entities: cedar_per_role_entities(spec).unwrap(),
        }
    }

    fn request(&self, spec: &Spec, query: &Query) -> CedarRequest {
        cedar_request(spec, query)
    }

    #[inline]
    fn decide(&self, r: &CedarRequest) -> bool {
        let t = &self.types;
        let ask = |principal: EntityUid| {
            let request = Request::new(
                principal,
                Types::uid(&t.action, &r.action),
                Types::uid(&t.data, &r.object),
                Context::empty(),
                None,
            )
            .unwrap();
            self.authorizer
                .is_authorized(&request, &self.policies, &self.entities)
                .decision()
                == Decision::Allow
        };
        match &r.user {
            Some(user) => ask(Types::uid(&t.user, user)),
            None => r.roles.iter().any(|role| ask(Types::uid(&t.role, role))),
        }
    }

    fn apply(&mut self, spec: &Spec, change: &Change, state: bool) {
        let old = &spec.permissions[change.grant(!state)];
        let id = PolicyId::new(format!("{}/{}", spec.roles[change.role].name, old.name()));
        self.policies.remove_static(id).unwrap();
        self.policies
            .add(per_role_policy(spec, change.role, change.grant(state)))
            .unwrap();
    }
}

/// The flattened encoding: one policy, and the hierarchy pointed from
/// permissions up to their holders. A permission entity's parents are the
/// roles granting it directly; a role's parents are the roles extending it
/// and the users holding it. After Cedar's transitive closure the ancestors
/// of `Perm::"p"` are exactly the roles and users that have `p`, so one `in`
/// answers every shape of request, with the permission as the resource:
///
/// - a user, or a token with one role: that entity is the principal and the
///   context is empty (`resource in principal`);
/// - a token with several roles: they go in `context.roles`
///   (`resource in context.roles`: Cedar's `in` takes a set only on its
///   right, which is why the hierarchy points from permissions up).
///
/// Measured against the alternatives (the permission in the context; roles
/// always in the context; permissions as parents of roles with
/// `principal in context.perm`), this is the fastest: an empty context
/// saves about 1 µs per request, which is most of the difference.
pub struct CedarFlat {
    types: Types,
    authorizer: Authorizer,
    policies: PolicySet,
    entities: Entities,
    /// Each permission's direct grantors, to upsert a permission entity whole.
    grantors: Vec<Vec<usize>>,
}

/// The flattened encoding's only policy.
pub const CEDAR_FLAT_POLICY: &str = "permit(principal, action, resource) when { \
     resource in principal || (context has roles && resource in context.roles) };";

fn grantors(spec: &Spec) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new(); spec.permissions.len()];
    for (i, r) in spec.roles.iter().enumerate() {
        for &g in &r.grants {
            out[g].push(i);
        }
    }
    out
}

fn flat_perm_entity(types: &Types, spec: &Spec, perm: usize, grantors: &[usize]) -> Entity {
    Entity::new_no_attrs(
        Types::uid(&types.perm, &spec.permissions[perm].name()),
        grantors
            .iter()
            .map(|&r| Types::uid(&types.role, &spec.roles[r].name))
            .collect(),
    )
}

/// The flattened encoding's entities (exposed for the semantic tests).
pub fn cedar_flat_entities(spec: &Spec) -> Result<Entities, Box<EntitiesError>> {
    let types = Types::new();
    let grantors = grantors(spec);
    let mut parents: Vec<HashSet<EntityUid>> = vec![HashSet::new(); spec.roles.len()];
    for (i, r) in spec.roles.iter().enumerate() {
        for &b in &r.bases {
            parents[b].insert(Types::uid(&types.role, &spec.roles[i].name));
        }
    }
    for u in &spec.users {
        for &r in &u.roles {
            parents[r].insert(Types::uid(&types.user, &u.name));
        }
    }
    let perms =
        (0..spec.permissions.len()).map(|p| flat_perm_entity(&types, spec, p, &grantors[p]));
    let roles = spec
        .roles
        .iter()
        .zip(parents)
        .map(|(r, parents)| Entity::new_no_attrs(Types::uid(&types.role, &r.name), parents));
    let users = spec
        .users
        .iter()
        .map(|u| Entity::new_no_attrs(Types::uid(&types.user, &u.name), HashSet::new()));
    Entities::from_entities(perms.chain(roles).chain(users), None).map_err(Box::new)
}

impl Peer for CedarFlat {
    const NAME: &'static str = "cedar_flat";
    type Request = CedarRequest;

    fn build(spec: &Spec, _: Config) -> Self {
        let policy = Policy::parse(Some(PolicyId::new("flat")), CEDAR_FLAT_POLICY).unwrap();
        let policies = PolicySet::from_policies([policy]).unwrap();
        Self {
            types: Types::new(),
            authorizer: Authorizer::new(),
            policies,
            entities: cedar_flat_entities(spec).unwrap(),
            grantors: grantors(spec),
        }
    }

    fn request(&self, spec: &Spec, query: &Query) -> CedarRequest {
        cedar_request(spec, query)
    }

    #[inline]
    fn decide(&self, r: &CedarRequest) -> bool {
        let t = &self.types;
        let (principal, context) = match (&r.user, r.roles.as_slice()) {
            (Some(user), _) => (Types::uid(&t.user, user), Context::empty()),
            (None, [role]) => (Types::uid(&t.role, role), Context::empty()),
            (None, roles) => {
                let roles = roles
                    .iter()
                    .map(|role| RestrictedExpression::new_entity_uid(Types::uid(&t.role, role)));
                let context = Context::from_pairs([(
                    "roles".to_owned(),
                    RestrictedExpression::new_set(roles),
                )])
                .unwrap();
                (Types::uid(&t.user, TOKEN_SUBJECT), context)
            }
        };
        let request = Request::new(
            principal,
            Types::uid(&t.action, &r.action),
            Types::uid(&t.perm, &r.perm),
            context,
            None,
        )
        .unwrap();
        self.authorizer
            .is_authorized(&request, &self.policies, &self.entities)
            .decision()
            == Decision::Allow
    }

    fn apply(&mut self, spec: &Spec, change: &Change, state: bool) {
        let (old, new) = (change.grant(!state), change.grant(state));
        self.grantors[old].retain(|&r| r != change.role);
        self.grantors[new].push(change.role);
        let touched = [old, new].map(|p| flat_perm_entity(&self.types, spec, p, &self.grantors[p]));
        let entities = std::mem::replace(&mut self.entities, Entities::empty());
        self.entities = entities.upsert_entities(touched, None).unwrap();
    }
}

// ---------------------------------------------------------------- naive

/// The baseline: `HashMap<role, HashSet<permission>>` plus each role's bases,
/// walked depth-first from the token's roles on every check.
pub struct Naive {
    grants: HashMap<String, HashSet<String>>,
    bases: HashMap<String, Vec<String>>,
}

/// A token's role names and the permission's name.
pub struct NaiveRequest {
    roles: Vec<String>,
    perm: String,
}

impl Peer for Naive {
    const NAME: &'static str = "naive";
    type Request = NaiveRequest;

    fn build(spec: &Spec, _: Config) -> Self {
        let mut grants = HashMap::with_capacity(spec.roles.len());
        let mut bases = HashMap::with_capacity(spec.roles.len());
        for r in &spec.roles {
            grants.insert(
                r.name.clone(),
                r.grants
                    .iter()
                    .map(|&p| spec.permissions[p].name())
                    .collect(),
            );
            bases.insert(
                r.name.clone(),
                r.bases
                    .iter()
                    .map(|&b| spec.roles[b].name.clone())
                    .collect(),
            );
        }
        Self { grants, bases }
    }

    fn request(&self, spec: &Spec, query: &Query) -> NaiveRequest {
        NaiveRequest {
            roles: spec
                .subject_roles(&query.subject)
                .iter()
                .map(|&r| spec.roles[r].name.clone())
                .collect(),
            perm: spec.permissions[query.permission].name(),
        }
    }

    #[inline]
    fn decide(&self, r: &NaiveRequest) -> bool {
        let mut seen: HashSet<&str> = HashSet::new();
        // The token's roles in order (the stack pops the first one first).
        let mut stack: Vec<&str> = r.roles.iter().rev().map(String::as_str).collect();
        while let Some(role) = stack.pop() {
            if !seen.insert(role) {
                continue;
            }
            if self.grants.get(role).is_some_and(|g| g.contains(&r.perm)) {
                return true;
            }
            if let Some(bases) = self.bases.get(role) {
                stack.extend(bases.iter().rev().map(String::as_str));
            }
        }
        false
    }

    fn apply(&mut self, spec: &Spec, change: &Change, state: bool) {
        let grants = self.grants.get_mut(&spec.roles[change.role].name).unwrap();
        grants.remove(&spec.permissions[change.grant(!state)].name());
        grants.insert(spec.permissions[change.grant(state)].name());
    }
}
