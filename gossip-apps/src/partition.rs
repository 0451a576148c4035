//! Partition awareness: a node notices when a large part of the cluster
//! becomes unreachable within a short window, and when it comes back.
//!
//! [`PartitionWatch`] is an [`Application`]. A member is *lost* when it
//! goes from alive to suspected or down (not when it leaves gracefully).
//! When at least [`min_lost`](PartitionConfig::min_lost) members, and at
//! least [`fraction`](PartitionConfig::fraction) of the members that were
//! reachable, were lost within [`window`](PartitionConfig::window), the
//! watch emits [`PartitionEvent::PartitionSuspected`] with the lost set's
//! size. While it holds, later losses join the set. When so many of them
//! are alive again (or left) that fewer than the trigger threshold remain
//! unreachable, it emits [`PartitionEvent::PartitionHealed`].
//!
//! A crash of many members at once looks the same from inside and is
//! reported the same way; it heals when they restart.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use gossip_core::{Event, Liveness, NodeId};

use crate::view::MemberView;
use crate::{Application, Cluster};

/// When a loss counts as a partition. Every limit has a default.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PartitionConfig {
    /// Losses are counted over this window. Default 10 s (a few suspicion
    /// timeouts; a split's suspicions spread within it).
    pub window: Duration,
    /// At least this many lost members. Default 2, so one crash in a
    /// three-node cluster is not a partition.
    pub min_lost: usize,
    /// At least this fraction of the members reachable before the losses.
    /// Default 0.25.
    pub fraction: f64,
    /// Events kept until polled; the oldest is dropped beyond. Default 1024.
    pub max_events: usize,
}

impl Default for PartitionConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(10),
            min_lost: 2,
            fraction: 0.25,
            max_events: 1024,
        }
    }
}

/// A change in what this node believes about partitions.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PartitionEvent {
    /// Many members became unreachable within the window.
    PartitionSuspected {
        /// How many.
        lost: usize,
    },
    /// Enough of them are reachable again.
    PartitionHealed {
        /// How many of the lost set are still unreachable.
        still_lost: usize,
    },
}

/// What the watch shows now.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionStatus {
    /// Whether a partition is suspected now.
    pub suspected: bool,
    /// Members of the suspected partition's lost set still unreachable (0
    /// when none is suspected).
    pub lost: usize,
    /// Members this node sees alive, itself included.
    pub reachable: usize,
    /// Partitions suspected since start.
    pub suspected_total: u64,
    /// Partitions healed since start.
    pub healed_total: u64,
}

/// One node's partition watch (see the [module](self) docs).
#[derive(Clone, Debug)]
pub struct PartitionWatch {
    config: PartitionConfig,
    view: MemberView,
    /// Unreachable members and when they were lost.
    lost_at: BTreeMap<NodeId, Instant>,
    /// The suspected partition: its lost set and its trigger threshold.
    partition: Option<(BTreeSet<NodeId>, usize)>,
    events: VecDeque<PartitionEvent>,
    suspected_total: u64,
    healed_total: u64,
}

impl PartitionWatch {
    /// A watch with `config`.
    pub fn new(config: PartitionConfig) -> Self {
        Self {
            config,
            view: MemberView::default(),
            lost_at: BTreeMap::new(),
            partition: None,
            events: VecDeque::new(),
            suspected_total: 0,
            healed_total: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &PartitionConfig {
        &self.config
    }

    /// Whether a partition is suspected now.
    pub fn suspected(&self) -> bool {
        self.partition.is_some()
    }

    /// Everything at once, for an API.
    pub fn status(&self) -> PartitionStatus {
        PartitionStatus {
            suspected: self.partition.is_some(),
            lost: self
                .partition
                .as_ref()
                .map_or(0, |(set, _)| self.still_lost(set)),
            reachable: self
                .view
                .iter()
                .filter(|m| m.liveness == Liveness::Alive)
                .count(),
            suspected_total: self.suspected_total,
            healed_total: self.healed_total,
        }
    }

    /// The next change not yet polled.
    pub fn poll_event(&mut self) -> Option<PartitionEvent> {
        self.events.pop_front()
    }

    fn still_lost(&self, set: &BTreeSet<NodeId>) -> usize {
        set.iter()
            .filter(|id| self.lost_at.contains_key(id))
            .count()
    }

    fn push(&mut self, event: PartitionEvent) {
        if self.events.len() >= self.config.max_events.max(1) {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    /// The lost count that makes a partition, given `recent` losses.
    fn threshold(&self, recent: usize) -> usize {
        let reachable = self
            .view
            .iter()
            .filter(|m| m.liveness == Liveness::Alive)
            .count();
        let before = reachable + recent;
        let by_fraction = (self.config.fraction * before as f64).ceil() as usize;
        by_fraction.max(self.config.min_lost).max(1)
    }

    fn check(&mut self, now: Instant) {
        let since = now.checked_sub(self.config.window);
        match &mut self.partition {
            None => {
                let recent: BTreeSet<NodeId> = self
                    .lost_at
                    .iter()
                    .filter(|(_, &at)| since.is_none_or(|s| at >= s))
                    .map(|(id, _)| *id)
                    .collect();
                let threshold = self.threshold(recent.len());
                if recent.len() >= threshold {
                    let lost = recent.len();
                    self.partition = Some((recent, threshold));
                    self.suspected_total += 1;
                    self.push(PartitionEvent::PartitionSuspected { lost });
                }
            }
            Some((set, threshold)) => {
                let threshold = *threshold;
                let set = set.clone();
                let still = self.still_lost(&set);
                if still < threshold {
                    self.partition = None;
                    self.healed_total += 1;
                    self.push(PartitionEvent::PartitionHealed { still_lost: still });
                }
            }
        }
    }
}

impl Default for PartitionWatch {
    fn default() -> Self {
        Self::new(PartitionConfig::default())
    }
}

impl Application for PartitionWatch {
    fn handle_event(&mut self, now: Instant, event: &Event, cluster: &mut dyn Cluster) {
        self.view.load(cluster);
        let Some(member) = self.view.apply(event) else {
            return;
        };
        let id = member.id;
        match member.liveness {
            Liveness::Suspect | Liveness::Dead => {
                self.lost_at.entry(id).or_insert(now);
                if let Some((set, _)) = &mut self.partition {
                    set.insert(id);
                }
            }
            _ => {
                self.lost_at.remove(&id);
            }
        }
        self.check(now);
    }

    fn handle_timeout(&mut self, _now: Instant, _cluster: &mut dyn Cluster) {}

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{member, FakeCluster};

    fn feed(w: &mut PartitionWatch, c: &mut FakeCluster, at: Instant, ports: &[u16], l: Liveness) {
        for &p in ports {
            let event = match l {
                Liveness::Alive => Event::MemberUp(member(p, l)),
                Liveness::Suspect => Event::MemberSuspect(member(p, l)),
                Liveness::Left => Event::MemberLeft(member(p, l)),
                _ => Event::MemberDown(member(p, l)),
            };
            w.handle_event(at, &event, c);
        }
    }

    #[test]
    fn half_the_cluster_lost_at_once_is_a_partition_that_heals() {
        let t0 = Instant::now();
        let mut c = FakeCluster::new(1, 1..=10);
        let mut w = PartitionWatch::default();
        feed(&mut w, &mut c, t0, &[6, 7], Liveness::Suspect);
        assert_eq!(w.poll_event(), None, "2 of 10 is below a quarter");
        feed(
            &mut w,
            &mut c,
            t0 + Duration::from_secs(2),
            &[8],
            Liveness::Suspect,
        );
        assert_eq!(
            w.poll_event(),
            Some(PartitionEvent::PartitionSuspected { lost: 3 })
        );
        feed(
            &mut w,
            &mut c,
            t0 + Duration::from_secs(3),
            &[9, 10],
            Liveness::Dead,
        );
        assert_eq!(w.status().lost, 5);
        assert_eq!(w.poll_event(), None);
        // They come back; with fewer than 3 still lost it has healed.
        feed(
            &mut w,
            &mut c,
            t0 + Duration::from_secs(30),
            &[6, 7],
            Liveness::Alive,
        );
        assert_eq!(w.poll_event(), None);
        feed(
            &mut w,
            &mut c,
            t0 + Duration::from_secs(30),
            &[8],
            Liveness::Alive,
        );
        assert_eq!(
            w.poll_event(),
            Some(PartitionEvent::PartitionHealed { still_lost: 2 })
        );
        assert_eq!(w.status().suspected_total, 1);
        assert_eq!(w.status().healed_total, 1);
    }

    #[test]
    fn slow_losses_and_departures_are_not_a_partition() {
        let t0 = Instant::now();
        let mut c = FakeCluster::new(1, 1..=10);
        let mut w = PartitionWatch::default();
        for (k, p) in (5..=9).enumerate() {
            feed(
                &mut w,
                &mut c,
                t0 + Duration::from_secs(11 * k as u64),
                &[p],
                Liveness::Dead,
            );
        }
        feed(
            &mut w,
            &mut c,
            t0 + Duration::from_secs(100),
            &[2, 3, 4],
            Liveness::Left,
        );
        assert_eq!(w.poll_event(), None);
        assert!(!w.suspected());
    }

    #[test]
    fn one_crash_in_three_is_not_a_partition() {
        let t0 = Instant::now();
        let mut c = FakeCluster::new(1, 1..=3);
        let mut w = PartitionWatch::default();
        feed(&mut w, &mut c, t0, &[3], Liveness::Dead);
        assert!(!w.suspected());
    }
}
