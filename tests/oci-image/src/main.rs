//! `oci-image`: packs static binaries into an OCI image archive.
//!
//! ```text
//! oci-image --ref csi-testbed.local/csi-provisioner:dev --out img.tar \
//!     --entrypoint /csi-provisioner target/release/csi-provisioner
//! ctr -n k8s.io images import img.tar
//! ```
//!
//! Each positional argument is `SOURCE[:DEST]`; DEST defaults to
//! `/<file name>`. Without `--entrypoint` the first file is the entrypoint.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use oci_image::{FileEntry, ImageSpec, write_archive};

/// Packs static binaries into an OCI image archive (image layout tar).
#[derive(Debug, Parser)]
#[command(name = "oci-image")]
struct Args {
    /// Image reference, `host/name:tag`.
    #[arg(long = "ref")]
    reference: String,
    /// Output tar file.
    #[arg(long)]
    out: PathBuf,
    /// Entrypoint path inside the image (default: the first file).
    #[arg(long)]
    entrypoint: Option<String>,
    /// Default arguments (`config.Cmd`), repeatable.
    #[arg(long = "arg")]
    args: Vec<String>,
    /// `config.User`, e.g. `65532:65532`.
    #[arg(long)]
    user: Option<String>,
    /// Files, `SOURCE[:DEST]`.
    #[arg(required = true)]
    files: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let files: Vec<FileEntry> = args
        .files
        .iter()
        .map(|f| {
            let (src, dest) = match f.split_once(':') {
                Some((s, d)) => (PathBuf::from(s), d.to_string()),
                None => {
                    let p = PathBuf::from(f);
                    let name = p
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    (p, format!("/{name}"))
                }
            };
            FileEntry::executable(src, dest)
        })
        .collect();
    let mut spec = ImageSpec::single_binary(args.reference, &files[0].source);
    spec.entrypoint = vec![args.entrypoint.unwrap_or_else(|| files[0].dest.clone())];
    spec.files = files;
    spec.cmd = args.args;
    spec.user = args.user;
    match write_archive(&spec, &args.out) {
        Ok(p) => {
            println!("{} {}", p.reference, p.manifest_digest);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("oci-image: {e}");
            ExitCode::FAILURE
        }
    }
}
