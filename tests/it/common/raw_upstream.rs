//! A wire-level upstream that writes scripted bytes, for answers hyper's server would
//! not write.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A wire-level upstream for answers hyper's server would not write (chunks split across
/// writes, interim 1xx, no length, garbage, truncation, bodies where none belong). It
/// reads each request (its head, and a body of its `Content-Length`) and writes the
/// scripted pieces; after `per_connection` answers it closes the connection without
/// saying so, as an upstream with a short keep-alive does. With `Close::OnNextRequest`
/// the close waits until the next request has arrived: the race in which a pooled
/// connection is taken just as the upstream gives up on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    AfterAnswer,
    OnNextRequest,
}

/// One piece of a scripted answer: written after a pause.
pub type Piece = (Duration, String);

/// What a scripted upstream writes for one request, given the request's head as text.
pub type Script = Arc<dyn Fn(&str) -> Vec<Piece> + Send + Sync>;

pub struct RawUpstream {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
    written: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl RawUpstream {
    /// Answers every request with `pieces`, 20 ms apart.
    pub async fn start(pieces: Vec<&'static str>, per_connection: usize, close: Close) -> Self {
        Self::scripted(per_connection, close, move |_| {
            pieces
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    (
                        Duration::from_millis(if i > 0 { 20 } else { 0 }),
                        p.to_string(),
                    )
                })
                .collect()
        })
        .await
    }

    /// Answers each request with what `script` makes of its head.
    pub async fn scripted(
        per_connection: usize,
        close: Close,
        script: impl Fn(&str) -> Vec<Piece> + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let written = Arc::new(AtomicUsize::new(0));
        let script: Script = Arc::new(script);
        let (conns, seen) = (
            connections.clone(),
            Seen {
                requests: requests.clone(),
                heads: heads.clone(),
                written: written.clone(),
            },
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                conns.fetch_add(1, Ordering::SeqCst);
                // Each piece leaves when written, not when the last one is acknowledged.
                let _ = stream.set_nodelay(true);
                let (script, seen) = (script.clone(), seen.clone());
                tokio::spawn(async move {
                    let mut stream = stream;
                    let _ =
                        raw_connection(&mut stream, per_connection, close, &script, &seen).await;
                });
            }
        });
        Self {
            addr,
            connections,
            requests,
            heads,
            written,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Requests answered (or being answered) so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// The heads of the requests received so far, as text.
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }

    /// Scripted pieces written so far, on every connection.
    pub fn written(&self) -> usize {
        self.written.load(Ordering::SeqCst)
    }
}

/// What a [`RawUpstream`] counts, shared by its connections.
#[derive(Clone)]
struct Seen {
    requests: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
    written: Arc<AtomicUsize>,
}

/// Serves one connection of a [`RawUpstream`]; an error or the peer's close ends it.
async fn raw_connection(
    stream: &mut tokio::net::TcpStream,
    per_connection: usize,
    close: Close,
    script: &Script,
    seen_by: &Seen,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    for answered in 0..=per_connection {
        if answered == per_connection && close == Close::AfterAnswer {
            return Ok(());
        }
        let head_end = loop {
            if let Some(at) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            match stream.read(&mut chunk).await? {
                0 => return Ok(()),
                n => seen.extend_from_slice(&chunk[..n]),
            }
        };
        if answered == per_connection {
            return Ok(());
        }
        let head = String::from_utf8_lossy(&seen[..head_end]).into_owned();
        let body_len: usize = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
            .map_or(0, |(_, v)| v.trim().parse().unwrap());
        while seen.len() < head_end + body_len {
            match stream.read(&mut chunk).await? {
                0 => return Ok(()),
                n => seen.extend_from_slice(&chunk[..n]),
            }
        }
        // What follows this request (a pipelined one) stays for the next turn.
        seen.drain(..head_end + body_len);
        seen_by.requests.fetch_add(1, Ordering::SeqCst);
        seen_by.heads.lock().unwrap().push(head.clone());
        for (pause, piece) in script(&head) {
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            stream.write_all(piece.as_bytes()).await?;
            seen_by.written.fetch_add(1, Ordering::SeqCst);
        }
    }
    Ok(())
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}
