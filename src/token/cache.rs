//! The verified-token cache: a token seen before costs a digest and a
//! lookup, not a signature verification.
//!
//! Keyed by the SHA-256 digest of the whole token, and the map compares the
//! whole 32-byte digest on a hit: a shard or bucket collision cannot return
//! another token's claims (only a SHA-256 collision could). Only verified
//! tokens are ever inserted, so an attacker cannot fill it with garbage.
//!
//! Sharded `Mutex<HashMap>`s: a lookup holds one shard's lock for a probe and
//! a reference-count increment, never across I/O or verification, so readers
//! on different shards never meet and readers on one shard wait nanoseconds.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use sha2::{Digest as _, Sha256};

use super::VerifiedClaims;

/// Shards for caches of at least [`MIN_SHARDED`] entries.
const SHARDS: usize = 16;
const MIN_SHARDED: usize = 256;

/// The SHA-256 digest of a token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct TokenDigest([u8; 32]);

impl TokenDigest {
    pub(crate) fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    /// The digest's first eight bytes: already uniformly distributed, so
    /// they serve as the map's hash and the shard index as they are.
    fn prefix(&self) -> u64 {
        let [a, b, c, d, e, f, g, h, ..] = self.0;
        u64::from_le_bytes([a, b, c, d, e, f, g, h])
    }
}

impl Hash for TokenDigest {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.prefix());
    }
}

/// Passes a digest's prefix through: hashing a hash again buys nothing.
/// Flooding is not a concern: only verified tokens are inserted.
#[derive(Default)]
struct PrefixHasher(u64);

impl Hasher for PrefixHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Not used by `TokenDigest`; fold anything else in.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

struct Entry {
    claims: Arc<VerifiedClaims>,
    expires_at: u64,
}

#[derive(Default)]
struct Shard {
    map: HashMap<TokenDigest, Entry, BuildHasherDefault<PrefixHasher>>,
    /// When expired entries were last swept (Unix seconds), to sweep at most
    /// once a second.
    swept_at: u64,
}

/// A bounded map from token digests to verified claims.
pub(crate) struct TokenCache {
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
            shards: (0..shards).map(|_| Mutex::default()).collect(),
            per_shard,
        }
    }

    pub(crate) fn is_enabled(&self) -> bool {
        self.per_shard.iter().any(|&c| c > 0)
    }

    fn shard(&self, digest: &TokenDigest) -> Option<(MutexGuard<'_, Shard>, usize)> {
        // The high bits pick the shard; the map's buckets use the low bits.
        let index = usize::try_from(digest.prefix() >> 58).unwrap_or(0) % self.shards.len();
        let shard = self.shards.get(index)?;
        let capacity = *self.per_shard.get(index)?;
        // A panic elsewhere cannot leave a shard inconsistent (every update
        // is a single map operation): keep serving.
        Some((shard.lock().unwrap_or_else(|e| e.into_inner()), capacity))
    }

    /// The claims of a token verified before and still unexpired at `now`.
    pub(crate) fn get(&self, digest: &TokenDigest, now: u64) -> Option<Arc<VerifiedClaims>> {
        let (mut shard, _) = self.shard(digest)?;
        match shard.map.get(digest) {
            Some(entry) if now < entry.expires_at => Some(Arc::clone(&entry.claims)),
            Some(_) => {
                shard.map.remove(digest);
                None
            }
            None => None,
        }
    }

    /// Remembers a verified token until its `exp`. A full shard first drops
    /// its expired entries, then an arbitrary one (the map's order follows
    /// the digests, so the victim is effectively random).
    pub(crate) fn insert(&self, digest: TokenDigest, claims: Arc<VerifiedClaims>, now: u64) {
        let expires_at = claims.expires_at;
        if expires_at <= now {
            return;
        }
        let Some((mut shard, capacity)) = self.shard(&digest) else {
            return;
        };
        if capacity == 0 {
            return;
        }
        if shard.map.len() >= capacity && !shard.map.contains_key(&digest) {
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
        shard.map.insert(digest, Entry { claims, expires_at });
    }

    /// How many tokens are cached (expired ones not yet swept included).
    pub(crate) fn len(&self) -> usize {
        (0..self.shards.len())
            .filter_map(|i| self.shards.get(i))
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).map.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Arc<VerifiedClaims> {
        Arc::new(VerifiedClaims {
            subject: "usr_1".into(),
            organization: None,
            roles: vec![],
            permissions: vec![],
            email: None,
            scopes: vec![],
            issuer: "iss".into(),
            audience: vec![],
            expires_at: exp,
            token_id: None,
        })
    }

    #[test]
    fn a_hit_needs_the_same_token_and_an_unexpired_entry() {
        let cache = TokenCache::new(10);
        let d = TokenDigest::of("a.b.c");
        cache.insert(d, claims(100), 50);
        assert!(cache.get(&d, 99).is_some());
        assert!(cache.get(&TokenDigest::of("a.b.d"), 99).is_none());
        // At `exp` exactly, and after, never served.
        assert!(cache.get(&d, 100).is_none());
        assert_eq!(cache.len(), 0, "an expired entry is dropped when seen");
    }

    #[test]
    fn an_already_expired_token_is_not_inserted() {
        let cache = TokenCache::new(10);
        let d = TokenDigest::of("t");
        cache.insert(d, claims(50), 50);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn the_cache_never_exceeds_its_capacity() {
        for capacity in [1, 7, 255, 256, 1000] {
            let cache = TokenCache::new(capacity);
            for i in 0..capacity * 3 {
                cache.insert(TokenDigest::of(&format!("token-{i}")), claims(1000), 1);
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
        let old = TokenDigest::of("old");
        let live = TokenDigest::of("live");
        cache.insert(old, claims(10), 1);
        cache.insert(live, claims(1000), 1);
        let new = TokenDigest::of("new");
        cache.insert(new, claims(1000), 20);
        assert!(cache.get(&live, 20).is_some(), "the live entry survives");
        assert!(cache.get(&new, 20).is_some());
    }

    #[test]
    fn capacity_zero_disables() {
        let cache = TokenCache::new(0);
        assert!(!cache.is_enabled());
        let d = TokenDigest::of("t");
        cache.insert(d, claims(1000), 1);
        assert!(cache.get(&d, 2).is_none());
    }
}
