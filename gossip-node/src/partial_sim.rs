//! `sim membership --membership partial`: the partial-view overlay at
//! scale, with a mass crash.

use std::io::Write;

use anyhow::bail;
use gossip_sim::{PartialReport, PartialScenario};

use crate::cli::MembershipArgs;

/// Refuses a crash fraction outside `[0, 1)`.
pub fn check_fraction(f: f64) -> anyhow::Result<()> {
    if !(f.is_finite() && (0.0..1.0).contains(&f)) {
        bail!("--crash-fraction must be in [0, 1), got {f}");
    }
    Ok(())
}

/// The partial-view scenario `args` describe, or why they cannot be run.
pub fn scenario(args: &MembershipArgs) -> anyhow::Result<PartialScenario> {
    if args.adversary.is_some()
        || args.partition_at.is_some()
        || args.slow > 0
        || args.plot.is_some()
        || !args.core.is_empty()
    {
        bail!(
            "--membership partial runs joins, broadcasts and a mass crash only: \
             --adversary, --partition-at, --slow, --plot and --core need --membership full"
        );
    }
    if args.nodes < 2 {
        bail!("--nodes must be at least 2");
    }
    if !(args.loss.is_finite() && (0.0..1.0).contains(&args.loss)) {
        bail!("--loss must be in [0, 1), got {}", args.loss);
    }
    let mut s = PartialScenario::new(args.nodes);
    s.seed = args.seed;
    s.loss = args.loss;
    if let Some(w) = args.join_window {
        crate::cli::seconds("join-window", w)?;
        s.join_window_s = w;
        s.broadcasts_from_s = w + 10.0;
    }
    s.duration_s = crate::cli::seconds("duration", args.duration)?.as_secs_f64();
    s.crash_at_s = crate::cli::seconds("crash-at", args.crash_at)?.as_secs_f64();
    s.crash_fraction = match args.crash_fraction {
        Some(f) => {
            check_fraction(f)?;
            f
        }
        None => args.crash as f64 / args.nodes as f64,
    };
    if s.crash_at_s >= s.duration_s {
        bail!(
            "--crash-at ({}) must fall within --duration ({})",
            s.crash_at_s,
            s.duration_s
        );
    }
    if s.crash_at_s <= s.broadcasts_from_s {
        bail!(
            "--crash-at ({}) must come after the joins and the first broadcasts \
             (from {} s; shorten --join-window)",
            s.crash_at_s,
            s.broadcasts_from_s
        );
    }
    Ok(s)
}

/// The report as a table.
pub fn write_table(out: &mut impl Write, r: &PartialReport) -> anyhow::Result<()> {
    let s = &r.scenario;
    writeln!(
        out,
        "partial views: {} nodes, seed {}, loss {}, joins over {:.1} s, {} crashed at {:.1} s",
        s.nodes, s.seed, s.loss, s.join_window_s, r.crashed, s.crash_at_s
    )?;
    writeln!(
        out,
        "before the crash: active view {:.2} on average, {} isolated; {} broadcasts, \
         reach min {:.4}, to all p50 {} p99 {} max {} s",
        r.active_view_mean,
        r.isolated_before_crash,
        r.broadcasts_before_crash,
        r.reach_before_crash_min,
        crate::cli::secs_or_never(r.delivery_before_crash_s.p50),
        crate::cli::secs_or_never(r.delivery_before_crash_s.p99),
        crate::cli::secs_or_never(r.delivery_before_crash_s.max)
    )?;
    writeln!(
        out,
        "  {:.3} payload copies and {:.1} announce B per node per broadcast \
         ({:.2} B per announced id); {:.1} B/node/s; {:.4} links made per node per s",
        r.payload_copies_per_node_per_broadcast,
        r.announce_bytes_per_node_per_broadcast,
        r.announce_bytes_per_id,
        r.bytes_per_node_per_s,
        r.links_made_per_node_per_s
    )?;
    writeln!(
        out,
        "after the crash: views repaired after {} s; {} broadcasts, survivor reach mean {:.4}, \
         min {:.4}; after the repair min {}, to every survivor p50 {} p99 {} max {} s",
        crate::cli::secs_or_never(r.views_repaired_s),
        r.broadcasts_after_crash,
        r.survivor_reach,
        r.survivor_reach_min,
        r.survivor_reach_after_repair_min
            .map_or_else(|| "-".to_string(), |v| format!("{v:.4}")),
        crate::cli::secs_or_never(r.delivery_after_repair_s.p50),
        crate::cli::secs_or_never(r.delivery_after_repair_s.p99),
        crate::cli::secs_or_never(r.delivery_after_repair_s.max)
    )?;
    writeln!(
        out,
        "{} frames simulated, {} refused; {:.1} CPU s",
        r.frames, r.refused_frames, r.cpu_s
    )?;
    Ok(())
}
