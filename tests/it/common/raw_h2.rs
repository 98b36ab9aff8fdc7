//! A client that writes HTTP/2 frames by hand ([`RawH2`]), for tests that play a client
//! breaking the rules the `h2` crate keeps (streams over the advertised limit, rapid
//! resets), and a reader of HPACK blocks' representations ([`hpack_kinds`]).

use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a wait for the gateway's move may take before the test fails: far longer
/// than it takes on a loaded machine.
pub const PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// Frame types and error codes of RFC 9113 the raw client uses.
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const GOAWAY: u8 = 0x7;
pub const REFUSED_STREAM: u32 = 0x7;
pub const CANCEL: u32 = 0x8;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

/// One frame as read: type, flags, stream id, payload.
pub type RawFrame = (u8, u8, u32, Vec<u8>);

/// A client that writes HTTP/2 frames by hand, so it can break the rules the `h2` crate
/// keeps. Frames arrive on `frames` from a reader task, which reads until the gateway
/// closes (a reader that stopped could lose a GOAWAY to the reset of a closed socket).
pub struct RawH2 {
    write: tokio::net::tcp::OwnedWriteHalf,
    frames: tokio::sync::mpsc::UnboundedReceiver<RawFrame>,
}

pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A complete GET of `path` on `stream` (END_STREAM, END_HEADERS), HPACK-encoded with
/// static-table names and literal values, so no dynamic table state is needed.
pub fn get_headers(stream: u32, path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x86]; // :method GET, :scheme http
    for (index, value) in [(0x04u8, path), (0x01, "localhost")] {
        // Literal without indexing, name from the static table (:path, :authority).
        block.push(index);
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    frame(HEADERS, 0x1 | 0x4, stream, &block)
}

pub fn rst_stream(stream: u32, code: u32) -> Vec<u8> {
    frame(RST_STREAM, 0, stream, &code.to_be_bytes())
}

impl RawH2 {
    /// Connects, sends the preface and empty SETTINGS, and acknowledges the gateway's
    /// SETTINGS (its limits apply from the acknowledgement on).
    pub async fn connect(addr: SocketAddr) -> Self {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (mut read, mut write) = tcp.into_split();
        let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        hello.extend(frame(SETTINGS, 0, 0, &[]));
        write.write_all(&hello).await.unwrap();
        let (tx, mut frames) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut head = [0u8; 9];
            while read.read_exact(&mut head).await.is_ok() {
                let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
                let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
                let mut payload = vec![0; len];
                if read.read_exact(&mut payload).await.is_err() {
                    break;
                }
                let _ = tx.send((head[3], head[4], stream, payload));
            }
        });
        loop {
            let (kind, flags, _, _) = frames.recv().await.expect("the gateway's SETTINGS");
            if kind == SETTINGS && flags & 0x1 == 0 {
                break;
            }
        }
        write
            .write_all(&frame(SETTINGS, 0x1, 0, &[]))
            .await
            .unwrap();
        Self { write, frames }
    }

    /// Writes `bytes`; false once the gateway has closed the connection.
    pub async fn send(&mut self, bytes: &[u8]) -> bool {
        self.write.write_all(bytes).await.is_ok()
    }

    /// The next frame, or `None` once the connection is closed; fails after 10 s.
    pub async fn next(&mut self) -> Option<RawFrame> {
        tokio::time::timeout(PATIENCE, self.frames.recv())
            .await
            .expect("a frame or the close within 10 s")
    }
}

pub fn error_code(payload: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(payload[at..at + 4].try_into().unwrap())
}

/// The representations of an HPACK header block, by kind: `'i'` indexed, `'+'` literal
/// added to the dynamic table, `'n'` literal never indexed, `'w'` literal without
/// indexing, `'s'` a table size update. Strings are skipped, not decoded (Huffman).
pub fn hpack_kinds(mut block: &[u8]) -> Vec<char> {
    fn int(block: &mut &[u8], prefix: u8) -> usize {
        let max = (1usize << prefix) - 1;
        let mut value = (block[0] as usize) & max;
        *block = &block[1..];
        if value == max {
            let mut shift = 0;
            loop {
                let byte = block[0];
                *block = &block[1..];
                value += ((byte & 0x7f) as usize) << shift;
                shift += 7;
                if byte & 0x80 == 0 {
                    break;
                }
            }
        }
        value
    }
    fn skip_string(block: &mut &[u8]) {
        let len = int(block, 7);
        *block = &block[len..];
    }
    let mut kinds = Vec::new();
    while !block.is_empty() {
        let first = block[0];
        let (kind, prefix) = match first {
            b if b & 0x80 != 0 => ('i', 7),
            b if b & 0xc0 == 0x40 => ('+', 6),
            b if b & 0xe0 == 0x20 => ('s', 5),
            b if b & 0xf0 == 0x10 => ('n', 4),
            _ => ('w', 4),
        };
        let index = int(&mut block, prefix);
        if matches!(kind, '+' | 'n' | 'w') {
            if index == 0 {
                skip_string(&mut block);
            }
            skip_string(&mut block);
        }
        kinds.push(kind);
    }
    kinds
}
