//! Standard Webhooks signature verification, as Scalekit's SDKs do it.
//!
//! The sender signs `{webhook-id}.{webhook-timestamp}.{raw body}` with
//! HMAC-SHA256 under a shared secret and sends the standard-base64 tag in
//! `webhook-signature` as a space-separated list of `v1,<base64>` entries
//! (several while a secret is being rotated). The receiver recomputes the tag
//! and accepts the delivery when any `v1` entry matches under any of its
//! secrets, and the timestamp is within the tolerance (300 s either way) of
//! its own clock.
//!
//! The comparison is constant-time (`subtle`), so that the time taken does
//! not tell an attacker how many leading bytes of a forged tag were right.
//! The tag is computed once per secret, whatever the number of entries.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::error::WebhookError;

type HmacSha256 = Hmac<Sha256>;

/// The header carrying the delivery id (the same for every retry of one message).
pub const WEBHOOK_ID: &str = "webhook-id";
/// The header carrying the signing time, in Unix seconds.
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
/// The header carrying the signatures.
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";

/// The default tolerance between the signing time and the receiver's clock.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// Longest `webhook-id` accepted: it is journaled with every applied event.
const MAX_ID_LEN: usize = 256;

/// Length of an HMAC-SHA256 tag.
const TAG_LEN: usize = 32;

/// Checks Standard Webhooks signatures with one or more secrets.
///
/// Holding several secrets lets a service accept deliveries signed with the
/// old or the new secret while Scalekit's secret is rotated.
///
/// # Examples
///
/// The test vector of `SCALEKIT.md`:
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use rolegraph::scalekit::Verifier;
///
/// let verifier = Verifier::new(["whsec_dGVzdHNlY3JldA=="])?;
/// let body = br#"{"spec_version":"1","id":"evt_1","type":"organization.directory.user_updated","data":{"roles":[{"role_name":"billing_admin"}]}}"#;
/// let headers = [
///     ("Webhook-Id", "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"),
///     ("Webhook-Timestamp", "1674087231"),
///     ("Webhook-Signature", "v1,aL32QRBylJVrcx2sIjIIjwSzYmTSfIh0S1ReUfMQqqw="),
/// ];
/// let now = UNIX_EPOCH + Duration::from_secs(1674087231 + 10);
/// let verified = verifier.verify(headers, body, now)?;
/// assert_eq!(verified.id(), "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W");
/// # Ok::<(), rolegraph::scalekit::WebhookError>(())
/// ```
#[derive(Clone)]
pub struct Verifier {
    /// One keyed MAC state per secret, cloned per delivery (the key schedule
    /// is done once).
    keys: Vec<HmacSha256>,
    tolerance: Duration,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("secrets", &self.keys.len())
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

/// A delivery whose signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    id: String,
    timestamp: i64,
}

impl Verified {
    /// The `webhook-id`: the same for every retry of one message, so it is
    /// what deduplication keys on.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The `webhook-timestamp`, in Unix seconds (the time of this attempt,
    /// not of the event).
    #[must_use]
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }
}

impl Verifier {
    /// A verifier accepting signatures made with any of `secrets`, each
    /// `whsec_` followed by the standard-base64 key.
    ///
    /// # Errors
    ///
    /// [`WebhookError::BadSecret`] when the list is empty or a secret lacks
    /// the `whsec_` prefix, is not standard base64, or decodes to nothing.
    pub fn new<I, S>(secrets: I) -> Result<Self, WebhookError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut keys = Vec::new();
        for (i, secret) in secrets.into_iter().enumerate() {
            let index = i + 1;
            let bad = |reason: &str| WebhookError::BadSecret {
                index,
                reason: reason.to_owned(),
            };
            let encoded = secret
                .as_ref()
                .trim()
                .strip_prefix("whsec_")
                .ok_or_else(|| bad("it must start with `whsec_`"))?;
            let key = STANDARD
                .decode(encoded)
                .map_err(|_| bad("the part after `whsec_` is not standard base64"))?;
            if key.is_empty() {
                return Err(bad("the key is empty"));
            }
            let mac = HmacSha256::new_from_slice(&key)
                .map_err(|_| bad("the key cannot key HMAC-SHA256"))?;
            keys.push(mac);
        }
        if keys.is_empty() {
            return Err(WebhookError::BadSecret {
                index: 0,
                reason: "no secret was given".into(),
            });
        }
        Ok(Self {
            keys,
            tolerance: DEFAULT_TOLERANCE,
        })
    }

    /// Sets the tolerance between the signing time and the receiver's clock
    /// (default 300 s, in both directions).
    #[must_use]
    pub fn with_tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// Checks one delivery: the three headers (names case-insensitive, in any
    /// order, other headers ignored), the raw body exactly as received, and
    /// the receiver's clock.
    ///
    /// A repeated `webhook-signature` header adds its entries to the list; a
    /// repeated `webhook-id` or `webhook-timestamp` is ambiguous and refused.
    /// Entries of other versions than `v1` are skipped.
    ///
    /// # Errors
    ///
    /// [`MissingHeader`](WebhookError::MissingHeader),
    /// [`MalformedHeader`](WebhookError::MalformedHeader),
    /// [`TooOld`](WebhookError::TooOld), [`TooNew`](WebhookError::TooNew),
    /// [`NoMatchingSignature`](WebhookError::NoMatchingSignature).
    ///
    /// # Complexity
    ///
    /// One HMAC-SHA256 of the body per secret, plus a constant-time 32-byte
    /// comparison per `v1` entry and secret.
    pub fn verify<I, K, V>(
        &self,
        headers: I,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Verified, WebhookError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<[u8]>,
    {
        let found = Found::collect(headers)?;
        let id_bytes = found
            .id
            .ok_or(WebhookError::MissingHeader { name: WEBHOOK_ID })?;
        let ts_bytes = found.timestamp.ok_or(WebhookError::MissingHeader {
            name: WEBHOOK_TIMESTAMP,
        })?;
        if found.signatures.is_empty() {
            return Err(WebhookError::MissingHeader {
                name: WEBHOOK_SIGNATURE,
            });
        }
        let id = parse_id(&id_bytes)?;
        let (ts_text, timestamp) = parse_timestamp(&ts_bytes)?;
        self.check_time(timestamp, now)?;

        let mut tags: Vec<[u8; TAG_LEN]> = Vec::new();
        let mut entries = 0usize;
        let mut any_entry = false;
        for value in &found.signatures {
            for entry in value
                .split(u8::is_ascii_whitespace)
                .filter(|e| !e.is_empty())
            {
                let Some(comma) = entry.iter().position(|&b| b == b',') else {
                    continue;
                };
                any_entry = true;
                let (version, rest) = entry.split_at(comma);
                if version != b"v1" {
                    continue;
                }
                entries += 1;
                let mut tag = [0u8; TAG_LEN];
                let encoded = rest.get(1..).unwrap_or_default();
                // A v1 entry that is not a 32-byte tag simply matches nothing.
                if matches!(STANDARD.decode_slice(encoded, &mut tag), Ok(TAG_LEN)) {
                    tags.push(tag);
                }
            }
        }
        if !any_entry {
            return Err(WebhookError::MalformedHeader {
                name: WEBHOOK_SIGNATURE,
                reason: "expected space-separated `v1,<base64>` entries".into(),
            });
        }
        let mut matched = subtle::Choice::from(0);
        for key in &self.keys {
            let expected = sign_raw(key, id.as_bytes(), ts_text.as_bytes(), body);
            for tag in &tags {
                matched |= expected.ct_eq(tag);
            }
        }
        if bool::from(matched) {
            Ok(Verified { id, timestamp })
        } else {
            Err(WebhookError::NoMatchingSignature {
                entries,
                secrets: self.keys.len(),
            })
        }
    }

    /// The `webhook-signature` value the first secret gives `body` sent as
    /// delivery `id` at `timestamp` (Unix seconds): what a sender puts in the
    /// header, for tests and for replaying stored events.
    ///
    /// # Examples
    ///
    /// ```
    /// use rolegraph::scalekit::Verifier;
    ///
    /// let verifier = Verifier::new(["whsec_dGVzdHNlY3JldA=="])?;
    /// let body = br#"{"spec_version":"1","id":"evt_1","type":"organization.directory.user_updated","data":{"roles":[{"role_name":"billing_admin"}]}}"#;
    /// assert_eq!(
    ///     verifier.sign("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", 1674087231, body),
    ///     "v1,aL32QRBylJVrcx2sIjIIjwSzYmTSfIh0S1ReUfMQqqw=",
    /// );
    /// # Ok::<(), rolegraph::scalekit::WebhookError>(())
    /// ```
    #[must_use]
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let Some(key) = self.keys.first() else {
            return String::new();
        };
        let tag = sign_raw(key, id.as_bytes(), timestamp.to_string().as_bytes(), body);
        format!("v1,{}", STANDARD.encode(tag))
    }

    fn check_time(&self, timestamp: i64, now: SystemTime) -> Result<(), WebhookError> {
        let now = unix_seconds(now);
        let tolerance_s = i64::try_from(self.tolerance.as_secs()).unwrap_or(i64::MAX);
        if now.saturating_sub(timestamp) > tolerance_s {
            return Err(WebhookError::TooOld {
                timestamp,
                now,
                tolerance_s,
            });
        }
        if timestamp.saturating_sub(now) > tolerance_s {
            return Err(WebhookError::TooNew {
                timestamp,
                now,
                tolerance_s,
            });
        }
        Ok(())
    }
}

/// The three headers, picked out of whatever the framework hands over.
struct Found {
    id: Option<Vec<u8>>,
    timestamp: Option<Vec<u8>>,
    signatures: Vec<Vec<u8>>,
}

impl Found {
    fn collect<I, K, V>(headers: I) -> Result<Self, WebhookError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<[u8]>,
    {
        let mut found = Self {
            id: None,
            timestamp: None,
            signatures: Vec::new(),
        };
        for (name, value) in headers {
            let name = name.as_ref().trim();
            let value = value.as_ref();
            if name.eq_ignore_ascii_case(WEBHOOK_SIGNATURE) {
                found.signatures.push(value.to_vec());
            } else if name.eq_ignore_ascii_case(WEBHOOK_ID) {
                once(&mut found.id, WEBHOOK_ID, value)?;
            } else if name.eq_ignore_ascii_case(WEBHOOK_TIMESTAMP) {
                once(&mut found.timestamp, WEBHOOK_TIMESTAMP, value)?;
            }
        }
        Ok(found)
    }
}

fn once(slot: &mut Option<Vec<u8>>, name: &'static str, value: &[u8]) -> Result<(), WebhookError> {
    if slot.is_some() {
        return Err(WebhookError::MalformedHeader {
            name,
            reason: "it is given more than once".into(),
        });
    }
    *slot = Some(value.to_vec());
    Ok(())
}

fn parse_id(bytes: &[u8]) -> Result<String, WebhookError> {
    let bad = |reason: String| WebhookError::MalformedHeader {
        name: WEBHOOK_ID,
        reason,
    };
    let text = std::str::from_utf8(bytes)
        .map_err(|_| bad("it is not text".into()))?
        .trim();
    if text.is_empty() {
        return Err(bad("it is empty".into()));
    }
    if text.len() > MAX_ID_LEN {
        return Err(bad(format!("it is longer than {MAX_ID_LEN} bytes")));
    }
    if text.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad(format!(
            "`{}` holds spaces or control characters",
            text.escape_debug()
        )));
    }
    Ok(text.to_owned())
}

/// The timestamp as signed (its exact text) and as a number.
fn parse_timestamp(bytes: &[u8]) -> Result<(String, i64), WebhookError> {
    let text = std::str::from_utf8(bytes).unwrap_or_default().trim();
    let ok = !text.is_empty() && text.len() <= 18 && text.bytes().all(|b| b.is_ascii_digit());
    match text.parse::<i64>() {
        Ok(ts) if ok => Ok((text.to_owned(), ts)),
        _ => Err(WebhookError::MalformedHeader {
            name: WEBHOOK_TIMESTAMP,
            reason: format!(
                "expected Unix seconds, got `{}`",
                String::from_utf8_lossy(bytes).escape_debug()
            ),
        }),
    }
}

fn sign_raw(key: &HmacSha256, id: &[u8], timestamp: &[u8], body: &[u8]) -> [u8; TAG_LEN] {
    let mut mac = key.clone();
    mac.update(id);
    mac.update(b".");
    mac.update(timestamp);
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// Seconds since the Unix epoch (negative before it).
pub(crate) fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"spec_version":"1","id":"evt_1","type":"organization.directory.user_updated","data":{"roles":[{"role_name":"billing_admin"}]}}"#;

    #[test]
    fn the_test_vector_signs_as_documented() {
        let v = Verifier::new(["whsec_dGVzdHNlY3JldA=="]).unwrap();
        assert_eq!(
            v.sign("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", 1_674_087_231, BODY),
            "v1,aL32QRBylJVrcx2sIjIIjwSzYmTSfIh0S1ReUfMQqqw="
        );
    }

    #[test]
    fn a_leading_zero_timestamp_is_signed_as_written() {
        // The signed content is the header text, not the number re-printed.
        let v = Verifier::new(["whsec_dGVzdHNlY3JldA=="]).unwrap();
        let key = &v.keys[0];
        let tag = sign_raw(key, b"msg_1", b"01674087231", BODY);
        let sig = format!("v1,{}", STANDARD.encode(tag));
        let now = UNIX_EPOCH + Duration::from_secs(1_674_087_231);
        let headers = [
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", "01674087231"),
            ("webhook-signature", sig.as_str()),
        ];
        assert!(v.verify(headers, BODY, now).is_ok());
    }

    #[test]
    fn unix_seconds_before_the_epoch_are_negative() {
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_secs(5)), -5);
        assert_eq!(unix_seconds(UNIX_EPOCH + Duration::from_secs(5)), 5);
    }
}
