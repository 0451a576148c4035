//! Anti-entropy (Demers et al., "Epidemic algorithms for replicated database
//! maintenance", PODC 1987, section 1.3).

use gossip_core::{Digest, GossipMessage, Host, MessageId, NodeId, Rumor, Strategy};
use serde::{Deserialize, Serialize};

/// Which way state flows when two nodes meet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// The caller sends what it has.
    Push,
    /// The caller asks for what it lacks.
    Pull,
    /// Both, in one contact.
    PushPull,
}

impl Mode {
    /// Whether the caller sends.
    pub fn pushes(self) -> bool {
        matches!(self, Mode::Push | Mode::PushPull)
    }
    /// Whether the caller asks.
    pub fn pulls(self) -> bool {
        matches!(self, Mode::Pull | Mode::PushPull)
    }
}

/// Anti-entropy: every round each node contacts `fanout` uniformly chosen
/// peers and reconciles state with them, forever.
///
/// - **push**: an informed node sends every rumor it holds. Spreads in about
///   `log2 N + ln N` rounds with fanout 1 (Pittel 1987), but keeps sending
///   the whole store to peers that already have it.
/// - **pull**: a node sends a per-origin digest (Scuttlebutt-style: highest
///   contiguous sequence per origin) and receives only what the digest does
///   not cover. Cheap when little is missing, and the last few uninformed
///   nodes are found fast (the residue shrinks quadratically per round).
/// - **push-pull**: one digest each way per contact, so both sides end up
///   with the union; the fastest of the three.
///
/// Cost: one contact per node per round whatever the load, which is why it
/// is usually run slowly (`every` rounds) behind rumor mongering, whose
/// residue it then drives to zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AntiEntropy {
    /// Direction of reconciliation.
    pub mode: Mode,
    /// Peers contacted per active round.
    pub fanout: u32,
    /// Run on one round in `every` (1 = every round).
    pub every: u32,
    #[serde(skip)]
    round: u32,
}

impl AntiEntropy {
    /// Anti-entropy in `mode` with `fanout` contacts every round.
    pub fn new(mode: Mode, fanout: u32) -> Self {
        Self {
            mode,
            fanout,
            every: 1,
            round: 0,
        }
    }

    /// Runs only one round in `every`: a slow backstop.
    pub fn every(mut self, every: u32) -> Self {
        self.every = every.max(1);
        self
    }

    /// One reconciliation round, used on its own or as another strategy's backstop.
    pub(crate) fn reconcile<H: Host>(&mut self, host: &mut H) {
        self.round = self.round.wrapping_add(1);
        // `every` may come from a config file unclamped: treat 0 as 1.
        if self.round % self.every.max(1) != 0 {
            return;
        }
        let mut peers = Vec::with_capacity(self.fanout as usize);
        host.sample_peers(self.fanout as usize, &mut peers);
        if peers.is_empty() {
            return;
        }
        let mut held = Vec::new();
        if self.mode == Mode::Push {
            host.missing_from(&Digest::default(), &mut held);
        }
        let digest = self.mode.pulls().then(|| host.digest());
        for peer in peers {
            if !held.is_empty() {
                host.send(
                    peer,
                    GossipMessage::Push {
                        rumors: held.clone(),
                    },
                );
            }
            if let Some(digest) = &digest {
                // Push-pull reconciles by digests both ways: the peer sends
                // what we lack and pulls back, so nothing is pushed blindly.
                host.send(
                    peer,
                    GossipMessage::Pull {
                        digest: digest.clone(),
                        reciprocate: self.mode == Mode::PushPull,
                    },
                );
            }
        }
    }

    /// Answers a pull with everything the digest lacks.
    pub(crate) fn answer<H: Host>(host: &mut H, from: NodeId, digest: &Digest, reciprocate: bool) {
        let mut missing = Vec::new();
        host.missing_from(digest, &mut missing);
        if !missing.is_empty() {
            host.send(from, GossipMessage::Push { rumors: missing });
        }
        if reciprocate {
            let own = host.digest();
            host.send(
                from,
                GossipMessage::Pull {
                    digest: own,
                    reciprocate: false,
                },
            );
        }
    }
}

impl Strategy for AntiEntropy {
    fn on_rumor<H: Host>(&mut self, _host: &mut H, _rumor: Rumor, _from: Option<NodeId>) {}

    fn on_pull<H: Host>(&mut self, host: &mut H, from: NodeId, digest: &Digest, reciprocate: bool) {
        Self::answer(host, from, digest, reciprocate);
    }

    fn on_round<H: Host>(&mut self, host: &mut H) {
        self.reconcile(host);
    }

    fn wants_rounds(&self) -> bool {
        true
    }

    fn is_quiescent(&self) -> bool {
        // Anti-entropy never stops by itself; a run ends when all are informed.
        false
    }

    fn on_feedback<H: Host>(&mut self, _host: &mut H, _from: NodeId, _known: &[MessageId]) {}
}
