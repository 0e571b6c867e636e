//! A raw HTTP/1.1 client over one TCP connection, for what reqwest will not
//! send or cannot observe: header values with CR/LF, partial or trickled
//! bodies, chunked bodies written by hand, a connection held open, and what
//! the server does with the connection after it answers.
//!
//! Requests are bytes the test writes as they are; responses are read into
//! a buffer that the test can parse ([`RawConnection::response`]) or look at
//! as received ([`RawConnection::received`]).

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bound on one write or one read of [`RawConnection::send`],
/// [`RawConnection::response`] and [`RawConnection::closed_by_server`]: an
/// exchange that takes longer has hung.
pub const EXCHANGE_LIMIT: Duration = Duration::from_secs(30);

/// A response read by [`RawConnection::response`].
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

/// One TCP connection to the server, and the bytes read from it that no
/// [`RawConnection::response`] has taken yet.
pub struct RawConnection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl RawConnection {
    /// Connects to `address`, as `TestApp::address` spells it
    /// (`http://127.0.0.1:PORT`) or without the scheme.
    pub async fn open(address: &str) -> Self {
        let addr = address.trim_start_matches("http://");
        Self {
            stream: TcpStream::connect(addr).await.unwrap(),
            buffer: vec![],
        }
    }

    /// Writes `bytes` as they are, within [`EXCHANGE_LIMIT`].
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        tokio::time::timeout(EXCHANGE_LIMIT, self.stream.write_all(bytes))
            .await
            .map_err(|_| "the server stopped reading and the write hung".to_owned())?
            .map_err(|e| format!("write failed: {e}"))
    }

    /// Reads what arrives within `limit` into the buffer: `None` when
    /// nothing did, else the count read (0 once the server closed).
    pub async fn read_within(&mut self, limit: Duration) -> Option<std::io::Result<usize>> {
        let mut chunk = [0u8; 8192];
        let read = tokio::time::timeout(limit, self.stream.read(&mut chunk))
            .await
            .ok()?;
        if let Ok(n) = read {
            self.buffer.extend_from_slice(&chunk[..n]);
        }
        Some(read)
    }

    /// Reads into the buffer until the server closes the connection: `None`
    /// when it has not within `limit` (what arrived meanwhile is kept).
    pub async fn read_to_end_within(&mut self, limit: Duration) -> Option<std::io::Result<()>> {
        tokio::time::timeout(limit, self.stream.read_to_end(&mut self.buffer))
            .await
            .ok()
            .map(|read| read.map(|_| ()))
    }

    /// The bytes read and not yet taken by [`RawConnection::response`].
    pub fn received(&self) -> &[u8] {
        &self.buffer
    }

    /// [`RawConnection::received`] as text (invalid UTF-8 replaced).
    pub fn received_text(&self) -> String {
        String::from_utf8_lossy(&self.buffer).into_owned()
    }

    async fn fill(&mut self) -> Result<usize, String> {
        self.read_within(EXCHANGE_LIMIT)
            .await
            .ok_or_else(|| "no response in time".to_owned())?
            .map_err(|e| format!("read failed: {e}"))
    }

    /// Reads one response (its body by `Content-Length`) and takes it from
    /// the buffer.
    pub async fn response(&mut self) -> Result<RawResponse, String> {
        let head_end = loop {
            if let Some(i) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            if self.fill().await? == 0 {
                return Err(format!(
                    "connection closed before a complete response: {:?}",
                    self.received_text()
                ));
            }
        };
        let head = String::from_utf8_lossy(&self.buffer[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("not an HTTP response: {head:?}"))?;
        let headers: HashMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize = headers
            .get("content-length")
            .map_or(Ok(0), |v| v.parse())
            .map_err(|e| format!("content-length: {e}"))?;
        while self.buffer.len() < head_end + 4 + length {
            if self.fill().await? == 0 {
                return Err("connection closed in the middle of a response body".into());
            }
        }
        let body = self.buffer[head_end + 4..head_end + 4 + length].to_vec();
        self.buffer.drain(..head_end + 4 + length);
        Ok(RawResponse {
            status,
            headers,
            body,
        })
    }

    /// `Ok` when the server closes the connection without sending more.
    pub async fn closed_by_server(&mut self) -> Result<(), String> {
        match self.fill().await {
            Ok(0) => Ok(()),
            Ok(_) => Err(format!(
                "unexpected bytes after the response: {:?}",
                self.received_text()
            )),
            // A reset after the response counts as closed.
            Err(e) if e.starts_with("read failed") => Ok(()),
            Err(e) => Err(format!("the connection was not closed: {e}")),
        }
    }
}
