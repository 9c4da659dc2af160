//! What can end an upload, each with the exit code the command-line tool gives it.

/// Why an operation did not succeed. Messages never carry the token or an upload secret.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server refused the credentials (401, 403).
    #[error("authentication refused ({status}): {detail}")]
    Auth { status: u16, detail: String },
    /// No such upload, or not the caller's (404).
    #[error("not found: {0}")]
    NotFound(String),
    /// The upload expired before it completed (410).
    #[error("the upload expired: {0}")]
    Expired(String),
    /// The server's checksum of what it holds is not the file's.
    #[error("checksum mismatch: {0}")]
    ChecksumMismatch(String),
    /// The file is not the one an interrupted upload was sending.
    #[error("{0}")]
    FileChanged(String),
    /// No answer from the server after every retry.
    #[error("server unreachable at {endpoint}: {reason}")]
    Unreachable { endpoint: String, reason: String },
    /// Any other refusal, with the server's status and `detail`.
    #[error("the server answered {status}: {detail}")]
    Refused { status: u16, detail: String },
    /// The local side: reading the file, the state directory, a token command.
    #[error("{0}")]
    Local(String),
    /// Stopped by the user (Ctrl-C); what was sent is kept and the same command goes on.
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    /// The process exit code: distinct for each case a script may want to tell apart.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Local(_) | Error::Refused { .. } => 1,
            Error::Auth { .. } => 3,
            Error::NotFound(_) => 4,
            Error::Expired(_) => 5,
            Error::ChecksumMismatch(_) => 6,
            Error::FileChanged(_) => 7,
            Error::Unreachable { .. } => 8,
            Error::Interrupted => 130,
        }
    }

    /// A short name for `--json` output.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Auth { .. } => "auth",
            Error::NotFound(_) => "not_found",
            Error::Expired(_) => "expired",
            Error::ChecksumMismatch(_) => "checksum_mismatch",
            Error::FileChanged(_) => "file_changed",
            Error::Unreachable { .. } => "unreachable",
            Error::Refused { .. } => "refused",
            Error::Local(_) => "local",
            Error::Interrupted => "interrupted",
        }
    }

    pub fn local(what: &str, e: impl std::fmt::Display) -> Error {
        Error::Local(format!("{what}: {e}"))
    }
}

pub type Result<T> = std::result::Result<T, Error>;
