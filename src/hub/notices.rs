//! Which channels tell their members of each other's joins and leaves (`onSubscribe` and
//! `onUnsubscribe`, docs/design.md#server-events): every channel, as in 2012, unless
//! `[Messaging] quiet-channels` or `notices-max-members` says otherwise. A join costs
//! one notice per member, so in a large channel the notices are most of the traffic.

/// The rule; the default sends every notice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notices {
    /// Channel names or patterns (`*` matches any run of characters) that get no notices.
    pub quiet: Vec<String>,
    /// A channel with more members than this gets no notices; 0: no limit.
    pub max_members: usize,
}

impl Notices {
    /// Whether a membership change in `channel`, which has `members` after it, is told to
    /// its members. The monitor hears every change either way.
    pub fn tell(&self, channel: &str, members: usize) -> bool {
        if self.max_members != 0 && members > self.max_members {
            return false;
        }
        !self.quiet.iter().any(|p| matches(p, channel))
    }
}

/// Whether `name` matches `pattern`, where `*` stands for any run of characters.
fn matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let mut parts: Vec<&str> = parts.collect();
    let Some(last) = parts.pop() else {
        return rest.is_empty(); // no `*`: the whole name
    };
    for part in parts {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        for (p, n, want) in [
            ("lobby", "lobby", true),
            ("lobby", "lobby2", false),
            ("*", "anything", true),
            ("*", "", true),
            ("presence.*", "presence.room1", true),
            ("presence.*", "presence", false),
            ("*.big", "room.big", true),
            ("*.big", "room.bigger", false),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "acb", false),
            ("ab*ba", "aba", false),
        ] {
            assert_eq!(matches(p, n), want, "{p} vs {n}");
        }
    }

    #[test]
    fn default_tells_every_channel_and_the_rules_silence_some() {
        assert!(Notices::default().tell("any", 1_000_000));
        let n = Notices {
            quiet: vec!["presence.*".into()],
            max_members: 100,
        };
        assert!(n.tell("chat", 100));
        assert!(!n.tell("chat", 101));
        assert!(!n.tell("presence.x", 2));
    }
}
