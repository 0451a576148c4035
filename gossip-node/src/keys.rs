//! Keys for the command line: `gossip-node keygen` makes QUIC identities
//! (`--dir`, used by the `--cert/--key/--ca` flags of `gossip-node agent`),
//! a sealing key (`--secret`, used by `--keyring`) or a rumor signing key
//! (`--signing`, used by `--signing-key`, its public half listed in every
//! node's `--trusted-keys`).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::{bail, Context};
use gossip_transport_quic::{
    ClusterCa, Identity, QuicConfig, QuicTransport, Validity, DEFAULT_VALID_DAYS, MAX_VALID_DAYS,
};

/// TLS files of a node speaking QUIC.
#[derive(Debug, Default, clap::Args)]
pub struct TlsArgs {
    /// The node's certificate chain (PEM), from `gossip-node keygen`.
    #[arg(long)]
    pub cert: Option<PathBuf>,
    /// The node's private key (PEM).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// The cluster root certificate (PEM) that peers must chain to.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Most QUIC connections other nodes may hold to this one from one IP
    /// address [default: 4, enough for one node per host]. Raise it when
    /// several nodes share an address (a test cluster on loopback, or
    /// nodes behind one NAT).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub quic_connections_per_ip: Option<u32>,
}

impl TlsArgs {
    /// Binds a QUIC transport at `bind` with these files.
    pub async fn quic_transport(&self, bind: SocketAddr) -> anyhow::Result<QuicTransport> {
        let (Some(cert), Some(key), Some(ca)) = (&self.cert, &self.key, &self.ca) else {
            bail!("--transport quic needs --cert, --key and --ca (make them with `gossip-node keygen`)");
        };
        let identity = Identity::from_pem_files(cert, key, ca)?;
        let mut config = QuicConfig::default();
        if let Some(cap) = self.quic_connections_per_ip {
            config.max_connections_per_ip = cap as usize;
        }
        QuicTransport::bind(bind, identity, config)
            .await
            .with_context(|| format!("binding QUIC at {bind}"))
    }
}

/// Arguments of `keygen`: either `--dir` (QUIC certificates) or
/// `--secret` (a sealing key for UDP).
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("output").required(true).args(["dir", "secret", "signing"])))]
pub struct KeygenArgs {
    /// Folder for QUIC files. Its `ca.pem` and `ca.key` are reused if
    /// present, otherwise a new cluster root is made there.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// IP addresses the node is dialled at (repeatable, at least one with --dir).
    #[arg(long = "ip", requires = "dir")]
    pub ips: Vec<IpAddr>,
    /// File stem of the node's certificate and key.
    #[arg(long, default_value = "node", conflicts_with = "secret")]
    pub name: String,
    /// Days the node certificate is valid, from now (and an hour before,
    /// for peers whose clocks run behind). Peers refuse it afterwards:
    /// issue a new one before then.
    #[arg(long, default_value_t = DEFAULT_VALID_DAYS,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_VALID_DAYS)))]
    pub valid_days: u32,
    /// Write a new random sealing key to this file (mode 0600; an existing
    /// file is never overwritten). The file is a one-key keyring for
    /// `gossip-node agent --keyring`; lines of several key files make a ring.
    #[arg(long, conflicts_with = "dir")]
    pub secret: Option<PathBuf>,
    /// Write a new Ed25519 rumor signing key to this file (mode 0600; an
    /// existing file is never overwritten) for `gossip-node agent
    /// --signing-key`, and print its public key for the other nodes'
    /// `--trusted-keys` files.
    #[arg(long, conflicts_with_all = ["dir", "secret"])]
    pub signing: Option<PathBuf>,
}

/// Creates `path` for a secret, readable by its owner only, refusing to
/// replace an existing file (it may hold the only copy of a key).
fn create_secret_file(path: &std::path::Path) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::AlreadyExists => anyhow::anyhow!(
                "{} already exists; refusing to overwrite a key file (remove it or choose another path)",
                path.display()
            ),
            _ => anyhow::Error::new(error).context(format!("creating {}", path.display())),
        })
}

/// Writes a new rumor signing key to `path`; returns a line naming its
/// public key.
fn write_signing_key(path: &std::path::Path) -> anyhow::Result<String> {
    use std::io::Write;
    let key = gossip_seal::SigningKey::generate()?;
    let mut file = create_secret_file(path)?;
    writeln!(
        file,
        "# gossip-seal Ed25519 signing key, public key {}, made by gossip-node keygen\n{}",
        key.public_key(),
        key.to_hex()
    )
    .and_then(|()| file.sync_all())
    .with_context(|| format!("writing {}", path.display()))?;
    Ok(format!(
        "wrote signing key to {} (mode 0600); run this agent with --signing-key {} and list          \"ADDR {}\" (ADDR: this agent's --bind) in every agent's --trusted-keys file",
        path.display(),
        path.display(),
        key.public_key()
    ))
}

/// Lines of a key file that are neither blank nor comments, trimmed, with
/// their one-based line numbers.
fn key_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
}

/// Reads a signing key file from `gossip-node keygen --signing`.
pub fn load_signing_key(path: &std::path::Path) -> anyhow::Result<gossip_seal::SigningKey> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = key_lines(&text);
    let (Some((n, line)), None) = (lines.next(), lines.next()) else {
        bail!("{} must hold exactly one signing key line", path.display());
    };
    gossip_seal::SigningKey::from_hex(line)
        .with_context(|| format!("{} line {n}: not a signing key", path.display()))
}

/// Parses a trusted keys file: one `ADDR PUBLIC_KEY` per line (the
/// address a member listens at and its public key in hex), `#` comments
/// and blank lines ignored.
pub fn parse_trusted_keys(
    text: &str,
) -> anyhow::Result<Vec<(gossip_core::NodeId, gossip_seal::PublicKey)>> {
    key_lines(text)
        .map(|(n, line)| {
            let (addr, key) = line
                .split_once(char::is_whitespace)
                .with_context(|| format!("line {n}: expected `ADDR PUBLIC_KEY`"))?;
            let addr: SocketAddr = addr
                .parse()
                .with_context(|| format!("line {n}: {addr:?} is not an ip:port address"))?;
            let key = gossip_seal::PublicKey::from_hex(key.trim())
                .with_context(|| format!("line {n}: not a public key"))?;
            Ok((gossip_core::NodeId::new(addr), key))
        })
        .collect()
}

/// The rumor signer of an agent: its signing key, and the trusted keys
/// file's members (this node trusts its own key from the start).
pub fn rumor_keys(
    me: gossip_core::NodeId,
    signing_key: &std::path::Path,
    trusted_keys: &std::path::Path,
) -> anyhow::Result<gossip_seal::RumorKeys> {
    let key = load_signing_key(signing_key)?;
    let text = std::fs::read_to_string(trusted_keys)
        .with_context(|| format!("reading {}", trusted_keys.display()))?;
    let trusted =
        parse_trusted_keys(&text).with_context(|| format!("{}", trusted_keys.display()))?;
    let mut keys = gossip_seal::RumorKeys::new(me, key);
    for (member, public) in trusted {
        keys.trust(member, public);
    }
    Ok(keys)
}

/// Writes a new sealing key to `path`, readable by its owner only, refusing
/// to replace an existing file (it may hold the cluster's only copy of a key).
fn write_secret(path: &std::path::Path) -> anyhow::Result<String> {
    use std::io::Write;
    let key = gossip_seal::Key::generate()?;
    let mut file = create_secret_file(path)?;
    writeln!(
        file,
        "# gossip-seal key {}, made by gossip-node keygen\n{}",
        key.id(),
        key.to_hex().as_str()
    )
    .and_then(|()| file.sync_all())
    .with_context(|| format!("writing {}", path.display()))?;
    Ok(format!(
        "wrote sealing key {} to {} (mode 0600); run agents with --keyring {}",
        key.id(),
        path.display(),
        path.display()
    ))
}

impl KeygenArgs {
    /// Writes (or reuses) the root and issues a node certificate; returns
    /// a line describing what was written.
    pub fn run(&self) -> anyhow::Result<String> {
        if let Some(path) = &self.signing {
            return write_signing_key(path);
        }
        let dir = match (&self.secret, &self.dir) {
            (Some(secret), _) => return write_secret(secret),
            (None, Some(dir)) => dir,
            (None, None) => {
                bail!(
                    "keygen needs --dir (QUIC certificates), --secret (a sealing key) or \
                     --signing (a rumor signing key)"
                )
            }
        };
        if self.ips.is_empty() {
            bail!("--dir needs at least one --ip the node is dialled at");
        }
        if self.name.is_empty() || self.name.contains(['/', '\\']) || self.name == "ca" {
            bail!(
                "--name must be a plain file stem other than `ca`, got {:?}",
                self.name
            );
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let (cert, key) = (dir.join("ca.pem"), dir.join("ca.key"));
        if cert.exists() != key.exists() {
            // Making a new root here would split the cluster in two.
            bail!(
                "{} has only one of ca.pem and ca.key; both are needed to issue certificates \
                 under the existing root (restore the other, or use an empty folder for a new cluster)",
                dir.display()
            );
        }
        let ca = if cert.exists() {
            let read = |p: &PathBuf| {
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
            };
            ClusterCa::from_pem(&read(&cert)?, &read(&key)?)?
        } else {
            let ca = ClusterCa::generate()?;
            ca.write_pem(dir)?;
            ca
        };
        let identity =
            ca.issue_with_validity(&self.ips, &[], Validity::days_from_now(self.valid_days)?)?;
        identity.write_pem(dir, &self.name)?;
        Ok(format!(
            "wrote {dir}/{name}.pem and {dir}/{name}.key for {ips:?}, valid for {days} days, \
             under the root {dir}/ca.pem",
            dir = dir.display(),
            name = self.name,
            ips = self.ips,
            days = self.valid_days
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signing_key_written_by_keygen_loads_and_trusted_keys_parse() {
        let dir = std::env::temp_dir().join(format!("gossip-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("signing.key");
        let _ = std::fs::remove_file(&path);
        let line = write_signing_key(&path).unwrap();
        assert!(
            write_signing_key(&path).is_err(),
            "never overwrites a key file"
        );
        let key = load_signing_key(&path).unwrap();
        assert!(line.contains(&key.public_key().to_string()), "{line}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "owner only");

        let text = format!(
            "# members\n\n10.0.0.1:7946 {}\n  10.0.0.2:7946   {}  \n",
            key.public_key(),
            gossip_seal::SigningKey::from_seed([2; 32]).public_key()
        );
        let trusted = parse_trusted_keys(&text).unwrap();
        assert_eq!(trusted.len(), 2);
        assert_eq!(trusted[0].0.addr(), "10.0.0.1:7946".parse().unwrap());
        assert_eq!(trusted[0].1, key.public_key());
        let error = parse_trusted_keys("10.0.0.1:7946\n").unwrap_err();
        assert!(error.to_string().contains("line 1"), "{error}");
        assert!(parse_trusted_keys("nowhere abcd\n").is_err());
        assert!(parse_trusted_keys("10.0.0.1:7946 abcd\n").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
