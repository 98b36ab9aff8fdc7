//! Accepting connections without spinning, for the main and the admin listener. A failed
//! accept backs off (10 ms, doubling to 500 ms) instead of retrying at once: out of file
//! descriptors, the listener stays readable and a retry fails the same way. A spare
//! descriptor is kept for that case, as nginx and libuv do: released, it lets the
//! connection at the head of the backlog be accepted and closed at once (its client
//! learns now, rather than waiting in the backlog), then it is taken again. Once
//! descriptors are free, the next accept succeeds and the listener serves as before.

use futures_util::FutureExt;
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// `EMFILE` and `ENFILE` (the same numbers on Linux, the BSDs and macOS).
const OUT_OF_DESCRIPTORS: [i32; 2] = [24, 23];

/// A listener's accept loop.
#[derive(Debug)]
pub struct Acceptor {
    listener: TcpListener,
    /// Held in reserve for accepting (and closing) when descriptors run out.
    spare: Option<File>,
    /// Which listener, for the log.
    name: &'static str,
    /// Whether the last accept failed: its first failure and its recovery are logged.
    failing: bool,
}

impl Acceptor {
    pub fn new(listener: TcpListener, name: &'static str) -> Self {
        Self {
            listener,
            spare: reserve(),
            name,
            failing: false,
        }
    }

    /// The next connection. Errors are logged and waited out; it never returns one.
    pub async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            match self.listener.accept().await {
                Ok(pair) => {
                    if self.failing {
                        self.failing = false;
                        tracing::info!(listener = self.name, "accepting connections again");
                    }
                    if self.spare.is_none() {
                        self.spare = reserve();
                    }
                    return pair;
                }
                // The connection was gone before it was accepted: the next one is not.
                Err(e) if is_per_connection(&e) => continue,
                Err(e) => {
                    if !self.failing {
                        self.failing = true;
                        tracing::warn!(listener = self.name, error = %e, "accept failed; backing off");
                    }
                    if e.raw_os_error()
                        .is_some_and(|n| OUT_OF_DESCRIPTORS.contains(&n))
                    {
                        self.shed();
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Accepts and closes the connection at the head of the backlog with the spare
    /// descriptor, then takes the spare again.
    fn shed(&mut self) {
        if let Some(spare) = self.spare.take() {
            drop(spare);
            if let Some(Ok((stream, peer))) = self.listener.accept().now_or_never() {
                tracing::debug!(listener = self.name, %peer, "out of file descriptors: connection closed");
                drop(stream);
            }
            self.spare = reserve();
        }
    }
}

fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

fn reserve() -> Option<File> {
    File::open("/dev/null").ok()
}
