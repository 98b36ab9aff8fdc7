//! A proxied answer's body, streamed from its upstream connection as it arrives; the
//! connection goes back to the pool the moment the body's last byte is read, and is
//! closed if the body is dropped before that.

use super::Pool;
use super::conn::Connection;
use crate::http1::body::{ChunkedDecoder, Step};
use crate::http1::framing::Framing;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

/// What is left of the body.
#[derive(Debug)]
enum Left {
    Bytes(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
}

/// An answer body read from an upstream connection.
#[derive(Debug)]
pub struct AnswerBody {
    pool: Arc<Pool>,
    /// `None` once the body is read.
    conn: Option<Connection>,
    left: Left,
    reusable: bool,
}

impl AnswerBody {
    /// `reusable`: whether the connection may be kept once the body is read.
    pub(super) fn new(pool: Arc<Pool>, conn: Connection, framing: Framing, reusable: bool) -> Self {
        let left = match framing {
            Framing::Empty => Left::Bytes(0),
            Framing::Length(n) => Left::Bytes(n),
            Framing::Chunked => Left::Chunked(ChunkedDecoder::default()),
            Framing::UntilClose => Left::UntilClose,
        };
        let mut body = Self {
            pool,
            conn: Some(conn),
            left,
            reusable,
        };
        if matches!(body.left, Left::Bytes(0)) {
            body.finish();
        }
        body
    }

    /// The whole body, when it is already read (it came with the head, as a small
    /// answer does): the connection goes back to the pool at once, and the caller
    /// sends the bytes without streaming them. `None` leaves the body as it was.
    pub fn take_whole(&mut self) -> Option<Bytes> {
        let (Some(conn), Left::Bytes(left)) = (self.conn.as_mut(), &mut self.left) else {
            return None;
        };
        let len = usize::try_from(*left)
            .ok()
            .filter(|&n| n <= conn.buf.len())?;
        let whole = conn.buf.split_to(len).freeze();
        *left = 0;
        self.finish();
        Some(whole)
    }

    /// The body is read: the connection is free for the next request.
    fn finish(&mut self) {
        if let Some(conn) = self.conn.take()
            && self.reusable
            && conn.buf.is_empty()
        {
            self.pool.checkin(conn);
        }
    }
}

impl Body for AnswerBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            let wanted = match &mut this.left {
                Left::Bytes(left) => {
                    if !conn.buf.is_empty() {
                        let take = (*left).min(conn.buf.len() as u64);
                        let piece = conn.buf.split_to(take as usize).freeze();
                        *left -= take;
                        if *left == 0 {
                            this.finish();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(piece))));
                    }
                    usize::try_from(*left).unwrap_or(usize::MAX)
                }
                Left::Chunked(decoder) => match decoder.next(&mut conn.buf) {
                    Ok(Step::Data(piece)) => return Poll::Ready(Some(Ok(Frame::data(piece)))),
                    Ok(Step::Done) => {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Ok(Step::NeedMore) => 8192,
                    Err(e) => {
                        this.conn = None;
                        return Poll::Ready(Some(Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            e,
                        ))));
                    }
                },
                Left::UntilClose => {
                    if !conn.buf.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(conn.buf.split().freeze()))));
                    }
                    65536
                }
            };
            match ready!(conn.poll_fill(cx, wanted)) {
                Ok(0) if matches!(this.left, Left::UntilClose) => {
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    this.conn = None;
                    let e = io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed before the whole answer",
                    );
                    return Poll::Ready(Some(Err(e)));
                }
                Ok(_) => {}
                Err(e) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.conn, &self.left) {
            (None, _) => SizeHint::with_exact(0),
            (Some(_), Left::Bytes(left)) => SizeHint::with_exact(*left),
            _ => SizeHint::default(),
        }
    }
}
