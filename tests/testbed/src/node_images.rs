//! The node's images, packed from the test bed's static binaries with the
//! `oci-image` crate and imported into containerd's `k8s.io` namespace
//! (the one the CRI plugin reads); nothing is ever pulled.

use std::path::{Path, PathBuf};

use oci_image::{ImageSpec, write_archive};

use crate::error::{Error, Result};
use crate::node_config::{DRIVER_IMAGE, PAUSE_IMAGE, REGISTRAR_IMAGE};

/// `(reference, binary name in the bin directory)` of every node image.
pub const NODE_IMAGES: [(&str, &str); 3] = [
    (PAUSE_IMAGE, "pause"),
    (DRIVER_IMAGE, "csi-testdriver"),
    (REGISTRAR_IMAGE, "csi-registrar"),
];

/// Packs every image of [`NODE_IMAGES`] into `<out_dir>/<binary>.tar` and
/// returns the archive paths.
///
/// Errors: [`Error::Io`] naming the image that could not be packed.
pub fn pack_all(bin_dir: &Path, out_dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out_dir)
        .map_err(|e| Error::io(format!("mkdir {}", out_dir.display()), e))?;
    NODE_IMAGES
        .iter()
        .map(|(reference, binary)| {
            let out = out_dir.join(format!("{binary}.tar"));
            pack(reference, &bin_dir.join(binary), &out)?;
            Ok(out)
        })
        .collect()
}

/// Packs the static `binary` as image `reference` into the archive `out`.
///
/// Errors: [`Error::Io`] naming the image.
pub fn pack(reference: &str, binary: &Path, out: &Path) -> Result<()> {
    let spec = ImageSpec::single_binary(reference, binary);
    write_archive(&spec, out)
        .map(drop)
        .map_err(|e| Error::io(format!("pack image {reference}"), std::io::Error::other(e)))
}

/// Imports `archives` into the containerd at `socket` with `ctr`.
///
/// Errors: [`Error::Io`] with ctr's output when an import fails.
pub async fn import_all(ctr: &Path, socket: &Path, archives: &[PathBuf]) -> Result<()> {
    for archive in archives {
        let out = tokio::process::Command::new(ctr)
            .arg("--address")
            .arg(socket)
            .args(["--namespace", "k8s.io", "images", "import"])
            .arg(archive)
            .output()
            .await
            .map_err(|e| Error::io(format!("run {}", ctr.display()), e))?;
        if !out.status.success() {
            return Err(Error::io(
                format!("ctr images import {}", archive.display()),
                std::io::Error::other(format!(
                    "{}: {}{}",
                    out.status,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                )),
            ));
        }
    }
    Ok(())
}
