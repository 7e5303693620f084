//! What goes into an image: [`ImageSpec`] and its [`FileEntry`]s.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// One file copied into the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// The file on this machine.
    pub source: PathBuf,
    /// Absolute path inside the image, e.g. `/csi-testdriver`.
    pub dest: String,
    /// Permission bits inside the image, e.g. `0o755`.
    pub mode: u32,
}

impl FileEntry {
    /// An executable (mode 0755) at `dest`.
    pub fn executable(source: impl Into<PathBuf>, dest: impl Into<String>) -> Self {
        FileEntry {
            source: source.into(),
            dest: dest.into(),
            mode: 0o755,
        }
    }
}

/// A single-layer image of static binaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    /// Full reference, `host/path/name:tag`, e.g.
    /// `csi-testbed.local/csi-testdriver:v0`. containerd stores the image
    /// under exactly this name.
    pub reference: String,
    /// The files of the only layer; parent directories are added (0755).
    pub files: Vec<FileEntry>,
    /// `config.Entrypoint`, e.g. `["/csi-testdriver"]`.
    pub entrypoint: Vec<String>,
    /// `config.Cmd`: default arguments after the entrypoint.
    pub cmd: Vec<String>,
    /// `config.Env`, `NAME=value` strings.
    pub env: Vec<String>,
    /// `config.User`, e.g. `65532:65532`; `None` runs as the runtime's default.
    pub user: Option<String>,
    /// GOARCH-style architecture, default `amd64`.
    pub arch: String,
    /// GOOS-style operating system, default `linux`.
    pub os: String,
}

impl ImageSpec {
    /// An image `reference` whose entrypoint is the executable `binary`,
    /// copied to `/<file name>`.
    pub fn single_binary(reference: impl Into<String>, binary: impl Into<PathBuf>) -> Self {
        let binary = binary.into();
        let name = binary
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dest = format!("/{name}");
        ImageSpec {
            reference: reference.into(),
            files: vec![FileEntry::executable(binary, dest.clone())],
            entrypoint: vec![dest],
            cmd: Vec::new(),
            env: Vec::new(),
            user: None,
            arch: std::env::consts::ARCH
                .replace("x86_64", "amd64")
                .replace("aarch64", "arm64"),
            os: "linux".into(),
        }
    }

    /// The tag after the last `:` of the last path component (`latest`
    /// when there is none).
    pub fn tag(&self) -> &str {
        let last = self.reference.rsplit('/').next().unwrap_or_default();
        match last.rsplit_once(':') {
            Some((_, tag)) => tag,
            None => "latest",
        }
    }

    /// Checks what the archive writer relies on.
    ///
    /// Errors: [`Error::Spec`] for an empty reference or file list, a
    /// digest reference, or a destination that is not absolute.
    pub fn validate(&self) -> Result<()> {
        if self.reference.is_empty() || self.reference.contains('@') {
            return Err(Error::Spec(format!(
                "reference {:?} must be name:tag",
                self.reference
            )));
        }
        if self.files.is_empty() {
            return Err(Error::Spec("no files".into()));
        }
        for f in &self.files {
            if !f.dest.starts_with('/') || f.dest.ends_with('/') || f.dest.contains("/../") {
                return Err(Error::Spec(format!(
                    "destination {:?} must be an absolute file path",
                    f.dest
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_of_reference() {
        let mut s = ImageSpec::single_binary("a.local:5000/x/y:v1", "/bin/true");
        assert_eq!(s.tag(), "v1");
        s.reference = "a.local:5000/x/y".into();
        assert_eq!(s.tag(), "latest");
    }

    #[test]
    fn single_binary_layout() {
        let s = ImageSpec::single_binary("r.local/t:v0", "/usr/bin/true");
        assert_eq!(s.entrypoint, vec!["/true".to_string()]);
        assert_eq!(s.files[0].dest, "/true");
        assert_eq!(s.files[0].mode, 0o755);
        s.validate().unwrap();
    }

    #[test]
    fn rejects_relative_destination() {
        let mut s = ImageSpec::single_binary("r.local/t:v0", "/usr/bin/true");
        s.files[0].dest = "true".into();
        assert!(s.validate().is_err());
    }
}
