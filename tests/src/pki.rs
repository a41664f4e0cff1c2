//! Certificates made in the test (rcgen): a CA, a certificate for `localhost` and
//! `127.0.0.1` that every role serves and presents as a client (mTLS), and a stranger
//! signed by another CA. PEM files in a directory of the test's.

use std::path::{Path, PathBuf};

use anyhow::Result;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};

/// The files of one certificate and its key.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A test PKI.
#[derive(Clone, Debug)]
pub struct Pki {
    /// The CA every role trusts.
    pub ca: PathBuf,
    /// Served by every role and presented by every client.
    pub node: CertFiles,
    /// Signed by another CA: refused under mTLS.
    pub stranger: CertFiles,
}

fn new_ca(name: &str) -> Result<(String, Issuer<'static, KeyPair>)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), Issuer::new(params, key)))
}

fn leaf(dir: &Path, stem: &str, common_name: &str, issuer: &Issuer<'_, KeyPair>) -> Result<CertFiles> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, issuer)?;
    let files = CertFiles { cert: dir.join(format!("{stem}.pem")), key: dir.join(format!("{stem}.key")) };
    std::fs::write(&files.cert, cert.pem())?;
    std::fs::write(&files.key, key.serialize_pem())?;
    Ok(files)
}

impl Pki {
    /// Makes the certificates in `dir`.
    pub fn make(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let (ca_pem, issuer) = new_ca("modelplane test CA")?;
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, ca_pem)?;
        let node = leaf(dir, "node", "modelplane", &issuer)?;
        let (_, other) = new_ca("another CA")?;
        let stranger = leaf(dir, "stranger", "stranger", &other)?;
        Ok(Self { ca, node, stranger })
    }

    /// The environment that makes every modelplane process serve mTLS and call with
    /// its certificate: the server, client and etcd TLS flags' variables.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let path = |p: &Path| p.display().to_string();
        vec![
            ("MODELPLANE_TLS_CERT", path(&self.node.cert)),
            ("MODELPLANE_TLS_KEY", path(&self.node.key)),
            ("MODELPLANE_TLS_CLIENT_CA", path(&self.ca)),
            ("MODELPLANE_TLS_CA", path(&self.ca)),
            ("MODELPLANE_TLS_CLIENT_CERT", path(&self.node.cert)),
            ("MODELPLANE_TLS_CLIENT_KEY", path(&self.node.key)),
            ("MODELPLANE_ETCD_CA", path(&self.ca)),
            ("MODELPLANE_ETCD_CERT", path(&self.node.cert)),
            ("MODELPLANE_ETCD_KEY", path(&self.node.key)),
        ]
    }
}

/// The TLS the harness's own gRPC clients use (`None`: plaintext), set once by a test
/// whose cluster speaks TLS.
static CLIENT_TLS: std::sync::OnceLock<tonic::transport::ClientTlsConfig> = std::sync::OnceLock::new();

/// Makes every channel of [`crate::flow`] speak mTLS with `pki`'s node certificate.
pub fn use_client_tls(pki: &Pki) -> Result<()> {
    let config = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(std::fs::read(&pki.ca)?))
        .identity(tonic::transport::Identity::from_pem(std::fs::read(&pki.node.cert)?, std::fs::read(&pki.node.key)?));
    let _ = CLIENT_TLS.set(config);
    Ok(())
}

/// The TLS [`use_client_tls`] set, if any.
pub(crate) fn client_tls() -> Option<&'static tonic::transport::ClientTlsConfig> {
    CLIENT_TLS.get()
}
