//! Why a request is allowed or denied, in terms a person can act on.

use std::fmt;

use serde::Serialize;

use crate::check::{Claims, Requirement};
use crate::ids::RoleId;
use crate::snapshot::Snapshot;
use crate::text::Quote;

mod inheritance;

pub use inheritance::{
    EffectivePermission, EffectivePermissions, Granted, Inheritance, InheritedRole,
};

/// The answer to a check, with the reasons.
///
/// Produced by [`Snapshot::explain`]; deterministic for the same snapshot,
/// claims and requirement. `Display` prints `allow` or `deny` on the first
/// line and one reason per following line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Explanation {
    /// The decision, the same a [`Principal`](crate::Principal) gives.
    pub allowed: bool,
    /// The requirement, as text.
    pub requirement: String,
    /// Each permission the requirement names, in order, and how it is held.
    pub permissions: Vec<PermissionReason>,
    /// Each role the requirement names, and which token role holds it.
    pub roles: Vec<RoleReason>,
    /// Token role names that resolved to no role.
    pub unknown_roles: Vec<String>,
    /// Claimed permissions that are not declared, and so were ignored.
    pub ignored_permissions: Vec<String>,
}

/// How a required permission is held, or that it is not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "held", rename_all = "snake_case")]
#[non_exhaustive]
pub enum PermissionReason {
    /// A token role grants it.
    ByRole {
        /// The permission.
        permission: String,
        /// From the token role through `extends` to the granting role.
        path: Vec<String>,
        /// The direct grant that matched (the permission or a wildcard).
        grant: String,
    },
    /// The token claims it directly.
    Claimed {
        /// The permission.
        permission: String,
    },
    /// Neither.
    Missing {
        /// The permission.
        permission: String,
    },
}

/// Which token role satisfies a role requirement, if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleReason {
    /// The required role.
    pub role: String,
    /// From a token role through `extends` to the required role; `None` when
    /// no token role is or extends it.
    pub path: Option<Vec<String>>,
}

impl Snapshot {
    /// Explains the decision for `claims` against `requirement`.
    ///
    /// For each permission the requirement names: the inheritance path from a
    /// token role to the role whose direct grant (or wildcard) gives it — the
    /// shortest, ties broken by role name — or that it is claimed, or missing.
    /// Also lists unknown token roles and ignored claimed permissions.
    ///
    /// # Complexity
    ///
    /// A breadth-first walk of the token roles' ancestors: meant for
    /// diagnostics, not for the request path.
    ///
    /// # Examples
    ///
    /// ```
    /// use rolegraph::{Claims, Policy, Requirement};
    ///
    /// let mut policy = Policy::new();
    /// policy.permission("projects:read");
    /// policy.role("viewer").grant("projects:*");
    /// policy.role("editor").extends("viewer");
    /// let snapshot = policy.compile()?;
    /// let claims = Claims { roles: vec!["editor".into(), "ghost".into()], ..Claims::default() };
    /// let why = snapshot.explain(&claims, &Requirement::permission(&snapshot, "projects:read")?);
    /// assert_eq!(
    ///     why.to_string(),
    ///     "allow\n`projects:read`: granted by `editor` -> `viewer` (grants `projects:*`)\nunknown token role `ghost`: ignored"
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn explain(&self, claims: &Claims, requirement: &Requirement) -> Explanation {
        let scope = self.scope_of(claims.organization.as_deref());
        let mut known: Vec<RoleId> = Vec::new();
        let mut unknown_roles = Vec::new();
        for name in &claims.roles {
            match self.role_in(scope, name) {
                Some(id) => known.push(id),
                None if !unknown_roles.contains(name) => unknown_roles.push(name.clone()),
                None => {}
            }
        }
        let ignored_permissions: Vec<String> = dedup(
            claims
                .permissions
                .iter()
                .filter(|p| self.permission_id(p).is_none())
                .cloned(),
        );
        // One tree from the token roles serves every permission and role the
        // requirement names: linear in the roles reached, whatever their depth.
        let tree = self.inheritance_from(&known);
        let mut given: std::collections::HashMap<&str, (usize, &str)> =
            std::collections::HashMap::new();
        for (i, g) in tree.permissions() {
            given.insert(g.permission.as_str(), (i, g.grant.as_str()));
        }
        let owned_path = |i: usize| tree.path(i).into_iter().map(str::to_owned).collect();
        let (perm_names, role_names) = requirement.names();
        let permissions = dedup(perm_names.into_iter().map(str::to_owned))
            .into_iter()
            .map(|permission| {
                if let Some(&(i, grant)) = given.get(permission.as_str()) {
                    PermissionReason::ByRole {
                        path: owned_path(i),
                        grant: grant.to_owned(),
                        permission,
                    }
                } else if claims.permissions.contains(&permission)
                    && self.permission_id(&permission).is_some()
                {
                    PermissionReason::Claimed { permission }
                } else {
                    PermissionReason::Missing { permission }
                }
            })
            .collect();
        let roles = dedup(role_names.into_iter().map(str::to_owned))
            .into_iter()
            .map(|role| RoleReason {
                // The first entry of that name in breadth-first order: the
                // shortest path, ties broken by name.
                path: tree
                    .roles()
                    .iter()
                    .position(|r| r.name == role)
                    .map(owned_path),
                role,
            })
            .collect();
        Explanation {
            allowed: self.principal_for(claims).satisfies(requirement),
            requirement: requirement.to_string(),
            permissions,
            roles,
            unknown_roles,
            ignored_permissions,
        }
    }
}

fn dedup(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

fn path_text(path: &[String]) -> String {
    path.iter()
        .map(|r| format!("`{r}`"))
        .collect::<Vec<_>>()
        .join(" -> ")
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.allowed { "allow" } else { "deny" })?;
        for p in &self.permissions {
            match p {
                PermissionReason::ByRole {
                    permission,
                    path,
                    grant,
                } => write!(
                    f,
                    "\n`{permission}`: granted by {} (grants `{grant}`)",
                    path_text(path)
                )?,
                PermissionReason::Claimed { permission } => {
                    write!(f, "\n`{permission}`: claimed in the token's permissions")?;
                }
                PermissionReason::Missing { permission } => write!(
                    f,
                    "\n`{permission}`: missing: no token role grants it and the token does not claim it"
                )?,
            }
        }
        for r in &self.roles {
            match &r.path {
                Some(path) => write!(f, "\nrole `{}`: held through {}", r.role, path_text(path))?,
                None => write!(
                    f,
                    "\nrole `{}`: missing: no token role is or extends it",
                    r.role
                )?,
            }
        }
        for r in &self.unknown_roles {
            write!(f, "\nunknown token role {}: ignored", Quote(r))?;
        }
        for p in &self.ignored_permissions {
            write!(f, "\nundeclared claimed permission {}: ignored", Quote(p))?;
        }
        Ok(())
    }
}
