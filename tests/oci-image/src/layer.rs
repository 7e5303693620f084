//! The image's one layer: a gzip-compressed tar of the files, with the
//! digests the config (uncompressed) and the manifest (compressed) need.

use std::collections::BTreeSet;
use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::spec::FileEntry;

/// A finished layer.
pub(crate) struct Layer {
    /// The gzip bytes (the blob).
    pub(crate) gz: Vec<u8>,
    /// `sha256:<hex>` of the uncompressed tar, the config's diff ID.
    pub(crate) diff_id: String,
}

/// `sha256:<hex>` of `bytes`.
pub(crate) fn sha256(bytes: &[u8]) -> String {
    let sum = Sha256::digest(bytes);
    let hex: String = sum.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

/// Builds the layer: parent directories first (0755), then the files in the
/// given order, all owned by root with time stamp 0.
pub(crate) fn build(files: &[FileEntry]) -> Result<Layer> {
    let mut dirs = BTreeSet::new();
    for f in files {
        let mut p = std::path::Path::new(&f.dest).parent();
        while let Some(d) = p {
            let s = d.to_string_lossy().trim_start_matches('/').to_string();
            if s.is_empty() {
                break;
            }
            dirs.insert(s);
            p = d.parent();
        }
    }
    let mut tar = tar::Builder::new(Vec::new());
    let tar_err = |e| Error::io("write layer tar", "<memory>", e);
    // BTreeSet order puts "a" before "a/b": parents come first.
    for d in &dirs {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        tar.append_data(&mut h, format!("{d}/"), std::io::empty())
            .map_err(tar_err)?;
    }
    for f in files {
        let data = std::fs::read(&f.source).map_err(|e| Error::io("read", &f.source, e))?;
        let mut h = header(tar::EntryType::Regular, f.mode, data.len() as u64);
        tar.append_data(&mut h, f.dest.trim_start_matches('/'), data.as_slice())
            .map_err(tar_err)?;
    }
    let raw = tar.into_inner().map_err(tar_err)?;
    let diff_id = sha256(&raw);
    // GzEncoder writes mtime 0 and no file name: the bytes depend only on
    // the input.
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(&raw).map_err(tar_err)?;
    let gz = gz.finish().map_err(tar_err)?;
    Ok(Layer { gz, diff_id })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_lists_parents_then_files() {
        let dir = std::env::temp_dir().join(format!("oci-layer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("x");
        std::fs::write(&src, b"hello").unwrap();
        let layer = build(&[FileEntry::executable(&src, "/usr/bin/x")]).unwrap();
        let tar_bytes = {
            let mut d = flate2::read::GzDecoder::new(layer.gz.as_slice());
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut d, &mut v).unwrap();
            v
        };
        assert_eq!(layer.diff_id, sha256(&tar_bytes));
        let mut a = tar::Archive::new(tar_bytes.as_slice());
        let names: Vec<String> = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["usr/", "usr/bin/", "usr/bin/x"]);
        // Same input, same bytes.
        let again = build(&[FileEntry::executable(&src, "/usr/bin/x")]).unwrap();
        assert_eq!(again.gz, layer.gz);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
