//! The request-body bound of admission control. Room for a body is taken as its bytes arrive, in
//! whole KiB, and held until the request is answered (its bytes, then what they were parsed into,
//! are in memory until then), so a body that stalls holds only what it sent. A body whose stated
//! `Content-Length` does not fit is refused before any of it is read; one that runs out of room
//! while it arrives (a chunked body, or a race with others) ends with [`NoRoomForBody`], which
//! the JSON extractor answers `503 overloaded` (`crate::json`).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, header};
use hyper::body::{Bytes, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::KIB;
use crate::error::ApiError;
use crate::metrics::{Count, HubMetrics};
use crate::state::AppState;

/// A body's bytes found no room: the bodies being read fill the bound.
#[derive(Debug, thiserror::Error)]
#[error("the hub is reading as many request bodies as it may")]
pub struct NoRoomForBody;

/// The room a request's body has taken. Shared by the body as it arrives and by the route checks,
/// which hold it until the request is answered; given back when both let go.
#[derive(Clone, Default)]
pub struct BodyRoom(Arc<Mutex<Taken>>);

#[derive(Default)]
struct Taken {
    bytes: usize,
    permit: Option<OwnedSemaphorePermit>,
}

impl BodyRoom {
    /// Takes room for `more` bytes (room is counted in whole KiB).
    fn take(&self, room: &Arc<Semaphore>, more: usize) -> Result<(), NoRoomForBody> {
        let mut taken = self.0.lock().unwrap_or_else(|p| p.into_inner());
        taken.bytes += more;
        let held = taken.permit.as_ref().map_or(0, |p| p.num_permits());
        let needed = taken.bytes.div_ceil(KIB);
        if needed > held {
            let more = u32::try_from(needed - held).unwrap_or(u32::MAX);
            let permit = room
                .clone()
                .try_acquire_many_owned(more)
                .map_err(|_| NoRoomForBody)?;
            match &mut taken.permit {
                Some(held) => held.merge(permit),
                None => taken.permit = Some(permit),
            }
        }
        Ok(())
    }
}

/// A request body that takes room for its bytes as they arrive.
struct Metered {
    inner: Body,
    room: BodyRoom,
    kib: Arc<Semaphore>,
    metrics: Arc<HubMetrics>,
}

impl hyper::body::Body for Metered {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
            && let Err(full) = this.room.take(&this.kib, data.len())
        {
            this.metrics.add(Count::SubmitsShed, 1);
            return Poll::Ready(Some(Err(axum::Error::new(full))));
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The request with its body metered, and the room it takes, to hold until the request is
/// answered (`None`: it has no body). `Err`: 503, its stated length does not fit beside the
/// bodies being read. One of the route checks (`crate::routes::checks`).
pub fn room_for_body(
    state: &AppState,
    request: Request,
) -> Result<(Request, Option<BodyRoom>), ApiError> {
    let length = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    let bodiless = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::DELETE
    );
    if length == Some(0) || (length.is_none() && bodiless) {
        return Ok((request, None));
    }
    let admission = &state.admission;
    // Looked at, not taken: taken as the bytes come.
    if let Some(length) = length
        && length.min(state.config.max_body_bytes).div_ceil(KIB)
            > admission.body_kib.available_permits()
    {
        return Err(admission.no_room_for_body());
    }
    let room = BodyRoom::default();
    let (parts, body) = request.into_parts();
    let metered = Metered {
        inner: body,
        room: room.clone(),
        kib: admission.body_kib.clone(),
        metrics: admission.metrics.clone(),
    };
    Ok((Request::from_parts(parts, Body::new(metered)), Some(room)))
}

/// Whether an error (a body extractor's rejection) came from a body that found no room.
pub fn found_no_room(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if error.is::<NoRoomForBody>() {
            return true;
        }
        cause = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metered(chunks: &'static [&'static [u8]], kib: &Arc<Semaphore>) -> (Body, BodyRoom) {
        let stream = futures_util::stream::iter(
            chunks
                .iter()
                .map(|c| Ok::<_, std::io::Error>(Bytes::from_static(c))),
        );
        let room = BodyRoom::default();
        let body = Body::new(Metered {
            inner: Body::from_stream(stream),
            room: room.clone(),
            kib: kib.clone(),
            metrics: Arc::new(HubMetrics::new(true)),
        });
        (body, room)
    }

    #[tokio::test]
    async fn a_body_takes_room_as_it_arrives_and_gives_it_back_when_let_go() {
        let kib = Arc::new(Semaphore::new(4));
        let (body, room) = metered(&[&[b'x'; 1000], &[b'x'; 1000], b"x"], &kib);
        let read = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        assert_eq!(read.len(), 2001);
        assert_eq!(kib.available_permits(), 2, "2,001 bytes hold 2 KiB of 4");
        drop(room);
        assert_eq!(kib.available_permits(), 4);
    }

    #[tokio::test]
    async fn a_body_past_the_room_left_ends_with_no_room() {
        let kib = Arc::new(Semaphore::new(2));
        let (body, room) = metered(&[&[b'x'; 2048], b"x"], &kib);
        let error = axum::body::to_bytes(body, usize::MAX).await.unwrap_err();
        assert!(found_no_room(&error), "{error}");
        drop(room);
        assert_eq!(kib.available_permits(), 2, "what it held is given back");
    }
}
