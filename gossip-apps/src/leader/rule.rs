//! The deterministic rule: who leads among the live members one view holds.

use gossip_core::{Liveness, Member, NodeId};

/// A member's role and priority as its own metadata states them.
///
/// Metadata is read as UTF-8 `key=value` pairs separated by `,` or `;`
/// (`role=db,priority=5`); anything else is ignored. Only a member itself
/// changes its metadata (the core's trust rule 3), so neither field can be
/// forged by a third party.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tags<'a> {
    /// The `role` value, if any.
    pub role: Option<&'a str>,
    /// The `priority` value (higher leads first); 0 if absent or unreadable.
    pub priority: u32,
}

impl<'a> Tags<'a> {
    /// Reads the tags in `metadata`.
    pub fn parse(metadata: &'a [u8]) -> Self {
        let mut tags = Tags::default();
        let Ok(text) = std::str::from_utf8(metadata) else {
            return tags;
        };
        for pair in text.split([',', ';']) {
            match pair.trim().split_once('=') {
                Some(("role", value)) => tags.role = Some(value.trim()),
                Some(("priority", value)) => tags.priority = value.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
        tags
    }
}

/// Which members may lead, and in what order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Only members whose metadata says `role=<this>` may lead; `None`:
    /// every member may.
    pub role: Option<String>,
    /// Whether a suspected member still counts as live (it may refute).
    pub suspect_is_live: bool,
}

impl Rule {
    /// Whether `member` counts as live under this rule.
    pub fn is_live(&self, member: &Member) -> bool {
        match member.liveness {
            Liveness::Alive => true,
            Liveness::Suspect => self.suspect_is_live,
            _ => false,
        }
    }

    /// Whether `member` may lead (live or not).
    pub fn is_candidate(&self, member: &Member) -> bool {
        match &self.role {
            None => true,
            Some(role) => Tags::parse(&member.metadata).role == Some(role.as_str()),
        }
    }

    /// The leader among `members`: the live candidate with the highest
    /// priority, the lowest id breaking ties. Every node with the same view
    /// picks the same one.
    pub fn leader<'m>(&self, members: impl IntoIterator<Item = &'m Member>) -> Option<NodeId> {
        members
            .into_iter()
            .filter(|m| self.is_live(m) && self.is_candidate(m))
            .min_by_key(|m| (std::cmp::Reverse(Tags::parse(&m.metadata).priority), m.id))
            .map(|m| m.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gossip_core::{Generation, Incarnation};

    fn member(port: u16, liveness: Liveness, metadata: &str) -> Member {
        Member::new(
            NodeId::new(([127, 0, 0, 1], port).into()),
            Generation(1),
            Incarnation(0),
            liveness,
            metadata.as_bytes().to_vec(),
        )
    }

    fn rule(role: Option<&str>) -> Rule {
        Rule {
            role: role.map(str::to_string),
            suspect_is_live: true,
        }
    }

    #[test]
    fn tags_read_role_and_priority_and_ignore_the_rest() {
        let tags = Tags::parse(b"zone=a, role=db; priority=7");
        assert_eq!(tags.role, Some("db"));
        assert_eq!(tags.priority, 7);
        assert_eq!(Tags::parse(&[0xff, 0xfe]), Tags::default());
        assert_eq!(Tags::parse(b"priority=x").priority, 0);
    }

    #[test]
    fn the_lowest_live_id_leads_by_default() {
        let view = [
            member(3, Liveness::Alive, ""),
            member(1, Liveness::Dead, ""),
            member(2, Liveness::Suspect, ""),
            member(0, Liveness::Left, ""),
        ];
        assert_eq!(rule(None).leader(&view), Some(view[2].id));
        let strict = Rule {
            suspect_is_live: false,
            ..rule(None)
        };
        assert_eq!(strict.leader(&view), Some(view[0].id));
    }

    #[test]
    fn role_filters_and_priority_orders() {
        let view = [
            member(1, Liveness::Alive, "role=web"),
            member(2, Liveness::Alive, "role=db"),
            member(3, Liveness::Alive, "role=db,priority=2"),
        ];
        assert_eq!(rule(Some("db")).leader(&view), Some(view[2].id));
        assert_eq!(rule(Some("web")).leader(&view), Some(view[0].id));
        assert_eq!(rule(Some("cache")).leader(&view), None);
        assert_eq!(rule(None).leader(&view), Some(view[2].id));
    }
}
