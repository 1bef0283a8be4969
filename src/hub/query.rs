//! Read-only views of the hub: channels and their members, counts for status lines, and
//! the probe the watchdog takes.

use std::sync::Arc;

use super::channel::Channel;
use super::{ChannelInfo, Hub, HubStats};

impl Hub {
    /// Every channel with its member count, sorted by name.
    pub fn channels(&self) -> Vec<(String, usize)> {
        let mut all = Vec::new();
        for shard in self.shards.iter() {
            if let Ok(map) = shard.channels.lock() {
                all.extend(map.iter().map(|(n, c)| (n.clone(), c.count())));
            }
        }
        all.sort();
        all
    }

    /// One channel's members (an unknown channel has none).
    pub fn channel(&self, name: &str) -> ChannelInfo {
        let Ok(map) = self.shard(name).channels.lock() else {
            return ChannelInfo::of(name, []);
        };
        let members = map.get(name).into_iter().flat_map(|ch| ch.members.keys());
        ChannelInfo::of(name, members.map(|k| &**k))
    }

    /// Takes every shard's lock once: returns true when all answered (a stuck shard never
    /// returns, which is what a watchdog built on this must detect).
    pub fn probe(&self) -> bool {
        self.shards.iter().all(|s| s.channels.lock().is_ok())
            && self.members.iter().all(|m| m.lock().is_ok())
    }

    /// TEST ONLY, reached through `REALTIME_TEST_HOOKS=1` and SIGUSR2 (see `service`): holds
    /// every shard's lock for `d` on a thread of its own, so tests can show that a stuck
    /// hub stops the systemd watchdog pings.
    pub fn hang_shards_for_test(self: &Arc<Self>, d: std::time::Duration) {
        let hub = self.clone();
        std::thread::spawn(move || {
            let held: Vec<_> = hub
                .shards
                .iter()
                .filter_map(|s| s.channels.lock().ok())
                .collect();
            std::thread::sleep(d);
            drop(held);
        });
    }

    /// Channels, members and subscriptions right now.
    pub fn stats(&self) -> HubStats {
        let mut stats = HubStats::default();
        for shard in self.shards.iter() {
            if let Ok(map) = shard.channels.lock() {
                stats.channels += map.len();
                stats.subscriptions += map.values().map(Channel::count).sum::<usize>();
            }
        }
        for reg in self.members.iter() {
            if let Ok(r) = reg.lock() {
                stats.members += r.len();
            }
        }
        stats
    }
}
