//! An outsider against five plaintext agents on real UDP sockets: the
//! attacks of issue 11, sent from a socket of its own as well-formed
//! frames. One forged death evicts nobody; a join flood admits no fake.

use crate::common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::AgentProcess;
use gossip_core::wire::{self, Header, MemberRecord, Message, Status, PROTOCOL_VERSION};
use gossip_core::{Generation, Incarnation, NodeId};

const LABEL: &str = "forged-udp";

fn start(join: Option<&str>) -> AgentProcess {
    let mut args: Vec<String> = ["--probe-interval-ms", "200", "--label", LABEL]
        .map(String::from)
        .to_vec();
    if let Some(seed) = join {
        args.extend(["--join".into(), seed.into()]);
    }
    AgentProcess::spawn(&args, false)
}

fn frame(sender: SocketAddr, message: &Message) -> Vec<u8> {
    let header = Header {
        version: PROTOCOL_VERSION,
        label: LABEL,
        sender: NodeId::new(sender),
        generation: Generation(1),
        incarnation: Incarnation(0),
    };
    wire::encode(&header, message)
}

/// The members an agent lists as alive or suspect, by address.
fn live_members(agent: &mut AgentProcess) -> Vec<String> {
    agent.say("members");
    let listing = agent
        .saw(Duration::from_secs(5), |e| e["event"] == "members")
        .expect("a member listing");
    listing["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["liveness"] == "alive" || m["liveness"] == "suspect")
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn an_outsider_can_neither_evict_a_member_nor_admit_a_fake() {
    let first = start(None);
    assert!(first
        .saw(Duration::from_secs(10), |e| e["event"] == "ready")
        .is_some());
    let seed = first.addr.clone();
    let mut agents = vec![first];
    for _ in 0..4 {
        agents.push(start(Some(&seed)));
    }
    let addrs: Vec<String> = agents.iter().map(|a| a.addr.clone()).collect();
    for agent in &mut agents {
        let all = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(200));
            live_members(agent).len() == 5
        });
        assert!(all, "{} sees all five", agent.addr);
    }

    let outsider = UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = outsider.local_addr().unwrap();
    let victim: SocketAddr = addrs[2].parse().unwrap();
    // 1. One forged death, in the victim's name at the last generation,
    // sent to every agent as the outsider itself and in a member's name.
    let death = |sender| {
        frame(
            sender,
            &Message::Gossip {
                updates: vec![MemberRecord {
                    id: NodeId::new(victim),
                    generation: Generation(u64::MAX),
                    incarnation: Incarnation(u32::MAX),
                    status: Status::Dead {
                        by: NodeId::new(sender),
                    },
                }],
            },
        )
    };
    let as_member: SocketAddr = addrs[1].parse().unwrap();
    for to in &addrs {
        for bytes in [death(me), death(as_member)] {
            outsider.send_to(&bytes, to).unwrap();
        }
    }
    // 2. A join flood: 20,000 joins naming fake 10.x members, and as many
    // naming the outsider itself (which never answers a challenge).
    for i in 0..20_000u32 {
        let fake = SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 7946));
        let to = &addrs[i as usize % addrs.len()];
        let join = Message::Join {
            nonce: 0,
            metadata: vec![],
        };
        outsider.send_to(&frame(fake, &join), to).unwrap();
        outsider.send_to(&frame(me, &join), to).unwrap();
    }
    // Eight seconds of events, read as they come (the first agent's wait
    // covers them; the others' were buffered meanwhile): nobody declares
    // the victim down.
    let down_about_victim = |e: &serde_json::Value| {
        (e["event"] == "member_down" || e["event"] == "member_left")
            && e["member"] == victim.to_string()
    };
    for (i, agent) in agents.iter().enumerate() {
        let limit = Duration::from_millis(if i == 0 { 8000 } else { 100 });
        let down = agent.saw(limit, down_about_victim);
        assert!(
            down.is_none(),
            "{} declared the victim down: {down:?}",
            agent.addr
        );
    }
    let mut expected = addrs.clone();
    expected.sort();
    for agent in &mut agents {
        let mut live = live_members(agent);
        live.sort();
        assert_eq!(
            live, expected,
            "{}: exactly the five agents are live",
            agent.addr
        );
    }
}
