//! Webhook ingestion (feature `scalekit`):
//!
//! - `webhook/verify`: the signature check of a 2 KB body (target ≤ 5 µs);
//! - `webhook/user_updated/100000`: verify + parse + apply one
//!   `organization.directory.user_updated` among 100,000 memberships, with
//!   the journal on a temporary directory, until the change is visible in a
//!   new snapshot (target ≤ 1 ms, journal fsync excluded);
//! - `webhook/user_updated_fsync/100000`: the same with every journal record
//!   fsynced, reported separately (it measures the disk).
//!
//! ```text
//! cargo bench --features scalekit --bench webhook -- --warm-up-time 1 --measurement-time 3
//! ```

// Benches are not library code: a broken fixture should stop the run loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{criterion_main, BatchSize, BenchmarkId, Criterion};
use rolegraph::scalekit::{Handler, Verifier};
use rolegraph::{Change, ChangeMeta, Engine, EngineOptions, Policy};

const SECRET: &str = "whsec_dGVzdHNlY3JldA==";
const MEMBERS: usize = 100_000;

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A directory-user event of about `size` bytes (padded with attributes).
fn user_body(seq: u64, user: usize, role: &str, size: usize) -> Vec<u8> {
    let us = seq; // one event per microsecond of 2025-06-01
    let occurred = format!(
        "2025-06-01T{:02}:{:02}:{:02}.{:06}Z",
        us / 3_600_000_000 % 24,
        us / 60_000_000 % 60,
        us / 1_000_000 % 60,
        us % 1_000_000
    );
    let mut body = format!(
        r#"{{"spec_version":"1","id":"evt_{seq}","type":"organization.directory.user_updated","occurred_at":"{occurred}","environment_id":"env_53814739859406915","organization_id":"org_1","object":"DirectoryUser","data":{{"id":"diruser_{user}","organization_id":"org_1","dp_id":"ext_{user}","preferred_username":"user{user}","email":"user{user}@example.com","active":true,"name":"User {user}","roles":[{{"role_name":"{role}"}}],"groups":[{{"id":"dirgroup_1","name":"Engineering"}}],"given_name":"User","family_name":"{user}","custom_attributes":{{"padding":""#
    );
    while body.len() + 4 < size {
        body.push('x');
    }
    body.push_str(r#""}}}"#);
    body.into_bytes()
}

fn headers(verifier: &Verifier, id: &str, body: &[u8]) -> [(&'static str, String); 3] {
    let ts = unix_now();
    [
        ("webhook-id", id.to_owned()),
        ("webhook-timestamp", ts.to_string()),
        ("webhook-signature", verifier.sign(id, ts, body)),
    ]
}

fn bench_verify(c: &mut Criterion) {
    let verifier = Verifier::new([SECRET]).unwrap();
    let body = user_body(1, 1, "editor", 2048);
    assert_eq!(body.len(), 2048);
    let hs = headers(&verifier, "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", &body);
    let now = SystemTime::now();
    c.benchmark_group("webhook").bench_function("verify", |b| {
        b.iter(|| {
            verifier
                .verify(
                    black_box(&hs).iter().map(|(k, v)| (*k, v.as_str())),
                    black_box(&body),
                    now,
                )
                .unwrap()
        })
    });
}

/// A durable engine with `MEMBERS` memberships in `org_1`.
fn engine(dir: &std::path::Path, sync: bool) -> Engine {
    let mut policy = Policy::new();
    policy
        .permission("projects:read")
        .permission("projects:update");
    policy.role("viewer").grant("projects:read");
    policy
        .role("editor")
        .extends("viewer")
        .grant("projects:update");
    policy.organization("org_1");
    let mut options = EngineOptions::default();
    options.sync = sync;
    let engine = Engine::open_with(dir, &policy, options).unwrap();
    for chunk in (0..MEMBERS).collect::<Vec<_>>().chunks(20_000) {
        let changes = chunk
            .iter()
            .map(|i| Change::SetMembership {
                organization: "org_1".into(),
                user: format!("user{i}@example.com"),
                roles: vec![if i.is_multiple_of(2) {
                    "viewer"
                } else {
                    "editor"
                }
                .into()],
                groups: Some(Vec::new()),
                creator: false,
            })
            .collect();
        engine
            .apply_batch(changes, ChangeMeta::by("bench"))
            .unwrap();
    }
    engine
}

fn bench_user_updated(c: &mut Criterion) {
    let mut group = c.benchmark_group("webhook");
    for (name, sync) in [("user_updated", false), ("user_updated_fsync", true)] {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path(), sync);
        assert_eq!(engine.snapshot().memberships_len(), MEMBERS);
        let verifier = Verifier::new([SECRET]).unwrap();
        let handler = Handler::new(engine.clone(), verifier.clone());
        let mut seq = 0u64;
        if sync {
            group
                .sample_size(20)
                .measurement_time(Duration::from_secs(5));
        }
        group.bench_function(BenchmarkId::new(name, MEMBERS), |b| {
            b.iter_batched(
                || {
                    seq += 1;
                    let user = (seq as usize * 7919) % MEMBERS;
                    let role = if seq.is_multiple_of(2) {
                        "viewer"
                    } else {
                        "editor"
                    };
                    let body = user_body(seq, user, role, 2048);
                    let id = format!("msg_{seq}");
                    let hs = headers(&verifier, &id, &body);
                    (hs, body, format!("user{user}@example.com"), role)
                },
                |(hs, body, key, role)| {
                    let out = handler.handle_at(
                        hs.iter().map(|(k, v)| (*k, v.as_str())),
                        &body,
                        SystemTime::now(),
                    );
                    assert_eq!(out.label(), "applied", "{}", out.body());
                    // Visible to the next reader.
                    let snap = engine.snapshot();
                    let m = snap.membership("org_1", &key);
                    assert_eq!(m.map(|m| m.roles.as_slice()), Some(&[role.to_owned()][..]));
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

// `criterion_group!` makes an undocumented `pub fn`: inside a private module
// it is not part of any public surface.
mod group {
    criterion::criterion_group!(benches, super::bench_verify, super::bench_user_updated);
}
criterion_main!(group::benches);
