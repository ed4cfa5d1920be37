//! Errors reading a policy file.

use crate::text::{CapQuotes, Lowercase, Quote};
use std::path::{Path, PathBuf};

/// A policy could not be read: the file, its syntax, or its shape.
///
/// Messages are one line, lowercase, with the offending input in backticks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read `{}`: {}", path.display(), Lowercase(source))]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The text is not a policy: a syntax error, a wrong type, a missing or an
    /// unknown field.
    #[error("{}", self.render_syntax())]
    Syntax {
        /// The file, when the policy came from one.
        file: Option<PathBuf>,
        /// Where in the document: `roles[2].extends`, or empty for the top level.
        path: String,
        /// The 1-based line and column, when the parser knows them.
        position: Option<(usize, usize)>,
        /// What is wrong.
        message: String,
    },
    /// A `.toml` policy file, but the crate was built without the `toml` feature.
    #[error("cannot read `{}`: toml policy files need the `toml` feature", path.display())]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
    },
}

impl LoadError {
    pub(crate) fn from_json(
        file: Option<&Path>,
        err: serde_path_to_error::Error<serde_json::Error>,
    ) -> Self {
        let path = err.path().to_string();
        let inner = err.into_inner();
        Self::json(file, path, &inner)
    }

    pub(crate) fn from_json_plain(file: Option<&Path>, err: serde_json::Error) -> Self {
        Self::json(file, String::new(), &err)
    }

    fn json(file: Option<&Path>, path: String, err: &serde_json::Error) -> Self {
        let full = err.to_string();
        let position = (err.line() > 0).then(|| (err.line(), err.column()));
        let message = match full.rfind(" at line ") {
            Some(cut) if position.is_some() => full.get(..cut).unwrap_or(&full).to_owned(),
            _ => full,
        };
        Self::Syntax {
            file: file.map(Path::to_path_buf),
            path: clean_path(path),
            position,
            message,
        }
    }

    #[cfg(feature = "toml")]
    pub(crate) fn from_toml(file: Option<&Path>, text: &str, err: toml::de::Error) -> Self {
        Self::Syntax {
            file: file.map(Path::to_path_buf),
            path: String::new(),
            position: err.span().map(|span| line_and_column(text, span.start)),
            message: one_line(err.message()),
        }
    }

    #[cfg(feature = "toml")]
    pub(crate) fn from_toml_path(
        file: Option<&Path>,
        text: &str,
        err: serde_path_to_error::Error<toml::de::Error>,
    ) -> Self {
        let path = clean_path(err.path().to_string());
        let inner = err.into_inner();
        Self::Syntax {
            file: file.map(Path::to_path_buf),
            path,
            position: inner.span().map(|span| line_and_column(text, span.start)),
            message: one_line(inner.message()),
        }
    }

    /// Attaches the file the policy was read from.
    pub(crate) fn with_file(self, file: &Path) -> Self {
        match self {
            Self::Syntax {
                path,
                position,
                message,
                ..
            } => Self::Syntax {
                file: Some(file.to_path_buf()),
                path,
                position,
                message,
            },
            other => other,
        }
    }

    fn render_syntax(&self) -> String {
        let Self::Syntax {
            file,
            path,
            position,
            message,
        } = self
        else {
            return String::new();
        };
        let mut out = String::from("invalid policy");
        if let Some(file) = file {
            out.push_str(&format!(" `{}`", file.display()));
        }
        out.push_str(": ");
        out.push_str(&CapQuotes(message).to_string());
        if !path.is_empty() {
            out.push_str(&format!(" at {}", Quote(path)));
        }
        if let Some((line, column)) = position {
            out.push_str(&format!(" (line {line}, column {column})"));
        }
        out
    }
}

fn clean_path(path: String) -> String {
    if path == "." {
        String::new()
    } else {
        path
    }
}

/// The 1-based line and column (in characters) of byte `offset` of `text`.
#[cfg(feature = "toml")]
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |at| at + 1);
    let column = before.get(line_start..).unwrap_or("").chars().count() + 1;
    (before.matches('\n').count() + 1, column)
}

#[cfg(feature = "toml")]
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
