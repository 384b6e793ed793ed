//! TLS on the client port, as etcd serves it: `--cert-file` / `--key-file`
//! for the server, `--trusted-ca-file` to check client certificates and
//! `--client-cert-auth` to require one.
//!
//! Why not tonic's own TLS: it offers only `h2` in ALPN, so HTTP/1.1 over
//! TLS — health probes, curl, the JSON gateway's HTTP/1.1 clients — could
//! not connect, while etcd serves both on one TLS port. Here rustls offers
//! `h2` and `http/1.1`, each handshake runs in its own task (a slow client
//! never holds up the accept loop), and the finished streams go to the same
//! server that serves plain connections.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS for client connections (PEM contents of etcd's flags' files).
#[derive(Clone)]
pub struct ClientTls {
    /// The server's certificate chain, PEM (`--cert-file`).
    pub cert_pem: Vec<u8>,
    /// The server's private key, PEM (`--key-file`).
    pub key_pem: Vec<u8>,
    /// Client certificates are checked against this CA.
    pub client_ca_pem: Option<Vec<u8>>,
    /// A client without a certificate signed by that CA is refused.
    pub client_cert_required: bool,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("client_ca", &self.client_ca_pem.is_some())
            .field("client_cert_required", &self.client_cert_required)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// The handshake configuration, or what is wrong with the files.
    pub fn acceptor(&self) -> Result<TlsAcceptor, String> {
        // ring, not aws-lc-rs: no C toolchain (cmake, NASM) to build
        // Concord. rustls 0.23.48 deprecates ring's provider for lacking
        // post-quantum key exchange; etcd 3.4's clients offer none either.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs = CertificateDer::pem_slice_iter(&self.cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("--cert-file: {e}"))?;
        if certs.is_empty() {
            return Err("--cert-file holds no certificate".into());
        }
        let key = PrivateKeyDer::from_pem_slice(&self.key_pem).map_err(|e| format!("--key-file: {e}"))?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = match &self.client_ca_pem {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(ca) {
                    let cert = cert.map_err(|e| format!("--trusted-ca-file: {e}"))?;
                    roots.add(cert).map_err(|e| format!("--trusted-ca-file: {e}"))?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = match self.client_cert_required {
                    true => verifier.build(),
                    false => verifier.allow_unauthenticated().build(),
                };
                builder.with_client_cert_verifier(verifier.map_err(|e| format!("--trusted-ca-file: {e}"))?)
            }
        };
        let mut config =
            builder.with_single_cert(certs, key).map_err(|e| format!("--cert-file and --key-file: {e}"))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// The connections accepted on `listener`, each once its handshake is done;
/// ends (and closes the listener) when the server stops taking them.
pub fn incoming(listener: TcpListener, acceptor: TlsAcceptor) -> ReceiverStream<std::io::Result<TlsStream<TcpStream>>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = tx.closed() => return,
            };
            let (tcp, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: let it pass.
                    tracing::warn!(error = %e, "cannot accept a client connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Small responses must not wait for delayed ACKs.
            let _ = tcp.set_nodelay(true);
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
