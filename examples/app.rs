//! A small projects-and-tasks API behind rolegraph: Scalekit access tokens
//! verified against a JWKS, one requirement per route, memberships kept
//! current by signed Scalekit webhooks (a revoked role is denied on the very
//! next request), the guarded role assignment from Scalekit's docs (audited),
//! and `GET /me/permissions` with each permission's granting role and the
//! inheritance tree.
//!
//! ```text
//! cargo run -q --example app --features axum,jwt,scalekit -- --tour
//! cargo run -q --example app --features axum,jwt,scalekit -- [--listen 127.0.0.1:3000] [--key dev.pem]
//! ```
//!
//! `--tour` starts the app on an ephemeral 127.0.0.1 port, drives it over
//! real HTTP, prints the transcript, and exits 0 only if every answer is the
//! expected one.
//!
//! Without `--tour` it serves. In development mode (the default) it
//! generates an RSA key, serves its JWKS at `/.well-known/jwks.json`,
//! verifies tokens against it like any Scalekit environment, stands in for
//! Scalekit's directory (the roles a membership webhook fetches), and prints
//! a token per seeded user and the webhook secret; `--key FILE` signs with
//! that RSA key instead of a fresh one, so that
//! `rolegraph mint-token --key FILE …` (features `cli,jwt`) mints tokens it
//! accepts. With
//! `SCALEKIT_ENVIRONMENT_URL`, `SCALEKIT_CLIENT_ID` and
//! `SCALEKIT_WEBHOOK_SECRET` set, it verifies your environment's tokens and
//! webhooks instead.
//!
//! | route | needs |
//! |---|---|
//! | `GET /projects` | `projects:read` |
//! | `POST /projects` | `projects:create` |
//! | `DELETE /projects/{id}` | `projects:delete` |
//! | `GET /projects/{id}/tasks` | `tasks:read` |
//! | `POST /projects/{id}/tasks` | `tasks:update` |
//! | `PUT /projects/{id}/tasks/{n}/assignee` | `tasks:assign` and `tasks:read` |
//! | `GET /me/permissions` | a valid token |
//! | `PUT /members/{user}/roles` | role `admin`, or `users.write`, or `roles.assign` (the engine's assignment guard) |
//! | `POST /webhooks/scalekit` | a Standard Webhooks signature |
//! | `GET /healthz` | nothing |

use std::collections::BTreeMap;
use std::error::Error;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Router;
use rolegraph::http::{webhook_route, Authenticated, AuthorizeLayer, Mode, Rule, REVISION_HEADER};
use rolegraph::scalekit::{Handler, Source, SourceError, Verifier as WebhookVerifier};
use rolegraph::token::{DevClaims, DevIssuer, JwksVerifier, Verifier};
use rolegraph::{Change, ChangeError, ChangeMeta, Engine, Permission, Policy, Role};
use serde_json::{json, Value};

type BoxError = Box<dyn Error + Send + Sync>;

/// The organization of the example policy.
pub const ORG: &str = "org_69615647365005430";

/// The audience (client id) of development tokens.
pub const DEV_AUDIENCE: &str = "skc_dev";

/// The webhook secret of development mode (`rolegraph-dev-secret`).
pub const DEV_WEBHOOK_SECRET: &str = "whsec_cm9sZWdyYXBoLWRldi1zZWNyZXQ=";

/// The seeded users of development mode: id, email, roles in [`ORG`].
pub const DEV_USERS: [(&str, &str, &[&str]); 3] = [
    ("usr_alice", "alice@acme.test", &["admin", "project_admin"]),
    ("usr_bob", "bob@acme.test", &["project_manager"]),
    ("usr_carol", "carol@acme.test", &["team_member"]),
];

const POLICY: &str = include_str!("policy.json");

/// Development mode's stand-in for Scalekit: the policy, and each user's
/// roles per organization (what a membership webhook fetches, and what the
/// role assignment writes back to, as the docs' flow does with `PATCH
/// /api/v1/memberships/…`).
#[derive(Debug)]
pub struct DevDirectory {
    policy: Policy,
    members: Mutex<BTreeMap<(String, String), Vec<String>>>,
}

impl DevDirectory {
    fn new(policy: Policy) -> Self {
        Self {
            policy,
            members: Mutex::new(BTreeMap::new()),
        }
    }

    /// Sets `user`'s roles in `org`, as an admin would in Scalekit.
    pub fn set(&self, org: &str, user: &str, roles: &[&str]) {
        self.members
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                (org.to_owned(), user.to_owned()),
                roles.iter().map(|r| (*r).to_owned()).collect(),
            );
    }
}

impl Source for DevDirectory {
    fn fetch_role_permissions(
        &self,
        organization: Option<&str>,
        name: &str,
    ) -> Result<Vec<Permission>, SourceError> {
        self.policy.fetch_role_permissions(organization, name)
    }

    fn fetch_role(
        &self,
        organization: Option<&str>,
        name: &str,
    ) -> Result<Option<Role>, SourceError> {
        Source::fetch_role(&self.policy, organization, name)
    }

    fn fetch_policy(&self) -> Result<Policy, SourceError> {
        Ok(self.policy.clone())
    }

    fn fetch_user_roles(
        &self,
        organization: &str,
        user_id: &str,
    ) -> Result<Option<Vec<String>>, SourceError> {
        Ok(self
            .members
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(organization.to_owned(), user_id.to_owned()))
            .cloned())
    }
}

// ------------------------------------------------------------------ the app

#[derive(Default)]
struct Projects {
    next: u64,
    items: BTreeMap<u64, Project>,
}

struct Project {
    name: String,
    owner: String,
    tasks: Vec<Task>,
}

struct Task {
    title: String,
    assignee: Option<String>,
}

#[derive(Clone)]
struct AppState {
    engine: Engine,
    projects: Arc<Mutex<Projects>>,
    directory: Option<Arc<DevDirectory>>,
    jwks: Option<Arc<String>>,
}

impl AppState {
    fn projects(&self) -> std::sync::MutexGuard<'_, Projects> {
        self.projects.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn json_answer(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// An RFC 9457 problem.
fn problem(status: StatusCode, detail: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        json!({"status": status.as_u16(), "title": status.canonical_reason(), "detail": detail})
            .to_string(),
    )
        .into_response()
}

/// A refused request body: the status and what is wrong.
struct BadBody(StatusCode, String);

impl IntoResponse for BadBody {
    fn into_response(self) -> Response {
        problem(self.0, &self.1)
    }
}

fn body_json(body: &Bytes) -> Result<Value, BadBody> {
    serde_json::from_slice(body).map_err(|e| {
        BadBody(
            StatusCode::BAD_REQUEST,
            format!("the body is not json: {e}"),
        )
    })
}

fn text_field(v: &Value, field: &str) -> Result<String, BadBody> {
    v.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_owned)
        .ok_or_else(|| {
            BadBody(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("`{field}` must be a non-empty string"),
            )
        })
}

async fn healthz(State(app): State<AppState>) -> Response {
    json_answer(
        StatusCode::OK,
        &json!({"status": "ok", "revision": app.engine.revision()}),
    )
}

async fn jwks(State(app): State<AppState>) -> Response {
    match &app.jwks {
        Some(keys) => (
            [(header::CONTENT_TYPE, "application/json")],
            keys.as_str().to_owned(),
        )
            .into_response(),
        None => problem(
            StatusCode::NOT_FOUND,
            "no local keys outside development mode",
        ),
    }
}

async fn list_projects(State(app): State<AppState>) -> Response {
    let projects = app.projects();
    let list: Vec<Value> = projects
        .items
        .iter()
        .map(|(id, p)| json!({"id": id, "name": p.name, "owner": p.owner, "tasks": p.tasks.len()}))
        .collect();
    json_answer(StatusCode::OK, &json!({"projects": list}))
}

async fn create_project(State(app): State<AppState>, who: Authenticated, body: Bytes) -> Response {
    let name = match body_json(&body).and_then(|v| text_field(&v, "name")) {
        Ok(name) => name,
        Err(answer) => return answer.into_response(),
    };
    let mut projects = app.projects();
    projects.next += 1;
    let id = projects.next;
    let owner = who.claims().subject.clone();
    projects.items.insert(
        id,
        Project {
            name: name.clone(),
            owner: owner.clone(),
            tasks: Vec::new(),
        },
    );
    json_answer(
        StatusCode::CREATED,
        &json!({"id": id, "name": name, "owner": owner}),
    )
}

async fn delete_project(State(app): State<AppState>, Path(id): Path<u64>) -> Response {
    match app.projects().items.remove(&id) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => problem(StatusCode::NOT_FOUND, &format!("no project `{id}`")),
    }
}

async fn list_tasks(State(app): State<AppState>, Path(id): Path<u64>) -> Response {
    let projects = app.projects();
    let Some(project) = projects.items.get(&id) else {
        return problem(StatusCode::NOT_FOUND, &format!("no project `{id}`"));
    };
    let tasks: Vec<Value> = project
        .tasks
        .iter()
        .enumerate()
        .map(|(n, t)| json!({"n": n, "title": t.title, "assignee": t.assignee}))
        .collect();
    json_answer(StatusCode::OK, &json!({"tasks": tasks}))
}

async fn create_task(State(app): State<AppState>, Path(id): Path<u64>, body: Bytes) -> Response {
    let title = match body_json(&body).and_then(|v| text_field(&v, "title")) {
        Ok(title) => title,
        Err(answer) => return answer.into_response(),
    };
    let mut projects = app.projects();
    let Some(project) = projects.items.get_mut(&id) else {
        return problem(StatusCode::NOT_FOUND, &format!("no project `{id}`"));
    };
    project.tasks.push(Task {
        title: title.clone(),
        assignee: None,
    });
    let n = project.tasks.len() - 1;
    json_answer(StatusCode::CREATED, &json!({"n": n, "title": title}))
}

async fn assign_task(
    State(app): State<AppState>,
    Path((id, n)): Path<(u64, usize)>,
    body: Bytes,
) -> Response {
    let assignee = match body_json(&body).and_then(|v| text_field(&v, "assignee")) {
        Ok(a) => a,
        Err(answer) => return answer.into_response(),
    };
    let mut projects = app.projects();
    let Some(task) = projects.items.get_mut(&id).and_then(|p| p.tasks.get_mut(n)) else {
        return problem(
            StatusCode::NOT_FOUND,
            &format!("no task `{n}` in project `{id}`"),
        );
    };
    task.assignee = Some(assignee.clone());
    json_answer(StatusCode::OK, &json!({"n": n, "assignee": assignee}))
}

/// Every permission the caller holds, each with the role whose grant gives
/// it (Scalekit's `permissions:all` shape: `role_name`), and the inheritance
/// tree of the caller's roles, each role listed once with the index of the
/// role that extends it (`via`, `null` for a held role). A permission's path
/// is the chain of `via` up from its `role`: the answer stays linear in the
/// roles and permissions, however deep the chain.
async fn me_permissions(who: Authenticated) -> Response {
    let principal = who.principal();
    let snapshot = principal.snapshot();
    let tree = snapshot.inheritance_of(principal.roles());
    let held: Vec<&str> = tree
        .roles()
        .iter()
        .take_while(|r| r.via.is_none())
        .map(|r| r.name.as_str())
        .collect();
    let inheritance: Vec<Value> = tree
        .roles()
        .iter()
        .map(|r| json!({"name": r.name, "organization": r.organization, "via": r.via}))
        .collect();
    let mut granted: Vec<(usize, &rolegraph::Granted)> = tree.permissions().collect();
    granted.sort_unstable_by(|a, b| a.1.permission.cmp(&b.1.permission));
    let permissions: Vec<Value> = granted
        .into_iter()
        .map(|(i, g)| {
            let role_name = tree.roles().get(i).map(|r| r.name.as_str());
            json!({"permission": g.permission, "role_name": role_name, "role": i, "grant": g.grant})
        })
        .collect();
    json_answer(
        StatusCode::OK,
        &json!({
            "subject": who.claims().subject,
            "organization": who.claims().organization,
            "decided_by": who.source().as_str(),
            "revision": who.revision(),
            "roles": held,
            "inheritance": inheritance,
            "permissions": permissions,
        }),
    )
}

/// Scalekit's admin flow: the caller must hold `admin`, `users.write` or
/// `roles.assign` (checked by the engine against the current snapshot),
/// then the user's roles in the caller's organization are replaced, the
/// change journaled with the caller as its actor.
async fn assign_member_roles(
    State(app): State<AppState>,
    who: Authenticated,
    Path(user): Path<String>,
    body: Bytes,
) -> Response {
    let Some(org) = who.claims().organization.clone() else {
        return problem(
            StatusCode::BAD_REQUEST,
            "the token names no organization (`oid`)",
        );
    };
    let body = match body_json(&body) {
        Ok(v) => v,
        Err(answer) => return answer.into_response(),
    };
    let Some(list) = body.get("roles").and_then(Value::as_array) else {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "`roles` must be an array of role names",
        );
    };
    let roles: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
    if roles.len() != list.len() {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "`roles` must hold names only",
        );
    }
    let actor = who.claims().subject.clone();
    match app
        .engine
        .assign_roles(who.principal(), &actor, &org, &user, &roles)
    {
        Ok(outcome) => {
            // Write back to the identity provider, so that it stays the
            // source of truth (and its echoing webhook is a no-op).
            if let Some(directory) = &app.directory {
                directory.set(&org, &user, &roles);
            }
            let history = app
                .engine
                .user_role_history(&org, &user)
                .unwrap_or_default();
            let audit = history.last().map(|a| {
                json!({"revision": a.revision, "actor": a.actor, "before": a.before, "after": a.after})
            });
            let mut answer = json_answer(
                StatusCode::OK,
                &json!({"user": user, "roles": roles, "revision": outcome.revision, "audit": audit}),
            );
            // Read-your-writes: a request sending this header back is
            // decided at or after this change (`min_revision_header`).
            answer.headers_mut().insert(
                axum::http::HeaderName::from_static(REVISION_HEADER),
                outcome.revision.into(),
            );
            answer
        }
        Err(ChangeError::Forbidden { requirement, .. }) => problem(
            StatusCode::FORBIDDEN,
            &format!("assigning roles needs {requirement}"),
        ),
        Err(
            e @ (ChangeError::UnknownMembershipRole { .. } | ChangeError::GuardUnavailable { .. }),
        ) => problem(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()),
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// The router: every API route behind the authorization layer (membership
/// mode) with its requirement, then the routes that carry no bearer token.
///
/// # Errors
///
/// A requirement naming a permission or role the policy does not declare.
fn router(
    engine: &Engine,
    verifier: Arc<dyn Verifier>,
    webhooks: Arc<Handler>,
    directory: Option<Arc<DevDirectory>>,
    jwks_json: Option<String>,
) -> Result<Router, BoxError> {
    let auth = AuthorizeLayer::new(engine.clone(), verifier)
        .mode(Mode::Membership)
        .realm("projects")
        .min_revision_header(REVISION_HEADER, Duration::from_secs(2))?;
    let state = AppState {
        engine: engine.clone(),
        projects: Arc::new(Mutex::new(Projects::default())),
        directory,
        jwks: jwks_json.map(Arc::new),
    };
    let app = Router::new()
        .route(
            "/projects",
            get(list_projects).route_layer(auth.require("projects:read")?),
        )
        .route(
            "/projects",
            post(create_project).route_layer(auth.require("projects:create")?),
        )
        .route(
            "/projects/{id}",
            delete(delete_project).route_layer(auth.require("projects:delete")?),
        )
        .route(
            "/projects/{id}/tasks",
            get(list_tasks).route_layer(auth.require("tasks:read")?),
        )
        .route(
            "/projects/{id}/tasks",
            post(create_task).route_layer(auth.require("tasks:update")?),
        )
        .route(
            "/projects/{id}/tasks/{n}/assignee",
            put(assign_task)
                .route_layer(auth.require(Rule::all_of(["tasks:assign", "tasks:read"]))?),
        )
        .route("/me/permissions", get(me_permissions))
        .route("/members/{user}/roles", put(assign_member_roles))
        .layer(auth)
        // After the layer: these carry no bearer token.
        .route("/healthz", get(healthz))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/webhooks/scalekit", webhook_route(webhooks, 1 << 20))
        .with_state(state);
    Ok(app)
}

/// The example policy, with every seeded user's membership.
fn dev_engine(directory: &DevDirectory) -> Result<Engine, BoxError> {
    let policy: Policy = POLICY.parse()?;
    let engine = Engine::new(&policy)?;
    let seed = DEV_USERS
        .iter()
        .map(|(user, _, roles)| {
            directory.set(ORG, user, roles);
            Change::SetMembership {
                organization: ORG.into(),
                user: (*user).into(),
                roles: roles.iter().map(|r| (*r).to_owned()).collect(),
                groups: None,
                creator: false,
            }
        })
        .collect();
    engine.apply_batch(seed, ChangeMeta::by("dev-seed"))?;
    Ok(engine)
}

/// The app in development mode, serving on a bound listener.
#[derive(Debug)]
pub struct DevApp {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The issuer of its tokens (its JWKS is served by the app).
    pub issuer: Arc<DevIssuer>,
    /// Scalekit's stand-in.
    pub directory: Arc<DevDirectory>,
    /// The engine.
    pub engine: Engine,
    server: tokio::task::JoinHandle<()>,
}

impl DevApp {
    /// Starts the app in development mode on `listen` (port 0: any free
    /// port), and waits until its verifier has read the JWKS the app serves.
    ///
    /// # Errors
    ///
    /// When the address cannot be bound, the key cannot be generated, or
    /// the JWKS cannot be read back.
    pub async fn start(listen: &str) -> Result<Self, BoxError> {
        Self::start_with_key(listen, None).await
    }

    /// As [`start`](Self::start), signing with the RSA private key `pem`
    /// (PEM) when given, so that tokens minted elsewhere with it
    /// (`rolegraph mint-token --key FILE`) verify.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start), or a key that is not an RSA private key.
    pub async fn start_with_key(listen: &str, pem: Option<&str>) -> Result<Self, BoxError> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let issuer = Arc::new(match pem {
            Some(pem) => DevIssuer::from_pkcs8_pem("dev-key-1", pem)?,
            None => DevIssuer::generate("dev-key-1")?,
        });
        let directory = Arc::new(DevDirectory::new(POLICY.parse()?));
        let engine = dev_engine(&directory)?;
        let base = format!("http://{addr}");
        let verifier = JwksVerifier::builder(
            format!("{base}/.well-known/jwks.json"),
            base.clone(),
            DEV_AUDIENCE,
        )
        .build()?;
        let webhooks = Arc::new(
            Handler::new(engine.clone(), WebhookVerifier::new([DEV_WEBHOOK_SECRET])?)
                .with_source(Arc::clone(&directory)),
        );
        let app = router(
            &engine,
            Arc::new(verifier.clone()),
            webhooks,
            Some(Arc::clone(&directory)),
            Some(issuer.jwks_json()),
        )?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        // The verifier reads the JWKS over HTTP, from the app itself.
        verifier.refresh().await?;
        Ok(Self {
            addr,
            issuer,
            directory,
            engine,
            server,
        })
    }

    /// The app's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A token for a seeded user (their roles and email in the claims, as
    /// Scalekit would issue it), valid for an hour.
    ///
    /// # Errors
    ///
    /// When the user is not seeded or signing fails.
    pub fn token(&self, user: &str) -> Result<String, BoxError> {
        let (_, email, roles) = DEV_USERS
            .iter()
            .find(|(id, _, _)| *id == user)
            .ok_or_else(|| format!("no seeded user `{user}`"))?;
        let mut claims = DevClaims::new(user, self.url(), [DEV_AUDIENCE]);
        claims.organization = Some(ORG.into());
        claims.roles = roles.iter().map(|r| (*r).to_owned()).collect();
        claims.email = Some((*email).to_owned());
        Ok(self.issuer.mint(&claims)?)
    }

    /// Stops serving.
    pub fn stop(self) {
        self.server.abort();
    }
}

// ----------------------------------------------------------------- the tour

/// One HTTP answer, as the tour looks at it.
struct Answer {
    status: u16,
    www_authenticate: String,
    /// `x-rolegraph-revision`, when the answer carries it.
    revision: Option<String>,
    body: String,
}

struct Tour<'a> {
    client: reqwest::Client,
    base: String,
    out: &'a mut dyn Write,
    steps: usize,
    failures: usize,
}

/// What a step expects: the status, and texts the `WWW-Authenticate`
/// header and the body must contain.
struct Expect<'a> {
    status: u16,
    challenge: &'a [&'a str],
    body: &'a [&'a str],
}

const fn expect(status: u16) -> Expect<'static> {
    Expect {
        status,
        challenge: &[],
        body: &[],
    }
}

impl Tour<'_> {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<Answer, BoxError> {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let www_authenticate = response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let revision = response
            .headers()
            .get(REVISION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.text().await?;
        Ok(Answer {
            status,
            www_authenticate,
            revision,
            body,
        })
    }

    /// Prints a step and whether its answer is the expected one.
    fn check(
        &mut self,
        request: &str,
        what: &str,
        answer: &Answer,
        want: &Expect<'_>,
    ) -> std::io::Result<()> {
        self.steps += 1;
        let ok = answer.status == want.status
            && want
                .challenge
                .iter()
                .all(|c| answer.www_authenticate.contains(c))
            && want.body.iter().all(|b| answer.body.contains(b));
        if !ok {
            self.failures += 1;
        }
        let mark = if ok { "ok  " } else { "FAIL" };
        writeln!(self.out, "{mark} {:>2}. {request}", self.steps)?;
        writeln!(self.out, "         {what}")?;
        write!(self.out, "         → {}", answer.status)?;
        if !answer.www_authenticate.is_empty() {
            write!(self.out, "  WWW-Authenticate: {}", answer.www_authenticate)?;
        }
        writeln!(self.out)?;
        let parsed = serde_json::from_str::<Value>(&answer.body).ok();
        let listed = parsed
            .as_ref()
            .and_then(|v| v.get("permissions").and_then(Value::as_array).cloned());
        if let Some(permissions) = listed {
            let field = |k: &str| {
                parsed
                    .as_ref()
                    .and_then(|v| v.get(k))
                    .map(Value::to_string)
                    .unwrap_or_default()
            };
            writeln!(
                self.out,
                "           roles {} at revision {}, decided by {}",
                field("roles"),
                field("revision"),
                field("decided_by")
            )?;
            // `GET /me/permissions`: one line per permission, with its path
            // walked up the `via` links of the answer's `inheritance`.
            let tree = parsed
                .as_ref()
                .and_then(|v| v.get("inheritance").and_then(Value::as_array).cloned())
                .unwrap_or_default();
            let name = |i: usize| {
                tree.get(i)
                    .and_then(|r| r.get("name").and_then(Value::as_str))
                    .unwrap_or_default()
            };
            for p in &permissions {
                let mut path = Vec::new();
                let mut at = p.get("role").and_then(Value::as_u64);
                // At most one step per role listed: a malformed answer
                // cannot loop.
                while let Some(i) = at.and_then(|i| usize::try_from(i).ok()) {
                    if path.len() >= tree.len() {
                        break;
                    }
                    path.push(name(i));
                    at = tree
                        .get(i)
                        .and_then(|r| r.get("via"))
                        .and_then(Value::as_u64);
                }
                path.reverse();
                writeln!(
                    self.out,
                    "           {:<18} via {}",
                    p.get("permission")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                    path.join(" → ")
                )?;
            }
        } else if !answer.body.is_empty() {
            let mut body: String = answer.body.chars().take(300).collect();
            if body.len() < answer.body.len() {
                body.push('…');
            }
            writeln!(self.out, "           {body}")?;
        }
        if !ok {
            writeln!(
                self.out,
                "         expected {} with {:?} in WWW-Authenticate and {:?} in the body",
                want.status, want.challenge, want.body
            )?;
        }
        writeln!(self.out)
    }
}

/// Headers and body of a webhook delivery.
type Delivery = (Vec<(&'static str, String)>, Vec<u8>);

/// A signed Scalekit webhook delivery: headers and body.
fn signed_delivery(id: &str, body: &Value) -> Result<Delivery, BoxError> {
    let body = serde_json::to_vec(body)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let timestamp = i64::try_from(now)?;
    let signature = WebhookVerifier::new([DEV_WEBHOOK_SECRET])?.sign(id, timestamp, &body);
    Ok((
        vec![
            ("webhook-id", id.to_owned()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", signature),
        ],
        body,
    ))
}

/// Starts the app on an ephemeral 127.0.0.1 port, drives it over real HTTP
/// and writes the transcript to `out`. `Ok(true)` when every answer was the
/// expected one.
///
/// # Errors
///
/// When the app cannot start or a request cannot be made at all.
pub async fn tour(out: &mut dyn Write) -> Result<bool, BoxError> {
    use reqwest::Method;
    let app = DevApp::start("127.0.0.1:0").await?;
    let (alice, bob, carol) = (
        app.token("usr_alice")?,
        app.token("usr_bob")?,
        app.token("usr_carol")?,
    );
    writeln!(
        out,
        "rolegraph tour: the example app on {} (development mode)",
        app.url()
    )?;
    writeln!(out, "  policy: examples/policy.json; organization {ORG}")?;
    writeln!(
        out,
        "  alice: admin, project_admin   bob: project_manager   carol: team_member"
    )?;
    writeln!(out, "  tokens: RS256, verified against the JWKS the app serves; principals from the engine's memberships\n")?;
    let mut t = Tour {
        client: reqwest::Client::new(),
        base: app.url(),
        out,
        steps: 0,
        failures: 0,
    };
    let project = |name: &str| Some(json!({"name": name}).to_string().into_bytes());

    let a = t.send(Method::GET, "/healthz", None, &[], None).await?;
    t.check(
        "GET /healthz",
        "the app is up, at the policy revision it serves",
        &a,
        &Expect {
            body: &["\"revision\""],
            ..expect(200)
        },
    )?;

    let a = t
        .send(
            Method::POST,
            "/projects",
            Some(&bob),
            &[],
            project("Launch"),
        )
        .await?;
    t.check(
        "POST /projects as bob",
        "allowed: project_manager grants projects:create",
        &a,
        &Expect {
            body: &["\"owner\":\"usr_bob\""],
            ..expect(201)
        },
    )?;

    let a = t
        .send(Method::GET, "/projects", Some(&carol), &[], None)
        .await?;
    t.check(
        "GET /projects as carol",
        "allowed: team_member grants projects:read",
        &a,
        &Expect {
            body: &["Launch"],
            ..expect(200)
        },
    )?;

    let a = t
        .send(
            Method::POST,
            "/projects",
            Some(&carol),
            &[],
            project("Side quest"),
        )
        .await?;
    t.check(
        "POST /projects as carol",
        "denied: RFC 6750 insufficient_scope, naming the missing permission",
        &a,
        &Expect {
            challenge: &["error=\"insufficient_scope\"", "scope=\"projects:create\""],
            ..expect(403)
        },
    )?;

    let a = t.send(Method::GET, "/projects", None, &[], None).await?;
    t.check(
        "GET /projects without a token",
        "401 with a bare Bearer challenge (no error code)",
        &a,
        &Expect {
            challenge: &["Bearer realm=\"projects\""],
            ..expect(401)
        },
    )?;

    let stranger = DevIssuer::generate("someone-elses-key")?;
    let mut claims = DevClaims::new("usr_bob", app.url(), [DEV_AUDIENCE]);
    claims.organization = Some(ORG.into());
    claims.roles = vec!["admin".into()];
    let forged = stranger.mint(&claims)?;
    let a = t
        .send(Method::GET, "/projects", Some(&forged), &[], None)
        .await?;
    t.check(
        "GET /projects with a token signed by another key",
        "401 invalid_token",
        &a,
        &Expect {
            challenge: &["error=\"invalid_token\""],
            ..expect(401)
        },
    )?;

    let a = t
        .send(
            Method::GET,
            "/projects",
            None,
            &[("authorization", "Basic Ym9iOmh1bnRlcjI=".into())],
            None,
        )
        .await?;
    t.check(
        "GET /projects with `Authorization: Basic …`",
        "400 invalid_request",
        &a,
        &Expect {
            challenge: &["error=\"invalid_request\""],
            ..expect(400)
        },
    )?;

    let a = t
        .send(Method::GET, "/me/permissions", Some(&bob), &[], None)
        .await?;
    t.check(
        "GET /me/permissions as bob",
        "what bob may do, and through which roles",
        &a,
        &Expect {
            body: &[
                "\"decided_by\":\"subject\"",
                "\"role_name\":\"team_member\"",
            ],
            ..expect(200)
        },
    )?;

    // Scalekit: an admin takes project_manager away from bob; Scalekit sends
    // `user.organization_membership_updated` (no roles in it: the handler
    // fetches bob's roles from the source).
    app.directory.set(ORG, "usr_bob", &["team_member"]);
    let now = time_rfc3339();
    let (headers, body) = signed_delivery(
        "msg_tour_1",
        &json!({
            "spec_version": "1", "id": "evt_tour_1", "type": "user.organization_membership_updated",
            "occurred_at": now, "environment_id": "env_dev", "organization_id": ORG, "object": "OrgMembership",
            "data": {"organization": {"id": ORG}, "user": {"id": "usr_bob", "email": "bob@acme.test"}},
        }),
    )?;
    let a = t
        .send(
            Method::POST,
            "/webhooks/scalekit",
            None,
            &headers,
            Some(body.clone()),
        )
        .await?;
    t.check(
        "POST /webhooks/scalekit (signed): bob's membership updated",
        "applied: bob's roles fetched, project_manager gone",
        &a,
        &Expect {
            body: &["\"applied\""],
            ..expect(200)
        },
    )?;

    let a = t
        .send(
            Method::POST,
            "/projects",
            Some(&bob),
            &[],
            project("Launch 2"),
        )
        .await?;
    t.check(
        "POST /projects as bob, same token",
        "denied on the very next request: his token still says project_manager, the engine does not",
        &a,
        &Expect { challenge: &["scope=\"projects:create\""], ..expect(403) },
    )?;

    let a = t
        .send(
            Method::POST,
            "/webhooks/scalekit",
            None,
            &headers,
            Some(body),
        )
        .await?;
    t.check(
        "the same delivery again",
        "a duplicate: acknowledged, nothing changes",
        &a,
        &Expect {
            body: &["duplicate"],
            ..expect(200)
        },
    )?;

    let (mut bad, body) = signed_delivery(
        "msg_tour_2",
        &json!({"id": "evt_x", "type": "role.deleted", "occurred_at": time_rfc3339(), "data": {"name": "admin"}}),
    )?;
    if let Some(sig) = bad.iter_mut().find(|(n, _)| *n == "webhook-signature") {
        sig.1 = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into();
    }
    let a = t
        .send(Method::POST, "/webhooks/scalekit", None, &bad, Some(body))
        .await?;
    t.check(
        "POST /webhooks/scalekit with a wrong signature",
        "refused, nothing changes",
        &a,
        &expect(401),
    )?;

    let roles = |r: &[&str]| Some(json!({"roles": r}).to_string().into_bytes());
    let a = t
        .send(
            Method::PUT,
            "/members/usr_carol/roles",
            Some(&bob),
            &[],
            roles(&["project_manager"]),
        )
        .await?;
    t.check(
        "PUT /members/usr_carol/roles as bob",
        "refused: assigning needs admin, users.write or roles.assign",
        &a,
        &Expect {
            body: &["assigning roles needs"],
            ..expect(403)
        },
    )?;

    let a = t
        .send(
            Method::PUT,
            "/members/usr_bob/roles",
            Some(&alice),
            &[],
            roles(&["project_manager"]),
        )
        .await?;
    t.check(
        "PUT /members/usr_bob/roles as alice (admin)",
        "assigned, and audited with alice as the actor",
        &a,
        &Expect {
            body: &["\"actor\":\"usr_alice\"", "\"after\":[\"project_manager\"]"],
            ..expect(200)
        },
    )?;

    // Read-your-writes: the assignment's revision, sent back, makes the
    // next request be decided at or after it (on any instance).
    let written = a.revision.clone().unwrap_or_default();
    let a = t
        .send(
            Method::POST,
            "/projects",
            Some(&bob),
            &[(REVISION_HEADER, written.clone())],
            project("Launch 2"),
        )
        .await?;
    t.check(
        &format!("POST /projects as bob, {REVISION_HEADER}: {written}"),
        "allowed again, decided at or after the assignment",
        &a,
        &expect(201),
    )?;

    let (steps, failures) = (t.steps, t.failures);
    if failures == 0 {
        writeln!(t.out, "all {steps} steps answered as expected")?;
    } else {
        writeln!(
            t.out,
            "{failures} of {steps} steps did not answer as expected"
        )?;
    }
    app.stop();
    Ok(failures == 0)
}

/// Now, as RFC 3339 with nanoseconds.
fn time_rfc3339() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        now.subsec_nanos()
    )
}

// --------------------------------------------------------------------- main

async fn serve_dev(listen: &str, key: Option<&str>) -> Result<(), BoxError> {
    let pem = key.map(std::fs::read_to_string).transpose()?;
    let app = DevApp::start_with_key(listen, pem.as_deref()).await?;
    let base = app.url();
    println!("rolegraph example app (development mode) on {base}");
    println!("  JWKS: {base}/.well-known/jwks.json   webhook secret: {DEV_WEBHOOK_SECRET}");
    for (user, _, roles) in DEV_USERS {
        println!(
            "\n  {user} ({}):\n  export TOKEN_{}={}",
            roles.join(", "),
            user.trim_start_matches("usr_").to_uppercase(),
            app.token(user)?
        );
    }
    println!("\n  curl -H \"Authorization: Bearer $TOKEN_BOB\" {base}/me/permissions");
    println!("  curl -X POST -H \"Authorization: Bearer $TOKEN_CAROL\" -d '{{\"name\":\"x\"}}' {base}/projects -i");
    println!("\n  Ctrl-C stops it.");
    std::future::pending::<()>().await;
    Ok(())
}

async fn serve_scalekit(
    listen: &str,
    env_url: &str,
    client_id: &str,
    secret: &str,
) -> Result<(), BoxError> {
    let policy: Policy = match std::env::var("ROLEGRAPH_POLICY") {
        Ok(path) => std::fs::read_to_string(path)?.parse()?,
        Err(_) => POLICY.parse()?,
    };
    let engine = match std::env::var("ROLEGRAPH_STATE") {
        Ok(dir) => Engine::open(dir, &policy)?,
        Err(_) => Engine::new(&policy)?,
    };
    let verifier = JwksVerifier::for_environment(env_url, client_id).build()?;
    let webhooks = Arc::new(Handler::new(
        engine.clone(),
        WebhookVerifier::new([secret])?,
    ));
    let app = router(&engine, Arc::new(verifier), webhooks, None, None)?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!(
        "rolegraph example app on http://{} for {env_url}",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let listen = value("--listen").unwrap_or_else(|| "127.0.0.1:3000".into());
    let key = value("--key");
    let result = if args.iter().any(|a| a == "--tour") {
        let mut stdout = std::io::stdout().lock();
        match tour(&mut stdout).await {
            Ok(true) => return std::process::ExitCode::SUCCESS,
            Ok(false) => return std::process::ExitCode::FAILURE,
            Err(e) => Err(e),
        }
    } else {
        let env = [
            "SCALEKIT_ENVIRONMENT_URL",
            "SCALEKIT_CLIENT_ID",
            "SCALEKIT_WEBHOOK_SECRET",
        ]
        .map(|k| std::env::var(k).ok());
        match env {
            [Some(url), Some(id), Some(secret)] => {
                serve_scalekit(&listen, &url, &id, &secret).await
            }
            _ => serve_dev(&listen, key.as_deref()).await,
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
