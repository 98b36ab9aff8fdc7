//! Spare read buffers of the HTTP/1.1 connections, kept per worker thread. A connection
//! holds no buffer while idle: between requests it gives its buffer back here, and
//! takes one when the next request's bytes arrive. Under load that is one hand-back
//! and one take per request, where freeing and allocating 4 KiB each time made the
//! allocator retire and refetch whole pages of that size (a page emptied by the frees
//! of a few connections is returned to its arena while another is half full).

use bytes::BytesMut;
use std::cell::RefCell;

/// The size of a read buffer.
pub const READ_SIZE: usize = 4096;
/// Spare buffers one thread keeps at most: 256 KiB (under 512 KiB even if each were
/// memory grown a little past the usual size, the most `give_back` keeps). A
/// connection between requests holds none, so the idle connections' memory stays as
/// it was; past this many hand-backs at once the rest are freed.
const MAX_SPARE: usize = 64;

thread_local! {
    static SPARE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer with room for [`READ_SIZE`] bytes: a spare one, else a new one.
pub fn take() -> BytesMut {
    SPARE
        .with(|spare| spare.borrow_mut().pop())
        .unwrap_or_else(|| BytesMut::with_capacity(READ_SIZE))
}

/// Takes back an emptied buffer, leaving `buf` without one. It is kept only when no
/// request's bytes still share its memory (a header value of an answer not yet sent,
/// say) and it is the usual size: one grown for a large head or body is freed, as is
/// one that still holds bytes.
pub fn give_back(buf: &mut BytesMut) {
    let mut buf = std::mem::take(buf);
    // `try_reclaim` never allocates: it succeeds only for memory no one else holds,
    // moving the view back to that memory's start when it must. Asked for twice the
    // size, it succeeds only on memory grown past the usual size, though the view left
    // after the request's bytes were split off may show no more than it.
    let usual = buf.is_empty()
        && buf.capacity() <= READ_SIZE
        && buf.try_reclaim(READ_SIZE)
        && buf.capacity() == READ_SIZE
        && !buf.try_reclaim(2 * READ_SIZE);
    if !usual {
        return;
    }
    SPARE.with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.len() < MAX_SPARE {
            spare.push(buf);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spare_count() -> usize {
        SPARE.with(|s| s.borrow().len())
    }

    #[test]
    fn an_emptied_buffer_is_taken_again() {
        let mut buf = take();
        assert!(buf.is_empty() && buf.capacity() >= READ_SIZE);
        buf.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        let head = buf.split().freeze();
        drop(head);
        let before = spare_count();
        give_back(&mut buf);
        assert_eq!(buf.capacity(), 0, "the connection holds none after");
        assert_eq!(spare_count(), before + 1);
        let again = take();
        assert_eq!(again.capacity(), READ_SIZE);
        assert_eq!(spare_count(), before);
    }

    #[test]
    fn a_buffer_still_shared_with_a_request_is_not_kept() {
        let mut buf = take();
        buf.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        let head = buf.split().freeze();
        let before = spare_count();
        give_back(&mut buf);
        assert_eq!(spare_count(), before, "its memory is the request's too");
        assert_eq!(&head[..4], b"GET ");
    }

    #[test]
    fn a_buffer_with_bytes_or_none_at_all_is_not_kept() {
        let before = spare_count();
        let mut buf = take();
        buf.extend_from_slice(b"GET");
        give_back(&mut buf);
        give_back(&mut BytesMut::new());
        assert_eq!(spare_count(), before);
    }

    #[test]
    fn a_grown_buffer_is_freed_and_the_spares_are_bounded() {
        let mut big = BytesMut::with_capacity(8 * READ_SIZE);
        let before = spare_count();
        give_back(&mut big);
        assert_eq!(spare_count(), before);
        // Grown, then its first half split off: the view left shows the usual size.
        let mut grown = BytesMut::with_capacity(2 * READ_SIZE);
        grown.extend_from_slice(&[b'x'; READ_SIZE]);
        drop(grown.split().freeze());
        assert_eq!(grown.capacity(), READ_SIZE);
        give_back(&mut grown);
        assert_eq!(spare_count(), before, "8 KiB of memory is not a spare");
        for _ in 0..MAX_SPARE + 5 {
            let mut buf = BytesMut::with_capacity(READ_SIZE);
            give_back(&mut buf);
        }
        assert_eq!(spare_count(), MAX_SPARE);
    }
}
