//! The scenario the cluster examples share, over whatever transport they
//! bind: the nodes join, the first broadcasts, the last leaves gracefully.
//! Every event is printed as it happens.

use std::collections::HashSet;
use std::error::Error;
use std::net::SocketAddr;
use std::time::Duration;

use gossip_agent::{Agent, AgentConfig, AgentHandle, Transport};
use gossip_core::{Config, Event, Generation, Node, NodeId};
use gossip_strategies::RumorMongering;
use tokio::sync::mpsc;

/// Each step waits at most this long, so a broken network ends the run
/// with an error instead of hanging.
const STEP_LIMIT: Duration = Duration::from_secs(5);

/// The broadcast the first node sends.
pub const GREETING: &[u8] = b"hello from node 0";

/// What the run observed.
#[derive(Debug)]
pub struct Outcome {
    /// Nodes (by index) that delivered the greeting.
    pub delivered: Vec<usize>,
    /// Nodes (by index) that saw the last node leave.
    pub saw_leave: Vec<usize>,
}

impl Outcome {
    /// Prints the summary line the examples end with.
    pub fn print(&self, nodes: usize) {
        println!(
            "done: nodes {:?} delivered the broadcast, nodes {:?} saw node {} leave",
            self.delivered,
            self.saw_leave,
            nodes - 1
        );
    }
}

type Handle = AgentHandle<RumorMongering>;
type Tagged = (usize, Event);

/// Runs the scenario on one node per transport (at least two), all with
/// `config`.
pub async fn join_broadcast_leave<T: Transport + 'static>(
    transports: Vec<T>,
    config: Config,
) -> Result<Outcome, Box<dyn Error>> {
    let n = transports.len();
    assert!(n >= 2, "the scenario needs two nodes or more");
    let (tx, mut events) = mpsc::unbounded_channel();
    let mut agents: Vec<Handle> = Vec::new();
    for (i, transport) in transports.into_iter().enumerate() {
        let id = NodeId::new(transport.local_addr());
        let node = Node::with_strategy(
            config.clone(),
            id,
            Generation(1),
            i as u64,
            RumorMongering::default(),
        )?;
        let agent = Agent::spawn(node, transport, AgentConfig::default())?;
        // Subscribed before joining, so no event is missed.
        forward(&agent, i, tx.clone());
        println!("node {i} listens at {}", agent.id());
        agents.push(agent);
    }
    drop(tx);

    let seed = agents[0].id();
    for (i, agent) in agents.iter().enumerate() {
        let seeds = if i == 0 { vec![] } else { vec![seed] };
        agent.join(seeds).await?;
    }
    let mut up = HashSet::new();
    until(&mut events, "every node to see every other", |i, event| {
        if let Event::MemberUp(m) = event {
            up.insert((i, m.id.addr()));
        }
        up.len() == n * (n - 1)
    })
    .await?;

    agents[0].broadcast(GREETING.to_vec()).await?;
    let mut delivered = HashSet::new();
    until(
        &mut events,
        "the broadcast to reach every node",
        |i, event| {
            if matches!(event, Event::Delivered { payload, .. } if payload == GREETING) {
                delivered.insert(i);
            }
            // The origin does not deliver its own broadcast to itself.
            delivered.len() == n - 1
        },
    )
    .await?;

    let last = n - 1;
    let leaving: SocketAddr = agents[last].id();
    println!("node {last} leaves");
    agents[last].leave().await?;
    let mut saw_leave = HashSet::new();
    until(&mut events, "the others to see the leave", |i, event| {
        if matches!(event, Event::MemberLeft(m) if m.id.addr() == leaving) {
            saw_leave.insert(i);
        }
        saw_leave.len() == n - 1
    })
    .await?;

    leave_all(&agents[..last]).await?;
    let mut delivered: Vec<usize> = delivered.into_iter().collect();
    delivered.sort_unstable();
    let mut saw_leave: Vec<usize> = saw_leave.into_iter().collect();
    saw_leave.sort_unstable();
    Ok(Outcome {
        delivered,
        saw_leave,
    })
}

/// Has every agent leave at once: each lingers while its farewell spreads,
/// and one after another the lingering would add up.
pub async fn leave_all<S, A>(agents: &[AgentHandle<S, A>]) -> Result<(), Box<dyn Error>>
where
    S: gossip_core::Strategy + 'static,
    A: gossip_core::Aggregate + 'static,
{
    let leaving: Vec<_> = agents
        .iter()
        .cloned()
        .map(|agent| tokio::spawn(async move { agent.leave().await }))
        .collect();
    for left in leaving {
        left.await??;
    }
    Ok(())
}

/// Copies agent `i`'s events, tagged with `i`, into one stream.
fn forward(agent: &Handle, i: usize, into: mpsc::UnboundedSender<Tagged>) {
    let mut events = agent.subscribe();
    tokio::spawn(async move {
        // Ends when the agent stops (or, in this short run, never lags).
        while let Ok(event) = events.recv().await {
            if into.send((i, event)).is_err() {
                return;
            }
        }
    });
}

/// Prints events until `done` says the step is complete, for at most
/// [`STEP_LIMIT`].
async fn until(
    events: &mut mpsc::UnboundedReceiver<Tagged>,
    step: &str,
    mut done: impl FnMut(usize, &Event) -> bool,
) -> Result<(), Box<dyn Error>> {
    let waited = tokio::time::timeout(STEP_LIMIT, async {
        while let Some((i, event)) = events.recv().await {
            println!("node {i}: {}", describe(&event));
            if done(i, &event) {
                return true;
            }
        }
        false
    })
    .await;
    match waited {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!("every agent stopped while waiting for {step}").into()),
        Err(_) => Err(format!("timed out after {STEP_LIMIT:?} waiting for {step}").into()),
    }
}

fn describe(event: &Event) -> String {
    match event {
        Event::MemberUp(m) => format!("{} is up", m.id.addr()),
        Event::MemberLeft(m) => format!("{} left", m.id.addr()),
        Event::MemberDown(m) => format!("{} is down", m.id.addr()),
        Event::Delivered { id, payload } => format!(
            "delivered {:?} from {}",
            String::from_utf8_lossy(payload),
            id.origin.addr()
        ),
        other => format!("{other:?}"),
    }
}
