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
/// compiled [`Snapshot`](crate::Snapshot).
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RoleId(u32);

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
dense_id!(
    RoleId,
    u32::MAX as usize,
    "2³² − 1: the top `u32` value is reserved."
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_refuse_what_the_representation_cannot_hold() {
        assert_eq!(RoleId::from_index(7).map(RoleId::index), Some(7));
        assert!(RoleId::from_index(u32::MAX as usize - 1).is_some());
        assert!(RoleId::from_index(u32::MAX as usize).is_none());
        assert!(PermissionId::from_index(usize::MAX).is_none());
        // Bit 31 marks a wildcard in a grant list: no permission id has it.
        let last = PermissionId::from_index(PermissionId::LIMIT - 1).unwrap();
        assert_eq!(last.index() as u32 & crate::compiled::WILDCARD, 0);
        assert!(PermissionId::from_index(PermissionId::LIMIT).is_none());
    }
}
