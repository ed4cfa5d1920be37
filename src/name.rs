//! The naming rules of [`semantics`](crate::semantics): 1–128 characters from `A–Z a–z 0–9 _ . : -`.

/// The longest permission or role name accepted.
pub(crate) const MAX_NAME_LEN: usize = 128;

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-')
}

/// Whether `name` is a valid permission or role name.
pub(crate) fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN && name.bytes().all(is_name_byte)
}

/// What a grant string means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GrantKind<'a> {
    /// A single permission by name.
    Exact(&'a str),
    /// Every declared permission starting with this prefix (possibly empty).
    Prefix(&'a str),
    /// Not a valid grant.
    Invalid,
}

/// Classifies a grant: an exact permission name, or a wildcard `prefix*`.
pub(crate) fn classify_grant(grant: &str) -> GrantKind<'_> {
    match grant.strip_suffix('*') {
        Some(prefix) if prefix.is_empty() => GrantKind::Prefix(prefix),
        Some(prefix) if prefix.len() < MAX_NAME_LEN && prefix.bytes().all(is_name_byte) => {
            GrantKind::Prefix(prefix)
        }
        Some(_) => GrantKind::Invalid,
        None if is_valid_name(grant) => GrantKind::Exact(grant),
        None => GrantKind::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_character_and_length_rules() {
        assert!(is_valid_name("projects:read"));
        assert!(is_valid_name("users.write"));
        assert!(is_valid_name("sk_org-users_read"));
        assert!(is_valid_name(&"a".repeat(128)));
        assert!(!is_valid_name(&"a".repeat(129)));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("has space"));
        assert!(!is_valid_name("projects:*"));
        assert!(!is_valid_name("é"));
    }

    #[test]
    fn grants_are_exact_or_trailing_wildcards() {
        assert_eq!(classify_grant("a:b"), GrantKind::Exact("a:b"));
        assert_eq!(classify_grant("projects:*"), GrantKind::Prefix("projects:"));
        assert_eq!(classify_grant("*"), GrantKind::Prefix(""));
        assert_eq!(classify_grant("a*b"), GrantKind::Invalid);
        assert_eq!(classify_grant("**"), GrantKind::Invalid);
        assert_eq!(classify_grant(""), GrantKind::Invalid);
    }
}
