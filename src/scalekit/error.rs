//! The one error enum of the webhook phase.

use crate::change::ChangeError;
use crate::engine::OpenError;
use crate::text::CapQuotes;

use super::source::SourceError;

/// Why a webhook delivery could not be verified, read or applied, or why a
/// verifier, a resync or a start-up failed.
///
/// Every signature failure has its own variant, so that logs and metrics can
/// tell a clock problem ([`TooOld`](Self::TooOld)) from a wrong secret
/// ([`NoMatchingSignature`](Self::NoMatchingSignature)). Messages never
/// contain a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// A required header (`webhook-id`, `webhook-timestamp`,
    /// `webhook-signature`) is absent.
    #[error("missing header `{name}`")]
    MissingHeader {
        /// The header's name, lower-cased.
        name: &'static str,
    },
    /// A header is present but cannot be read.
    #[error("malformed header `{name}`: {}", CapQuotes(reason))]
    MalformedHeader {
        /// The header's name, lower-cased.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A signing secret is not `whsec_` followed by standard base64.
    #[error("bad webhook secret (number {index} in the list): {reason}")]
    BadSecret {
        /// Its position in the list given to the verifier, from 1.
        index: usize,
        /// What is wrong with it (never the secret itself).
        reason: String,
    },
    /// The signed timestamp is further in the past than the tolerance allows
    /// (a replay, or a badly late clock).
    #[error("webhook timestamp `{timestamp}` is {} s older than now (tolerance {tolerance_s} s)", now.saturating_sub(*timestamp))]
    TooOld {
        /// The `webhook-timestamp` header, in Unix seconds.
        timestamp: i64,
        /// The receiver's clock, in Unix seconds.
        now: i64,
        /// The tolerance, in seconds.
        tolerance_s: i64,
    },
    /// The signed timestamp is further in the future than the tolerance allows.
    #[error("webhook timestamp `{timestamp}` is {} s ahead of now (tolerance {tolerance_s} s)", timestamp.saturating_sub(*now))]
    TooNew {
        /// The `webhook-timestamp` header, in Unix seconds.
        timestamp: i64,
        /// The receiver's clock, in Unix seconds.
        now: i64,
        /// The tolerance, in seconds.
        tolerance_s: i64,
    },
    /// No `v1` entry of `webhook-signature` matches the body under any of the
    /// verifier's secrets.
    #[error("no signature in `webhook-signature` matches the body ({entries} `v1` entries checked against {secrets} secrets)")]
    NoMatchingSignature {
        /// How many `v1` entries the header held.
        entries: usize,
        /// How many secrets were tried.
        secrets: usize,
    },
    /// The body is not a Scalekit event of a known shape.
    #[error("malformed event: {}", CapQuotes(reason))]
    MalformedEvent {
        /// What is wrong, with the offending input in backticks.
        reason: String,
    },
    /// The event names something that does not exist yet (a role extending a
    /// base role not created yet, a user given a role not created yet), and
    /// no source could provide it.
    #[error("event depends on what does not exist yet: {}", CapQuotes(what))]
    MissingDependency {
        /// What is missing, as the engine said it.
        what: String,
    },
    /// The source could not be reached or did not answer usefully.
    #[error("scalekit source: {0}")]
    Source(#[from] SourceError),
    /// The engine refused the change (an invalid policy, a journal failure).
    #[error(transparent)]
    Change(#[from] ChangeError),
    /// A resync or start-up needs a source and none is configured.
    #[error("no source is configured: a resync needs one")]
    NoSource,
    /// The policy changed during every read of the source's whole state
    /// (deliveries kept landing), so a resync could have undone them.
    #[error("the policy changed while the source was read, {attempts} times in a row; try again")]
    Contended {
        /// How many reads were made.
        attempts: usize,
    },
    /// The engine could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
}

impl WebhookError {
    /// Whether this is a failure of signature verification (answered 401).
    #[must_use]
    pub fn is_signature_error(&self) -> bool {
        matches!(
            self,
            Self::MissingHeader { .. }
                | Self::MalformedHeader { .. }
                | Self::TooOld { .. }
                | Self::TooNew { .. }
                | Self::NoMatchingSignature { .. }
        )
    }
}
