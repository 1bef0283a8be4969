//! The Flash socket policy responder (docs/design.md#flash-policy), on the `flash` socket (port
//! 843).
//!
//! A Flash player asking whether it may open a socket connects, sends exactly
//! `<policy-file-request/>\0`, and expects the policy XML followed by a NUL, then the close.
//! Anything else is closed at once. Every connection is bounded: a deadline for the request,
//! a size cap (the request's own length), and a cap on connections served at once.

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::accept::AcceptBackoff;

/// The only request answered, NUL included.
pub const REQUEST: &[u8] = b"<policy-file-request/>\0";
/// Time a client has to send the whole request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// Time allowed to write the policy and see the client close.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);
/// Connections served at once; more are closed on accept.
const MAX_CONNECTIONS: usize = 256;
/// Largest `[Flash] policy-file` accepted.
const MAX_POLICY_FILE: u64 = 64 * 1024;

/// Why the policy cannot be served: the configured file is unusable.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("[Flash] policy-file {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "[Flash] policy-file {}: {len} bytes, expected at most {MAX_POLICY_FILE}",
        path.display()
    )]
    TooLarge { path: PathBuf, len: u64 },
}

/// The policy sent, NUL-terminated: `[Flash] policy-file` if set, else the built-in one
/// allowing any domain to reach the HTTP ports.
pub fn policy(file: Option<&Path>, http_ports: &[u16]) -> Result<Bytes, PolicyError> {
    let mut xml = match file {
        Some(path) => read_policy_file(path)?,
        None => default_policy(http_ports).into_bytes(),
    };
    // A file that already ends in the terminator would otherwise send two.
    while xml.last() == Some(&0) {
        xml.pop();
    }
    xml.push(0);
    Ok(Bytes::from(xml))
}

fn read_policy_file(path: &Path) -> Result<Vec<u8>, PolicyError> {
    let read = |source| PolicyError::Read {
        path: path.to_owned(),
        source,
    };
    let len = std::fs::metadata(path).map_err(read)?.len();
    if len > MAX_POLICY_FILE {
        return Err(PolicyError::TooLarge {
            path: path.to_owned(),
            len,
        });
    }
    std::fs::read(path).map_err(read)
}

fn default_policy(http_ports: &[u16]) -> String {
    let mut sorted = http_ports.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let ports: Vec<String> = sorted.iter().map(u16::to_string).collect();
    let ports = if ports.is_empty() {
        "*".to_owned()
    } else {
        ports.join(",")
    };
    format!(
        "<?xml version=\"1.0\"?>\n\
         <!DOCTYPE cross-domain-policy SYSTEM \"/xml/dtds/cross-domain-policy.dtd\">\n\
         <cross-domain-policy>\n\
         <site-control permitted-cross-domain-policies=\"master-only\"/>\n\
         <allow-access-from domain=\"*\" to-ports=\"{ports}\"/>\n\
         </cross-domain-policy>\n"
    )
}

/// Answers policy requests on every listener until `shutdown`.
pub async fn serve(
    listeners: Vec<StdListener>,
    policy: Bytes,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut loops = Vec::new();
    for std_listener in listeners {
        let listener = TcpListener::from_std(std_listener)?;
        // Not "listening on": that phrase announces the HTTP port.
        info!("flash policy server on {}", listener.local_addr()?);
        loops.push(tokio::spawn(accept_loop(
            listener,
            policy.clone(),
            permits.clone(),
            shutdown.clone(),
        )));
    }
    for l in loops {
        let _ = l.await;
    }
    Ok(())
}

async fn accept_loop(
    listener: TcpListener,
    policy: Bytes,
    permits: Arc<Semaphore>,
    shutdown: CancellationToken,
) {
    let mut backoff = AcceptBackoff::new("flash accept failed");
    while let Some((stream, peer)) = backoff.accept(&listener, &shutdown).await {
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            debug!(%peer, "flash: too many connections; closed");
            continue;
        };
        let policy = policy.clone();
        tokio::spawn(async move {
            answer(stream, peer, &policy).await;
            drop(permit);
        });
    }
}

/// Serves one connection: the policy for the exact request, a close for anything else.
async fn answer(mut stream: TcpStream, peer: SocketAddr, policy: &[u8]) {
    match tokio::time::timeout(REQUEST_TIMEOUT, read_request(&mut stream)).await {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => {
            debug!(%peer, "flash: not a policy request; closed");
            return;
        }
        Ok(Err(e)) => {
            debug!(%peer, error = %e, "flash: read failed");
            return;
        }
        Err(_) => {
            debug!(%peer, "flash: no request in time; closed");
            return;
        }
    }
    let sent = tokio::time::timeout(ANSWER_TIMEOUT, async {
        stream.write_all(policy).await?;
        stream.shutdown().await?;
        // Wait for the client's close: closing with unread input would reset the
        // connection, and a reset can discard the policy before the client reads it.
        let mut sink = [0u8; 512];
        let mut left = 4096usize;
        while left > 0 {
            match stream.read(&mut sink).await? {
                0 => break,
                n => left = left.saturating_sub(n),
            }
        }
        Ok::<_, io::Error>(())
    })
    .await;
    match sent {
        Ok(Ok(())) => debug!(%peer, "flash: policy served"),
        Ok(Err(e)) => debug!(%peer, error = %e, "flash: write failed"),
        Err(_) => debug!(%peer, "flash: client did not close in time"),
    }
}

/// Reads until the bytes read so far stop being a prefix of [`REQUEST`] (false) or are all
/// of it (true). Never reads past its length, so an endless sender is cut off at once.
async fn read_request(stream: &mut TcpStream) -> io::Result<bool> {
    let mut buf = [0u8; REQUEST.len()];
    let mut have = 0;
    while have < REQUEST.len() {
        let n = stream.read(&mut buf[have..]).await?;
        if n == 0 {
            return Ok(false);
        }
        have += n;
        if buf[..have] != REQUEST[..have] {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_allows_the_http_ports() {
        let p = policy(None, &[8001, 8001, 9000]).unwrap();
        let text = std::str::from_utf8(&p).unwrap();
        assert!(text.contains("to-ports=\"8001,9000\""), "{text}");
        assert!(text.starts_with("<?xml"));
        assert!(text.ends_with("</cross-domain-policy>\n\0"));
        assert_eq!(text.matches('\0').count(), 1);
    }

    #[test]
    fn policy_file_overrides_and_gets_one_nul() {
        let path = std::env::temp_dir().join(format!("flash-policy-{}.xml", std::process::id()));
        std::fs::write(&path, "<cross-domain-policy/>\0").unwrap();
        let p = policy(Some(&path), &[8001]).unwrap();
        assert_eq!(&p[..], b"<cross-domain-policy/>\0");
        std::fs::remove_file(&path).unwrap();
        let missing = policy(Some(&path), &[8001]).unwrap_err().to_string();
        assert!(missing.contains("[Flash] policy-file"), "{missing}");
    }
}
