//! Several instances, one order: the change log replicated over Redis
//! Streams (feature `redis`).
//!
//! Every instance of a service opens its engine as usual (durable on its own
//! directory, or in memory) and calls [`Engine::join_fleet`]. From then on:
//!
//! - **Writes** are validated against the instance's state at revision `r`
//!   and appended to the stream as entry `{r+1}-1` only if the stream ends
//!   at `r` (compare-and-append, one Lua script: the explicit id also makes
//!   Redis itself refuse an id that is not above the top). Of two
//!   concurrent writers one wins; the other applies the winner's batch,
//!   validates its own again and retries after a short jittered wait (at
//!   most 8 times), or reports the conflict. Only then is the batch journaled locally and published, so
//!   [`Outcome::revision`](crate::Outcome::revision) is the fleet's
//!   revision.
//! - **A tail thread** per engine blocks on `XREAD` from its revision and
//!   applies the other instances' batches in order through the same publish
//!   path as local ones (snapshot, feed, history, stats, local journal,
//!   [`Engine::wait_for_revision`]). A gap — an id skipped, entries trimmed —
//!   is never skipped over: the engine loads the fleet's newest checkpoint
//!   and resumes after it. An entry that is corrupt, foreign or does not
//!   replay to what it records stops the tail at that id, loudly
//!   ([`Stats::fleet_stopped_at`](crate::Stats::fleet_stopped_at)); it is
//!   never applied and never skipped, and this instance's writes fail
//!   until the log is repaired.
//! - **Checkpoints** are published next to the stream every
//!   [`FleetOptions::checkpoint_every`] revisions by whichever instance
//!   gets there; the stream is trimmed only below the oldest checkpoint
//!   kept, so a new or long-stopped instance boots from checkpoint + tail.
//!   A checkpoint Redis refuses is counted in
//!   [`Stats::fleet_checkpoint_failures`](crate::Stats::fleet_checkpoint_failures)
//!   and retried after a wait that doubles with each failure.
//! - **Redis unreachable**: reads keep serving the last snapshot; writes
//!   fail with [`ChangeError::Journal`](crate::ChangeError::Journal) (the
//!   webhook handler answers it with a 5xx, so Scalekit retries); the tail reconnects
//!   and resumes without loss when Redis is back.
//!
//! Webhook deliveries stay idempotent across the fleet: the delivery record
//! ([`Change::RecordDelivery`](crate::Change::RecordDelivery)) is part of
//! the batch, so a retry landing on another instance is a duplicate there.
//!
//! Keys, under [`FleetOptions::key`] `K`: the stream `K:log`, the sorted set
//! of checkpoint revisions `K:checkpoints`, and one string per checkpoint
//! `K:checkpoint:{revision}`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::Value;

use crate::engine::replica::{Fault, LogError, LogRecord, SharedLog};
use crate::engine::Entry;
use crate::text::Quote;
use crate::Engine;

/// How an engine joins a fleet: see [`Engine::join_fleet`].
///
/// # Examples
///
/// ```
/// use rolegraph::fleet::FleetOptions;
///
/// let options = FleetOptions::new("redis://127.0.0.1:6379/")
///     .with_key("myapp:authz")
///     .with_checkpoint_every(1_000);
/// assert_eq!(options.key, "myapp:authz");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FleetOptions {
    /// The Redis URL (`redis://host:port/db`).
    pub url: String,
    /// The prefix of the fleet's keys (default `rolegraph`).
    pub key: String,
    /// This instance's name, recorded with each entry it appends (default:
    /// the process id).
    pub instance: String,
    /// Publish a checkpoint every this many revisions (default 1,000; at
    /// least 1).
    pub checkpoint_every: u64,
    /// Checkpoints kept in Redis (default 2, at least 1); the stream is
    /// trimmed below the oldest.
    pub keep_checkpoints: usize,
    /// The longest a Redis command may take before Redis counts as
    /// unreachable (default 2 s).
    pub timeout: Duration,
    /// How long the tail's `XREAD` blocks before it looks around (default
    /// 250 ms); it wakes as soon as an entry arrives.
    pub poll: Duration,
}

impl FleetOptions {
    /// The defaults, with Redis at `url`.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key: "rolegraph".into(),
            instance: format!("pid-{}", std::process::id()),
            checkpoint_every: 1_000,
            keep_checkpoints: 2,
            timeout: Duration::from_secs(2),
            poll: Duration::from_millis(250),
        }
    }

    /// Sets [`key`](Self::key).
    #[must_use]
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = key.into();
        self
    }

    /// Sets [`instance`](Self::instance).
    #[must_use]
    pub fn with_instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = instance.into();
        self
    }

    /// Sets [`checkpoint_every`](Self::checkpoint_every).
    #[must_use]
    pub fn with_checkpoint_every(mut self, revisions: u64) -> Self {
        self.checkpoint_every = revisions.max(1);
        self
    }

    /// Sets [`keep_checkpoints`](Self::keep_checkpoints).
    #[must_use]
    pub fn with_keep_checkpoints(mut self, keep: usize) -> Self {
        self.keep_checkpoints = keep.max(1);
        self
    }

    /// Sets [`timeout`](Self::timeout).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`poll`](Self::poll).
    #[must_use]
    pub fn with_poll(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }
}

/// The engine could not join the fleet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FleetError {
    /// The URL is not a Redis URL.
    #[error("invalid redis url {url}: {reason}")]
    Url {
        /// The URL, capped and quoted.
        url: String,
        /// Why.
        reason: String,
    },
    /// The engine already follows a fleet's log.
    #[error("the engine already follows a fleet's log")]
    AlreadyJoined,
    /// Redis cannot be reached (the engine keeps serving its local state;
    /// join again later).
    #[error("{0}")]
    Unavailable(String),
    /// The fleet's log ends below this engine's revision: Redis lost
    /// batches this instance had acknowledged (a restore, AOF `everysec`
    /// after a crash, another Redis).
    #[error("the fleet's log ends at revision `{top}`, below this instance's revision `{revision}`: it lost acknowledged batches")]
    Behind {
        /// Where the fleet's log ends.
        top: u64,
        /// This engine's revision.
        revision: u64,
    },
    /// The log holds an entry this engine refuses; it was not applied.
    #[error("{0}")]
    Refused(String),
}

impl From<Fault> for FleetError {
    fn from(fault: Fault) -> Self {
        match fault {
            Fault::Unavailable(_) => Self::Unavailable(fault.to_string()),
            Fault::Behind { top, revision } => Self::Behind { top, revision },
            Fault::Stopped { .. } => Self::Refused(fault.to_string()),
        }
    }
}

impl Engine {
    /// Joins the fleet whose log is in Redis at `options.url`: catches up
    /// with it (from its checkpoint when this engine is new or the log no
    /// longer holds what it lacks), then appends every batch there before
    /// publishing it and follows the other instances' batches from a
    /// background thread. See the [`fleet`](crate::fleet) module.
    ///
    /// An empty fleet starts from this engine's state: the first instance
    /// publishes it as the fleet's first checkpoint. An engine at revision
    /// 0 that joins a fleet takes the fleet's state.
    ///
    /// # Blocking
    ///
    /// Reads from Redis and applies what it lacks under the writer lock.
    /// Call it before serving, or from `spawn_blocking`.
    ///
    /// # Errors
    ///
    /// [`FleetError`]; the engine then goes on alone, serving its state.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use rolegraph::fleet::FleetOptions;
    /// use rolegraph::{Engine, Policy};
    ///
    /// let engine = Engine::open("/var/lib/myapp/authz", &Policy::new())?;
    /// engine.join_fleet(FleetOptions::new("redis://127.0.0.1:6379/"))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn join_fleet(&self, options: FleetOptions) -> Result<(), FleetError> {
        if self.has_shared_log() {
            return Err(FleetError::AlreadyJoined);
        }
        let client = redis::Client::open(options.url.as_str()).map_err(|e| FleetError::Url {
            url: Quote(&options.url).to_string(),
            reason: one_line(&e),
        })?;
        let log = RedisLog::new(client.clone(), &options);
        self.attach_log(Box::new(log))?;
        let tail = Tail {
            engine: self.downgrade(),
            closing: self.closing(),
            log: RedisLog::new(client, &options),
            checkpoint_every: options.checkpoint_every.max(1),
            poll: options.poll,
            checkpoint_failures: 0,
            retry_checkpoint_at: None,
        };
        std::thread::Builder::new()
            .name("rolegraph-fleet-tail".into())
            .spawn(move || tail.run())
            .map_err(|e| FleetError::Unavailable(format!("cannot start the tail thread: {e}")))?;
        Ok(())
    }
}

/// A Redis error on one line.
fn one_line(e: &dyn std::fmt::Display) -> String {
    e.to_string().replace(['\n', '\r'], " ")
}

/// The append script: appends the entry as `{after+1}-1` only when the log
/// ends exactly at `after` (its last entry, or its newest checkpoint when
/// trimming left no entry); else answers where it ends.
const APPEND: &str = r"
local top = 0
local cp = redis.call('ZREVRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if #cp > 0 then top = tonumber(cp[2]) end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last > 0 then
  local rev = tonumber(string.match(last[1][1], '^(%d+)'))
  if rev > top then top = rev end
end
if top ~= tonumber(ARGV[1]) then return top end
redis.call('XADD', KEYS[1], ARGV[2], 'v', '1', 'origin', ARGV[3], 'entry', ARGV[4])
return -1
";

/// How many entries one read brings.
const PAGE: usize = 256;

/// The fleet's log in Redis: one connection, reopened after a failure.
struct RedisLog {
    client: redis::Client,
    con: Option<redis::Connection>,
    stream: String,
    checkpoints: String,
    key: String,
    instance: String,
    keep: usize,
    timeout: Duration,
    append: redis::Script,
}

impl RedisLog {
    fn new(client: redis::Client, options: &FleetOptions) -> Self {
        Self {
            client,
            con: None,
            stream: format!("{}:log", options.key),
            checkpoints: format!("{}:checkpoints", options.key),
            key: options.key.clone(),
            instance: options.instance.clone(),
            keep: options.keep_checkpoints.max(1),
            timeout: options.timeout,
            append: redis::Script::new(APPEND),
        }
    }

    fn checkpoint_key(&self, revision: u64) -> String {
        format!("{}:checkpoint:{revision}", self.key)
    }

    /// Runs `f` on the connection (opening it first); a failure drops the
    /// connection so that the next call reconnects.
    ///
    /// A connection kept from earlier may have died with a Redis that was
    /// restarted since: when it fails as a dropped connection (not a
    /// timeout), `f` runs once more on a new one. That is safe for every
    /// command here: the reads and `SET NX` are idempotent, and the append
    /// compares first, so an append that did land the first time comes back
    /// as a conflict, never twice.
    fn with<T>(
        &mut self,
        f: impl Fn(&mut redis::Connection, &Self) -> redis::RedisResult<T>,
    ) -> Result<T, LogError> {
        let reused = self.con.is_some();
        let mut con = match self.con.take() {
            Some(con) => con,
            None => self.open()?,
        };
        let result = match f(&mut con, self) {
            Err(e) if reused && e.is_connection_dropped() && !e.is_timeout() => {
                con = self.open()?;
                f(&mut con, self)
            }
            other => other,
        };
        match result {
            Ok(v) => {
                self.con = Some(con);
                Ok(v)
            }
            Err(e) => Err(self.unavailable(&e)),
        }
    }

    fn open(&self) -> Result<redis::Connection, LogError> {
        let con = self
            .client
            .get_connection_with_timeout(self.timeout)
            .map_err(|e| self.unavailable(&e))?;
        con.set_read_timeout(Some(self.timeout))
            .map_err(|e| self.unavailable(&e))?;
        con.set_write_timeout(Some(self.timeout))
            .map_err(|e| self.unavailable(&e))?;
        Ok(con)
    }

    fn unavailable(&self, e: &redis::RedisError) -> LogError {
        let info = self.client.get_connection_info();
        LogError::Unavailable(format!("redis at `{}`: {}", info.addr(), one_line(e)))
    }

    /// `XREAD BLOCK`: whether entries after `after` arrived within `block`.
    fn wait_after(&mut self, after: u64, block: Duration) -> Result<bool, LogError> {
        let block_ms = u64::try_from(block.as_millis()).unwrap_or(u64::MAX).max(1);
        let timeout = self.timeout + block;
        self.with(|con, log| {
            con.set_read_timeout(Some(timeout))?;
            let reply: Value = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(1)
                .arg("BLOCK")
                .arg(block_ms)
                .arg("STREAMS")
                .arg(&log.stream)
                .arg(format!("{after}-1"))
                .query(con)?;
            con.set_read_timeout(Some(log.timeout))?;
            Ok(!matches!(reply, Value::Nil))
        })
    }

    /// Drops checkpoints beyond the newest `keep`, then the stream's
    /// entries below the oldest kept.
    fn trim(&mut self) -> Result<(), LogError> {
        self.with(|con, log| {
            let revisions: Vec<u64> = redis::cmd("ZREVRANGE")
                .arg(&log.checkpoints)
                .arg(0)
                .arg(-1)
                .query(con)?;
            let (kept, old) = revisions.split_at(log.keep.min(revisions.len()));
            for revision in old {
                redis::cmd("ZREM")
                    .arg(&log.checkpoints)
                    .arg(revision)
                    .query::<()>(con)?;
                redis::cmd("DEL")
                    .arg(log.checkpoint_key(*revision))
                    .query::<()>(con)?;
            }
            if let (false, Some(oldest)) = (old.is_empty(), kept.last()) {
                redis::cmd("XTRIM")
                    .arg(&log.stream)
                    .arg("MINID")
                    .arg(format!("{oldest}-1"))
                    .query::<()>(con)?;
            }
            Ok(())
        })
    }

    fn latest_checkpoint_revision(&mut self) -> Result<Option<u64>, LogError> {
        self.with(|con, log| {
            let newest: Vec<u64> = redis::cmd("ZREVRANGE")
                .arg(&log.checkpoints)
                .arg(0)
                .arg(0)
                .query(con)?;
            Ok(newest.first().copied())
        })
    }
}

impl SharedLog for RedisLog {
    fn append(&mut self, after: u64, entry: &Entry) -> Result<(), LogError> {
        let bytes = serde_json::to_vec(entry)
            .map_err(|e| LogError::Unavailable(format!("cannot encode the batch: {e}")))?;
        let id = format!("{}-1", after + 1);
        let top: i64 = self.with(|con, log| {
            log.append
                .key(&log.stream)
                .key(&log.checkpoints)
                .arg(after)
                .arg(&id)
                .arg(&log.instance)
                .arg(&bytes)
                .invoke(con)
        })?;
        match u64::try_from(top) {
            Err(_) => Ok(()),
            Ok(top) if top > after => Err(LogError::Conflict),
            Ok(top) => Err(LogError::Behind { top }),
        }
    }

    fn read_after(&mut self, after: u64) -> Result<Vec<LogRecord>, LogError> {
        let reply: Value = self.with(|con, log| {
            redis::cmd("XRANGE")
                .arg(&log.stream)
                .arg(format!("({after}-1"))
                .arg("+")
                .arg("COUNT")
                .arg(PAGE)
                .query(con)
        })?;
        let Value::Array(items) = reply else {
            return Err(LogError::Unavailable(
                "redis answered `XRANGE` with something else than an array".into(),
            ));
        };
        Ok(items.into_iter().map(decode_record).collect())
    }

    fn latest_checkpoint(&mut self) -> Result<Option<Vec<u8>>, LogError> {
        // A checkpoint can be trimmed between the two reads: look again.
        for _ in 0..3 {
            let Some(revision) = self.latest_checkpoint_revision()? else {
                return Ok(None);
            };
            let key = self.checkpoint_key(revision);
            let bytes: Option<Vec<u8>> =
                self.with(|con, _| redis::cmd("GET").arg(&key).query(con))?;
            if bytes.is_some() {
                return Ok(bytes);
            }
        }
        Err(LogError::Unavailable(
            "the fleet's newest checkpoint keeps disappearing".into(),
        ))
    }

    fn top(&mut self) -> Result<Option<u64>, LogError> {
        let checkpoint = self.latest_checkpoint_revision()?;
        let last: Value = self.with(|con, log| {
            redis::cmd("XREVRANGE")
                .arg(&log.stream)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .query(con)
        })?;
        let entry = match last {
            Value::Array(items) => items.into_iter().next().and_then(|item| match item {
                Value::Array(parts) => parts.into_iter().next().and_then(|id| match id {
                    Value::BulkString(id) => parse_id(&String::from_utf8_lossy(&id)).map(|p| p.0),
                    _ => None,
                }),
                _ => None,
            }),
            _ => None,
        };
        Ok(checkpoint.max(entry))
    }

    fn publish_checkpoint(&mut self, revision: u64, bytes: &[u8]) -> Result<bool, LogError> {
        let key = self.checkpoint_key(revision);
        let written: Option<String> = self.with(|con, log| {
            let written: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(bytes)
                .arg("NX")
                .query(con)?;
            redis::cmd("ZADD")
                .arg(&log.checkpoints)
                .arg(revision)
                .arg(revision)
                .query::<()>(con)?;
            Ok(written)
        })?;
        self.trim()?;
        Ok(written.is_some())
    }
}

/// `{revision}-{sequence}`.
fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// One `XRANGE` item: `[id, [field, value, …]]`.
fn decode_record(item: Value) -> LogRecord {
    let refused = |id: &str, reason: &str| LogRecord::Refused {
        id: id.to_owned(),
        reason: reason.to_owned(),
    };
    let Value::Array(parts) = item else {
        return refused("?", "not a stream entry");
    };
    let mut parts = parts.into_iter();
    let id = match parts.next() {
        Some(Value::BulkString(id)) => String::from_utf8_lossy(&id).into_owned(),
        _ => return refused("?", "an entry without an id"),
    };
    let Some((revision, 1)) = parse_id(&id) else {
        return refused(&id, "not an id this log writes (`{revision}-1`)");
    };
    let Some(Value::Array(fields)) = parts.next() else {
        return refused(&id, "an entry without fields");
    };
    let mut version = None;
    let mut payload = None;
    let mut fields = fields.into_iter();
    while let (Some(Value::BulkString(name)), Some(Value::BulkString(value))) =
        (fields.next(), fields.next())
    {
        match name.as_slice() {
            b"v" => version = Some(value),
            b"entry" => payload = Some(value),
            _ => {}
        }
    }
    if version.as_deref() != Some(b"1".as_slice()) {
        return refused(&id, "not a rolegraph entry of format `1`");
    }
    let Some(payload) = payload else {
        return refused(&id, "no `entry` field");
    };
    match serde_json::from_slice::<Entry>(&payload) {
        Ok(entry) if entry.revision == revision => LogRecord::Entry(entry),
        Ok(entry) => refused(
            &id,
            &format!("the batch says revision `{}`", entry.revision),
        ),
        Err(e) => refused(&id, &format!("the batch does not decode: {e}")),
    }
}

/// The tail thread: wakes on new entries, applies them, publishes
/// checkpoints when due; ends with the engine.
struct Tail {
    engine: crate::engine::replica::WeakEngine,
    closing: std::sync::Arc<std::sync::atomic::AtomicBool>,
    log: RedisLog,
    checkpoint_every: u64,
    poll: Duration,
    /// Failed checkpoint publications in a row: the retry waits
    /// 2^failures × the poll interval, capped at 64×.
    checkpoint_failures: u32,
    retry_checkpoint_at: Option<std::time::Instant>,
}

impl Tail {
    fn run(mut self) {
        let poll = self.poll;
        let mut backoff = Duration::from_millis(50);
        let mut last_checkpoint: Option<u64> = None;
        loop {
            if self.closing.load(Ordering::Acquire) {
                return;
            }
            let Some(engine) = self.engine.upgrade() else {
                return;
            };
            if engine.fleet_stopped() {
                return;
            }
            let after = engine.revision();
            // The engine may be dropped while the tail blocks.
            drop(engine);
            let woke = match self.log.wait_after(after, poll) {
                Ok(woke) => {
                    backoff = Duration::from_millis(50);
                    woke
                }
                Err(LogError::Unavailable(reason)) => {
                    if let Some(engine) = self.engine.upgrade() {
                        engine.set_fleet_error(Some(Fault::Unavailable(reason).to_string()));
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
                Err(_) => false,
            };
            let Some(engine) = self.engine.upgrade() else {
                return;
            };
            // Catch up whenever Redis answers: after an outage this also
            // clears the error.
            if woke || engine.stats().fleet_error.is_some() {
                let _ = engine.pull();
            }
            self.checkpoint(&engine, &mut last_checkpoint);
        }
    }

    /// Publishes a checkpoint of the published state when the fleet's
    /// newest is `checkpoint_every` revisions old.
    fn checkpoint(&mut self, engine: &Engine, last: &mut Option<u64>) {
        if self
            .retry_checkpoint_at
            .is_some_and(|at| std::time::Instant::now() < at)
        {
            return;
        }
        let revision = engine.revision();
        let every = self.checkpoint_every;
        if last.is_some_and(|l| revision / every <= l / every) {
            return;
        }
        let Ok(newest) = self.log.latest_checkpoint_revision() else {
            return;
        };
        *last = newest;
        if newest.is_some_and(|n| revision / every <= n / every) {
            return;
        }
        let published = engine
            .published_checkpoint()
            .map_err(|e| e.to_string())
            .and_then(|(at, bytes)| {
                self.log
                    .publish_checkpoint(at, &bytes)
                    .map(|_| at)
                    .map_err(|e| match e {
                        LogError::Unavailable(reason) => {
                            format!("cannot publish the checkpoint of revision `{at}`: {reason}")
                        }
                        other => {
                            format!("cannot publish the checkpoint of revision `{at}`: {other:?}")
                        }
                    })
            });
        match published {
            Ok(at) => {
                *last = Some(at);
                self.checkpoint_failures = 0;
                self.retry_checkpoint_at = None;
                engine.record_fleet_checkpoint(Ok(()));
            }
            Err(e) => {
                // Encoding the state again at every poll would cost as
                // much as the checkpoint: wait longer after each failure.
                self.checkpoint_failures = self.checkpoint_failures.saturating_add(1);
                let wait = self.poll * (1 << self.checkpoint_failures.min(6));
                self.retry_checkpoint_at = Some(std::time::Instant::now() + wait);
                engine.record_fleet_checkpoint(Err(e));
            }
        }
    }
}
