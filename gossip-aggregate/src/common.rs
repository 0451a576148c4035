//! What every algorithm shares: the function computed, the node's input and
//! epochs that restart the computation so estimates follow churn.

use gossip_core::AggregateHost;
use serde::{Deserialize, Serialize};

/// What to compute over all nodes' inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Function {
    /// Mean of the inputs.
    Average,
    /// Sum of the inputs (needs one leader).
    Sum,
    /// Number of nodes (needs one leader).
    Count,
    /// Smallest input.
    Min,
    /// Largest input.
    Max,
}

impl Function {
    /// The exact value of this function over `inputs` (count: how many).
    pub fn exact(self, inputs: &[f64]) -> f64 {
        match self {
            Function::Average => inputs.iter().sum::<f64>() / inputs.len() as f64,
            Function::Sum => inputs.iter().sum(),
            Function::Count => inputs.len() as f64,
            Function::Min => inputs.iter().copied().fold(f64::INFINITY, f64::min),
            Function::Max => inputs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        }
    }

    /// Whether this is an extreme, spread by keeping the best value seen
    /// rather than by averaging.
    pub fn is_extreme(self) -> bool {
        matches!(self, Function::Min | Function::Max)
    }

    /// The pair `(x, y)` a node starts an epoch with, `(0, 0)` if it does
    /// not contribute to it; the estimate is `x / y`.
    pub(crate) fn start(self, input: Input, contributes: bool) -> (f64, f64) {
        if contributes {
            self.initial(input)
        } else {
            (0.0, 0.0)
        }
    }

    /// The extreme a node starts an epoch with.
    pub(crate) fn start_extreme(self, input: Input, contributes: bool) -> f64 {
        match (contributes, self) {
            (true, _) => input.value,
            (false, Function::Min) => f64::INFINITY,
            (false, _) => f64::NEG_INFINITY,
        }
    }

    /// The pair `(x, y)` a node averages; the estimate is `x / y`.
    pub(crate) fn initial(self, input: Input) -> (f64, f64) {
        let leader = if input.leader { 1.0 } else { 0.0 };
        match self {
            Function::Average | Function::Min | Function::Max => (input.value, 1.0),
            Function::Sum => (input.value, leader),
            Function::Count => (1.0, leader),
        }
    }

    /// The better of two extremes.
    pub(crate) fn best(self, a: f64, b: f64) -> f64 {
        if self == Function::Min {
            a.min(b)
        } else {
            a.max(b)
        }
    }
}

/// A node's contribution.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Input {
    /// The node's value (ignored by count).
    pub value: f64,
    /// Whether this node is the one that anchors sums and counts.
    pub leader: bool,
}

/// Epoch bookkeeping (Jelasity et al.): with a length of E rounds, the
/// computation restarts every E rounds and the estimate reported is the last
/// completed epoch's, so a population that changes is followed.
///
/// Every share carries its epoch number. The first node whose timer runs out
/// starts the next epoch; a node that hears of a later epoch completes its
/// own and joins at once, so a new epoch spreads like a rumor. A newcomer
/// takes part in the epoch it finds under way without contributing its
/// input, which it adds from the next epoch on: half-counted newcomers
/// would skew sums and counts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Epochs {
    pub length: Option<u32>,
    pub number: u64,
    pub round: u32,
    pub completed: Option<f64>,
    pub contributes: bool,
    /// A newcomer that has not yet learned which epoch is under way. It
    /// sends nothing until a share tells it: two newcomers must not take
    /// each other's word for the epoch.
    pub fresh: bool,
}

/// What a share's epoch means for the receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// From an epoch the receiver has left: ignore it.
    Stale,
    /// Same epoch: apply it.
    Current,
    /// From a later epoch: the receiver has completed its own and restarted
    /// (the caller must call [`Epochs::complete`] first, then restart).
    Later,
}

impl Epochs {
    pub fn new(length: Option<u32>, newcomer: bool) -> Self {
        Self {
            length: length.filter(|&l| l > 0),
            number: 0,
            round: 0,
            completed: None,
            contributes: !newcomer,
            fresh: newcomer,
        }
    }

    /// Counts a round; true if this node's epoch timer ran out (the caller
    /// completes and restarts). A newcomer that has not learned the epoch
    /// under way keeps no time: its timer would otherwise run out and start
    /// an epoch of its own, one the others never admit (their epoch is
    /// further ahead), leaving it stranded.
    pub fn tick(&mut self) -> bool {
        if self.fresh {
            return false;
        }
        self.round += 1;
        self.length.is_some_and(|l| self.round >= l)
    }

    /// Closes the current epoch with `estimate` and opens epoch `next`.
    /// A node that contributed, or that saw this epoch start, contributes to
    /// the next; a newcomer that arrived mid-epoch does from the one after.
    pub fn complete(&mut self, estimate: Option<f64>, next: u64) {
        if self.contributes {
            self.completed = estimate;
        }
        // A newcomer's first "boundary" is only its discovery of the epoch
        // under way, which it joins without input; any later boundary is
        // real and makes it a full participant.
        self.contributes = !core::mem::take(&mut self.fresh);
        self.number = next;
        self.round = 0;
    }

    /// Classifies a share's epoch. A newcomer learns here which epoch is
    /// under way (it will contribute from the next one).
    pub fn admit(&mut self, epoch: u64) -> Admit {
        match epoch.cmp(&self.number) {
            core::cmp::Ordering::Less => Admit::Stale,
            core::cmp::Ordering::Equal => {
                self.fresh = false;
                Admit::Current
            }
            // A node that knows the epoch moves one epoch at a time: a share
            // claiming to be further ahead is implausible (or forged) and is
            // ignored; a newcomer takes whatever epoch it first hears.
            core::cmp::Ordering::Greater
                if self.fresh || epoch == self.number.saturating_add(1) =>
            {
                Admit::Later
            }
            core::cmp::Ordering::Greater => Admit::Stale,
        }
    }
}

/// What every algorithm keeps besides its own averaging state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Common {
    pub function: Function,
    pub input: Input,
    /// Best extreme seen this epoch (min and max).
    pub extreme: f64,
    pub epochs: Epochs,
}

impl Common {
    pub fn new(function: Function, input: Input, epoch_length: Option<u32>) -> Self {
        Self {
            function,
            input,
            extreme: input.value,
            epochs: Epochs::new(epoch_length, false),
        }
    }

    /// The pair this node starts the current epoch with.
    pub fn start(&self) -> (f64, f64) {
        self.function.start(self.input, self.epochs.contributes)
    }

    /// Changes the node's input to `value` (ignored unless finite) and
    /// returns how the pair it contributes to the epoch under way changed:
    /// zero if it does not contribute to this epoch (a newcomer's input
    /// counts from the next one) and for counts, whose pair does not depend
    /// on the value. A better extreme is taken at once; a worse one only
    /// shows from the next epoch, since nothing can unsee the old one.
    pub fn set_input(&mut self, value: f64) -> (f64, f64) {
        if !value.is_finite() {
            return (0.0, 0.0);
        }
        let before = self.start();
        self.input.value = value;
        let after = self.start();
        if self.epochs.contributes {
            self.extreme = self.function.best(self.extreme, value);
        }
        (after.0 - before.0, after.1 - before.1)
    }

    /// Whether this node anchors the weight of a sum or count: it holds
    /// all of it when an epoch starts.
    pub fn anchors(&self) -> bool {
        self.input.leader && matches!(self.function, Function::Sum | Function::Count)
    }
}

/// The epoch life cycle, the same for every algorithm: each supplies its
/// own estimate and how to reset its own state.
pub(crate) trait Epochal {
    fn common(&self) -> &Common;
    fn common_mut(&mut self) -> &mut Common;
    /// The estimate from the algorithm's averaging state.
    fn ratio(&self) -> Option<f64>;
    /// Resets the averaging state for a new epoch.
    fn reset(&mut self);

    /// The estimate of the epoch under way.
    fn current(&self) -> Option<f64> {
        let common = self.common();
        if common.function.is_extreme() {
            Some(common.extreme)
        } else {
            self.ratio()
        }
    }

    fn restart(&mut self) {
        self.reset();
        let common = self.common_mut();
        common.extreme = common
            .function
            .start_extreme(common.input, common.epochs.contributes);
    }

    /// Starts a round, completing an epoch whose timer ran out. False if
    /// this node must stay quiet (a newcomer that has not learned the epoch).
    fn begin_round(&mut self) -> bool {
        if self.common_mut().epochs.tick() {
            let next = self.common().epochs.number.saturating_add(1);
            let estimate = self.current();
            self.common_mut().epochs.complete(estimate, next);
            self.restart();
        }
        !self.common().epochs.fresh
    }

    /// Applies a share's epoch: false if the share is stale; a later epoch
    /// completes ours and restarts first.
    fn admit(&mut self, epoch: u64) -> bool {
        match self.common_mut().epochs.admit(epoch) {
            Admit::Stale => false,
            Admit::Current => true,
            Admit::Later => {
                let estimate = self.current();
                self.common_mut().epochs.complete(estimate, epoch);
                self.restart();
                true
            }
        }
    }

    /// What the node reports: the last completed epoch's estimate with
    /// epochs, the current one without.
    fn reported(&self) -> Option<f64> {
        let epochs = &self.common().epochs;
        if epochs.length.is_some() {
            epochs.completed
        } else {
            self.current()
        }
    }

    /// Turns a fresh node into one joining a computation under way.
    fn make_newcomer(&mut self) {
        let length = self.common().epochs.length;
        self.common_mut().epochs = Epochs::new(length, true);
        self.restart();
    }
}

/// Whether every value a share carries is a finite number: a NaN or an
/// infinity from one peer would otherwise poison every estimate.
pub(crate) fn all_finite(values: &[f64]) -> bool {
    values.iter().all(|v| v.is_finite())
}

/// What every share must respect, and how large each algorithm's
/// collections may grow. Every share may come from a liar: one that breaks
/// a limit is rejected whole, changes nothing and is counted in
/// [`Rejections`].
///
/// Each algorithm reads the fields that concern it; all have defaults, so
/// a config written before a field existed still loads.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Largest weight one share may carry, in units of one node's starting
    /// weight (1 for averages, min and max; for sums and counts the whole
    /// system's weight is 1). Unit: node weights; range: finite and at
    /// least 1. Default 64: weights are conserved and spread evenly, so an
    /// honest node holds one unit on average and sends at most half of
    /// what it holds (no honest run in `tests/forged.rs`, under loss and
    /// churn, comes near the cap), while a liar's share can add no more than 64 nodes'
    /// worth of weight. Push-sum masses, push-pull requests, gifts and the
    /// pair a reply implies, and flow-updating flows and estimates are
    /// checked against it. NaN reads as the default, a value below 1 as 1.
    pub max_share_weight: f64,
    /// The interval every honest input lies in, if the application knows
    /// one (for example `(0.0, 100.0)` for a percentage). When set, for an
    /// average a share whose pair `x / y` lies outside it (and a flow
    /// larger than `max_share_weight` inputs at the interval's largest
    /// magnitude) is rejected, and so is any extreme outside it: a member
    /// that lies can then move an average only as far as an input inside
    /// the interval would. Sums and counts ignore it (a partial sum is no
    /// input). An empty range (low above high, or NaN) is ignored.
    /// Default: none (any finite value).
    pub value_range: Option<(f64, f64)>,
    /// Push-pull: most requests awaiting a reply; beyond it the oldest is
    /// forgotten (its reply, if it ever comes, is then refused). Unit:
    /// requests; range: at least 1. Default 16: a node starts one exchange
    /// per round, so with `reply_timeout` 8 at most 8 are outstanding.
    pub max_outstanding: usize,
    /// Push-pull: rounds after which a request with no reply is forgotten.
    /// Unit: rounds; range: at least 1. Default 8 (1.6 s at the LAN
    /// gossip interval of 200 ms): a reply takes one round trip, far less
    /// than a round on a LAN; a later one is refused, which loses the
    /// responder's half of the exchange like a lost reply would.
    pub reply_timeout: u32,
    /// Flow updating: most neighbours (links) a node keeps. Unit: links;
    /// range: at least twice the leader's `16 x degree`. Default 256: a node
    /// picks `degree` neighbours (the leader of a sum or count 16 times as
    /// many, 64 at degree 4) and is picked by about `degree` others; 256
    /// leaves room for four times the leader's own picks. Links a stranger
    /// asks for are refused once the node holds `max_links` less its own
    /// picks' worth, so the node's own picks always fit under the cap (see
    /// [`FlowUpdating`](crate::FlowUpdating)).
    pub max_links: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_share_weight: 64.0,
            value_range: None,
            max_outstanding: 16,
            reply_timeout: 8,
            max_links: 256,
        }
    }
}

/// Shares an aggregate refused since it was built, by reason. A refused
/// share changed nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Rejections {
    /// A value that is not a finite number (or an infinite extreme other
    /// than the function's neutral one), or a negative weight where
    /// weights cannot be negative (masses, requests, gifts, the pair a
    /// reply implies).
    pub malformed: u64,
    /// A weight above [`Limits::max_share_weight`].
    pub too_heavy: u64,
    /// A value outside [`Limits::value_range`].
    pub out_of_range: u64,
    /// A push-pull reply that answers no outstanding request of ours to
    /// its sender.
    pub unsolicited: u64,
    /// A flow-updating link refused because the node holds
    /// [`Limits::max_links`] (less its own picks).
    pub refused_links: u64,
}

impl Rejections {
    /// All refused shares.
    pub fn total(&self) -> u64 {
        self.malformed + self.too_heavy + self.out_of_range + self.unsolicited + self.refused_links
    }

    pub(crate) fn count(&mut self, reason: Reject) {
        let slot = match reason {
            Reject::Malformed => &mut self.malformed,
            Reject::TooHeavy => &mut self.too_heavy,
            Reject::OutOfRange => &mut self.out_of_range,
            Reject::Unsolicited => &mut self.unsolicited,
            Reject::RefusedLink => &mut self.refused_links,
        };
        *slot = slot.saturating_add(1);
    }
}

/// Why a share was refused (see [`Rejections`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reject {
    Malformed,
    TooHeavy,
    OutOfRange,
    Unsolicited,
    RefusedLink,
}

/// Relative slack for rounding when a pair is checked against the value
/// range: honest pairs are mediants of in-range pairs, off by a few ulps.
const RANGE_SLACK: f64 = 1e-9;

impl Limits {
    /// `max_share_weight` as used: NaN reads as the default, anything
    /// below 1 as 1 (an honest node's own weight must pass).
    fn weight_cap(&self) -> f64 {
        if self.max_share_weight.is_nan() {
            Limits::default().max_share_weight
        } else {
            self.max_share_weight.max(1.0)
        }
    }

    /// `value_range` as used: an empty or NaN range is ignored.
    fn range(&self) -> Option<(f64, f64)> {
        self.value_range.filter(|&(lo, hi)| lo <= hi)
    }

    /// Checks a mass pair `(x, y)` a share moves or claims: finite, weight
    /// in `[0, max_share_weight]`, and for an average with a value range,
    /// `x / y` inside it.
    pub(crate) fn check_mass(&self, function: Function, x: f64, y: f64) -> Result<(), Reject> {
        if !all_finite(&[x, y]) || y < 0.0 {
            return Err(Reject::Malformed);
        }
        if y > self.weight_cap() {
            return Err(Reject::TooHeavy);
        }
        if function == Function::Average {
            if let Some((lo, hi)) = self.range() {
                let slack = RANGE_SLACK * lo.abs().max(hi.abs()).max(1.0) * y
                    + 4.0 * f64::EPSILON * x.abs();
                if x < lo * y - slack || x > hi * y + slack {
                    return Err(Reject::OutOfRange);
                }
            }
        }
        Ok(())
    }

    /// Checks a flow `(fx, fy)` a flow-updating neighbour claims: finite,
    /// weight part at most `max_share_weight` either way, and for an
    /// average with a value range, a value part at most that many inputs
    /// of the range's largest magnitude either way.
    pub(crate) fn check_flow(&self, function: Function, fx: f64, fy: f64) -> Result<(), Reject> {
        if !all_finite(&[fx, fy]) {
            return Err(Reject::Malformed);
        }
        if fy.abs() > self.weight_cap() {
            return Err(Reject::TooHeavy);
        }
        if function == Function::Average {
            if let Some((lo, hi)) = self.range() {
                if fx.abs() > self.weight_cap() * lo.abs().max(hi.abs()) * (1.0 + RANGE_SLACK) {
                    return Err(Reject::OutOfRange);
                }
            }
        }
        Ok(())
    }

    /// Checks the estimate `(ex, ey)` a flow-updating neighbour sends:
    /// finite, weight at most `max_share_weight` either way, and for an
    /// average with a value range, `ex / ey` inside it (for a weight that
    /// is not positive, `|ex|` at most `|ey|` inputs of the range's largest
    /// magnitude). Unlike a mass, such an estimate is the sender's input
    /// minus its flows, and under churn a sum's or count's estimate
    /// honestly dips below zero weight for a while: the sign is no lie.
    pub(crate) fn check_estimate(
        &self,
        function: Function,
        ex: f64,
        ey: f64,
    ) -> Result<(), Reject> {
        if ey >= 0.0 {
            return self.check_mass(function, ex, ey);
        }
        if !all_finite(&[ex, ey]) {
            return Err(Reject::Malformed);
        }
        if -ey > self.weight_cap() {
            return Err(Reject::TooHeavy);
        }
        if function == Function::Average {
            if let Some((lo, hi)) = self.range() {
                let bound = -ey * lo.abs().max(hi.abs()) * (1.0 + RANGE_SLACK);
                if ex.abs() > bound {
                    return Err(Reject::OutOfRange);
                }
            }
        }
        Ok(())
    }

    /// Checks an extreme: NaN is malformed; an infinity is accepted only as
    /// the function's neutral value (what a node that has seen nothing
    /// holds, which changes nothing), the other one would make every node
    /// report it; with a value range, a finite extreme must lie inside it.
    pub(crate) fn check_extreme(&self, function: Function, value: f64) -> Result<(), Reject> {
        if value.is_nan() {
            return Err(Reject::Malformed);
        }
        if value.is_infinite() {
            let neutral = if function == Function::Min {
                f64::INFINITY
            } else {
                f64::NEG_INFINITY
            };
            return if value == neutral {
                Ok(())
            } else {
                Err(Reject::Malformed)
            };
        }
        if let Some((lo, hi)) = self.range() {
            if value < lo || value > hi {
                return Err(Reject::OutOfRange);
            }
        }
        Ok(())
    }
}

/// The `(x, y)` mass pair that push-sum and push-pull move around, with the
/// epoch life cycle around it; the estimate is `x / y`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Pair {
    pub common: Common,
    pub x: f64,
    pub y: f64,
    /// Whether this node has scattered its pair this epoch (see
    /// [`Pair::scatter`]).
    pub scattered: bool,
}

impl Pair {
    pub fn new(function: Function, input: Input, epoch_length: Option<u32>) -> Self {
        let (x, y) = function.initial(input);
        Self {
            common: Common::new(function, input, epoch_length),
            x,
            y,
            scattered: false,
        }
    }
}

impl Pair {
    /// Peers the leader of a sum or count hands its pair to when an epoch
    /// starts (see [`Pair::scatter`]).
    pub const SCATTER: usize = 64;

    /// For the leader of a sum or count in the first round of an epoch,
    /// splits the pair in `peers + 1` equal slices, keeps one and returns
    /// the slice for each of `peers` peers; `None` for everyone else and in
    /// later rounds.
    ///
    /// The leader holds all of a sum's or count's weight when an epoch
    /// starts. Handed over to one peer (half of it, in push-sum and
    /// push-pull), it leaves a single other node holding half of it, and
    /// under churn that node leaving in the next rounds (1% a round at 1%
    /// churn) halves the epoch's weight and doubles its estimate. In
    /// [`Pair::SCATTER`] slices, any one departure takes little of it.
    pub fn scatter(&mut self, peers: usize) -> Option<(f64, f64)> {
        if !self.common.anchors() || self.scattered || peers == 0 {
            return None;
        }
        self.scattered = true;
        let slices = peers as f64 + 1.0;
        self.x /= slices;
        self.y /= slices;
        Some((self.x, self.y))
    }

    /// Changes the node's input: the difference joins the mass this node
    /// holds, so the total (and every estimate, once mixed) moves to the
    /// new aggregate within the epoch under way, mass conserved otherwise.
    pub fn set_input(&mut self, value: f64) {
        let (dx, dy) = self.common.set_input(value);
        self.x += dx;
        self.y += dy;
    }

    /// Whether [`Pair::scatter`] is due.
    pub fn scatter_due(&self) -> bool {
        self.common.anchors() && !self.scattered
    }

    /// When [`Pair::scatter`] is due, samples [`Pair::SCATTER`] peers and
    /// sends each its slice as the share `slice(epoch, x, y)` builds;
    /// returns whether it was due.
    pub fn scatter_to<S, H: AggregateHost<S>>(
        &mut self,
        host: &mut H,
        slice: impl Fn(u64, f64, f64) -> S,
    ) -> bool {
        if !self.scatter_due() {
            return false;
        }
        let epoch = self.common.epochs.number;
        let mut peers = Vec::with_capacity(Pair::SCATTER);
        host.sample_peers(Pair::SCATTER, &mut peers);
        if let Some((x, y)) = self.scatter(peers.len()) {
            for to in peers {
                host.send(to, slice(epoch, x, y));
            }
        }
        true
    }
}

impl Epochal for Pair {
    fn common(&self) -> &Common {
        &self.common
    }
    fn common_mut(&mut self) -> &mut Common {
        &mut self.common
    }
    fn ratio(&self) -> Option<f64> {
        (self.y > 0.0).then(|| self.x / self.y)
    }
    fn reset(&mut self) {
        (self.x, self.y) = self.common.start();
        self.scattered = false;
    }
}
