//! Admission: claims that only the member they name can prove.
//!
//! A claim that a new address is a member, that a member started a new
//! life, or that a member believed down is alive again, is taken only from
//! the member's own answer to a `Verify` challenge: a random number sent to
//! the address the claim names, which only whoever receives at that
//! address can echo. Until then the claim waits here, within a bound.

use std::time::Instant;

use crate::id::NodeId;
use crate::membership::{IdMap, Metadata, Version};

/// A claim waiting for its member's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Candidate {
    /// The challenge sent; only an ack echoing it proves the claim.
    pub seq: u32,
    /// The version the claim states.
    pub version: Version,
    /// The metadata the claim states.
    pub metadata: Metadata,
    /// The claim was the member's own join, carrying this nonce: answer it
    /// with our state once it is proven.
    pub answer_join: Option<u32>,
    /// The claim came as news (a join, a gossiped record) rather than as
    /// bulk state or a challenge: once proven it is passed on, as news is.
    pub news: bool,
    /// When the claim is dropped if still unproven.
    pub expires: Instant,
    /// Challenges sent so far.
    pub sent: u8,
}

/// Most challenges sent for one claim: one more after a loss, and no more,
/// so that an address which never asked receives little.
pub(crate) const MAX_CHALLENGES: u8 = 2;

/// What [`Candidates::propose`] decided.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Proposal {
    /// A new candidate: send it this challenge.
    Challenge(u32),
    /// Its challenge (this one) is already out; the claim was merged into it.
    Waiting(u32),
    /// The bound is reached: the claim is dropped.
    Full,
}

/// What a candidate's timeout calls for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Timeout {
    /// Send the challenge again.
    Resend(u32),
    /// Wait for an answer until then.
    Wait(Instant),
    /// The claim expired unproven and was dropped.
    Expired,
    /// Nothing waits (proven meanwhile).
    Gone,
}

/// The claims waiting for proof, at most `max_candidates` of them.
#[derive(Debug, Default)]
pub(crate) struct Candidates {
    waiting: IdMap<Candidate>,
}

impl Candidates {
    /// Records that `id` claims (or is claimed) to be a member as `claim`
    /// says (its `seq` and `sent` are filled in here); `seq` draws a
    /// challenge if a new one is needed.
    pub(crate) fn propose(
        &mut self,
        id: NodeId,
        mut claim: Candidate,
        max: usize,
        seq: impl FnOnce() -> u32,
    ) -> Proposal {
        if let Some(waiting) = self.waiting.get_mut(&id) {
            if claim.version > waiting.version {
                waiting.version = claim.version;
                waiting.metadata = claim.metadata;
            }
            if claim.answer_join.is_some() {
                waiting.answer_join = claim.answer_join;
            }
            waiting.news |= claim.news;
            return Proposal::Waiting(waiting.seq);
        }
        if self.waiting.len() >= max {
            return Proposal::Full;
        }
        claim.seq = seq();
        claim.sent = 1;
        let challenge = claim.seq;
        self.waiting.insert(id, claim);
        Proposal::Challenge(challenge)
    }

    /// An ack echoing `seq` came from `id` itself: the candidate, if that
    /// was its challenge.
    pub(crate) fn prove(&mut self, id: NodeId, seq: u32) -> Option<Candidate> {
        if self.waiting.get(&id)?.seq != seq {
            return None;
        }
        let proven = self.waiting.remove(&id);
        self.give_back_room();
        proven
    }

    /// A cold start challenges every member at once; once the answers are
    /// in, the map gives back the room of that peak instead of keeping it
    /// for the node's life.
    fn give_back_room(&mut self) {
        if self.waiting.capacity() > 64 && self.waiting.len() * 4 < self.waiting.capacity() {
            self.waiting.shrink_to_fit();
        }
    }

    /// The candidate's wait for an answer is up at `now`.
    pub(crate) fn timed_out(&mut self, id: &NodeId, now: Instant) -> Timeout {
        let Some(candidate) = self.waiting.get_mut(id) else {
            return Timeout::Gone;
        };
        if candidate.expires <= now {
            self.waiting.remove(id);
            self.give_back_room();
            return Timeout::Expired;
        }
        if candidate.sent >= MAX_CHALLENGES {
            return Timeout::Wait(candidate.expires);
        }
        candidate.sent += 1;
        Timeout::Resend(candidate.seq)
    }

    /// Whether a claim about `id` waits for its answer.
    pub(crate) fn contains(&self, id: &NodeId) -> bool {
        self.waiting.contains_key(id)
    }

    /// Candidates waiting now.
    pub(crate) fn len(&self) -> usize {
        self.waiting.len()
    }

    /// A departed node admits nobody.
    pub(crate) fn clear(&mut self) {
        self.waiting.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{Generation, Incarnation};
    use std::net::SocketAddr;
    use std::time::Duration;

    fn id(n: u16) -> NodeId {
        NodeId::new(SocketAddr::from(([127, 0, 0, 1], n)))
    }

    fn v(generation: u64, incarnation: u32) -> Version {
        (Generation(generation), Incarnation(incarnation))
    }

    #[allow(clippy::disallowed_methods)] // an arbitrary origin; only differences matter
    fn origin() -> Instant {
        Instant::now()
    }

    fn claim(version: Version, metadata: Vec<u8>, flag: bool, expires: Instant) -> Candidate {
        Candidate {
            seq: 0,
            version,
            metadata: Metadata::new(&metadata),
            answer_join: flag.then_some(5),
            news: flag,
            expires,
            sent: 0,
        }
    }

    #[test]
    fn one_challenge_per_candidate_within_the_bound() {
        let now = origin();
        let at = now + Duration::from_secs(5);
        let mut candidates = Candidates::default();
        let first = candidates.propose(id(1), claim(v(1, 0), vec![1], false, at), 2, || 7);
        assert_eq!(first, Proposal::Challenge(7));
        let again = candidates.propose(
            id(1),
            claim(v(1, 3), vec![2], true, at),
            2,
            || unreachable!(),
        );
        assert_eq!(again, Proposal::Waiting(7), "one challenge out per address");
        assert_eq!(
            candidates.propose(id(2), claim(v(1, 0), vec![], false, at), 2, || 8),
            Proposal::Challenge(8)
        );
        assert_eq!(
            candidates.propose(id(3), claim(v(1, 0), vec![], false, at), 2, || 9),
            Proposal::Full
        );
        assert_eq!(candidates.len(), 2);

        assert_eq!(
            candidates.prove(id(1), 8),
            None,
            "another candidate's challenge"
        );
        assert_eq!(candidates.prove(id(3), 9), None, "never challenged");
        let proven = candidates.prove(id(1), 7).expect("its own challenge");
        assert_eq!(
            (proven.version, proven.metadata.to_vec(), proven.answer_join),
            (v(1, 3), vec![2], Some(5))
        );
        assert!(candidates.prove(id(1), 7).is_none(), "a proof counts once");
        assert_eq!(
            candidates.timed_out(&id(2), now),
            Timeout::Resend(8),
            "asked again"
        );
        assert_eq!(
            candidates.timed_out(&id(2), now),
            Timeout::Wait(at),
            "but only once"
        );
        assert_eq!(candidates.timed_out(&id(2), at), Timeout::Expired);
        assert_eq!(candidates.timed_out(&id(2), at), Timeout::Gone);
        assert_eq!(candidates.len(), 0);
    }
}
