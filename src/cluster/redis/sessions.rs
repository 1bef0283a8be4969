//! This node's sessions (pid → member) as the worker last recorded them, so that those
//! that began or ended while Redis was away, or all of them once Redis lost its data, are
//! written back to `P:pids:{node}` and stay resumable on another node.

use std::collections::{HashMap, HashSet};

use redis::aio::MultiplexedConnection;

use super::Worker;
use crate::cluster::ClusterError;

/// Sessions written back in one pipelined command.
const CHUNK: usize = 1000;

/// What the worker keeps of this node's sessions.
#[derive(Default)]
pub(super) struct Sessions {
    /// pid → member of every session open here.
    open: HashMap<String, String>,
    /// Pids that began or ended while Redis was away.
    unsynced: HashSet<String>,
}

impl Sessions {
    /// A session of this node began (`on`) or ended; `synced` when Redis recorded it.
    pub(super) fn note(&mut self, pid: &str, member: &str, on: bool, synced: bool) {
        if on {
            self.open.insert(pid.to_owned(), member.to_owned());
        } else {
            self.open.remove(pid);
        }
        if !synced {
            self.unsynced.insert(pid.to_owned());
        }
    }
}

impl Worker {
    /// Writes back what Redis does not know of this node's sessions: all of them when
    /// it lost its data or the others removed this node (its record went with it),
    /// otherwise the changes made while it was away.
    pub(super) async fn write_sessions_back(
        &mut self,
        conn: &mut MultiplexedConnection,
        data_lost: bool,
    ) -> Result<(), ClusterError> {
        let key = self.keys.pids(&self.node);
        let all = data_lost || {
            let kept: bool = redis::cmd("EXISTS")
                .arg(&key)
                .query_async(conn)
                .await
                .map_err(ClusterError::redis("reading this node's sessions"))?;
            !kept
        };
        let (open, unsynced) = (&self.sessions.open, &self.sessions.unsynced);
        let pids: Vec<&String> = if all {
            open.keys().collect()
        } else {
            unsynced.iter().collect()
        };
        for chunk in pids.chunks(CHUNK) {
            let mut pipe = redis::pipe();
            let (mut set, mut gone) = (redis::cmd("HSET"), Vec::new());
            set.arg(&key);
            let mut any = false;
            for pid in chunk {
                match open.get(*pid) {
                    Some(member) => {
                        set.arg(pid.as_str()).arg(member);
                        any = true;
                    }
                    None => gone.push(pid.as_str()),
                }
            }
            if any {
                pipe.add_command(set).ignore();
            }
            if !gone.is_empty() {
                pipe.cmd("HDEL").arg(&key).arg(&gone).ignore();
            }
            let _: () = pipe
                .query_async(conn)
                .await
                .map_err(ClusterError::redis("writing this node's sessions back"))?;
        }
        self.sessions.unsynced.clear();
        Ok(())
    }
}
