//! TLS to PostgreSQL with libpq's meaning of `sslmode`, so that a URL copied from a managed
//! database's console (RDS, Cloud SQL, Neon, Supabase…) works as it does with `psql`:
//!
//! - `disable`: no TLS;
//! - `prefer` (the default) and `require`: encrypted (`prefer` falls back to plain text when the
//!   server has no TLS), the server's certificate not checked, as libpq does;
//! - `verify-ca` / `verify-full`: the certificate checked against `sslrootcert=FILE` (a PEM
//!   bundle: RDS and Cloud SQL sign with their own CAs) or, without it, the system's roots.
//!
//! tokio-postgres knows only the first three, so the verifying modes and `sslrootcert` are
//! read here and taken off the URL before it parses it.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use std::sync::Arc;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::StoreError;

/// What the URL asks of TLS.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsSettings {
    /// The certificate is checked (`verify-ca` / `verify-full`).
    pub verify: bool,
    /// `sslrootcert`: the CA bundle to check it against.
    pub root_cert: Option<String>,
}

/// Takes the settings tokio-postgres does not know off `url`; returns the URL it can parse.
pub fn split_url(url: &str) -> Result<(String, TlsSettings), StoreError> {
    let mut settings = TlsSettings { verify: false, root_cert: None };
    let Some((base, query)) = url.split_once('?') else { return Ok((url.to_string(), settings)) };
    let mut kept = Vec::new();
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" if value == "verify-ca" || value == "verify-full" => {
                settings.verify = true;
                kept.push("sslmode=require".to_string());
            }
            "sslrootcert" => {
                let decoded = url::form_urlencoded::parse(format!("v={value}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default();
                settings.root_cert = Some(decoded);
            }
            _ => kept.push(pair.to_string()),
        }
    }
    let url = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
    Ok((url, settings))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn connector(settings: &TlsSettings) -> Result<MakeRustlsConnect, StoreError> {
    let failed = |e: rustls::Error| StoreError::Unavailable(format!("TLS for PostgreSQL: {e}"));
    let builder =
        ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions().map_err(failed)?;
    let config = if !settings.verify {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(Unchecked(provider()))).with_no_client_auth()
    } else if let Some(path) = &settings.root_cert {
        let mut roots = rustls::RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| StoreError::Unavailable(format!("reading sslrootcert {path}: {e}")))?;
        for cert in certs {
            let cert = cert.map_err(|e| StoreError::Unavailable(format!("reading sslrootcert {path}: {e}")))?;
            roots.add(cert).map_err(failed)?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        use rustls_platform_verifier::BuilderVerifierExt;
        builder.with_platform_verifier().map_err(failed)?.with_no_client_auth()
    };
    Ok(MakeRustlsConnect::new(config))
}

/// `sslmode=prefer/require`: encryption without checking who holds the certificate (libpq's
/// behaviour for these modes); the handshake's signatures are still verified.
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifying_modes_and_root_certs_are_taken_off_the_url() {
        let (url, s) = split_url(
            "postgres://u@db.example.com/app?sslmode=verify-full&sslrootcert=%2Fetc%2Frds.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(url, "postgres://u@db.example.com/app?sslmode=require&application_name=x");
        assert_eq!(s, TlsSettings { verify: true, root_cert: Some("/etc/rds.pem".into()) });
        let (url, s) = split_url("postgres://u@h/app?sslmode=require").unwrap();
        assert_eq!((url.as_str(), s.verify), ("postgres://u@h/app?sslmode=require", false));
        let (url, _) = split_url("postgres://u@h/app").unwrap();
        assert_eq!(url, "postgres://u@h/app");
    }

    #[test]
    fn a_missing_root_cert_file_is_a_clear_error() {
        let s = TlsSettings { verify: true, root_cert: Some("/nonexistent/ca.pem".into()) };
        let err = connector(&s).err().expect("refused").to_string();
        assert!(err.contains("sslrootcert /nonexistent/ca.pem"), "{err}");
    }
}
