//! Reading a body whole into one buffer ([`Gathered`], [`gather_within`]): the first
//! chunk as it came (most bodies are one chunk, and it is not copied), every later one
//! copied after it as it comes.
//!
//! Keeping the chunks instead (http-body-util's `Collected`, a list of `Bytes`) costs
//! a list entry per chunk and keeps alive the read buffer each chunk is a view into: a
//! client sending a 10 MiB body in 1-byte chunks made the gateway hold ~677 MB for it.
//! Gathered, a body holds about its own length: the buffer is sized from the body's
//! declared length when it has one, and one that grew past a quarter more than it holds
//! is copied to fit when it is done (a job's body is kept for the whole job).

use bytes::{Bytes, BytesMut};
use http_body::Body;
use http_body_util::BodyExt;

/// A body's bytes so far, in one buffer once there is more than one chunk.
#[derive(Debug, Default)]
pub struct Gathered {
    /// The only chunk so far, as it came.
    first: Option<Bytes>,
    /// Every chunk, copied, once a second one came.
    copied: BytesMut,
    len: u64,
    /// The length the body declared, reserved at the first copy.
    expected: usize,
}

impl Gathered {
    /// Adds `chunk` after what is gathered.
    pub fn push(&mut self, chunk: &Bytes) {
        if chunk.is_empty() {
            return;
        }
        self.len += chunk.len() as u64;
        if self.copied.is_empty() {
            let Some(first) = self.first.take() else {
                self.first = Some(chunk.clone());
                return;
            };
            self.copied
                .reserve(self.expected.max(first.len() + chunk.len()));
            self.copied.extend_from_slice(&first);
        }
        self.copied.extend_from_slice(chunk);
    }

    /// Bytes gathered.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The body so far, in one `Bytes` of about its size.
    pub fn into_bytes(self) -> Bytes {
        match self.first {
            Some(first) => first,
            None => fitted(self.copied),
        }
    }
}

/// `buffer` as `Bytes`, copied into an allocation of its length when it holds more than
/// a quarter again as much (a grown buffer doubles; `freeze` keeps all of it).
fn fitted(buffer: BytesMut) -> Bytes {
    if buffer.capacity() > buffer.len() + buffer.len() / 4 {
        Bytes::copy_from_slice(&buffer)
    } else {
        buffer.freeze()
    }
}

/// Why [`gather_within`] returned no body.
#[derive(Debug)]
pub enum GatherError<E> {
    /// The body is longer than the limit (read up to the chunk that passed it).
    TooLarge,
    /// The body's stream failed.
    Read(E),
}

/// Reads `body` whole, refusing it once it is longer than `limit` bytes. Trailers are
/// read and dropped.
pub async fn gather_within<B>(body: B, limit: u64) -> Result<Bytes, GatherError<B::Error>>
where
    B: Body<Data = Bytes>,
{
    if body.size_hint().lower() > limit {
        return Err(GatherError::TooLarge);
    }
    let hint = body.size_hint();
    let mut body = std::pin::pin!(body);
    let mut gathered = Gathered {
        expected: usize::try_from(hint.exact().unwrap_or(hint.lower()).min(limit)).unwrap_or(0),
        ..Gathered::default()
    };
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(GatherError::Read)?.into_data() else {
            continue;
        };
        if gathered.len() + data.len() as u64 > limit {
            return Err(GatherError::TooLarge);
        }
        gathered.push(&data);
    }
    Ok(gathered.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;
    use http_body_util::combinators::BoxBody;

    fn chunked(chunks: Vec<Bytes>) -> BoxBody<Bytes, std::io::Error> {
        let frames = chunks
            .into_iter()
            .map(|c| Ok::<_, std::io::Error>(http_body::Frame::data(c)));
        BodyExt::boxed(StreamBody::new(futures_util::stream::iter(frames)))
    }

    #[test]
    fn one_chunk_is_kept_as_it_came_and_more_are_copied_out_of_their_buffers() {
        let buffer = Bytes::from(b"1\r\na\r\n1\r\nb\r\n2\r\ncd\r\n0\r\n\r\n".to_vec());
        let inside = |b: &Bytes| buffer.as_ptr_range().contains(&b.as_ptr());
        let mut one = Gathered::default();
        one.push(&buffer.slice(3..4));
        let kept = one.into_bytes();
        assert_eq!(&kept[..], b"a");
        assert!(inside(&kept), "one chunk: no copy");

        let mut many = Gathered::default();
        for chunk in [
            buffer.slice(3..4),
            Bytes::new(),
            buffer.slice(9..10),
            buffer.slice(15..17),
        ] {
            many.push(&chunk);
        }
        assert_eq!(many.len(), 4);
        let whole = many.into_bytes();
        assert_eq!(&whole[..], b"abcd");
        assert!(!inside(&whole), "several chunks: one buffer of their own");
        assert!(Gathered::default().into_bytes().is_empty());
    }

    #[test]
    fn a_grown_buffer_is_copied_to_fit_and_a_fitting_one_kept() {
        let mut grown = BytesMut::with_capacity(4096);
        grown.extend_from_slice(&[b'x'; 1000]);
        let at = grown.as_ptr();
        let fit = fitted(grown);
        assert_eq!(fit.len(), 1000);
        assert_ne!(fit.as_ptr(), at, "4 KiB held for 1 KiB: copied");
        let mut tight = BytesMut::with_capacity(1100);
        tight.extend_from_slice(&[b'x'; 1000]);
        let at = tight.as_ptr();
        assert_eq!(fitted(tight).as_ptr(), at, "within a quarter: kept");
    }

    #[tokio::test]
    async fn a_body_is_read_whole_within_its_limit_and_refused_past_it() {
        let chunks = || {
            (0..1000)
                .map(|_| Bytes::from_static(b"x"))
                .collect::<Vec<_>>()
        };
        let whole = gather_within(chunked(chunks()), 1000).await.unwrap();
        assert_eq!(whole.len(), 1000);
        assert!(matches!(
            gather_within(chunked(chunks()), 999).await,
            Err(GatherError::TooLarge)
        ));
        // A declared length over the limit is refused before a byte is read.
        let declared = http_body_util::Full::new(Bytes::from_static(b"0123456789"));
        assert!(matches!(
            gather_within(declared, 9).await,
            Err(GatherError::TooLarge)
        ));
        let failing = BodyExt::boxed(StreamBody::new(futures_util::stream::iter([
            Ok(http_body::Frame::data(Bytes::from_static(b"a"))),
            Err(std::io::Error::other("reset")),
        ])));
        assert!(matches!(
            gather_within(failing, 10).await,
            Err(GatherError::Read(e)) if e.to_string() == "reset"
        ));
    }
}
