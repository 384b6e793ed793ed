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
//!
//! Client certificates as identity, as etcd under `--client-cert-auth`:
//! the common name of the client's certificate (verified by the handshake)
//! is read once per connection, at the handshake, and every request on the
//! connection carries it in its extensions ([`TlsClientInfo`], tonic's
//! connect info); `authz::caller` takes it as the user of a request that
//! carries no token. Without `--client-cert-auth` it is not read at all.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

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
    /// A client without a certificate signed by that CA is refused, and
    /// the certificate's common name is the user of a request that carries
    /// no token (etcd's `--client-cert-auth`).
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
    pub fn acceptor(&self) -> Result<ClientTlsAcceptor, String> {
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
        let acceptor = TlsAcceptor::from(Arc::new(config));
        Ok(ClientTlsAcceptor { acceptor, certificate_users: self.client_cert_required })
    }
}

/// TLS on a client listener, as [`ClientTls::acceptor`] made it: the
/// handshake, and whether client certificates name their users.
#[derive(Clone)]
pub struct ClientTlsAcceptor {
    acceptor: TlsAcceptor,
    /// `--client-cert-auth`: each connection's certificate names its user.
    certificate_users: bool,
}

impl std::fmt::Debug for ClientTlsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTlsAcceptor").field("certificate_users", &self.certificate_users).finish_non_exhaustive()
    }
}

/// What the requests on a TLS client connection know of it: tonic puts it
/// in every request's extensions.
#[derive(Debug, Clone)]
pub struct TlsClientInfo {
    /// The client's address.
    pub remote_addr: Option<SocketAddr>,
    /// Under `--client-cert-auth`, the user the client's certificate names:
    /// its subject's common name, as etcd reads it, empty when it has none
    /// (such a client is no user: refused while auth is enabled). `None`
    /// without `--client-cert-auth`.
    pub certificate_user: Option<String>,
}

/// A client connection whose TLS handshake is done.
pub struct TlsConnection {
    stream: TlsStream<TcpStream>,
    info: TlsClientInfo,
}

impl TlsConnection {
    fn new(stream: TlsStream<TcpStream>, certificate_users: bool) -> Self {
        let (tcp, session) = stream.get_ref();
        let certificate_user = certificate_users.then(|| {
            // The first certificate is the client's own (the rest, if
            // any, its chain), verified against the CA by the handshake.
            session.peer_certificates().and_then(|chain| chain.first()).and_then(|c| common_name(c)).unwrap_or_default()
        });
        let info = TlsClientInfo { remote_addr: tcp.peer_addr().ok(), certificate_user };
        TlsConnection { stream, info }
    }
}

impl Connected for TlsConnection {
    type ConnectInfo = TlsClientInfo;

    fn connect_info(&self) -> TlsClientInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// The common name in a certificate's subject, as etcd reads it (Go's
/// `Subject.CommonName`): of several, the last; values that are not text
/// (UTF8String, PrintableString, IA5String or NumericString here) do not
/// count. `None` without one, or when the certificate cannot be parsed.
fn common_name(certificate_der: &[u8]) -> Option<String> {
    let (_, certificate) = x509_parser::parse_x509_certificate(certificate_der).ok()?;
    let name = certificate.subject().iter_common_name().filter_map(|cn| cn.as_str().ok()).last();
    name.map(str::to_string)
}

/// The connections accepted on `listener`, each once its handshake is done;
/// ends (and closes the listener) when the server stops taking them.
pub fn incoming(listener: TcpListener, tls: ClientTlsAcceptor) -> ReceiverStream<io::Result<TlsConnection>> {
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
            let (tls, tx) = (tls.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(TlsConnection::new(stream, tls.certificate_users))).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DistinguishedName, DnType, DnValue, KeyPair};

    use super::common_name;

    fn certificate(subject: &[(DnType, DnValue)]) -> Vec<u8> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        for (kind, value) in subject {
            params.distinguished_name.push(kind.clone(), value.clone());
        }
        params.self_signed(&KeyPair::generate().unwrap()).unwrap().der().to_vec()
    }

    /// The subject's CN, however it is encoded as text; none without one
    /// or without a certificate.
    #[test]
    fn the_common_name_is_read_from_the_subject() {
        let utf8 = certificate(&[(DnType::OrganizationName, "org".into()), (DnType::CommonName, "alice".into())]);
        assert_eq!(common_name(&utf8).as_deref(), Some("alice"));
        let printable = certificate(&[(DnType::CommonName, DnValue::PrintableString("root".try_into().unwrap()))]);
        assert_eq!(common_name(&printable).as_deref(), Some("root"));
        assert_eq!(common_name(&certificate(&[(DnType::OrganizationName, "org".into())])), None);
        assert_eq!(common_name(b"not a certificate"), None);
    }
}
