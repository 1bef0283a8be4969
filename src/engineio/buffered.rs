//! A write buffer under the WebSocket that gives its memory back once flushed.
//!
//! The WebSocket layer hands every frame down at once; this gathers them so a batch goes
//! out in one write, and after the flush frees what a burst grew, because most of the many
//! connections a server holds are idle most of the time.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Past this, a write goes down before more is buffered.
const HIGH_WATER: usize = 64 * 1024;
/// Capacity kept after a flush; more is freed. None: an idle connection holds no write
/// buffer at all, and a batch's allocation costs far less than its write.
const KEEP: usize = 0;

pub(crate) struct Buffered<S> {
    inner: S,
    buf: Vec<u8>,
    /// How much of `buf` is already written.
    done: usize,
}

impl<S> Buffered<S> {
    pub(crate) fn new(inner: S) -> Buffered<S> {
        Buffered {
            inner,
            buf: Vec::new(),
            done: 0,
        }
    }

    /// With `first` to be written before anything else (a 101 the HTTP layer held back,
    /// so it shares the first frame's write).
    pub(crate) fn starting_with(inner: S, first: Vec<u8>) -> Buffered<S> {
        Buffered {
            inner,
            buf: first,
            done: 0,
        }
    }
}

impl<S> Buffered<S> {
    /// Appends frames encoded beforehand (see `wsframe`). The WebSocket layer above only
    /// ever hands down whole frames too, so the two never split each other's frames.
    pub(crate) fn extend(&mut self, frames: &[u8]) {
        self.buf.extend_from_slice(frames);
    }

    pub(crate) fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Whether what is buffered should go down before more is added.
    pub(crate) fn is_full(&self) -> bool {
        self.buf.len() >= HIGH_WATER
    }
}

impl<S: AsyncWrite + Unpin> Buffered<S> {
    /// Writes out what is buffered.
    pub(crate) fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.done < self.buf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.done..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.done += n;
        }
        self.buf.clear();
        self.done = 0;
        if self.buf.capacity() > KEEP {
            self.buf = Vec::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Buffered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Buffered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.buf.len() + data.len() > HIGH_WATER {
            ready!(self.drain(cx))?;
        }
        self.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn gathers_writes_and_frees_after_flush() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut w = Buffered::new(a);
        for _ in 0..100 {
            w.write_all(&[7u8; 100]).await.unwrap();
        }
        assert_eq!(w.buf.len(), 10_000);
        w.flush().await.unwrap();
        assert_eq!(w.buf.capacity(), 0);
        let mut got = vec![0u8; 10_000];
        b.read_exact(&mut got).await.unwrap();
        assert!(got.iter().all(|&x| x == 7));
    }

    #[tokio::test]
    async fn a_small_write_leaves_no_buffer_behind() {
        let (a, mut b) = tokio::io::duplex(1024);
        let mut w = Buffered::new(a);
        w.extend(b"\x81\x024x");
        w.flush().await.unwrap();
        assert_eq!(w.buf.capacity(), 0);
        let mut got = [0u8; 4];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"\x81\x024x");
    }
}
