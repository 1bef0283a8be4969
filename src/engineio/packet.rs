//! Engine.IO v4 packets and polling payloads: a pure codec (no I/O, no tokio).
//!
//! A packet travels as one WebSocket frame, or as one record of a polling payload where
//! records are joined by `\x1e` and binary records are `b` + base64.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::{BufMut, Bytes, BytesMut};
pub use tokio_tungstenite::tungstenite::Utf8Bytes as Str;

/// Record separator between packets of a polling payload.
pub const SEPARATOR: u8 = 0x1e;

/// One Engine.IO packet, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// Handshake, server to client: the JSON object after the `0`.
    Open(Str),
    Close,
    /// Heartbeat; the payload is `probe` during an upgrade, empty otherwise.
    Ping(Str),
    Pong(Str),
    /// A text message for the layer above.
    Message(Str),
    /// A binary message for the layer above.
    Binary(Bytes),
    Upgrade,
    Noop,
}

/// What can be wrong with bytes that claim to be a packet or payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty packet")]
    Empty,
    #[error("unknown packet type {0:?}")]
    UnknownType(char),
    #[error("payload is not valid UTF-8")]
    NotUtf8,
    #[error("invalid base64 in binary packet")]
    BadBase64,
    #[error("payload larger than {0} bytes")]
    TooLarge(usize),
}

/// An encoded packet as it goes on a WebSocket: a text frame or a binary frame.
///
/// Text frames are `Bytes`-backed, so one encoded broadcast is shared by every recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Text(Str),
    Binary(Bytes),
}

impl Frame {
    /// Bytes this frame occupies on the wire (for accounting and payload limits).
    pub fn len(&self) -> usize {
        match self {
            Frame::Text(s) => s.len(),
            Frame::Binary(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A text message frame (`4` + text) built in one allocation.
    pub fn message(text: &str) -> Frame {
        let mut s = String::with_capacity(text.len() + 1);
        s.push('4');
        s.push_str(text);
        Frame::Text(Str::from(s))
    }
}

impl Packet {
    fn type_char(&self) -> char {
        match self {
            Packet::Open(_) => '0',
            Packet::Close => '1',
            Packet::Ping(_) => '2',
            Packet::Pong(_) => '3',
            Packet::Message(_) | Packet::Binary(_) => '4',
            Packet::Upgrade => '5',
            Packet::Noop => '6',
        }
    }

    /// Encodes the packet as one WebSocket frame.
    pub fn encode(&self) -> Frame {
        let data: &str = match self {
            Packet::Binary(b) => return Frame::Binary(b.clone()),
            Packet::Open(s) | Packet::Ping(s) | Packet::Pong(s) | Packet::Message(s) => s,
            Packet::Close | Packet::Upgrade | Packet::Noop => "",
        };
        let mut out = String::with_capacity(data.len() + 1);
        out.push(self.type_char());
        out.push_str(data);
        Frame::Text(Str::from(out))
    }

    /// Decodes one text frame (a WebSocket text message or one polling record).
    pub fn decode_text(frame: Str) -> Result<Packet, DecodeError> {
        let first = *frame.as_bytes().first().ok_or(DecodeError::Empty)?;
        let rest = || tail(&frame);
        Ok(match first {
            b'0' => Packet::Open(rest()?),
            b'1' => Packet::Close,
            b'2' => Packet::Ping(rest()?),
            b'3' => Packet::Pong(rest()?),
            b'4' => Packet::Message(rest()?),
            b'5' => Packet::Upgrade,
            b'6' => Packet::Noop,
            _ => {
                let c = frame.chars().next().unwrap_or('\u{fffd}');
                return Err(DecodeError::UnknownType(c));
            }
        })
    }
}

/// The packet data after its one-digit type, sharing the frame's buffer.
fn tail(s: &Str) -> Result<Str, DecodeError> {
    let bytes: &Bytes = s.as_ref();
    Str::try_from(bytes.slice(1..)).map_err(|_| DecodeError::NotUtf8)
}

/// Decodes a polling POST body into packets. `max` bounds the body size.
pub fn decode_payload(body: Bytes, max: usize) -> Result<Vec<Packet>, DecodeError> {
    if body.len() > max {
        return Err(DecodeError::TooLarge(max));
    }
    let text = Str::try_from(body).map_err(|_| DecodeError::NotUtf8)?;
    let whole: &Bytes = text.as_ref();
    let mut packets = Vec::new();
    let mut start = 0;
    loop {
        let end = whole[start..]
            .iter()
            .position(|&b| b == SEPARATOR)
            .map_or(whole.len(), |i| start + i);
        let record = whole.slice(start..end);
        if record.first() == Some(&b'b') {
            let raw = BASE64
                .decode(&record[1..])
                .map_err(|_| DecodeError::BadBase64)?;
            packets.push(Packet::Binary(Bytes::from(raw)));
        } else {
            let s = Str::try_from(record).map_err(|_| DecodeError::NotUtf8)?;
            packets.push(Packet::decode_text(s)?);
        }
        if end == whole.len() {
            return Ok(packets);
        }
        start = end + 1;
    }
}

/// Encodes frames as one polling response body.
pub fn encode_payload<'a>(frames: impl IntoIterator<Item = &'a Frame>) -> Bytes {
    let mut out = BytesMut::new();
    for (i, frame) in frames.into_iter().enumerate() {
        if i > 0 {
            out.put_u8(SEPARATOR);
        }
        match frame {
            Frame::Text(s) => out.put_slice(s.as_bytes()),
            Frame::Binary(b) => {
                out.put_u8(b'b');
                out.put_slice(BASE64.encode(b).as_bytes());
            }
        }
    }
    out.freeze()
}

/// Bytes a frame takes inside a polling payload (base64 grows binary by 4/3).
pub fn payload_len(frame: &Frame) -> usize {
    match frame {
        Frame::Text(s) => s.len(),
        Frame::Binary(b) => 1 + b.len().div_ceil(3) * 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text(s: &str) -> Str {
        Str::from(s)
    }

    #[test]
    fn round_trips_every_text_type() {
        let packets = [
            Packet::Open(text(r#"{"sid":"x"}"#)),
            Packet::Close,
            Packet::Ping(text("probe")),
            Packet::Ping(text("")),
            Packet::Pong(text("probe")),
            Packet::Message(text("hello ✓")),
            Packet::Upgrade,
            Packet::Noop,
        ];
        for p in packets {
            let Frame::Text(f) = p.encode() else {
                panic!("text packet encoded as binary")
            };
            assert_eq!(Packet::decode_text(f).unwrap(), p);
        }
    }

    #[test]
    fn binary_is_a_binary_frame() {
        let p = Packet::Binary(Bytes::from_static(&[1, 2, 3]));
        assert_eq!(p.encode(), Frame::Binary(Bytes::from_static(&[1, 2, 3])));
    }

    #[test]
    fn rejects_malformed_text() {
        assert_eq!(Packet::decode_text(text("")), Err(DecodeError::Empty));
        assert_eq!(
            Packet::decode_text(text("abc")),
            Err(DecodeError::UnknownType('a'))
        );
        assert_eq!(
            Packet::decode_text(text("7")),
            Err(DecodeError::UnknownType('7'))
        );
        assert_eq!(
            Packet::decode_text(text("é")),
            Err(DecodeError::UnknownType('é'))
        );
    }

    #[test]
    fn payload_round_trip_with_binary() {
        let frames = [
            Frame::message("hello"),
            Frame::Binary(Bytes::from_static(&[1, 2, 3, 4])),
            Packet::Ping(text("")).encode(),
        ];
        let body = encode_payload(&frames);
        assert_eq!(&body[..], b"4hello\x1ebAQIDBA==\x1e2");
        let decoded = decode_payload(body, 1000).unwrap();
        assert_eq!(
            decoded,
            vec![
                Packet::Message(text("hello")),
                Packet::Binary(Bytes::from_static(&[1, 2, 3, 4])),
                Packet::Ping(text("")),
            ]
        );
        let total: usize = frames.iter().map(payload_len).sum::<usize>() + 2;
        assert_eq!(total, encode_payload(&frames).len());
    }

    #[test]
    fn payload_errors() {
        let p = |s: &'static [u8]| decode_payload(Bytes::from_static(s), 100);
        assert_eq!(p(b""), Err(DecodeError::Empty));
        assert_eq!(p(b"4a\x1e"), Err(DecodeError::Empty));
        assert_eq!(p(b"b!!!"), Err(DecodeError::BadBase64));
        assert_eq!(p(b"4\xff"), Err(DecodeError::NotUtf8));
        assert_eq!(p(b"x"), Err(DecodeError::UnknownType('x')));
        assert_eq!(
            decode_payload(Bytes::from(vec![b'4'; 101]), 100),
            Err(DecodeError::TooLarge(100))
        );
    }

    proptest! {
        #[test]
        fn any_bytes_decode_without_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_payload(Bytes::from(body), 256);
        }

        #[test]
        fn any_string_decodes_without_panic(s in ".{0,64}") {
            let _ = Packet::decode_text(Str::from(s));
        }

        #[test]
        fn messages_round_trip_through_payloads(msgs in proptest::collection::vec("[^\u{1e}]{0,32}", 1..8)) {
            let frames: Vec<Frame> = msgs.iter().map(|m| Frame::message(m)).collect();
            let decoded = decode_payload(encode_payload(&frames), usize::MAX).unwrap();
            let expected: Vec<Packet> = msgs.iter().map(|m| Packet::Message(Str::from(m.as_str()))).collect();
            prop_assert_eq!(decoded, expected);
        }
    }
}
