//! [`JwksVerifier`]: access tokens checked against an issuer's JSON Web Key
//! Set, with rotation, a throttled single-flight refetch and a
//! verified-token cache.
//!
//! Concurrency, in one place:
//! - the key set is an `ArcSwap<KeySet>`: requests `load()` it without
//!   locking and never hold the guard across an `.await`;
//! - fetching runs on a short-lived OS thread (the HTTP client is blocking),
//!   so no executor thread ever waits on the network and verification works
//!   on any executor; requests that need its result wait on a
//!   `tokio::sync::Notify`, never on a lock;
//! - `fetch: Mutex<FetchState>` only guards the single-flight flag and the
//!   throttle clock, for a few instructions, never across I/O;
//! - a background thread holding a `Weak` refreshes the set periodically; it
//!   exits as soon as the verifier is dropped.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread::Thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use tokio::sync::Notify;

use super::cache::TokenCache;
use super::claims::{RawClaims, KNOWN_CLAIMS};
use super::{TokenError, VerifiedClaims, Verifier, VerifyFuture};

/// Tokens longer than this are refused before anything else (a header of
/// this size is already far past what HTTP servers accept).
const MAX_TOKEN_BYTES: usize = 64 * 1024;
/// Keys kept from one key set; the rest are ignored.
const MAX_KEYS: usize = 64;

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What kind of key an algorithm needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

/// An allowed algorithm: its JOSE name, jsonwebtoken's, and its key family.
#[derive(Debug, Clone, Copy)]
struct Alg {
    name: &'static str,
    alg: Algorithm,
    family: Family,
}

/// The public-key algorithms a verifier may allow. The HMAC ones and `none`
/// are absent on purpose: a verifier holding only public keys must never
/// treat a key's bytes as a shared secret.
const PUBLIC_KEY_ALGORITHMS: [Alg; 9] = [
    Alg {
        name: "RS256",
        alg: Algorithm::RS256,
        family: Family::Rsa,
    },
    Alg {
        name: "RS384",
        alg: Algorithm::RS384,
        family: Family::Rsa,
    },
    Alg {
        name: "RS512",
        alg: Algorithm::RS512,
        family: Family::Rsa,
    },
    Alg {
        name: "PS256",
        alg: Algorithm::PS256,
        family: Family::Rsa,
    },
    Alg {
        name: "PS384",
        alg: Algorithm::PS384,
        family: Family::Rsa,
    },
    Alg {
        name: "PS512",
        alg: Algorithm::PS512,
        family: Family::Rsa,
    },
    Alg {
        name: "ES256",
        alg: Algorithm::ES256,
        family: Family::EcP256,
    },
    Alg {
        name: "ES384",
        alg: Algorithm::ES384,
        family: Family::EcP384,
    },
    Alg {
        name: "EdDSA",
        alg: Algorithm::EdDSA,
        family: Family::Ed25519,
    },
];

/// One usable verification key.
struct Key {
    kid: String,
    family: Family,
    /// The JWK's own `alg`, when it names one: tokens must use exactly it.
    alg: Option<String>,
    decoding: DecodingKey,
}

/// A parsed key set. `loaded` is false only for the empty set a verifier
/// starts with before its first successful fetch.
struct KeySet {
    keys: Vec<Key>,
    loaded: bool,
}

impl KeySet {
    fn empty() -> Self {
        Self {
            keys: Vec::new(),
            loaded: false,
        }
    }

    fn find(&self, kid: &str) -> Option<&Key> {
        // Key sets hold a handful of keys: a scan beats hashing.
        self.keys.iter().find(|k| k.kid == kid)
    }

    /// Parses `{"keys": [...]}`, keeping the keys it can verify with and
    /// skipping the others (encryption keys, symmetric `oct` keys, unknown
    /// types or curves). A set with no usable key is an error, so a broken
    /// answer never replaces a working set.
    fn parse(bytes: &[u8]) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct RawSet {
            keys: Vec<serde_json::Value>,
        }
        #[derive(Deserialize)]
        struct RawJwk {
            kty: String,
            #[serde(default)]
            kid: Option<String>,
            #[serde(default)]
            alg: Option<String>,
            #[serde(default, rename = "use")]
            usage: Option<String>,
            #[serde(default)]
            n: Option<String>,
            #[serde(default)]
            e: Option<String>,
            #[serde(default)]
            crv: Option<String>,
            #[serde(default)]
            x: Option<String>,
            #[serde(default)]
            y: Option<String>,
        }
        let set: RawSet =
            serde_json::from_slice(bytes).map_err(|e| format!("key set is not a jwks: {e}"))?;
        let mut keys = Vec::new();
        for value in set.keys {
            if keys.len() == MAX_KEYS {
                break;
            }
            let Ok(jwk) = serde_json::from_value::<RawJwk>(value) else {
                continue;
            };
            if jwk.usage.as_deref().is_some_and(|u| u != "sig") {
                continue;
            }
            let parsed = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
                ("RSA", _) => match (&jwk.n, &jwk.e) {
                    (Some(n), Some(e)) => {
                        DecodingKey::from_rsa_components(n, e).map(|k| (Family::Rsa, k))
                    }
                    _ => continue,
                },
                ("EC", Some(crv @ ("P-256" | "P-384"))) => match (&jwk.x, &jwk.y) {
                    (Some(x), Some(y)) => DecodingKey::from_ec_components(x, y).map(|k| {
                        let family = if crv == "P-256" {
                            Family::EcP256
                        } else {
                            Family::EcP384
                        };
                        (family, k)
                    }),
                    _ => continue,
                },
                ("OKP", Some("Ed25519")) => match &jwk.x {
                    Some(x) => DecodingKey::from_ed_components(x).map(|k| (Family::Ed25519, k)),
                    None => continue,
                },
                _ => continue,
            };
            let Ok((family, decoding)) = parsed else {
                continue;
            };
            keys.push(Key {
                kid: jwk.kid.unwrap_or_default(),
                family,
                alg: jwk.alg,
                decoding,
            });
        }
        if keys.is_empty() {
            return Err("key set has no usable signing key".into());
        }
        Ok(Self { keys, loaded: true })
    }
}

/// How often the verifier did what, for tests and metrics.
///
/// # Examples
///
/// ```
/// # fn f(verifier: &rolegraph::token::JwksVerifier) {
/// let stats = verifier.stats();
/// println!("{} of {} lookups hit", stats.cache_hits, stats.cache_hits + stats.cache_misses);
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct VerifierStats {
    /// Tokens answered from the verified-token cache.
    pub cache_hits: u64,
    /// Cache lookups that missed (0 while the cache is disabled).
    pub cache_misses: u64,
    /// Signature verifications performed.
    pub signature_verifications: u64,
    /// Key set fetches started.
    pub jwks_fetches: u64,
    /// Key set fetches that failed (the previous keys kept serving).
    pub jwks_fetch_failures: u64,
    /// Tokens in the cache now.
    pub cached_tokens: usize,
    /// Keys in the current key set.
    pub keys: usize,
}

#[derive(Default)]
struct Counters {
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    signature_verifications: AtomicU64,
    jwks_fetches: AtomicU64,
    jwks_fetch_failures: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The single-flight flag and the throttle clock.
#[derive(Default)]
struct FetchState {
    in_flight: bool,
    started_at: Option<Instant>,
    /// Whether the last finished fetch succeeded.
    last_ok: Option<bool>,
}

/// Where keys come from.
enum Source {
    Url { url: String, agent: ureq::Agent },
    Static,
}

/// What a refetch attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fetched {
    Ok,
    Failed,
    Throttled,
    Static,
}

struct Config {
    issuers: Vec<String>,
    audiences: Vec<String>,
    algorithms: Vec<Alg>,
    leeway: u64,
    required: Vec<&'static str>,
    min_refetch: Duration,
    max_jwks_bytes: u64,
}

struct Inner {
    config: Config,
    source: Source,
    keys: ArcSwap<KeySet>,
    fetch: Mutex<FetchState>,
    fetched: Notify,
    cache: TokenCache,
    counters: Counters,
    /// The background refresher, woken on drop so that it exits at once.
    refresher: Mutex<Option<Thread>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(thread) = lock(&self.refresher).take() {
            thread.unpark();
        }
    }
}

/// Every critical section is a few assignments that cannot panic half-way:
/// a poisoned lock still holds consistent state.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The parts of a compact JWS.
struct Parts<'t> {
    header: &'t str,
    payload: &'t str,
    signature: &'t str,
    /// `header.payload`, what the signature covers.
    message: &'t str,
}

fn split(token: &str) -> Result<Parts<'_>, TokenError> {
    let (message, signature) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
    let (header, payload) = message.split_once('.').ok_or(TokenError::Malformed)?;
    // An empty signature is left to the algorithm check (`alg: none`
    // tokens have one) and then to the signature check.
    if header.is_empty() || payload.is_empty() || payload.contains('.') {
        return Err(TokenError::Malformed);
    }
    Ok(Parts {
        header,
        payload,
        signature,
        message,
    })
}

/// The header fields a verifier reads. `alg` is a string, not an enum, so
/// that `none` or an unknown algorithm is reported as such.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    /// Extensions the issuer says must be understood: none are, so any
    /// `crit` is a refusal (RFC 7515 §4.1.11).
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

fn decode_part(part: &str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed)
}

impl Inner {
    fn allowed(&self, alg: &str) -> Option<Alg> {
        self.config
            .algorithms
            .iter()
            .find(|a| a.name == alg)
            .copied()
    }

    /// The claims of a cached, unexpired `token`, counted as a cache hit;
    /// a miss is not counted here (the verification that follows counts it).
    fn cached(&self, token: &str) -> Option<Arc<VerifiedClaims>> {
        if token.len() > MAX_TOKEN_BYTES {
            return None;
        }
        let claims = self.cache.get(self.cache.key(token)?, token, unix_now())?;
        bump(&self.counters.cache_hits);
        Some(claims)
    }

    async fn verify(self: &Arc<Self>, token: &str) -> Result<Arc<VerifiedClaims>, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed);
        }
        let cache_key = self.cache.key(token);
        if let Some(key) = cache_key {
            if let Some(claims) = self.cache.get(key, token, unix_now()) {
                bump(&self.counters.cache_hits);
                return Ok(claims);
            }
            bump(&self.counters.cache_misses);
        }

        let parts = split(token)?;
        let header: RawHeader = serde_json::from_slice(&decode_part(parts.header)?)
            .map_err(|_| TokenError::Malformed)?;
        // The algorithm is checked before any key is looked at.
        let alg = self
            .allowed(&header.alg)
            .ok_or_else(|| TokenError::Algorithm {
                alg: header.alg.clone(),
            })?;
        if header.crit.is_some() {
            return Err(TokenError::Malformed);
        }
        let kid = header.kid.unwrap_or_default();

        // The guard of `load()` is dropped before any `.await`.
        let checked = self
            .keys
            .load()
            .find(&kid)
            .map(|key| self.check_signature(key, &kid, alg, &parts));
        match checked {
            Some(result) => result?,
            None => {
                let fetched = self.refetch(false).await;
                let keys = self.keys.load();
                match keys.find(&kid) {
                    Some(key) => self.check_signature(key, &kid, alg, &parts)?,
                    None => {
                        return Err(match fetched {
                            Fetched::Failed => TokenError::KeysUnavailable,
                            Fetched::Throttled if !keys.loaded => TokenError::KeysUnavailable,
                            Fetched::Ok | Fetched::Throttled | Fetched::Static => {
                                TokenError::UnknownKey { kid }
                            }
                        })
                    }
                }
            }
        }

        let now = unix_now();
        let claims = Arc::new(self.check_claims(&decode_part(parts.payload)?, now)?);
        if let Some(key) = cache_key {
            self.cache.insert(key, token, Arc::clone(&claims), now);
        }
        Ok(claims)
    }

    fn check_signature(
        &self,
        key: &Key,
        kid: &str,
        alg: Alg,
        parts: &Parts<'_>,
    ) -> Result<(), TokenError> {
        if key.family != alg.family || key.alg.as_deref().is_some_and(|a| a != alg.name) {
            return Err(TokenError::KeyMismatch {
                kid: kid.to_owned(),
                alg: alg.name.to_owned(),
            });
        }
        bump(&self.counters.signature_verifications);
        match jsonwebtoken::crypto::verify(
            parts.signature,
            parts.message.as_bytes(),
            &key.decoding,
            alg.alg,
        ) {
            Ok(true) => Ok(()),
            Ok(false) => Err(TokenError::Signature),
            Err(e) => match e.kind() {
                jsonwebtoken::errors::ErrorKind::Base64(_) => Err(TokenError::Malformed),
                _ => Err(TokenError::Signature),
            },
        }
    }

    fn check_claims(&self, payload: &[u8], now: u64) -> Result<VerifiedClaims, TokenError> {
        let raw = RawClaims::parse(payload)?;
        let leeway = self.config.leeway;
        let Some(exp) = raw.exp else {
            return Err(TokenError::Claims {
                claim: "exp".into(),
                problem: "missing".into(),
            });
        };
        // `exp` is the first second the token is no longer valid (RFC 7519 §4.1.4).
        if now >= exp.saturating_add(leeway) {
            return Err(TokenError::Expired);
        }
        if raw.nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
            return Err(TokenError::NotYetValid);
        }
        if !raw
            .iss
            .as_ref()
            .is_some_and(|iss| self.config.issuers.contains(iss))
        {
            return Err(TokenError::Issuer);
        }
        if !raw
            .aud
            .as_ref()
            .is_some_and(|aud| aud.iter().any(|a| self.config.audiences.contains(a)))
        {
            return Err(TokenError::Audience);
        }
        if let Some(claim) = self.config.required.iter().find(|c| !raw.has(c)) {
            return Err(TokenError::Claims {
                claim: (*claim).to_owned(),
                problem: "missing".into(),
            });
        }
        Ok(raw.into_verified(exp))
    }

    /// Refetches the key set once for everyone: joins a fetch in flight, or
    /// starts one unless the last one started less than the minimum interval
    /// ago (`force` skips that throttle), then waits for it.
    async fn refetch(self: &Arc<Self>, force: bool) -> Fetched {
        let Source::Url { .. } = &self.source else {
            return Fetched::Static;
        };
        let notified = {
            let mut state = lock(&self.fetch);
            // Registered before the lock is released: the fetcher takes the
            // lock before `notify_waiters`, so the wake-up cannot be missed.
            let notified = self.fetched.notified();
            if !state.in_flight {
                let throttled = state
                    .started_at
                    .is_some_and(|t| t.elapsed() < self.config.min_refetch);
                if throttled && !force {
                    return Fetched::Throttled;
                }
                if !self.start_fetch(&mut state) {
                    return Fetched::Failed;
                }
            }
            notified
        };
        notified.await;
        if lock(&self.fetch).last_ok == Some(true) {
            Fetched::Ok
        } else {
            Fetched::Failed
        }
    }

    /// Starts a fetch on its own thread; false when no thread could start.
    /// Called with the fetch lock held.
    fn start_fetch(self: &Arc<Self>, state: &mut FetchState) -> bool {
        state.in_flight = true;
        state.started_at = Some(Instant::now());
        bump(&self.counters.jwks_fetches);
        let inner = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("rolegraph-jwks".into())
            .spawn(move || inner.fetch_now());
        if spawned.is_err() {
            state.in_flight = false;
            state.last_ok = Some(false);
            bump(&self.counters.jwks_fetch_failures);
        }
        spawned.is_ok()
    }

    /// Fetches, stores the new set on success, and wakes the waiters
    /// (even if the fetch panicked).
    fn fetch_now(&self) {
        struct Finish<'a> {
            inner: &'a Inner,
            ok: bool,
        }
        impl Drop for Finish<'_> {
            fn drop(&mut self) {
                {
                    let mut state = lock(&self.inner.fetch);
                    state.in_flight = false;
                    state.last_ok = Some(self.ok);
                }
                if !self.ok {
                    bump(&self.inner.counters.jwks_fetch_failures);
                }
                self.inner.fetched.notify_waiters();
            }
        }
        let mut finish = Finish {
            inner: self,
            ok: false,
        };
        match self.download() {
            Ok(set) => {
                self.keys.store(Arc::new(set));
                finish.ok = true;
            }
            Err(_reason) => {
                #[cfg(feature = "tracing")]
                tracing::warn!(reason = %_reason, "key set fetch failed; the previous keys keep serving");
            }
        }
    }

    fn download(&self) -> Result<KeySet, String> {
        let Source::Url { url, agent } = &self.source else {
            return Err("the key set is static".into());
        };
        let mut response = agent
            .get(url)
            .header("accept", "application/json")
            .call()
            .map_err(|e| format!("key set `{url}` is unreachable: {e}"))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(format!("key set `{url}` answered status {status}"));
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(self.config.max_jwks_bytes)
            .read_to_vec()
            .map_err(|e| format!("key set `{url}` could not be read: {e}"))?;
        KeySet::parse(&body)
    }

    fn stats(&self) -> VerifierStats {
        let c = &self.counters;
        VerifierStats {
            cache_hits: c.cache_hits.load(Ordering::Relaxed),
            cache_misses: c.cache_misses.load(Ordering::Relaxed),
            signature_verifications: c.signature_verifications.load(Ordering::Relaxed),
            jwks_fetches: c.jwks_fetches.load(Ordering::Relaxed),
            jwks_fetch_failures: c.jwks_fetch_failures.load(Ordering::Relaxed),
            cached_tokens: self.cache.len(),
            keys: self.keys.load().keys.len(),
        }
    }
}

/// Verifies access tokens against an issuer's JSON Web Key Set (Scalekit's
/// `{environment_url}/keys`, or any URL, or a static set).
///
/// Cheap to clone (one `Arc`); clones share keys, cache and counters. See the
/// [module documentation](super) for what it checks and how it fetches.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use rolegraph::token::{JwksVerifier, Verifier};
/// # async fn f(token: &str) -> Result<(), rolegraph::token::TokenError> {
/// let verifier = JwksVerifier::builder(
///     "https://acme.scalekit.com/keys",
///     "https://acme.scalekit.com",
///     "skc_123",
/// )
/// .min_refetch_interval(Duration::from_secs(10))
/// .cache_capacity(50_000)
/// .build()?;
/// verifier.refresh().await?; // optional: have the keys before the first request
/// let claims = verifier.verify(token).await?;
/// println!("{} in {:?}", claims.subject, claims.organization);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct JwksVerifier {
    inner: Arc<Inner>,
}

impl fmt::Debug for JwksVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match &self.inner.source {
            Source::Url { url, .. } => url.as_str(),
            Source::Static => "static",
        };
        f.debug_struct("JwksVerifier")
            .field("source", &source)
            .field("issuers", &self.inner.config.issuers)
            .field("audiences", &self.inner.config.audiences)
            .field(
                "algorithms",
                &self
                    .inner
                    .config
                    .algorithms
                    .iter()
                    .map(|a| a.name)
                    .collect::<Vec<_>>(),
            )
            .field("stats", &self.inner.stats())
            .finish()
    }
}

impl JwksVerifier {
    /// A builder for a verifier reading its keys from `jwks_url`, accepting
    /// tokens issued by `issuer` for `audience`.
    pub fn builder(
        jwks_url: impl Into<String>,
        issuer: impl Into<String>,
        audience: impl Into<String>,
    ) -> JwksVerifierBuilder {
        JwksVerifierBuilder::new(
            KeySource::Url(jwks_url.into()),
            issuer.into(),
            audience.into(),
        )
    }

    /// A builder for a Scalekit environment: keys from
    /// `{environment_url}/keys`, issuer `environment_url`.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), rolegraph::token::TokenError> {
    /// let verifier = rolegraph::token::JwksVerifier::for_environment("https://acme.scalekit.com/", "skc_1")
    ///     .refresh_interval(std::time::Duration::ZERO) // no background refresh
    ///     .build()?;
    /// assert!(format!("{verifier:?}").contains("https://acme.scalekit.com/keys"));
    /// # Ok(()) }
    /// ```
    pub fn for_environment(
        environment_url: &str,
        audience: impl Into<String>,
    ) -> JwksVerifierBuilder {
        let base = environment_url.trim_end_matches('/');
        Self::builder(format!("{base}/keys"), base, audience)
    }

    /// A builder for a verifier over a fixed key set, fetched from nowhere
    /// (tests, benchmarks, a development mode).
    pub fn builder_from_jwks_json(
        jwks_json: impl Into<String>,
        issuer: impl Into<String>,
        audience: impl Into<String>,
    ) -> JwksVerifierBuilder {
        JwksVerifierBuilder::new(
            KeySource::Json(jwks_json.into()),
            issuer.into(),
            audience.into(),
        )
    }

    /// A verifier over a fixed key set with the default settings.
    ///
    /// # Errors
    ///
    /// [`TokenError::Key`] when the set is not a JWKS with a usable signing
    /// key; [`TokenError::Config`] for an empty issuer or audience.
    ///
    /// # Examples
    ///
    /// See the [module documentation](super).
    pub fn from_jwks_json(
        jwks_json: &str,
        issuer: &str,
        audience: &str,
    ) -> Result<Self, TokenError> {
        Self::builder_from_jwks_json(jwks_json, issuer, audience).build()
    }

    /// Fetches the key set now (joining a fetch in flight, ignoring the
    /// refetch throttle) and waits for it: call it at start-up to have the
    /// keys before the first request. A static set needs no refresh.
    ///
    /// # Errors
    ///
    /// [`TokenError::KeysUnavailable`] when the fetch failed (the previous
    /// keys, if any, keep serving).
    pub async fn refresh(&self) -> Result<(), TokenError> {
        match self.inner.refetch(true).await {
            Fetched::Ok | Fetched::Static | Fetched::Throttled => Ok(()),
            Fetched::Failed => Err(TokenError::KeysUnavailable),
        }
    }

    /// What the verifier has done so far.
    pub fn stats(&self) -> VerifierStats {
        self.inner.stats()
    }
}

impl Verifier for JwksVerifier {
    fn verify<'a>(&'a self, token: &'a str) -> VerifyFuture<'a> {
        Box::pin(self.inner.verify(token))
    }

    /// A verified-token cache hit, without a future.
    fn verified(&self, token: &str) -> Option<Arc<VerifiedClaims>> {
        self.inner.cached(token)
    }
}

/// Where a builder's keys come from.
#[derive(Debug, Clone)]
enum KeySource {
    Url(String),
    Json(String),
}

/// Configures a [`JwksVerifier`]; every setting has a default but the key
/// source, the issuer and the audience.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use rolegraph::token::{JwksVerifier, TokenError};
///
/// let refused = JwksVerifier::builder("ftp://keys", "", "skc_1")
///     .algorithms(["RS256", "HS256"])
///     .build()
///     .unwrap_err();
/// assert_eq!(
///     refused.to_string(),
///     "token verifier configuration is invalid: algorithm `HS256` uses a shared secret, \
///      only public-key algorithms are allowed; issuer is empty; \
///      key set url `ftp://keys` is not http or https"
/// );
/// ```
#[derive(Debug, Clone)]
pub struct JwksVerifierBuilder {
    source: KeySource,
    issuers: Vec<String>,
    audiences: Vec<String>,
    algorithms: Vec<String>,
    leeway: Duration,
    min_refetch: Duration,
    refresh: Duration,
    fetch_timeout: Duration,
    max_jwks_bytes: u64,
    cache_capacity: usize,
    required: Vec<String>,
}

impl JwksVerifierBuilder {
    fn new(source: KeySource, issuer: String, audience: String) -> Self {
        Self {
            source,
            issuers: vec![issuer],
            audiences: vec![audience],
            algorithms: vec!["RS256".into()],
            leeway: Duration::from_secs(60),
            min_refetch: Duration::from_secs(10),
            refresh: Duration::from_secs(300),
            fetch_timeout: Duration::from_secs(5),
            max_jwks_bytes: 256 * 1024,
            cache_capacity: 10_000,
            required: Vec::new(),
        }
    }

    /// Also accepts tokens issued by `issuer`.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuers.push(issuer.into());
        self
    }

    /// Also accepts tokens for `audience` (a token matches when any of its
    /// audiences is configured).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// The algorithms tokens may use (JOSE names), replacing the default
    /// `RS256`. Only public-key algorithms exist here: `RS256`…`RS512`,
    /// `PS256`…`PS512`, `ES256`, `ES384`, `EdDSA`; `none` and `HS*` make
    /// [`JwksVerifierBuilder::build`] fail.
    pub fn algorithms<A: Into<String>>(mut self, algorithms: impl IntoIterator<Item = A>) -> Self {
        self.algorithms = algorithms.into_iter().map(Into::into).collect();
        self
    }

    /// Clock skew tolerated on `exp` and `nbf` (default 60 s). The cache
    /// ignores it: a cached token is never served at or after its `exp`.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The least time between two fetches triggered by unknown `kid`s
    /// (default 10 s). Within it, a token naming an unknown key fails fast.
    pub fn min_refetch_interval(mut self, interval: Duration) -> Self {
        self.min_refetch = interval;
        self
    }

    /// How often the key set is refreshed in the background (default 5 min;
    /// zero disables the refresher).
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh = interval;
        self
    }

    /// The whole-request timeout of one key set fetch (default 5 s).
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = timeout;
        self
    }

    /// The largest key set body read (default 256 KiB); a larger one is a
    /// failed fetch.
    pub fn max_jwks_bytes(mut self, bytes: u64) -> Self {
        self.max_jwks_bytes = bytes;
        self
    }

    /// How many verified tokens the cache holds (default 10 000; 0 disables
    /// the cache, every token is verified).
    pub fn cache_capacity(mut self, capacity: usize) -> Self {
        self.cache_capacity = capacity;
        self
    }

    /// A claim every token must carry, besides `exp`, `iss` and `aud` (which
    /// always are): one of `sub`, `oid`, `roles`, `permissions`, `email`,
    /// `scopes`, `nbf`, `jti`.
    pub fn require_claim(mut self, claim: impl Into<String>) -> Self {
        self.required.push(claim.into());
        self
    }

    /// The verifier. A URL source starts fetching its keys at once (in the
    /// background; [`JwksVerifier::refresh`] waits for them) and, unless the
    /// refresh interval is zero, starts the background refresher.
    ///
    /// # Errors
    ///
    /// [`TokenError::Config`] listing every configuration problem;
    /// [`TokenError::Key`] when a static key set has no usable key.
    pub fn build(self) -> Result<JwksVerifier, TokenError> {
        let mut problems = Vec::new();
        let mut algorithms = Vec::new();
        for name in &self.algorithms {
            match PUBLIC_KEY_ALGORITHMS.iter().find(|a| a.name == name.as_str()) {
                Some(alg) => algorithms.push(*alg),
                None if name.starts_with("HS") => problems.push(format!(
                    "algorithm `{name}` uses a shared secret, only public-key algorithms are allowed"
                )),
                None if name.eq_ignore_ascii_case("none") => {
                    problems.push(format!("algorithm `{name}` is never allowed"));
                }
                None => problems.push(format!("algorithm `{name}` is unknown")),
            }
        }
        if self.algorithms.is_empty() {
            problems.push("no algorithm is allowed".into());
        }
        if self.issuers.iter().any(String::is_empty) {
            problems.push("issuer is empty".into());
        }
        if self.audiences.iter().any(String::is_empty) {
            problems.push("audience is empty".into());
        }
        let mut required = Vec::new();
        for claim in &self.required {
            match KNOWN_CLAIMS.iter().find(|k| **k == claim.as_str()) {
                Some(known) => required.push(*known),
                None => problems.push(format!("claim `{claim}` cannot be required")),
            }
        }
        if let KeySource::Url(url) = &self.source {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                problems.push(format!("key set url `{url}` is not http or https"));
            }
        }
        if !problems.is_empty() {
            return Err(TokenError::config(problems.join("; ")));
        }

        let (source, keys) = match self.source {
            KeySource::Url(url) => {
                let agent = ureq::Agent::config_builder()
                    .timeout_global(Some(self.fetch_timeout))
                    .http_status_as_error(false)
                    .build()
                    .new_agent();
                (Source::Url { url, agent }, KeySet::empty())
            }
            KeySource::Json(json) => (
                Source::Static,
                KeySet::parse(json.as_bytes()).map_err(TokenError::key)?,
            ),
        };
        let inner = Arc::new(Inner {
            config: Config {
                issuers: self.issuers,
                audiences: self.audiences,
                algorithms,
                leeway: self.leeway.as_secs(),
                required,
                min_refetch: self.min_refetch,
                max_jwks_bytes: self.max_jwks_bytes,
            },
            source,
            keys: ArcSwap::from_pointee(keys),
            fetch: Mutex::default(),
            fetched: Notify::new(),
            cache: TokenCache::new(self.cache_capacity),
            counters: Counters::default(),
            refresher: Mutex::new(None),
        });
        if let Source::Url { .. } = inner.source {
            inner.start_fetch(&mut lock(&inner.fetch));
            if !self.refresh.is_zero() {
                spawn_refresher(&inner, self.refresh);
            }
        }
        Ok(JwksVerifier { inner })
    }
}

/// Refreshes the key set every `every` until the verifier is dropped (its
/// `Drop` unparks this thread, which then finds the `Weak` dead).
fn spawn_refresher(inner: &Arc<Inner>, every: Duration) {
    let weak: Weak<Inner> = Arc::downgrade(inner);
    let spawned = std::thread::Builder::new()
        .name("rolegraph-jwks-refresh".into())
        .spawn(move || loop {
            let deadline = Instant::now() + every;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                std::thread::park_timeout(left);
                if weak.strong_count() == 0 {
                    return;
                }
            }
            let Some(inner) = weak.upgrade() else {
                return;
            };
            let mut state = lock(&inner.fetch);
            if !state.in_flight {
                inner.start_fetch(&mut state);
            }
        });
    if let Ok(handle) = spawned {
        *lock(&inner.refresher) = Some(handle.thread().clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA_N: &str = "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw";

    fn jwk(fields: serde_json::Value) -> serde_json::Value {
        let mut base = serde_json::json!({"kty": "RSA", "n": RSA_N, "e": "AQAB", "kid": "k"});
        if let (Some(base), Some(fields)) = (base.as_object_mut(), fields.as_object()) {
            base.extend(fields.clone());
        }
        base
    }

    fn parse(keys: Vec<serde_json::Value>) -> Result<KeySet, String> {
        KeySet::parse(serde_json::json!({ "keys": keys }).to_string().as_bytes())
    }

    #[test]
    fn unusable_keys_are_skipped_and_an_empty_set_is_an_error() {
        let set = parse(vec![
            jwk(serde_json::json!({"kid": "sig"})),
            jwk(serde_json::json!({"kid": "enc", "use": "enc"})),
            serde_json::json!({"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}),
            serde_json::json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA", "kid": "p521"}),
            serde_json::json!({"kty": "RSA", "kid": "no-modulus", "e": "AQAB"}),
            serde_json::json!({"kid": "no-kty"}),
        ])
        .unwrap();
        let kids: Vec<&str> = set.keys.iter().map(|k| k.kid.as_str()).collect();
        assert_eq!(kids, ["sig"]);
        assert!(set.loaded);
        assert_eq!(
            parse(vec![serde_json::json!({"kty": "oct", "k": "c2VjcmV0"})])
                .err()
                .as_deref(),
            Some("key set has no usable signing key")
        );
        assert!(KeySet::parse(b"[]").is_err());
    }

    #[test]
    fn a_key_set_keeps_at_most_max_keys() {
        let keys = (0..MAX_KEYS + 10)
            .map(|i| jwk(serde_json::json!({"kid": format!("k{i}")})))
            .collect();
        assert_eq!(parse(keys).unwrap().keys.len(), MAX_KEYS);
    }

    #[test]
    fn a_compact_jws_has_exactly_three_parts() {
        let parts = split("aa.bb.cc").unwrap();
        assert_eq!(
            (parts.header, parts.payload, parts.signature, parts.message),
            ("aa", "bb", "cc", "aa.bb")
        );
        assert_eq!(split("aa.bb.").unwrap().signature, "");
        for bad in ["", "aa", "aa.bb", ".bb.cc", "aa..cc", "aa.bb.cc.dd"] {
            assert!(split(bad).is_err(), "{bad}");
        }
    }
}
