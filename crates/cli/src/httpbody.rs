//! The request body of the CLI's HTTP/1.1 clients (`twill osnadmin`,
//! `twill ca`).

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::body::{Body, Bytes, Frame, SizeHint};

/// A request body sent in one piece (no frame at all when empty).
pub(crate) struct FullBody(Option<Bytes>);

impl FullBody {
    /// A body of `body`.
    pub(crate) fn new(body: Vec<u8>) -> Self {
        FullBody((!body.is_empty()).then(|| Bytes::from(body)))
    }
}

impl Body for FullBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.take().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0.as_ref().map_or(0, |b| b.len() as u64))
    }
}
