//! Cluster identities: one trust root per cluster, one certificate per node.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

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
    /// A validity period that is empty, or that X.509 cannot express.
    #[error("invalid certificate validity: {0}")]
    Validity(String),
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
    /// that the address they dial is among them) and names, for the
    /// default period ([`Validity::default`]: one year from now).
    pub fn issue(&self, addresses: &[IpAddr], names: &[&str]) -> Result<Identity, IdentityError> {
        self.issue_with_validity(addresses, names, Validity::default())
    }

    /// Like [`issue`](Self::issue), valid only within `validity`: peers
    /// refuse the certificate before its start and after its end, by their
    /// own clocks.
    pub fn issue_with_validity(
        &self,
        addresses: &[IpAddr],
        names: &[&str],
        validity: Validity,
    ) -> Result<Identity, IdentityError> {
        validity.check()?;
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
        params.not_before = validity.not_before.into();
        params.not_after = validity.not_after.into();
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

/// How far [`Validity::days_from_now`] backdates a certificate's start, so
/// that peers whose clocks run behind the issuer's accept it at once.
pub const CLOCK_SKEW_ALLOWANCE: Duration = Duration::from_secs(3600);

/// Longest validity [`Validity::days_from_now`] accepts: 100 years.
pub const MAX_VALID_DAYS: u32 = 36_500;

/// Days in a node certificate's default validity.
pub const DEFAULT_VALID_DAYS: u32 = 365;

const DAY: Duration = Duration::from_secs(86_400);

/// The end of 9999-12-31 UTC in Unix seconds: X.509's `GeneralizedTime`
/// has four year digits.
const LAST_X509_SECOND: u64 = 253_402_300_799;

/// When a node certificate is valid. Peers check it against their own
/// system clock on every handshake, both ways.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    /// First moment the certificate is valid (whole seconds are kept).
    pub not_before: SystemTime,
    /// Last moment the certificate is valid (whole seconds are kept).
    pub not_after: SystemTime,
}

impl Default for Validity {
    /// [`DEFAULT_VALID_DAYS`] days from now.
    fn default() -> Self {
        Self::from_now(DEFAULT_VALID_DAYS)
    }
}

impl Validity {
    /// Valid from [`CLOCK_SKEW_ALLOWANCE`] ago until `days` days from now;
    /// `days` must be within `1..=`[`MAX_VALID_DAYS`].
    pub fn days_from_now(days: u32) -> Result<Self, IdentityError> {
        if !(1..=MAX_VALID_DAYS).contains(&days) {
            return Err(IdentityError::Validity(format!(
                "{days} days; the period must be 1 to {MAX_VALID_DAYS} days"
            )));
        }
        Ok(Self::from_now(days))
    }

    /// The clock is read here, when issuing, not when verifying: verifiers
    /// read their own.
    fn from_now(days: u32) -> Self {
        let now = SystemTime::now();
        Self {
            not_before: now - CLOCK_SKEW_ALLOWANCE,
            not_after: now + DAY * days,
        }
    }

    /// Refuses an empty period and moments X.509 cannot encode (before
    /// 1970 here, for simplicity, or after 9999), which would otherwise
    /// make the date conversion panic.
    fn check(&self) -> Result<(), IdentityError> {
        let unix = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .ok()
                .map(|d| d.as_secs())
                .filter(|&s| s <= LAST_X509_SECOND)
        };
        match (unix(self.not_before), unix(self.not_after)) {
            (Some(start), Some(end)) if start < end => Ok(()),
            (Some(_), Some(_)) => Err(IdentityError::Validity(
                "not_after must come after not_before".into(),
            )),
            _ => Err(IdentityError::Validity(
                "dates must lie between 1970 and 9999".into(),
            )),
        }
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
