//! Server-to-client WebSocket frames (RFC 6455 §5.2), encoded once per item: server frames
//! are unmasked, so header and payload are the same bytes for every recipient of a
//! broadcast, and the writer copies them to each socket as they are.

use super::packet::Frame;

const FIN: u8 = 0x80;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;

/// The header's length for a payload of `len` bytes.
fn header_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    }
}

/// Bytes `frame` takes as a WebSocket frame, header included.
pub(crate) fn encoded_len(frame: &Frame) -> usize {
    header_len(frame.len()) + frame.len()
}

/// Appends `frame` as one final, unmasked WebSocket frame.
pub(crate) fn encode_into(out: &mut Vec<u8>, frame: &Frame) {
    let (opcode, payload): (u8, &[u8]) = match frame {
        Frame::Text(s) => (OP_TEXT, s.as_bytes()),
        Frame::Binary(b) => (OP_BINARY, b),
    };
    out.push(FIN | opcode);
    match payload.len() {
        n @ 0..=125 => out.push(n as u8),
        n @ 126..=0xFFFF => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engineio::Str;
    use bytes::Bytes;
    use tokio_tungstenite::tungstenite::protocol::frame::Frame as WsFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

    /// The bytes tungstenite itself writes for the same message.
    fn reference(frame: &Frame) -> Vec<u8> {
        let (op, payload) = match frame {
            Frame::Text(s) => (Data::Text, Bytes::copy_from_slice(s.as_bytes())),
            Frame::Binary(b) => (Data::Binary, b.clone()),
        };
        let f = WsFrame::message(payload, OpCode::Data(op), true);
        let mut out = Vec::new();
        f.format(&mut out).unwrap();
        out
    }

    #[test]
    fn same_bytes_as_tungstenite_at_every_length_class() {
        for n in [0, 1, 125, 126, 127, 0xFFFF, 0x10000, 70_000] {
            let text = Frame::Text(Str::from("x".repeat(n)));
            let bin = Frame::Binary(Bytes::from(vec![7u8; n]));
            for f in [text, bin] {
                let mut out = Vec::new();
                encode_into(&mut out, &f);
                assert_eq!(out.len(), encoded_len(&f), "length {n}");
                assert_eq!(out, reference(&f), "length {n}");
            }
        }
    }
}
