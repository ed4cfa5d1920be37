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
//! - `scalekit`: verified, idempotent, order-safe Scalekit webhook ingestion (module `scalekit`); `scalekit-rest` adds its REST source.
//!
//! The default build has no CLI, async or HTTP dependencies.

mod bits;
mod change;
mod check;
mod compile;
mod engine;
mod explain;
mod ids;
pub(crate) mod journal;
mod membership;
pub mod model;
mod name;
#[cfg(feature = "scalekit")]
pub mod scalekit;
mod snapshot;
mod text;

pub use change::{Change, ChangeError, ChangeMeta, EntityClock, Outcome, Reparent};
pub use check::{Claims, Principal, Requirement};
pub use compile::{CompileError, Cycle, DefaultRole, Problem};
pub use engine::{
    AssignmentGuard, Engine, EngineOptions, Entry, Existing, Feed, OpenError, Recovery,
    RoleAssignment, RolesChanged, Stats, Subscription, FEED_CAPACITY,
};
pub use explain::{Explanation, PermissionReason, RoleReason};
pub use ids::{PermissionId, RoleId};
pub use journal::{Corruption, IoAction, JournalError};
pub use membership::Membership;
pub use model::{GroupRoles, LoadError, Organization, Permission, Policy, Role};
pub use snapshot::{EffectivePermission, LookupError, Snapshot, Warning};
