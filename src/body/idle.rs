//! A body that ends in an error when its stream sends nothing for a while: the idle
//! timeout of proxied bodies, both ways.

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::Sleep;

/// The error of a body that sent nothing for its idle timeout.
#[derive(Debug, thiserror::Error)]
#[error("the body sent nothing for {}", humantime::format_duration(*.0))]
pub struct IdleTimeoutError(pub Duration);

pin_project! {
    /// `body`, ended with [`IdleTimeoutError`] once it has sent nothing for `idle`. The
    /// timer is armed only while the body waits: a frame that is ready (a small answer,
    /// read whole with its head) costs no timer, where tower-http's `TimeoutBody` arms
    /// and drops one per frame.
    pub struct IdleTimeout<B> {
        idle: Duration,
        #[pin]
        sleep: Option<Sleep>,
        #[pin]
        body: B,
    }
}

impl<B> IdleTimeout<B> {
    pub fn new(idle: Duration, body: B) -> Self {
        Self {
            idle,
            sleep: None,
            body,
        }
    }
}

impl<B> Body for IdleTimeout<B>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = B::Data;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        if let Poll::Ready(frame) = this.body.poll_frame(cx) {
            // Something came: the next wait starts its own clock.
            this.sleep.set(None);
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if this.sleep.is_none() {
            this.sleep.set(Some(tokio::time::sleep(*this.idle)));
        }
        let sleep = this.sleep.as_pin_mut().expect("armed above");
        ready!(sleep.poll(cx));
        Poll::Ready(Some(Err(IdleTimeoutError(*this.idle).into())))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::BodyExt;
    use tokio::sync::mpsc;

    /// A body whose frames come from a channel, when the test sends them.
    struct Chan(mpsc::Receiver<Bytes>);

    impl Body for Chan {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
        }
    }

    fn channel_body(idle: Duration) -> (mpsc::Sender<Bytes>, IdleTimeout<Chan>) {
        let (tx, rx) = mpsc::channel(4);
        (tx, IdleTimeout::new(idle, Chan(rx)))
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_keeps_sending_is_not_cut() {
        let (tx, body) = channel_body(Duration::from_secs(1));
        let mut body = std::pin::pin!(body);
        tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(800)).await;
                tx.send(Bytes::from_static(b"x")).await.unwrap();
            }
        });
        let mut got = 0;
        while let Some(frame) = body.frame().await {
            got += frame.unwrap().into_data().unwrap().len();
        }
        assert_eq!(got, 5, "4 s in all, never 1 s without a frame");
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_body_ends_in_an_error_after_idle() {
        let (tx, body) = channel_body(Duration::from_secs(1));
        let mut body = std::pin::pin!(body);
        tx.send(Bytes::from_static(b"x")).await.unwrap();
        assert!(body.frame().await.unwrap().is_ok());
        let started = tokio::time::Instant::now();
        let err = body.frame().await.unwrap().unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        assert_eq!(err.to_string(), "the body sent nothing for 1s");
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_ready_body_arms_no_timer() {
        let body = http_body_util::Full::new(Bytes::from_static(b"whole"));
        let mut body = std::pin::pin!(IdleTimeout::new(Duration::from_secs(1), body));
        assert_eq!(body.size_hint().exact(), Some(5));
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "whole");
        assert!(body.as_mut().project().sleep.is_none());
        assert!(body.frame().await.is_none());
        assert!(body.is_end_stream());
    }
}
