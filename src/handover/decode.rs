//! The hand-over state read back. Whatever it cannot read is an error that names why (the
//! one log line of a refused hand-over), never a panic: every length is checked against
//! what is left before anything is taken or allocated.

use bytes::Bytes;

use super::state::{
    CHECK, Connection, Frame, HEADER, Item, MAGIC, MAX_STATE, MemberState, PREVIOUS, SessionState,
    SocketState, State, Transport, VERSION, check,
};

/// Why a state was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("not a hand-over state (bad magic)")]
    Magic,
    #[error("state format version {0}, this build reads versions {PREVIOUS} and {VERSION}")]
    Version(u16),
    #[error("state of {0} bytes, more than the {MAX_STATE} allowed")]
    TooLarge(u64),
    #[error("state truncated: {expected} bytes announced, {found} present")]
    Truncated { expected: u64, found: usize },
    #[error("state corrupt: checksum mismatch")]
    Checksum,
    #[error("state corrupt: {0}")]
    Corrupt(&'static str),
}

/// Reads a state written by [`State::encode`].
pub fn decode(data: &[u8]) -> Result<State, DecodeError> {
    if data.len() > MAX_STATE {
        return Err(DecodeError::TooLarge(data.len() as u64));
    }
    if data.len() < 4 || &data[..4] != MAGIC {
        return Err(DecodeError::Magic);
    }
    if data.len() < HEADER {
        return Err(DecodeError::Truncated {
            expected: HEADER as u64,
            found: data.len(),
        });
    }
    let version = u16::from_le_bytes([data[4], data[5]]);
    if version != VERSION && version != PREVIOUS {
        return Err(DecodeError::Version(version));
    }
    let mut body_len = [0u8; 8];
    body_len.copy_from_slice(&data[8..HEADER]);
    let body_len = u64::from_le_bytes(body_len);
    let expected = body_len.saturating_add((HEADER + CHECK) as u64);
    if expected > MAX_STATE as u64 {
        return Err(DecodeError::TooLarge(expected));
    }
    if (data.len() as u64) < expected {
        return Err(DecodeError::Truncated {
            expected,
            found: data.len(),
        });
    }
    if (data.len() as u64) > expected {
        return Err(DecodeError::Corrupt("bytes after the end"));
    }
    // `expected` fits in usize: it is at most MAX_STATE.
    let end = expected as usize - CHECK;
    if check(&data[..end]) != data[end..] {
        return Err(DecodeError::Checksum);
    }
    if data[6..8] != [0, 0] {
        return Err(DecodeError::Corrupt("reserved header bytes set"));
    }
    let mut r = Reader {
        rest: &data[HEADER..end],
        version,
        table: Vec::new(),
    };
    let written_ms = if version == PREVIOUS { 0 } else { r.u64()? };
    let node_id = r.opt(Reader::string)?;
    let offset = r.u64()?;
    let monitor = r.list(4, Reader::bytes)?;
    if version != PREVIOUS {
        r.table = r.list(12, Reader::item)?;
    }
    let state = State {
        written_ms,
        node_id,
        offset,
        monitor,
        members: r.list(13, Reader::member)?,
    };
    if !r.rest.is_empty() {
        return Err(DecodeError::Corrupt("bytes after the last member"));
    }
    Ok(state)
}

const SHORT: DecodeError = DecodeError::Corrupt("a value runs past the end");

struct Reader<'a> {
    rest: &'a [u8],
    version: u16,
    /// Version 2: every distinct item, which the queues name by index.
    table: Vec<Item>,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        if n > self.rest.len() {
            return Err(SHORT);
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }

    fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Corrupt("a flag is neither 0 nor 1")),
        }
    }

    fn bytes(&mut self) -> Result<Bytes, DecodeError> {
        let n = self.u32()? as usize;
        Ok(Bytes::copy_from_slice(self.take(n)?))
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let n = self.u32()? as usize;
        let raw = self.take(n)?;
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| DecodeError::Corrupt("a string is not UTF-8"))
    }

    fn opt<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => f(self).map(Some),
            _ => Err(DecodeError::Corrupt("an option tag is neither 0 nor 1")),
        }
    }

    /// A list whose items take at least `min` bytes each: a count that cannot fit in what
    /// is left is refused before anything is allocated for it.
    fn list<T>(
        &mut self,
        min: usize,
        mut f: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min) > self.rest.len() {
            return Err(SHORT);
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(f(self)?);
        }
        Ok(out)
    }

    fn member(&mut self) -> Result<MemberState, DecodeError> {
        Ok(MemberState {
            key: self.string()?,
            identity: self.opt(Reader::string)?,
            channels: self.list(4, Reader::string)?,
            sessions: self.list(4, Reader::session)?,
        })
    }

    fn session(&mut self) -> Result<SessionState, DecodeError> {
        let sid = self.string()?;
        let socket = self.opt(|r| {
            Ok(SocketState {
                id: r.string()?,
                pid: r.opt(Reader::string)?,
            })
        })?;
        let connection = match self.u8()? {
            0 => {
                let transport = match self.u8()? {
                    0 if self.version == PREVIOUS => Transport::Polling {
                        inbound: Vec::new(),
                    },
                    0 => Transport::Polling {
                        inbound: self.list(5, Reader::frame)?,
                    },
                    1 => Transport::WebSocket {
                        fd: self.u32()?,
                        unread: self.bytes()?,
                    },
                    _ => return Err(DecodeError::Corrupt("unknown transport")),
                };
                Connection::Live {
                    transport,
                    ping_due_ms: self.u64()?,
                    queued: self.queue()?,
                }
            }
            1 => {
                let grace_left_ms = self.u64()?;
                let backlog = self.queue()?;
                let unsent = self.u32()?;
                if unsent as usize > backlog.len() {
                    return Err(DecodeError::Corrupt("unsent past the end of the backlog"));
                }
                Connection::Detached {
                    grace_left_ms,
                    backlog,
                    unsent,
                    kept: self.queue()?,
                    overflowed: self.bool()?,
                }
            }
            _ => return Err(DecodeError::Corrupt("unknown connection state")),
        };
        Ok(SessionState {
            sid,
            socket,
            connection,
        })
    }

    fn item(&mut self) -> Result<Item, DecodeError> {
        Ok(Item {
            tag: self.u64()?,
            frames: self.list(5, Reader::frame)?,
        })
    }

    fn frame(&mut self) -> Result<Frame, DecodeError> {
        match self.u8()? {
            0 => self.string().map(|s| Frame::Text(s.into())),
            1 => self.bytes().map(Frame::Binary),
            _ => Err(DecodeError::Corrupt("unknown frame kind")),
        }
    }

    /// A queue, backlog or kept list: items inline (version 1), or indexes into the table.
    fn queue(&mut self) -> Result<Vec<Item>, DecodeError> {
        if self.version == PREVIOUS {
            return self.list(12, Reader::item);
        }
        self.list(4, |r| {
            let i = r.u32()? as usize;
            r.table
                .get(i)
                .cloned()
                .ok_or(DecodeError::Corrupt("an item index past the table"))
        })
    }
}
