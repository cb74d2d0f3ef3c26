//! One port, two protocols: with TLS between nodes the server's listener is split into a plain
//! HTTP one and a TLS one by the first byte of each connection (a TLS handshake starts with
//! 0x16, an HTTP request with a method's letter). Each connection is sorted in a task of its
//! own, with deadlines, so a slow or silent client holds only itself.

use std::{io, net::SocketAddr, time::Duration};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};

/// How long a new connection may take to send its first byte, and its TLS handshake.
const FIRST_BYTES: Duration = Duration::from_secs(10);
/// The first byte of a TLS record carrying a handshake.
const TLS_HANDSHAKE: u8 = 0x16;

/// Connections sorted to one protocol, as an `axum::serve` listener.
pub struct Sorted<S> {
    rx: mpsc::Receiver<(S, SocketAddr)>,
    local: SocketAddr,
}

impl<S> axum::serve::Listener for Sorted<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    type Io = S;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (S, SocketAddr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The sorting task is gone (the listener failed): accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// Splits `listener` into its plain and its TLS connections (handshake done).
pub fn split(
    listener: TcpListener,
    acceptor: TlsAcceptor,
) -> io::Result<(Sorted<TcpStream>, Sorted<TlsStream<TcpStream>>)> {
    let local = listener.local_addr()?;
    let (plain_tx, plain_rx) = mpsc::channel(256);
    let (tls_tx, tls_rx) = mpsc::channel(256);
    tokio::spawn(async move {
        loop {
            // Once both servers have stopped (shutdown), the port is closed, not left to take
            // connections nobody serves.
            let accepted = tokio::select! {
                a = listener.accept() => a,
                () = async { tokio::join!(plain_tx.closed(), tls_tx.closed()); } => return,
            };
            let (tcp, addr) = match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors and the like: wait rather than spin.
                    tracing::debug!(error = %e, "accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let (plain_tx, tls_tx, acceptor) = (plain_tx.clone(), tls_tx.clone(), acceptor.clone());
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let mut first = [0u8; 1];
                match tokio::time::timeout(FIRST_BYTES, tcp.peek(&mut first)).await {
                    Ok(Ok(1)) if first[0] == TLS_HANDSHAKE => {
                        match tokio::time::timeout(FIRST_BYTES, acceptor.accept(tcp)).await {
                            Ok(Ok(tls)) => {
                                let _ = tls_tx.send((tls, addr)).await;
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(%addr, error = %e, "TLS handshake refused")
                            }
                            Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
                        }
                    }
                    Ok(Ok(1)) => {
                        let _ = plain_tx.send((tcp, addr)).await;
                    }
                    _ => {}
                }
            });
        }
    });
    Ok((
        Sorted {
            rx: plain_rx,
            local,
        },
        Sorted { rx: tls_rx, local },
    ))
}
