//! The agent's data directory: who this node is and how many times it
//! has started, so a restart comes back as the same member in a newer
//! generation.
//!
//! One file, `node.json`, rewritten atomically (a temporary file renamed
//! over it) at every start:
//!
//! ```json
//! {"id": "127.0.0.1:7946", "label": "", "restarts": 3, "generation": 1764500000123}
//! ```
//!
//! Beside it, `lock` names the process id of the agent using the folder;
//! a second agent is refused ([`DirLock`]).
//!
//! A member's identity is its address, so the file pins the address: an
//! agent started on the same data directory without `--bind` listens
//! where it did before, and one told to bind elsewhere is refused rather
//! than coming back as a stranger that carries the old node's history.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use gossip_core::Generation;
use serde::{Deserialize, Serialize};

use crate::agent_config::BadConfig;

/// What the data directory remembers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The node's identity: the address it listens on.
    pub id: SocketAddr,
    /// Its cluster label.
    pub label: String,
    /// Starts before this one (0 on the first start).
    pub restarts: u64,
    /// The generation of the latest start.
    pub generation: u64,
}

/// The node file inside `dir`.
pub fn node_file(dir: &Path) -> PathBuf {
    dir.join("node.json")
}

/// Reads the identity kept in `dir`, if any.
pub fn read(dir: &Path) -> anyhow::Result<Option<Identity>> {
    let path = node_file(dir);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).map_err(|e| {
            anyhow::anyhow!(
                "{} is damaged ({e}); move it away to start afresh",
                path.display()
            )
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("reading {}: {e}", path.display())),
    }
}

/// The identity for this start: the previous one with one more restart
/// and a newer generation, or a first one at `bind`. `bind` (from a flag
/// or the config file) must match the stored address; `now_ms` is the
/// wall clock in Unix milliseconds.
///
/// The generation is the later of the clock and the previous generation
/// plus one, so it grows even when the clock steps back, and a node whose
/// data directory was lost still starts above its old life.
pub fn next(
    previous: Option<&Identity>,
    bind: Option<SocketAddr>,
    label: &str,
    now_ms: u64,
    dir: &Path,
) -> Result<Identity, BadConfig> {
    match previous {
        Some(old) => {
            if let Some(bind) = bind {
                if bind != old.id {
                    return Err(BadConfig(format!(
                        "bind: {bind} differs from {}, the identity kept in {}; a node's \
                         address is its identity, so use another --data-dir for another address",
                        old.id,
                        node_file(dir).display()
                    )));
                }
            }
            if old.label != label {
                return Err(BadConfig(format!(
                    "label: {label:?} differs from {:?}, the cluster label kept in {}",
                    old.label,
                    node_file(dir).display()
                )));
            }
            Ok(Identity {
                id: old.id,
                label: old.label.clone(),
                restarts: old.restarts + 1,
                generation: now_ms.max(old.generation + 1),
            })
        }
        None => match bind {
            Some(id) => Ok(Identity {
                id,
                label: label.to_string(),
                restarts: 0,
                generation: now_ms,
            }),
            None => Err(BadConfig(format!(
                "bind: required on the first start with data dir {} (it then remembers it)",
                dir.display()
            ))),
        },
    }
}

/// Writes `identity` into `dir` (created if missing), atomically.
pub fn write(dir: &Path, identity: &Identity) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("creating data dir {}: {e}", dir.display()))?;
    let path = node_file(dir);
    let temporary = dir.join("node.json.tmp");
    std::fs::write(&temporary, serde_json::to_vec_pretty(identity)?)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", temporary.display()))?;
    std::fs::rename(&temporary, &path)
        .map_err(|e| anyhow::anyhow!("replacing {}: {e}", path.display()))?;
    Ok(())
}

/// Holds a data directory for one agent: `DIR/lock` names the holder's
/// process id and is removed when this is dropped. A lock left by a
/// process that no longer runs (a crash) is taken over.
#[derive(Debug)]
pub struct DirLock(PathBuf);

impl DirLock {
    /// Takes `dir` (created if missing) for this process, or says which
    /// running process holds it.
    pub fn take(dir: &Path) -> anyhow::Result<Self> {
        use std::io::Write;
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("creating data dir {}: {e}", dir.display()))?;
        let path = dir.join("lock");
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut file) => {
                    writeln!(file, "{}", std::process::id())?;
                    return Ok(Self(path));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = std::fs::read_to_string(&path).unwrap_or_default();
                    let holder = holder.trim();
                    let alive = !holder.is_empty()
                        && holder.parse::<u32>().is_ok()
                        && Path::new("/proc").join(holder).exists();
                    if alive {
                        anyhow::bail!(
                            "data dir {} is in use by process {holder} (another agent); \
                             give each agent its own --data-dir",
                            dir.display()
                        );
                    }
                    // Left by a process that is gone: take it over.
                    let _ = std::fs::remove_file(&path);
                }
                Err(e) => anyhow::bail!("creating {}: {e}", path.display()),
            }
        }
        anyhow::bail!("could not take {}", path.display())
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Identity {
    /// The generation as the core's type.
    pub fn generation(&self) -> Generation {
        Generation(self.generation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_keeps_the_address_and_raises_the_generation() {
        let dir = Path::new("/nonexistent");
        let addr: SocketAddr = "127.0.0.1:7946".parse().unwrap();
        let first = next(None, Some(addr), "", 1_000, dir).unwrap();
        assert_eq!((first.restarts, first.generation), (0, 1_000));
        // Without --bind it comes back where it was; with the clock behind,
        // the generation still grows.
        let second = next(Some(&first), None, "", 500, dir).unwrap();
        assert_eq!(second.id, addr);
        assert_eq!((second.restarts, second.generation), (1, 1_001));
        let third = next(Some(&second), Some(addr), "", 9_000, dir).unwrap();
        assert_eq!((third.restarts, third.generation), (2, 9_000));
        let elsewhere = "127.0.0.1:7000".parse().unwrap();
        let error = next(Some(&third), Some(elsewhere), "", 9_500, dir).unwrap_err();
        assert!(error.0.starts_with("bind:"), "{error}");
        assert!(next(Some(&third), None, "other", 9_500, dir).is_err());
        assert!(next(None, None, "", 1, dir).is_err());
    }

    #[test]
    fn one_agent_per_data_dir_and_stale_locks_are_taken_over() {
        let dir = std::env::temp_dir().join(format!("gossip-dir-lock-{}", std::process::id()));
        let lock = DirLock::take(&dir).unwrap();
        let error = DirLock::take(&dir).unwrap_err().to_string();
        assert!(error.contains("in use by process"), "{error}");
        drop(lock);
        assert!(!dir.join("lock").exists());
        // A pid that cannot be running (above the kernel's pid_max).
        std::fs::write(dir.join("lock"), "4294967295\n").unwrap();
        drop(DirLock::take(&dir).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_file_round_trips() {
        let dir = std::env::temp_dir().join(format!("gossip-data-dir-{}", std::process::id()));
        let identity = Identity {
            id: "127.0.0.1:7946".parse().unwrap(),
            label: "x".into(),
            restarts: 2,
            generation: 42,
        };
        write(&dir, &identity).unwrap();
        assert_eq!(read(&dir).unwrap(), Some(identity));
        std::fs::write(node_file(&dir), b"{").unwrap();
        assert!(read(&dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
