//! The kubelet's `:authority` on the registration socket, made acceptable.
//!
//! The kubelet dials `<driver>-reg.sock` with grpc-go and a bare socket
//! path as the target (kubernetes: pkg/kubelet/pluginmanager/
//! operationexecutor/operation_generator.go `dial`), so every request
//! carries the socket *path* as its HTTP/2 `:authority`. The h2 crate
//! under tonic refuses such an authority and resets the stream with
//! `PROTOCOL_ERROR` (hyperium/h2#487, tonic#742): the kubelet then never
//! gets `GetInfo` through. Go servers do not check it.
//!
//! [`FixAuthority`] sits between the accepted socket and the HTTP/2 server
//! and rewrites the `:authority` field of every HEADERS frame the client
//! sends to `localhost`, leaving every other byte as it is. It reads the
//! HPACK representations without decoding them: only the representations
//! whose name is `:authority` (static index 1, or the literal name) get a
//! new, plain value. A header block continued in CONTINUATION frames is
//! passed on untouched (the kubelet's are a few hundred bytes).
//!
//! Dynamic-table caveat: a rewritten entry the client adds to its HPACK
//! table is shorter on our side, so the two tables could evict
//! differently once more than 4 KiB of headers were indexed on one
//! connection; the kubelet makes two calls per connection, far below that.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The value put in place of the client's `:authority`.
pub const AUTHORITY: &[u8] = b"localhost";

/// The HTTP/2 client connection preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// Largest frame accepted for rewriting (h2's maximum frame size is 16 MiB).
const MAX_FRAME: usize = 1 << 24;

/// A stream whose incoming HTTP/2 HEADERS frames get `:authority: localhost`.
#[derive(Debug)]
pub struct FixAuthority<S> {
    inner: S,
    /// Bytes read from `inner` not yet turned into output.
    pending: Vec<u8>,
    /// Output ready for the reader.
    ready: Vec<u8>,
    ready_from: usize,
    preface_left: usize,
    eof: bool,
}

impl<S> FixAuthority<S> {
    /// Wraps a freshly accepted connection.
    pub fn new(inner: S) -> Self {
        FixAuthority {
            inner,
            pending: Vec::new(),
            ready: Vec::new(),
            ready_from: 0,
            preface_left: PREFACE.len(),
            eof: false,
        }
    }

    /// Moves whatever complete units `pending` holds into `ready`.
    fn process(&mut self) {
        if self.preface_left > 0 {
            let n = self.preface_left.min(self.pending.len());
            self.ready.extend(self.pending.drain(..n));
            self.preface_left -= n;
            if self.preface_left > 0 {
                return;
            }
        }
        loop {
            if self.pending.len() < FRAME_HEADER {
                return;
            }
            let len = usize::from(self.pending[0]) << 16
                | usize::from(self.pending[1]) << 8
                | usize::from(self.pending[2]);
            if len > MAX_FRAME || self.pending.len() < FRAME_HEADER + len {
                if len > MAX_FRAME {
                    // Not HTTP/2 as we know it: stop interpreting.
                    self.ready.append(&mut self.pending);
                }
                return;
            }
            let frame: Vec<u8> = self.pending.drain(..FRAME_HEADER + len).collect();
            match rewrite_headers_frame(&frame) {
                Some(fixed) => self.ready.extend(fixed),
                None => self.ready.extend(frame),
            }
        }
    }
}

/// The frame with `:authority` rewritten, or `None` to keep it as it is
/// (not HEADERS, continued, or not parseable).
pub fn rewrite_headers_frame(frame: &[u8]) -> Option<Vec<u8>> {
    let (header, payload) = frame.split_at_checked(FRAME_HEADER)?;
    let flags = header[4];
    if header[3] != HEADERS || flags & END_HEADERS == 0 {
        return None;
    }
    let mut block = payload;
    let mut priority: &[u8] = &[];
    if flags & PADDED != 0 {
        let (&pad, rest) = block.split_first()?;
        block = rest.get(..rest.len().checked_sub(usize::from(pad))?)?;
    }
    if flags & PRIORITY != 0 {
        (priority, block) = block.split_at_checked(5)?;
    }
    let fixed = rewrite_block(block)?;
    let len = priority.len() + fixed.len();
    if len >= 1 << 24 {
        return None;
    }
    let mut out = Vec::with_capacity(FRAME_HEADER + len);
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, HEADERS]);
    out.push(flags & !PADDED);
    out.extend_from_slice(&header[5..9]);
    out.extend_from_slice(priority);
    out.extend_from_slice(&fixed);
    Some(out)
}

/// HPACK integer with an `n`-bit prefix at `buf[*pos]`.
fn integer(buf: &[u8], pos: &mut usize, n: u8) -> Option<usize> {
    let max = (1usize << n) - 1;
    let mut value = usize::from(*buf.get(*pos)?) & max;
    *pos += 1;
    if value < max {
        return Some(value);
    }
    let mut shift = 0u32;
    loop {
        let b = *buf.get(*pos)?;
        *pos += 1;
        value = value.checked_add(usize::from(b & 0x7f).checked_shl(shift)?)?;
        if b & 0x80 == 0 {
            return Some(value);
        }
        shift += 7;
        if shift > 28 {
            return None;
        }
    }
}

/// Skips an HPACK string; returns its raw bytes and whether it is Huffman-coded.
fn string<'a>(buf: &'a [u8], pos: &mut usize) -> Option<(&'a [u8], bool)> {
    let huffman = buf.get(*pos)? & 0x80 != 0;
    let len = integer(buf, pos, 7)?;
    let s = buf.get(*pos..pos.checked_add(len)?)?;
    *pos += len;
    Some((s, huffman))
}

/// The header block with every `:authority` value replaced by [`AUTHORITY`].
pub fn rewrite_block(block: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(block.len());
    let mut pos = 0;
    while pos < block.len() {
        let start = pos;
        let b = block[pos];
        let prefix = if b & 0x80 != 0 {
            integer(block, &mut pos, 7)?; // indexed field
            out.extend_from_slice(&block[start..pos]);
            continue;
        } else if b & 0xc0 == 0x40 {
            6 // literal with incremental indexing
        } else if b & 0xe0 == 0x20 {
            integer(block, &mut pos, 5)?; // dynamic table size update
            out.extend_from_slice(&block[start..pos]);
            continue;
        } else {
            4 // literal without indexing / never indexed
        };
        let index = integer(block, &mut pos, prefix)?;
        let is_authority = if index == 0 {
            let (name, huffman) = string(block, &mut pos)?;
            !huffman && name == b":authority"
        } else {
            index == 1
        };
        let name_end = pos;
        string(block, &mut pos)?;
        out.extend_from_slice(&block[start..name_end]);
        if is_authority {
            // Plain (not Huffman) string; 9 bytes fit the 7-bit prefix.
            out.push(AUTHORITY.len() as u8);
            out.extend_from_slice(AUTHORITY);
        } else {
            out.extend_from_slice(&block[name_end..pos]);
        }
    }
    Some(out)
}

impl<S: AsyncRead + Unpin> AsyncRead for FixAuthority<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.ready_from < this.ready.len() {
                let n = buf.remaining().min(this.ready.len() - this.ready_from);
                buf.put_slice(&this.ready[this.ready_from..this.ready_from + n]);
                this.ready_from += n;
                if this.ready_from == this.ready.len() {
                    this.ready.clear();
                    this.ready_from = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                // Whatever is left unparsed goes out as it came.
                if this.pending.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                this.ready.append(&mut this.pending);
                continue;
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    if read.filled().is_empty() {
                        this.eof = true;
                    } else {
                        this.pending.extend_from_slice(read.filled());
                        this.process();
                    }
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FixAuthority<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn literal(first: u8, value: &[u8]) -> Vec<u8> {
        let mut v = vec![first, value.len() as u8];
        v.extend_from_slice(value);
        v
    }

    /// A block like grpc-go's: `:method POST` (indexed 3), `:authority`
    /// with incremental indexing, a literal `content-type`, and a new-name
    /// `:authority` without indexing.
    fn block(authority: &[u8]) -> Vec<u8> {
        let mut b = vec![0x83];
        b.extend(literal(0x41, authority));
        b.extend(literal(0x5f, b"application/grpc"));
        b.extend([0x00, 10]);
        b.extend_from_slice(b":authority");
        b.push(authority.len() as u8);
        b.extend_from_slice(authority);
        b.push(0x3f); // table size update, 5-bit prefix continued
        b.push(0xe1);
        b.push(0x1f);
        b
    }

    #[test]
    fn every_authority_becomes_localhost() {
        let path = b"/var/lib/kubelet/plugins_registry/d-reg.sock";
        let fixed = rewrite_block(&block(path)).unwrap();
        assert_eq!(fixed, block(AUTHORITY));
        // Long values (multi-byte length) too.
        let long = vec![b'/'; 300];
        let mut b = vec![0x41, 0x7f];
        let mut n = long.len() - 127;
        while n >= 128 {
            b.push((n % 128) as u8 | 0x80);
            n /= 128;
        }
        b.push(n as u8);
        b.extend_from_slice(&long);
        assert_eq!(rewrite_block(&b).unwrap(), literal(0x41, AUTHORITY));
    }

    #[test]
    fn frames_keep_priority_and_lose_padding() {
        let mut payload = vec![3]; // pad length
        payload.extend_from_slice(&[0x80, 0, 0, 1, 16]); // priority
        payload.extend(block(b"/x.sock"));
        payload.extend_from_slice(&[0, 0, 0]);
        let f = frame(HEADERS, END_HEADERS | PADDED | PRIORITY | 1, 1, &payload);
        let out = rewrite_headers_frame(&f).unwrap();
        let mut want_payload = vec![0x80, 0, 0, 1, 16];
        want_payload.extend(block(AUTHORITY));
        assert_eq!(
            out,
            frame(HEADERS, END_HEADERS | PRIORITY | 1, 1, &want_payload)
        );
        // DATA frames and continued blocks stay as they are.
        assert!(rewrite_headers_frame(&frame(0x0, 0, 1, b"abc")).is_none());
        assert!(rewrite_headers_frame(&frame(HEADERS, 0, 1, &block(b"/x"))).is_none());
        // Garbage is passed on, never a panic.
        assert!(rewrite_block(&[0x41, 0x7f]).is_none());
        assert!(rewrite_headers_frame(&frame(HEADERS, END_HEADERS | PADDED, 1, &[200])).is_none());
    }

    #[tokio::test]
    async fn stream_rewrites_across_arbitrary_reads() {
        let mut input = PREFACE.to_vec();
        input.extend(frame(0x4, 0, 0, &[])); // SETTINGS
        input.extend(frame(HEADERS, END_HEADERS, 1, &block(b"/tmp/d-reg.sock")));
        input.extend(frame(0x0, 1, 1, b"\0\0\0\0\0"));
        let mut want = PREFACE.to_vec();
        want.extend(frame(0x4, 0, 0, &[]));
        want.extend(frame(HEADERS, END_HEADERS, 1, &block(AUTHORITY)));
        want.extend(frame(0x0, 1, 1, b"\0\0\0\0\0"));
        // Delivered in 3-byte pieces.
        let (mut client, server) = tokio::io::duplex(3);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for chunk in input.chunks(3) {
                client.write_all(chunk).await.unwrap();
            }
        });
        let mut fixed = FixAuthority::new(server);
        let mut out = Vec::new();
        let mut buf = [0u8; 7];
        while out.len() < want.len() {
            let n = fixed.read(&mut buf).await.unwrap();
            assert!(n > 0);
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out, want);
        writer.await.unwrap();
    }
}
