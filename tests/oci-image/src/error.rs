//! The crate's one error type.

use std::path::PathBuf;

/// What went wrong while packing an image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The image description is unusable (bad reference, a path that is not
    /// absolute, no files).
    #[error("image spec: {0}")]
    Spec(String),

    /// A file could not be read or the archive could not be written.
    #[error("io {what} {}: {source}", path.display())]
    Io {
        /// The operation, e.g. `read`.
        what: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// oci-spec refused a descriptor, manifest, config or index.
    #[error("oci: {0}")]
    Oci(#[from] oci_spec::OciSpecError),

    /// A JSON document could not be serialized.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

impl Error {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
