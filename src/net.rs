//! The byte stream under IMAP and SMTP, and opening it: TCP, then TLS when configured.
//!
//! Entry points: `connect` (TCP with a time limit) and `handshake` (TLS over it), giving a
//! [`MailStream`]. The IMAP intake ([`crate::mailbox::imap`]) and the SMTP sender
//! ([`crate::outbox`]) both open their connections here, so they share one stream type and one
//! way of verifying the server (the trust anchors come from [`crate::tls`]; nothing here can turn
//! verification off). The errors are typed but carry no wording of their own beyond the cause:
//! each protocol reports them in its own terms and retries them on its own schedule.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::{InvalidDnsNameError, ServerName};

/// A connection to a mail server: plain TCP (loopback only, or before STARTTLS) or TLS.
///
/// async-imap takes it as is (any tokio `AsyncRead + AsyncWrite`); lettre through
/// `AsyncTokioStream`, implemented next to the sender in [`crate::outbox`].
#[derive(Debug)]
pub enum MailStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for MailStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MailStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MailStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MailStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MailStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MailStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MailStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            MailStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MailStream::Plain(s) => s.is_write_vectored(),
            MailStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MailStream::Plain(s) => Pin::new(s).poll_flush(cx),
            MailStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MailStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MailStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Why [`connect`] found no server.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// Resolving the name or the TCP connection itself failed (refused, unreachable...).
    #[error(transparent)]
    Io(io::Error),
    /// No answer within the caller's limit.
    #[error("timed out")]
    Timeout,
}

/// Opens a TCP connection to `host:port` (a name or an IP address, resolved as tokio does),
/// giving up after `limit`. The socket has `TCP_NODELAY` set.
///
/// # Errors
/// [`ConnectError::Io`] from resolving or connecting, [`ConnectError::Timeout`] after `limit`.
pub(crate) async fn connect(
    host: &str,
    port: u16,
    limit: Duration,
) -> Result<TcpStream, ConnectError> {
    let tcp = match tokio::time::timeout(limit, TcpStream::connect((host, port))).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => return Err(ConnectError::Io(e)),
        Err(_) => return Err(ConnectError::Timeout),
    };
    // IMAP and SMTP are request/response with small writes, where Nagle's algorithm only adds
    // latency. For SMTP it cost 40 ms a message: lettre writes a message and its final
    // "\r\n.\r\n" separately, and the second write waited for the server's delayed ACK of the
    // first (about 20 messages per second at best).
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// Why [`handshake`] gave no TLS stream.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    /// The configured host cannot be a certificate's name.
    #[error("not a valid server name: {0}")]
    ServerName(InvalidDnsNameError),
    /// The handshake failed, certificate verification included.
    #[error(transparent)]
    Tls(io::Error),
    /// No handshake within the caller's limit.
    #[error("timed out")]
    Timeout,
}

/// Runs the TLS handshake over `tcp`, verifying the server's certificate for `host` (an IPv6
/// literal may keep its `[]`) against the roots in `config`, giving up after `limit`.
///
/// Returns a [`MailStream::Tls`].
///
/// # Errors
/// [`HandshakeError::ServerName`] when `host` is not a DNS name or IP address,
/// [`HandshakeError::Tls`] when the handshake or the verification failed,
/// [`HandshakeError::Timeout`] after `limit`.
pub(crate) async fn handshake(
    config: Arc<ClientConfig>,
    host: &str,
    tcp: TcpStream,
    limit: Duration,
) -> Result<MailStream, HandshakeError> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(host.to_string()).map_err(HandshakeError::ServerName)?;
    match tokio::time::timeout(limit, TlsConnector::from(config).connect(name, tcp)).await {
        Ok(Ok(tls)) => Ok(MailStream::Tls(Box::new(tls))),
        Ok(Err(e)) => Err(HandshakeError::Tls(e)),
        Err(_) => Err(HandshakeError::Timeout),
    }
}
