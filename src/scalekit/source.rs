//! Where what the events leave out comes from: a role's permissions, a role
//! that an event refers to before its own event arrived, and the whole
//! state for a full resync.

use std::sync::Arc;

pub(crate) use crate::change::reconcile_changes as resync_changes;
#[cfg(test)]
use crate::change::Change;
use crate::model::{Permission, Policy, Role};

/// The identity provider's current state, read on demand.
///
/// Role events carry no permissions, and events can arrive before what they
/// depend on; a source fills both gaps. `RestSource`
/// (feature `scalekit-rest`) reads Scalekit's REST API; a [`Policy`] is a
/// fixed source (handy in tests, or to seed from a file).
///
/// Implementations block. The handler calls them while it holds no lock:
/// it fetches what a delivery needs first, then takes its own lock, checks
/// the fetched data against the current state and applies (fetching again,
/// a bounded number of times, if the state moved so that the data no longer
/// suffices). A slow source delays only the delivery that needs it, never
/// other deliveries, and never readers.
///
/// # Examples
///
/// ```
/// use rolegraph::scalekit::Source;
/// use rolegraph::Policy;
///
/// let mut policy = Policy::new();
/// policy.permission("projects:read");
/// policy.role("viewer").grant("projects:read");
/// let perms = policy.fetch_role_permissions(None, "viewer")?;
/// assert_eq!(perms[0].name, "projects:read");
/// # Ok::<(), rolegraph::scalekit::SourceError>(())
/// ```
pub trait Source: Send + Sync {
    /// The direct permissions of role `name` of `organization` (`None`: an
    /// environment role); empty for a role the source does not know.
    ///
    /// # Errors
    ///
    /// A [`SourceError`] when the source cannot answer.
    fn fetch_role_permissions(
        &self,
        organization: Option<&str>,
        name: &str,
    ) -> Result<Vec<Permission>, SourceError>;

    /// Role `name` of exactly that scope (no fallback from an organization
    /// to the environment), with its direct permissions and base roles, or
    /// `None` when the source does not know it.
    ///
    /// # Errors
    ///
    /// A [`SourceError`] when the source cannot answer.
    fn fetch_role(
        &self,
        organization: Option<&str>,
        name: &str,
    ) -> Result<Option<Role>, SourceError>;

    /// The whole state: permissions, environment roles and defaults,
    /// organizations with their roles, default member role and group
    /// mapping. Memberships are not part of it.
    ///
    /// # Errors
    ///
    /// A [`SourceError`] when the source cannot answer.
    fn fetch_policy(&self) -> Result<Policy, SourceError>;

    /// The names of the roles Scalekit user `user_id` (`usr_…`) holds in
    /// `organization` (`GET /api/v1/organizations/{org}/users/{user}/roles`),
    /// or `None` when the source knows no such membership.
    ///
    /// The default answers [`SourceError::Unsupported`]: a source that
    /// cannot say leaves `user.organization_membership_*` events without
    /// roles, and the handler asks for them to be delivered again later.
    ///
    /// # Errors
    ///
    /// A [`SourceError`] when the source cannot answer.
    fn fetch_user_roles(
        &self,
        organization: &str,
        user_id: &str,
    ) -> Result<Option<Vec<String>>, SourceError> {
        let _ = (organization, user_id);
        Err(SourceError::Unsupported {
            what: "a user's roles in an organization".into(),
        })
    }
}

/// A source could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The request could not be made or timed out.
    #[error("`{url}` could not be reached: {reason}")]
    Transport {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The server answered with an error status.
    #[error("`{url}` answered {status}: {body}")]
    Status {
        /// The URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// The credentials were refused, also after authenticating again.
    #[error("`{url}` refused the credentials (status {status})")]
    Unauthorized {
        /// The URL.
        url: String,
        /// The HTTP status (401 or 403).
        status: u16,
    },
    /// The answer is not of the documented shape.
    #[error("`{url}` answered something unreadable: {reason}")]
    Decode {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The source cannot answer this kind of question at all.
    #[error("the source cannot fetch {what}")]
    Unsupported {
        /// What was asked for.
        what: String,
    },
    /// Any other failure of a custom source.
    #[error("{0}")]
    Other(String),
}

impl<S: Source + ?Sized> Source for Arc<S> {
    fn fetch_role_permissions(
        &self,
        organization: Option<&str>,
        name: &str,
    ) -> Result<Vec<Permission>, SourceError> {
        (**self).fetch_role_permissions(organization, name)
    }

    fn fetch_role(
        &self,
        organization: Option<&str>,
        name: &str,
    ) -> Result<Option<Role>, SourceError> {
        (**self).fetch_role(organization, name)
    }

    fn fetch_policy(&self) -> Result<Policy, SourceError> {
        (**self).fetch_policy()
    }

    fn fetch_user_roles(
        &self,
        organization: &str,
        user_id: &str,
    ) -> Result<Option<Vec<String>>, SourceError> {
        (**self).fetch_user_roles(organization, user_id)
    }
}

/// A fixed policy is a source that never changes.
impl Source for Policy {
    fn fetch_role_permissions(
        &self,
        organization: Option<&str>,
        name: &str,
    ) -> Result<Vec<Permission>, SourceError> {
        let Some(role) = Source::fetch_role(self, organization, name)? else {
            return Ok(Vec::new());
        };
        Ok(role
            .permissions
            .iter()
            .map(|p| Permission {
                name: p.clone(),
                description: self
                    .permissions
                    .iter()
                    .find(|d| d.name == *p)
                    .and_then(|d| d.description.clone()),
            })
            .collect())
    }

    fn fetch_role(
        &self,
        organization: Option<&str>,
        name: &str,
    ) -> Result<Option<Role>, SourceError> {
        let roles = match organization {
            None => &self.roles,
            Some(org) => match self.organizations.iter().find(|o| o.id == org) {
                Some(o) => &o.roles,
                None => return Ok(None),
            },
        };
        Ok(roles.iter().find(|r| r.name == name).cloned())
    }

    fn fetch_policy(&self) -> Result<Policy, SourceError> {
        Ok(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Engine;
    use crate::ChangeMeta;

    fn before() -> Policy {
        let mut p = Policy::new();
        p.permission("a:read")
            .permission("a:write")
            .permission("gone");
        p.role("viewer").grant("a:read");
        p.role("editor").extends("viewer").grant("a:write");
        p.role("old").grant("gone");
        p.role("child").extends("old");
        p.set_default_member_role("old");
        p.organization("org_1")
            .map_group("g1", ["old"])
            .map_group("g2", ["viewer"]);
        p.organization("org_2").role("local").grant("a:read");
        p
    }

    fn after() -> Policy {
        let mut p = Policy::new();
        p.permission("a:read")
            .permission("a:write")
            .permission("b:new");
        p.role("viewer").grant("a:read").grant("b:new");
        p.role("editor").extends("viewer").grant("a:write");
        p.role("child").grant("a:read");
        p.set_default_member_role("viewer");
        p.organization("org_1").map_group("g3", ["editor"]);
        p.organization("org_3").role("boss").extends("editor");
        p
    }

    #[test]
    fn a_resync_batch_turns_one_policy_into_the_other() {
        let engine = Engine::new(&before()).unwrap();
        let changes = resync_changes(&engine.policy(), &after());
        engine.apply_batch(changes, ChangeMeta::by("test")).unwrap();
        let mut got = engine.policy();
        let mut want = after();
        for p in [&mut got, &mut want] {
            p.permissions.sort_by(|a, b| a.name.cmp(&b.name));
            p.roles.sort_by(|a, b| a.name.cmp(&b.name));
            p.organizations.sort_by(|a, b| a.id.cmp(&b.id));
        }
        assert_eq!(got, want);
    }

    #[test]
    fn equal_policies_need_only_idempotent_settings() {
        let p = after();
        let engine = Engine::new(&p).unwrap();
        let changes = resync_changes(&engine.policy(), &p);
        assert!(changes.iter().all(|c| matches!(
            c,
            Change::SetDefaultRoles { .. }
                | Change::SetOrganizationDefaultRole { .. }
                | Change::SetGroupRoles { .. }
        )));
        let outcome = engine.apply_batch(changes, ChangeMeta::by("test")).unwrap();
        assert!(!outcome.changed);
    }
}
