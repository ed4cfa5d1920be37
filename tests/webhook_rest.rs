//! The Scalekit REST source against a local server on 127.0.0.1 serving the
//! documented endpoints: client credentials, re-auth on a 401, a retried
//! 500, pagination to the last page, timeouts.
//!
//! The server is a minimal HTTP/1.1 responder on a thread; it answers one
//! request per connection, and stops when the test drops it (or after 30 s
//! or 1,000 requests, whichever comes first).

// Test helpers outside `#[test]` functions may fail loudly too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod webhook_common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rolegraph::scalekit::{Handler, RestOptions, RestSource, Source, SourceError};
use rolegraph::{Engine, Permission, Policy, Requirement, Role};
use serde_json::json;
use webhook_common::*;

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    authorization: Option<String>,
    body: String,
}

type Route = dyn Fn(&Request) -> (u16, String) + Send + Sync;

struct Server {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(route: Arc<Route>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log2, stop2) = (Arc::clone(&log), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut served = 0;
            while !stop2.load(Ordering::Relaxed) && Instant::now() < deadline && served < 1000 {
                match listener.accept() {
                    Ok((stream, _)) => {
                        served += 1;
                        if let Some(req) = answer(stream, &*route) {
                            log2.lock().unwrap().push(req);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Self {
            addr,
            log,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap().clone()
    }

    fn count(&self, method: &str, path: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == method && r.path == path)
            .count()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// Reads one request, answers it, closes the connection.
fn answer(mut stream: TcpStream, route: &Route) -> Option<Request> {
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let target = first.next()?.to_owned();
    let mut length = 0;
    let mut authorization = None;
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = v.trim().parse().unwrap_or(0),
                "authorization" => authorization = Some(v.trim().to_owned()),
                _ => {}
            }
        }
    }
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), q),
        None => (target.clone(), ""),
    };
    let query = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect();
    let req = Request {
        method,
        path,
        query,
        authorization,
        body,
    };
    let (status, text) = route(&req);
    let reply = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = stream.write_all(reply.as_bytes());
    let _ = stream.flush();
    Some(req)
}

/// A fake Scalekit environment: the documented endpoints, with a token that
/// "expires" after its first use, and one 500 on the organizations list.
fn scalekit() -> Arc<Route> {
    let state = Mutex::new((0u32, true, true)); // (tokens issued, reject once, fail once)
    Arc::new(move |req: &Request| {
        let mut st = state.lock().unwrap();
        if req.method == "POST" && req.path == "/oauth/token" {
            let form: BTreeMap<String, String> = req
                .body
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (decode(k), decode(v)))
                .collect();
            let ok = form.get("grant_type").map(String::as_str) == Some("client_credentials")
                && form.get("client_id").map(String::as_str) == Some("skc_test")
                && form.get("client_secret").map(String::as_str) == Some("s3cr&t /x");
            if !ok {
                return (401, r#"{"error":"invalid_client"}"#.into());
            }
            st.0 += 1;
            return (
                200,
                json!({"access_token": format!("tok{}", st.0), "expires_in": 3600}).to_string(),
            );
        }
        let token = req.authorization.clone().unwrap_or_default();
        if !token.starts_with("Bearer tok") {
            return (401, "{}".into());
        }
        if st.1 {
            // The first token "expires" at its first use.
            st.1 = false;
            return (401, r#"{"error":"token expired"}"#.into());
        }
        if token == "Bearer tok1" {
            return (401, "{}".into());
        }
        let page = req.query.get("page_token").cloned().unwrap_or_default();
        let perm = |n: &str, role: &str| json!({"name": n, "description": format!("may {n}"), "role_name": role});
        let env_roles = json!([
            {"id": "role_1", "name": "viewer", "display_name": "Viewer", "description": "reads",
             "permissions": [perm("projects:read", "viewer")], "default_member": true, "default_creator": false, "is_org_role": false},
            {"id": "role_2", "name": "editor", "display_name": "Editor", "extends": "viewer",
             "permissions": [perm("projects:update", "editor")], "is_org_role": false},
            {"id": "role_3", "name": "admin", "display_name": "Admin", "extends": "editor",
             "permissions": [perm("users:write", "admin")], "default_creator": true, "is_org_role": false}
        ]);
        let (status, body) = match (req.path.as_str(), page.as_str()) {
            ("/api/v1/permissions", _)
                if req.query.get("page_size").map(String::as_str) != Some("2") =>
            {
                (400, json!({"error": "page_size"}))
            }
            ("/api/v1/permissions", "") => (
                200,
                json!({"permissions": [
                {"name": "projects:read", "description": "may projects:read"},
                {"name": "projects:update", "description": "may projects:update"}], "next_page_token": "p2"}),
            ),
            ("/api/v1/permissions", "p2") => (
                200,
                json!({"permissions": [
                {"name": "users:write", "description": "may users:write"},
                {"name": "reports:read", "description": "may reports:read"}], "next_page_token": "p3"}),
            ),
            ("/api/v1/permissions", "p3") => (
                200,
                json!({"permissions": [
                {"name": "billing:read"}], "next_page_token": ""}),
            ),
            ("/api/v1/roles", _)
                if req.query.get("include").map(String::as_str) == Some("permissions") =>
            {
                (200, json!({"roles": env_roles}))
            }
            ("/api/v1/roles/editor/permissions", _) => (
                200,
                json!({"permissions": [
                {"name": "projects:update", "description": "may projects:update"}]}),
            ),
            ("/api/v1/roles/ghost/permissions", _) => (404, json!({"error": "not found"})),
            ("/api/v1/organizations", "") if st.2 => {
                st.2 = false;
                (500, json!({"error": "try again"}))
            }
            ("/api/v1/organizations", "") => (
                200,
                json!({"organizations": [{"id": "org_1"}, {"id": "org_2"}], "next_page_token": "o2"}),
            ),
            ("/api/v1/organizations", "o2") => (200, json!({"organizations": [{"id": "org_3"}]})),
            ("/api/v1/organizations/org_1/roles", _) => {
                let mut roles = env_roles.as_array().unwrap().clone();
                roles.push(
                    json!({"name": "org_boss", "display_name": "Boss", "extends": "admin",
                    "permissions": [perm("reports:read", "org_boss"), perm("users:write", "admin")],
                    "is_org_role": true, "default_member": true}),
                );
                (200, json!({"roles": roles}))
            }
            ("/api/v1/organizations/org_2/roles", _) => {
                let mut roles = env_roles.as_array().unwrap().clone();
                roles[0]["default_member"] = json!(false);
                roles[1]["default_member"] = json!(true);
                (200, json!({"roles": roles}))
            }
            ("/api/v1/organizations/org_3/roles", _) => (200, json!({"roles": env_roles})),
            ("/api/v1/organizations/org_1/directories", _) => (
                200,
                json!({"directories": [
                {"id": "dir_1", "role_assignments": {"assignments": [
                    {"group_id": "dirgroup_eng", "role_name": "editor"},
                    {"group_id": "dirgroup_mgr", "role_name": "admin"}]}},
                {"id": "dir_2", "role_assignments": {"assignments": [
                    {"group_id": "dirgroup_eng", "role_name": "viewer"}]}}]}),
            ),
            // A user's roles, two per page (the page size asked for).
            ("/api/v1/organizations/org_1/users/usr_1/roles", "") => (
                200,
                json!({"roles": [{"id": "role_1", "name": "viewer", "display_name": "Viewer"},
                                 {"id": "role_9", "name": "org_boss"}],
                       "next_page_token": "u2"}),
            ),
            ("/api/v1/organizations/org_1/users/usr_1/roles", "u2") => (
                200,
                json!({"roles": [{"name": "editor"}, {"name": "viewer"}], "next_page_token": ""}),
            ),
            ("/api/v1/organizations/org_1/users/usr_%2F2/roles", _) => {
                (200, json!({"roles": [{"name": "admin"}]}))
            }
            ("/api/v1/organizations/org_1/users/usr_bad/roles", _) => {
                (200, json!({"roles": [{"id": "role_1"}]}))
            }
            (p, _) if p.ends_with("/directories") => (200, json!({"directories": []})),
            _ => (404, json!({"error": "not found"})),
        };
        (status, body.to_string())
    })
}

fn options() -> RestOptions {
    RestOptions::default()
        .with_timeout(Duration::from_secs(5))
        .with_retries(2)
        .with_backoff(Duration::from_millis(5), Duration::from_millis(20))
        .with_page_size(2)
}

fn source(server: &Server) -> RestSource {
    RestSource::new(server.url() + "/", "skc_test", "s3cr&t /x").with_options(options())
}

fn expected_policy() -> Policy {
    let mut p = Policy::new();
    for n in [
        "projects:read",
        "projects:update",
        "users:write",
        "reports:read",
    ] {
        p.permissions.push(Permission {
            name: n.into(),
            description: Some(format!("may {n}")),
        });
    }
    p.permission("billing:read");
    p.role("viewer")
        .grant("projects:read")
        .display_name("Viewer")
        .description("reads");
    p.role("editor")
        .extends("viewer")
        .grant("projects:update")
        .display_name("Editor");
    p.role("admin")
        .extends("editor")
        .grant("users:write")
        .display_name("Admin");
    p.set_default_member_role("viewer");
    p.set_default_creator_role("admin");
    let org = p.organization("org_1");
    org.role("org_boss")
        .extends("admin")
        .grant("reports:read")
        .display_name("Boss");
    org.set_default_member_role("org_boss");
    org.map_group("dirgroup_eng", ["editor", "viewer"]);
    org.map_group("dirgroup_mgr", ["admin"]);
    p.organization("org_2").set_default_member_role("editor");
    p.organization("org_3");
    p
}

#[test]
fn a_full_read_follows_pages_reauthenticates_and_retries() {
    let server = Server::start(scalekit());
    let policy = source(&server).fetch_policy().unwrap();
    assert_eq!(policy, expected_policy());
    assert!(policy.compile().is_ok());
    // One 401 (the "expired" first token) made the source authenticate again.
    assert_eq!(server.count("POST", "/oauth/token"), 2);
    // Every page of the permissions, the first one twice (refused with the
    // expired token, then with the new one); the organizations' first page
    // twice (a 500, retried), then its second page.
    assert_eq!(server.count("GET", "/api/v1/permissions"), 4);
    assert_eq!(server.count("GET", "/api/v1/organizations"), 3);
    let pages: Vec<String> = server
        .requests()
        .iter()
        .filter(|r| r.path == "/api/v1/permissions")
        .map(|r| r.query.get("page_token").cloned().unwrap_or_default())
        .collect();
    assert_eq!(pages, ["", "", "p2", "p3"]);
    // After the re-auth, only the new token is used.
    let tokens: Vec<String> = server
        .requests()
        .iter()
        .filter_map(|r| r.authorization.clone())
        .collect();
    assert_eq!(tokens[0], "Bearer tok1");
    assert!(tokens[1..].iter().all(|t| t == "Bearer tok2"), "{tokens:?}");
}

#[test]
fn single_roles_and_their_permissions() {
    let server = Server::start(scalekit());
    let s = source(&server);
    let perms = s.fetch_role_permissions(None, "editor").unwrap();
    assert_eq!(
        perms,
        [Permission {
            name: "projects:update".into(),
            description: Some("may projects:update".into())
        }]
    );
    assert!(s.fetch_role_permissions(None, "ghost").unwrap().is_empty());
    let boss = Source::fetch_role(&s, Some("org_1"), "org_boss")
        .unwrap()
        .unwrap();
    let mut want = Role::named("org_boss");
    want.extends("admin")
        .grant("reports:read")
        .display_name("Boss");
    assert_eq!(boss, want);
    assert_eq!(
        s.fetch_role_permissions(Some("org_1"), "org_boss").unwrap()[0].name,
        "reports:read"
    );
    let editor = Source::fetch_role(&s, None, "editor").unwrap().unwrap();
    assert_eq!(editor.extends, ["viewer"]);
    assert_eq!(Source::fetch_role(&s, None, "nope").unwrap(), None);
    // An environment role is not an organization role.
    assert_eq!(
        Source::fetch_role(&s, Some("org_1"), "editor").unwrap(),
        None
    );
    // The token was fetched once more after the 401, then reused.
    assert_eq!(server.count("POST", "/oauth/token"), 2);
}

#[test]
fn retries_give_up_with_the_last_status() {
    let hits = Arc::new(Mutex::new(0));
    let h2 = Arc::clone(&hits);
    let server = Server::start(Arc::new(move |req: &Request| {
        if req.path == "/oauth/token" {
            return (200, r#"{"access_token":"tokX","expires_in":60}"#.into());
        }
        *h2.lock().unwrap() += 1;
        (503, "overloaded".into())
    }));
    let err = source(&server).fetch_policy().unwrap_err();
    match &err {
        SourceError::Status { status, body, .. } => {
            assert_eq!(*status, 503);
            assert_eq!(body, "overloaded");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("answered 503"), "{err}");
    // The first try and two retries.
    assert_eq!(*hits.lock().unwrap(), 3);
}

#[test]
fn credentials_refused_twice_are_an_error() {
    let server = Server::start(Arc::new(|req: &Request| {
        if req.path == "/oauth/token" {
            return (200, r#"{"access_token":"tokY","expires_in":60}"#.into());
        }
        (401, "{}".into())
    }));
    let err = source(&server)
        .fetch_role_permissions(None, "editor")
        .unwrap_err();
    assert!(
        matches!(err, SourceError::Unauthorized { status: 401, .. }),
        "{err:?}"
    );
    assert_eq!(server.count("POST", "/oauth/token"), 2);
    // Bad client credentials.
    let server = Server::start(scalekit());
    let wrong = RestSource::new(server.url(), "skc_test", "wrong").with_options(options());
    assert!(matches!(
        wrong.fetch_policy(),
        Err(SourceError::Unauthorized { status: 401, .. })
    ));
}

#[test]
fn a_server_that_does_not_answer_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = std::thread::spawn(move || {
        // Accept, say nothing for a while, then close: at most 2 connections.
        let mut held = Vec::new();
        listener.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + Duration::from_millis(1500);
        while Instant::now() < deadline && held.len() < 2 {
            if let Ok((s, _)) = listener.accept() {
                held.push(s);
            } else {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    });
    let s = RestSource::new(format!("http://{addr}"), "id", "secret").with_options(
        RestOptions::default()
            .with_timeout(Duration::from_millis(300))
            .with_retries(0),
    );
    let started = Instant::now();
    let err = s.fetch_policy().unwrap_err();
    assert!(matches!(err, SourceError::Transport { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    hold.join().unwrap();
}

#[test]
fn a_handler_starts_from_and_fetches_through_the_rest_source() {
    let server = Server::start(scalekit());
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path(), &Policy::new()).unwrap();
    let handler = Handler::new(engine, verifier()).with_source(source(&server));
    assert!(handler.bootstrap().unwrap());
    let snap = handler.engine().snapshot();
    let reports = Requirement::permission(&snap, "reports:read").unwrap();
    assert!(snap
        .principal(Some("org_1"), ["org_boss"])
        .satisfies(&reports));
    // A role event: its permissions come from `/api/v1/roles/editor/permissions`.
    // (The event is newer than the resync, as a live one would be.)
    let body = serde_json::to_vec(&json!({
        "spec_version": "1", "id": "evt_1", "type": "role.updated",
        "occurred_at": "2100-01-01T00:00:00Z",
        "data": {"id": "role_2", "name": "editor", "display_name": "Editor 2", "extends": "viewer"}
    }))
    .unwrap();
    let out = deliver(&handler, "msg_1", &body);
    assert_eq!(out.label(), "applied", "{}", out.body());
    let editor = handler
        .engine()
        .policy()
        .roles
        .into_iter()
        .find(|r| r.name == "editor")
        .unwrap();
    assert_eq!(editor.display_name.as_deref(), Some("Editor 2"));
    assert_eq!(editor.permissions, ["projects:update"]);
    assert!(server.count("GET", "/api/v1/roles/editor/permissions") >= 1);
}

#[test]
fn a_users_roles_follow_every_page() {
    let server = Server::start(scalekit());
    let s = source(&server);
    let roles = s.fetch_user_roles("org_1", "usr_1").unwrap().unwrap();
    // Every page, in order, duplicates dropped.
    assert_eq!(roles, ["viewer", "org_boss", "editor"]);
    let pages: Vec<(String, String)> = server
        .requests()
        .iter()
        .filter(|r| r.path == "/api/v1/organizations/org_1/users/usr_1/roles")
        .map(|r| {
            (
                r.query.get("page_size").cloned().unwrap_or_default(),
                r.query.get("page_token").cloned().unwrap_or_default(),
            )
        })
        .collect();
    // The first page twice: refused with the "expired" first token, then
    // fetched again after authenticating anew.
    assert_eq!(
        pages,
        [
            ("2".to_owned(), String::new()),
            ("2".to_owned(), String::new()),
            ("2".to_owned(), "u2".to_owned())
        ]
    );
    assert_eq!(server.count("POST", "/oauth/token"), 2);
    // Path segments are encoded.
    assert_eq!(
        s.fetch_user_roles("org_1", "usr_/2").unwrap().unwrap(),
        ["admin"]
    );
    // No such membership: `None`, not an error.
    assert_eq!(s.fetch_user_roles("org_1", "usr_404").unwrap(), None);
    // A role without a name is an error naming the URL.
    let err = s.fetch_user_roles("org_1", "usr_bad").unwrap_err();
    assert!(matches!(err, SourceError::Decode { .. }), "{err:?}");
    assert!(err.to_string().contains("usr_bad/roles"), "{err}");
}

#[test]
fn a_users_roles_are_retried_on_5xx() {
    let hits = Arc::new(Mutex::new(0));
    let h2 = Arc::clone(&hits);
    let server = Server::start(Arc::new(move |req: &Request| {
        if req.path == "/oauth/token" {
            return (200, r#"{"access_token":"tokZ","expires_in":60}"#.into());
        }
        let mut n = h2.lock().unwrap();
        *n += 1;
        if *n == 1 {
            return (502, "bad gateway".into());
        }
        (200, r#"{"roles":[{"name":"admin"}]}"#.into())
    }));
    let roles = source(&server).fetch_user_roles("org_1", "usr_1").unwrap();
    assert_eq!(roles.unwrap(), ["admin"]);
    assert_eq!(*hits.lock().unwrap(), 2);
}

#[test]
fn a_membership_event_fetches_the_users_roles_over_rest() {
    let server = Server::start(scalekit());
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path(), &Policy::new()).unwrap();
    let handler = Handler::new(engine, verifier()).with_source(source(&server));
    assert!(handler.bootstrap().unwrap());
    let body = event(
        "user.organization_membership_created",
        "evt_m1",
        10,
        Some("org_1"),
        json!({"organization": {"id": "org_1"}, "user": {"id": "usr_1", "email": "ann@example.com"}}),
    );
    let out = deliver(&handler, "msg_m1", &body);
    assert_eq!(out.label(), "applied", "{}", out.body());
    let snap = handler.engine().snapshot();
    let mut roles = snap.membership("org_1", "usr_1").unwrap().roles.clone();
    roles.sort();
    assert_eq!(roles, ["editor", "org_boss", "viewer"]);
    let reports = Requirement::permission(&snap, "reports:read").unwrap();
    assert!(snap.user_principal("org_1", "usr_1").satisfies(&reports));
}
