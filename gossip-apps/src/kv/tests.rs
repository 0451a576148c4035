//! The store on a fake cluster: messages between stores are delivered in
//! order, instantly, unless a test drops them.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gossip_core::{
    CommandError, Event, Generation, Incarnation, Liveness, Member, MessageId, NodeId,
};

use super::*;
use crate::{Application, Channel, Cluster};

const UNIX_MS: u64 = 1_700_000_000_000;

fn id(i: usize) -> NodeId {
    NodeId::new(SocketAddr::from(([10, 0, 0, i as u8 + 1], 7946)))
}

/// One node's view: everyone in `alive` is a live member.
struct Fake {
    me: usize,
    alive: Vec<bool>,
    out: Vec<(Option<usize>, Vec<u8>)>,
}

impl Cluster for Fake {
    fn me(&self) -> NodeId {
        id(self.me)
    }
    fn members(&self) -> Vec<Member> {
        let mut v = vec![Member::new(
            id(self.me),
            Generation(1),
            Incarnation(0),
            Liveness::Alive,
            vec![],
        )];
        for (i, &a) in self.alive.iter().enumerate() {
            if i != self.me {
                let l = if a { Liveness::Alive } else { Liveness::Dead };
                v.push(Member::new(id(i), Generation(1), Incarnation(0), l, vec![]));
            }
        }
        v
    }
    fn broadcast(&mut self, _: Instant, payload: &[u8]) -> Result<MessageId, CommandError> {
        self.out.push((None, payload.to_vec()));
        Ok(MessageId {
            origin: id(self.me),
            generation: 1,
            sequence: self.out.len() as u64,
        })
    }
    fn send_direct(&mut self, _: Instant, to: NodeId, payload: &[u8]) -> Result<(), CommandError> {
        let to = (0..64).find(|&i| id(i) == to).unwrap();
        self.out.push((Some(to), payload.to_vec()));
        Ok(())
    }
    fn max_broadcast_len(&self) -> usize {
        1300
    }
    fn max_direct_len(&self) -> usize {
        1300
    }
}

fn config() -> KvConfig {
    KvConfig {
        tombstone_grace: Duration::from_secs(300),
        max_clock_skew: Duration::from_secs(10),
        ..KvConfig::default()
    }
}

/// Stores on a fake network with a virtual clock.
struct Net {
    t0: Instant,
    now: Instant,
    kvs: Vec<Option<Kv<MemoryStorage>>>,
    alive: Vec<bool>,
    drop_broadcasts: bool,
    /// Collect notices to this node are lost.
    drop_collects_to: Option<usize>,
    config: KvConfig,
    /// Bytes of direct messages delivered.
    direct_bytes: usize,
    trace: Vec<(usize, Option<usize>, Vec<u8>)>,
}

impl Net {
    fn new(n: usize) -> Self {
        Self::with_config(n, config())
    }

    fn with_config(n: usize, config: KvConfig) -> Self {
        let t0 = Instant::now();
        let mut net = Net {
            t0,
            now: t0,
            kvs: Vec::new(),
            alive: vec![true; n],
            drop_broadcasts: false,
            drop_collects_to: None,
            config,
            direct_bytes: 0,
            trace: Vec::new(),
        };
        for i in 0..n {
            let kv = net.make(i, MemoryStorage::new());
            net.kvs.push(Some(kv));
        }
        net
    }

    fn make(&self, i: usize, storage: MemoryStorage) -> Kv<MemoryStorage> {
        let wall = WallClock {
            at: self.t0,
            unix_ms: UNIX_MS,
        };
        Kv::new(
            id(i),
            self.config.clone(),
            storage,
            wall,
            7 + i as u64,
            self.now,
        )
        .unwrap()
    }

    fn fake(&self, i: usize) -> Fake {
        Fake {
            me: i,
            alive: self.alive.clone(),
            out: Vec::new(),
        }
    }

    fn kv(&mut self, i: usize) -> &mut Kv<MemoryStorage> {
        self.kvs[i].as_mut().unwrap()
    }

    fn with<R>(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut Kv<MemoryStorage>, &mut Fake, Instant) -> R,
    ) -> R {
        let mut fake = self.fake(i);
        let now = self.now;
        let r = f(self.kvs[i].as_mut().unwrap(), &mut fake, now);
        self.route(i, fake.out);
        r
    }

    fn route(&mut self, from: usize, out: Vec<(Option<usize>, Vec<u8>)>) {
        let mut queue: VecDeque<(usize, Option<usize>, Vec<u8>)> =
            out.into_iter().map(|(to, p)| (from, to, p)).collect();
        while let Some((from, to, payload)) = queue.pop_front() {
            self.trace.push((from, to, payload.clone()));
            let targets: Vec<usize> = match to {
                Some(t) => vec![t],
                None if self.drop_broadcasts => vec![],
                None => (0..self.kvs.len()).filter(|&t| t != from).collect(),
            };
            for t in targets {
                if !self.alive[t] || !self.alive[from] || self.kvs[t].is_none() {
                    continue;
                }
                let collect = Channel::Kv
                    .open(&payload)
                    .and_then(|b| KvMessage::decode(b, 65_536).ok())
                    .is_some_and(|m| matches!(m, KvMessage::Collect { .. }));
                if collect && self.drop_collects_to == Some(t) {
                    continue;
                }
                let event = match to {
                    Some(_) => {
                        self.direct_bytes += payload.len();
                        Event::Direct {
                            from: id(from),
                            payload: payload.clone(),
                        }
                    }
                    None => Event::Delivered {
                        id: MessageId {
                            origin: id(from),
                            generation: 1,
                            sequence: 0,
                        },
                        payload: payload.clone(),
                    },
                };
                let mut fake = self.fake(t);
                let now = self.now;
                self.kvs[t]
                    .as_mut()
                    .unwrap()
                    .handle_event(now, &event, &mut fake);
                queue.extend(fake.out.into_iter().map(|(to, p)| (t, to, p)));
            }
        }
    }

    /// Advances the clock by `d` in 10 ms steps, firing deadlines.
    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += Duration::from_millis(10);
            for i in 0..self.kvs.len() {
                if !self.alive[i] || self.kvs[i].is_none() {
                    continue;
                }
                let due = self.kvs[i]
                    .as_ref()
                    .unwrap()
                    .poll_timeout()
                    .is_none_or(|t| t <= self.now);
                if due {
                    self.with(i, |kv, c, now| {
                        // The first call also arms the sync timer.
                        kv.handle_event(now, &Event::Estimate(0.0), c);
                        kv.handle_timeout(now, c)
                    });
                }
            }
        }
    }

    fn converged(&self) -> bool {
        let roots: Vec<u64> = self
            .kvs
            .iter()
            .zip(&self.alive)
            .filter(|(_, a)| **a)
            .filter_map(|(k, _)| k.as_ref().map(|k| k.root()))
            .collect();
        roots.windows(2).all(|w| w[0] == w[1])
    }
}

#[test]
fn a_write_is_read_at_once_and_everywhere_after_the_rumor() {
    let mut net = Net::new(3);
    let v = net
        .with(0, |kv, c, now| kv.put(now, b"k", b"v1", c))
        .unwrap();
    for i in 0..3 {
        assert_eq!(net.kv(i).get(b"k"), Some((&b"v1"[..], v)));
    }
    let event = net.kv(0).poll_event().unwrap();
    assert!(event.local && event.value.as_deref() == Some(&b"v1"[..]));
    let event = net.kv(1).poll_event().unwrap();
    assert!(!event.local && event.version == v);
}

#[test]
fn concurrent_writes_converge_on_the_same_winner() {
    let mut net = Net::new(3);
    net.drop_broadcasts = true;
    // Same wall time everywhere: stamps tie, the writer tag decides.
    for i in 0..3 {
        net.with(i, |kv, c, now| {
            kv.put(now, b"k", format!("v{i}").as_bytes(), c)
        })
        .unwrap();
    }
    net.run(Duration::from_secs(10));
    assert!(net.converged());
    let winner = net.kv(0).get(b"k").map(|(v, ver)| (v.to_vec(), ver));
    for i in 1..3 {
        assert_eq!(
            net.kv(i).get(b"k").map(|(v, ver)| (v.to_vec(), ver)),
            winner
        );
    }
}

#[test]
fn anti_entropy_repairs_what_rumors_missed_and_idle_exchanges_are_small() {
    let mut net = Net::new(4);
    net.drop_broadcasts = true;
    for k in 0..500u32 {
        let node = (k % 4) as usize;
        net.with(node, |kv, c, now| {
            kv.put(now, format!("key{k}").as_bytes(), &k.to_le_bytes(), c)
        })
        .unwrap();
    }
    net.with(1, |kv, c, now| kv.delete(now, b"key7", c))
        .unwrap();
    net.run(Duration::from_secs(20));
    assert!(net.converged());
    assert_eq!(net.kv(3).live(), 499);
    assert_eq!(net.kv(2).get(b"key7"), None);
    // Idle now: each exchange is a root and an answer.
    let before = net.direct_bytes;
    net.run(Duration::from_secs(10));
    let per_node_per_s = (net.direct_bytes - before) as f64 / 4.0 / 10.0;
    assert!(per_node_per_s < 60.0, "{per_node_per_s} B/node/s idle");
}

#[test]
fn a_restarted_node_keeps_its_entries_and_catches_up_on_the_rest() {
    let mut net = Net::new(3);
    for k in 0..50u32 {
        net.with(0, |kv, c, now| {
            kv.put(now, format!("a{k}").as_bytes(), b"x", c)
        })
        .unwrap();
    }
    net.run(Duration::from_secs(3));
    // Node 2 goes down, keeping its storage.
    let disk = net.kv(2).storage().clone();
    net.alive[2] = false;
    for k in 0..300u32 {
        net.with(1, |kv, c, now| {
            kv.put(now, format!("b{k}").as_bytes(), b"y", c)
        })
        .unwrap();
    }
    net.with(1, |kv, c, now| kv.delete(now, b"a3", c)).unwrap();
    net.run(Duration::from_secs(2));
    let before = net.direct_bytes;
    net.alive[2] = true;
    let kv = net.make(2, disk);
    assert_eq!(kv.live(), 50, "reloaded from storage");
    assert!(kv.catching_up());
    net.kvs[2] = Some(kv);
    net.with(2, |kv, c, now| {
        kv.handle_event(now, &Event::MemberUp(c.members()[1].clone()), c)
    });
    net.run(Duration::from_secs(2));
    assert!(!net.kv(2).catching_up());
    assert_eq!(net.kv(2).live(), 349);
    assert!(net.converged());
    // Catch-up pulled the 301 changes, not the 50 old entries again.
    let bytes = net.direct_bytes - before;
    assert!(bytes < 301 * 40 * 3, "{bytes} bytes");
}

#[test]
fn tombstones_are_collected_after_the_grace_and_a_stale_value_never_resurrects() {
    // Early collection off: the grace alone.
    let mut net = Net::with_config(
        3,
        KvConfig {
            max_tracked_tombstones: 0,
            ..config()
        },
    );
    net.with(0, |kv, c, now| kv.put(now, b"gone", b"old", c))
        .unwrap();
    net.run(Duration::from_secs(2));
    // Node 2 is away with the old value while the key is deleted.
    let disk = net.kv(2).storage().clone();
    net.alive[2] = false;
    net.kvs[2] = None;
    net.with(0, |kv, c, now| kv.delete(now, b"gone", c))
        .unwrap();
    net.run(Duration::from_secs(2));
    assert_eq!(net.kv(1).tombstones(), 1);
    // Past the grace: the tombstones are collected.
    net.run(Duration::from_secs(310));
    assert_eq!(net.kv(0).tombstones(), 0);
    assert_eq!(net.kv(1).len(), 0);
    // Node 2 returns with the old value: it must not come back.
    net.alive[2] = true;
    let kv = net.make(2, disk);
    assert_eq!(kv.get(b"gone"), None, "dropped: older than the grace");
    net.kvs[2] = Some(kv);
    net.run(Duration::from_secs(5));
    for i in 0..3 {
        assert_eq!(net.kv(i).get(b"gone"), None);
    }
}

#[test]
fn a_straggler_with_an_old_value_is_answered_with_a_tombstone() {
    let mut net = Net::new(2);
    net.run(Duration::from_secs(400));
    // An entry stamped long ago, unknown to node 0: refused, and node 1
    // (which holds it) gets a newer tombstone.
    let old = Entry {
        key: b"z".to_vec(),
        version: Version {
            stamp: Version::stamp_of(UNIX_MS),
            origin: 5,
        },
        value: Some(b"zombie".to_vec()),
    };
    net.with(1, |kv, c, now| {
        kv.apply_all_for_test(now, old.clone(), c);
    });
    assert!(net.kv(1).get(b"z").is_some());
    let msg = Channel::Kv.wrap(
        &KvMessage::Entries {
            session: 0,
            entries: vec![old],
        }
        .encode(),
    );
    net.route(1, vec![(Some(0), msg)]);
    assert_eq!(net.kv(0).get(b"z"), None);
    assert_eq!(net.kv(0).stats().refused_old, 1);
    assert_eq!(
        net.kv(1).get(b"z"),
        None,
        "the straggler converged to deleted"
    );
}

#[test]
fn lying_members_cannot_corrupt_or_exhaust() {
    let mut net = Net::new(2);
    net.run(Duration::from_secs(2));
    net.with(0, |kv, c, now| {
        for k in 0..2000u32 {
            kv.put(now, format!("k{k}").as_bytes(), &[7; 100], c)
                .unwrap();
        }
    });
    let root = net.kv(0).root();
    let send = |net: &mut Net, m: KvMessage| {
        net.route(1, vec![(Some(0), Channel::Kv.wrap(&m.encode()))]);
    };
    // A write stamped far in the future would win forever: refused.
    let far = Entry {
        key: b"k1".to_vec(),
        version: Version {
            stamp: u64::MAX,
            origin: 1,
        },
        value: Some(b"mine".to_vec()),
    };
    send(
        &mut net,
        KvMessage::Entries {
            session: 1,
            entries: vec![far.clone()],
        },
    );
    send(&mut net, KvMessage::Write(far));
    assert_eq!(net.kv(0).root(), root);
    assert_eq!(net.kv(0).stats().refused_invalid, 2);
    // Answers to exchanges never opened, pages never asked for: ignored.
    send(&mut net, KvMessage::Equal { session: 9 });
    send(
        &mut net,
        KvMessage::Want {
            session: 9,
            hashes: vec![1, 2, 3],
        },
    );
    send(
        &mut net,
        KvMessage::Page {
            session: 9,
            entries: vec![],
            more: true,
        },
    );
    assert!(net.kv(0).stats().unsolicited >= 2);
    // Huge ranges and repeated full pulls: the answers stay within the
    // peer's budget (1 MiB per second, one second of burst).
    let before = net.direct_bytes;
    for _ in 0..20 {
        send(
            &mut net,
            KvMessage::Pull {
                session: 1,
                lo: 0,
                hi: u64::MAX,
                have: vec![],
            },
        );
        send(
            &mut net,
            KvMessage::Since {
                session: 1,
                after: Cursor::default(),
                lo: 0,
                hi: u16::MAX,
            },
        );
        send(
            &mut net,
            KvMessage::Expand {
                session: 1,
                nodes: vec![(9, 9); 500],
            },
        );
    }
    let shipped = net.direct_bytes - before;
    assert!(shipped <= (1 << 20) + 64 * 1024, "shipped {shipped}");
    assert!(net.kv(0).stats().throttled > 0);
    // Garbage is counted, not applied.
    net.route(1, vec![(Some(0), Channel::Kv.wrap(&[0xff; 40]))]);
    assert_eq!(net.kv(0).stats().malformed, 1);
    assert_eq!(net.kv(0).root(), root);
}

#[test]
fn same_seed_same_messages() {
    let run = || {
        let mut net = Net::new(3);
        net.drop_broadcasts = true;
        for k in 0..100u32 {
            net.with((k % 3) as usize, |kv, c, now| {
                kv.put(now, &k.to_le_bytes(), b"v", c)
            })
            .unwrap();
        }
        net.run(Duration::from_secs(5));
        net.trace
    };
    assert_eq!(run(), run());
}

#[test]
fn oversized_writes_are_refused() {
    let mut net = Net::new(1);
    let e = net.with(0, |kv, c, now| kv.put(now, b"k", &[0; 1025], c));
    assert!(matches!(e, Err(KvError::TooLarge { .. })));
    let e = net.with(0, |kv, c, now| kv.put(now, b"", b"v", c));
    assert!(matches!(e, Err(KvError::BadKey { .. })));
    let e = net.with(0, |kv, c, now| kv.put(now, &[1; 300], b"v", c));
    assert!(matches!(e, Err(KvError::BadKey { .. })));
    assert!(net.kv(0).is_empty());
}

fn tombstone_id(key: &[u8], version: Version) -> TombstoneId {
    TombstoneId {
        hash: key_hash(key),
        version,
    }
}

fn total_tombstones(net: &mut Net) -> usize {
    net.kvs.iter().flatten().map(|kv| kv.tombstones()).sum()
}

#[test]
fn tombstones_are_collected_early_once_every_live_member_acknowledged() {
    let mut net = Net::new(4);
    net.with(0, |kv, c, now| kv.put(now, b"gone", b"old", c))
        .unwrap();
    net.run(Duration::from_secs(1));
    let v = net
        .with(1, |kv, c, now| kv.delete(now, b"gone", c))
        .unwrap();
    assert_eq!(net.kv(1).tracked(), 1);
    // Acks travel in the next batch, the notice in the one after.
    net.run(Duration::from_secs(2));
    assert_eq!(
        total_tombstones(&mut net),
        0,
        "collected long before the grace"
    );
    for i in 0..4 {
        assert_eq!(net.kv(i).get(b"gone"), None);
        assert_eq!(net.kv(i).guards(), 1);
    }
    assert_eq!(net.kv(1).tracked(), 0);
    assert_eq!(net.kv(1).stats().acks_received, 3);
    assert!(net.converged());
    // A stale value offered by a peer is refused and answered with the
    // deletion; the digests stay equal.
    let old = Entry {
        key: b"gone".to_vec(),
        version: Version {
            stamp: v.stamp - 1,
            origin: 77,
        },
        value: Some(b"old".to_vec()),
    };
    let msg = Channel::Kv.wrap(
        &KvMessage::Entries {
            session: 0,
            entries: vec![old],
        }
        .encode(),
    );
    net.route(3, vec![(Some(2), msg)]);
    assert_eq!(net.kv(2).get(b"gone"), None);
    assert_eq!(net.kv(2).stats().refused_collected, 1);
    assert!(net.converged());
    // After the grace the guards go too, raising the horizon.
    net.run(Duration::from_secs(305));
    for i in 0..4 {
        assert_eq!(net.kv(i).guards(), 0);
    }
    assert!(net.converged());
}

#[test]
fn a_member_away_at_the_deletion_returns_with_the_old_value_and_converges_to_deleted() {
    let mut net = Net::new(3);
    net.with(0, |kv, c, now| kv.put(now, b"gone", b"old", c))
        .unwrap();
    net.run(Duration::from_secs(2));
    // Node 2 is down (dead in everyone's view) while the key is deleted
    // and collected early by the others.
    let disk = net.kv(2).storage().clone();
    net.alive[2] = false;
    net.kvs[2] = None;
    net.with(0, |kv, c, now| kv.delete(now, b"gone", c))
        .unwrap();
    net.run(Duration::from_secs(2));
    assert_eq!(net.kv(0).tombstones() + net.kv(1).tombstones(), 0);
    assert_eq!(net.kv(1).guards(), 1);
    // It restarts with the old value: anti-entropy meets the guards, which
    // answer with the deletion; node 2 then collects it on the deleter's
    // notice. No resurrection, no lasting digest difference.
    net.alive[2] = true;
    let kv = net.make(2, disk);
    assert!(kv.get(b"gone").is_some());
    net.kvs[2] = Some(kv);
    net.run(Duration::from_secs(8));
    for i in 0..3 {
        assert_eq!(net.kv(i).get(b"gone"), None, "node {i}");
        assert_eq!(net.kv(i).tombstones(), 0, "node {i}");
    }
    assert!(net.converged());
    assert!(net.kv(2).stats().collected_early >= 1);
}

#[test]
fn a_node_that_missed_the_notice_collects_after_meeting_a_collected_node() {
    let mut net = Net::new(3);
    net.drop_collects_to = Some(2);
    net.with(0, |kv, c, now| kv.delete(now, b"k", c)).unwrap();
    net.run(Duration::from_secs(2));
    assert_eq!(net.kv(1).tombstones(), 0);
    assert_eq!(net.kv(2).tombstones(), 1, "the notice was lost");
    assert!(!net.converged());
    // Anti-entropy: node 0 or 1 asks node 2 to acknowledge again, the
    // deleter answers with a notice (delivered now).
    net.drop_collects_to = None;
    net.run(Duration::from_secs(8));
    assert_eq!(net.kv(2).tombstones(), 0);
    assert!(net.converged());
}

#[test]
fn a_member_dying_before_acknowledging_leaves_the_tombstone_to_the_grace() {
    let mut net = Net::new(3);
    net.drop_broadcasts = true;
    net.with(0, |kv, c, now| kv.delete(now, b"k", c)).unwrap();
    // Node 2 dies before any exchange brings it the deletion.
    net.alive[2] = false;
    net.run(Duration::from_secs(5));
    assert_eq!(net.kv(0).tracked(), 0);
    assert_eq!(net.kv(0).stats().tracking_given_up, 1);
    assert_eq!(net.kv(0).tombstones(), 1);
    assert_eq!(net.kv(1).tombstones(), 1);
}

#[test]
fn only_the_deleter_makes_others_collect_and_lying_acks_are_bounded() {
    let mut net = Net::with_config(
        3,
        KvConfig {
            max_pending_acks: 100,
            ..config()
        },
    );
    net.drop_broadcasts = true;
    net.run(Duration::from_secs(1));
    // Node 2 is gone: node 0's deletion is tracked for node 1 only.
    net.alive[2] = false;
    let v = net.with(0, |kv, c, now| kv.delete(now, b"k", c)).unwrap();
    let deleted = tombstone_id(b"k", v);
    let tomb = Entry {
        key: b"k".to_vec(),
        version: v,
        value: None,
    };
    net.with(1, |kv, c, now| kv.apply_all_for_test(now, tomb, c));
    let send = |net: &mut Net, from: usize, to: usize, m: KvMessage| {
        net.route(from, vec![(Some(to), Channel::Kv.wrap(&m.encode()))]);
    };
    // Node 2 (a member, not the deleter) orders node 1 to collect it.
    net.alive[2] = true;
    send(
        &mut net,
        2,
        1,
        KvMessage::Collect {
            tombstones: vec![deleted],
        },
    );
    assert_eq!(
        net.kv(1).tombstones(),
        1,
        "a forged notice collects nothing"
    );
    assert_eq!(net.kv(1).stats().collect_refused, 1);
    // Node 2 acknowledges for itself (not awaited) and floods the deleter
    // with acks for tombstones that do not exist.
    let flood: Vec<TombstoneId> = (0..2000u64)
        .map(|h| TombstoneId {
            hash: h,
            version: Version {
                stamp: h,
                origin: node_tag(&id(0)),
            },
        })
        .collect();
    send(
        &mut net,
        2,
        0,
        KvMessage::Ack {
            tombstones: vec![deleted],
        },
    );
    send(
        &mut net,
        2,
        0,
        KvMessage::Ack {
            tombstones: flood.clone(),
        },
    );
    assert_eq!(net.kv(0).tracked(), 1, "still waiting for node 1");
    assert_eq!(net.kv(0).tombstones(), 1);
    assert!(net.kv(0).outbox() <= 100);
    // Requests to acknowledge what a node does not hold queue nothing.
    send(
        &mut net,
        2,
        1,
        KvMessage::AckRequest {
            tombstones: flood.clone(),
        },
    );
    send(&mut net, 2, 1, KvMessage::Collect { tombstones: flood });
    assert!(net.kv(1).outbox() <= 100);
    assert_eq!(net.kv(1).guards(), 0);
    assert!(net.kv(1).stats().acks_ignored >= 2000);
    assert_eq!(net.kv(1).stats().collect_refused, 2001);
    assert_eq!(net.kv(0).stats().acks_received, 2001);
    // Node 1's own acknowledgement completes it: collected on both.
    net.alive[2] = false;
    net.run(Duration::from_secs(4));
    assert_eq!(net.kv(0).tombstones(), 0);
    assert_eq!(net.kv(1).tombstones(), 0);
    assert_eq!(net.kv(1).guards(), 1);
}

#[test]
fn a_restarted_node_keeps_its_guards() {
    let mut net = Net::new(2);
    net.with(0, |kv, c, now| kv.put(now, b"k", b"v", c))
        .unwrap();
    net.run(Duration::from_secs(1));
    let v = net.with(0, |kv, c, now| kv.delete(now, b"k", c)).unwrap();
    net.run(Duration::from_secs(2));
    assert_eq!(net.kv(1).guards(), 1);
    let disk = net.kv(1).storage().clone();
    let mut kv = net.make(1, disk);
    assert_eq!(kv.guards(), 1);
    // An older value from a peer is still refused after the restart.
    let old = Entry {
        key: b"k".to_vec(),
        version: Version {
            stamp: v.stamp - 1,
            origin: 3,
        },
        value: Some(b"v".to_vec()),
    };
    let mut fake = net.fake(1);
    kv.apply_all_for_test(net.now, old, &mut fake);
    assert_eq!(kv.get(b"k"), None);
}
