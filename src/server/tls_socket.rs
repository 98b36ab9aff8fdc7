//! The socket under a TLS client connection: a `TcpStream` whose vectored write of one
//! slice is a plain `send`. rustls hands its pending records to the socket as a vectored
//! write, and the usual answer is one record: `writev` with one slice costs the kernel
//! more than `send` (the vector is copied in and checked) for the same bytes.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A client's TCP connection, as TLS writes to it.
#[derive(Debug)]
pub struct TlsSocket(pub TcpStream);

impl AsyncRead for TlsSocket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsSocket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut filled = bufs.iter().filter(|b| !b.is_empty());
        match (filled.next(), filled.next()) {
            (None, _) => Poll::Ready(Ok(0)),
            (Some(only), None) => Pin::new(&mut self.0).poll_write(cx, only),
            (Some(_), Some(_)) => Pin::new(&mut self.0).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::TlsSocket;
    use std::io::IoSlice;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    async fn pair() -> (TlsSocket, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ours = TcpStream::connect(listener.local_addr().unwrap());
        let (ours, theirs) = tokio::join!(ours, listener.accept());
        (TlsSocket(ours.unwrap()), theirs.unwrap().0)
    }

    #[tokio::test]
    async fn vectored_writes_arrive_whole_and_in_order() {
        let (mut ours, mut theirs) = pair().await;
        let empty: &[u8] = b"";
        for bufs in [
            vec![
                IoSlice::new(empty),
                IoSlice::new(b"one"),
                IoSlice::new(empty),
            ],
            vec![
                IoSlice::new(b"two"),
                IoSlice::new(empty),
                IoSlice::new(b"three"),
            ],
        ] {
            let want: usize = bufs.iter().map(|b| b.len()).sum();
            // Loopback takes these few bytes whole, in one call.
            assert_eq!(ours.write_vectored(&bufs).await.unwrap(), want);
        }
        assert_eq!(
            ours.write_vectored(&[IoSlice::new(empty)]).await.unwrap(),
            0
        );
        ours.shutdown().await.unwrap();
        let mut got = String::new();
        theirs.read_to_string(&mut got).await.unwrap();
        assert_eq!(got, "onetwothree");
    }
}
