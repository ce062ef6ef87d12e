//! The HTTP server: HTTP/1.1 and HTTP/2 (axum's server), in the clear or
//! over TLS with the gRPC server's certificate and key, until shutdown.
//!
//! Over TLS, a task accepts connections and runs each handshake on a task
//! of its own, bounded by [`HANDSHAKE_TIMEOUT`], so that a client that
//! stalls its handshake holds up no one; finished handshakes queue for the
//! server.

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use axum::{Router, serve::Listener};
use rustls::{
    ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_util::sync::CancellationToken;

use crate::config::TlsSettings;

/// Longest a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes done and not yet taken by the server.
const HANDSHAKES_QUEUED: usize = 64;

/// The bound socket of the HTTP API.
pub struct HttpServer {
    listener: TcpListener,
    port: u16,
}

impl HttpServer {
    /// Binds `addr` (port 0 picks a free one).
    pub async fn bind(addr: SocketAddr) -> io::Result<HttpServer> {
        let listener = TcpListener::bind(addr).await?;
        let port = listener.local_addr()?.port();
        Ok(HttpServer { listener, port })
    }

    /// The port bound.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves `router` until `shutdown`, then lets calls in flight finish.
    pub async fn serve(
        self,
        router: Router,
        tls: Option<&TlsSettings>,
        shutdown: CancellationToken,
    ) -> io::Result<()> {
        let stop = shutdown.clone().cancelled_owned();
        match tls {
            None => {
                axum::serve(self.listener, router)
                    .with_graceful_shutdown(stop)
                    .await
            }
            Some(tls) => {
                let listener = TlsListener::start(self.listener, rustls_config(tls)?, shutdown)?;
                axum::serve(listener, router)
                    .with_graceful_shutdown(stop)
                    .await
            }
        }
    }
}

/// The rustls configuration of the gRPC server's identity, offering
/// HTTP/2 and HTTP/1.1.
fn rustls_config(tls: &TlsSettings) -> io::Result<Arc<ServerConfig>> {
    let invalid =
        |err: &dyn std::fmt::Display| io::Error::new(io::ErrorKind::InvalidInput, err.to_string());
    let chain = CertificateDer::pem_slice_iter(&tls.cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(&e))?;
    let key = PrivateKeyDer::from_pem_slice(&tls.key_pem).map_err(|e| invalid(&e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(&e))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| invalid(&e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Connections whose TLS handshake is done.
struct TlsListener {
    done: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accepts on `listener` until `shutdown`, each handshake on its own task.
    fn start(
        listener: TcpListener,
        config: Arc<ServerConfig>,
        shutdown: CancellationToken,
    ) -> io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (tx, done) = mpsc::channel(HANDSHAKES_QUEUED);
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = shutdown.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((stream, peer)) = accepted else {
                    // Out of file descriptors and the like: breathe.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let handshake =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(err)) => {
                            tracing::debug!(%peer, error = %err, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { done, local })
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.done.recv().await {
            Some(accepted) => accepted,
            // The accepting task ended (shutdown): nothing more comes.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}
