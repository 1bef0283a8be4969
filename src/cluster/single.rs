//! One node is the whole cluster: every change is settled by the hub's own maps, and
//! there is nobody to carry broadcasts to.

use bytes::Bytes;
use serde_json::Value;

use super::{Bus, ChannelInfo, Envelope, Presence, Query, Settle};

/// The cluster of one node.
#[derive(Debug)]
pub struct SingleNode;

impl Bus for SingleNode {
    fn publish(&self, _: &Envelope, _: &[Bytes], _: Option<&str>) {}
    fn watch(&self, _: &str, _: bool) {}
}

impl Presence for SingleNode {
    fn join(&self, _: &str, _: &str, _: &Value) -> Settle {
        Settle::Here
    }
    fn leave(&self, _: &str, _: &str, _: &Value, _: bool) -> Settle {
        Settle::Here
    }
    fn online(&self, _: &str, _: bool) -> bool {
        true
    }
    fn channels(&self) -> Query<Vec<(String, usize)>> {
        None
    }
    fn channel(&self, _: &str) -> Query<ChannelInfo> {
        None
    }
}
