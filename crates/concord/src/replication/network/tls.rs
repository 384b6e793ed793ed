//! TLS between members (etcd's `--peer-cert-file`, `--peer-key-file`,
//! `--peer-trusted-ca-file`, `--peer-client-cert-auth`).
//!
//! A member whose peer URL is `https` serves the peer protocol over TLS
//! with its certificate; a member dialling an `https` peer URL checks the
//! peer's certificate against the trusted CA (or the system's roots without
//! one) for the URL's host, and presents its own certificate, which the
//! other side requires under `client_cert_auth`. Peer URLs that are `http`
//! stay plain, as in etcd, so a cluster can mix them only as its URLs say.

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

/// A member's peer TLS material (PEM).
#[derive(Clone)]
pub struct PeerTls {
    /// This member's certificate, presented when it serves and when it
    /// dials (a member certificate serves as both, as etcd's does).
    pub cert_pem: Vec<u8>,
    /// The key of `cert_pem`.
    pub key_pem: Vec<u8>,
    /// The CA that signs the members' certificates; `None`: the system's
    /// roots check servers, and clients' certificates are not checked.
    pub trusted_ca_pem: Option<Vec<u8>>,
    /// Refuse peers without a certificate signed by `trusted_ca_pem`.
    pub client_cert_auth: bool,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTls")
            .field("trusted_ca", &self.trusted_ca_pem.is_some())
            .field("client_cert_auth", &self.client_cert_auth)
            .finish_non_exhaustive()
    }
}

impl PeerTls {
    pub(crate) fn server_config(&self) -> ServerTlsConfig {
        let mut config = ServerTlsConfig::new().identity(Identity::from_pem(&self.cert_pem, &self.key_pem));
        if let Some(ca) = &self.trusted_ca_pem {
            config = config.client_ca_root(Certificate::from_pem(ca)).client_auth_optional(!self.client_cert_auth);
        }
        config
    }

    fn client_config(&self, host: &str) -> ClientTlsConfig {
        let config = ClientTlsConfig::new()
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .domain_name(host.to_string());
        match &self.trusted_ca_pem {
            Some(ca) => config.ca_certificate(Certificate::from_pem(ca)),
            None => config.with_native_roots(),
        }
    }
}

/// The endpoint to dial for a peer advertised at `url`, reached at
/// `dialled` (the same, unless a dial map says otherwise): TLS for an
/// `https` URL, verified for the advertised host.
pub(crate) fn endpoint(url: &str, dialled: &str, tls: Option<&PeerTls>) -> Result<Endpoint, String> {
    let Some(rest) = url.strip_prefix("https://") else {
        return Endpoint::from_shared(dialled.to_string()).map_err(|e| format!("peer URL {url}: {e}"));
    };
    let tls = tls.ok_or_else(|| {
        format!("peer URL {url} is https, but this member has no peer TLS settings (--peer-cert-file, --peer-key-file)")
    })?;
    let host = rest.split(['/', '?']).next().unwrap_or(rest);
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let dialled = match dialled.split_once("://") {
        Some((_, rest)) => format!("https://{rest}"),
        None => format!("https://{dialled}"),
    };
    Endpoint::from_shared(dialled)
        .map_err(|e| format!("peer URL {url}: {e}"))?
        .tls_config(tls.client_config(host))
        .map_err(|e| format!("peer URL {url}: TLS: {e}"))
}
