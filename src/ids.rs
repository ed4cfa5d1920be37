//! Dense, checked identifiers for compiled roles and permissions.

use std::fmt;

/// The dense index of a permission inside a compiled [`Snapshot`](crate::Snapshot).
///
/// Ids are assigned by the compiler. Within one snapshot lineage (a snapshot and
/// every snapshot recompiled from it) a permission keeps its id for as long as it
/// is declared, which is what lets a [`Requirement`](crate::Requirement) resolved
/// once keep working across swaps.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PermissionId(u32);

/// The dense index of a role (environment or organization role) inside a
/// compiled [`Snapshot`](crate::Snapshot), tagged with the numbering it
/// belongs to.
///
/// Roles keep their ids while an [`Engine`](crate::Engine) patches its
/// policy incrementally; a full recompile (a role or an organization
/// deleted) numbers them afresh. An id is only meaningful to a snapshot of
/// its numbering: [`Snapshot::principal_from_roles`](crate::Snapshot::principal_from_roles)
/// refuses one from another, and the other accessors treat it as no role
/// (an empty name, no permission), never as whichever role has its index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RoleId {
    index: u32,
    numbering: u32,
}

impl RoleId {
    /// The largest number of roles a policy may hold: 2³² − 1, the top
    /// `u32` value being reserved. A policy with more is refused by the
    /// compiler ([`Problem::TooMany`](crate::Problem::TooMany)).
    pub const LIMIT: usize = u32::MAX as usize;

    /// Role `index` of the numbering `numbering`; `None` past [`LIMIT`](Self::LIMIT).
    pub(crate) fn new(index: usize, numbering: u32) -> Option<Self> {
        if index < Self::LIMIT {
            u32::try_from(index)
                .ok()
                .map(|index| Self { index, numbering })
        } else {
            None
        }
    }

    /// The id as an index into dense tables.
    #[must_use]
    pub fn index(self) -> usize {
        self.index as usize
    }

    /// The numbering (a compiled policy and the patches of it) the id is from.
    pub(crate) fn numbering(self) -> u32 {
        self.numbering
    }
}

impl fmt::Display for RoleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.index.fmt(f)
    }
}

macro_rules! dense_id {
    ($ty:ident, $limit:expr, $why:literal) => {
        impl $ty {
            /// The largest number of items of this kind a policy may hold.
            ///
            #[doc = $why]
            /// A policy with more is refused by the compiler
            /// ([`Problem::TooMany`](crate::Problem::TooMany)), never cut short.
            pub const LIMIT: usize = $limit;

            /// Converts a `usize` index, failing when it is not below [`LIMIT`](Self::LIMIT).
            pub(crate) fn from_index(index: usize) -> Option<Self> {
                if index < Self::LIMIT {
                    u32::try_from(index).ok().map(Self)
                } else {
                    None
                }
            }

            /// The id as an index into dense tables.
            #[must_use]
            pub fn index(self) -> usize {
                self.0 as usize
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

dense_id!(
    PermissionId,
    1 << 31,
    "2³¹: a direct grant entry uses the top bit of its `u32` to mark a wildcard."
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_refuse_what_the_representation_cannot_hold() {
        assert_eq!(RoleId::new(7, 1).map(RoleId::index), Some(7));
        assert!(RoleId::new(u32::MAX as usize - 1, 1).is_some());
        assert!(RoleId::new(u32::MAX as usize, 1).is_none());
        assert_ne!(RoleId::new(7, 1), RoleId::new(7, 2));
        assert!(PermissionId::from_index(usize::MAX).is_none());
        // Bit 31 marks a wildcard in a grant list: no permission id has it.
        let last = PermissionId::from_index(PermissionId::LIMIT - 1).unwrap();
        assert_eq!(last.index() as u32 & crate::compiled::WILDCARD, 0);
        assert!(PermissionId::from_index(PermissionId::LIMIT).is_none());
    }
}
