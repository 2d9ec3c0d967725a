//! TLS to the server with rustls, per libpq's `sslmode`:
//! `verify-full` checks the chain and the host name, `verify-ca` the chain
//! only, `require` and `prefer` check nothing unless a root certificate is
//! configured (then they act as `verify-ca`, as libpq does). Roots come
//! from `sslrootcert` (or `~/.postgresql/root.crt`), else the Mozilla roots.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, Error, RootCertStore, SignatureScheme,
};

use crate::error::PgError;
use crate::settings::{PgSettings, SslMode};

/// The rustls client configuration for `settings`, or `None` for
/// `sslmode=disable`.
pub fn client_config(settings: &PgSettings) -> Result<Option<ClientConfig>, PgError> {
    let mode = settings.ssl_mode();
    if mode == SslMode::Disable {
        return Ok(None);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let root_file = settings.root_cert();
    let mut roots = RootCertStore::empty();
    match &root_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| PgError::Tls {
                detail: format!("cannot read sslrootcert {}: {e}", path.display()),
            })?;
            for cert in certs {
                let cert = cert.map_err(|e| PgError::Tls {
                    detail: format!("sslrootcert {} is not PEM: {e}", path.display()),
                })?;
                roots.add(cert).map_err(|e| PgError::Tls {
                    detail: format!("sslrootcert {}: {e}", path.display()),
                })?;
            }
            if roots.is_empty() {
                return Err(PgError::Tls {
                    detail: format!("sslrootcert {} holds no certificate", path.display()),
                });
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| PgError::Tls {
            detail: format!("cannot build the certificate verifier: {e}"),
        })?;
    let check = match (mode, root_file.is_some()) {
        (SslMode::VerifyFull, _) => Check::Full,
        (SslMode::VerifyCa, _) | (_, true) => Check::ChainOnly,
        _ => Check::Nothing,
    };
    let verifier = Verifier {
        webpki,
        check,
        provider: provider.clone(),
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PgError::Tls {
            detail: format!("TLS set-up: {e}"),
        })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Some(config))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Full,
    ChainOnly,
    Nothing,
}

#[derive(Debug)]
struct Verifier {
    webpki: Arc<WebPkiServerVerifier>,
    check: Check,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if self.check == Check::Nothing {
            return Ok(ServerCertVerified::assertion());
        }
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if self.check == Check::ChainOnly => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
