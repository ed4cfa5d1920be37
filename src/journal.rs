//! Durability for the live engine: a checksummed, append-only log of opaque
//! records plus an atomically replaced checkpoint.
//!
//! Every accepted change is appended here, and [`Journal::append`] returns
//! only once the record is on stable storage (`fdatasync`), so a change the
//! engine has acknowledged survives any crash. [`Journal::open`] recovers:
//! it returns the latest checkpoint and every record in the log, cuts off a
//! record torn by a crash mid-write, and refuses — with a
//! [`JournalError::Corrupt`] naming the file and byte — anything a crash
//! cannot explain.
//!
//! The module deals in bytes. The engine serializes its records and state
//! (as JSON); the journal only frames, checksums, orders and syncs them.
//!
//! # Files
//!
//! A journal is a directory holding:
//!
//! - log segments: `journal.log`, then `journal-<base>.log` (`base` in 20
//!   digits), each holding the records after revision `base`, in revision
//!   order. The newest is the live segment, the only one appended to. Each
//!   written checkpoint seals the live segment and starts a new one at the
//!   last revision ([`Journal::start_segment`]), so the live segment holds
//!   only the changes since the last checkpoint. The sealed segments are the
//!   audit history: kept unless [`JournalOptions::retain_segments`] says
//!   otherwise, and read by [`read_history`], which skips the segments
//!   older than the revision asked for.
//! - `checkpoint`: the latest state snapshot the engine handed to
//!   [`Journal::checkpoint`], with the segment and offset the log ended at.
//!   It only makes recovery fast: the engine replays the records after it
//!   ([`Recovery::to_replay`]) instead of all of them.
//!
//! All these files are only ever created whole: written as `*.tmp`, synced,
//! then renamed into place, followed by a sync of the directory. A stale
//! `*.tmp` left by a crash is harmless and is overwritten by the next write.
//!
//! ## Rotation and crashes
//!
//! A checkpoint of revision `r` takes these steps; recovery after a crash
//! at any point reads the checkpoint in place and every segment from its
//! own on, so nothing acknowledged is lost and nothing is read twice:
//!
//! 1. [`Journal::ticket`], under the writer's lock, notes where the log
//!    ends (segment `s`, length `n`) and touches no file.
//! 2. The checkpoint is written to `checkpoint.tmp`, synced, renamed over
//!    `checkpoint`, the directory synced; it points at byte `n` of `s` (a
//!    crash: the old or the new checkpoint; either is consistent with the
//!    segments). If a step fails, `checkpoint.tmp` is removed: the
//!    directory is as it was, and the journal goes on in `s`.
//! 3. With [`JournalOptions::retain_segments`], segments older than `s`
//!    are deleted (a crash: some are left, deleted at the next checkpoint).
//! 4. `journal.next.tmp` is written with a log header and synced (a crash:
//!    a stale tmp file, ignored). Steps 2 to 4 run without the writer's
//!    lock: appends go on into `s` meanwhile.
//! 5. Under the writer's lock, it is renamed to `journal-<last>.log`, for
//!    the records after the last one appended (`last` ≥ `r`), and appends
//!    go there. The directory sync that makes the name durable runs after
//!    the lock is released; an append that comes first syncs the directory
//!    itself before it returns, so no acknowledged record sits in a file
//!    whose name a crash could lose (a crash: the new segment or not;
//!    recovery reads from `s` on either way). If the rename fails, appends
//!    stay in `s`, and the next checkpoint tries again.
//!
//! Recovery after a written checkpoint therefore reads the end of `s` (the
//! records appended while the checkpoint was written) and the live segment.
//!
//! A segment is sealed only after every append to it was synced, so only
//! the live segment can have a torn tail; a sealed one ending in a partial
//! record is [`Corruption::SealedSegmentTail`].
//!
//! # Format
//!
//! All integers are little-endian; checksums are CRC-32 (IEEE).
//!
//! A log segment starts with a 12-byte header, then holds records back to back:
//!
//! | bytes | field                                                  |
//! |-------|--------------------------------------------------------|
//! | 0..8  | magic `RGRAPHJL`                                       |
//! | 8..12 | format version, `u32` = 1                              |
//!
//! | bytes     | record field                                       |
//! |-----------|----------------------------------------------------|
//! | 0..4      | payload length `n`, `u32`                          |
//! | 4..12     | revision, `u64`; strictly increasing along the log |
//! | 12..16    | CRC-32 of the payload                              |
//! | 16..20    | CRC-32 of bytes 0..16 of this record               |
//! | 20..20+n  | payload                                            |
//!
//! The header has its own checksum so that the length is trusted before it is
//! used: with a single checksum over everything, a bit flip in the length of a
//! record in the middle of the log would make it "run past the end of the
//! file" and look exactly like a torn tail, and recovery would silently drop
//! every acknowledged record after it.
//!
//! `checkpoint` is a 48-byte header followed by the state:
//!
//! | bytes  | field                                                      |
//! |--------|------------------------------------------------------------|
//! | 0..8   | magic `RGRAPHCP`                                           |
//! | 8..12  | format version, `u32` = 2                                  |
//! | 12..20 | revision of the state, `u64`                               |
//! | 20..28 | length of the segment below when the checkpoint was taken, `u64` |
//! | 28..36 | state length `n`, `u64`                                    |
//! | 36..44 | base revision of the live segment then, `u64`              |
//! | 44..48 | CRC-32 of bytes 0..44 and the state                        |
//! | 48..   | state, exactly `n` bytes                                   |
//!
//! Version 1 (from before segments) is still read: a 40-byte header without
//! bytes 36..44, its CRC at 36..40, the segment `journal.log`.
//!
//! The recorded log length is a cross-check: the log can only grow, so a log
//! shorter than that, or one where that length is not a record boundary, has
//! lost acknowledged records (or was swapped for another file), and recovery
//! says so instead of starting from the checkpoint as if nothing happened.
//!
//! # Torn tail or corruption
//!
//! Appends are sequential and each is synced before the next starts, so a
//! crash can damage at most the one record being written, at the very end of
//! the log, and any part of it (page writeback has no order). Recovery
//! therefore cuts the log back to the end of the last whole record, syncs
//! the cut, and reports the bytes dropped in [`Recovery::truncated_tail`]
//! when, after the last whole record, it finds:
//!
//! - fewer bytes than a record header;
//! - a valid header whose payload runs past the end of the file;
//! - a valid header whose payload fails its checksum and ends exactly at the
//!   end of the file;
//! - a header failing its checksum, with no whole valid record anywhere after
//!   it (the torn write may have landed as zeros or garbage).
//!
//! Everything else is a [`JournalError::Corrupt`], and the files are left as
//! they are: a bad file header, a header failing its checksum with a valid
//! record after it, a payload failing its checksum with more data after it,
//! revisions that do not increase, any damage to the checkpoint (it is
//! replaced atomically, so a crash never tears it), or a log behind its
//! checkpoint.
//!
//! One case cannot be told apart: bit rot in the final record looks exactly
//! like a torn write, and the record is dropped (and reported). Records up to
//! the last checkpoint are protected from this by the checkpoint's recorded
//! log length.
//!
//! # Write failures
//!
//! An append is one buffer written with one `write_all` at the end of the
//! last whole record. If the write fails, the file is cut back to that end,
//! so a partial record never sits under the next append (where recovery
//! would rightly call it corruption). If the `fdatasync` fails, or the
//! cut-back does, the journal refuses every later write
//! ([`JournalError::Poisoned`]): after a failed fsync Linux may already have
//! dropped the dirty pages and would report the next fsync as a success, so
//! the only trustworthy state is what a reopen reads back from disk. As with
//! any database commit, an append that returns an error may or may not be
//! durable; recovery is the source of truth.
//!
//! # Why a hand-written log rather than redb
//!
//! The workload is an append-only sequence of blobs plus one snapshot. redb
//! (or sled, or SQLite) would bring a B-tree, a page allocator and its own
//! dependency tree for what is a few hundred lines here, and its commit and
//! repair rules would sit between the engine and the disk. Written by hand,
//! the journal has exact control of when `fsync` happens (one `fdatasync` per
//! append, nothing else on the hot path), its torn-tail and corruption rules
//! are the ones stated above, and the file is also a plain, ordered audit log.
//!
//! # Limits
//!
//! - One writer: nothing stops two processes opening the same directory (the
//!   crate's `rust-version` predates `File::lock`), and the engine must not.
//! - A payload holds at most [`MAX_PAYLOAD`] bytes.
//! - The sealed segments grow for ever by default: they are the audit log.
//!   A full recovery reads them all into memory; with
//!   [`JournalOptions::read_all`] off (what the engine uses) recovery reads
//!   only the checkpoint's segment from the checkpoint on (normally nothing
//!   there, plus the live segment), and [`read_history`] streams older
//!   records one at a time when the audit history asks for them.
//!   [`JournalOptions::retain_segments`] bounds the disk use by deleting
//!   old history.
//! - With [`JournalOptions::sync`] off (for tests and benchmarks) nothing is
//!   synced and a power loss may lose or damage anything.
//!
//! # Examples
//!
//! ```ignore
//! // `journal` is crate-private for now, so this example is not compiled.
//! let (mut journal, recovery) = Journal::open("data/journal")?;
//! let mut state = match &recovery.checkpoint {
//!     Some((_, bytes)) => State::from_json(bytes)?,
//!     None => State::default(),
//! };
//! for (revision, record) in recovery.to_replay() {
//!     state.apply(revision, record)?;
//! }
//! let next = journal.last_revision().map_or(1, |r| r + 1);
//! journal.append(next, br#"{"grant":"editor"}"#)?; // durable once this returns
//! journal.checkpoint(next, &state.to_json())?;
//! ```

// The engine uses `open_with`, `append`, `checkpoint` and the recovery fields;
// the rest of the API (`open`, `Recovery::to_replay`, the accessors) is only
// exercised by the tests until the module is exported or the engine needs it.
#![cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "part of the journal API is not used by the engine yet"
    )
)]

mod error;

pub use error::{Corruption, IoAction, JournalError};

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The largest payload one record holds, in bytes (the length field is a
/// `u32`).
pub const MAX_PAYLOAD: u64 = u32::MAX as u64;

const LOG_FILE: &str = "journal.log";
/// Locked while a journal has the directory open.
const LOCK_FILE: &str = "lock";
const LOG_TMP: &str = "journal.log.tmp";
/// The next segment, made ready by a checkpoint before it is renamed into
/// place by [`Journal::start_segment`].
const SPARE_TMP: &str = "journal.next.tmp";
const CHECKPOINT_FILE: &str = "checkpoint";
const CHECKPOINT_TMP: &str = "checkpoint.tmp";

const LOG_MAGIC: [u8; 8] = *b"RGRAPHJL";
const CHECKPOINT_MAGIC: [u8; 8] = *b"RGRAPHCP";
const VERSION: u32 = 1;

const LOG_HEADER_LEN: usize = 12;
const RECORD_HEADER_LEN: usize = 20;
const CHECKPOINT_HEADER_LEN: usize = 48;
const CHECKPOINT_V1_HEADER_LEN: usize = 40;
/// The checkpoint format: 2 added the segment of the recorded log length.
const CHECKPOINT_VERSION: u32 = 2;

/// How a [`Journal`] writes.
///
/// The default syncs every append and checkpoint to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct JournalOptions {
    /// Whether to `fsync` files and directories. Turning it off is for tests
    /// and benchmarks only: the journal then survives a process crash (the
    /// operating system still has the data) but not a power loss.
    pub sync: bool,
    /// Whether [`Journal::open`] reads and checks the whole log (default
    /// true). Off, it reads only what follows the checkpoint (so open time
    /// follows the changes since the checkpoint), and
    /// [`Recovery::records`] holds only those; older records are checked
    /// when [`read_records`] reads them. The checkpoint's recorded log
    /// length is then checked against the file's length and the first record
    /// after it, not against every record boundary.
    pub read_all: bool,
    /// How many sealed segments older than the checkpoint's to keep
    /// (default `None`: all of them, the whole audit history). The
    /// checkpoint's own segment is the one it was taken in, sealed right
    /// after it, and always kept. With `Some(n)`, each written checkpoint
    /// deletes the older ones; history before the oldest kept segment is
    /// then gone.
    pub retain_segments: Option<usize>,
}

impl JournalOptions {
    /// The default options: sync on.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            sync: true,
            read_all: true,
            retain_segments: None,
        }
    }

    /// Sets whether to read the whole log at open; see
    /// [`read_all`](Self::read_all).
    #[must_use]
    pub const fn with_read_all(mut self, read_all: bool) -> Self {
        self.read_all = read_all;
        self
    }

    /// Sets how many old segments to keep; see
    /// [`retain_segments`](Self::retain_segments).
    #[must_use]
    pub const fn with_retain_segments(mut self, keep: Option<usize>) -> Self {
        self.retain_segments = keep;
        self
    }

    /// Sets whether to `fsync`; see [`sync`](Self::sync).
    #[must_use]
    pub const fn with_sync(mut self, sync: bool) -> Self {
        self.sync = sync;
        self
    }
}

impl Default for JournalOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// What [`Journal::open`] found on disk.
///
/// The engine restores [`checkpoint`](Self::checkpoint) (or its initial state
/// when there is none), then replays [`to_replay`](Self::to_replay): the
/// records newer than the checkpoint.
#[non_exhaustive]
pub struct Recovery {
    /// The latest checkpoint: its revision and the state bytes.
    pub checkpoint: Option<(u64, Vec<u8>)>,
    /// Every record in the log, in order, as `(revision, payload)`; older
    /// than the checkpoint or not, since the log is also the audit history.
    pub records: Vec<(u64, Vec<u8>)>,
    /// The number of bytes cut from the end of the log because a crash tore
    /// the last record; `None` when the log ended cleanly. Worth a warning in
    /// the engine's log: the dropped record was never acknowledged.
    pub truncated_tail: Option<u64>,
}

impl Recovery {
    /// The records the checkpoint does not include: every record when there
    /// is no checkpoint, else those with a higher revision, in order.
    pub fn to_replay(&self) -> impl Iterator<Item = (u64, &[u8])> + '_ {
        let after = self.checkpoint.as_ref().map(|(revision, _)| *revision);
        self.records
            .iter()
            .filter(move |(revision, _)| after.is_none_or(|after| *revision > after))
            .map(|(revision, payload)| (*revision, payload.as_slice()))
    }
}

impl fmt::Debug for Recovery {
    // Sizes and revisions, not the payload bytes: a log holds megabytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let revisions = match (self.records.first(), self.records.last()) {
            (Some((first, _)), Some((last, _))) => Some(first..=last),
            _ => None,
        };
        f.debug_struct("Recovery")
            .field(
                "checkpoint_revision",
                &self.checkpoint.as_ref().map(|(revision, _)| revision),
            )
            .field(
                "checkpoint_bytes",
                &self.checkpoint.as_ref().map(|(_, state)| state.len()),
            )
            .field("records", &self.records.len())
            .field("revisions", &revisions)
            .field("truncated_tail", &self.truncated_tail)
            .finish()
    }
}

/// An open journal directory: the single writer of its log and checkpoint.
///
/// # Invariant
///
/// The live segment, `log_path` (base revision `segment`), holds exactly
/// `len` bytes: the file header and whole, valid records, the last with
/// revision `last_record`; or the journal is `poisoned` and refuses writes.
pub struct Journal {
    dir: PathBuf,
    log_path: PathBuf,
    /// The base revision of the live segment, `log_path`.
    segment: u64,
    file: File,
    len: u64,
    last_record: Option<u64>,
    checkpoint: Option<u64>,
    options: JournalOptions,
    poisoned: bool,
    /// Held for the journal's lifetime: one writer per directory. The
    /// operating system releases it when the process dies, however it dies.
    lock: Arc<File>,
    /// Whether the directory entry of the live segment is durable yet.
    dir_sync: Arc<DirSyncState>,
    #[cfg(test)]
    fault: Option<Fault>,
}

/// Directory syncs owed after [`Journal::start_segment`] renamed a segment
/// into place: `needed` counts renames, `synced` the latest one a completed
/// directory sync covers. An append into a segment whose entry is not yet
/// durable syncs the directory itself before it returns.
#[derive(Debug, Default)]
struct DirSyncState {
    needed: AtomicU64,
    synced: AtomicU64,
}

impl fmt::Debug for Journal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.dir)
            .field("log_size", &self.len)
            .field("last_record", &self.last_record)
            .field("checkpoint", &self.checkpoint)
            .field("sync", &self.options.sync)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// Opens the journal in `dir` with the default options (sync on),
    /// creating the directory and an empty log if they are missing, and
    /// recovers what is on disk.
    ///
    /// # Errors
    ///
    /// See [`open_with`](Self::open_with).
    pub fn open(dir: impl AsRef<Path>) -> Result<(Self, Recovery), JournalError> {
        Self::open_with(dir, JournalOptions::default())
    }

    /// Opens the journal in `dir`, creating the directory and an empty log if
    /// they are missing, and recovers what is on disk.
    ///
    /// A torn last record is cut off (and the cut synced) and reported in
    /// [`Recovery::truncated_tail`]; nothing else is ever changed on disk.
    ///
    /// # Errors
    ///
    /// - [`JournalError::Io`] when a file cannot be created, read, cut or
    ///   synced.
    /// - [`JournalError::Corrupt`] for damage a crash cannot explain: see the
    ///   module documentation. The files are left untouched.
    /// - [`JournalError::MissingLog`] when a checkpoint exists but the log does
    ///   not.
    pub fn open_with(
        dir: impl AsRef<Path>,
        options: JournalOptions,
    ) -> Result<(Self, Recovery), JournalError> {
        let dir = dir.as_ref().to_path_buf();
        ensure_dir(&dir, options)?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| io_error(IoAction::Open, &lock_path, e))?;
        lock.try_lock()
            .map_err(|_| JournalError::Locked { path: dir.clone() })?;

        let checkpoint_path = dir.join(CHECKPOINT_FILE);
        let checkpoint = read_checkpoint(&checkpoint_path)?;
        let mut segments = list_segments(&dir)?;
        if let Some(c) = &checkpoint {
            if !segments.iter().any(|(base, _)| *base == c.segment) {
                return Err(JournalError::MissingLog {
                    path: segment_path(&dir, c.segment),
                });
            }
        }
        if segments.is_empty() {
            let path = segment_path(&dir, 0);
            drop(create_log(&dir, &path, options)?);
            segments.push((0, path));
        }
        // Older segments are the audit history: recovery starts at the
        // checkpoint's segment (all of them with `read_all`).
        let start = match &checkpoint {
            Some(c) if !options.read_all => c.segment,
            _ => 0,
        };
        let live = segments.len() - 1;
        let mut records: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut opened = None;
        for (i, (base, path)) in segments.iter().enumerate() {
            if *base < start {
                continue;
            }
            let at_checkpoint = checkpoint.as_ref().filter(|c| c.segment == *base);
            let floor = records.last().map(|(r, _)| *r).or(checkpoint
                .as_ref()
                .map(|c| c.revision)
                .filter(|_| !options.read_all));
            let (file, scan, file_len) = scan_segment(path, at_checkpoint, floor, options)?;
            if i != live && scan.valid_end < file_len {
                // Sealed before the next segment was created, after every
                // append to it was synced: a crash cannot tear it.
                return Err(JournalError::Corrupt {
                    path: path.clone(),
                    offset: scan.valid_end,
                    reason: Corruption::SealedSegmentTail,
                });
            }
            records.extend(scan.records);
            if i == live {
                opened = Some((file, scan.valid_end, file_len));
            }
        }
        let (file, len, file_len) = opened.ok_or_else(|| JournalError::MissingLog {
            path: segment_path(&dir, start),
        })?;
        let (segment, log_path) = segments.swap_remove(live);

        let truncated_tail = if len < file_len {
            file.set_len(len)
                .map_err(|e| io_error(IoAction::Truncate, &log_path, e))?;
            if options.sync {
                file.sync_all()
                    .map_err(|e| io_error(IoAction::Sync, &log_path, e))?;
            }
            Some(file_len - len)
        } else {
            None
        };
        let last_record = records
            .last()
            .map(|(revision, _)| *revision)
            .or_else(|| (segment > 0).then_some(segment));

        let journal = Self {
            dir,
            log_path,
            segment,
            file,
            len,
            last_record,
            checkpoint: checkpoint.as_ref().map(|c| c.revision),
            options,
            poisoned: false,
            lock: Arc::new(lock),
            dir_sync: Arc::default(),
            #[cfg(test)]
            fault: None,
        };
        let recovery = Recovery {
            checkpoint: checkpoint.map(|c| (c.revision, c.state)),
            records,
            truncated_tail,
        };
        Ok((journal, recovery))
    }

    /// Appends a record and returns once it is on stable storage.
    ///
    /// `revision` must exceed [`last_revision`](Self::last_revision). The
    /// record is written with one `write_all` and then `fdatasync`ed (unless
    /// [`JournalOptions::sync`] is off).
    ///
    /// # Errors
    ///
    /// - [`JournalError::RevisionOrder`] when `revision` does not exceed the
    ///   last revision; nothing is written.
    /// - [`JournalError::TooLarge`] when the payload exceeds [`MAX_PAYLOAD`].
    /// - [`JournalError::Io`] when the write or the sync fails. A failed write
    ///   is cut back off the log; a failed sync (or cut-back) poisons the
    ///   journal. Either way the record may or may not survive a crash.
    /// - [`JournalError::Poisoned`] after an earlier failure left the end of
    ///   the log unknown.
    pub fn append(&mut self, revision: u64, payload: &[u8]) -> Result<(), JournalError> {
        self.check_usable()?;
        if let Some(last) = self.last_revision() {
            if revision <= last {
                return Err(JournalError::RevisionOrder {
                    last,
                    got: revision,
                });
            }
        }
        let record = encode_record(revision, payload).ok_or(JournalError::TooLarge {
            len: payload.len(),
            max: MAX_PAYLOAD,
        })?;

        self.file
            .seek(SeekFrom::Start(self.len))
            .map_err(|e| io_error(IoAction::Write, &self.log_path, e))?;
        if let Err(e) = self.write_record(&record) {
            self.roll_back();
            return Err(io_error(IoAction::Write, &self.log_path, e));
        }
        if self.options.sync {
            if let Err(e) = self.sync_log() {
                // The kernel may have dropped the dirty pages already; only a
                // reopen tells what is on disk.
                self.roll_back();
                self.poisoned = true;
                return Err(io_error(IoAction::Sync, &self.log_path, e));
            }
            // The live segment was renamed into place and nobody has synced
            // the directory since: the record is durable only once its
            // file's name is.
            let needed = self.dir_sync.needed.load(Ordering::Acquire);
            if self.dir_sync.synced.load(Ordering::Acquire) < needed {
                if let Err(e) = sync_dir(&self.dir) {
                    self.roll_back();
                    self.poisoned = true;
                    return Err(e);
                }
                self.dir_sync.synced.fetch_max(needed, Ordering::AcqRel);
            }
        }
        self.len += to_u64(record.len());
        self.last_record = Some(revision);
        Ok(())
    }

    /// Replaces the checkpoint with `state` at `revision`, atomically: a
    /// crash at any point leaves either the old or the new checkpoint.
    ///
    /// The state is written to `checkpoint.tmp`, synced, renamed over
    /// `checkpoint`, and the directory synced; then a new log segment is
    /// started, as [`ticket`](Self::ticket), [`CheckpointTicket::write`] and
    /// [`start_segment`](Self::start_segment) do one after the other. A
    /// checkpoint newer than the last record raises the floor for
    /// [`append`](Self::append): the next record must exceed it, or replay
    /// would skip it.
    ///
    /// # Errors
    ///
    /// - [`JournalError::CheckpointOrder`] when `revision` is older than the
    ///   current checkpoint; nothing is written.
    /// - [`JournalError::Io`] when a write, sync or rename fails: see
    ///   [`CheckpointTicket::write`]. The directory is then as it was.
    /// - [`JournalError::Poisoned`] after an earlier append failure.
    pub fn checkpoint(&mut self, revision: u64, state: &[u8]) -> Result<(), JournalError> {
        self.check_usable()?;
        if let Some(last) = self.checkpoint {
            if revision < last {
                return Err(JournalError::CheckpointOrder {
                    last,
                    got: revision,
                });
            }
        }
        let next = self.ticket(revision)?.write(state)?;
        self.checkpoint = Some(revision);
        if let Some(next) = next {
            match self.start_segment(next) {
                // A failed directory sync is redone by the next append.
                Rotation::Started(dir_sync) => drop(dir_sync.sync()),
                Rotation::Skipped(next) | Rotation::Failed(next, _) => next.discard(),
            }
        }
        Ok(())
    }

    /// What it takes to write a checkpoint of the state at `revision` later,
    /// without the journal: the log position now (so `revision` must be the
    /// revision of the last record, or of the current checkpoint), the
    /// directory, and a share of the directory lock, so that no other
    /// journal opens the directory until the checkpoint is written.
    ///
    /// It touches no file: the checkpoint points into the live segment, and
    /// only once it is written does [`start_segment`](Self::start_segment)
    /// seal that segment. A checkpoint that fails, or is never written,
    /// leaves the directory as it was.
    ///
    /// The caller orders tickets: writing an older ticket after a newer one
    /// puts an older (still consistent) checkpoint back in place.
    ///
    /// # Errors
    ///
    /// [`JournalError::Poisoned`] after an earlier append failure.
    pub fn ticket(&mut self, revision: u64) -> Result<CheckpointTicket, JournalError> {
        self.check_usable()?;
        Ok(CheckpointTicket {
            dir: self.dir.clone(),
            revision,
            segment: self.segment,
            log_len: self.len,
            options: self.options,
            _lock: Arc::clone(&self.lock),
            #[cfg(test)]
            fault: match self.fault {
                Some(Fault::Checkpoint(step)) => {
                    self.fault = None;
                    Some(step)
                }
                _ => None,
            },
        })
    }

    /// Seals the live segment and goes on in `next` (made ready, synced, by
    /// the [`CheckpointTicket::write`] of a checkpoint into the live
    /// segment), for the records after the last one. Cheap enough for the
    /// writer's lock: one rename and no sync. The new name is durable once
    /// the returned [`DirSync`] ran, or the next append (which syncs the
    /// directory itself when nobody did yet) returned.
    ///
    /// Skipped, handing `next` back, when the segment has no record or has
    /// been sealed since the ticket, or the journal is poisoned. A failed
    /// rename hands it back too; appends go on in the current segment.
    pub fn start_segment(&mut self, next: NextSegment) -> Rotation {
        let base = match self.last_record {
            Some(last)
                if !self.poisoned
                    && next.segment == self.segment
                    && last > self.segment
                    && self.len > to_u64(LOG_HEADER_LEN) =>
            {
                last
            }
            _ => return Rotation::Skipped(next),
        };
        let path = segment_path(&self.dir, base);
        let renamed =
            fs::rename(&next.path, &path).map_err(|e| io_error(IoAction::Rename, &next.path, e));
        #[cfg(test)]
        let renamed = if self.fault == Some(Fault::RotateFails) {
            self.fault = None;
            renamed.and_then(|()| {
                // As if the rename had failed: put the spare back.
                fs::rename(&path, &next.path).map_err(|e| io_error(IoAction::Rename, &path, e))?;
                Err(io_error(
                    IoAction::Rename,
                    &next.path,
                    io::Error::other("injected rotation failure"),
                ))
            })
        } else {
            renamed
        };
        if let Err(e) = renamed {
            return Rotation::Failed(next, e);
        }
        self.file = next.file;
        self.log_path = path;
        self.segment = base;
        self.len = to_u64(LOG_HEADER_LEN);
        let generation = if self.options.sync {
            self.dir_sync.needed.fetch_add(1, Ordering::AcqRel) + 1
        } else {
            0
        };
        Rotation::Started(DirSync {
            dir: self.dir.clone(),
            state: Arc::clone(&self.dir_sync),
            generation,
        })
    }

    /// Where the log ends now: the live segment and its length, for
    /// [`read_history`].
    #[must_use]
    pub fn end(&self) -> LogEnd {
        LogEnd {
            segment: self.segment,
            len: self.len,
        }
    }

    /// The highest revision the journal knows, from the last record or the
    /// checkpoint; the next [`append`](Self::append) must exceed it. `None`
    /// for a new journal.
    #[must_use]
    pub fn last_revision(&self) -> Option<u64> {
        self.last_record.max(self.checkpoint)
    }

    /// The revision of the current checkpoint, if any.
    #[must_use]
    pub fn checkpoint_revision(&self) -> Option<u64> {
        self.checkpoint
    }

    /// The live log segment's file.
    #[must_use]
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The journal directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The size of the live log segment in bytes, header included: it holds
    /// only the records since the last checkpoint's ticket.
    #[must_use]
    pub fn log_size(&self) -> u64 {
        self.len
    }

    /// The options the journal was opened with.
    #[must_use]
    pub fn options(&self) -> JournalOptions {
        self.options
    }

    fn check_usable(&self) -> Result<(), JournalError> {
        if self.poisoned {
            return Err(JournalError::Poisoned {
                path: self.log_path.clone(),
            });
        }
        Ok(())
    }

    /// Cuts the log back to the end of the last whole record after a failed
    /// write, so that no partial record is buried under the next one.
    fn roll_back(&mut self) {
        let cut = self.file.set_len(self.len).is_ok()
            && (!self.options.sync || self.file.sync_all().is_ok());
        if !cut {
            self.poisoned = true;
        }
    }

    fn write_record(&mut self, record: &[u8]) -> io::Result<()> {
        #[cfg(test)]
        if self.fault == Some(Fault::ShortWrite) {
            self.fault = None;
            let half = record.get(..record.len() / 2).unwrap_or_default();
            self.file.write_all(half)?;
            return Err(io::Error::other("injected short write"));
        }
        self.file.write_all(record)
    }

    fn sync_log(&mut self) -> io::Result<()> {
        #[cfg(test)]
        if self.fault == Some(Fault::SyncFails) {
            self.fault = None;
            return Err(io::Error::other("injected sync failure"));
        }
        self.file.sync_data()
    }
}

/// A position in the journal: the live segment (by base revision) and its
/// length then. Everything before it is whole and synced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogEnd {
    /// The base revision of the segment.
    pub segment: u64,
    /// The length of that segment, in bytes.
    pub len: u64,
}

/// Reads the records of the journal in `dir` up to `end`, with revisions
/// above `after` (and maybe some at or below it: the caller filters), in
/// order, handing each to `visit` until it breaks. Segments whose records
/// are all at or below `after` are skipped unread, so a page of recent
/// history does not read the old segments; memory holds one record at a
/// time. Segments deleted by [`JournalOptions::retain_segments`] are
/// skipped: history starts at the oldest kept one.
///
/// # Errors
///
/// As [`read_records`].
pub fn read_history(
    dir: &Path,
    end: LogEnd,
    after: u64,
    mut visit: impl FnMut(u64, &[u8]) -> std::ops::ControlFlow<()>,
) -> Result<(), JournalError> {
    let segments: Vec<_> = list_segments(dir)?
        .into_iter()
        .filter(|(base, _)| *base <= end.segment)
        .collect();
    let mut stopped = false;
    let mut next_bases = segments.iter().map(|(base, _)| *base).skip(1);
    for (base, path) in &segments {
        let next = next_bases.next();
        // A segment holds the revisions from its base up to the next base.
        if next.is_some_and(|next| next <= after) {
            continue;
        }
        let len = if *base == end.segment {
            end.len
        } else {
            match fs::metadata(path) {
                Ok(meta) => meta.len(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error(IoAction::Read, path, e)),
            }
        };
        let result = read_records(path, len, |revision, payload| {
            let flow = visit(revision, payload);
            stopped = flow.is_break();
            flow
        });
        match result {
            // Deleted by retention since it was listed (even the segment of
            // `end`, when a checkpoint sealed it and `retain_segments` is 0).
            Err(JournalError::Io { ref source, .. })
                if source.kind() == io::ErrorKind::NotFound => {}
            other => other?,
        }
        if stopped {
            break;
        }
    }
    Ok(())
}

/// Reads the whole, synced records of the log at `path` in its first `end`
/// bytes (a length the journal reported after an append, so every record
/// there is whole), in order, handing each to `visit` until it breaks.
/// Memory holds one record at a time; the writer may go on appending.
///
/// # Errors
///
/// [`JournalError::Io`] when the log cannot be opened or read;
/// [`JournalError::Corrupt`] when a record there fails its checksums or
/// order (damage after the journal was opened).
pub fn read_records(
    path: &Path,
    end: u64,
    mut visit: impl FnMut(u64, &[u8]) -> std::ops::ControlFlow<()>,
) -> Result<(), JournalError> {
    let file = File::open(path).map_err(|e| io_error(IoAction::Open, path, e))?;
    let mut reader = io::BufReader::with_capacity(1 << 16, file.take(end));
    let corrupt = |offset, reason| JournalError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    let read = |e| io_error(IoAction::Read, path, e);
    let mut header = [0; LOG_HEADER_LEN];
    reader.read_exact(&mut header).map_err(read)?;
    check_magic(&header, LOG_MAGIC).map_err(|(offset, reason)| corrupt(offset, reason))?;
    let mut at = to_u64(LOG_HEADER_LEN);
    let mut previous = None;
    let mut payload = Vec::new();
    while at < end {
        let mut raw = [0; RECORD_HEADER_LEN];
        reader.read_exact(&mut raw).map_err(read)?;
        let record =
            decode_record_header(&raw).ok_or(corrupt(at, Corruption::RecordHeaderChecksum))?;
        payload.resize(record.len, 0);
        reader.read_exact(&mut payload).map_err(read)?;
        if crc32fast::hash(&payload) != record.payload_crc {
            return Err(corrupt(at, Corruption::RecordPayloadChecksum));
        }
        if let Some(previous) = previous.filter(|p| record.revision <= *p) {
            return Err(corrupt(
                at,
                Corruption::RevisionOrder {
                    previous,
                    found: record.revision,
                },
            ));
        }
        previous = Some(record.revision);
        if visit(record.revision, &payload).is_break() {
            break;
        }
        at += to_u64(RECORD_HEADER_LEN + record.len);
    }
    Ok(())
}

/// A checkpoint to be written outside the journal's owner: see
/// [`Journal::ticket`]. `Send`, so the state can be encoded and written on
/// another thread while appends go on.
#[derive(Debug)]
pub struct CheckpointTicket {
    dir: PathBuf,
    revision: u64,
    segment: u64,
    log_len: u64,
    options: JournalOptions,
    _lock: Arc<File>,
    #[cfg(test)]
    fault: Option<CheckpointStep>,
}

impl CheckpointTicket {
    /// The revision the checkpoint is of.
    #[must_use]
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Replaces the checkpoint with `state`, atomically: written to
    /// `checkpoint.tmp`, synced, renamed over `checkpoint`, the directory
    /// synced. A crash at any point leaves either the old or the new
    /// checkpoint. Only one ticket may be written at a time.
    ///
    /// Then, when the checkpoint's segment holds records, it makes the next
    /// segment ready (a header in `journal.next.tmp`, synced) and returns
    /// it, for [`Journal::start_segment`]; `None` when there is no need, or
    /// that file could not be made (the live segment then grows on until
    /// the next checkpoint).
    ///
    /// # Errors
    ///
    /// [`JournalError::Io`] when a write, sync or rename fails; the
    /// temporary file is removed and the directory is as it was. If only
    /// the final directory sync fails, the new checkpoint is in place but
    /// may not survive a power loss; either is consistent with the log.
    pub fn write(self, state: &[u8]) -> Result<Option<NextSegment>, JournalError> {
        let bytes = encode_checkpoint(self.revision, self.segment, self.log_len, state);
        let tmp = self.dir.join(CHECKPOINT_TMP);
        let path = self.dir.join(CHECKPOINT_FILE);
        let placed = write_new_file(&tmp, &bytes, self.options)
            .and_then(|()| self.injected(CheckpointStep::Rename, &tmp))
            .and_then(|()| {
                fs::rename(&tmp, &path).map_err(|e| io_error(IoAction::Rename, &tmp, e))
            });
        if let Err(e) = placed {
            // Not `checkpoint.tmp` itself when that is what failed to be
            // made (a directory in its place, say): then this fails too.
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        if self.options.sync {
            self.injected(CheckpointStep::DirSync, &self.dir)?;
            sync_dir(&self.dir)?;
        }
        if let Some(keep) = self.options.retain_segments {
            // Only now is the checkpoint durable, so only now are the
            // segments before its own unneeded for recovery. A failed
            // removal is retried at the next checkpoint.
            if let Ok(segments) = list_segments(&self.dir) {
                let older: Vec<_> = segments
                    .into_iter()
                    .filter(|(base, _)| *base < self.segment)
                    .collect();
                let drop = older.len().saturating_sub(keep);
                for (_, path) in older.into_iter().take(drop) {
                    let _ = fs::remove_file(path);
                }
            }
        }
        if self.log_len <= to_u64(LOG_HEADER_LEN) {
            return Ok(None);
        }
        let spare = self.dir.join(SPARE_TMP);
        let made = write_new_file(&spare, &log_header(), self.options).and_then(|()| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(&spare)
                .map_err(|e| io_error(IoAction::Open, &spare, e))
        });
        match made {
            Ok(file) => Ok(Some(NextSegment {
                path: spare,
                file,
                segment: self.segment,
            })),
            Err(_) => {
                let _ = fs::remove_file(&spare);
                Ok(None)
            }
        }
    }

    /// The failure the tests inject at `step`, if it is this one.
    #[cfg(test)]
    fn injected(&self, step: CheckpointStep, path: &Path) -> Result<(), JournalError> {
        if self.fault == Some(step) {
            return Err(io_error(
                IoAction::Sync,
                path,
                io::Error::other("injected checkpoint failure"),
            ));
        }
        Ok(())
    }

    #[cfg(not(test))]
    #[expect(clippy::unused_self, reason = "the tests' seam")]
    #[expect(clippy::unnecessary_wraps, reason = "the tests' seam")]
    fn injected(&self, _step: CheckpointStep, _path: &Path) -> Result<(), JournalError> {
        Ok(())
    }
}

/// The next log segment, made ready by [`CheckpointTicket::write`]: a synced
/// file holding only the log header, under a temporary name.
#[derive(Debug)]
pub struct NextSegment {
    path: PathBuf,
    file: File,
    /// The segment the checkpoint points into: the one this one follows.
    segment: u64,
}

impl NextSegment {
    /// Removes the file, unused (a stale one would be harmless, and is
    /// overwritten by the next checkpoint).
    pub fn discard(self) {
        drop(self.file);
        let _ = fs::remove_file(&self.path);
    }
}

/// What [`Journal::start_segment`] did.
#[derive(Debug)]
pub enum Rotation {
    /// The new segment is live; its name is durable after
    /// [`DirSync::sync`].
    Started(DirSync),
    /// Nothing to seal: the segment is handed back, to discard.
    Skipped(NextSegment),
    /// The rename failed: appends go on in the current segment.
    Failed(NextSegment, JournalError),
}

/// The directory sync that makes a segment started by
/// [`Journal::start_segment`] durable, to run after releasing whatever lock
/// the writers wait on.
#[derive(Debug)]
pub struct DirSync {
    dir: PathBuf,
    state: Arc<DirSyncState>,
    generation: u64,
}

impl DirSync {
    /// Syncs the directory, unless an append has done it already.
    ///
    /// # Errors
    ///
    /// [`JournalError::Io`] when the sync fails; the next append then
    /// syncs (and fails, poisoning the journal, if it cannot).
    pub fn sync(self) -> Result<(), JournalError> {
        if self.state.synced.load(Ordering::Acquire) >= self.generation {
            return Ok(());
        }
        sync_dir(&self.dir)?;
        self.state
            .synced
            .fetch_max(self.generation, Ordering::AcqRel);
        Ok(())
    }
}

/// A failure the tests inject into the next append.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Write half the record, then fail.
    ShortWrite,
    /// Write the record, then fail the sync.
    SyncFails,
    /// Fail renaming the next segment into place.
    RotateFails,
    /// Fail the next checkpoint's write at this step.
    Checkpoint(CheckpointStep),
}

/// A step of [`CheckpointTicket::write`] the tests make fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CheckpointStep {
    /// Renaming `checkpoint.tmp` over `checkpoint`.
    Rename,
    /// Syncing the directory after that rename.
    DirSync,
}

/// The checkpoint file, decoded.
struct CheckpointFile {
    revision: u64,
    /// The base revision of the segment `log_len` is in.
    segment: u64,
    log_len: u64,
    state: Vec<u8>,
}

/// What a scan of the log found.
struct Scan {
    /// Every whole, valid record, in order.
    records: Vec<(u64, Vec<u8>)>,
    /// The end of the last whole record (or of the file header), in the
    /// log.
    valid_end: u64,
}

/// One step of the log scan, at some offset.
enum Step<'a> {
    /// The end of the file, on a record boundary.
    End,
    /// A whole, valid record ending at `end`.
    Record {
        revision: u64,
        payload: &'a [u8],
        end: usize,
    },
    /// A torn last record: everything from here to the end goes.
    Torn,
    /// Damage a crash cannot explain.
    Corrupt(Corruption),
}

/// A record header that passed its checksum.
struct RecordHeader {
    len: usize,
    revision: u64,
    payload_crc: u32,
}

type Damage = (u64, Corruption);

fn scan_log(bytes: &[u8], floor: Option<u64>) -> Result<Scan, Damage> {
    let header = bytes.get(..LOG_HEADER_LEN).ok_or((
        0,
        Corruption::TruncatedHeader {
            len: to_u64(bytes.len()),
        },
    ))?;
    check_magic(header, LOG_MAGIC)?;
    scan_records(bytes, LOG_HEADER_LEN, 0, floor)
}

/// Scans the records of `bytes` from `at` (a record boundary), where
/// `bytes` starts at byte `base` of the log; `floor` is a revision every
/// record must exceed.
fn scan_records(bytes: &[u8], at: usize, base: u64, floor: Option<u64>) -> Result<Scan, Damage> {
    let mut records: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut at = at;
    loop {
        match step(bytes, at) {
            Step::End | Step::Torn => break,
            Step::Corrupt(reason) => return Err((base + to_u64(at), reason)),
            Step::Record {
                revision,
                payload,
                end,
            } => {
                if let Some(previous) = records.last().map(|(r, _)| *r).or(floor) {
                    if revision <= previous {
                        return Err((
                            base + to_u64(at),
                            Corruption::RevisionOrder {
                                previous,
                                found: revision,
                            },
                        ));
                    }
                }
                records.push((revision, payload.to_vec()));
                at = end;
            }
        }
    }
    Ok(Scan {
        records,
        valid_end: base + to_u64(at),
    })
}

/// Reads the record at `at`, which is on a record boundary.
fn step(bytes: &[u8], at: usize) -> Step<'_> {
    let rest = bytes.get(at..).unwrap_or_default();
    if rest.is_empty() {
        return Step::End;
    }
    let Some(header) = rest.get(..RECORD_HEADER_LEN) else {
        return Step::Torn;
    };
    let Some(header) = decode_record_header(header) else {
        // The length cannot be trusted, so neither can "this is the last
        // record": look for any whole record further on.
        return if valid_record_after(bytes, at) {
            Step::Corrupt(Corruption::RecordHeaderChecksum)
        } else {
            Step::Torn
        };
    };
    let end = RECORD_HEADER_LEN.saturating_add(header.len);
    let Some(payload) = rest.get(RECORD_HEADER_LEN..end) else {
        return Step::Torn;
    };
    if crc32fast::hash(payload) != header.payload_crc {
        return if end == rest.len() {
            Step::Torn
        } else {
            Step::Corrupt(Corruption::RecordPayloadChecksum)
        };
    }
    Step::Record {
        revision: header.revision,
        payload,
        end: at + end,
    }
}

/// Whether a whole, valid record starts anywhere after byte `at`.
fn valid_record_after(bytes: &[u8], at: usize) -> bool {
    let last_start = bytes.len().saturating_sub(RECORD_HEADER_LEN);
    (at + 1..=last_start).any(|start| {
        let rest = bytes.get(start..).unwrap_or_default();
        let Some(header) = rest.get(..RECORD_HEADER_LEN).and_then(decode_record_header) else {
            return false;
        };
        rest.get(RECORD_HEADER_LEN..RECORD_HEADER_LEN.saturating_add(header.len))
            .is_some_and(|payload| crc32fast::hash(payload) == header.payload_crc)
    })
}

fn decode_record_header(header: &[u8]) -> Option<RecordHeader> {
    let checked = header.get(..16)?;
    if crc32fast::hash(checked) != le_u32(header, 16)? {
        return None;
    }
    Some(RecordHeader {
        len: usize::try_from(le_u32(header, 0)?).ok()?,
        revision: le_u64(header, 4)?,
        payload_crc: le_u32(header, 12)?,
    })
}

/// The record bytes, or `None` when the payload is longer than
/// [`MAX_PAYLOAD`].
fn encode_record(revision: u64, payload: &[u8]) -> Option<Vec<u8>> {
    let len = u32::try_from(payload.len()).ok()?;
    let mut record = Vec::with_capacity(RECORD_HEADER_LEN + payload.len());
    record.extend_from_slice(&len.to_le_bytes());
    record.extend_from_slice(&revision.to_le_bytes());
    record.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    let header_crc = crc32fast::hash(&record);
    record.extend_from_slice(&header_crc.to_le_bytes());
    record.extend_from_slice(payload);
    Some(record)
}

fn log_header() -> [u8; LOG_HEADER_LEN] {
    let mut header = [0; LOG_HEADER_LEN];
    let (magic, version) = header.split_at_mut(LOG_MAGIC.len());
    magic.copy_from_slice(&LOG_MAGIC);
    version.copy_from_slice(&VERSION.to_le_bytes());
    header
}

/// Checks the magic bytes and the version at the start of a file header.
fn check_magic(header: &[u8], magic: [u8; 8]) -> Result<(), Damage> {
    if header.get(..8) != Some(magic.as_slice()) {
        return Err((0, Corruption::BadMagic));
    }
    match le_u32(header, 8) {
        Some(VERSION) => Ok(()),
        Some(version) => Err((8, Corruption::UnsupportedVersion { version })),
        None => Err((
            0,
            Corruption::TruncatedHeader {
                len: to_u64(header.len()),
            },
        )),
    }
}

/// Checks that the log still holds everything it held when the checkpoint
/// was taken.
fn check_against_checkpoint(scan: &Scan, checkpoint_log_len: u64) -> Result<(), Damage> {
    let valid_end = scan.valid_end;
    if checkpoint_log_len > valid_end {
        return Err((
            valid_end,
            Corruption::BehindCheckpoint { checkpoint_log_len },
        ));
    }
    let mut boundary = to_u64(LOG_HEADER_LEN);
    let mut ends = scan.records.iter().map(|(_, payload)| {
        boundary += to_u64(RECORD_HEADER_LEN + payload.len());
        boundary
    });
    if checkpoint_log_len == to_u64(LOG_HEADER_LEN) || ends.any(|end| end == checkpoint_log_len) {
        Ok(())
    } else {
        Err((checkpoint_log_len, Corruption::NotARecordBoundary))
    }
}

fn encode_checkpoint(revision: u64, segment: u64, log_len: u64, state: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(CHECKPOINT_HEADER_LEN + state.len());
    bytes.extend_from_slice(&CHECKPOINT_MAGIC);
    bytes.extend_from_slice(&CHECKPOINT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&revision.to_le_bytes());
    bytes.extend_from_slice(&log_len.to_le_bytes());
    bytes.extend_from_slice(&to_u64(state.len()).to_le_bytes());
    bytes.extend_from_slice(&segment.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&bytes);
    crc.update(state);
    bytes.extend_from_slice(&crc.finalize().to_le_bytes());
    bytes.extend_from_slice(state);
    bytes
}

fn decode_checkpoint(bytes: &[u8]) -> Result<CheckpointFile, Damage> {
    let truncated = (
        0,
        Corruption::TruncatedHeader {
            len: to_u64(bytes.len()),
        },
    );
    if bytes.get(..8) != Some(CHECKPOINT_MAGIC.as_slice()) {
        return Err((0, Corruption::BadMagic));
    }
    // Version 1 predates segments: its log is `journal.log` (segment 0).
    let header_len = match le_u32(bytes, 8) {
        Some(1) => CHECKPOINT_V1_HEADER_LEN,
        Some(CHECKPOINT_VERSION) => CHECKPOINT_HEADER_LEN,
        Some(version) => return Err((8, Corruption::UnsupportedVersion { version })),
        None => return Err(truncated),
    };
    let header = bytes.get(..header_len).ok_or(truncated.clone())?;
    let field = |at| le_u64(header, at).ok_or(truncated.clone());
    let (revision, log_len, declared) = (field(12)?, field(20)?, field(28)?);
    let segment = if header_len == CHECKPOINT_HEADER_LEN {
        field(36)?
    } else {
        0
    };
    let crc_at = header_len - 4;
    let stored_crc = le_u32(header, crc_at).ok_or(truncated.clone())?;
    let state = bytes.get(header_len..).unwrap_or_default();
    let actual = to_u64(state.len());
    if declared != actual {
        return Err((28, Corruption::CheckpointLength { declared, actual }));
    }
    let mut crc = crc32fast::Hasher::new();
    crc.update(header.get(..crc_at).unwrap_or_default());
    crc.update(state);
    if crc.finalize() != stored_crc {
        return Err((to_u64(crc_at), Corruption::CheckpointChecksum));
    }
    Ok(CheckpointFile {
        revision,
        segment,
        log_len,
        state: state.to_vec(),
    })
}

fn read_checkpoint(path: &Path) -> Result<Option<CheckpointFile>, JournalError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(IoAction::Read, path, e)),
    };
    decode_checkpoint(&bytes)
        .map(Some)
        .map_err(|(offset, reason)| JournalError::Corrupt {
            path: path.to_path_buf(),
            offset,
            reason,
        })
}

/// The file of the log segment holding the records after revision `base`:
/// `journal.log` for the first (so a journal that never rotated reads as
/// before), `journal-<base, 20 digits>.log` for later ones.
fn segment_path(dir: &Path, base: u64) -> PathBuf {
    if base == 0 {
        dir.join(LOG_FILE)
    } else {
        dir.join(format!("journal-{base:020}.log"))
    }
}

/// The base revision of a segment file name, if it is one.
fn segment_base(name: &str) -> Option<u64> {
    if name == LOG_FILE {
        return Some(0);
    }
    let digits = name.strip_prefix("journal-")?.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|base| *base > 0)
}

/// The log segments in `dir`, by base revision.
fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, JournalError> {
    let entries = fs::read_dir(dir).map_err(|e| io_error(IoAction::Read, dir, e))?;
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error(IoAction::Read, dir, e))?;
        if let Some(base) = entry.file_name().to_str().and_then(segment_base) {
            segments.push((base, entry.path()));
        }
    }
    segments.sort_unstable_by_key(|(base, _)| *base);
    Ok(segments)
}

/// Opens and scans one segment: from the checkpoint's position when
/// `at_checkpoint` is its segment and the options skip older records, else
/// whole (checked against the checkpoint when it is its segment). Every
/// record must exceed `floor`. Returns the file, the scan and the file
/// length.
fn scan_segment(
    path: &Path,
    at_checkpoint: Option<&CheckpointFile>,
    floor: Option<u64>,
    options: JournalOptions,
) -> Result<(File, Scan, u64), JournalError> {
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(JournalError::MissingLog {
                path: path.to_path_buf(),
            })
        }
        Err(e) => return Err(io_error(IoAction::Open, path, e)),
    };
    let corrupt = |(offset, reason)| JournalError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    let read = |e| io_error(IoAction::Read, path, e);
    let tail_from =
        at_checkpoint.filter(|c| !options.read_all && c.log_len > to_u64(LOG_HEADER_LEN));
    match tail_from {
        None => {
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes).map_err(read)?;
            let scan = scan_log(&bytes, floor).map_err(corrupt)?;
            if let Some(checkpoint) = at_checkpoint {
                check_against_checkpoint(&scan, checkpoint.log_len).map_err(corrupt)?;
            }
            Ok((file, scan, to_u64(bytes.len())))
        }
        Some(checkpoint) => {
            // Only what follows the checkpoint: open time follows the
            // changes since it, not the length of the audit log.
            let file_len = file.metadata().map_err(read)?.len();
            let mut header = [0; LOG_HEADER_LEN];
            let got = (&file)
                .take(to_u64(LOG_HEADER_LEN))
                .read(&mut header)
                .map_err(read)?;
            let header = header.get(..got).unwrap_or_default();
            check_magic(header, LOG_MAGIC)
                .and_then(|()| {
                    header
                        .get(..LOG_HEADER_LEN)
                        .map(|_| ())
                        .ok_or((0, Corruption::TruncatedHeader { len: to_u64(got) }))
                })
                .map_err(corrupt)?;
            if checkpoint.log_len > file_len {
                return Err(corrupt((
                    file_len,
                    Corruption::BehindCheckpoint {
                        checkpoint_log_len: checkpoint.log_len,
                    },
                )));
            }
            file.seek(SeekFrom::Start(checkpoint.log_len))
                .map_err(read)?;
            let mut tail = Vec::new();
            file.read_to_end(&mut tail).map_err(read)?;
            let scan = scan_records(&tail, 0, checkpoint.log_len, floor).map_err(corrupt)?;
            Ok((file, scan, file_len))
        }
    }
}

/// Creates `dir` if it is missing, syncing its parent so the new entry
/// survives a crash.
fn ensure_dir(dir: &Path, options: JournalOptions) -> Result<(), JournalError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|e| io_error(IoAction::Create, dir, e))?;
    if options.sync {
        let parent = match dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        sync_dir(parent)?;
    }
    Ok(())
}

/// Creates an empty log whole: header written aside, synced, renamed into
/// place, directory synced. A crash leaves either no log or a complete one.
fn create_log(dir: &Path, log_path: &Path, options: JournalOptions) -> Result<File, JournalError> {
    let tmp = dir.join(LOG_TMP);
    write_new_file(&tmp, &log_header(), options)?;
    fs::rename(&tmp, log_path).map_err(|e| io_error(IoAction::Rename, &tmp, e))?;
    if options.sync {
        sync_dir(dir)?;
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(log_path)
        .map_err(|e| io_error(IoAction::Open, log_path, e))
}

/// Writes `bytes` to `path`, replacing any previous content, and syncs it.
fn write_new_file(path: &Path, bytes: &[u8], options: JournalOptions) -> Result<(), JournalError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| io_error(IoAction::Create, path, e))?;
    file.write_all(bytes)
        .map_err(|e| io_error(IoAction::Write, path, e))?;
    if options.sync {
        #[cfg(test)]
        sync_gate::pass(path);
        file.sync_all()
            .map_err(|e| io_error(IoAction::Sync, path, e))?;
    }
    Ok(())
}

/// Makes the directory's entries (created and renamed files) durable.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    #[cfg(test)]
    sync_gate::pass(dir);
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(IoAction::Sync, dir, e))
}

/// Outside Unix a directory cannot be opened to sync it, so this does
/// nothing there; the durability of a rename is then up to the file system.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<(), JournalError> {
    Ok(())
}

/// A seam for the tests: holds the next file or directory sync in a
/// directory (not an append's own sync) until the test lets it go.
#[cfg(test)]
pub(crate) mod sync_gate {
    use std::path::{Path, PathBuf};
    use std::sync::{mpsc, Mutex, PoisonError};

    type Gate = (PathBuf, mpsc::Sender<()>, mpsc::Receiver<()>);

    static GATES: Mutex<Vec<Gate>> = Mutex::new(Vec::new());

    /// Holds the next sync of `dir` or of a file in it: the first receiver
    /// hears when one reached the gate; it goes on when the sender sends
    /// (or is dropped).
    pub(crate) fn hold(dir: &Path) -> (mpsc::Receiver<()>, mpsc::Sender<()>) {
        let (reached_tx, reached_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel();
        GATES.lock().unwrap_or_else(PoisonError::into_inner).push((
            dir.to_path_buf(),
            reached_tx,
            release_rx,
        ));
        (reached_rx, release_tx)
    }

    /// Waits at the gate held for `path`'s directory, if any (once).
    pub(super) fn pass(path: &Path) {
        let gate = {
            let mut gates = GATES.lock().unwrap_or_else(PoisonError::into_inner);
            let at = gates.iter().position(|(dir, _, _)| path.starts_with(dir));
            at.map(|at| gates.swap_remove(at))
        };
        if let Some((_, reached, release)) = gate {
            let _ = reached.send(());
            let _ = release.recv();
        }
    }
}

fn io_error(action: IoAction, path: &Path, source: io::Error) -> JournalError {
    JournalError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

fn le_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let field = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(field.try_into().ok()?))
}

fn le_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let field = bytes.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(field.try_into().ok()?))
}

/// A byte count or offset as a file offset.
fn to_u64(n: usize) -> u64 {
    // INVARIANT: `usize` is at most 64 bits on every target std supports.
    n as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use tempfile::TempDir;

    fn payload(revision: u64) -> Vec<u8> {
        let pad = "x".repeat(usize::try_from(revision % 7).unwrap());
        format!(r#"{{"revision":{revision},"change":"grant `editor`{pad}"}}"#).into_bytes()
    }

    fn expected(revisions: impl IntoIterator<Item = u64>) -> Vec<(u64, Vec<u8>)> {
        revisions.into_iter().map(|r| (r, payload(r))).collect()
    }

    /// A journal in a fresh temporary directory holding `revisions`.
    fn fixture(revisions: impl IntoIterator<Item = u64>) -> (TempDir, Journal) {
        let tmp = TempDir::new().unwrap();
        let (mut journal, _) = Journal::open(tmp.path()).unwrap();
        for r in revisions {
            journal.append(r, &payload(r)).unwrap();
        }
        (tmp, journal)
    }

    /// Five records, `10..=50`, in one log, with a checkpoint after the
    /// third: the layout of a journal from before segments, which must
    /// still open.
    fn five_with_checkpoint() -> (TempDir, Journal) {
        let (tmp, mut journal) = fixture([10, 20, 30]);
        // A checkpoint that does not start a segment.
        let next = journal.ticket(30).unwrap().write(b"state at 30").unwrap();
        next.unwrap().discard();
        journal.checkpoint = Some(30);
        journal.append(40, &payload(40)).unwrap();
        journal.append(50, &payload(50)).unwrap();
        (tmp, journal)
    }

    fn log(dir: &Path) -> PathBuf {
        dir.join(LOG_FILE)
    }

    /// The byte range of every record in a log file.
    fn record_spans(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
        let mut spans = Vec::new();
        let mut at = LOG_HEADER_LEN;
        while at < bytes.len() {
            let header = decode_record_header(&bytes[at..at + RECORD_HEADER_LEN]).unwrap();
            let end = at + RECORD_HEADER_LEN + header.len;
            spans.push(at..end);
            at = end;
        }
        spans
    }

    fn corrupt_at(err: JournalError) -> (PathBuf, u64, Corruption) {
        match err {
            JournalError::Corrupt {
                path,
                offset,
                reason,
            } => (path, offset, reason),
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    #[test]
    fn one_journal_per_directory_at_a_time() {
        let tmp = TempDir::new().unwrap();
        let (mut first, _) = Journal::open(tmp.path()).unwrap();
        first.append(1, b"one").unwrap();
        let err = Journal::open(tmp.path()).unwrap_err();
        assert!(matches!(err, JournalError::Locked { .. }), "{err}");
        assert!(err
            .to_string()
            .ends_with("is in use by another open journal"));
        drop(first);
        let (_, recovery) = Journal::open(tmp.path()).unwrap();
        assert_eq!(recovery.records.len(), 1);
    }

    #[test]
    fn a_missing_directory_is_created_with_an_empty_log() {
        let tmp = TempDir::new().unwrap();
        let dir = tmp.path().join("a/b/journal");
        let (journal, recovery) = Journal::open(&dir).unwrap();
        assert!(recovery.checkpoint.is_none());
        assert!(recovery.records.is_empty());
        assert_eq!(recovery.truncated_tail, None);
        assert_eq!(journal.dir(), dir);
        assert_eq!(journal.last_revision(), None);
        assert_eq!(journal.checkpoint_revision(), None);
        assert_eq!(journal.log_size(), to_u64(LOG_HEADER_LEN));
        assert_eq!(fs::read(log(&dir)).unwrap(), log_header());
        assert!(!dir.join(LOG_TMP).exists());
        assert!(journal.options().sync);
    }

    #[test]
    fn many_records_round_trip() {
        let tmp = TempDir::new().unwrap();
        let options = JournalOptions::new().with_sync(false);
        let (mut journal, _) = Journal::open_with(tmp.path(), options).unwrap();
        let mut written = Vec::new();
        for r in 1..=1000u64 {
            let bytes = match r {
                100 | 500 => Vec::new(),
                700 => vec![0xAB; 70_000],
                _ => payload(r),
            };
            journal.append(r * 3, &bytes).unwrap();
            written.push((r * 3, bytes));
        }
        let size = journal.log_size();
        assert_eq!(fs::metadata(log(tmp.path())).unwrap().len(), size);
        drop(journal);

        let (journal, recovery) = Journal::open_with(tmp.path(), options).unwrap();
        assert_eq!(recovery.records, written);
        assert_eq!(recovery.truncated_tail, None);
        assert_eq!(journal.log_size(), size);
        assert_eq!(journal.last_revision(), Some(3000));
        assert!(!journal.options().sync);
    }

    #[test]
    fn reopening_after_a_clean_close_continues_the_sequence() {
        let (tmp, journal) = fixture(1..=5);
        drop(journal);
        let (mut journal, recovery) = Journal::open(tmp.path()).unwrap();
        assert_eq!(recovery.records, expected(1..=5));
        assert_eq!(recovery.truncated_tail, None);
        assert_eq!(journal.last_revision(), Some(5));
        journal.append(6, &payload(6)).unwrap();
        drop(journal);
        let (_, recovery) = Journal::open(tmp.path()).unwrap();
        assert_eq!(recovery.records, expected(1..=6));
    }

    #[test]
    fn checkpoint_and_reopen_return_the_checkpoint_and_every_record() {
        let (tmp, journal) = five_with_checkpoint();
        assert_eq!(journal.checkpoint_revision(), Some(30));
        drop(journal);
        let (mut journal, recovery) = Journal::open(tmp.path()).unwrap();
        assert_eq!(recovery.checkpoint, Some((30, b"state at 30".to_vec())));
        assert_eq!(recovery.records, expected([10, 20, 30, 40, 50]));
        let replay: Vec<_> = recovery.to_replay().map(|(r, _)| r).collect();
        assert_eq!(replay, [40, 50]);
        assert_eq!(journal.last_revision(), Some(50));
        assert!(!tmp.path().join(CHECKPOINT_TMP).exists());

        // A newer checkpoint replaces the old one; the log keeps everything.
        journal.checkpoint(50, b"state at 50").unwrap();
        drop(journal);
        let (_, recovery) = Journal::open(tmp.path()).unwrap();
        assert_eq!(recovery.checkpoint, Some((50, b"state at 50".to_vec())));
        assert_eq!(recovery.records.len(), 5);
        assert_eq!(recovery.to_replay().count(), 0);
    }

    #[test]
    fn without_a_checkpoint_every_record_is_replayed() {
        let (tmp, journal) = fixture(1..=3);
        drop(journal);
        let (_, recovery) = Journal::open(tmp.path()).unwrap();
        let replay: Vec<_> = recovery.to_replay().collect();
        assert_eq!(
            replay,
            [
                (1, payload(1).as_slice()),
                (2, payload(2).as_slice()),
                (3, payload(3).as_slice())
            ]
        );
    }

    #[test]
    fn appends_must_increase_the_revision() {
        let (_tmp, mut journal) = fixture([5]);
        let size = journal.log_size();
        for got in [5, 4, 0] {
            let err = journal.append(got, b"x").unwrap_err();
            assert!(matches!(err, JournalError::RevisionOrder { last: 5, got: g } if g == got));
        }
        assert_eq!(journal.log_size(), size);
        journal.append(6, b"x").unwrap();
    }

    #[test]
    fn a_checkpoint_ahead_of_the_log_raises_the_floor() {
        let tmp = TempDir::new().unwrap();
        let (mut journal, _) = Journal::open(tmp.path()).unwrap();
        journal.checkpoint(0, b"initial").unwrap();
        assert!(matches!(
            journal.append(0, b"x"),
            Err(JournalError::RevisionOrder { last: 0, got: 0 })
        ));
        journal.append(1, b"x").unwrap();
        journal.checkpoint(50, b"jumped").unwrap();
        assert!(matches!(
            journal.append(2, b"x"),
            Err(JournalError::RevisionOrder { last: 50, got: 2 })
        ));
        drop(journal);
        let (mut journal, recovery) = Journal::open(tmp.path()).unwrap();
        assert_eq!(journal.last_revision(), Some(50));
        assert_eq!(recovery.to_replay().count(), 0);
        journal.append(51, b"x").unwrap();
    }

    #[test]
    fn checkpoints_never_go_back() {
        let (_tmp, mut journal) = fixture(1..=7);
        journal.checkpoint(5, b"five").unwrap();
        assert!(matches!(
            journal.checkpoint(4, b"four"),
            Err(JournalError::CheckpointOrder { last: 5, got: 4 })
        ));
        journal.checkpoint(5, b"five again").unwrap();
        journal
            .checkpoint(6, b"six, older than the last record")
            .unwrap();
    }

    #[test]
    fn a_torn_tail_at_every_offset_of_the_last_record_is_cut() {
        let (tmp, journal) = five_with_checkpoint();
        drop(journal);
        let whole = fs::read(log(tmp.path())).unwrap();
        let checkpoint = fs::read(tmp.path().join(CHECKPOINT_FILE)).unwrap();
        let last = record_spans(&whole).pop().unwrap();

        for cut in last.start..last.end {
            let dir = TempDir::new().unwrap();
            fs::write(log(dir.path()), &whole[..cut]).unwrap();
            fs::write(dir.path().join(CHECKPOINT_FILE), &checkpoint).unwrap();

            let (mut journal, recovery) = Journal::open(dir.path()).unwrap();
            assert_eq!(recovery.records, expected([10, 20, 30, 40]), "cut at {cut}");
            let dropped = to_u64(cut - last.start);
            assert_eq!(recovery.truncated_tail, (dropped > 0).then_some(dropped));
            assert_eq!(journal.log_size(), to_u64(last.start));
            assert_eq!(
                fs::metadata(log(dir.path())).unwrap().len(),
                to_u64(last.start)
            );

            journal.append(41, &payload(41)).unwrap();
            drop(journal);
            let (_, recovery) = Journal::open(dir.path()).unwrap();
            assert_eq!(recovery.records, expected([10, 20, 30, 40, 41]));
            assert_eq!(recovery.truncated_tail, None);
        }
    }

    #[test]
    fn reading_after_the_checkpoint_only_recovers_the_same_state() {
        let tail_only = JournalOptions::new().with_read_all(false);
        let (tmp, journal) = five_with_checkpoint();
        drop(journal);
        let (mut journal, recovery) = Journal::open_with(tmp.path(), tail_only).unwrap();
        assert_eq!(recovery.records, expected([40, 50]));
        assert_eq!(recovery.checkpoint, Some((30, b"state at 30".to_vec())));
        assert_eq!(journal.last_revision(), Some(50));
        journal.append(60, &payload(60)).unwrap();
        drop(journal);
        // Old records are still there, for a full read and for read_records.
        let (_, recovery) = Journal::open(tmp.path()).unwrap();
        assert_eq!(recovery.records, expected([10, 20, 30, 40, 50, 60]));
        let mut seen = Vec::new();
        let len = fs::metadata(log(tmp.path())).unwrap().len();
        read_records(&log(tmp.path()), len, |revision, bytes| {
            seen.push((revision, bytes.to_vec()));
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(seen, expected([10, 20, 30, 40, 50, 60]));

        let whole = fs::read(log(tmp.path())).unwrap();
        let spans = record_spans(&whole);
        // A torn last record is cut, as in a full read.
        let last = spans.last().unwrap().clone();
        for cut in last.start..last.end {
            fs::write(log(tmp.path()), &whole[..cut]).unwrap();
            let (journal, recovery) = Journal::open_with(tmp.path(), tail_only).unwrap();
            assert_eq!(recovery.records, expected([40, 50]), "cut at {cut}");
            let dropped = to_u64(cut - last.start);
            assert_eq!(recovery.truncated_tail, (dropped > 0).then_some(dropped));
            assert_eq!(journal.log_size(), to_u64(last.start));
            drop(journal);
            fs::write(log(tmp.path()), &whole).unwrap();
        }
        // Damage after the checkpoint is found; damage before it is not
        // read at open, but read_records finds it.
        let mut bytes = whole.clone();
        bytes[spans[3].start + RECORD_HEADER_LEN] ^= 1;
        fs::write(log(tmp.path()), &bytes).unwrap();
        let (_, offset, reason) =
            corrupt_at(Journal::open_with(tmp.path(), tail_only).unwrap_err());
        assert_eq!(
            (offset, reason),
            (to_u64(spans[3].start), Corruption::RecordPayloadChecksum)
        );
        let mut bytes = whole.clone();
        bytes[spans[0].start + RECORD_HEADER_LEN] ^= 1;
        fs::write(log(tmp.path()), &bytes).unwrap();
        let (_, recovery) = Journal::open_with(tmp.path(), tail_only).unwrap();
        assert_eq!(recovery.records, expected([40, 50, 60]));
        let err = read_records(&log(tmp.path()), to_u64(bytes.len()), |_, _| {
            std::ops::ControlFlow::Continue(())
        })
        .unwrap_err();
        assert_eq!(
            corrupt_at(err).2,
            Corruption::RecordPayloadChecksum,
            "found when read"
        );
        // A log shorter than the checkpoint says is refused.
        fs::write(log(tmp.path()), &whole[..spans[1].end]).unwrap();
        let (_, _, reason) = corrupt_at(Journal::open_with(tmp.path(), tail_only).unwrap_err());
        assert!(
            matches!(reason, Corruption::BehindCheckpoint { .. }),
            "{reason:?}"
        );
        // A record after the checkpoint that does not follow it is refused.
        let mut bytes = whole[..spans[2].end].to_vec();
        bytes.extend(encode_record(25, b"x").unwrap());
        fs::write(log(tmp.path()), &bytes).unwrap();
        let (_, offset, reason) =
            corrupt_at(Journal::open_with(tmp.path(), tail_only).unwrap_err());
        assert_eq!(
            (offset, reason),
            (
                to_u64(spans[2].end),
                Corruption::RevisionOrder {
                    previous: 30,
                    found: 25
                }
            )
        );
    }

    #[test]
    fn a_tail_of_zeros_is_torn() {
        let (tmp, journal) = fixture(1..=3);
        let size = journal.log_size();
        drop(journal);
        let mut bytes = fs::read(log(tmp.path())).unwrap();
        let last = record_spans(&bytes).pop().unwrap();
        bytes[last.clone()].fill(0);
        bytes.extend_from_slice(&[0; 100]);
        fs::write(log(tmp.path()), &bytes).unwrap();

        let (journal, recovery) = Journal::open(tmp.path()).unwrap();
        assert_eq!(recovery.records, expected(1..=2));
        assert_eq!(
            recovery.truncated_tail,
            Some(size - to_u64(last.start) + 100)
        );
        assert_eq!(journal.last_revision(), Some(2));
    }

    #[test]
    fn a_flipped_bit_in_the_last_record_cuts_the_tail() {
        let (tmp, journal) = fixture(1..=4);
        drop(journal);
        let whole = fs::read(log(tmp.path())).unwrap();
        let last = record_spans(&whole).pop().unwrap();

        for at in last.clone() {
            for bit in [0x01, 0x80] {
                let dir = TempDir::new().unwrap();
                let mut bytes = whole.clone();
                bytes[at] ^= bit;
                fs::write(log(dir.path()), &bytes).unwrap();

                let (mut journal, recovery) = Journal::open(dir.path()).unwrap();
                assert_eq!(recovery.records, expected(1..=3), "flip at {at}");
                assert_eq!(recovery.truncated_tail, Some(to_u64(last.len())));
                journal.append(4, &payload(4)).unwrap();
            }
        }
    }

    #[test]
    fn a_flipped_bit_in_a_middle_record_is_corrupt() {
        let (tmp, journal) = fixture(1..=5);
        drop(journal);
        let whole = fs::read(log(tmp.path())).unwrap();
        let middle = record_spans(&whole).swap_remove(2);

        for at in middle.clone() {
            let dir = TempDir::new().unwrap();
            let mut bytes = whole.clone();
            bytes[at] ^= 0x04;
            fs::write(log(dir.path()), &bytes).unwrap();

            let (path, offset, reason) = corrupt_at(Journal::open(dir.path()).unwrap_err());
            assert_eq!(path, log(dir.path()));
            assert_eq!(offset, to_u64(middle.start), "flip at {at}");
            let expected = if at < middle.start + RECORD_HEADER_LEN {
                Corruption::RecordHeaderChecksum
            } else {
                Corruption::RecordPayloadChecksum
            };
            assert_eq!(reason, expected, "flip at {at}");
            // Nothing is repaired behind the operator's back.
            assert_eq!(fs::read(log(dir.path())).unwrap(), bytes);
        }
    }

    #[test]
    fn a_damaged_checkpoint_is_corrupt() {
        let (tmp, journal) = five_with_checkpoint();
        drop(journal);
        let path = tmp.path().join(CHECKPOINT_FILE);
        let whole = fs::read(&path).unwrap();

        for at in 0..whole.len() {
            let mut bytes = whole.clone();
            bytes[at] ^= 0x10;
            fs::write(&path, &bytes).unwrap();
            let (file, _, _) = corrupt_at(Journal::open(tmp.path()).unwrap_err());
            assert_eq!(file, path, "flip at {at}");
        }
        for cut in 0..whole.len() {
            fs::write(&path, &whole[..cut]).unwrap();
            let (file, _, _) = corrupt_at(Journal::open(tmp.path()).unwrap_err());
            assert_eq!(file, path, "cut at {cut}");
        }
        let mut longer = whole.clone();
        longer.push(0);
        fs::write(&path, &longer).unwrap();
        let (_, offset, reason) = corrupt_at(Journal::open(tmp.path()).unwrap_err());
        assert_eq!(offset, 28);
        assert_eq!(
            reason,
            Corruption::CheckpointLength {
                declared: 11,
                actual: 12
            }
        );

        fs::write(&path, &whole).unwrap();
        Journal::open(tmp.path()).unwrap();
    }

    #[test]
    fn a_bad_log_header_is_corrupt() {
        let cases: [(&[u8], u64, Corruption); 4] = [
            (b"", 0, Corruption::TruncatedHeader { len: 0 }),
            (b"RGRAP", 0, Corruption::TruncatedHeader { len: 5 }),
            (b"not a journal at all", 0, Corruption::BadMagic),
            (
                b"RGRAPHJL\x02\x00\x00\x00",
                8,
                Corruption::UnsupportedVersion { version: 2 },
            ),
        ];
        for (bytes, offset, reason) in cases {
            let tmp = TempDir::new().unwrap();
            fs::write(log(tmp.path()), bytes).unwrap();
            let err = Journal::open(tmp.path()).unwrap_err();
            assert_eq!(corrupt_at(err), (log(tmp.path()), offset, reason));
            assert_eq!(fs::read(log(tmp.path())).unwrap(), bytes);
        }
    }

    #[test]
    fn revisions_out_of_order_on_disk_are_corrupt() {
        let tmp = TempDir::new().unwrap();
        let mut bytes = log_header().to_vec();
        bytes.extend(encode_record(7, b"a").unwrap());
        let second = bytes.len();
        bytes.extend(encode_record(7, b"b").unwrap());
        bytes.extend(encode_record(8, b"c").unwrap());
        fs::write(log(tmp.path()), &bytes).unwrap();
        let err = Journal::open(tmp.path()).unwrap_err();
        assert_eq!(
            corrupt_at(err),
            (
                log(tmp.path()),
                to_u64(second),
                Corruption::RevisionOrder {
                    previous: 7,
                    found: 7
                }
            )
        );
    }

    #[test]
    fn a_log_behind_its_checkpoint_is_corrupt() {
        let (tmp, journal) = five_with_checkpoint();
        drop(journal);
        let whole = fs::read(log(tmp.path())).unwrap();
        let spans = record_spans(&whole);
        let checkpoint_log_len = to_u64(spans[2].end);

        // Lost whole records (a log restored from an older backup, say).
        fs::write(log(tmp.path()), &whole[..spans[1].end]).unwrap();
        let (_, offset, reason) = corrupt_at(Journal::open(tmp.path()).unwrap_err());
        assert_eq!(offset, to_u64(spans[1].end));
        assert_eq!(reason, Corruption::BehindCheckpoint { checkpoint_log_len });

        // Lost records with a torn one after them: still not just a torn tail.
        fs::write(log(tmp.path()), &whole[..spans[2].end - 3]).unwrap();
        let (_, offset, _) = corrupt_at(Journal::open(tmp.path()).unwrap_err());
        assert_eq!(offset, to_u64(spans[1].end));
        assert_eq!(
            fs::read(log(tmp.path())).unwrap(),
            &whole[..spans[2].end - 3]
        );

        // A checkpoint taken mid-record belongs to some other log.
        fs::write(log(tmp.path()), &whole).unwrap();
        let odd = to_u64(spans[1].start + 1);
        fs::write(
            tmp.path().join(CHECKPOINT_FILE),
            encode_checkpoint(30, 0, odd, b"state"),
        )
        .unwrap();
        let (_, offset, reason) = corrupt_at(Journal::open(tmp.path()).unwrap_err());
        assert_eq!((offset, reason), (odd, Corruption::NotARecordBoundary));
    }

    #[test]
    fn a_checkpoint_without_its_log_is_refused() {
        let (tmp, journal) = five_with_checkpoint();
        drop(journal);
        fs::remove_file(log(tmp.path())).unwrap();
        let err = Journal::open(tmp.path()).unwrap_err();
        assert!(matches!(err, JournalError::MissingLog { path } if path == log(tmp.path())));
        assert!(!log(tmp.path()).exists());
    }

    #[test]
    fn a_checkpoint_of_an_empty_log_is_fine() {
        let tmp = TempDir::new().unwrap();
        let (mut journal, _) = Journal::open(tmp.path()).unwrap();
        journal.checkpoint(0, b"initial").unwrap();
        drop(journal);
        let (_, recovery) = Journal::open(tmp.path()).unwrap();
        assert_eq!(recovery.checkpoint, Some((0, b"initial".to_vec())));
    }

    /// Every record `read_history` hands over from `dir` up to `end` with a
    /// revision above `after`.
    fn history(dir: &Path, end: LogEnd, after: u64) -> Vec<(u64, Vec<u8>)> {
        let mut seen = Vec::new();
        read_history(dir, end, after, |revision, bytes| {
            seen.push((revision, bytes.to_vec()));
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
        seen
    }

    const HEADER: u64 = LOG_HEADER_LEN as u64;

    #[test]
    fn each_checkpoint_starts_a_segment_and_recovery_reads_only_the_live_one() {
        let tail_only = JournalOptions::new().with_read_all(false);
        let (tmp, mut journal) = fixture([]);
        let mut next = 1..;
        let mut all = Vec::new();
        let mut checkpoint_segment = 0;
        for round in 0..5u64 {
            for _ in 0..3 + round {
                let r = next.next().unwrap();
                journal.append(r, &payload(r)).unwrap();
                all.push(r);
            }
            let at = *all.last().unwrap();
            // The checkpoint points at the end of the live segment, and then
            // a new one starts.
            checkpoint_segment = journal.end().segment;
            journal
                .checkpoint(at, format!("state at {at}").as_bytes())
                .unwrap();
            // The live segment holds nothing the checkpoint already covers.
            assert_eq!(journal.log_size(), HEADER);
            assert_eq!(journal.log_path(), segment_path(tmp.path(), at));
        }
        let since: Vec<u64> = (0..2).map(|_| next.next().unwrap()).collect();
        for &r in &since {
            journal.append(r, &payload(r)).unwrap();
            all.push(r);
        }
        let live = journal.log_path().to_path_buf();
        let end = journal.end();
        drop(journal);
        // The live log is bounded by the changes since the checkpoint.
        let bytes = fs::read(&live).unwrap();
        assert_eq!(record_spans(&bytes).len(), 2);
        assert_eq!(list_segments(tmp.path()).unwrap().len(), 6);

        let (journal, recovery) = Journal::open_with(tmp.path(), tail_only).unwrap();
        let checkpoint = since[0] - 1;
        assert_eq!(
            recovery.checkpoint,
            Some((checkpoint, format!("state at {checkpoint}").into_bytes()))
        );
        assert_eq!(recovery.records, expected(since.clone()));
        assert_eq!(journal.end(), end);
        assert_eq!(journal.last_revision(), Some(*all.last().unwrap()));
        drop(journal);
        // The old segments are the audit history: a full read and
        // `read_history` see every record, in order, across segments.
        let (_, recovery) = Journal::open(tmp.path()).unwrap();
        assert_eq!(recovery.records, expected(all.clone()));
        assert_eq!(history(tmp.path(), end, 0), expected(all.clone()));
        for after in 0..=*all.last().unwrap() {
            let want: Vec<u64> = all.iter().copied().filter(|r| *r > after).collect();
            let got = history(tmp.path(), end, after);
            let got: Vec<u64> = got
                .into_iter()
                .map(|(r, _)| r)
                .filter(|r| *r > after)
                .collect();
            assert_eq!(got, want, "after {after}");
        }
        // A page of recent history does not read the old segments.
        for (base, path) in list_segments(tmp.path()).unwrap() {
            if base < checkpoint_segment && base > 0 {
                fs::write(&path, b"not a log").unwrap();
            }
        }
        let recent = history(tmp.path(), end, checkpoint);
        assert_eq!(recent, expected(since));
        // Nor does recovery: the damaged old segments go unread.
        let (_, recovery) = Journal::open_with(tmp.path(), tail_only).unwrap();
        assert_eq!(recovery.records.len(), 2);
    }

    #[test]
    fn a_crash_at_every_step_of_a_rotation_recovers() {
        let tail_only = JournalOptions::new().with_read_all(false);
        let start = || {
            let (tmp, mut journal) = fixture([1, 2, 3]);
            journal.checkpoint(3, b"state at 3").unwrap();
            journal.append(4, &payload(4)).unwrap();
            journal.append(5, &payload(5)).unwrap();
            (tmp, journal)
        };
        let reopen_sees = |dir: &Path, checkpoint: u64, replay: Vec<u64>, all: Vec<u64>| {
            let (mut journal, recovery) = Journal::open_with(dir, tail_only).unwrap();
            assert_eq!(recovery.checkpoint.map(|(r, _)| r), Some(checkpoint));
            assert_eq!(recovery.records, expected(replay));
            let next = all.last().unwrap() + 1;
            journal.append(next, &payload(next)).unwrap();
            drop(journal);
            let (_, full) = Journal::open(dir).unwrap();
            let mut all = all;
            all.push(next);
            assert_eq!(full.records, expected(all));
        };

        // 1. Crash while writing the checkpoint: stale tmp files, the old
        // checkpoint, the records after it in the same segment.
        let (tmp, journal) = start();
        drop(journal);
        fs::write(tmp.path().join(CHECKPOINT_TMP), b"RGRAPHCP").unwrap();
        fs::write(tmp.path().join(SPARE_TMP), b"RGRAPHJL\x01\0").unwrap();
        fs::write(tmp.path().join(LOG_TMP), b"RGRAPHJL\x01\0").unwrap();
        reopen_sees(tmp.path(), 3, vec![4, 5], vec![1, 2, 3, 4, 5]);

        // 2. The checkpoint is written (pointing at the end of the live
        // segment), the next segment made ready but never renamed into
        // place; records go on in the same segment.
        let (tmp, mut journal) = start();
        let next = journal.ticket(5).unwrap().write(b"state at 5").unwrap();
        assert!(next.is_some());
        assert!(tmp.path().join(SPARE_TMP).exists());
        drop(next);
        journal.append(6, &payload(6)).unwrap();
        drop(journal);
        assert_eq!(list_segments(tmp.path()).unwrap().len(), 2);
        reopen_sees(tmp.path(), 5, vec![6], vec![1, 2, 3, 4, 5, 6]);

        // 3. The new segment is renamed into place and the process dies
        // before any record lands in it (its name maybe never synced).
        let (tmp, mut journal) = start();
        let next = journal.ticket(5).unwrap().write(b"state at 5").unwrap();
        let Rotation::Started(dir_sync) = journal.start_segment(next.unwrap()) else {
            panic!("the segment holds records: it is sealed");
        };
        assert_eq!(journal.log_path(), segment_path(tmp.path(), 5));
        assert_eq!(journal.log_size(), HEADER);
        drop(dir_sync);
        drop(journal);
        reopen_sees(tmp.path(), 5, vec![], vec![1, 2, 3, 4, 5]);

        // ... with a record in it: that append synced the directory first.
        let (tmp, mut journal) = start();
        let next = journal.ticket(5).unwrap().write(b"state at 5").unwrap();
        assert!(matches!(
            journal.start_segment(next.unwrap()),
            Rotation::Started(_)
        ));
        assert!(
            journal.dir_sync.synced.load(Ordering::Acquire)
                < journal.dir_sync.needed.load(Ordering::Acquire)
        );
        journal.append(6, &payload(6)).unwrap();
        assert_eq!(
            journal.dir_sync.synced.load(Ordering::Acquire),
            journal.dir_sync.needed.load(Ordering::Acquire)
        );
        drop(journal);
        reopen_sees(tmp.path(), 5, vec![6], vec![1, 2, 3, 4, 5, 6]);

        // ... and torn while the first record of the new segment was written.
        let (tmp, mut journal) = start();
        journal.checkpoint(5, b"state at 5").unwrap();
        journal.append(6, &payload(6)).unwrap();
        let live = journal.log_path().to_path_buf();
        assert_eq!(live, segment_path(tmp.path(), 5));
        drop(journal);
        let bytes = fs::read(&live).unwrap();
        fs::write(&live, &bytes[..bytes.len() - 2]).unwrap();
        reopen_sees(tmp.path(), 5, vec![], vec![1, 2, 3, 4, 5]);

        // 4. Renaming the segment into place fails: the journal goes on in
        // the old one, no newer segment is left to be taken for the live
        // one, and the next checkpoint starts it.
        let (tmp, mut journal) = start();
        journal.fault = Some(Fault::RotateFails);
        journal.checkpoint(5, b"state at 5").unwrap();
        assert_eq!(list_segments(tmp.path()).unwrap().len(), 2);
        assert!(!tmp.path().join(SPARE_TMP).exists());
        journal.append(6, &payload(6)).unwrap();
        journal.checkpoint(6, b"state at 6").unwrap();
        assert_eq!(journal.log_path(), segment_path(tmp.path(), 6));
        journal.append(7, &payload(7)).unwrap();
        drop(journal);
        reopen_sees(tmp.path(), 6, vec![7], vec![1, 2, 3, 4, 5, 6, 7]);
    }

    /// Every file in `dir` but the lock, with its bytes.
    fn files(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name() != LOCK_FILE && e.file_type().unwrap().is_file())
            .map(|e| {
                (
                    e.file_name().into_string().unwrap(),
                    fs::read(e.path()).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn a_failed_checkpoint_leaves_the_directory_as_it_was() {
        let tail_only = JournalOptions::new().with_read_all(false);
        let blocker = |dir: &Path| dir.join(CHECKPOINT_TMP);
        for fault in [
            None,
            Some(CheckpointStep::Rename),
            Some(CheckpointStep::DirSync),
        ] {
            let (tmp, mut journal) = fixture([1, 2, 3]);
            journal.checkpoint(3, b"state at 3").unwrap();
            journal.append(4, &payload(4)).unwrap();
            journal.append(5, &payload(5)).unwrap();
            let before = files(tmp.path());
            let old_checkpoint = before[CHECKPOINT_FILE].clone();
            match fault {
                // A real failure: `checkpoint.tmp` cannot be created.
                None => fs::create_dir(blocker(tmp.path())).unwrap(),
                Some(step) => journal.fault = Some(Fault::Checkpoint(step)),
            }
            let err = journal.checkpoint(5, b"state at 5").unwrap_err();
            assert!(matches!(err, JournalError::Io { .. }), "{fault:?}: {err}");
            let after = files(tmp.path());
            assert_eq!(
                after.keys().collect::<Vec<_>>(),
                before.keys().collect::<Vec<_>>(),
                "{fault:?}"
            );
            if fault == Some(CheckpointStep::DirSync) {
                // Renamed into place, maybe not durable: the new checkpoint
                // or the old one, both consistent with the same segments.
                let mut expect = before.clone();
                expect.insert(CHECKPOINT_FILE.into(), after[CHECKPOINT_FILE].clone());
                assert_ne!(after[CHECKPOINT_FILE], old_checkpoint);
                assert_eq!(after, expect, "{fault:?}");
            } else {
                assert_eq!(after, before, "{fault:?}");
            }
            assert_eq!(journal.log_path(), segment_path(tmp.path(), 3));
            if fault.is_none() {
                fs::remove_dir(blocker(tmp.path())).unwrap();
            }
            // It goes on in the same segment, and the next checkpoint works.
            journal.append(6, &payload(6)).unwrap();
            journal.checkpoint(6, b"state at 6").unwrap();
            assert_eq!(journal.log_path(), segment_path(tmp.path(), 6));
            journal.append(7, &payload(7)).unwrap();
            drop(journal);
            let (_, recovery) = Journal::open_with(tmp.path(), tail_only).unwrap();
            assert_eq!(
                recovery.checkpoint,
                Some((6, b"state at 6".to_vec())),
                "{fault:?}"
            );
            assert_eq!(recovery.records, expected([7]), "{fault:?}");
            let (_, full) = Journal::open(tmp.path()).unwrap();
            assert_eq!(full.records, expected(1..=7), "{fault:?}");
            let bases: Vec<u64> = list_segments(tmp.path())
                .unwrap()
                .into_iter()
                .map(|(base, _)| base)
                .collect();
            assert_eq!(bases, [0, 3, 6], "{fault:?}");
        }
    }

    #[test]
    fn damage_to_a_sealed_segment_is_corrupt_not_torn() {
        let (tmp, mut journal) = fixture([1, 2, 3]);
        journal.checkpoint(3, b"state at 3").unwrap();
        let checkpoint_3 = fs::read(tmp.path().join(CHECKPOINT_FILE)).unwrap();
        journal.append(4, &payload(4)).unwrap();
        // Seals segment 3; then the checkpoint of 3 is put back, so that
        // recovery reads segment 3 as a sealed one.
        journal.checkpoint(4, b"state at 4").unwrap();
        fs::write(tmp.path().join(CHECKPOINT_FILE), checkpoint_3).unwrap();
        journal.append(5, &payload(5)).unwrap();
        drop(journal);
        let sealed = segment_path(tmp.path(), 3);
        let whole = fs::read(&sealed).unwrap();
        fs::write(&sealed, &whole[..whole.len() - 2]).unwrap();
        let tail_only = JournalOptions::new().with_read_all(false);
        let (path, offset, reason) =
            corrupt_at(Journal::open_with(tmp.path(), tail_only).unwrap_err());
        assert_eq!(path, sealed);
        assert_eq!(reason, Corruption::SealedSegmentTail);
        assert_eq!(offset, HEADER);
        assert_eq!(fs::read(&sealed).unwrap(), &whole[..whole.len() - 2]);

        // The checkpoint's own segment missing is a missing log.
        let own = segment_path(tmp.path(), 0);
        fs::remove_file(&own).unwrap();
        let err = Journal::open_with(tmp.path(), tail_only).unwrap_err();
        assert!(matches!(err, JournalError::MissingLog { path } if path == own));
    }

    #[test]
    fn retention_keeps_the_newest_old_segments() {
        let tmp = TempDir::new().unwrap();
        let options = JournalOptions::new().with_retain_segments(Some(1));
        let (mut journal, _) = Journal::open_with(tmp.path(), options).unwrap();
        let mut reader_end = LogEnd::default();
        for r in 1..=12 {
            journal.append(r, &payload(r)).unwrap();
            if r % 3 == 0 {
                reader_end = journal.end();
                journal.checkpoint(r, b"state").unwrap();
            }
        }
        let bases: Vec<u64> = list_segments(tmp.path())
            .unwrap()
            .into_iter()
            .map(|(base, _)| base)
            .collect();
        // The checkpoint's segment (9, sealed right after it), one before
        // it (6), and the live one (12).
        assert_eq!(bases, [6, 9, 12]);
        let end = journal.end();
        assert_eq!(history(tmp.path(), end, 0), expected(7..=12));
        drop(journal);
        let (mut journal, recovery) = Journal::open_with(tmp.path(), options).unwrap();
        assert_eq!(recovery.checkpoint.map(|(r, _)| r), Some(12));

        // Keeping none deletes even the segment a reader's `end` is in: its
        // history is gone, not an error.
        journal.options = journal.options.with_retain_segments(Some(0));
        journal.append(13, &payload(13)).unwrap();
        assert_eq!(history(tmp.path(), reader_end, 0), expected(7..=12));
        journal.checkpoint(13, b"state").unwrap();
        let bases: Vec<u64> = list_segments(tmp.path())
            .unwrap()
            .into_iter()
            .map(|(base, _)| base)
            .collect();
        assert_eq!(bases, [12, 13]);
        assert_eq!(history(tmp.path(), reader_end, 0), []);
        assert_eq!(history(tmp.path(), journal.end(), 0), expected([13]));
    }

    #[test]
    fn a_version_1_checkpoint_still_opens() {
        // A directory written before segments: one log, a 40-byte header.
        let (tmp, journal) = fixture([1, 2, 3]);
        let log_len = journal.log_size();
        drop(journal);
        let state = b"state at 2";
        let second_end = {
            let bytes = fs::read(log(tmp.path())).unwrap();
            to_u64(record_spans(&bytes)[1].end)
        };
        assert!(second_end < log_len);
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&CHECKPOINT_MAGIC);
        bytes.extend_from_slice(&1u32.to_le_bytes());
        bytes.extend_from_slice(&2u64.to_le_bytes());
        bytes.extend_from_slice(&second_end.to_le_bytes());
        bytes.extend_from_slice(&to_u64(state.len()).to_le_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(&bytes);
        crc.update(state);
        bytes.extend_from_slice(&crc.finalize().to_le_bytes());
        bytes.extend_from_slice(state);
        fs::write(tmp.path().join(CHECKPOINT_FILE), &bytes).unwrap();

        let tail_only = JournalOptions::new().with_read_all(false);
        let (mut journal, recovery) = Journal::open_with(tmp.path(), tail_only).unwrap();
        assert_eq!(recovery.checkpoint, Some((2, state.to_vec())));
        assert_eq!(recovery.records, expected([3]));
        // The next checkpoint moves it to the current format and a segment.
        journal.checkpoint(3, b"state at 3").unwrap();
        journal.append(4, &payload(4)).unwrap();
        drop(journal);
        let (_, recovery) = Journal::open_with(tmp.path(), tail_only).unwrap();
        assert_eq!(recovery.checkpoint, Some((3, b"state at 3".to_vec())));
        assert_eq!(recovery.records, expected([4]));
    }

    #[test]
    fn stale_tmp_files_are_harmless() {
        let (tmp, journal) = five_with_checkpoint();
        drop(journal);
        fs::write(tmp.path().join(CHECKPOINT_TMP), b"half a checkpoint").unwrap();
        fs::write(tmp.path().join(LOG_TMP), b"RGRA").unwrap();
        let (mut journal, recovery) = Journal::open(tmp.path()).unwrap();
        assert_eq!(recovery.checkpoint.unwrap().0, 30);
        journal.checkpoint(50, b"state at 50").unwrap();
        assert!(!tmp.path().join(CHECKPOINT_TMP).exists());
    }

    #[test]
    fn a_failed_write_is_cut_back_and_the_journal_goes_on() {
        let (tmp, mut journal) = fixture(1..=3);
        let size = journal.log_size();
        journal.fault = Some(Fault::ShortWrite);
        let err = journal.append(4, &payload(4)).unwrap_err();
        assert!(matches!(
            err,
            JournalError::Io {
                action: IoAction::Write,
                ..
            }
        ));
        assert_eq!(journal.log_size(), size);
        assert_eq!(fs::metadata(log(tmp.path())).unwrap().len(), size);
        assert_eq!(journal.last_revision(), Some(3));

        journal.append(4, &payload(4)).unwrap();
        drop(journal);
        let (_, recovery) = Journal::open(tmp.path()).unwrap();
        assert_eq!(recovery.records, expected(1..=4));
        assert_eq!(recovery.truncated_tail, None);
    }

    #[test]
    fn a_failed_sync_poisons_the_journal() {
        let (tmp, mut journal) = fixture(1..=3);
        journal.fault = Some(Fault::SyncFails);
        let err = journal.append(4, &payload(4)).unwrap_err();
        assert!(matches!(
            err,
            JournalError::Io {
                action: IoAction::Sync,
                ..
            }
        ));
        assert!(matches!(
            journal.append(5, b"x"),
            Err(JournalError::Poisoned { .. })
        ));
        assert!(matches!(
            journal.checkpoint(3, b"x"),
            Err(JournalError::Poisoned { .. })
        ));
        drop(journal);
        let (mut journal, recovery) = Journal::open(tmp.path()).unwrap();
        assert_eq!(recovery.records, expected(1..=3));
        journal.append(4, &payload(4)).unwrap();
    }

    #[test]
    fn messages_are_one_lowercase_line() {
        let (tmp, mut journal) = fixture([5]);
        let err = journal.append(3, b"x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "revision `3` does not follow the last revision `5`"
        );
        drop(journal);

        let mut bytes = fs::read(log(tmp.path())).unwrap();
        bytes.extend(encode_record(4, b"x").unwrap());
        fs::write(log(tmp.path()), &bytes).unwrap();
        let offset = bytes.len() - RECORD_HEADER_LEN - 1;
        let err = Journal::open(tmp.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "`{}` is corrupt at byte {offset}: record revision `4` does not follow the \
                 previous revision `5`",
                log(tmp.path()).display()
            )
        );

        fs::remove_file(log(tmp.path())).unwrap();
        fs::create_dir(log(tmp.path())).unwrap();
        let err = Journal::open(tmp.path()).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("cannot open `{}`: ", log(tmp.path()).display())),
            "{message}"
        );
        assert!(!message.contains('\n'), "{message}");
        // The operating system's part is lowercased too.
        let (_, os) = message.rsplit_once("`: ").unwrap();
        assert!(os.starts_with(char::is_lowercase), "{message}");
    }

    #[test]
    fn debug_shows_sizes_not_payloads() {
        let (tmp, journal) = five_with_checkpoint();
        assert!(format!("{journal:?}").contains("last_record: Some(50)"));
        drop(journal);
        let (_, recovery) = Journal::open(tmp.path()).unwrap();
        let debug = format!("{recovery:?}");
        assert!(debug.contains("records: 5"), "{debug}");
        assert!(debug.contains("revisions: Some(10..=50)"), "{debug}");
        assert!(!debug.contains("editor"), "{debug}");
    }

    #[test]
    fn public_types_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Journal>();
        assert_send_sync::<Recovery>();
        assert_send_sync::<JournalOptions>();
        assert_send_sync::<JournalError>();
    }
}
