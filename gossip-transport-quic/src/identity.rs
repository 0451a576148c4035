//! Cluster identities: one trust root per cluster, one certificate per node.

use std::net::IpAddr;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use thiserror::Error;

/// Why an identity could not be made or read.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// A PEM file could not be parsed.
    #[error("cannot read PEM from {what}: {reason}")]
    Pem {
        /// Which file or input.
        what: String,
        /// Why.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// The subject every cluster root carries; a root is identified by its key.
const ROOT_NAME: &str = "gossip cluster root";

fn root_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params
        .distinguished_name
        .push(DnType::CommonName, ROOT_NAME);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

/// A cluster's trust root: a self-signed CA whose key signs node
/// certificates. Keep its key off the nodes; they need only its certificate.
pub struct ClusterCa {
    cert: CertificateDer<'static>,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa").finish_non_exhaustive()
    }
}

impl ClusterCa {
    /// Generates a new root with a fresh ECDSA P-256 key.
    pub fn generate() -> Result<Self, IdentityError> {
        let key = KeyPair::generate()?;
        let cert = root_params().self_signed(&key)?;
        Ok(Self {
            cert: cert.der().clone(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(root_params(), key),
        })
    }

    /// Reads a root written by [`write_pem`](Self::write_pem).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, IdentityError> {
        let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| {
            IdentityError::Pem {
                what: "root certificate".into(),
                reason: e.to_string(),
            }
        })?;
        let key = KeyPair::from_pem(key_pem)?;
        Ok(Self {
            cert,
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(root_params(), key),
        })
    }

    /// The root certificate, which every node trusts.
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// The root certificate in PEM.
    pub fn cert_pem(&self) -> String {
        pem("CERTIFICATE", &self.cert)
    }

    /// The root's private key in PEM (PKCS#8).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Writes `ca.pem` and `ca.key` into `dir`.
    pub fn write_pem(&self, dir: &Path) -> Result<(), IdentityError> {
        write(&dir.join("ca.pem"), &self.cert_pem())?;
        write_secret(&dir.join("ca.key"), &self.key_pem)
    }

    /// Issues a node certificate valid for the given addresses (peers check
    /// that the address they dial is among them) and names.
    pub fn issue(&self, addresses: &[IpAddr], names: &[&str]) -> Result<Identity, IdentityError> {
        let sans: Vec<String> = addresses
            .iter()
            .map(ToString::to_string)
            .chain(names.iter().map(|n| (*n).to_string()))
            .collect();
        let mut params = CertificateParams::new(sans)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "gossip node");
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Identity {
            chain: vec![cert.der().clone()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
            trust_root: self.cert.clone(),
        })
    }
}

/// What a node needs to speak QUIC in its cluster: its certificate chain
/// and key, and the cluster's root.
#[derive(Debug)]
pub struct Identity {
    /// The node's certificate first, then any intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    /// The node's private key.
    pub key: PrivateKeyDer<'static>,
    /// The cluster root that peers' certificates must chain to.
    pub trust_root: CertificateDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            trust_root: self.trust_root.clone(),
        }
    }
}

impl Identity {
    /// Writes `node.pem` (chain), `node.key` and `ca.pem` into `dir`.
    pub fn write_pem(&self, dir: &Path, stem: &str) -> Result<(), IdentityError> {
        let chain: String = self.chain.iter().map(|c| pem("CERTIFICATE", c)).collect();
        write(&dir.join(format!("{stem}.pem")), &chain)?;
        write_secret(
            &dir.join(format!("{stem}.key")),
            &pem("PRIVATE KEY", self.key.secret_der()),
        )?;
        write(&dir.join("ca.pem"), &pem("CERTIFICATE", &self.trust_root))
    }

    /// Reads an identity from PEM files: the node's chain, its key and the
    /// cluster root.
    pub fn from_pem_files(cert: &Path, key: &Path, root: &Path) -> Result<Self, IdentityError> {
        let bad = |path: &Path, e: rustls::pki_types::pem::Error| IdentityError::Pem {
            what: path.display().to_string(),
            reason: e.to_string(),
        };
        let chain = CertificateDer::pem_file_iter(cert)
            .map_err(|e| bad(cert, e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(cert, e))?;
        if chain.is_empty() {
            return Err(IdentityError::Pem {
                what: cert.display().to_string(),
                reason: "no certificate found".into(),
            });
        }
        Ok(Self {
            chain,
            key: PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, e))?,
            trust_root: CertificateDer::from_pem_file(root).map_err(|e| bad(root, e))?,
        })
    }
}

/// Writes a private key readable by its owner only (mode 0600 on Unix).
fn write_secret(path: &Path, contents: &str) -> Result<(), IdentityError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let io = |source| IdentityError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut file = options.open(path).map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)
}

fn write(path: &Path, contents: &str) -> Result<(), IdentityError> {
    std::fs::write(path, contents).map_err(|source| IdentityError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// PEM armour around `der`.
fn pem(label: &str, der: &[u8]) -> String {
    pem::encode(&pem::Pem::new(label, der.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trips_through_the_parser() {
        for len in [0usize, 1, 2, 3, 4, 100, 1000] {
            let der: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let text = pem("CERTIFICATE", &der);
            let parsed = CertificateDer::from_pem_slice(text.as_bytes());
            if len == 0 {
                // An empty body is no certificate at all.
                assert!(parsed.is_err() || parsed.unwrap().is_empty());
            } else {
                assert_eq!(parsed.unwrap().as_ref(), &der[..]);
            }
        }
    }

    #[test]
    fn a_root_read_back_from_pem_issues_certificates_that_chain_to_it() {
        let ca = ClusterCa::generate().unwrap();
        let again = ClusterCa::from_pem(&ca.cert_pem(), ca.key_pem()).unwrap();
        assert_eq!(again.certificate(), ca.certificate());
        let id = again.issue(&["127.0.0.1".parse().unwrap()], &[]).unwrap();
        assert_eq!(id.trust_root, *ca.certificate());
        assert_eq!(id.chain.len(), 1);
    }
}
