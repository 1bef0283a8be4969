//! One item of a session's outbound queue ([`Outgoing`]): its frames, and the same frames
//! encoded once as WebSocket frames, shared by every recipient of a broadcast.

use std::sync::Arc;

use bytes::Bytes;

use super::packet::{Frame, Str};
use super::wsframe;

/// One item of the outbound queue: frames that must go out together and in order (a
/// Socket.IO binary event is a text frame followed by its attachments), encoded once and
/// cheap to clone, so that one broadcast is shared by every recipient.
#[derive(Debug, Clone)]
pub struct Outgoing {
    encoded: Arc<Encoded>,
    /// Non-zero: a sequence number the layer above gave this item. Tagged items are kept in
    /// the session's history, so they can be replayed after the transport is lost.
    pub tag: u64,
    /// Nobody waits for it: a writer woken by lazy items alone lets others gather before it
    /// writes (see `session`), so a burst of them costs one write rather than one each.
    lazy: bool,
}

/// The frames, and the same frames as WebSocket frames (headers included) in one buffer:
/// what a WebSocket writer copies to its socket as is. Frame payloads are slices of it,
/// so the bytes are held once.
#[derive(Debug)]
struct Encoded {
    frames: Frames,
    ws: Bytes,
}

#[derive(Debug)]
enum Frames {
    One(Frame),
    Many(Box<[Frame]>),
}

impl Encoded {
    fn new(frames: Frames) -> Encoded {
        let list: &[Frame] = match &frames {
            Frames::One(f) => std::slice::from_ref(f),
            Frames::Many(fs) => fs,
        };
        let mut ws = Vec::with_capacity(list.iter().map(wsframe::encoded_len).sum());
        let mut at = Vec::with_capacity(list.len());
        for f in list {
            wsframe::encode_into(&mut ws, f);
            at.push(ws.len() - f.len());
        }
        let ws = Bytes::from(ws);
        // Payloads re-pointed into `ws`: one allocation kept instead of two.
        let share = |f: &Frame, at: usize| {
            let payload = ws.slice(at..at + f.len());
            match f {
                Frame::Text(s) => Str::try_from(payload)
                    .map(Frame::Text)
                    .unwrap_or_else(|_| Frame::Text(s.clone())),
                Frame::Binary(_) => Frame::Binary(payload),
            }
        };
        let frames = match frames {
            Frames::One(f) => Frames::One(share(&f, at[0])),
            Frames::Many(fs) => Frames::Many(fs.iter().zip(at).map(|(f, a)| share(f, a)).collect()),
        };
        Encoded { frames, ws }
    }
}

impl Outgoing {
    fn new(frames: Frames) -> Outgoing {
        Outgoing {
            encoded: Arc::new(Encoded::new(frames)),
            tag: 0,
            lazy: false,
        }
    }

    pub fn one(frame: Frame) -> Outgoing {
        Outgoing::new(Frames::One(frame))
    }

    pub fn many(frames: Vec<Frame>) -> Outgoing {
        Outgoing::new(Frames::Many(frames.into()))
    }

    pub fn text(s: Str) -> Outgoing {
        Outgoing::one(Frame::Text(s))
    }

    pub fn binary(b: Bytes) -> Outgoing {
        Outgoing::one(Frame::Binary(b))
    }

    pub fn tagged(mut self, tag: u64) -> Outgoing {
        self.tag = tag;
        self
    }

    /// Marks an item that may wait a little for others to share its write.
    pub fn lazy(mut self) -> Outgoing {
        self.lazy = true;
        self
    }

    pub fn is_lazy(&self) -> bool {
        self.lazy
    }

    pub fn frames(&self) -> &[Frame] {
        match &self.encoded.frames {
            Frames::One(f) => std::slice::from_ref(f),
            Frames::Many(fs) => fs,
        }
    }

    /// The frames as they go on a WebSocket, headers included.
    pub(crate) fn ws_bytes(&self) -> &[u8] {
        &self.encoded.ws
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_is_encoded_once_as_websocket_frames_that_hold_its_payloads() {
        let item = Outgoing::many(vec![
            Frame::Text(Str::from("451-[\"m\",{\"_placeholder\":true,\"num\":0}]")),
            Frame::Binary(Bytes::from_static(&[1, 2, 3])),
        ]);
        let ws = item.ws_bytes();
        let text = item.frames()[0].len();
        assert_eq!(&ws[..2], &[0x81, text as u8]);
        assert_eq!(&ws[2 + text..2 + text + 2], &[0x82, 3]);
        assert_eq!(&ws[ws.len() - 3..], &[1, 2, 3]);
        // The payloads are the encoded bytes themselves, not a second copy.
        let span = ws.as_ptr_range();
        for f in item.frames() {
            let p = match f {
                Frame::Text(s) => s.as_bytes().as_ptr(),
                Frame::Binary(b) => b.as_ptr(),
            };
            assert!(span.contains(&p));
        }
        let copy = item.clone();
        assert_eq!(copy.ws_bytes().as_ptr(), ws.as_ptr(), "clones share them");
    }
}
