//! A real `redis-server` for the fleet tests: started on a free loopback
//! port with its own temporary directory and AOF on (`appendfsync always`,
//! so what Redis acknowledged survives a kill), killed on drop. There is no
//! mock: a machine without `redis-server` fails these tests, loudly.

#![allow(dead_code, reason = "each test binary uses part of it")]
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test support: a failure here fails the test"
)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rolegraph::{Change, Engine, Entry, Policy};
use tempfile::TempDir;

/// One `XRANGE` item: id and field–value pairs.
type StreamItem = (String, Vec<(String, Vec<u8>)>);

/// A `redis-server` child process.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    dir: TempDir,
    fsync: &'static str,
}

impl Redis {
    /// Starts one, or fails the test saying how to get `redis-server`.
    pub fn start() -> Self {
        Self::start_with_fsync("always")
    }

    /// Starts one with `appendfsync` set to `fsync` (`always`, `everysec`).
    pub fn start_with_fsync(fsync: &'static str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut redis = Self {
            child: None,
            port,
            dir,
            fsync,
        };
        redis.spawn();
        redis
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .arg("--dir")
            .arg(self.dir.path())
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                self.fsync,
                "--save",
                "",
                "--protected-mode",
                "yes",
                "--loglevel",
                "warning",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start `redis-server` ({e}): the fleet tests need a real Redis; \
                     install it (`apt-get install -y redis-server`, as .ci/run does)"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(mut con) = self.connection() {
                if redis::cmd("PING").query::<String>(&mut con).is_ok() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not answer PING", self.port);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn connection(&self) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(self.url())?.get_connection_with_timeout(Duration::from_secs(2))
    }

    /// Kills it (SIGKILL: no shutdown save, only the AOF counts).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and directory (the AOF is replayed).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Every entry of the fleet's stream under `key`, decoded, in order.
    pub fn entries(&self, key: &str) -> Vec<Entry> {
        let mut con = self.connection().unwrap();
        let reply: Vec<StreamItem> = redis::cmd("XRANGE")
            .arg(format!("{key}:log"))
            .arg("-")
            .arg("+")
            .query(&mut con)
            .unwrap();
        reply
            .into_iter()
            .map(|(id, fields)| {
                let entry = fields
                    .into_iter()
                    .find(|(k, _)| k == "entry")
                    .map(|(_, v)| v)
                    .unwrap_or_else(|| panic!("entry {id} has no `entry` field"));
                let entry: Entry = serde_json::from_slice(&entry).unwrap();
                assert_eq!(format!("{}-1", entry.revision), id);
                entry
            })
            .collect()
    }

    /// The fleet's checkpoint revisions under `key`, newest first.
    pub fn checkpoints(&self, key: &str) -> Vec<u64> {
        let mut con = self.connection().unwrap();
        redis::cmd("ZREVRANGE")
            .arg(format!("{key}:checkpoints"))
            .arg(0)
            .arg(-1)
            .query(&mut con)
            .unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The fleet tests' policy: environment roles, two organizations.
pub fn initial() -> Policy {
    let mut p = Policy::new();
    for perm in [
        "docs:read",
        "docs:write",
        "docs:delete",
        "billing:read",
        "users.write",
    ] {
        p.permission(perm);
    }
    p.role("viewer").grant("docs:read");
    p.role("editor").extends("viewer").grant("docs:write");
    p.role("admin").extends("editor").grant("users.write");
    p.role("auditor").grant("billing:read");
    p.organization("org_1");
    p.organization("org_2");
    p
}

pub const USERS: [&str; 6] = ["u0", "u1", "u2", "u3", "u4", "u5"];
pub const ORGS: [&str; 2] = ["org_1", "org_2"];
pub const ROLES: [&str; 4] = ["viewer", "editor", "admin", "auditor"];
pub const PERMS: [&str; 5] = [
    "docs:read",
    "docs:write",
    "docs:delete",
    "billing:read",
    "users.write",
];

/// A pseudo-random batch: memberships, grants, revokes, extends (some
/// making cycles: invalid), webhook deliveries from a shared pool of ids
/// (so that instances race on the same delivery), unknown roles (invalid).
pub fn random_batch(rng: &mut rolegraph_testkit::Rng) -> Vec<Change> {
    let pick = |rng: &mut rolegraph_testkit::Rng, items: &[&str]| -> String {
        (*rng.pick(items).unwrap()).to_owned()
    };
    let one = |rng: &mut rolegraph_testkit::Rng| -> Change {
        match rng.below(7) {
            0 | 1 => Change::SetMembership {
                organization: pick(rng, &ORGS),
                user: pick(rng, &USERS),
                roles: vec![pick(rng, &ROLES)],
                groups: None,
                creator: false,
            },
            2 => Change::GrantPermission {
                organization: None,
                role: pick(rng, &ROLES),
                permission: pick(rng, &PERMS),
            },
            3 => Change::RevokePermission {
                organization: None,
                role: pick(rng, &ROLES),
                permission: pick(rng, &PERMS),
            },
            4 => Change::UpdateRole {
                organization: None,
                name: pick(rng, &ROLES),
                display_name: None,
                description: None,
                permissions: None,
                extends: Some(vec![pick(rng, &ROLES)]),
            },
            5 => Change::RemoveMembership {
                organization: pick(rng, &ORGS),
                user: pick(rng, &USERS),
            },
            _ => Change::SetMembership {
                organization: pick(rng, &ORGS),
                user: pick(rng, &USERS),
                roles: vec!["no-such-role".into()],
                groups: None,
                creator: false,
            },
        }
    };
    let mut batch = Vec::new();
    if rng.below(4) == 0 {
        batch.push(Change::RecordDelivery {
            id: format!("msg_{}", rng.below(40)),
            received_ms: 1_000,
            entities: Vec::new(),
            retention_ms: u64::MAX,
        });
    }
    for _ in 0..=rng.below(2) {
        batch.push(one(rng));
    }
    batch
}

/// Everything two instances must agree on, as one comparable string:
/// revision, policy, every membership of the test's users, deliveries.
pub fn state(engine: &Engine) -> String {
    let snapshot = engine.snapshot();
    let mut members = std::collections::BTreeMap::new();
    for org in ORGS {
        for user in USERS {
            if let Some(m) = snapshot.membership(org, user) {
                members.insert(format!("{org}/{user}"), m.roles.clone());
            }
        }
    }
    serde_json::json!({
        "revision": engine.revision(),
        "policy": engine.policy(),
        "members": members,
        "deliveries": engine.deliveries_len(),
    })
    .to_string()
}
