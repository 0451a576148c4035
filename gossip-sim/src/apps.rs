//! Applications over simulated nodes: [`AppSim`] runs one
//! [`Application`] beside each node of a [`Simulator`], handing it the
//! node's events and waking it at its own deadlines, in virtual time.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gossip_apps::Application;
use gossip_core::{Aggregate, Event, Strategy};

use crate::net::{Observer, Simulator};

/// A [`Simulator`] with one application per node.
///
/// Every event a node emits goes to its application (and to the caller's
/// [`Observer`]); an application's deadline wakes it in virtual time; what
/// it does goes through its node like any command. A crashed node's
/// application is neither told nor woken until the node runs again; what
/// survives a restart is the caller's choice (replace it through
/// [`apps_mut`](Self::apps_mut), or keep it as a node would keep its disk).
pub struct AppSim<P, S, A> {
    /// The simulated network and nodes.
    pub sim: Simulator<S, A>,
    apps: Vec<P>,
    /// Application deadlines, `(nanos, node)`; stale entries are skipped
    /// when their application no longer names that instant.
    wakes: BinaryHeap<Reverse<(u64, usize)>>,
    pending: VecDeque<(usize, Event)>,
}

/// Forwards everything to the caller's observer and keeps the events for
/// the applications.
struct Tee<'a> {
    pending: &'a mut VecDeque<(usize, Event)>,
    inner: &'a mut dyn Observer,
}

impl Observer for Tee<'_> {
    fn on_event(&mut self, at: Duration, node: usize, event: &Event) {
        self.pending.push_back((node, event.clone()));
        self.inner.on_event(at, node, event);
    }

    fn on_transmit(&mut self, at: Duration, from: usize, to: SocketAddr, bytes: &[u8]) {
        self.inner.on_transmit(at, from, to, bytes);
    }
}

impl<P: Application, S: Strategy + Clone, A: Aggregate> AppSim<P, S, A> {
    /// Pairs `sim`'s nodes with `apps`, one per node in index order.
    ///
    /// # Panics
    /// If there is not exactly one application per node.
    pub fn new(sim: Simulator<S, A>, apps: Vec<P>) -> Self {
        assert_eq!(sim.len(), apps.len(), "one application per node");
        let mut this = Self {
            sim,
            apps,
            wakes: BinaryHeap::new(),
            pending: VecDeque::new(),
        };
        for index in 0..this.apps.len() {
            this.schedule(index);
        }
        this
    }

    /// Node `index`'s application.
    pub fn app(&self, index: usize) -> &P {
        &self.apps[index]
    }

    /// Every node's application, in index order.
    pub fn apps(&self) -> &[P] {
        &self.apps
    }

    /// Every node's application, to change or replace; call
    /// [`reschedule`](Self::reschedule) for one whose deadline moved.
    pub fn apps_mut(&mut self) -> &mut [P] {
        &mut self.apps
    }

    /// Node `index`'s application, to change; call
    /// [`reschedule`](Self::reschedule) if its deadline moved.
    pub fn app_mut(&mut self, index: usize) -> &mut P {
        &mut self.apps[index]
    }

    /// Takes note of node `index`'s application deadline after the caller
    /// changed the application directly.
    pub fn reschedule(&mut self, index: usize) {
        self.schedule(index);
    }

    /// Runs `f` on node `index`'s application and node at the current time
    /// (a write, a query that sends), then hands the events that follow to
    /// the applications. `None` if the node is crashed.
    pub fn command<R>(
        &mut self,
        index: usize,
        f: impl FnOnce(&mut P, &mut gossip_core::Node<S, A>, Instant) -> R,
        observer: &mut dyn Observer,
    ) -> Option<R> {
        let app = &mut self.apps[index];
        let mut tee = Tee {
            pending: &mut self.pending,
            inner: observer,
        };
        let result = self
            .sim
            .command(index, |node, now| f(app, node, now), &mut tee)?;
        self.schedule(index);
        self.dispatch(observer);
        Some(result)
    }

    /// Crashes node `index` (see [`Simulator::crash`]); its application
    /// keeps its state, as a process keeps its disk, and sleeps.
    pub fn crash(&mut self, index: usize) {
        self.sim.crash(index);
    }

    /// Restarts node `index` (see [`Simulator::restart`]) with `app` in
    /// place of its application (the caller decides what survived).
    pub fn restart(&mut self, index: usize, app: P, observer: &mut dyn Observer) {
        self.apps[index] = app;
        let mut tee = Tee {
            pending: &mut self.pending,
            inner: observer,
        };
        self.sim.restart(index, &mut tee);
        self.schedule(index);
        self.dispatch(observer);
    }

    /// Runs until virtual time `until`: network, node timers and
    /// application deadlines in time order.
    pub fn run_until(&mut self, until: Duration, observer: &mut dyn Observer) {
        let until_nanos = until.as_nanos() as u64;
        loop {
            let next_wake = self.next_wake();
            let bound = next_wake.map_or(until_nanos, |w| w.min(until_nanos));
            let stepped = {
                let mut tee = Tee {
                    pending: &mut self.pending,
                    inner: observer,
                };
                self.sim.step(Duration::from_nanos(bound), &mut tee)
            };
            if stepped {
                self.dispatch(observer);
                continue;
            }
            match next_wake {
                Some(wake) if wake <= until_nanos => {
                    self.sim.run_until(Duration::from_nanos(wake), observer);
                    self.wake_due(wake, observer);
                }
                _ => {
                    self.sim.run_until(until, observer);
                    return;
                }
            }
        }
    }

    /// Runs for `d` more virtual time.
    pub fn run_for(&mut self, d: Duration, observer: &mut dyn Observer) {
        self.run_until(self.sim.now() + d, observer);
    }

    fn epoch(&self) -> Instant {
        self.sim.instant(Duration::ZERO)
    }

    fn schedule(&mut self, index: usize) {
        if let Some(at) = self.apps[index].poll_timeout() {
            let nanos = at.saturating_duration_since(self.epoch()).as_nanos() as u64;
            self.wakes.push(Reverse((nanos, index)));
        }
    }

    /// The earliest live application deadline, dropping stale entries.
    fn next_wake(&mut self) -> Option<u64> {
        let epoch = self.epoch();
        while let Some(&Reverse((at, index))) = self.wakes.peek() {
            let current = self.apps[index]
                .poll_timeout()
                .map(|t| t.saturating_duration_since(epoch).as_nanos() as u64);
            if current == Some(at) {
                return Some(at);
            }
            self.wakes.pop();
            // A deadline that moved is already queued at its new instant
            // (every call that can move it reschedules).
        }
        None
    }

    /// Wakes every application whose deadline is at or before `now`.
    fn wake_due(&mut self, now_nanos: u64, observer: &mut dyn Observer) {
        while let Some(&Reverse((at, index))) = self.wakes.peek() {
            if at > now_nanos {
                break;
            }
            self.wakes.pop();
            let epoch = self.epoch();
            let current = self.apps[index]
                .poll_timeout()
                .map(|t| t.saturating_duration_since(epoch).as_nanos() as u64);
            if current != Some(at) {
                continue;
            }
            let app = &mut self.apps[index];
            let mut tee = Tee {
                pending: &mut self.pending,
                inner: observer,
            };
            let ran = self
                .sim
                .command(index, |node, now| app.handle_timeout(now, node), &mut tee);
            // A crashed node's application sleeps until [`restart`](Self::restart).
            if ran.is_some() {
                debug_assert!(
                    self.apps[index].poll_timeout().is_none_or(|t| t
                        .saturating_duration_since(epoch)
                        .as_nanos()
                        as u64
                        > at),
                    "after handle_timeout, the application's deadline is still due"
                );
                self.schedule(index);
            }
        }
        self.dispatch(observer);
    }

    /// Hands collected events to their applications until none is left.
    fn dispatch(&mut self, observer: &mut dyn Observer) {
        while let Some((index, event)) = self.pending.pop_front() {
            let app = &mut self.apps[index];
            let mut tee = Tee {
                pending: &mut self.pending,
                inner: observer,
            };
            if self
                .sim
                .command(
                    index,
                    |node, now| app.handle_event(now, &event, node),
                    &mut tee,
                )
                .is_some()
            {
                self.schedule(index);
            }
        }
    }
}
