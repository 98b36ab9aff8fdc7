//! Writing a response on the gateway's own HTTP/1.1 connection: the head, then the body
//! framed by its length when known and chunked otherwise. Body pieces that are ready at
//! once go out with the head in one write; a small answer costs one syscall. The caller
//! bounds the writes (the server's send timeout).

use super::Framing;
use bytes::Bytes;
use http::Response;
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use http::response::Parts;
use http_body::Body;
use std::cell::RefCell;
use std::future::poll_fn;
use std::io::{self, IoSlice, Write as _};
use std::pin::pin;
use std::task::Poll;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Body pieces up to this size are copied into the pending write; larger ones are
/// written from where they are.
const COPY_UP_TO: usize = 16 * 1024;
/// Pending bytes are written out once they reach this much.
const FLUSH_AT: usize = 64 * 1024;

/// The status line and header fields, with the framing's own fields, `Date` and, when
/// the connection ends after this answer, `Connection: close`.
pub fn encode_head(out: &mut Vec<u8>, parts: &Parts, framing: Framing, close: bool) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let headers = &parts.headers;
    for (name, value) in headers {
        // The framing fields are this connection's to write; 204 and 304 carry none.
        if name == TRANSFER_ENCODING || (name == CONTENT_LENGTH && framing != Framing::Empty) {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        // Without a framing field the body ends with the connection, which then closes.
        Framing::Empty | Framing::UntilClose => {}
        Framing::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    if !headers.contains_key(DATE) {
        out.extend_from_slice(b"date: ");
        http_date(out);
        out.extend_from_slice(b"\r\n");
    }
    if close && !headers.contains_key(CONNECTION) {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// What a response is written to: a client connection's stream.
pub trait ResponseStream: AsyncWrite + Unpin {
    /// Whether written bytes can wait inside the stream (TLS records) until flushed: then
    /// it is flushed wherever a plain socket's bytes would be on their way, before
    /// waiting for the body and at the end.
    const BUFFERS_WRITES: bool;
}

/// Writes `response` to `stream`; `Ok(true)` when the connection can carry another
/// request. `head_only`: the answer to a HEAD, whose body is not sent. `close`: the
/// connection ends after this answer.
pub async fn write_response<W: ResponseStream, B>(
    stream: &mut W,
    response: Response<B>,
    head_only: bool,
    close: bool,
) -> io::Result<bool>
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    let (parts, body) = response.into_parts();
    let framing = Framing::of_response(&parts, body.size_hint().exact());
    let mut out = Vec::with_capacity(512);
    encode_head(&mut out, &parts, framing, close);
    if head_only || framing == Framing::Empty {
        flush(stream, &mut out).await?;
        return Ok(!close);
    }
    let mut body = pin!(body);
    let mut sent = 0u64;
    let complete = loop {
        // A piece that is ready now joins the pending bytes; only a wait flushes them.
        let frame = match poll_fn(|cx| Poll::Ready(body.as_mut().poll_frame(cx))).await {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                flush(stream, &mut out).await?;
                poll_fn(|cx| body.as_mut().poll_frame(cx)).await
            }
        };
        let data = match frame {
            None => break true,
            Some(Err(e)) => {
                // The status is out already: ending the connection is the only way to
                // tell the client that the body is incomplete.
                tracing::debug!(error = %e, "response body failed");
                break false;
            }
            // Trailers are dropped, as over HTTP/1.1 without `TE: trailers`.
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => data,
                _ => continue,
            },
        };
        sent += data.len() as u64;
        if let Framing::Length(n) = framing
            && sent > n
        {
            break false;
        }
        let mut size_line = [0u8; 20];
        let size_line = if framing == Framing::Chunked {
            let mut cursor = &mut size_line[..];
            write!(cursor, "{:x}\r\n", data.len()).expect("20 bytes hold a chunk size");
            let left = cursor.len();
            &size_line[..20 - left]
        } else {
            &[][..]
        };
        let tail: &[u8] = if framing == Framing::Chunked {
            b"\r\n"
        } else {
            b""
        };
        if data.len() <= COPY_UP_TO {
            out.extend_from_slice(size_line);
            out.extend_from_slice(&data);
            out.extend_from_slice(tail);
            if out.len() >= FLUSH_AT {
                write_out(stream, &mut out).await?;
            }
        } else {
            let mut slices = [
                IoSlice::new(&out),
                IoSlice::new(size_line),
                IoSlice::new(&data),
                IoSlice::new(tail),
            ];
            write_slices(stream, &mut slices).await?;
            out.clear();
        }
    };
    let complete = complete && framing.ends_at(sent);
    if complete && framing == Framing::Chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    flush(stream, &mut out).await?;
    Ok(complete && !close && framing != Framing::UntilClose)
}

/// Writes the pending bytes, and flushes a stream that keeps them.
async fn flush<W: ResponseStream>(stream: &mut W, out: &mut Vec<u8>) -> io::Result<()> {
    write_out(stream, out).await?;
    if W::BUFFERS_WRITES {
        stream.flush().await?;
    }
    Ok(())
}

async fn write_out(stream: &mut (impl AsyncWrite + Unpin), out: &mut Vec<u8>) -> io::Result<()> {
    if !out.is_empty() {
        stream.write_all(out).await?;
        out.clear();
    }
    Ok(())
}

async fn write_slices(
    stream: &mut (impl AsyncWrite + Unpin),
    mut slices: &mut [IoSlice<'_>],
) -> io::Result<()> {
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        let n = stream.write_vectored(slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, n);
    }
    Ok(())
}

/// Appends the current time as an HTTP date, formatted at most once a second per thread.
fn http_date(out: &mut Vec<u8>) {
    thread_local! {
        static CACHED: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with_borrow_mut(|(at, text)| {
        if *at != second {
            let mut cursor = &mut text[..];
            // An HTTP date is always 29 bytes: `Sun, 22 Nov 2026 08:51:09 GMT`.
            let _ = write!(cursor, "{}", httpdate::HttpDate::from(now));
            *at = second;
        }
        out.extend_from_slice(&text[..]);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn parts(status: u16, headers: &[(&str, &str)]) -> Parts {
        let mut response = Response::builder().status(status);
        for (k, v) in headers {
            response = response.header(*k, *v);
        }
        response.body(()).unwrap().into_parts().0
    }

    fn head(parts: &Parts, framing: Framing, close: bool) -> String {
        let mut out = Vec::new();
        encode_head(&mut out, parts, framing, close);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn framing_rules() {
        let framing = Framing::of_response;
        assert_eq!(framing(&parts(200, &[]), Some(5)), Framing::Length(5));
        assert_eq!(framing(&parts(200, &[]), None), Framing::Chunked);
        assert_eq!(
            framing(&parts(200, &[("content-length", "9")]), None),
            Framing::Length(9),
            "a proxied or HEAD answer's own length"
        );
        for status in [101, 204, 304] {
            assert_eq!(framing(&parts(status, &[]), Some(3)), Framing::Empty);
        }
    }

    #[test]
    fn the_head_carries_framing_date_and_close() {
        let p = parts(
            200,
            &[
                ("content-type", "application/json"),
                ("transfer-encoding", "gzip"),
            ],
        );
        let text = head(&p, Framing::Length(12), true);
        assert!(
            text.starts_with(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 12\r\ndate: "
            ),
            "{text}"
        );
        assert!(
            text.ends_with(" GMT\r\nconnection: close\r\n\r\n"),
            "{text}"
        );
        assert!(!text.contains("gzip"), "the framing is this connection's");
        let date = text
            .split("date: ")
            .nth(1)
            .unwrap()
            .split("\r\n")
            .next()
            .unwrap();
        assert_eq!(date.len(), 29);
        assert!(httpdate::parse_http_date(date).is_ok(), "{date}");
    }

    #[test]
    fn chunked_and_bodiless_heads() {
        let text = head(&parts(200, &[]), Framing::Chunked, false);
        assert!(text.contains("transfer-encoding: chunked\r\n"));
        assert!(!text.contains("connection"));
        let mut p = parts(304, &[("content-length", "10")]);
        assert!(head(&p, Framing::Empty, false).contains("content-length: 10\r\n"));
        p.headers
            .insert(DATE, HeaderValue::from_static("upstream's"));
        let text = head(&p, Framing::Empty, false);
        assert!(text.starts_with("HTTP/1.1 304 Not Modified\r\n"));
        assert_eq!(
            text.matches("date: ").count(),
            1,
            "an upstream's date is kept"
        );
    }

    #[test]
    fn an_unknown_status_has_an_empty_reason() {
        assert!(head(&parts(599, &[]), Framing::Length(0), false).starts_with("HTTP/1.1 599 \r\n"));
    }
}
