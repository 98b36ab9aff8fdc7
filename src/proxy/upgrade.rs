//! Connection upgrades through a proxy route (WebSocket): once the upstream answers 101,
//! the client's and the upstream's connections are joined and bytes flow both ways,
//! until a side closes, nothing moves either way for the route's `idle_timeout`
//! (nginx's `proxy_read_timeout`), or the server shuts down and its grace runs out.
//! A tunnel holds the server's drain like any connection, so graceful shutdown waits
//! for it; ended by the gateway, both connections are closed (no WebSocket close frame
//! can be sent: the gateway does not read the frames it passes).

use crate::body::{Body, empty};
use http::{Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio::time::Instant;

/// Lets an upgraded connection hold the server's graceful shutdown. The server waits
/// until every receiver of its drain channel is gone, and sends on it when shutdown
/// begins; the server puts one on each upgrade request (an extension) and the proxy
/// gives it to the tunnel.
#[derive(Debug, Clone)]
pub struct Drain {
    pub shutdown: watch::Receiver<()>,
    /// How long a tunnel goes on once shutdown has begun (`shutdown_grace`).
    pub grace: Duration,
}

/// Answers the client with the upstream's 101 and joins the two connections in a task.
pub fn tunnel<B: Send + 'static>(
    mut answer: Response<B>,
    client: OnUpgrade,
    upstream_name: String,
    idle: Duration,
    drain: Option<Drain>,
) -> Response<Body> {
    let mut response = Response::new(empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    // A 101 keeps its Connection and Upgrade headers: they are what it is about.
    *response.headers_mut() = answer.headers().clone();
    tokio::spawn(async move {
        let upstream = hyper::upgrade::on(&mut answer);
        let joined = tokio::time::timeout(idle, async { tokio::join!(upstream, client) });
        let (upstream, client) = match joined.await {
            Ok((Ok(u), Ok(c))) => (u, c),
            Ok((Err(e), _)) => {
                tracing::warn!(upstream = %upstream_name, error = %e, "upgrade failed upstream");
                return;
            }
            Ok((_, Err(e))) => {
                tracing::debug!(upstream = %upstream_name, error = %e, "client left before the upgrade");
                return;
            }
            Err(_) => {
                tracing::debug!(upstream = %upstream_name, "upgrade not completed within idle_timeout");
                return;
            }
        };
        let end = join(TokioIo::new(client), TokioIo::new(upstream), idle, drain).await;
        match end {
            End::Closed { sent, received } => {
                tracing::debug!(upstream = %upstream_name, sent, received, "upgraded connection closed");
            }
            End::Failed(e) => {
                tracing::debug!(upstream = %upstream_name, error = %e, "upgraded connection ended");
            }
            End::Idle => {
                tracing::debug!(upstream = %upstream_name, ?idle, "upgraded connection idle; closed");
            }
            End::Shutdown => {
                tracing::debug!(upstream = %upstream_name, "upgraded connection closed at shutdown");
            }
        }
    });
    response
}

/// Why a tunnel ended.
#[derive(Debug)]
enum End {
    /// A side closed; bytes from the client and from the upstream.
    Closed {
        sent: u64,
        received: u64,
    },
    Failed(io::Error),
    /// Nothing moved either way for the idle timeout.
    Idle,
    /// The server shut down and the grace ran out.
    Shutdown,
}

/// Copies bytes between `client` and `upstream` until one of the ends in [`End`].
async fn join<C, U>(client: C, upstream: U, idle: Duration, drain: Option<Drain>) -> End
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let activity = Activity::new();
    let mut client = Watched {
        io: client,
        activity: &activity,
    };
    let mut upstream = Watched {
        io: upstream,
        activity: &activity,
    };
    let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
    tokio::pin!(copy);
    let idle_timer = tokio::time::sleep(idle);
    tokio::pin!(idle_timer);
    let (mut shutdown, grace) = match drain {
        Some(d) => (Some(d.shutdown), d.grace),
        None => (None, Duration::ZERO),
    };
    let mut draining = false;
    let grace_timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(grace_timer);
    loop {
        tokio::select! {
            copied = &mut copy => return match copied {
                Ok((sent, received)) => End::Closed { sent, received },
                Err(e) => End::Failed(e),
            },
            () = &mut idle_timer => {
                // One timer, moved to the last activity's deadline when it fires early:
                // re-arming it for every read would cost more than the read.
                let due = activity.last() + idle;
                if Instant::now() >= due {
                    return End::Idle;
                }
                idle_timer.as_mut().reset(due);
            }
            // A send, or the server gone (the sender dropped): shutdown has begun.
            _ = async { shutdown.as_mut().expect("guarded").changed().await }, if shutdown.is_some() && !draining => {
                draining = true;
                grace_timer.as_mut().reset(Instant::now() + grace);
            }
            () = &mut grace_timer, if draining => return End::Shutdown,
        }
    }
}

/// When bytes last moved through a tunnel, either way: milliseconds after its start.
struct Activity {
    started: Instant,
    last: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.started.elapsed().as_millis();
        self.last
            .store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.started + Duration::from_millis(self.last.load(Ordering::Relaxed))
    }
}

/// One end of a tunnel, noting each read that brings bytes (a byte read one way is a
/// byte written the other).
struct Watched<'a, T> {
    io: T,
    activity: &'a Activity,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<'_, T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<'_, T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

    const SECS: fn(u64) -> Duration = Duration::from_secs;

    /// A tunnel between two in-memory pipes: the test holds the client's and the
    /// upstream's far ends.
    fn tunnel(
        idle: Duration,
        drain: Option<Drain>,
    ) -> (DuplexStream, DuplexStream, tokio::task::JoinHandle<End>) {
        let (client, client_end) = duplex(1024);
        let (upstream, upstream_end) = duplex(1024);
        let task = tokio::spawn(join(client_end, upstream_end, idle, drain));
        (client, upstream, task)
    }

    async fn pass(from: &mut DuplexStream, to: &mut DuplexStream) {
        from.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        to.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
    }

    #[tokio::test(start_paused = true)]
    async fn traffic_either_way_keeps_a_tunnel_open_and_silence_ends_it() {
        let (mut client, mut upstream, task) = tunnel(SECS(10), None);
        for _ in 0..3 {
            tokio::time::sleep(SECS(9)).await;
            pass(&mut client, &mut upstream).await;
            tokio::time::sleep(SECS(9)).await;
            pass(&mut upstream, &mut client).await;
        }
        assert!(
            !task.is_finished(),
            "54 s of traffic, never 10 s of silence"
        );
        tokio::time::sleep(SECS(11)).await;
        assert!(matches!(task.await.unwrap(), End::Idle));
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "the client's connection is closed");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_a_tunnel_after_the_grace() {
        let (stop, shutdown) = watch::channel(());
        let drain = Drain {
            shutdown,
            grace: SECS(30),
        };
        let (mut client, mut upstream, task) = tunnel(SECS(3600), Some(drain));
        pass(&mut client, &mut upstream).await;
        stop.send_replace(());
        tokio::time::sleep(SECS(29)).await;
        pass(&mut upstream, &mut client).await;
        assert!(!task.is_finished(), "within the grace the tunnel goes on");
        tokio::time::sleep(SECS(2)).await;
        assert!(matches!(task.await.unwrap(), End::Shutdown));
        assert!(stop.is_closed(), "the tunnel let go of the drain");
    }

    #[tokio::test(start_paused = true)]
    async fn a_side_that_closes_ends_the_tunnel() {
        let (stop, shutdown) = watch::channel(());
        let drain = Drain {
            shutdown,
            grace: SECS(30),
        };
        let (mut client, mut upstream, task) = tunnel(SECS(3600), Some(drain));
        pass(&mut client, &mut upstream).await;
        assert!(!stop.is_closed(), "an open tunnel holds the drain");
        drop(client);
        let mut rest = Vec::new();
        upstream.read_to_end(&mut rest).await.unwrap();
        drop(upstream);
        match task.await.unwrap() {
            End::Closed { sent, .. } => assert_eq!(sent, 4),
            other => panic!("{other:?}"),
        }
        assert!(stop.is_closed());
    }
}
