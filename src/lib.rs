#![doc = include_str!("../README.md")]
//!
//! # Primary types
//!
//! - [`Policy`]: the policy file as plain data (JSON, TOML, or built in code).
//! - [`Snapshot`]: the compiled, immutable policy; [`Policy::compile`] makes one
//!   or fails with a [`CompileError`] listing every problem.
//! - [`Principal`]: what one request may do, built once from token [`Claims`].
//! - [`Requirement`]: a route's requirement, resolved once; checking it is a
//!   few word operations.
//! - [`Explanation`]: why a check allows or denies.
//!
//! # Feature flags
//!
//! - `toml`: read policy files written in TOML.
//! - `cli`: the `rolegraph` command-line tool (implies `toml`).
//! - `tracing`: `tracing` events for accepted and rejected changes.
//! - `jwt`: access-token verification (module `token`): JWKS with key rotation, `iss`/`aud`/`exp` checks, a verified-token cache.
//! - `scalekit`: verified, idempotent, order-safe Scalekit webhook ingestion (module `scalekit`); `scalekit-rest` adds its REST source.
//! - `tower`: module `http`, a tower layer over `http` types: bearer token, principal (from the token or the engine's memberships), route requirements, RFC 6750 answers.
//! - `axum` (implies `tower`): axum 0.8 extractors for the principal and the claims; with `scalekit`, the webhook route.
//! - `redis`: module `fleet`, several instances replicating one change log over Redis Streams (`Engine::join_fleet`).
//!
//! The default build has no CLI, async or HTTP dependencies.

mod bits;
mod change;
mod check;
mod compile;
mod compiled;
mod engine;
mod explain;
#[cfg(feature = "redis")]
pub mod fleet;
#[cfg(feature = "tower")]
pub mod http;
mod ids;
pub(crate) mod journal;
mod membership;
pub mod model;
mod name;
#[cfg(feature = "scalekit")]
pub mod scalekit;
mod snapshot;
mod text;
#[cfg(feature = "jwt")]
pub mod token;

/// The normative semantics: the policy file, validity, grants and
/// inheritance, resolving a token, and the CLI contract.
#[doc = include_str!("docs/semantics.md")]
pub mod semantics {}

pub use change::{Change, ChangeError, ChangeMeta, EntityClock, Outcome, Reparent};
pub use check::{Claims, Principal, Requirement};
pub use compile::{CompileError, Cycle, DefaultRole, Problem};
pub use engine::{
    AssignmentGuard, Engine, EngineOptions, Entry, Existing, Feed, OpenError, Recovery,
    RoleAssignment, RolesChanged, Stats, Subscription, FEED_CAPACITY,
};
pub use explain::{
    EffectivePermission, EffectivePermissions, Explanation, Granted, Inheritance, InheritedRole,
    PermissionReason, RoleReason,
};
pub use ids::{PermissionId, RoleId};
pub use journal::{Corruption, IoAction, JournalError};
pub use membership::Membership;
pub use model::{GroupRoles, LoadError, Organization, Permission, Policy, Role};
pub use model::{OrganizationBuilder, PolicyBuilder, RoleBuilder};
pub use snapshot::{LookupError, Snapshot, Warning};
