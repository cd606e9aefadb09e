//! Node-to-node TLS.
//!
//! Every node holds a certificate chain and private key signed by a cluster CA. Connections are mutually
//! authenticated: the server side asks every client for a certificate and verifies any certificate it receives
//! against the cluster CA; with [`TlsFiles::require_client_cert`] (the default choice for a cluster) a client
//! without a certificate is refused. The client side always presents its own certificate and verifies the
//! server's certificate against the same CA.
//!
//! Nodes dial each other by address, so the name checked against the server's certificate is the configured
//! [`TlsFiles::server_name`] if there is one (a DNS name or an IP literal), otherwise the IP address dialled;
//! certificates therefore need an IP SAN (e.g. `127.0.0.1`) or a DNS SAN matching the configured name.
//!
//! Both sides offer and require the ALPN protocol [`ALPN_PROTOCOL`] (`troupe/1`).
//!
//! Crypto comes from rustls' `ring` provider, passed explicitly to every config builder: nothing here relies on
//! a process-wide default provider.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The ALPN protocol identifier offered and required on both sides of a troupe connection.
pub const ALPN_PROTOCOL: &[u8] = b"troupe/1";

/// How long [`TlsContext::accept`] and [`TlsContext::connect`] wait for a handshake by default before giving up
/// with [`TlsError::HandshakeTimeout`]. Change it with [`TlsContext::with_handshake_timeout`].
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Paths of the PEM files (mirrors the config file's `[tls]` table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// This node's certificate chain, leaf first (PEM, one or more `CERTIFICATE` blocks).
    pub cert: PathBuf,
    /// This node's private key (PEM: PKCS#8 `PRIVATE KEY`, PKCS#1 `RSA PRIVATE KEY` or SEC1 `EC PRIVATE KEY`).
    pub key: PathBuf,
    /// The cluster CA certificate(s) that peers' certificates must chain to (PEM, one or more `CERTIFICATE` blocks).
    pub ca: PathBuf,
    /// When `true` the server side refuses clients that present no certificate. When `false` a client may connect
    /// without a certificate, but a certificate it does present must still chain to the cluster CA.
    pub require_client_cert: bool,
    /// Name checked against the server's certificate when dialling (DNS name or IP literal). `None`: the IP
    /// address being dialled.
    pub server_name: Option<String>,
}

/// Everything that can go wrong loading TLS material or running a handshake.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read (missing, unreadable...).
    #[error("cannot read TLS file {}: {source}", path.display())]
    Read {
        /// The file that could not be read.
        path: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },
    /// A PEM file is malformed (bad section markers, bad base64...).
    #[error("malformed PEM in {}: {source}", path.display())]
    Pem {
        /// The offending file (or a `<...>` label for in-memory PEM).
        path: PathBuf,
        /// What the PEM parser reported.
        source: rustls::pki_types::pem::Error,
    },
    /// The certificate file holds no `CERTIFICATE` block.
    #[error("no certificate found in {}", path.display())]
    NoCertificate {
        /// The offending file (or a `<...>` label for in-memory PEM).
        path: PathBuf,
    },
    /// The key file holds no private key block (PKCS#8, PKCS#1 or SEC1).
    #[error("no private key found in {} (expected a PEM PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block)", path.display())]
    NoPrivateKey {
        /// The offending file (or a `<...>` label for in-memory PEM).
        path: PathBuf,
    },
    /// The CA file holds no certificate or a certificate that cannot be used as a trust anchor.
    #[error("bad CA certificate file {}: {reason}", path.display())]
    BadCa {
        /// The offending file (or a `<...>` label for in-memory PEM).
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The certificate chain and private key cannot be used together (unsupported key, key does not match the
    /// certificate...).
    #[error("certificate {} and private key {} cannot be used: {source}", cert.display(), key.display())]
    CertKey {
        /// The certificate file (or label).
        cert: PathBuf,
        /// The key file (or label).
        key: PathBuf,
        /// What rustls reported.
        source: rustls::Error,
    },
    /// The configured server name is neither a valid DNS name nor an IP address.
    #[error("invalid TLS server name {name:?}")]
    InvalidServerName {
        /// The name as configured.
        name: String,
    },
    /// Any other rustls configuration error.
    #[error("invalid TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    /// The TLS handshake failed (peer certificate rejected, not TLS, connection closed...). The inner error
    /// usually wraps a [`rustls::Error`] (see [`std::io::Error::get_ref`]).
    #[error("TLS handshake failed: {0}")]
    Handshake(#[source] io::Error),
    /// The handshake did not complete within the handshake timeout.
    #[error("TLS handshake timed out after {0:?}")]
    HandshakeTimeout(Duration),
    /// The handshake completed but the peer did not agree on the `troupe/1` ALPN protocol.
    #[error("peer did not negotiate ALPN protocol \"troupe/1\" (got {})", alpn_display(.0))]
    Alpn(Option<Vec<u8>>),
}

/// Ready-to-use TLS for one node: accepts (server side) and dials (client side).
///
/// Cheap to clone (configs are shared behind `Arc`s).
#[derive(Clone)]
pub struct TlsContext {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
    server_name: Option<ServerName<'static>>,
    handshake_timeout: Duration,
}

impl fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsContext")
            .field("server_name", &self.server_name)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

impl TlsContext {
    /// Loads the PEM files named by `files` and builds both sides.
    ///
    /// Reads the files synchronously (meant for start-up). Errors name the file and what is wrong with it:
    /// [`TlsError::Read`] (missing/unreadable), [`TlsError::NoCertificate`], [`TlsError::NoPrivateKey`],
    /// [`TlsError::BadCa`], [`TlsError::Pem`], [`TlsError::CertKey`], [`TlsError::InvalidServerName`].
    pub fn load(files: &TlsFiles) -> Result<TlsContext, TlsError> {
        let cert = read_file(&files.cert)?;
        let key = read_file(&files.key)?;
        let ca = read_file(&files.ca)?;
        build(
            Source { bytes: &cert, path: &files.cert },
            Source { bytes: &key, path: &files.key },
            Source { bytes: &ca, path: &files.ca },
            files.require_client_cert,
            files.server_name.as_deref(),
        )
    }

    /// Same as [`TlsContext::load`] from PEM bytes in memory (tests and embedding). Errors name the input as
    /// `<certificate PEM>`, `<private key PEM>` or `<CA PEM>`.
    pub fn from_pem(
        cert_chain_pem: &[u8],
        key_pem: &[u8],
        ca_pem: &[u8],
        require_client_cert: bool,
        server_name: Option<String>,
    ) -> Result<TlsContext, TlsError> {
        build(
            Source { bytes: cert_chain_pem, path: Path::new("<certificate PEM>") },
            Source { bytes: key_pem, path: Path::new("<private key PEM>") },
            Source { bytes: ca_pem, path: Path::new("<CA PEM>") },
            require_client_cert,
            server_name.as_deref(),
        )
    }

    /// Builds a context from ready rustls configs (advanced use, e.g. tests needing a non-standard side).
    ///
    /// The configs are used as given: set their ALPN protocols to [`ALPN_PROTOCOL`] yourself, since
    /// [`TlsContext::accept`] and [`TlsContext::connect`] require it to be negotiated.
    pub fn from_configs(
        server: Arc<ServerConfig>,
        client: Arc<ClientConfig>,
        server_name: Option<ServerName<'static>>,
    ) -> TlsContext {
        TlsContext {
            acceptor: TlsAcceptor::from(server),
            connector: TlsConnector::from(client),
            server_name,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }

    /// Returns this context with a different handshake timeout (default [`DEFAULT_HANDSHAKE_TIMEOUT`]).
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> TlsContext {
        self.handshake_timeout = timeout;
        self
    }

    /// The handshake timeout applied by [`TlsContext::accept`] and [`TlsContext::connect`].
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// The underlying acceptor (server side).
    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// The underlying connector (client side).
    pub fn connector(&self) -> &TlsConnector {
        &self.connector
    }

    /// The name [`TlsContext::connect`] checks the server's certificate against when dialling `peer`: the
    /// configured server name, else `peer`'s IP address (IPv4-mapped IPv6 addresses are reduced to IPv4).
    pub fn server_name_for(&self, peer: SocketAddr) -> ServerName<'static> {
        match &self.server_name {
            Some(name) => name.clone(),
            None => ServerName::IpAddress(peer.ip().to_canonical().into()),
        }
    }

    /// Runs the TLS server side over an accepted TCP stream.
    ///
    /// Fails with [`TlsError::Handshake`] if the peer is not speaking TLS, presents a certificate not signed by
    /// the cluster CA, presents none while one is required, or closes the connection; with
    /// [`TlsError::HandshakeTimeout`] if the handshake stalls; with [`TlsError::Alpn`] if the client did not
    /// offer `troupe/1`. The peer's certificate chain is available afterwards through
    /// `stream.get_ref().1.peer_certificates()`.
    pub async fn accept(&self, tcp: TcpStream) -> Result<tokio_rustls::server::TlsStream<TcpStream>, TlsError> {
        let peer = tcp.peer_addr().ok();
        let stream = match tokio::time::timeout(self.handshake_timeout, self.acceptor.accept(tcp)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!(?peer, error = %e, "TLS accept failed");
                return Err(TlsError::Handshake(e));
            }
            Err(_) => {
                tracing::debug!(?peer, timeout = ?self.handshake_timeout, "TLS accept timed out");
                return Err(TlsError::HandshakeTimeout(self.handshake_timeout));
            }
        };
        check_alpn(stream.get_ref().1.alpn_protocol())?;
        Ok(stream)
    }

    /// Runs the TLS client side over a connected TCP stream to `peer`; the server's certificate is checked
    /// against [`TlsContext::server_name_for`]`(peer)`.
    ///
    /// Note (TLS 1.3): the client finishes its handshake before the server has verified the client's
    /// certificate, so `Ok` here does not prove the server accepted us; a rejection shows up as an error (or
    /// EOF) on the first read.
    pub async fn connect(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, TlsError> {
        self.connect_with_name(tcp, self.server_name_for(peer)).await
    }

    /// Runs the TLS client side, checking the server's certificate against `server_name` instead of the
    /// configured/derived one.
    pub async fn connect_with_name(
        &self,
        tcp: TcpStream,
        server_name: ServerName<'static>,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, TlsError> {
        let connect = self.connector.connect(server_name.clone(), tcp);
        let stream = match tokio::time::timeout(self.handshake_timeout, connect).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!(?server_name, error = %e, "TLS connect failed");
                return Err(TlsError::Handshake(e));
            }
            Err(_) => {
                tracing::debug!(?server_name, timeout = ?self.handshake_timeout, "TLS connect timed out");
                return Err(TlsError::HandshakeTimeout(self.handshake_timeout));
            }
        };
        check_alpn(stream.get_ref().1.alpn_protocol())?;
        Ok(stream)
    }
}

/// The crypto provider used for every config: rustls' `ring` provider, never the process default.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn alpn_display(alpn: &Option<Vec<u8>>) -> String {
    match alpn {
        Some(p) => format!("{:?}", String::from_utf8_lossy(p)),
        None => "none".to_owned(),
    }
}

fn check_alpn(got: Option<&[u8]>) -> Result<(), TlsError> {
    match got {
        Some(p) if p == ALPN_PROTOCOL => Ok(()),
        other => Err(TlsError::Alpn(other.map(<[u8]>::to_vec))),
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source })
}

/// PEM bytes plus the name used in errors.
struct Source<'a> {
    bytes: &'a [u8],
    path: &'a Path,
}

fn parse_certs(src: &Source<'_>) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    CertificateDer::pem_slice_iter(src.bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem { path: src.path.to_owned(), source })
}

fn parse_key(src: &Source<'_>) -> Result<PrivateKeyDer<'static>, TlsError> {
    match PrivateKeyDer::from_pem_slice(src.bytes) {
        Ok(key) => Ok(key),
        Err(rustls::pki_types::pem::Error::NoItemsFound) => Err(TlsError::NoPrivateKey { path: src.path.to_owned() }),
        Err(source) => Err(TlsError::Pem { path: src.path.to_owned(), source }),
    }
}

fn parse_roots(src: &Source<'_>) -> Result<RootCertStore, TlsError> {
    let certs = parse_certs(src).map_err(|e| match e {
        TlsError::Pem { path, source } => TlsError::BadCa { path, reason: format!("malformed PEM: {source}") },
        other => other,
    })?;
    if certs.is_empty() {
        return Err(TlsError::BadCa { path: src.path.to_owned(), reason: "no certificate in it".to_owned() });
    }
    let mut roots = RootCertStore::empty();
    for (i, cert) in certs.into_iter().enumerate() {
        roots.add(cert).map_err(|e| TlsError::BadCa {
            path: src.path.to_owned(),
            reason: format!("certificate #{} is not a usable trust anchor: {e}", i + 1),
        })?;
    }
    Ok(roots)
}

fn build(
    cert: Source<'_>,
    key: Source<'_>,
    ca: Source<'_>,
    require_client_cert: bool,
    server_name: Option<&str>,
) -> Result<TlsContext, TlsError> {
    let chain = parse_certs(&cert)?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: cert.path.to_owned() });
    }
    let key_der = parse_key(&key)?;
    let roots = Arc::new(parse_roots(&ca)?);
    let server_name = server_name
        .map(|name| {
            ServerName::try_from(name.to_owned()).map_err(|_| TlsError::InvalidServerName { name: name.to_owned() })
        })
        .transpose()?;

    let provider = provider();
    let bad_ca =
        |e: rustls::server::VerifierBuilderError| TlsError::BadCa { path: ca.path.to_owned(), reason: e.to_string() };
    let cert_key =
        |source: rustls::Error| TlsError::CertKey { cert: cert.path.to_owned(), key: key.path.to_owned(), source };

    let client_verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone());
    let client_verifier = if require_client_cert { client_verifier } else { client_verifier.allow_unauthenticated() }
        .build()
        .map_err(bad_ca)?;
    let mut server = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(chain.clone(), key_der.clone_key())
        .map_err(cert_key)?;
    server.alpn_protocols = vec![ALPN_PROTOCOL.to_vec()];

    let server_verifier =
        WebPkiServerVerifier::builder_with_provider(roots, provider.clone()).build().map_err(bad_ca)?;
    let mut client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_webpki_verifier(server_verifier)
        .with_client_auth_cert(chain, key_der)
        .map_err(cert_key)?;
    client.alpn_protocols = vec![ALPN_PROTOCOL.to_vec()];

    Ok(TlsContext::from_configs(Arc::new(server), Arc::new(client), server_name))
}
