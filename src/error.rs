//! The project's error type: every failure a user can cause ends in one of these, printed as one line.

use std::path::PathBuf;

/// Everything that can go wrong in ouro, with enough context to say what was wrong and what is expected.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value or key that is missing, unknown or out of range.
    #[error("config: {0}")]
    Config(String),
    /// A data file that cannot be read or does not hold what is expected.
    #[error("data file {path}: {message}")]
    Data { path: PathBuf, message: String },
    /// A run that cannot go on (e.g. a finite data set ran out of fresh points).
    #[error("{0}")]
    Run(String),
    /// A run stopped on request (SIGUSR1, a cluster's warning before a time limit) after
    /// writing a checkpoint: `--resume` continues it.
    #[error("stopped at a checkpoint on request; --resume continues the run")]
    Stopped,
    /// An I/O failure while writing outputs.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// Shorthand for results in this crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A configuration error with the given message.
    pub fn config(message: impl Into<String>) -> Self {
        Error::Config(message.into())
    }

    /// A data error about `path`.
    pub fn data(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Data {
            path: path.into(),
            message: message.into(),
        }
    }

    /// An I/O error with a sentence saying what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
