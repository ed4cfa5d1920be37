//! Load the bundled example policy, resolve a route requirement once, and
//! check requests built from token claims.
//!
//! Run with `cargo run --example quickstart`.

use std::io::Write;

use rolegraph::{Claims, Policy, Requirement};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/policy.json");
    let snapshot = Policy::from_path(path)?.compile()?;
    // Written through a locked handle so a closed pipe is an error, not a panic.
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{} roles, {} permissions, deepest chain {} roles, {} bytes",
        snapshot.roles_len(),
        snapshot.permissions_len(),
        snapshot.max_depth(),
        snapshot.memory_bytes()
    )?;

    // Resolved once, at start-up: a typo would fail here.
    let merge = Requirement::permission(&snapshot, "pulls:merge")?;
    let admin = Requirement::role(&snapshot, "admin")?.or(Requirement::any_of(
        &snapshot,
        ["users.write", "roles.assign"],
    )?);

    // Per request: the verified token's claims become a principal once.
    let token = r#"{"sub": "usr_1", "oid": "org_69615647365005430",
                    "roles": ["delivery_lead"], "permissions": ["tasks:assign"]}"#;
    let claims: Claims = serde_json::from_str(token)?;
    let principal = snapshot.principal_for(&claims);
    writeln!(out, "may merge: {}", principal.satisfies(&merge))?;
    writeln!(out, "is admin: {}", principal.satisfies(&admin))?;
    writeln!(out, "{}", snapshot.explain(&claims, &admin))?;
    Ok(())
}
