//! Small text helpers shared by the error types.

use std::fmt;

/// Prints a value with its first letter lowercased, to keep messages in the
/// house style whatever the platform or a dependency says ("No such file"
/// becomes "no such file").
pub(crate) struct Lowercase<'a, T>(pub(crate) &'a T);

impl<T: fmt::Display> fmt::Display for Lowercase<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0.to_string();
        let mut chars = text.chars();
        match chars.next() {
            Some(first) => write!(f, "{}{}", first.to_lowercase(), chars.as_str()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_letter_is_lowercased() {
        assert_eq!(Lowercase(&"No such File").to_string(), "no such File");
        assert_eq!(Lowercase(&"").to_string(), "");
    }
}
