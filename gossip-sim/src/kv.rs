//! The replicated key-value store ([`gossip_apps::kv::Kv`]) on simulated
//! nodes: how fast writes become visible, what they and an idle store cost,
//! how a returning node catches up, how a partition diverges and heals, and
//! whether a deleted key ever comes back (`gossip-node sim kv`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use gossip_apps::kv::{Entry, Kv, KvConfig, MemoryStorage, Storage, StoreOp, Version, WallClock};
use gossip_apps::Channel;
use gossip_core::wire::{self, Message};
use gossip_core::{Config, Event, Strategy};
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::address::node_index;
use crate::apps::AppSim;
use crate::net::{LinkModel, Observer, Simulator};
use crate::scenario::Quantiles;

/// Wall time of the simulation's start, for version stamps.
const UNIX_MS: u64 = 1_700_000_000_000;

/// A KV experiment (every phase runs on its own cluster).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KvScenario {
    /// Cluster size of the write, partition and catch-up phases.
    pub nodes: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// Probability that a frame is lost.
    pub loss: f64,
    /// Writes in the visibility phase, spread over random nodes, 20 ms apart.
    pub writes: usize,
    /// Nodes crashed at the start of the visibility phase.
    pub crash: usize,
    /// Keys every node holds in the idle phase.
    pub idle_keys: usize,
    /// Nodes of the idle phase (each holds `idle_keys`).
    pub idle_nodes: usize,
    /// Keys changed while one node is down in the catch-up phase.
    pub catch_up_changes: usize,
    /// Value size of the writes, bytes.
    pub value_len: usize,
    /// Randomized partition-and-delete runs counting resurrections.
    pub runs: usize,
    /// Keys written then deleted in the early-collection phase (default
    /// grace of 24 h: whatever is collected is collected early).
    pub gc_deletes: usize,
}

impl KvScenario {
    /// Defaults for `nodes` nodes.
    pub fn new(nodes: usize) -> Self {
        Self {
            nodes,
            seed: 1,
            loss: 0.01,
            writes: 200,
            crash: nodes / 50,
            idle_keys: 100_000,
            idle_nodes: 10,
            catch_up_changes: 10_000,
            value_len: 100,
            runs: 10,
            gc_deletes: 200,
        }
    }
}

/// What a [`KvScenario`] measured. Times in simulated seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KvReport {
    /// The scenario.
    pub scenario: KvScenario,
    /// Time from a write until every live node held it.
    pub visible_s: Quantiles,
    /// Writes not visible on every live node 30 s later.
    pub not_visible: usize,
    /// Store frame bytes (rumors and their pulls and feedback, direct
    /// store messages) per write per node.
    pub bytes_per_write_per_node: f64,
    /// Store direct-message bytes per node per second in an idle cluster.
    pub idle_bytes_per_node_per_s: f64,
    /// Keys each idle node held.
    pub idle_keys: usize,
    /// Time from the restart until the returning node held what the others held.
    pub catch_up_s: Option<f64>,
    /// Store direct-message bytes to and from the returning node meanwhile.
    pub catch_up_bytes: u64,
    /// Key and value bytes of the entries changed while it was down.
    pub changed_bytes: u64,
    /// `catch_up_bytes / changed_bytes`.
    pub catch_up_ratio: f64,
    /// Keys written during a 10 s half/half partition.
    pub partition_writes: usize,
    /// Of those, keys one side did not hold at the heal.
    pub partition_divergent_keys: usize,
    /// Time from the heal until every node held the same entries.
    pub converge_after_heal_s: Option<f64>,
    /// Time from a deletion until no live node held its tombstone any
    /// more, with the default grace of 24 h (collected early, by
    /// acknowledgement), with crashes and loss as in the write phase.
    pub tombstone_collect_s: Quantiles,
    /// Tombstones held per live node 10 s after the last deletion of
    /// that phase (mean; grace 24 h).
    pub tombstones_10s_after_deletes: f64,
    /// Guards (key hash and version of a tombstone collected early) held
    /// per live node at the same time.
    pub guards_10s_after_deletes: f64,
    /// Randomized partition-and-delete runs.
    pub resurrection_runs: usize,
    /// Resurrections: a node applied a live value whose version is older
    /// than a deletion that node had applied before for the same key
    /// (its tombstone since collected, or the node restarted). A write
    /// with a version newer than the deletion is not counted: under last
    /// writer wins it is a new value, not the deleted one coming back.
    pub resurrections: u64,
    /// Deletions made over the runs.
    pub deletes: u64,
    /// Tombstones collected early (on their deleter's notice) over the
    /// runs, summed over nodes (counters of restarted nodes start again).
    pub collected_early: u64,
    /// Tombstones held per node at the end of the runs, after the grace
    /// (mean over nodes and runs).
    pub tombstones_after_gc: f64,
    /// Live keys per node at the end of the runs (mean).
    pub live_keys_after_gc: f64,
    /// Deletions within the last grace period at the end (mean per run).
    pub deletes_within_grace: f64,
}

/// Counts store bytes: all dissemination frames, and direct frames of
/// the store's channel, per sender and receiver.
#[derive(Default)]
struct Bytes {
    config: Config,
    rumor: u64,
    direct: u64,
    /// Direct bytes to or from `watch`.
    watch: Option<usize>,
    watched: u64,
}

impl Observer for Bytes {
    fn on_event(&mut self, _: Duration, _: usize, _: &Event) {}

    fn on_transmit(&mut self, _: Duration, from: usize, to: SocketAddr, bytes: &[u8]) {
        let Ok((_, message)) = wire::decode(&self.config, bytes) else {
            return;
        };
        match message {
            Message::Rumors { .. }
            | Message::Pull { .. }
            | Message::Feedback { .. }
            | Message::Announce { .. }
            | Message::Graft { .. }
            | Message::Prune => self.rumor += bytes.len() as u64,
            Message::Direct { payload } if Channel::Kv.open(&payload).is_some() => {
                self.direct += bytes.len() as u64;
                if let Some(w) = self.watch {
                    if from == w || node_index(to) == Some(w) {
                        self.watched += bytes.len() as u64;
                    }
                }
            }
            _ => {}
        }
    }
}

type Cluster<S> = AppSim<Kv<MemoryStorage>, S, gossip_core::NoAggregate>;

fn wall(sim: &Simulator<impl Strategy + Clone>) -> WallClock {
    WallClock {
        at: sim.instant(Duration::ZERO),
        unix_ms: UNIX_MS,
    }
}

fn kv_for<S: Strategy + Clone>(
    sim: &Simulator<S>,
    i: usize,
    config: &KvConfig,
    storage: MemoryStorage,
    seed: u64,
) -> Kv<MemoryStorage> {
    Kv::new(
        sim.id(i),
        config.clone(),
        storage,
        wall(sim),
        seed ^ (i as u64).wrapping_mul(0x9e37_79b9),
        sim.instant(sim.now()),
    )
    .expect("valid store config")
}

fn cluster<S: Strategy + Clone>(
    n: usize,
    seed: u64,
    loss: f64,
    prototype: &S,
    config: &KvConfig,
    storage: impl Fn(usize) -> MemoryStorage,
) -> Cluster<S> {
    let link = LinkModel {
        loss,
        ..LinkModel::default()
    };
    let mut sim = Simulator::with_strategy(n, seed, Config::lan(n), link, prototype.clone());
    sim.start_all();
    let apps = (0..n)
        .map(|i| kv_for(&sim, i, config, storage(i), seed))
        .collect();
    AppSim::new(sim, apps)
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Drains every node's change events into `f(node, event)`.
fn drain<S: Strategy + Clone>(
    c: &mut Cluster<S>,
    mut f: impl FnMut(usize, gossip_apps::kv::KvEvent),
) {
    for (i, app) in c.apps_mut().iter_mut().enumerate() {
        while let Some(e) = app.poll_event() {
            f(i, e);
        }
    }
}

fn all_equal<S: Strategy + Clone>(c: &Cluster<S>, nodes: &[usize]) -> bool {
    let roots: Vec<u64> = nodes.iter().map(|&i| c.app(i).root()).collect();
    roots.windows(2).all(|w| w[0] == w[1])
}

/// A storage holding `keys` entries, as every node of an idle or
/// catch-up cluster starts.
fn preloaded(keys: usize, value_len: usize) -> MemoryStorage {
    let mut s = MemoryStorage::new();
    let ops: Vec<StoreOp> = (0..keys)
        .map(|k| {
            StoreOp::Put(Entry {
                key: format!("pre/{k:08}").into_bytes(),
                version: Version {
                    stamp: Version::stamp_of(UNIX_MS - 60_000),
                    origin: 1,
                },
                value: Some(vec![(k % 251) as u8; value_len]),
            })
        })
        .collect();
    s.apply(&ops).expect("memory storage");
    s
}

/// Runs every phase of `scenario` with nodes disseminating with
/// `prototype`; `progress` hears each phase's name.
pub fn run_kv<S: Strategy + Clone>(
    scenario: &KvScenario,
    prototype: &S,
    mut progress: impl FnMut(&str),
) -> KvReport {
    let config = KvConfig::default();
    let n = scenario.nodes;
    let mut rng = ChaCha8Rng::seed_from_u64(scenario.seed ^ 0x6b76);
    let node_config = Config::lan(n);

    // --- visibility and cost of writes, with crashes and loss ---------
    progress("writes");
    let mut c = cluster(n, scenario.seed, scenario.loss, prototype, &config, |_| {
        MemoryStorage::new()
    });
    let mut t = Duration::from_secs(10);
    c.run_until(t, &mut ());
    let crashed: Vec<usize> = sample(&mut rng, n - 1, scenario.crash.min(n - 2))
        .into_iter()
        .map(|i| i + 1)
        .collect();
    for &i in &crashed {
        c.crash(i);
    }
    let live: Vec<usize> = (0..n).filter(|i| !crashed.contains(i)).collect();
    drain(&mut c, |_, _| {});
    let mut bytes = Bytes {
        config: node_config.clone(),
        ..Bytes::default()
    };
    let mut written: Vec<Duration> = Vec::new();
    let mut seen: Vec<Vec<Option<Duration>>> = Vec::new();
    let value = vec![0x5a; scenario.value_len];
    for w in 0..scenario.writes {
        let origin = live[rng.random_range(0..live.len())];
        let key = format!("w/{w}");
        let v = value.clone();
        c.command(
            origin,
            move |kv, node, now| kv.put(now, key.as_bytes(), &v, node).ok(),
            &mut bytes,
        );
        written.push(t);
        seen.push(vec![None; n]);
        t += Duration::from_millis(20);
        c.run_until(t, &mut bytes);
        let epoch = c.sim.instant(Duration::ZERO);
        drain(&mut c, |i, e| record(&mut seen, i, &e, epoch));
    }
    let write_bytes = bytes.rumor + bytes.direct;
    let write_end = t;
    // Let stragglers arrive (anti-entropy included) for 30 s.
    c.run_until(t + Duration::from_secs(30), &mut ());
    let epoch = c.sim.instant(Duration::ZERO);
    drain(&mut c, |i, e| record(&mut seen, i, &e, epoch));
    let visible: Vec<Option<f64>> = written
        .iter()
        .zip(&seen)
        .map(|(at, nodes)| {
            live.iter()
                .map(|&i| nodes[i].map(|s| secs(s.saturating_sub(*at))))
                .try_fold(0.0f64, |m, s| s.map(|s| m.max(s)))
        })
        .collect();
    let not_visible = visible.iter().filter(|v| v.is_none()).count();
    let window_writes = scenario.writes.max(1) as f64;
    let _ = write_end;
    let bytes_per_write_per_node = write_bytes as f64 / window_writes / n as f64;
    drop(c);

    // --- idle with many keys ---------------------------------------------
    progress("idle");
    let idle_n = scenario.idle_nodes.max(2);
    let base = preloaded(scenario.idle_keys, 16);
    let mut c = cluster(idle_n, scenario.seed, 0.0, prototype, &config, |_| {
        base.clone()
    });
    drop(base);
    c.run_until(Duration::from_secs(20), &mut ());
    let mut idle = Bytes {
        config: Config::lan(idle_n),
        ..Bytes::default()
    };
    c.run_until(Duration::from_secs(80), &mut idle);
    let idle_bytes_per_node_per_s = idle.direct as f64 / idle_n as f64 / 60.0;
    drop(c);

    // --- a node down while keys change ----------------------------------
    progress("catch-up");
    let cn = n.min(20);
    let pre = scenario.catch_up_changes * 2;
    let base = preloaded(pre, scenario.value_len);
    let mut c = cluster(cn, scenario.seed, scenario.loss, prototype, &config, |_| {
        base.clone()
    });
    drop(base);
    let mut t = Duration::from_secs(10);
    c.run_until(t, &mut ());
    let down = cn - 1;
    c.crash(down);
    let mut changed_bytes = 0u64;
    for k in 0..scenario.catch_up_changes {
        // Half overwrite preloaded keys, half are new keys.
        let key = if k % 2 == 0 {
            format!("pre/{:08}", k)
        } else {
            format!("new/{k:08}")
        };
        changed_bytes += (key.len() + scenario.value_len) as u64;
        let origin = k % (cn - 1);
        let v = vec![(k % 13) as u8; scenario.value_len];
        c.command(
            origin,
            move |kv, node, now| kv.put(now, key.as_bytes(), &v, node).ok(),
            &mut (),
        );
        if k % 50 == 49 {
            t += Duration::from_millis(10);
            c.run_until(t, &mut ());
        }
    }
    t += Duration::from_secs(10);
    c.run_until(t, &mut ());
    let others: Vec<usize> = (0..cn - 1).collect();
    let disk = c.app(down).storage().clone();
    let returning = kv_for(&c.sim, down, &config, disk, scenario.seed ^ 0xc0);
    let mut watch = Bytes {
        config: Config::lan(cn),
        watch: Some(down),
        ..Bytes::default()
    };
    c.restart(down, returning, &mut watch);
    let restart_at = t;
    let mut catch_up_s = None;
    let step = Duration::from_millis(10);
    while t < restart_at + Duration::from_secs(60) {
        t += step;
        c.run_until(t, &mut watch);
        let mut nodes = others.clone();
        nodes.push(down);
        if all_equal(&c, &nodes) && !c.app(down).catching_up() {
            catch_up_s = Some(secs(t - restart_at));
            break;
        }
    }
    let catch_up_bytes = watch.watched;
    drop(c);

    // --- a partition that heals --------------------------------------------
    progress("partition");
    let mut c = cluster(n, scenario.seed, scenario.loss, prototype, &config, |_| {
        MemoryStorage::new()
    });
    let mut t = Duration::from_secs(10);
    c.run_until(t, &mut ());
    c.sim.partition(|i| (i < n / 2) as u32);
    let partition_writes = 100;
    let mut keys = Vec::new();
    for w in 0..partition_writes {
        let origin = rng.random_range(0..n);
        let key = format!("p/{w}");
        keys.push(key.clone());
        c.command(
            origin,
            move |kv, node, now| kv.put(now, key.as_bytes(), b"during", node).ok(),
            &mut (),
        );
        t += Duration::from_millis(100);
        c.run_until(t, &mut ());
    }
    let divergent = keys
        .iter()
        .filter(|k| {
            let a = c.app(0).entry(k.as_bytes()).map(|e| e.version);
            let b = c.app(n - 1).entry(k.as_bytes()).map(|e| e.version);
            a != b
        })
        .count();
    c.sim.heal();
    let healed_at = t;
    let all: Vec<usize> = (0..n).collect();
    let mut converge_after_heal_s = None;
    while t < healed_at + Duration::from_secs(120) {
        t += Duration::from_millis(50);
        c.run_until(t, &mut ());
        if all_equal(&c, &all) && c.app(0).len() == partition_writes {
            converge_after_heal_s = Some(secs(t - healed_at));
            break;
        }
    }
    drop(c);

    // --- deletions collected early ------------------------------------------
    progress("collection");
    let gc = early_collection(scenario, prototype, &config, &mut rng);

    // --- randomized partitions and deletions ---------------------------
    progress("resurrections");
    let res = resurrection_runs(scenario.seed, scenario.runs, prototype);
    let runs = scenario.runs.max(1) as f64;
    KvReport {
        scenario: scenario.clone(),
        visible_s: Quantiles::of(&visible),
        not_visible,
        bytes_per_write_per_node,
        idle_bytes_per_node_per_s,
        idle_keys: scenario.idle_keys,
        catch_up_s,
        catch_up_bytes,
        changed_bytes,
        catch_up_ratio: catch_up_bytes as f64 / changed_bytes.max(1) as f64,
        partition_writes,
        partition_divergent_keys: divergent,
        converge_after_heal_s,
        tombstone_collect_s: gc.collect_s,
        tombstones_10s_after_deletes: gc.tombstones,
        guards_10s_after_deletes: gc.guards,
        resurrection_runs: scenario.runs,
        resurrections: res.resurrections,
        deletes: res.deletes,
        collected_early: res.collected_early,
        tombstones_after_gc: res.tombstones / runs,
        live_keys_after_gc: res.live / runs,
        deletes_within_grace: res.deletes_within_grace as f64 / runs,
    }
}

/// What the early-collection phase measured.
struct EarlyCollection {
    collect_s: Quantiles,
    tombstones: f64,
    guards: f64,
}

/// Writes `gc_deletes` keys, deletes them from random live nodes 20 ms
/// apart with the default grace (24 h), and times each until no live node
/// holds its tombstone.
fn early_collection<S: Strategy + Clone>(
    scenario: &KvScenario,
    prototype: &S,
    config: &KvConfig,
    rng: &mut ChaCha8Rng,
) -> EarlyCollection {
    let n = scenario.nodes;
    let mut c = cluster(
        n,
        scenario.seed ^ 0x6c,
        scenario.loss,
        prototype,
        config,
        |_| MemoryStorage::new(),
    );
    let mut t = Duration::from_secs(10);
    c.run_until(t, &mut ());
    let crashed: Vec<usize> = sample(rng, n - 1, scenario.crash.min(n - 2))
        .into_iter()
        .map(|i| i + 1)
        .collect();
    for &i in &crashed {
        c.crash(i);
    }
    let live: Vec<usize> = (0..n).filter(|i| !crashed.contains(i)).collect();
    let keys: Vec<String> = (0..scenario.gc_deletes).map(|k| format!("g/{k}")).collect();
    for key in &keys {
        let origin = live[rng.random_range(0..live.len())];
        let key = key.clone();
        c.command(
            origin,
            move |kv, node, now| kv.put(now, key.as_bytes(), b"v", node).ok(),
            &mut (),
        );
    }
    // Failure detection takes the crashed nodes out of the views first:
    // members that died before a deletion are not waited for.
    t += Duration::from_secs(20);
    c.run_until(t, &mut ());
    let mut deleted_at = Vec::with_capacity(keys.len());
    let mut collected: Vec<Option<f64>> = vec![None; keys.len()];
    // Marks the deleted keys no live node holds any more (checked every
    // 20 ms while deleting, every 100 ms after).
    let check =
        |c: &Cluster<S>, t: Duration, deleted_at: &[Duration], collected: &mut [Option<f64>]| {
            for (k, at) in deleted_at.iter().enumerate() {
                if collected[k].is_some() {
                    continue;
                }
                let key = keys[k].as_bytes();
                if !live.iter().any(|&i| c.app(i).entry(key).is_some()) {
                    collected[k] = Some(secs(t - *at));
                }
            }
        };
    for key in &keys {
        let origin = live[rng.random_range(0..live.len())];
        let key = key.clone();
        c.command(
            origin,
            move |kv, node, now| kv.delete(now, key.as_bytes(), node).ok(),
            &mut (),
        );
        deleted_at.push(t);
        t += Duration::from_millis(20);
        c.run_until(t, &mut ());
        drain(&mut c, |_, _| {});
        check(&c, t, &deleted_at, &mut collected);
    }
    let last_delete = t;
    let step = Duration::from_millis(100);
    let mut snapshot = None;
    while t < last_delete + Duration::from_secs(60) {
        t += step;
        c.run_until(t, &mut ());
        drain(&mut c, |_, _| {});
        check(&c, t, &deleted_at, &mut collected);
        if snapshot.is_none() && t >= last_delete + Duration::from_secs(10) {
            let per_node = |f: &dyn Fn(&Kv<MemoryStorage>) -> usize| {
                live.iter().map(|&i| f(c.app(i)) as f64).sum::<f64>() / live.len() as f64
            };
            snapshot = Some((per_node(&|kv| kv.tombstones()), per_node(&|kv| kv.guards())));
        }
        if snapshot.is_some() && collected.iter().all(Option::is_some) {
            break;
        }
    }
    let (tombstones, guards) = snapshot.unwrap_or((f64::NAN, f64::NAN));
    EarlyCollection {
        collect_s: Quantiles::of(&collected),
        tombstones,
        guards,
    }
}

fn record(
    seen: &mut [Vec<Option<Duration>>],
    node: usize,
    e: &gossip_apps::kv::KvEvent,
    epoch: std::time::Instant,
) {
    let Some(w) = std::str::from_utf8(&e.key)
        .ok()
        .and_then(|k| k.strip_prefix("w/"))
        .and_then(|k| k.parse::<usize>().ok())
    else {
        return;
    };
    if let Some(slot) = seen.get_mut(w).and_then(|s| s.get_mut(node)) {
        slot.get_or_insert(e.at.saturating_duration_since(epoch));
    }
}

/// Totals over randomized partition-and-delete runs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resurrections {
    /// Live values applied with a version older than a deletion the same
    /// node applied before (see [`KvReport::resurrections`]).
    pub resurrections: u64,
    /// Deletions made.
    pub deletes: u64,
    /// Tombstones collected early, summed over nodes.
    pub collected_early: u64,
    /// Deletions within the last grace period at the end of each run.
    pub deletes_within_grace: u64,
    /// Tombstones per node at the end, summed over runs.
    pub tombstones: f64,
    /// Live keys per node at the end, summed over runs.
    pub live: f64,
}

/// `runs` randomized partition-and-delete runs with seeds `seed`,
/// `seed + 1`, ... (the last phase of [`run_kv`]).
pub fn resurrection_runs<S: Strategy + Clone>(
    seed: u64,
    runs: usize,
    prototype: &S,
) -> Resurrections {
    let mut res = Resurrections::default();
    for run in 0..runs {
        resurrection_run(seed.wrapping_add(run as u64), prototype, &mut res);
    }
    res
}

/// One randomized run: 10 nodes, 40 keys, a short grace (20 s); random
/// partitions (some longer than the grace), deletions and rewrites on
/// random sides, a crash and restart with its storage; then a heal and
/// twice the grace of quiet. A resurrection is a node applying a live
/// value older than a deletion it applied before.
fn resurrection_run<S: Strategy + Clone>(seed: u64, prototype: &S, out: &mut Resurrections) {
    let n = 10;
    let config = KvConfig {
        tombstone_grace: Duration::from_secs(20),
        max_clock_skew: Duration::from_secs(2),
        ..KvConfig::default()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7e5);
    let mut c = cluster(n, seed, 0.01, prototype, &config, |_| MemoryStorage::new());
    let mut t = Duration::from_secs(5);
    c.run_until(t, &mut ());
    let keys = 40;
    for k in 0..keys {
        let origin = rng.random_range(0..n);
        c.command(
            origin,
            move |kv, node, now| kv.put(now, format!("r/{k}").as_bytes(), b"v0", node).ok(),
            &mut (),
        );
    }
    t += Duration::from_secs(3);
    c.run_until(t, &mut ());
    // Per node and key: the newest deletion applied.
    let mut deleted: BTreeMap<(usize, Vec<u8>), Version> = BTreeMap::new();
    let mut check = |c: &mut Cluster<S>, out: &mut Resurrections| {
        drain(c, |i, e| match &e.value {
            None => {
                let slot = deleted.entry((i, e.key.clone())).or_default();
                *slot = (*slot).max(e.version);
            }
            Some(_) => {
                if deleted
                    .get(&(i, e.key.clone()))
                    .is_some_and(|d| e.version < *d)
                {
                    out.resurrections += 1;
                }
            }
        });
    };
    let mut delete_times: Vec<Duration> = Vec::new();
    let mut down: Option<usize> = None;
    for _round in 0..3 {
        let groups = rng.random_range(2..=3u32);
        let assignment: Vec<u32> = (0..n).map(|_| rng.random_range(0..groups)).collect();
        c.sim.partition(move |i| assignment[i]);
        let length = Duration::from_secs(rng.random_range(5..40));
        let end = t + length;
        while t < end {
            let node = rng.random_range(0..n);
            let k = rng.random_range(0..keys);
            let key = format!("r/{k}");
            if rng.random_bool(0.5) {
                let ok = c.command(
                    node,
                    move |kv, cl, now| kv.delete(now, key.as_bytes(), cl).ok(),
                    &mut (),
                );
                if ok.flatten().is_some() {
                    out.deletes += 1;
                    delete_times.push(t);
                }
            } else {
                c.command(
                    node,
                    move |kv, cl, now| kv.put(now, key.as_bytes(), b"v1", cl).ok(),
                    &mut (),
                );
            }
            if down.is_none() && rng.random_bool(0.05) {
                let d = rng.random_range(1..n);
                c.crash(d);
                down = Some(d);
            } else if let Some(d) = down.filter(|_| rng.random_bool(0.1)) {
                let disk = c.app(d).storage().clone();
                let kv = kv_for(&c.sim, d, &config, disk, seed ^ t.as_nanos() as u64);
                c.restart(d, kv, &mut ());
                down = None;
            }
            t += Duration::from_millis(500);
            c.run_until(t, &mut ());
            check(&mut c, out);
        }
        c.sim.heal();
        t += Duration::from_secs(rng.random_range(2..10));
        c.run_until(t, &mut ());
        check(&mut c, out);
    }
    if let Some(d) = down {
        let disk = c.app(d).storage().clone();
        let kv = kv_for(&c.sim, d, &config, disk, seed ^ 0xd);
        c.restart(d, kv, &mut ());
    }
    // Quiet for twice the grace: everything converges, tombstones go.
    let end = t + config.tombstone_grace * 2;
    while t < end {
        t += Duration::from_secs(1);
        c.run_until(t, &mut ());
        check(&mut c, out);
    }
    let grace_start = t.saturating_sub(config.tombstone_grace);
    out.deletes_within_grace += delete_times.iter().filter(|d| **d >= grace_start).count() as u64;
    for i in 0..n {
        out.collected_early += c.app(i).stats().collected_early;
        out.tombstones += c.app(i).tombstones() as f64 / n as f64;
        out.live += c.app(i).live() as f64 / n as f64;
    }
}
