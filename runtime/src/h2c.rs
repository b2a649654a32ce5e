//! The HTTP/1.1 `Upgrade: h2c` handshake (RFC 7540 §3.2), which hyper's server does not do.
//!
//! The upgrade request is answered `101 Switching Protocols`; the connection then speaks HTTP/2,
//! and the answer to the upgrade request itself goes out on stream 1. hyper's HTTP/2 server only
//! knows streams that a client opened with a HEADERS frame, so the request is re-encoded as one:
//! after the client's connection preface and first SETTINGS frame, the server reads a HEADERS
//! frame for stream 1 (HPACK literals, never indexed) and the body as DATA frames, as if the client
//! had sent them, then the rest of what the client sends. Bodies larger than a stream's initial
//! flow-control window (65,535 bytes) or of unknown length are not upgraded: the request is served
//! over HTTP/1.1, which RFC 9113 §3.1 allows (it also deprecates this upgrade).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use http::request::Parts;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The most an upgraded request may carry: one stream's initial flow-control window.
pub const MAX_BODY: u64 = 65_535;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const MAX_FRAME: usize = 16_384;

/// Headers that belong to one hop and are never forwarded (RFC 9110 §7.6.1), plus those named
/// by the `connection` header. `te: trailers` stays: gRPC needs it end to end.
pub fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    use http::header::{CONNECTION, TE, TRANSFER_ENCODING, UPGRADE};
    // Most messages carry none of them: one lookup each, and nothing to do.
    let hop = [CONNECTION, TE, TRANSFER_ENCODING, UPGRADE];
    if !hop.iter().any(|h| headers.contains_key(h))
        && !["keep-alive", "proxy-connection", "http2-settings"].iter().any(|h| headers.contains_key(*h))
    {
        return;
    }
    let named: Vec<String> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|t| t.trim().to_ascii_lowercase()))
        .filter(|t| !t.is_empty())
        .collect();
    for name in named {
        if name != "te" {
            headers.remove(name.as_str());
        }
    }
    for name in ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "http2-settings"] {
        headers.remove(name);
    }
    if headers.get(http::header::TE).is_some_and(|v| v.as_bytes() != b"trailers") {
        headers.remove(http::header::TE);
    }
}

/// Whether a comma-separated header (`connection`, `upgrade`) lists `token`, in any case.
pub(crate) fn has_token(headers: &http::HeaderMap, name: http::header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// Whether `req` asks to upgrade to h2c in a way this server can honour.
pub fn wants_upgrade<B>(req: &http::Request<B>) -> bool {
    let has_token = |name, token| has_token(req.headers(), name, token);
    // Every request passes here: the cheap tests first, the length only for an upgrade.
    let length = || req.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    req.version() == http::Version::HTTP_11
        && req.headers().contains_key("http2-settings")
        && has_token(http::header::UPGRADE, "h2c")
        && has_token(http::header::CONNECTION, "upgrade")
        && !req.headers().contains_key(http::header::TRANSFER_ENCODING)
        && length().unwrap_or(0) <= MAX_BODY
}

/// An HPACK integer with an `n`-bit prefix (RFC 7541 §5.1), the high bits of the first byte set to `flags`.
fn integer(out: &mut BytesMut, flags: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.put_u8(flags | value as u8);
        return;
    }
    out.put_u8(flags | max as u8);
    value -= max;
    while value >= 128 {
        out.put_u8((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.put_u8(value as u8);
}

/// A literal header field never indexed, with a literal name (RFC 7541 §6.2.3).
fn literal(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.put_u8(0x10);
    integer(out, 0, 7, name.len());
    out.put_slice(name);
    integer(out, 0, 7, value.len());
    out.put_slice(value);
}

fn frame(out: &mut BytesMut, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len();
    out.put_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    out.put_u32(stream & 0x7fff_ffff);
    out.put_slice(payload);
}

/// The upgrade request as stream 1 of an HTTP/2 connection: HEADERS (and CONTINUATION) frames,
/// then DATA frames for the body.
pub fn stream_one(parts: &Parts, body: &[u8]) -> Bytes {
    let mut block = BytesMut::new();
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| parts.headers.get(http::header::HOST).and_then(|h| h.to_str().ok()).map(str::to_string))
        .unwrap_or_default();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    literal(&mut block, b":method", parts.method.as_str().as_bytes());
    literal(&mut block, b":scheme", b"http");
    literal(&mut block, b":authority", authority.as_bytes());
    literal(&mut block, b":path", path.as_bytes());
    let mut headers = parts.headers.clone();
    strip_hop_by_hop(&mut headers);
    headers.remove(http::header::HOST);
    for (name, value) in &headers {
        literal(&mut block, name.as_str().as_bytes(), value.as_bytes());
    }
    let mut out = BytesMut::new();
    let chunks: Vec<&[u8]> = block.chunks(MAX_FRAME).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let last = i + 1 == chunks.len();
        let end_headers = if last { 0x4 } else { 0 };
        if i == 0 {
            let end_stream = if body.is_empty() { 0x1 } else { 0 };
            frame(&mut out, 0x1, end_headers | end_stream, 1, chunk);
        } else {
            frame(&mut out, 0x9, end_headers, 1, chunk);
        }
    }
    let pieces: Vec<&[u8]> = body.chunks(MAX_FRAME).collect();
    for (i, piece) in pieces.iter().enumerate() {
        frame(&mut out, 0x0, if i + 1 == pieces.len() { 0x1 } else { 0 }, 1, piece);
    }
    out.freeze()
}

/// Reads the client's connection preface and its first frame (SETTINGS) and returns them with
/// `stream_one` after them: what the HTTP/2 server must read before the rest of the connection.
pub async fn client_start<T: AsyncRead + Unpin>(io: &mut T, stream_one: Bytes) -> io::Result<Bytes> {
    let mut head = vec![0u8; PREFACE.len() + 9];
    io.read_exact(&mut head).await?;
    if &head[..PREFACE.len()] != PREFACE || head[PREFACE.len() + 3] != 0x4 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "no HTTP/2 preface after the h2c upgrade"));
    }
    let h = &head[PREFACE.len()..];
    let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
    if len > MAX_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "oversized SETTINGS frame"));
    }
    let mut payload = vec![0u8; len];
    io.read_exact(&mut payload).await?;
    let mut out = BytesMut::with_capacity(head.len() + len + stream_one.len());
    out.put_slice(&head);
    out.put_slice(&payload);
    out.put_slice(&stream_one);
    Ok(out.freeze())
}

/// A connection whose first bytes read are `prefix`.
pub struct Prefixed<T> {
    prefix: Bytes,
    inner: T,
}

impl<T> Prefixed<T> {
    pub fn new(prefix: Bytes, inner: T) -> Prefixed<T> {
        Prefixed { prefix, inner }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Prefixed<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let chunk = self.prefix.split_to(n);
            buf.put_slice(&chunk);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Prefixed<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
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

    #[test]
    fn hpack_integers_follow_the_rfc_examples() {
        // RFC 7541 C.1.1 and C.1.2: 10 and 1337 with a 5-bit prefix.
        let mut out = BytesMut::new();
        integer(&mut out, 0, 5, 10);
        integer(&mut out, 0, 5, 1337);
        assert_eq!(&out[..], &[0x0a, 0x1f, 0x9a, 0x0a]);
    }

    #[test]
    fn hop_by_hop_headers_are_dropped_and_te_trailers_kept() {
        let mut h = http::HeaderMap::new();
        h.insert("connection", "Upgrade, x-private".parse().unwrap());
        h.insert("upgrade", "h2c".parse().unwrap());
        h.insert("x-private", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("te", "trailers".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        let mut names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["te", "x-kept"]);
    }
}
