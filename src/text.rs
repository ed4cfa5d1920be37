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

/// The longest user input a message quotes in full, in characters.
pub(crate) const QUOTE_LIMIT: usize = 64;

/// User input as a message quotes it: in backticks, and past
/// [`QUOTE_LIMIT`] characters cut, with an ellipsis and its length, so that
/// a 1,000,000-character name costs a line, not 2 MB of stderr:
/// `` `aaaa…` (1000000 characters) ``.
pub(crate) struct Quote<'a>(pub(crate) &'a str);

impl fmt::Display for Quote<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_capped(f, self.0, '`')
    }
}

/// Names in backticks, comma-separated, each capped as [`Quote`] caps it.
pub(crate) struct QuoteList<'a, S>(pub(crate) &'a [S]);

impl<S: AsRef<str>> fmt::Display for QuoteList<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            Quote(s.as_ref()).fmt(f)?;
        }
        Ok(())
    }
}

/// A message from a parser (serde, toml) with every span it quotes, in
/// backticks or double quotes, capped as [`Quote`] caps it: those messages
/// echo unknown field names and bad values at full length.
pub(crate) struct CapQuotes<'a>(pub(crate) &'a str);

impl fmt::Display for CapQuotes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(open) = rest.find(['`', '"']) {
            let (before, from) = rest.split_at(open);
            f.write_str(before)?;
            let mut chars = from.chars();
            let quote = chars.next().unwrap_or('`');
            let inner = chars.as_str();
            match inner.find(quote) {
                Some(close) => {
                    let (quoted, after) = inner.split_at(close);
                    write_capped(f, quoted, quote)?;
                    rest = after.get(quote.len_utf8()..).unwrap_or("");
                }
                None => {
                    // An unmatched quote: the rest is quoted text without its end.
                    let cut = cap(inner);
                    write!(f, "{quote}{}", cut.0)?;
                    if let Some(n) = cut.1 {
                        write!(f, "… ({n} characters)")?;
                    }
                    return Ok(());
                }
            }
        }
        f.write_str(rest)
    }
}

/// `text` up to [`QUOTE_LIMIT`] characters, and its length in characters
/// when that cut it.
fn cap(text: &str) -> (&str, Option<usize>) {
    match text.char_indices().nth(QUOTE_LIMIT) {
        None => (text, None),
        Some((end, _)) => (text.get(..end).unwrap_or(text), Some(text.chars().count())),
    }
}

fn write_capped(f: &mut fmt::Formatter<'_>, text: &str, quote: char) -> fmt::Result {
    match cap(text) {
        (all, None) => write!(f, "{quote}{all}{quote}"),
        (head, Some(n)) => write!(f, "{quote}{head}…{quote} ({n} characters)"),
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

    #[test]
    fn long_input_is_cut_with_its_length() {
        let exact = "a".repeat(QUOTE_LIMIT);
        assert_eq!(Quote(&exact).to_string(), format!("`{exact}`"));
        let long = "é".repeat(1_000_000);
        assert_eq!(
            Quote(&long).to_string(),
            format!("`{}…` (1000000 characters)", "é".repeat(QUOTE_LIMIT))
        );
        assert_eq!(Quote("").to_string(), "``");
        assert_eq!(
            QuoteList(&["a", &exact, &long[..200]]).to_string(),
            format!(
                "`a`, `{exact}`, `{}…` (100 characters)",
                "é".repeat(QUOTE_LIMIT)
            )
        );
    }

    #[test]
    fn parser_messages_have_their_quotes_capped() {
        let long = "x".repeat(1000);
        let cut = format!("{}…", "x".repeat(QUOTE_LIMIT));
        assert_eq!(
            CapQuotes(&format!(
                "unknown field `{long}`, expected `name` or `roles`"
            ))
            .to_string(),
            format!("unknown field `{cut}` (1000 characters), expected `name` or `roles`")
        );
        assert_eq!(
            CapQuotes(&format!(
                "invalid type: string \"{long}\", expected a sequence"
            ))
            .to_string(),
            format!("invalid type: string \"{cut}\" (1000 characters), expected a sequence")
        );
        assert_eq!(
            CapQuotes(&format!("unterminated `{long}")).to_string(),
            format!("unterminated `{cut} (1000 characters)")
        );
        assert_eq!(CapQuotes("no quotes").to_string(), "no quotes");
    }
}
