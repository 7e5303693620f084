//! Certificates and keys for the local control plane, made with rcgen.
//!
//! All keys are ECDSA P-256 in PKCS#8 PEM, which kube-apiserver,
//! kube-controller-manager, client-go and kube-rs all accept (etcd serves
//! plain HTTP on loopback and needs none). Validity is rcgen's default
//! (1975–4096): the files live only as long as one run directory.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::error::{Error, Result};

/// Paths of the PEM files written by [`Pki::generate`], all inside one directory.
#[derive(Debug, Clone)]
pub struct Pki {
    /// CA certificate (`ca.crt`): signs the serving and client certificates;
    /// the apiserver's `--client-ca-file` and every kubeconfig's CA.
    pub ca_cert: PathBuf,
    /// The CA certificate in DER form, for building clients without a file.
    pub ca_der: Vec<u8>,
    /// Serving certificate (`serving.crt`): CN `localhost`, SANs DNS
    /// `localhost` and IP `127.0.0.1`, extended key usage serverAuth.
    pub serving_cert: PathBuf,
    /// Private key of the serving certificate (`serving.key`).
    pub serving_key: PathBuf,
    /// Admin client certificate (`admin.crt`): CN `csi-testbed-admin`,
    /// O `system:masters` (cluster-admin without any RBAC setup).
    pub admin_cert: PathBuf,
    /// Private key of the admin certificate (`admin.key`).
    pub admin_key: PathBuf,
    /// The node's kubelet client certificate (`kubelet.crt`): CN
    /// `system:node:<NODE_NAME>`, O `system:nodes`, as the Node authorizer
    /// expects. Unused unless the test bed runs a node.
    pub kubelet_cert: PathBuf,
    /// Private key of the kubelet certificate (`kubelet.key`).
    pub kubelet_key: PathBuf,
    /// Service-account token signing key (`sa.key`, PKCS#8 PEM) for
    /// `--service-account-signing-key-file`.
    pub sa_key: PathBuf,
    /// Its public key (`sa.pub`, SPKI PEM) for `--service-account-key-file`.
    pub sa_pub: PathBuf,
}

/// Common name of the admin client certificate.
pub const ADMIN_USER: &str = "csi-testbed-admin";

fn pki_err(what: &str, e: rcgen::Error) -> Error {
    Error::Pki(format!("{what}: {e}"))
}

impl Pki {
    /// Generates a CA, a serving certificate, an admin client certificate and
    /// a service-account key pair, and writes them as PEM files into `dir`
    /// (which must exist).
    ///
    /// Errors: [`Error::Pki`] if rcgen fails, [`Error::Io`] if a file cannot
    /// be written.
    pub fn generate(dir: &Path) -> Result<Pki> {
        // CA.
        let ca_key = KeyPair::generate().map_err(|e| pki_err("CA key", e))?;
        let mut ca_params =
            CertificateParams::new(Vec::<String>::new()).map_err(|e| pki_err("CA params", e))?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "csi-testbed-ca");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        let ca_cert = ca_params
            .self_signed(&ca_key)
            .map_err(|e| pki_err("CA certificate", e))?;
        let issuer = Issuer::new(ca_params, ca_key);

        // Serving certificate for kube-apiserver (and kube-controller-manager).
        let serving_key = KeyPair::generate().map_err(|e| pki_err("serving key", e))?;
        let mut serving = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".into()])
            .map_err(|e| pki_err("serving params", e))?;
        serving
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        serving.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        serving.use_authority_key_identifier_extension = true;
        let serving_cert = serving
            .signed_by(&serving_key, &issuer)
            .map_err(|e| pki_err("serving certificate", e))?;

        // Admin client certificate.
        let admin_key = KeyPair::generate().map_err(|e| pki_err("admin key", e))?;
        let mut admin =
            CertificateParams::new(Vec::<String>::new()).map_err(|e| pki_err("admin params", e))?;
        admin
            .distinguished_name
            .push(DnType::OrganizationName, "system:masters");
        admin
            .distinguished_name
            .push(DnType::CommonName, ADMIN_USER);
        admin.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        admin.use_authority_key_identifier_extension = true;
        let admin_cert = admin
            .signed_by(&admin_key, &issuer)
            .map_err(|e| pki_err("admin certificate", e))?;

        // The node's kubelet identity (cheap enough to make on every start).
        let kubelet_key = KeyPair::generate().map_err(|e| pki_err("kubelet key", e))?;
        let mut kubelet = CertificateParams::new(Vec::<String>::new())
            .map_err(|e| pki_err("kubelet params", e))?;
        kubelet
            .distinguished_name
            .push(DnType::OrganizationName, "system:nodes");
        kubelet.distinguished_name.push(
            DnType::CommonName,
            format!("system:node:{}", crate::node_config::NODE_NAME),
        );
        kubelet.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        kubelet.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        kubelet.use_authority_key_identifier_extension = true;
        let kubelet_cert = kubelet
            .signed_by(&kubelet_key, &issuer)
            .map_err(|e| pki_err("kubelet certificate", e))?;

        // Service-account token signing pair.
        let sa_key = KeyPair::generate().map_err(|e| pki_err("service-account key", e))?;

        let pki = Pki {
            ca_cert: dir.join("ca.crt"),
            ca_der: ca_cert.der().to_vec(),
            serving_cert: dir.join("serving.crt"),
            serving_key: dir.join("serving.key"),
            admin_cert: dir.join("admin.crt"),
            admin_key: dir.join("admin.key"),
            kubelet_cert: dir.join("kubelet.crt"),
            kubelet_key: dir.join("kubelet.key"),
            sa_key: dir.join("sa.key"),
            sa_pub: dir.join("sa.pub"),
        };
        let files = [
            (&pki.ca_cert, ca_cert.pem()),
            (&pki.serving_cert, serving_cert.pem()),
            (&pki.serving_key, serving_key.serialize_pem()),
            (&pki.admin_cert, admin_cert.pem()),
            (&pki.admin_key, admin_key.serialize_pem()),
            (&pki.kubelet_cert, kubelet_cert.pem()),
            (&pki.kubelet_key, kubelet_key.serialize_pem()),
            (&pki.sa_key, sa_key.serialize_pem()),
            (&pki.sa_pub, sa_key.public_key_pem()),
        ];
        for (path, pem) in files {
            std::fs::write(path, pem)
                .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
        }
        Ok(pki)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_all_pem_files() {
        let dir = std::env::temp_dir().join(format!("csitb-pki-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pki = Pki::generate(&dir).unwrap();
        for (path, marker) in [
            (&pki.ca_cert, "BEGIN CERTIFICATE"),
            (&pki.serving_cert, "BEGIN CERTIFICATE"),
            (&pki.admin_cert, "BEGIN CERTIFICATE"),
            (&pki.serving_key, "BEGIN PRIVATE KEY"),
            (&pki.admin_key, "BEGIN PRIVATE KEY"),
            (&pki.sa_key, "BEGIN PRIVATE KEY"),
            (&pki.sa_pub, "BEGIN PUBLIC KEY"),
        ] {
            let text = std::fs::read_to_string(path).unwrap();
            assert!(text.contains(marker), "{} lacks {marker}", path.display());
        }
        assert!(!pki.ca_der.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
