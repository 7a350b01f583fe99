//! One error type for the engine; the binding maps each variant to a Python exception.

use std::fmt;
use std::io;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug)]
pub enum Error {
    /// A system call failed; `what` names the operation so the message says what to fix.
    Os { what: &'static str, source: io::Error },
    /// Shared memory for a payload could not be had (memfd/fallocate failed or a limit was hit).
    SharedMemory { needed: u64, detail: String },
    /// The shared region holds something this build cannot trust (corruption, foreign layout).
    Protocol(String),
    /// The pool is not running (stopping, stopped or broken by a crash loop).
    Unavailable(String),
    /// The caller used a handle that no longer names its call.
    StaleHandle { slot: u32, ticket: u64 },
    /// A configuration value out of range.
    Config(String),
}

impl Error {
    pub fn os(what: &'static str) -> Self {
        Error::Os { what, source: io::Error::last_os_error() }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Os { what, source } => write!(f, "{what} failed: {source}"),
            Error::SharedMemory { needed, detail } => write!(
                f,
                "could not get {needed} bytes of shared memory for a payload: {detail}; \
                 send smaller chunks (split the work with ranges()) or raise the memory limit"
            ),
            Error::Protocol(msg) => write!(f, "shared-memory protocol error: {msg}"),
            Error::Unavailable(msg) => write!(f, "{msg}"),
            Error::StaleHandle { slot, ticket } => {
                write!(f, "slot {slot} no longer holds call #{ticket}")
            }
            Error::Config(msg) => write!(f, "invalid pool configuration: {msg}"),
        }
    }
}

impl std::error::Error for Error {}
