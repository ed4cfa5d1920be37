//! The authorization layer over real HTTP: an axum app on 127.0.0.1, a real
//! client, the RFC 6750 answers byte for byte, both modes, start-up
//! failures, and requirements kept right across policy swaps.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod http_common;

use http_common::*;
use rolegraph::http::{AuthorizeLayer, Mode, Rule};
use rolegraph::{Change, ChangeMeta, Engine};

const REALM: &str = r#"Bearer realm="projects""#;

async fn app(mode: Mode) -> (String, Engine, Issuer) {
    let engine = Engine::new(&policy()).unwrap();
    let issuer = Issuer::start().await;
    let auth = AuthorizeLayer::new(engine.clone(), issuer.verifier())
        .mode(mode)
        .realm("projects");
    let base = serve(router(&auth)).await;
    (base, engine, issuer)
}

#[tokio::test]
async fn allowed_request_reaches_the_handler_with_the_principal() {
    let (base, _engine, issuer) = app(Mode::Claims).await;
    let token = issuer.mint(&TestClaims::new("usr_1", &["editor"]));
    let a = get_as(&client(), &format!("{base}/projects"), Some(&token)).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body, "usr_1");
    assert_eq!(a.source.as_deref(), Some("claims"));
    assert!(a.challenge.is_none());
    // A token seen before is a verified-token cache hit, not an RSA
    // verification.
    let before = issuer.stats().signature_verifications;
    let a = get_as(&client(), &format!("{base}/projects"), Some(&token)).await;
    assert_eq!(a.status, 200);
    assert_eq!(issuer.stats().signature_verifications, before);
    assert!(issuer.stats().cache_hits >= 1);
    // Any of: `users:write` claimed directly is enough for /admin.
    let mut c = TestClaims::new("usr_2", &["guest"]);
    c.permissions = vec!["users:write".into()];
    let a = get_as(&client(), &format!("{base}/admin"), Some(&issuer.mint(&c))).await;
    assert_eq!(a.status, 200, "{a:?}");
    // The role requirement: `admin` itself.
    let t = issuer.mint(&TestClaims::new("usr_3", &["admin"]));
    assert_eq!(
        get_as(&client(), &format!("{base}/admin"), Some(&t))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn denied_request_gets_insufficient_scope_naming_the_missing_permission() {
    let (base, _engine, issuer) = app(Mode::Claims).await;
    let token = issuer.mint(&TestClaims::new("usr_1", &["editor"]));
    let resp = client()
        .post(format!("{base}/projects/delete"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let a = Answer::of(resp).await;
    assert_eq!(a.status, 403);
    assert_eq!(
        a.challenge.as_deref(),
        Some(r#"Bearer realm="projects", error="insufficient_scope", scope="projects:delete""#)
    );
    let p = a.problem();
    assert_eq!(p["status"], 403);
    assert_eq!(p["title"], "Forbidden");
    assert_eq!(p["type"], "about:blank");
    assert_eq!(p["detail"], "missing permission: projects:delete");
    // Nothing about the token's roles or the policy leaks.
    assert!(!a.body.contains("editor"), "{}", a.body);

    // Role-or-permission: the scope names the permission alternative.
    let guest = issuer.mint(&TestClaims::new("usr_2", &["guest"]));
    let a = get_as(&client(), &format!("{base}/admin"), Some(&guest)).await;
    assert_eq!(a.status, 403);
    assert_eq!(
        a.challenge.as_deref(),
        Some(r#"Bearer realm="projects", error="insufficient_scope", scope="users:write""#)
    );
}

#[tokio::test]
async fn missing_header_is_a_401_with_no_error_code() {
    let (base, _engine, issuer) = app(Mode::Claims).await;
    let a = get_as(&client(), &format!("{base}/projects"), None).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.challenge.as_deref(), Some(REALM));
    assert_eq!(a.problem()["detail"], "a bearer token is required");
    assert_eq!(issuer.verifications(), 0);
    // Even the unprotected route is behind the layer.
    assert_eq!(
        get_as(&client(), &format!("{base}/me"), None).await.status,
        401
    );
}

#[tokio::test]
async fn malformed_headers_are_400_invalid_request_and_never_verified() {
    let (base, _engine, issuer) = app(Mode::Claims).await;
    let token = issuer.mint(&TestClaims::new("usr_1", &["viewer"]));
    let cases: Vec<Vec<(&str, Vec<u8>)>> = vec![
        vec![("authorization", format!("Basic {token}").into_bytes())],
        vec![("authorization", b"Bearer".to_vec())],
        vec![("authorization", b"Bearer a b".to_vec())],
        vec![("authorization", b"Bearer t\xc3\xa9st".to_vec())],
        vec![
            ("authorization", format!("Bearer {token}").into_bytes()),
            ("authorization", format!("Bearer {token}").into_bytes()),
        ],
    ];
    for headers in cases {
        let mut req = client().get(format!("{base}/projects"));
        for (k, v) in &headers {
            req = req.header(*k, reqwest::header::HeaderValue::from_bytes(v).unwrap());
        }
        let a = Answer::of(req.send().await.unwrap()).await;
        assert_eq!(a.status, 400, "{headers:?}: {a:?}");
        let challenge = a.challenge.clone().unwrap();
        assert!(
            challenge.starts_with(
                r#"Bearer realm="projects", error="invalid_request", error_description=""#
            ),
            "{challenge}"
        );
        assert_eq!(a.problem()["status"], 400);
    }
    assert_eq!(issuer.verifications(), 0);
}

async fn refused(base: &str, token: &str) -> Answer {
    let a = get_as(&client(), &format!("{base}/projects"), Some(token)).await;
    assert_eq!(a.status, 401, "{a:?}");
    assert_eq!(a.problem()["status"], 401);
    a
}

fn invalid_token(description: &str) -> String {
    format!(r#"Bearer realm="projects", error="invalid_token", error_description="{description}""#)
}

#[tokio::test]
async fn bad_tokens_are_401_invalid_token_with_a_description() {
    let (base, _engine, issuer) = app(Mode::Claims).await;
    let valid = TestClaims::new("usr_1", &["viewer"]);

    let a = refused(&base, "garbage.token.here").await;
    assert_eq!(
        a.challenge.unwrap(),
        invalid_token("the access token is invalid")
    );

    let mut c = valid.clone();
    c.exp = now_s() - 3600;
    let a = refused(&base, &issuer.mint(&c)).await;
    assert_eq!(
        a.challenge.unwrap(),
        invalid_token("the access token expired")
    );

    let mut c = valid.clone();
    c.nbf = Some(now_s() + 3600);
    let a = refused(&base, &issuer.mint(&c)).await;
    assert_eq!(
        a.challenge.unwrap(),
        invalid_token("the access token is not valid yet")
    );

    let mut c = valid.clone();
    c.iss = "https://evil.example".into();
    let a = refused(&base, &issuer.mint(&c)).await;
    assert_eq!(
        a.challenge.unwrap(),
        invalid_token("the access token has the wrong issuer")
    );

    let mut c = valid.clone();
    c.aud = vec!["prj_other".into()];
    let a = refused(&base, &issuer.mint(&c)).await;
    assert_eq!(
        a.challenge.unwrap(),
        invalid_token("the access token has the wrong audience")
    );

    // The audience as an array holding ours is accepted.
    let mut c = valid.clone();
    c.aud = vec!["prj_other".into(), AUDIENCE.into()];
    let a = get_as(
        &client(),
        &format!("{base}/projects"),
        Some(&issuer.mint(&c)),
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
}

#[tokio::test]
async fn optional_extractor_sees_the_principal() {
    let (base, _engine, issuer) = app(Mode::Claims).await;
    let token = issuer.mint(&TestClaims::new("usr_1", &["viewer"]));
    let a = get_as(&client(), &format!("{base}/me"), Some(&token)).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body, r#"usr_1 ["projects:read"]"#);
}

#[tokio::test]
async fn membership_mode_prefers_the_engine_and_records_the_source() {
    let (base, engine, issuer) = app(Mode::Membership).await;
    let set = |user: &str, roles: &[&str]| Change::SetMembership {
        organization: ORG.into(),
        user: user.into(),
        roles: roles.iter().map(|r| (*r).into()).collect(),
        groups: None,
        creator: false,
    };
    engine
        .apply(set("usr_sub", &["admin"]), ChangeMeta::by("test"))
        .unwrap();
    engine
        .apply(set("mail@example.com", &["admin"]), ChangeMeta::by("test"))
        .unwrap();
    let c = client();
    let url = format!("{base}/projects/delete");
    let post = |token: String| {
        let c = c.clone();
        let url = url.clone();
        async move { Answer::of(c.post(url).bearer_auth(token).send().await.unwrap()).await }
    };

    // The token says guest; the engine says admin (by sub).
    let a = post(issuer.mint(&TestClaims::new("usr_sub", &["guest"]))).await;
    assert_eq!((a.status, a.source.as_deref()), (200, Some("subject")));

    // Unknown sub, known email (case and spaces as the handler keys it).
    let mut t = TestClaims::new("usr_other", &["guest"]);
    t.email = Some(" Mail@Example.com".into());
    let a = post(issuer.mint(&t)).await;
    assert_eq!((a.status, a.source.as_deref()), (200, Some("email")));

    // Unknown to the engine: the token's claims decide.
    let a = post(issuer.mint(&TestClaims::new("usr_new", &["admin"]))).await;
    assert_eq!((a.status, a.source.as_deref()), (200, Some("claims")));

    // Revoked in the engine: the very next request is denied although the
    // token (and its permissions claim) still says admin.
    engine
        .apply(set("usr_sub", &["viewer"]), ChangeMeta::by("test"))
        .unwrap();
    let mut t = TestClaims::new("usr_sub", &["admin"]);
    t.permissions = vec!["projects:delete".into()];
    let a = post(issuer.mint(&t)).await;
    assert_eq!(a.status, 403, "{a:?}");
}

#[tokio::test]
async fn undeclared_names_fail_at_start_up_listing_every_one() {
    let engine = Engine::new(&policy()).unwrap();
    let issuer = Issuer::start().await;
    let auth = AuthorizeLayer::new(engine, issuer.verifier());
    let err = auth
        .require(
            Rule::permission("projects:reed")
                .or(Rule::role("ghost"))
                .or(Rule::all_of(["projects:read", "users:wirte"])),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "route requirement (`projects:reed`) or (role `ghost` or a role extending it) or \
         (all of `projects:read`, `users:wirte`) does not resolve: permission `projects:reed` \
         is not declared; permission `users:wirte` is not declared; role `ghost` does not exist"
    );
    assert_eq!(err.problems.len(), 3);
}

fn meta() -> ChangeMeta {
    ChangeMeta::by("webhook")
}

#[tokio::test]
async fn a_permission_deleted_and_recreated_is_denied_then_allowed_again() {
    let (base, engine, issuer) = app(Mode::Claims).await;
    let token = issuer.mint(&TestClaims::new("usr_1", &["admin"]));
    let url = format!("{base}/projects/delete");
    let post = || async {
        Answer::of(
            client()
                .post(&url)
                .bearer_auth(&token)
                .send()
                .await
                .unwrap(),
        )
        .await
    };
    assert_eq!(post().await.status, 200);

    engine
        .apply(
            Change::DeletePermission {
                name: "projects:delete".into(),
            },
            meta(),
        )
        .unwrap();
    let a = post().await;
    assert_eq!(a.status, 403, "deleted permission: {a:?}");

    // A permission that sorts before it shifts nothing if ids are stable,
    // and everything if they are not: the route must not care.
    for name in ["aaa:first", "projects:delete"] {
        engine
            .apply(
                Change::CreatePermission {
                    name: name.into(),
                    description: None,
                },
                meta(),
            )
            .unwrap();
    }
    // Declared again but granted to nobody yet: still denied.
    assert_eq!(post().await.status, 403);
    engine
        .apply(
            Change::GrantPermission {
                organization: None,
                role: "admin".into(),
                permission: "projects:delete".into(),
            },
            meta(),
        )
        .unwrap();
    let a = post().await;
    assert_eq!(a.status, 200, "re-created and granted: {a:?}");
    assert_eq!(a.revision, Some(engine.revision()));
}

#[test]
fn public_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<AuthorizeLayer>();
    send_sync::<rolegraph::http::Authorize<()>>();
    send_sync::<rolegraph::http::RequireLayer>();
    send_sync::<rolegraph::http::Require<()>>();
    send_sync::<rolegraph::http::Authenticated>();
    send_sync::<rolegraph::http::Rejection>();
    send_sync::<rolegraph::http::RequireError>();
    send_sync::<Rule>();
    send_sync::<rolegraph::http::ResponseBody<String>>();
}

#[tokio::test]
async fn a_responder_replaces_the_answers_it_chooses() {
    use rolegraph::http::Rejection;
    let engine = Engine::new(&policy()).unwrap();
    let issuer = Issuer::start().await;
    let auth = AuthorizeLayer::new(engine, issuer.verifier())
        .realm("projects")
        .responder(|rejection: &Rejection, realm: &str| match rejection {
            Rejection::InsufficientScope { .. } => {
                let mut r = http::Response::new(bytes::Bytes::from_static(b"no"));
                *r.status_mut() = http::StatusCode::NOT_FOUND;
                r
            }
            other => other.default_response(realm),
        });
    let base = serve(router(&auth)).await;
    let guest = issuer.mint(&TestClaims::new("usr_1", &["guest"]));
    let a = get_as(&client(), &format!("{base}/projects"), Some(&guest)).await;
    assert_eq!((a.status, a.body.as_str(), a.challenge), (404, "no", None));
    // The kinds it leaves alone keep the RFC 6750 answer.
    let a = get_as(&client(), &format!("{base}/projects"), None).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.challenge.as_deref(), Some(REALM));
}

#[tokio::test]
async fn keys_unreachable_is_a_503_with_retry_after() {
    // A JWKS URL on a loopback port nobody listens on.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/keys", closed.local_addr().unwrap());
    drop(closed);
    let verifier = rolegraph::token::JwksVerifier::builder(url, ISSUER, AUDIENCE)
        .refresh_interval(std::time::Duration::ZERO)
        .build()
        .unwrap();
    assert!(verifier.refresh().await.is_err());
    let issuer = Issuer::start().await;
    let auth = AuthorizeLayer::new(
        Engine::new(&policy()).unwrap(),
        std::sync::Arc::new(verifier),
    )
    .retry_after(std::time::Duration::from_secs(7));
    let base = serve(router(&auth)).await;
    let token = issuer.mint(&TestClaims::new("usr_1", &["viewer"]));
    let a = get_as(&client(), &format!("{base}/projects"), Some(&token)).await;
    assert_eq!(a.status, 503, "{a:?}");
    assert_eq!(a.retry_after.as_deref(), Some("7"));
    assert!(a.challenge.is_none());
    assert_eq!(a.problem()["status"], 503);
}
