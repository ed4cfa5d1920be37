//! The verified-token cache: a token seen before costs a hash and a
//! comparison, not a signature verification.
//!
//! An entry keeps the whole token and a hit compares it byte for byte, so no
//! hash collision, accidental or crafted, can return another token's claims.
//! The hash is `ahash` with per-process random keys (a keyed hash: an
//! attacker cannot aim at a bucket), not SHA-256: on a Scalekit-sized token
//! (about 1.1 KB) SHA-256 was 90 % of a hit's cost (`token/cached` 3.6 µs
//! with SHA-256, of which the digest alone 3.2 µs, on a loaded machine),
//! and the full comparison makes a cryptographic digest unnecessary. Only
//! verified tokens are ever inserted, so an attacker cannot fill the cache
//! with garbage; tokens longer than [`MAX_CACHED_TOKEN`] are not cached, so
//! memory stays below `capacity × MAX_CACHED_TOKEN`.
//!
//! Sharded `Mutex<HashMap>`s: a lookup holds one shard's lock for a probe, a
//! comparison and a reference-count increment, never across I/O or
//! verification, so readers on different shards never meet and readers on
//! one shard wait nanoseconds.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use super::VerifiedClaims;

/// Shards for caches of at least [`MIN_SHARDED`] entries.
const SHARDS: usize = 16;
const MIN_SHARDED: usize = 256;
/// Longer tokens are verified every time rather than cached.
pub(crate) const MAX_CACHED_TOKEN: usize = 8 * 1024;
/// How many of a token's last bytes its key hashes: 48 base64url
/// characters, 288 bits of its signature.
const KEYED_TAIL: usize = 48;

/// Passes an already computed hash through as the map's hash.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Not used for `u64` keys; fold anything else in.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

struct Entry {
    /// The whole token: a hit must be this token, not one with its hash.
    token: Box<str>,
    claims: Arc<VerifiedClaims>,
    expires_at: u64,
}

#[derive(Default)]
struct Shard {
    map: HashMap<u64, Entry, BuildHasherDefault<Identity>>,
    /// When expired entries were last swept (Unix seconds), to sweep at most
    /// once a second.
    swept_at: u64,
}

/// A token's keyed hash, computed once per verification.
#[derive(Clone, Copy)]
pub(crate) struct TokenKey(u64);

/// A bounded map from tokens to their verified claims.
pub(crate) struct TokenCache {
    state: ahash::RandomState,
    shards: Box<[Mutex<Shard>]>,
    /// Capacity of each shard; the total never exceeds the configured one.
    per_shard: Box<[usize]>,
}

impl TokenCache {
    /// A cache of at most `capacity` tokens; 0 disables it.
    pub(crate) fn new(capacity: usize) -> Self {
        let shards = if capacity >= MIN_SHARDED { SHARDS } else { 1 };
        let per_shard = (0..shards)
            .map(|i| capacity / shards + usize::from(i < capacity % shards))
            .collect();
        Self {
            state: ahash::RandomState::new(),
            shards: (0..shards).map(|_| Mutex::default()).collect(),
            per_shard,
        }
    }

    /// The key of `token`, or `None` when it is not cacheable (the cache is
    /// disabled or the token too long).
    ///
    /// Only the token's length and its last [`KEYED_TAIL`] bytes are hashed:
    /// a signed token ends with its signature, which differs between any two
    /// tokens, so the tail spreads keys as well as the whole token would, in
    /// a twelfth of the bytes of a Scalekit token. Tokens that share a tail
    /// share a key, and then only one of them is cached: a hit still
    /// compares the whole token, and only verified tokens are inserted.
    pub(crate) fn key(&self, token: &str) -> Option<TokenKey> {
        if token.len() > MAX_CACHED_TOKEN || self.per_shard.iter().all(|&c| c == 0) {
            return None;
        }
        let bytes = token.as_bytes();
        let tail = bytes
            .get(bytes.len().saturating_sub(KEYED_TAIL)..)
            .unwrap_or(bytes);
        Some(TokenKey(self.state.hash_one((bytes.len(), tail))))
    }

    fn shard(&self, key: TokenKey) -> Option<(MutexGuard<'_, Shard>, usize)> {
        // The high bits pick the shard; the map's buckets use the low bits.
        let index = usize::try_from(key.0 >> 58).unwrap_or(0) % self.shards.len();
        let shard = self.shards.get(index)?;
        let capacity = *self.per_shard.get(index)?;
        // A panic elsewhere cannot leave a shard inconsistent (every update
        // is a single map operation): keep serving.
        Some((shard.lock().unwrap_or_else(|e| e.into_inner()), capacity))
    }

    /// The claims of `token`, verified before and still unexpired at `now`.
    pub(crate) fn get(&self, key: TokenKey, token: &str, now: u64) -> Option<Arc<VerifiedClaims>> {
        let (mut shard, _) = self.shard(key)?;
        match shard.map.get(&key.0) {
            Some(entry) if *entry.token != *token => None,
            Some(entry) if now < entry.expires_at => Some(Arc::clone(&entry.claims)),
            Some(_) => {
                shard.map.remove(&key.0);
                None
            }
            None => None,
        }
    }

    /// Remembers a verified token until its `exp`. A full shard first drops
    /// its expired entries, then an arbitrary one (the map's order follows
    /// the keyed hashes, so the victim is effectively random). A token whose
    /// hash equals a cached one's replaces it.
    pub(crate) fn insert(&self, key: TokenKey, token: &str, claims: Arc<VerifiedClaims>, now: u64) {
        let expires_at = claims.expires_at;
        if expires_at <= now {
            return;
        }
        let Some((mut shard, capacity)) = self.shard(key) else {
            return;
        };
        if capacity == 0 {
            return;
        }
        if shard.map.len() >= capacity && !shard.map.contains_key(&key.0) {
            if shard.swept_at != now {
                shard.swept_at = now;
                shard.map.retain(|_, e| now < e.expires_at);
            }
            if shard.map.len() >= capacity {
                let victim = shard.map.keys().next().copied();
                if let Some(victim) = victim {
                    shard.map.remove(&victim);
                }
            }
        }
        let entry = Entry {
            token: token.into(),
            claims,
            expires_at,
        };
        shard.map.insert(key.0, entry);
    }

    /// How many tokens are cached (expired ones not yet swept included).
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).map.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Arc<VerifiedClaims> {
        Arc::new(VerifiedClaims::new("usr_1", "iss", exp))
    }

    fn put(cache: &TokenCache, token: &str, exp: u64, now: u64) {
        cache.insert(cache.key(token).unwrap(), token, claims(exp), now);
    }

    fn get(cache: &TokenCache, token: &str, now: u64) -> Option<Arc<VerifiedClaims>> {
        cache.get(cache.key(token).unwrap(), token, now)
    }

    #[test]
    fn a_hit_needs_the_same_token_and_an_unexpired_entry() {
        let cache = TokenCache::new(10);
        put(&cache, "a.b.c", 100, 50);
        assert!(get(&cache, "a.b.c", 99).is_some());
        assert!(get(&cache, "a.b.d", 99).is_none());
        // At `exp` exactly, and after, never served.
        assert!(get(&cache, "a.b.c", 100).is_none());
        assert_eq!(cache.len(), 0, "an expired entry is dropped when seen");
    }

    #[test]
    fn a_colliding_key_never_returns_another_tokens_claims() {
        let cache = TokenCache::new(10);
        put(&cache, "a.b.c", 100, 50);
        // Another token presented under the first one's key (a forced
        // collision): the full comparison refuses it.
        let key = cache.key("a.b.c").unwrap();
        assert!(cache.get(key, "x.y.z", 60).is_none());
        assert!(cache.get(key, "a.b.c", 60).is_some());
    }

    #[test]
    fn an_already_expired_or_too_long_token_is_not_inserted() {
        let cache = TokenCache::new(10);
        put(&cache, "t", 50, 50);
        assert_eq!(cache.len(), 0);
        assert!(cache.key(&"t".repeat(MAX_CACHED_TOKEN + 1)).is_none());
    }

    #[test]
    fn the_cache_never_exceeds_its_capacity() {
        for capacity in [1, 7, 255, 256, 1000] {
            let cache = TokenCache::new(capacity);
            for i in 0..capacity * 3 {
                put(&cache, &format!("token-{i}"), 1000, 1);
            }
            assert!(cache.len() <= capacity, "{} > {capacity}", cache.len());
            assert!(
                cache.len() >= capacity / 2,
                "capacity {capacity} poorly used"
            );
        }
    }

    #[test]
    fn a_full_shard_drops_expired_entries_first() {
        let cache = TokenCache::new(2);
        put(&cache, "old", 10, 1);
        put(&cache, "live", 1000, 1);
        put(&cache, "new", 1000, 20);
        assert!(get(&cache, "live", 20).is_some(), "the live entry survives");
        assert!(get(&cache, "new", 20).is_some());
    }

    #[test]
    fn tokens_sharing_a_tail_share_a_key_and_never_each_others_claims() {
        let cache = TokenCache::new(10);
        let tail = "s".repeat(KEYED_TAIL);
        let (a, b) = (format!("a.a.{tail}"), format!("b.b.{tail}"));
        assert_eq!(cache.key(&a).unwrap().0, cache.key(&b).unwrap().0);
        put(&cache, &a, 100, 50);
        assert!(get(&cache, &b, 60).is_none(), "the whole token is compared");
        put(&cache, &b, 100, 50);
        assert!(get(&cache, &b, 60).is_some());
        assert!(get(&cache, &a, 60).is_none(), "one of them is cached");
        // The length is hashed too, and any byte of the tail.
        let c = format!("a.{tail}");
        assert_ne!(cache.key(&a).unwrap().0, cache.key(&c).unwrap().0);
        let mut d = a.clone().into_bytes();
        *d.last_mut().unwrap() = b't';
        let d = String::from_utf8(d).unwrap();
        assert_ne!(cache.key(&a).unwrap().0, cache.key(&d).unwrap().0);
    }

    #[test]
    fn capacity_zero_disables() {
        let cache = TokenCache::new(0);
        assert!(cache.key("t").is_none());
    }
}
