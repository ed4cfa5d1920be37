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
    ($ty:ident) => {
        impl $ty {
            /// The largest number of items of this kind a policy may hold.
            pub const LIMIT: usize = u32::MAX as usize;

            /// Converts a `usize` index, failing when it does not fit the id space.
            pub(crate) fn from_index(index: usize) -> Option<Self> {
                u32::try_from(index)
                    .ok()
                    .filter(|&i| i != u32::MAX)
                    .map(Self)
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

dense_id!(PermissionId);
dense_id!(RoleId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_refuse_the_reserved_top_value() {
        assert_eq!(RoleId::from_index(7).map(RoleId::index), Some(7));
        assert!(RoleId::from_index(u32::MAX as usize).is_none());
        assert!(PermissionId::from_index(usize::MAX).is_none());
    }
}
