//! Peer verification that follows its CA file: a server's client CA (`--tls-client-ca`)
//! and a client's server CA (`--tls-ca`) are read again when the file changes, so a CA
//! bundle rotated in place (old and new CA side by side, then the old removed) takes
//! effect without a restart. Each check delegates to rustls' WebPKI verifier built from
//! the current file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::reloading::Reloading;
use crate::tls::{provider, read_certs};

fn roots(ca: &Path) -> Result<Arc<rustls::RootCertStore>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(ca)? {
        roots.add(cert).map_err(|err| format!("{}: not a CA certificate: {err}", ca.display()))?;
    }
    Ok(Arc::new(roots))
}

/// A server's verifier of client certificates (mTLS).
#[derive(Debug)]
pub(crate) struct ReloadingClientCa(Reloading<Arc<dyn ClientCertVerifier>>);

impl ReloadingClientCa {
    pub(crate) fn load(ca: &Path) -> Result<Self, String> {
        let build = |files: &[PathBuf]| -> Result<Arc<dyn ClientCertVerifier>, String> {
            WebPkiClientVerifier::builder_with_provider(roots(&files[0])?, provider())
                .build()
                .map_err(|err| format!("client CA {}: {err}", files[0].display()))
        };
        Ok(Self(Reloading::load(vec![ca.to_owned()], "client CA", build)?))
    }
}

impl ClientCertVerifier for ReloadingClientCa {
    /// No hints: a rotated CA would make the start-up ones wrong, and without hints a
    /// client offers the certificate it has.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0.current().verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.current().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.current().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.current().supported_verify_schemes()
    }
}

/// A client's verifier of server certificates.
#[derive(Debug)]
pub(crate) struct ReloadingServerCa(Reloading<Arc<WebPkiServerVerifier>>);

impl ReloadingServerCa {
    pub(crate) fn load(ca: &Path) -> Result<Self, String> {
        let build = |files: &[PathBuf]| {
            WebPkiServerVerifier::builder_with_provider(roots(&files[0])?, provider())
                .build()
                .map_err(|err| format!("CA {}: {err}", files[0].display()))
        };
        Ok(Self(Reloading::load(vec![ca.to_owned()], "CA", build)?))
    }
}

impl ServerCertVerifier for ReloadingServerCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0.current().verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.current().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.current().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.current().supported_verify_schemes()
    }
}
