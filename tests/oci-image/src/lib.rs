//! Packs static binaries into OCI image archives, with no registry and no
//! container engine.
//!
//! An [`ImageSpec`] names the image, its files and its entrypoint;
//! [`write_archive`] writes an OCI image layout as one tar file
//! (`oci-layout`, `index.json`, `blobs/sha256/...`) holding a single gzip
//! layer, the image config and the manifest. `ctr -n k8s.io images import`
//! takes such a file as it is, as do `skopeo copy oci-archive:...` and
//! `docker load` (recent versions).
//!
//! Output is reproducible: every time stamp is zero and files are owned by
//! root, so the same inputs give the same digests.

mod archive;
mod error;
mod layer;
mod spec;

pub use archive::{ANNOTATION_IMAGE_NAME, PackedImage, write_archive};
pub use error::{Error, Result};
pub use spec::{FileEntry, ImageSpec};
