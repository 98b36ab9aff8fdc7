//! The tee of a streamed request body: every chunk goes on to the primary as it comes
//! (a clone of its `Bytes`, no copy, no wait), and into a buffer for the mirrors (one
//! buffer of the copy's own, `body::Gathered`: kept chunks would keep alive the read
//! buffers they are views into), which are sent once the body has ended. A body larger than the largest `mirror_max_body`
//! stops being kept (the copies are dropped and counted); a body that fails or is
//! abandoned before its end sends no copy: a copy is of a whole request or nothing.

use super::Copy;
use crate::body::Gathered;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

pin_project_lite::pin_project! {
    /// A request body on its way to the primary, kept for the mirrors' copies.
    pub struct Tee<B: Body> {
        #[pin]
        inner: B,
        kept: Option<Kept>,
    }

    impl<B: Body> PinnedDrop for Tee<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // The reader stopped at the body's end without asking for more (a body of
            // known length): the copies still go.
            if this.inner.is_end_stream()
                && let Some(kept) = this.kept.take()
            {
                kept.send();
            }
        }
    }
}

/// What the mirrors wait for: the body so far, while it fits.
struct Kept {
    copies: Vec<Copy>,
    body: Gathered,
    size: u64,
    /// The largest `mirror_max_body` of the copies.
    limit: u64,
}

impl Kept {
    fn send(self) {
        let body = self.body.into_bytes();
        super::send_all(self.copies, std::slice::from_ref(&body));
    }
}

impl<B: Body<Data = Bytes>> Tee<B> {
    /// Tees `body` for `copies`. Without copies it passes `body` through; a body that
    /// has ended already (or declares a length over the limit) is dealt with now.
    pub fn new(body: B, copies: Vec<Copy>) -> Self {
        let mut tee = Self {
            inner: body,
            kept: None,
        };
        if copies.is_empty() {
            return tee;
        }
        let limit = super::largest_max_body(&copies);
        if tee.inner.is_end_stream() {
            super::send_all(copies, &[]);
        } else if tee.inner.size_hint().lower() > limit {
            super::all_too_large(copies);
        } else {
            tee.kept = Some(Kept {
                copies,
                body: Gathered::default(),
                size: 0,
                limit,
            });
        }
        tee
    }
}

impl<B: Body<Data = Bytes>> Body for Tee<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        let Some(kept) = this.kept.as_mut() else {
            return Poll::Ready(frame);
        };
        let ended = match &frame {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    kept.size += data.len() as u64;
                    if kept.size <= kept.limit {
                        kept.body.push(data);
                    }
                }
                this.inner.is_end_stream()
            }
            None => true,
            // A body that failed is not a request the client made whole: no copy.
            Some(Err(_)) => {
                *this.kept = None;
                return Poll::Ready(frame);
            }
        };
        let over = kept.size > kept.limit;
        if over || ended {
            let kept = this.kept.take().expect("present: matched above");
            if over {
                super::all_too_large(kept.copies);
            } else {
                kept.send();
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
