//! Writing an OCI image layout as one tar file: `oci-layout`, `index.json`
//! and the blobs (layer, config, manifest) under `blobs/sha256/`.

use std::collections::HashMap;
use std::path::Path;

use oci_spec::image::{
    Arch, ConfigBuilder, DescriptorBuilder, ImageConfigurationBuilder, ImageIndexBuilder,
    ImageManifestBuilder, MediaType, Os, PlatformBuilder, RootFsBuilder,
};

use crate::error::{Error, Result};
use crate::layer::{self, sha256};
use crate::spec::ImageSpec;

/// Index annotation holding the full image name; containerd's importer
/// names the image after it.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";

/// Standard OCI annotation for the tag, read by other importers.
const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// What [`write_archive`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedImage {
    /// The image reference, as in the spec.
    pub reference: String,
    /// `sha256:<hex>` of the manifest: the image's digest.
    pub manifest_digest: String,
    /// Size of the compressed layer in bytes.
    pub layer_size: u64,
}

fn descriptor(media_type: MediaType, bytes: &[u8]) -> Result<oci_spec::image::DescriptorBuilder> {
    let digest: oci_spec::image::Digest = sha256(bytes)
        .parse()
        .map_err(|e: oci_spec::OciSpecError| Error::Spec(e.to_string()))?;
    Ok(DescriptorBuilder::default()
        .media_type(media_type)
        .size(bytes.len() as u64)
        .digest(digest))
}

/// Packs `spec` into an OCI image layout tar at `out` (replacing it).
///
/// Errors: [`Error::Spec`] from [`ImageSpec::validate`], [`Error::Io`] for
/// unreadable inputs or an unwritable `out`, [`Error::Oci`] /
/// [`Error::Json`] if a document cannot be built.
pub fn write_archive(spec: &ImageSpec, out: &Path) -> Result<PackedImage> {
    spec.validate()?;
    let layer = layer::build(&spec.files)?;
    let layer_desc = descriptor(MediaType::ImageLayerGzip, &layer.gz)?.build()?;

    let mut cfg = ConfigBuilder::default().entrypoint(spec.entrypoint.clone());
    if !spec.cmd.is_empty() {
        cfg = cfg.cmd(spec.cmd.clone());
    }
    if !spec.env.is_empty() {
        cfg = cfg.env(spec.env.clone());
    }
    if let Some(user) = &spec.user {
        cfg = cfg.user(user.clone());
    }
    let config = ImageConfigurationBuilder::default()
        .architecture(Arch::from(spec.arch.as_str()))
        .os(Os::from(spec.os.as_str()))
        .config(cfg.build()?)
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(vec![layer.diff_id.clone()])
                .build()?,
        )
        .build()?;
    let config_json = serde_json::to_vec(&config)?;
    let config_desc = descriptor(MediaType::ImageConfig, &config_json)?.build()?;

    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config_desc)
        .layers(vec![layer_desc])
        .build()?;
    let manifest_json = serde_json::to_vec(&manifest)?;
    let platform = PlatformBuilder::default()
        .architecture(Arch::from(spec.arch.as_str()))
        .os(Os::from(spec.os.as_str()))
        .build()?;
    let manifest_desc = descriptor(MediaType::ImageManifest, &manifest_json)?
        .platform(platform)
        .annotations(HashMap::from([
            (ANNOTATION_IMAGE_NAME.to_string(), spec.reference.clone()),
            (ANNOTATION_REF_NAME.to_string(), spec.tag().to_string()),
        ]))
        .build()?;
    let manifest_digest = manifest_desc.digest().to_string();
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![manifest_desc])
        .build()?;
    let index_json = serde_json::to_vec(&index)?;

    let tmp = out.with_extension("tmp");
    let file = std::fs::File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    let mut put = |name: &str, bytes: &[u8]| -> Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(bytes.len() as u64);
        h.set_mtime(0);
        tar.append_data(&mut h, name, bytes)
            .map_err(|e| Error::io("write", &tmp, e))
    };
    put("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    put("index.json", &index_json)?;
    for blob in [&layer.gz, &config_json, &manifest_json] {
        let digest = sha256(blob);
        let hex = digest.trim_start_matches("sha256:");
        put(&format!("blobs/sha256/{hex}"), blob)?;
    }
    let mut w = tar.into_inner().map_err(|e| Error::io("finish", &tmp, e))?;
    std::io::Write::flush(&mut w).map_err(|e| Error::io("flush", &tmp, e))?;
    drop(w);
    std::fs::rename(&tmp, out).map_err(|e| Error::io("rename to", out, e))?;
    Ok(PackedImage {
        reference: spec.reference.clone(),
        manifest_digest,
        layer_size: layer.gz.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_has_layout_index_and_blobs() {
        let dir = std::env::temp_dir().join(format!("oci-archive-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bin = dir.join("tool");
        std::fs::write(&bin, b"#!/bin/true\n").unwrap();
        let spec = ImageSpec::single_binary("csi-testbed.local/tool:v0", &bin);
        let out = dir.join("tool.tar");
        let packed = write_archive(&spec, &out).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        let mut a = tar::Archive::new(bytes.as_slice());
        let mut names = Vec::new();
        let mut index = String::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            if name == "index.json" {
                std::io::Read::read_to_string(&mut e, &mut index).unwrap();
            }
            names.push(name);
        }
        assert_eq!(names.len(), 5, "{names:?}");
        assert_eq!(&names[..2], ["oci-layout", "index.json"]);
        let manifest_blob = format!(
            "blobs/sha256/{}",
            packed.manifest_digest.trim_start_matches("sha256:")
        );
        assert!(names.contains(&manifest_blob), "{names:?}");
        let v: serde_json::Value = serde_json::from_str(&index).unwrap();
        let m = &v["manifests"][0];
        assert_eq!(m["annotations"][ANNOTATION_IMAGE_NAME], spec.reference);
        assert_eq!(m["annotations"][ANNOTATION_REF_NAME], "v0");
        assert_eq!(m["platform"]["os"], "linux");
        // Reproducible.
        let again = write_archive(&spec, &out).unwrap();
        assert_eq!(again, packed);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
