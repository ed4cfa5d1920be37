//! What can go wrong opening, appending to or checkpointing a journal.

use std::fmt;

use crate::text::Lowercase;
use std::path::PathBuf;

/// A journal operation failed.
///
/// Messages are one line, lowercase, with the offending file or value in
/// backticks. Nothing a failed `Journal::open` found is repaired: corruption
/// other than a torn tail leaves the files untouched for a human to inspect.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// The operating system refused a file operation.
    #[error("cannot {action} `{}`: {}", path.display(), Lowercase(source))]
    Io {
        /// What was being done.
        action: IoAction,
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A file holds something the journal never writes, somewhere a crash
    /// cannot explain.
    #[error("`{}` is corrupt at byte {offset}: {reason}", path.display())]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Where in the file the damage starts.
        offset: u64,
        /// What is wrong there.
        reason: Corruption,
    },
    /// The checkpoint exists but the log it was taken from does not; starting
    /// from the checkpoint alone would lose the audit history and any change
    /// acknowledged after it.
    #[error("`{}` is missing but a checkpoint of it exists", path.display())]
    MissingLog {
        /// The missing log file.
        path: PathBuf,
    },
    /// `Journal::append` was given a revision that does not exceed the last
    /// one.
    #[error("revision `{got}` does not follow the last revision `{last}`")]
    RevisionOrder {
        /// The highest revision the journal knows, from the log or the
        /// checkpoint.
        last: u64,
        /// The revision that was refused.
        got: u64,
    },
    /// `Journal::checkpoint` was given a revision older than the current
    /// checkpoint.
    #[error("checkpoint revision `{got}` is older than the current checkpoint `{last}`")]
    CheckpointOrder {
        /// The revision of the current checkpoint.
        last: u64,
        /// The revision that was refused.
        got: u64,
    },
    /// A payload longer than a record can describe.
    #[error("payload of {len} bytes exceeds the record limit of {max} bytes")]
    TooLarge {
        /// The payload length.
        len: usize,
        /// The largest payload a record holds.
        max: u64,
    },
    /// An earlier append failed in a way that leaves the end of the log
    /// unknown (a failed fsync, or a failed rollback of a partial write).
    /// Reopening the journal recovers whatever reached the disk.
    #[error("`{}` refuses writes after an earlier failure: reopen the journal", path.display())]
    Poisoned {
        /// The log file.
        path: PathBuf,
    },
    /// Another journal (in this process or another) has the directory open.
    #[error("`{}` is in use by another open journal", path.display())]
    Locked {
        /// The directory.
        path: PathBuf,
    },
    /// A record read back from the log is not what the engine wrote.
    #[error("journal record `{revision}` does not decode: {reason}")]
    Decode {
        /// The record's revision.
        revision: u64,
        /// What the decoder said.
        reason: String,
    },
    /// The state handed to a checkpoint could not be encoded; nothing was
    /// written, and the previous checkpoint stays in place.
    #[error("cannot encode the checkpoint of revision `{revision}`: {reason}")]
    Encode {
        /// The revision of the state.
        revision: u64,
        /// What the encoder said.
        reason: String,
    },
}

/// The file operation behind a [`JournalError::Io`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IoAction {
    /// Creating a file or directory.
    Create,
    /// Opening an existing file.
    Open,
    /// Reading a file.
    Read,
    /// Writing a file.
    Write,
    /// Flushing a file or directory to stable storage (fsync).
    Sync,
    /// Cutting a file back to a shorter length.
    Truncate,
    /// Renaming a file into place.
    Rename,
}

impl fmt::Display for IoAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Create => "create",
            Self::Open => "open",
            Self::Read => "read",
            Self::Write => "write",
            Self::Sync => "sync",
            Self::Truncate => "truncate",
            Self::Rename => "rename",
        })
    }
}

/// What is wrong at the offset of a [`JournalError::Corrupt`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Corruption {
    /// The file does not start with the magic bytes of its kind.
    BadMagic,
    /// The file was written by a format version this build does not read.
    UnsupportedVersion {
        /// The version found.
        version: u32,
    },
    /// The file is shorter than its fixed header. Both files are created
    /// whole (written aside, then renamed), so a crash cannot cause this.
    TruncatedHeader {
        /// The file length.
        len: u64,
    },
    /// A record header fails its checksum and whole records follow it, so
    /// this is not a torn tail.
    RecordHeaderChecksum,
    /// A record's payload fails its checksum and more data follows it, so
    /// this is not a torn tail.
    RecordPayloadChecksum,
    /// A whole, valid record does not have a higher revision than the one
    /// before it.
    RevisionOrder {
        /// The revision of the record before.
        previous: u64,
        /// The revision of this record.
        found: u64,
    },
    /// The checkpoint's declared state length disagrees with the file length.
    CheckpointLength {
        /// The state length in the header.
        declared: u64,
        /// The state bytes actually present.
        actual: u64,
    },
    /// The checkpoint fails its checksum.
    CheckpointChecksum,
    /// The log ends before the point the checkpoint was taken at: records
    /// that were acknowledged before the checkpoint are gone.
    BehindCheckpoint {
        /// Where the checkpoint says the log ended when it was taken.
        checkpoint_log_len: u64,
    },
    /// The checkpoint was taken at a log length that is not a record boundary.
    NotARecordBoundary,
    /// A log segment older than the live one ends in a partial record. A
    /// segment is sealed only once every append to it is synced, so a crash
    /// cannot explain this.
    SealedSegmentTail,
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic => f.write_str("wrong magic bytes, not a journal file of this kind"),
            Self::UnsupportedVersion { version } => {
                write!(f, "unsupported format version `{version}`")
            }
            Self::TruncatedHeader { len } => {
                write!(f, "the file header is cut short at {len} bytes")
            }
            Self::RecordHeaderChecksum => {
                f.write_str("record header checksum mismatch, with valid records after it")
            }
            Self::RecordPayloadChecksum => {
                f.write_str("record payload checksum mismatch, with more data after it")
            }
            Self::RevisionOrder { previous, found } => write!(
                f,
                "record revision `{found}` does not follow the previous revision `{previous}`"
            ),
            Self::CheckpointLength { declared, actual } => write!(
                f,
                "the header declares {declared} bytes of state but {actual} are present"
            ),
            Self::CheckpointChecksum => f.write_str("checkpoint checksum mismatch"),
            Self::BehindCheckpoint { checkpoint_log_len } => write!(
                f,
                "the log ends here but the checkpoint was taken at byte {checkpoint_log_len}"
            ),
            Self::SealedSegmentTail => f.write_str("a sealed log segment ends in a partial record"),
            Self::NotARecordBoundary => {
                f.write_str("the checkpoint was taken here, which is not a record boundary")
            }
        }
    }
}
