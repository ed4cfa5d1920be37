//! Changes to a live policy: what Scalekit's API and webhooks can do, and what
//! an application's admin screen needs.

mod reconcile;

pub(crate) use reconcile::reconcile_changes;

use serde::{Deserialize, Serialize};

use crate::compile::CompileError;
use crate::model::Role;
use crate::text::{Quote, QuoteList};

/// One change to the policy or to the memberships.
///
/// Roles are addressed by `organization` (absent for environment roles) and
/// `name`. Serialized with an `op` tag, e.g.
/// `{"op": "grant_permission", "role": "editor", "permission": "projects:update"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Change {
    /// Declares a permission (idempotent; updates the description when given).
    CreatePermission {
        /// The permission.
        name: String,
        /// Its description.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
    },
    /// Changes a permission's description.
    UpdatePermission {
        /// The permission.
        name: String,
        /// The new description (`None` clears it).
        #[serde(default)]
        description: Option<String>,
    },
    /// Removes a permission, and every direct grant of it (the outcome lists
    /// the roles affected).
    DeletePermission {
        /// The permission.
        name: String,
    },
    /// Creates a role (or replaces a role of that name, as an upsert).
    CreateRole {
        /// The organization, absent for an environment role.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        organization: Option<String>,
        /// The role, with its grants and bases.
        role: Role,
    },
    /// Updates parts of a role; absent fields are left as they are.
    UpdateRole {
        /// The organization, absent for an environment role.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        organization: Option<String>,
        /// The role.
        name: String,
        /// A new display name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        display_name: Option<String>,
        /// A new description.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        /// Replaces the direct grants.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        permissions: Option<Vec<String>>,
        /// Replaces the base roles (an empty list removes them all).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        extends: Option<Vec<String>>,
    },
    /// Adds one direct grant to a role.
    GrantPermission {
        /// The organization, absent for an environment role.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        organization: Option<String>,
        /// The role.
        role: String,
        /// A permission name or wildcard.
        permission: String,
    },
    /// Removes one direct grant from a role (inherited grants stay).
    RevokePermission {
        /// The organization, absent for an environment role.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        organization: Option<String>,
        /// The role.
        role: String,
        /// The grant as written.
        permission: String,
    },
    /// Deletes a role.
    ///
    /// Refused while roles extend it, unless `reparent` says what becomes of
    /// them; members holding it move to `reassign_to` when given, and
    /// otherwise simply lose it.
    DeleteRole {
        /// The organization, absent for an environment role.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        organization: Option<String>,
        /// The role.
        name: String,
        /// The role its holders get instead.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reassign_to: Option<String>,
        /// What roles extending it extend instead.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reparent: Option<Reparent>,
    },
    /// Sets the environment's default creator and member roles (`None` unsets).
    SetDefaultRoles {
        /// `default_creator_role`.
        #[serde(default)]
        creator: Option<String>,
        /// `default_member_role`.
        #[serde(default)]
        member: Option<String>,
    },
    /// Creates an organization (idempotent).
    CreateOrganization {
        /// Its id.
        id: String,
    },
    /// Deletes an organization with its roles, group mapping and memberships.
    DeleteOrganization {
        /// Its id.
        id: String,
    },
    /// Sets (or with `None` removes) an organization's default member role.
    SetOrganizationDefaultRole {
        /// The organization.
        organization: String,
        /// The role.
        #[serde(default)]
        role: Option<String>,
    },
    /// Sets the roles a directory group maps to; an empty list removes the mapping.
    SetGroupRoles {
        /// The organization.
        organization: String,
        /// The group, by id or display name.
        group: String,
        /// The roles.
        roles: Vec<String>,
    },
    /// Sets a user's roles in an organization, creating the membership.
    ///
    /// A new membership without roles gets the default member role (the
    /// default creator role when `creator` is set).
    SetMembership {
        /// The organization.
        organization: String,
        /// The user key (directory user id or lower-cased email).
        user: String,
        /// The roles.
        #[serde(default)]
        roles: Vec<String>,
        /// The user's directory groups, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        groups: Option<Vec<String>>,
        /// The user created the organization.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        creator: bool,
    },
    /// Adds roles to a membership (creating it).
    AddMembershipRoles {
        /// The organization.
        organization: String,
        /// The user key.
        user: String,
        /// The roles to add.
        roles: Vec<String>,
    },
    /// Removes roles from a membership.
    RemoveMembershipRoles {
        /// The organization.
        organization: String,
        /// The user key.
        user: String,
        /// The roles to remove.
        roles: Vec<String>,
    },
    /// Removes a user from an organization.
    RemoveMembership {
        /// The organization.
        organization: String,
        /// The user key.
        user: String,
    },
    /// Removes a user from every organization.
    RemoveUser {
        /// The user key.
        user: String,
    },
    /// Records a delivered event (a webhook) so that a redelivery is refused
    /// as [`ChangeError::Duplicate`] and an event older than the last one
    /// applied to the same entity as [`ChangeError::Stale`]. Put it first in
    /// the batch that applies the event: the record is journaled with it, so
    /// it survives a restart, and a refused batch records nothing.
    RecordDelivery {
        /// The delivery id (`webhook-id`, or the event id).
        id: String,
        /// When it was received, in milliseconds since the Unix epoch.
        received_ms: u64,
        /// The entities the event is about, with its `occurred_at`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        entities: Vec<EntityClock>,
        /// Deliveries received longer ago than this are forgotten (keep it
        /// longer than the sender's retry window).
        retention_ms: u64,
    },
}

/// The time of the last event applied to one entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityClock {
    /// The entity: `user:org_1/diruser_1`, `role:admin`, `permission:x` …
    pub entity: String,
    /// The event's `occurred_at`, in nanoseconds since the Unix epoch.
    pub occurred_at_ns: u64,
}

/// What becomes of the roles that extend a deleted role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Reparent {
    /// They stop extending it, and keep their other bases.
    Detach,
    /// They extend the deleted role's own bases instead, so that they keep
    /// what they inherited through it (but not its direct grants).
    ToBases,
    /// They extend this role instead.
    To(String),
}

/// Who made a change and when, for the audit log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChangeMeta {
    /// Who made the change (a user id, a service, `webhook:evt_…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// When, in milliseconds since the Unix epoch; the engine fills it in
    /// with the current time when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<u64>,
}

impl ChangeMeta {
    /// A change made by `actor`.
    #[must_use]
    pub fn by(actor: impl Into<String>) -> Self {
        Self {
            actor: Some(actor.into()),
            at_ms: None,
        }
    }

    /// Sets the time, in milliseconds since the Unix epoch.
    #[must_use]
    pub fn at(mut self, at_ms: u64) -> Self {
        self.at_ms = Some(at_ms);
        self
    }
}

/// What an accepted batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Outcome {
    /// The revision now published (unchanged when nothing changed).
    pub revision: u64,
    /// Whether anything changed; `false` for a batch that was a no-op
    /// (setting what was already set), which publishes nothing.
    pub changed: bool,
    /// Roles whose direct grants lost a deleted permission, as
    /// `organization/role` or `role`, sorted.
    pub roles_affected: Vec<String>,
    /// Roles detached or re-parented by a role deletion, sorted.
    pub roles_reparented: Vec<String>,
    /// Users whose roles a deletion changed (`organization/user`), sorted.
    pub users_affected: Vec<String>,
    /// Why the engine's last checkpoint failed, while no later one has
    /// succeeded: the change is durable in the journal, but recovery grows
    /// until a checkpoint succeeds. See [`Stats`](crate::Stats).
    pub checkpoint_error: Option<String>,
}

/// A change or batch was refused; nothing was applied and the previous
/// snapshot keeps serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChangeError {
    /// The resulting policy would be invalid: the compiler's own errors.
    #[error("{0}")]
    Invalid(CompileError),
    /// The change names a role that does not exist.
    #[error("{} does not exist", crate::compile::RoleInScope(name, organization.as_deref()))]
    UnknownRole {
        /// The role's organization, `None` for the environment.
        organization: Option<String>,
        /// The role.
        name: String,
    },
    /// The change names a permission that does not exist.
    #[error("permission {} does not exist", Quote(name))]
    UnknownPermission {
        /// The permission.
        name: String,
    },
    /// The change names an organization that does not exist.
    #[error("organization {} does not exist", Quote(id))]
    UnknownOrganization {
        /// The organization.
        id: String,
    },
    /// Deleting a role that other roles extend, without saying how to re-parent them.
    #[error(
        "cannot delete {}: {} extend it; say how to re-parent them",
        crate::compile::RoleInScope(name, organization.as_deref()),
        QuoteList(dependents)
    )]
    HasDependents {
        /// The role's organization.
        organization: Option<String>,
        /// The role.
        name: String,
        /// The roles extending it, sorted.
        dependents: Vec<String>,
    },
    /// A membership names a role that does not exist in that organization.
    #[error(
        "role {} does not exist in organization {}",
        Quote(role),
        Quote(organization)
    )]
    UnknownMembershipRole {
        /// The organization.
        organization: String,
        /// The role.
        role: String,
    },
    /// A guarded assignment by an actor who does not meet the guard.
    #[error(
        "{} may not assign roles in organization {}: needs {requirement}",
        Quote(actor),
        Quote(organization)
    )]
    Forbidden {
        /// Who tried.
        actor: String,
        /// Where.
        organization: String,
        /// What the guard requires, as text.
        requirement: String,
    },
    /// No guard can be met: none of its names is declared in the policy.
    #[error("guarded assignment is refused: {reason}")]
    GuardUnavailable {
        /// Why.
        reason: String,
    },
    /// An empty batch, or a field that must not be empty.
    #[error("{0}")]
    Malformed(String),
    /// The delivery was applied before (see [`Change::RecordDelivery`]).
    #[error("delivery {} was already applied", Quote(id))]
    Duplicate {
        /// The delivery id.
        id: String,
    },
    /// A newer event about the same entity was applied already.
    #[error(
        "event is stale: {} changed at {last_ns} ns, after this event's {got_ns} ns",
        Quote(entity)
    )]
    Stale {
        /// The entity.
        entity: String,
        /// When the last applied event about it occurred.
        last_ns: u64,
        /// When this one occurred.
        got_ns: u64,
    },
    /// The journal could not record the change; it was not applied.
    #[error("cannot record the change: {0}")]
    Journal(String),
}
