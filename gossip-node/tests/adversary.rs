//! Issue 11's invariants under every kind of simulated adversary: an
//! outsider sends forged, well-formed frames to a small cluster (30 nodes,
//! two of which crash during the attack), and the cluster must keep
//!
//! - every healthy member up, save for at most one suspicion timeout,
//! - no never-existing member alive in any view,
//! - what it sends to unproven addresses within 3x what it got from them,
//! - every member table within `max_members`,
//! - crash detection within 1.5x of its figure without the attack,
//! - (rumor-forge) every real broadcast delivered to every live node.
//!
//! Each kind's run is shared by its tests (one run per kind per test
//! binary). Half the attacker's frames name the members it impersonates
//! (refused: a frame speaks only for its source address), half name the
//! attacker itself and reach the core's other rules.

use std::num::NonZeroUsize;
use std::sync::OnceLock;
use std::time::Duration;

use gossip_core::Config;
use gossip_node::cli::run_membership_scenario;
use gossip_sim::{
    AdversaryKind, AdversarySpec, AttackReport, MembershipReport, MembershipScenario,
};

const NODES: usize = 30;
/// Small enough that a flood of fakes reaches it.
const MAX_MEMBERS: usize = 4 * NODES;

/// The cluster shared by every run: 30 nodes for 30 s, two crashing at
/// 15 s, the attack (if any) from 8 s to the end.
fn scenario(adversary: Option<AdversaryKind>) -> MembershipScenario {
    let mut s = MembershipScenario::new(NODES);
    s.seed = 11;
    s.duration = Duration::from_secs(30);
    s.crash = 2;
    s.crash_at = Duration::from_secs(15);
    let mut config = Config::lan(NODES);
    config.max_members = NonZeroUsize::new(MAX_MEMBERS).expect("non-zero");
    s.config = config;
    s.adversary = adversary.map(|kind| {
        // Rumor forgeries spread like real rumors, so fewer frames keep the
        // run short.
        let rate = if kind == AdversaryKind::RumorForge {
            50.0
        } else {
            100.0
        };
        AdversarySpec::new(kind, rate, Duration::from_secs(8), s.duration)
    });
    s
}

fn run(adversary: Option<AdversaryKind>) -> MembershipReport {
    run_membership_scenario(&scenario(adversary), |_| {}).expect("scenario runs")
}

/// The run under `kind`, computed once per test binary.
fn report(kind: AdversaryKind) -> &'static MembershipReport {
    static REPORTS: [OnceLock<MembershipReport>; 7] = [const { OnceLock::new() }; 7];
    let slot = AdversaryKind::ALL
        .iter()
        .position(|&k| k == kind)
        .expect("a listed kind");
    REPORTS[slot].get_or_init(|| run(Some(kind)))
}

fn attack(kind: AdversaryKind) -> &'static AttackReport {
    let attack = report(kind).attack.as_ref().expect("an attack report");
    let (start, stop) = attack.adversary_window_s;
    let planned = attack.adversary_rate * (stop - start);
    // Frames to the two crashed nodes are dropped; all others arrive.
    assert!(
        attack.adversary_traffic.frames_delivered as f64 >= 0.8 * planned,
        "{}: the attack reached the nodes ({:?})",
        kind.name(),
        attack.adversary_traffic
    );
    attack
}

fn baseline() -> &'static MembershipReport {
    static BASELINE: OnceLock<MembershipReport> = OnceLock::new();
    BASELINE.get_or_init(|| run(None))
}

fn healthy_members_stay_up(kind: AdversaryKind) {
    let a = attack(kind);
    assert!(
        a.healthy_down_max_s <= a.suspicion_timeout_s,
        "{}: a healthy member was held down {:.2} s, above one suspicion timeout ({:.2} s); \
         healthy_members_down {}",
        kind.name(),
        a.healthy_down_max_s,
        a.suspicion_timeout_s,
        a.healthy_members_down
    );
}

fn no_fake_member_alive(kind: AdversaryKind) {
    let a = attack(kind);
    assert_eq!(
        a.fake_members_alive_max,
        0,
        "{}: fake_members_alive_max {} (max table length {})",
        kind.name(),
        a.fake_members_alive_max,
        a.max_table_len
    );
}

fn reflection_at_most_3x(kind: AdversaryKind) {
    let a = attack(kind);
    let ratio = a
        .reflection_ratio
        .expect("the attacker's frames were received");
    assert!(
        ratio <= 3.0,
        "{}: reflection_ratio {ratio:.2} ({} B sent to unproven addresses for {} B received)",
        kind.name(),
        a.unproven_bytes_sent,
        a.unproven_bytes_received
    );
}

fn tables_within_bounds(kind: AdversaryKind) {
    let a = attack(kind);
    assert_eq!(a.max_members, MAX_MEMBERS);
    assert!(
        a.max_table_len <= a.max_members,
        "{}: max_table_len {} above max_members {}",
        kind.name(),
        a.max_table_len,
        a.max_members
    );
    assert!(
        a.max_table_len >= NODES,
        "every node lists the whole cluster"
    );
}

fn detection_within_1_5x(kind: AdversaryKind) {
    let quiet = baseline()
        .detection_s
        .as_ref()
        .and_then(|q| q.max)
        .expect("crashes detected without attack");
    let r = report(kind);
    let under_attack = r.detection_s.as_ref().and_then(|q| q.max);
    assert!(
        under_attack.is_some_and(|d| d <= 1.5 * quiet),
        "{}: crash detection under attack {under_attack:?} s, without attack {quiet:.2} s",
        kind.name()
    );
}

/// One test per invariant for `$kind`, each named after the check it
/// runs; attributes before a name (an `#[ignore]`) go on that test.
macro_rules! invariants {
    ($kind:expr; $($(#[$meta:meta])* $check:ident),* $(,)?) => {
        $(
            #[test]
            $(#[$meta])*
            fn $check() {
                crate::adversary::$check($kind);
            }
        )*
    };
}

mod forge_dead {
    use super::*;
    invariants!(
        AdversaryKind::ForgeDead;
        healthy_members_stay_up,
        no_fake_member_alive,
        reflection_at_most_3x,
        tables_within_bounds,
        detection_within_1_5x,
    );
}

mod forge_left {
    use super::*;
    invariants!(
        AdversaryKind::ForgeLeft;
        healthy_members_stay_up,
        no_fake_member_alive,
        reflection_at_most_3x,
        tables_within_bounds,
        detection_within_1_5x,
    );
}

mod forge_alive {
    use super::*;
    invariants!(
        AdversaryKind::ForgeAlive;
        healthy_members_stay_up,
        no_fake_member_alive,
        reflection_at_most_3x,
        tables_within_bounds,
        detection_within_1_5x,
    );
}

mod join_flood {
    use super::*;
    invariants!(
        AdversaryKind::JoinFlood;
        healthy_members_stay_up,
        no_fake_member_alive,
        reflection_at_most_3x,
        tables_within_bounds,
        detection_within_1_5x,
    );
}

mod ping_flood {
    use super::*;
    invariants!(
        AdversaryKind::PingFlood;
        healthy_members_stay_up,
        no_fake_member_alive,
        reflection_at_most_3x,
        tables_within_bounds,
        detection_within_1_5x,
    );
}

mod reflect {
    use super::*;
    invariants!(
        AdversaryKind::Reflect;
        healthy_members_stay_up,
        no_fake_member_alive,
        reflection_at_most_3x,
        tables_within_bounds,
        detection_within_1_5x,
    );
}

mod rumor_forge {
    use super::*;
    invariants!(
        AdversaryKind::RumorForge;
        healthy_members_stay_up,
        no_fake_member_alive,
        reflection_at_most_3x,
        tables_within_bounds,
        detection_within_1_5x,
    );

    #[test]
    fn real_broadcasts_reach_every_live_node() {
        let a = attack(AdversaryKind::RumorForge);
        let sent = a.broadcasts.expect("rumor-forge counts broadcasts");
        assert!(sent >= 5, "real broadcasts were made during the attack");
        assert_eq!(
            a.broadcasts_undelivered,
            Some(0),
            "rumor-forge: {:?} of {sent} real broadcasts not delivered to every live node \
             ({:?} forged deliveries)",
            a.broadcasts_undelivered,
            a.forged_deliveries
        );
    }
}

/// The measurement itself: without an attack there is nothing to report,
/// and the quiet run is what detection is compared with.
#[test]
fn the_quiet_run_has_no_attack_report_and_detects_its_crashes() {
    let r = baseline();
    assert!(r.attack.is_none());
    assert_eq!(r.false_positives, 0);
    let detection = r.detection_s.as_ref().expect("two crashes");
    assert!(detection.max.is_some_and(|d| d < 15.0), "{detection:?}");
}
