//! QUIC identities for the command line: `gossip-node keygen` and the
//! `--cert/--key/--ca` flags of `gossip-node agent`.

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

/// Arguments of `keygen`.
#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Folder for the files. Its `ca.pem` and `ca.key` are reused if
    /// present, otherwise a new cluster root is made there.
    #[arg(long)]
    pub dir: PathBuf,
    /// IP addresses the node is dialled at (repeatable, at least one).
    #[arg(long = "ip", required = true)]
    pub ips: Vec<IpAddr>,
    /// File stem of the node's certificate and key.
    #[arg(long, default_value = "node")]
    pub name: String,
    /// Days the node certificate is valid, from now (and an hour before,
    /// for peers whose clocks run behind). Peers refuse it afterwards:
    /// issue a new one before then.
    #[arg(long, default_value_t = DEFAULT_VALID_DAYS,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_VALID_DAYS)))]
    pub valid_days: u32,
}

impl KeygenArgs {
    /// Writes (or reuses) the root and issues a node certificate; returns
    /// a line describing what was written.
    pub fn run(&self) -> anyhow::Result<String> {
        if self.name.is_empty() || self.name.contains(['/', '\\']) || self.name == "ca" {
            bail!(
                "--name must be a plain file stem other than `ca`, got {:?}",
                self.name
            );
        }
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let (cert, key) = (self.dir.join("ca.pem"), self.dir.join("ca.key"));
        if cert.exists() != key.exists() {
            // Making a new root here would split the cluster in two.
            bail!(
                "{} has only one of ca.pem and ca.key; both are needed to issue certificates \
                 under the existing root (restore the other, or use an empty folder for a new cluster)",
                self.dir.display()
            );
        }
        let ca = if cert.exists() {
            let read = |p: &PathBuf| {
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
            };
            ClusterCa::from_pem(&read(&cert)?, &read(&key)?)?
        } else {
            let ca = ClusterCa::generate()?;
            ca.write_pem(&self.dir)?;
            ca
        };
        let identity =
            ca.issue_with_validity(&self.ips, &[], Validity::days_from_now(self.valid_days)?)?;
        identity.write_pem(&self.dir, &self.name)?;
        Ok(format!(
            "wrote {dir}/{name}.pem and {dir}/{name}.key for {ips:?}, valid for {days} days, \
             under the root {dir}/ca.pem",
            dir = self.dir.display(),
            name = self.name,
            ips = self.ips,
            days = self.valid_days
        ))
    }
}
