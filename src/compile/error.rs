//! What makes a policy invalid: every rule of the "Validity" section of
//! [`semantics`](crate::semantics).

use std::fmt;

use crate::text::Quote;

/// A policy broke one or more validity rules; the policy is rejected whole.
///
/// [`problems`](Self::problems) lists every problem found, sorted in a
/// deterministic order (environment first, then organizations by id; within a
/// scope by kind, then by name). `Display` prints one problem per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    problems: Vec<Problem>,
}

impl CompileError {
    pub(crate) fn new(mut problems: Vec<Problem>) -> Self {
        problems
            .sort_by_cached_key(|p| (p.organization().map(str::to_owned), p.rank(), p.to_string()));
        problems.dedup();
        Self { problems }
    }

    /// Every problem, in the documented order.
    #[must_use]
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// The inheritance cycles among the problems.
    pub fn cycles(&self) -> impl Iterator<Item = &Cycle> {
        self.problems.iter().filter_map(|p| match p {
            Problem::Cycle(c) => Some(c),
            _ => None,
        })
    }
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            p.fmt(f)?;
        }
        Ok(())
    }
}

impl std::error::Error for CompileError {}

/// Which default role a problem is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum DefaultRole {
    /// `default_creator_role`.
    Creator,
    /// `default_member_role`.
    Member,
}

impl fmt::Display for DefaultRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Creator => "default creator role",
            Self::Member => "default member role",
        })
    }
}

/// One broken validity rule.
///
/// `organization` is `None` for the environment scope.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// A permission name outside 1–128 characters of `A–Z a–z 0–9 _ . : -`.
    InvalidPermissionName {
        /// The name as written.
        name: String,
    },
    /// The same permission declared twice.
    DuplicatePermission {
        /// The permission.
        name: String,
    },
    /// A role name outside 1–128 characters of `A–Z a–z 0–9 _ . : -`.
    InvalidRoleName {
        /// The scope.
        organization: Option<String>,
        /// The name as written.
        name: String,
    },
    /// The same role name twice in one scope.
    DuplicateRole {
        /// The scope.
        organization: Option<String>,
        /// The role.
        name: String,
    },
    /// An organization role with the name of an environment role.
    ShadowsEnvironmentRole {
        /// The organization.
        organization: String,
        /// The role.
        name: String,
    },
    /// An organization with an empty id.
    InvalidOrganizationId {
        /// The id as written.
        id: String,
    },
    /// The same organization id twice.
    DuplicateOrganization {
        /// The organization.
        id: String,
    },
    /// `extends` names a role that does not exist in reach.
    UnknownBaseRole {
        /// The scope of `role`.
        organization: Option<String>,
        /// The extending role.
        role: String,
        /// The missing base.
        base: String,
    },
    /// A grant that is neither a permission name nor a trailing wildcard.
    InvalidGrant {
        /// The scope of `role`.
        organization: Option<String>,
        /// The granting role.
        role: String,
        /// The grant as written.
        grant: String,
    },
    /// A grant naming a permission that is not declared.
    UnknownPermission {
        /// The scope of `role`.
        organization: Option<String>,
        /// The granting role.
        role: String,
        /// The undeclared permission.
        permission: String,
    },
    /// A default role that does not exist in reach.
    UnknownDefaultRole {
        /// The scope.
        organization: Option<String>,
        /// Which default.
        which: DefaultRole,
        /// The missing role.
        role: String,
    },
    /// A group mapping naming a role that does not exist in reach.
    UnknownGroupRole {
        /// The organization.
        organization: String,
        /// The directory group.
        group: String,
        /// The missing role.
        role: String,
    },
    /// A cycle in `extends`.
    Cycle(Cycle),
    /// More roles or permissions than ids can number.
    TooMany {
        /// `roles` or `permissions`.
        what: &'static str,
        /// How many there are.
        count: usize,
    },
}

/// One strongly connected set of roles in the inheritance graph.
///
/// Every role of the set lies on a cycle; [`path`](Self::path) is one concrete
/// cycle through the first member, which may pass through only some of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle {
    pub(crate) organization: Option<String>,
    pub(crate) members: Vec<String>,
    pub(crate) path: Vec<String>,
}

impl Cycle {
    /// The organization whose roles form the cycle, `None` for environment roles.
    #[must_use]
    pub fn organization(&self) -> Option<&str> {
        self.organization.as_deref()
    }

    /// Every role of the strongly connected set, sorted by name.
    #[must_use]
    pub fn members(&self) -> &[String] {
        &self.members
    }

    /// One concrete cycle, starting and ending at the first member:
    /// `a -> b -> a` is `["a", "b", "a"]`.
    #[must_use]
    pub fn path(&self) -> &[String] {
        &self.path
    }
}

impl fmt::Display for Cycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("role inheritance has a cycle")?;
        if let Some(org) = &self.organization {
            write!(f, " in organization {}", Quote(org))?;
        }
        f.write_str(" among ")?;
        write_list(f, &self.members, ", ")?;
        f.write_str(": ")?;
        write_list(f, &self.path, " -> ")
    }
}

fn write_list(f: &mut fmt::Formatter<'_>, items: &[String], sep: &str) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(sep)?;
        }
        write!(f, "{}", Quote(item))?;
    }
    Ok(())
}

/// `role `x`` or `role `x` in organization `o``.
pub(crate) struct RoleInScope<'a>(pub(crate) &'a str, pub(crate) Option<&'a str>);

impl fmt::Display for RoleInScope<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "role {}", Quote(self.0))?;
        if let Some(org) = self.1 {
            write!(f, " in organization {}", Quote(org))?;
        }
        Ok(())
    }
}

const NAME_RULE: &str = "use 1-128 characters from `A-Z a-z 0-9 _ . : -`";

impl Problem {
    /// The organization the problem is in, `None` for the environment.
    #[must_use]
    pub fn organization(&self) -> Option<&str> {
        match self {
            Self::InvalidRoleName { organization, .. }
            | Self::DuplicateRole { organization, .. }
            | Self::UnknownBaseRole { organization, .. }
            | Self::InvalidGrant { organization, .. }
            | Self::UnknownPermission { organization, .. }
            | Self::UnknownDefaultRole { organization, .. } => organization.as_deref(),
            Self::ShadowsEnvironmentRole { organization, .. }
            | Self::UnknownGroupRole { organization, .. } => Some(organization),
            Self::Cycle(c) => c.organization(),
            Self::InvalidPermissionName { .. }
            | Self::DuplicatePermission { .. }
            | Self::InvalidOrganizationId { .. }
            | Self::DuplicateOrganization { .. }
            | Self::TooMany { .. } => None,
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Self::TooMany { .. } => 0,
            Self::InvalidPermissionName { .. } => 1,
            Self::DuplicatePermission { .. } => 2,
            Self::InvalidOrganizationId { .. } => 3,
            Self::DuplicateOrganization { .. } => 4,
            Self::InvalidRoleName { .. } => 5,
            Self::DuplicateRole { .. } => 6,
            Self::ShadowsEnvironmentRole { .. } => 7,
            Self::UnknownBaseRole { .. } => 8,
            Self::InvalidGrant { .. } => 9,
            Self::UnknownPermission { .. } => 10,
            Self::UnknownDefaultRole { .. } => 11,
            Self::UnknownGroupRole { .. } => 12,
            Self::Cycle(_) => 13,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidPermissionName { name } => {
                write!(f, "permission name {} is invalid: {NAME_RULE}", Quote(name))
            }
            Self::DuplicatePermission { name } => {
                write!(f, "permission {} is declared more than once", Quote(name))
            }
            Self::InvalidRoleName { organization, name } => {
                write!(f, "role name {}", Quote(name))?;
                if let Some(org) = organization {
                    write!(f, " in organization {}", Quote(org))?;
                }
                write!(f, " is invalid: {NAME_RULE}")
            }
            Self::DuplicateRole { organization, name } => write!(
                f,
                "{} is declared more than once",
                RoleInScope(name, organization.as_deref())
            ),
            Self::ShadowsEnvironmentRole { organization, name } => write!(
                f,
                "{} has the name of an environment role",
                RoleInScope(name, Some(organization))
            ),
            Self::InvalidOrganizationId { id } => {
                write!(
                    f,
                    "organization id {} is invalid: it must not be empty",
                    Quote(id)
                )
            }
            Self::DuplicateOrganization { id } => {
                write!(f, "organization {} is declared more than once", Quote(id))
            }
            Self::UnknownBaseRole {
                organization,
                role,
                base,
            } => {
                write!(
                    f,
                    "{} extends unknown role {}",
                    RoleInScope(role, organization.as_deref()),
                    Quote(base)
                )?;
                if organization.is_none() {
                    f.write_str(" (environment roles may extend environment roles only)")?;
                }
                Ok(())
            }
            Self::InvalidGrant {
                organization,
                role,
                grant,
            } => write!(
                f,
                "{} grants {}, which is neither a permission name nor a wildcard ending in `*`",
                RoleInScope(role, organization.as_deref()),
                Quote(grant)
            ),
            Self::UnknownPermission {
                organization,
                role,
                permission,
            } => write!(
                f,
                "{} grants undeclared permission {}",
                RoleInScope(role, organization.as_deref()),
                Quote(permission)
            ),
            Self::UnknownDefaultRole {
                organization,
                which,
                role,
            } => {
                write!(f, "{which} {}", Quote(role))?;
                if let Some(org) = organization {
                    write!(f, " of organization {}", Quote(org))?;
                }
                f.write_str(" is not a role in reach")
            }
            Self::UnknownGroupRole {
                organization,
                group,
                role,
            } => write!(
                f,
                "group {} in organization {} maps to unknown role {}",
                Quote(group),
                Quote(organization),
                Quote(role)
            ),
            Self::Cycle(c) => c.fmt(f),
            Self::TooMany { what, count } => {
                write!(f, "the policy has {count} {what}, more than ids can number")
            }
        }
    }
}
