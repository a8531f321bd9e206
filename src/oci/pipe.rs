//! A writer whose bytes another thread writes on: the stages of making a layer blob (reading
//! and checking the store's blobs into a tar, SHA-256 of the tar, compression, SHA-256 of
//! the blob, the output) run at once instead of one after the other.
//!
//! [`piped`] runs its producer on the calling thread and the consumer (`inner`, a writer) on
//! a scoped thread of its own, with at most [`DEPTH`] chunks between them. Chunks are written
//! to `inner` in the order they were made, so the bytes are exactly those a direct write
//! gives; only the timing changes. Buffers go back to the producer once written, so a long
//! stream reuses a few of them rather than fault in fresh memory for every chunk.
//!
//! `inner` is not flushed at the end: a compressor's flush ends a block, which would change
//! its output, and a layer's compressed blob must stay the bytes it always was (its digest is
//! remembered in stores and named in registries). The caller flushes what needs it.

use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

/// Chunks in flight between the two threads.
pub const DEPTH: usize = 8;

/// Bytes per chunk: large enough that a chunk costs one wakeup per hundreds of tar entries,
/// small enough to stay in the cache between the producer's write and the consumer's read.
pub const CHUNK: usize = 256 * 1024;

/// Run `produce` with a writer whose bytes are written to `inner` on another thread; then
/// give `inner` back (unflushed) with what `produce` returned.
///
/// `E` is the caller's error type: an I/O error of either side becomes one by `io`.
pub fn piped<W, R, E>(
    inner: W,
    io: impl Fn(io::Error) -> E,
    produce: impl FnOnce(&mut Pipe) -> Result<R, E>,
) -> Result<(R, W), E>
where
    W: Write + Send,
{
    let (tx, rx) = sync_channel::<Vec<u8>>(DEPTH);
    let (back_tx, back_rx) = sync_channel::<Vec<u8>>(DEPTH + 2);
    std::thread::scope(|scope| {
        let consumer = std::thread::Builder::new()
            .spawn_scoped(scope, move || consume(inner, rx, back_tx))
            .map_err(|e| {
                io(io::Error::new(
                    e.kind(),
                    format!("{}: {e}", crate::threads::NO_THREAD),
                ))
            })?;
        let mut pipe = Pipe {
            tx: Some(tx),
            back: back_rx,
            buf: Vec::with_capacity(CHUNK),
        };
        let produced = produce(&mut pipe).and_then(|r| pipe.finish().map(|()| r).map_err(&io));
        // On failure the sender goes here, without the end marker.
        drop(pipe);
        let consumed = consumer.join().expect("a pipe's consumer does not panic");
        match (produced, consumed) {
            (Ok(r), Ok(w)) => Ok((r, w)),
            // The consumer's failure is why the producer saw a broken pipe.
            (_, Err(Failed::Io(e))) => Err(io(e)),
            (Err(e), _) => Err(e),
            (Ok(_), Err(Failed::Abandoned)) => unreachable!("a finished pipe has its end marker"),
        }
    })
}

enum Failed {
    Io(io::Error),
    /// The producer stopped without finishing: its own error says why.
    Abandoned,
}

fn consume<W: Write>(
    mut inner: W,
    rx: Receiver<Vec<u8>>,
    back: SyncSender<Vec<u8>>,
) -> Result<W, Failed> {
    loop {
        let Ok(mut chunk) = rx.recv() else {
            return Err(Failed::Abandoned);
        };
        // The empty chunk is the end marker: nothing else sends one.
        if chunk.is_empty() {
            return Ok(inner);
        }
        inner.write_all(&chunk).map_err(Failed::Io)?;
        chunk.clear();
        let _ = back.try_send(chunk);
    }
}

/// The producer's end of [`piped`].
pub struct Pipe {
    tx: Option<SyncSender<Vec<u8>>>,
    back: Receiver<Vec<u8>>,
    buf: Vec<u8>,
}

impl Pipe {
    fn send(&mut self) -> io::Result<()> {
        let fresh = self
            .back
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
        let chunk = std::mem::replace(&mut self.buf, fresh);
        let tx = self.tx.as_ref().ok_or(io::ErrorKind::BrokenPipe)?;
        tx.send(chunk)
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
    }

    fn finish(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.send()?;
        }
        let tx = self.tx.take().ok_or(io::ErrorKind::BrokenPipe)?;
        tx.send(Vec::new())
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
    }
}

impl Write for Pipe {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    /// Chunks go when full, and the rest at the end.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_arrive_in_order_and_whole() {
        let data: Vec<u8> = (0..3 * CHUNK + 77).map(|i| (i * 7 % 251) as u8).collect();
        let (n, out) = piped(
            Vec::new(),
            |e| e,
            |w| {
                for piece in data.chunks(1000) {
                    w.write_all(piece)?;
                }
                Ok(42)
            },
        )
        .unwrap();
        assert_eq!((n, out), (42, data));
    }

    #[test]
    fn a_failing_consumer_fails_the_producer_with_its_error() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::from_raw_os_error(libc::ENOSPC))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let got: io::Result<((), Full)> = piped(
            Full,
            |e| e,
            |w| {
                loop {
                    w.write_all(&[0; 4096])?;
                }
            },
        );
        let e = got.err().unwrap();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
    }

    #[test]
    fn a_failing_producer_leaves_the_output_unflushed() {
        let got: Result<((), Vec<u8>), io::Error> = piped(
            Vec::new(),
            |e| e,
            |w| {
                w.write_all(b"partial")?;
                Err(io::Error::other("no"))
            },
        );
        assert_eq!(got.err().unwrap().to_string(), "no");
    }
}
