//! TLS for every listener and every client, with rustls (the ring provider tonic
//! already uses). A server's certificate and key are read again when their files change
//! (checked at most once a second, on a handshake), so a certificate renewed in place —
//! as cert-manager does — is served without a restart; a pair that does not load keeps
//! the previous one serving and is logged. With a client CA the server requires a client
//! certificate signed by it (mTLS): a client without one is refused at the handshake.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;

#[cfg(test)]
use crate::reloading::RELOAD_CHECK_INTERVAL;
use crate::reloading::Reloading;
use crate::tls_verifiers::{ReloadingClientCa, ReloadingServerCa};

/// ALPN for gRPC (HTTP/2 only).
pub const ALPN_H2: &[&[u8]] = &[b"h2"];
/// ALPN for a REST port (HTTP/2 or HTTP/1.1).
pub const ALPN_HTTP: &[&[u8]] = &[b"h2", b"http/1.1"];

/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server's TLS settings (`--tls-cert`, `--tls-key`, `--tls-client-ca`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerTls {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificates that client certificates must chain to (mTLS); `None`: no
    /// client certificate is asked for.
    pub client_ca: Option<PathBuf>,
}

pub(crate) fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|err| format!("cannot read certificates from {}: {err}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

fn certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, String> {
    let chain = read_certs(cert)?;
    // The key's own error text could quote it; say only which file failed.
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|_| format!("cannot read a PEM private key from {}", key.display()))?;
    let signing = provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|_| format!("the private key in {} is not a supported key type", key.display()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|_| format!("the key in {} does not belong to {}", key.display(), cert.display()))?;
    Ok(Arc::new(certified))
}

/// The served (or a client's own) certificate, read again when its files change.
#[derive(Debug)]
struct ReloadingCert(Reloading<Arc<CertifiedKey>>);

impl ReloadingCert {
    fn load(cert: &Path, key: &Path) -> Result<Self, String> {
        let files = vec![cert.to_owned(), key.to_owned()];
        Ok(Self(Reloading::load(files, "TLS certificate", |files| certified_key(&files[0], &files[1]))?))
    }

    fn current(&self) -> Arc<CertifiedKey> {
        self.0.current()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// A client's certificate is read again when its files change, as a server's is.
impl rustls::client::ResolvesClientCert for ReloadingCert {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[rustls::SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl ServerTls {
    /// The acceptor for a listener speaking `alpn`; fails naming the file that does not
    /// load (call it before binding, to check the settings).
    pub fn acceptor(&self, alpn: &[&[u8]]) -> Result<tokio_rustls::TlsAcceptor, String> {
        let resolver = Arc::new(ReloadingCert::load(&self.cert, &self.key)?);
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|err| format!("TLS: {err}"))?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => builder.with_client_cert_verifier(Arc::new(ReloadingClientCa::load(ca)?)),
        };
        let mut config = builder.with_cert_resolver(resolver);
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }
}

/// Accepts on `listener` and runs each handshake in a task of its own (a slow or silent
/// client holds up no one); connections whose handshake fails — a plaintext client, a
/// client without an accepted certificate — are dropped. Stops when the receiver is.
fn spawn_handshakes(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
) -> tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)> {
    let (sender, receiver) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::debug!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            if sender.is_closed() {
                return;
            }
            let _ = stream.set_nodelay(true);
            let (acceptor, sender) = (acceptor.clone(), sender.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let _ = sender.send((tls, peer)).await;
                    }
                    Ok(Err(err)) => tracing::debug!(%peer, error = %err, "TLS handshake refused"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    receiver
}

/// The TLS connections of `listener`, for tonic's `serve_with_incoming`.
pub fn tls_incoming(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
) -> impl futures::Stream<Item = Result<TlsStream<TcpStream>, std::io::Error>> + Send + 'static {
    use futures::StreamExt;
    tokio_stream::wrappers::ReceiverStream::new(spawn_handshakes(listener, acceptor)).map(|(tls, _)| Ok(tls))
}

/// The TLS connections of a listener, for `axum::serve`.
pub struct TlsListener {
    accepted: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    pub fn new(listener: TcpListener, acceptor: tokio_rustls::TlsAcceptor) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        Ok(Self { accepted: spawn_handshakes(listener, acceptor), local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(accepted) => accepted,
            // The accept loop only ends with the listener: nothing will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// The client of a connection a [`TlsListener`] accepted, as axum's `ConnectInfo` (it
/// gives `SocketAddr` only for plain TCP listeners): its address and, under mTLS, the
/// certificate chain it presented (verified at the handshake).
#[derive(Clone, Debug)]
pub struct TlsPeer {
    pub addr: SocketAddr,
    pub certificates: Option<PeerCertificates>,
}

/// A client's verified certificate chain (its own first), in a request's extensions.
#[derive(Clone, Debug)]
pub struct PeerCertificates(pub Arc<Vec<CertificateDer<'static>>>);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>> for TlsPeer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        let chain = stream.io().get_ref().1.peer_certificates();
        let certificates = chain.map(|chain| PeerCertificates(Arc::new(chain.to_vec())));
        Self { addr: *stream.remote_addr(), certificates }
    }
}

/// A client's TLS settings (`--tls-ca`, `--tls-client-cert`, `--tls-client-key`). On the
/// rustls paths (registry channels, the router's worker links, the CLI) the CA and the
/// client certificate are read again when their files change; etcd's client takes them
/// as read at start-up.
#[derive(Clone)]
pub struct ClientTls {
    /// PEM CA certificates the servers' certificates must chain to, as read at start-up.
    ca_pem: Vec<u8>,
    /// The same CAs, followed as their file changes.
    ca: Arc<ReloadingServerCa>,
    /// PEM certificate chain and key presented for mTLS, as read at start-up.
    identity: Option<(Vec<u8>, Vec<u8>)>,
    /// The same certificate, followed as its files change.
    reloading: Option<Arc<ReloadingCert>>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("ClientTls").field("client_certificate", &self.identity.is_some()).finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Reads the CA and, for mTLS, the client's certificate and key.
    pub fn load(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<Self, String> {
        let ca_reloading = Arc::new(ReloadingServerCa::load(ca)?);
        let ca_pem = std::fs::read(ca).map_err(|err| format!("cannot read {}: {err}", ca.display()))?;
        let (identity, reloading) = match identity {
            None => (None, None),
            Some((cert, key)) => {
                let reloading = Arc::new(ReloadingCert::load(cert, key)?);
                let read =
                    |path: &Path| std::fs::read(path).map_err(|err| format!("cannot read {}: {err}", path.display()));
                (Some((read(cert)?, read(key)?)), Some(reloading))
            }
        };
        Ok(Self { ca_pem, ca: ca_reloading, identity, reloading })
    }

    /// tonic's form of these settings.
    pub fn tonic_config(&self) -> tonic::transport::ClientTlsConfig {
        let config = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&self.ca_pem));
        match &self.identity {
            Some((cert, key)) => config.identity(tonic::transport::Identity::from_pem(cert, key)),
            None => config,
        }
    }

    /// A rustls client configuration speaking `alpn` (for connections made without tonic).
    pub fn rustls_config(&self, alpn: &[&[u8]]) -> Result<Arc<rustls::ClientConfig>, String> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|err| format!("TLS: {err}"))?
            .dangerous()
            .with_custom_certificate_verifier(self.ca.clone());
        let mut config = match &self.reloading {
            None => builder.with_no_client_auth(),
            Some(resolver) => builder.with_client_cert_resolver(resolver.clone()),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// A connector that gives tonic TLS connections made with [`Self::rustls_config`]
    /// (so the client certificate follows its files); the endpoint's scheme stays
    /// `http://`, since tonic must not wrap them in TLS again.
    pub fn connector(&self) -> Result<TlsConnect, String> {
        Ok(TlsConnect { connector: tokio_rustls::TlsConnector::from(self.rustls_config(ALPN_H2)?) })
    }
}

/// See [`ClientTls::connector`].
#[derive(Clone)]
pub struct TlsConnect {
    connector: tokio_rustls::TlsConnector,
}

impl tower::Service<http::Uri> for TlsConnect {
    type Response = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, std::io::Error>>;

    fn poll_ready(&mut self, _cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), std::io::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connector = self.connector.clone();
        Box::pin(async move {
            let invalid = |message: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, message);
            let host = uri.host().ok_or_else(|| invalid(format!("{uri} has no host")))?;
            let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
            let port = uri.port_u16().unwrap_or(443);
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from(host.clone()).map_err(|err| invalid(format!("{host:?}: {err}")))?;
            Ok(hyper_util::rt::TokioIo::new(connector.connect(name, tcp).await?))
        })
    }
}

/// The name a client checks a server's certificate against: the host of `authority`
/// (`host:port`).
pub fn server_name(authority: &str) -> Result<ServerName<'static>, String> {
    let host = authority.rsplit_once(':').map_or(authority, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned()).map_err(|err| format!("{host:?} is not a TLS server name: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec![name.to_owned()]).expect("params");
        (params.self_signed(&key).expect("cert").pem(), key.serialize_pem())
    }

    #[test]
    fn a_certificate_changed_on_disk_is_served_after_the_check_interval_and_a_broken_one_is_not() {
        let dir = tempfile::tempdir().expect("dir");
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("c.key"));
        let write = |(c, k): (String, String)| {
            std::fs::write(&cert, c).expect("cert");
            std::fs::write(&key, k).expect("key");
        };
        write(self_signed("first"));
        let served = ReloadingCert::load(&cert, &key).expect("loads");
        let first = served.current().cert[0].clone();
        std::thread::sleep(Duration::from_millis(20)); // a later modification time
        write(self_signed("second"));
        assert_eq!(served.current().cert[0], first, "not before the check interval");
        std::thread::sleep(RELOAD_CHECK_INTERVAL);
        let now = served.current().cert[0].clone();
        assert_ne!(now, first, "the renewed certificate is served");
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&key, "not a key").expect("key");
        std::thread::sleep(RELOAD_CHECK_INTERVAL);
        assert_eq!(served.current().cert[0], now, "a pair that does not load leaves the last good one");
    }

    /// A CA and an issuer for certificates it signs.
    fn ca(name: &str) -> (String, rcgen::Issuer<'static, rcgen::KeyPair>) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let pem = params.self_signed(&key).expect("ca").pem();
        (pem, rcgen::Issuer::new(params, key))
    }

    fn signed(issuer: &rcgen::Issuer<'_, rcgen::KeyPair>) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        (params.signed_by(&key, issuer).expect("cert").pem(), key.serialize_pem())
    }

    /// Whether a handshake between these, and a byte each way, succeed on (client, server).
    async fn handshake(connector: &tokio_rustls::TlsConnector, acceptor: &tokio_rustls::TlsAcceptor) -> (bool, bool) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (client_io, server_io) = tokio::io::duplex(1 << 16);
        let name = ServerName::try_from("localhost").expect("name");
        let client = async {
            let mut tls = connector.connect(name, client_io).await.ok()?;
            tls.write_all(b"x").await.ok()?;
            tls.flush().await.ok()?;
            // Open until the server answers: it sends session tickets after the handshake.
            tls.read_exact(&mut [0u8; 1]).await.ok()
        };
        let server = async {
            let mut tls = acceptor.accept(server_io).await.ok()?;
            tls.read_exact(&mut [0u8; 1]).await.ok()?;
            tls.write_all(b"y").await.ok()?;
            tls.flush().await.ok()
        };
        let (client, server) = tokio::time::timeout(Duration::from_secs(10), async { tokio::join!(client, server) })
            .await
            .expect("the handshake ends");
        (client.is_some(), server.is_some())
    }

    #[tokio::test]
    async fn rotated_ca_files_take_effect_without_a_restart_on_both_sides() {
        let dir = tempfile::tempdir().expect("dir");
        let path = |name: &str| dir.path().join(name);
        let write = |name: &str, text: &str| std::fs::write(path(name), text).expect("write");
        let (old_ca, old_issuer) = ca("old CA");
        let (new_ca, new_issuer) = ca("new CA");
        let (server_cert, server_key) = signed(&old_issuer);
        let (client_cert, client_key) = signed(&new_issuer);
        write("server.pem", &server_cert);
        write("server.key", &server_key);
        write("client.pem", &client_cert);
        write("client.key", &client_key);
        write("client-ca.pem", &old_ca);
        write("server-ca.pem", &old_ca);

        let server =
            ServerTls { cert: path("server.pem"), key: path("server.key"), client_ca: Some(path("client-ca.pem")) };
        let acceptor = server.acceptor(ALPN_H2).expect("acceptor");
        let client =
            ClientTls::load(&path("server-ca.pem"), Some((&path("client.pem"), &path("client.key")))).expect("client");
        // Full handshakes only: a resumed session checks no certificate.
        let mut config = (*client.rustls_config(ALPN_H2).expect("config")).clone();
        config.resumption = rustls::client::Resumption::disabled();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        assert_eq!(
            handshake(&connector, &acceptor).await,
            (false, false),
            "a client certificate of a CA not yet trusted"
        );

        std::thread::sleep(Duration::from_millis(20));
        write("client-ca.pem", &format!("{old_ca}{new_ca}"));
        std::thread::sleep(RELOAD_CHECK_INTERVAL);
        assert_eq!(handshake(&connector, &acceptor).await, (true, true), "the server trusts the rotated bundle");

        let (renewed_cert, renewed_key) = signed(&new_issuer);
        write("server.pem", &renewed_cert);
        write("server.key", &renewed_key);
        std::thread::sleep(RELOAD_CHECK_INTERVAL);
        assert_eq!(handshake(&connector, &acceptor).await, (false, false), "the client does not trust the new CA yet");
        std::thread::sleep(Duration::from_millis(20));
        write("server-ca.pem", &new_ca);
        std::thread::sleep(RELOAD_CHECK_INTERVAL);
        assert_eq!(handshake(&connector, &acceptor).await, (true, true), "the client follows its CA file");
    }

    #[test]
    fn settings_that_do_not_load_name_the_file_and_never_quote_a_key() {
        let dir = tempfile::tempdir().expect("dir");
        let missing =
            ServerTls { cert: dir.path().join("none.pem"), key: dir.path().join("none.key"), client_ca: None };
        let err = missing.acceptor(ALPN_H2).err().expect("missing files are refused");
        assert!(err.contains("none.pem"), "{err}");
        let (cert, _) = self_signed("a");
        let (_, other_key) = self_signed("b");
        std::fs::write(dir.path().join("a.pem"), cert).expect("cert");
        std::fs::write(dir.path().join("b.key"), &other_key).expect("key");
        let mismatched = ServerTls { cert: dir.path().join("a.pem"), key: dir.path().join("b.key"), client_ca: None };
        let err = mismatched.acceptor(ALPN_H2).err().expect("another key is refused");
        assert!(err.contains("does not belong"), "{err}");
        let body: String = other_key.lines().filter(|line| !line.starts_with("-----")).collect();
        assert!(!err.contains(&body[..20]), "{err}");
    }
}
