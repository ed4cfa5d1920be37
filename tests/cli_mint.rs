//! `rolegraph mint-token`: the real binary mints a token that the crate's
//! own verifier accepts with the key set it wrote; bad input is a one-line
//! error and exit status 2.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use rolegraph::token::{JwksVerifier, Verifier};

const KEY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/jwt/test_only_rsa_private.pem"
);

fn rolegraph(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rolegraph"))
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test]
async fn a_minted_token_verifies_with_the_written_key_set() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    let out = rolegraph(&[
        "mint-token",
        "--key",
        KEY,
        "--sub",
        "usr_bob",
        "--org",
        "org_1",
        "--roles",
        "project_manager,viewer",
        "--email",
        "bob@acme.test",
        "--issuer",
        "http://127.0.0.1:3000",
        "--audience",
        "skc_dev",
        "--ttl",
        "600",
        "--jwks",
        jwks.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    let token = token.trim();
    assert_eq!(token.split('.').count(), 3);
    let keys = std::fs::read_to_string(&jwks).unwrap();
    let verifier = JwksVerifier::from_jwks_json(&keys, "http://127.0.0.1:3000", "skc_dev").unwrap();
    let claims = verifier.verify(token).await.unwrap();
    assert_eq!(claims.subject, "usr_bob");
    assert_eq!(claims.organization.as_deref(), Some("org_1"));
    assert_eq!(claims.roles, ["project_manager", "viewer"]);
    assert_eq!(claims.email.as_deref(), Some("bob@acme.test"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(claims.expires_at > now && claims.expires_at <= now + 601);
    // Another audience is refused: the token is bound to the one asked for.
    let other = JwksVerifier::from_jwks_json(&keys, "http://127.0.0.1:3000", "skc_other").unwrap();
    assert!(other.verify(token).await.is_err());
}

#[test]
fn a_missing_key_file_is_a_one_line_error() {
    let out = rolegraph(&[
        "mint-token",
        "--key",
        "/nonexistent/dev.pem",
        "--sub",
        "usr_1",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with("error: cannot read `/nonexistent/dev.pem`"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn a_key_that_is_not_rsa_pem_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.pem");
    std::fs::write(&bad, "not a key").unwrap();
    let out = rolegraph(&[
        "mint-token",
        "--key",
        bad.to_str().unwrap(),
        "--sub",
        "usr_1",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.starts_with("error: "), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}
