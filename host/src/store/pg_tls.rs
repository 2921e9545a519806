//! TLS to PostgreSQL: which `sslmode` applies (a pure decision over the URL and
//! `[storage]`), the rustls connector for it (`tokio-postgres-rustls`, with rustls' `ring`
//! provider as everywhere else in the engine), and plain words for connection failures.
//!
//! libpq's modes, as far as they protect anything:
//! - `disable`: plain TCP.
//! - `prefer` (the default, as in libpq): TLS when the server offers it, plain otherwise;
//!   the certificate is not checked.
//! - `require`: TLS or no connection; the certificate is not checked, so it stops passive
//!   listening but not an active man in the middle.
//! - `verify-full`: TLS, with the server's certificate checked against `[storage] ca_file`
//!   (only that CA, as libpq's `sslrootcert`) or the system roots, and against the URL's
//!   host name.
//!
//! `allow` and `verify-ca` are refused with a pointer to `verify-full`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::SslMode;

/// TLS settings from `[storage]`, before the URL is looked at.
#[derive(Debug, Clone, Default)]
pub struct PgTls {
    /// `[storage] sslmode`; overrides the URL's.
    pub sslmode: Option<SslMode>,
    /// `[storage] ca_file`; overrides the URL's `sslrootcert`.
    pub ca_file: Option<PathBuf>,
}

/// What the URL and `[storage]` settle on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPlan {
    /// The URL without `sslmode` and `sslrootcert`, which the driver does not know in
    /// their libpq meaning.
    pub url: String,
    /// The mode.
    pub mode: SslMode,
    /// The CA certificates to trust (`verify-full` only).
    pub ca_file: Option<PathBuf>,
}

/// Settles the TLS mode: `[storage] sslmode` wins over the URL's `sslmode`, `[storage]
/// ca_file` over the URL's `sslrootcert`; `prefer` when neither names a mode. A CA file
/// with any mode but `verify-full` is an error, because it would not be used.
pub fn plan(url: &str, tls: &PgTls) -> Result<TlsPlan, String> {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, query),
        None => (url, ""),
    };
    let mut url_mode = None;
    let mut url_ca = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", value)) => url_mode = Some(SslMode::parse(value)?),
            Some(("sslrootcert", value)) => url_ca = Some(PathBuf::from(value)),
            _ => kept.push(pair),
        }
    }
    let mode = tls.sslmode.or(url_mode).unwrap_or_default();
    let ca_file = tls.ca_file.clone().or(url_ca);
    if ca_file.is_some() && mode != SslMode::VerifyFull {
        return Err(format!(
            "a CA file ([storage] ca_file or the URL's sslrootcert) is only used with sslmode `verify-full`, \
             not `{}`: set [storage] sslmode = \"verify-full\" to check the server's certificate",
            mode.as_str()
        ));
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok(TlsPlan { url, mode, ca_file })
}

/// The driver's mode and the connector for `plan`.
pub fn connector(
    plan: &TlsPlan,
) -> anyhow::Result<(tokio_postgres::config::SslMode, MakeRustlsConnect)> {
    use tokio_postgres::config::SslMode as Driver;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?;
    let (driver_mode, config) = match plan.mode {
        SslMode::VerifyFull => {
            let roots = roots(plan.ca_file.as_deref())?;
            (
                Driver::Require,
                builder.with_root_certificates(roots).with_no_client_auth(),
            )
        }
        mode => (
            match mode {
                SslMode::Disable => Driver::Disable,
                SslMode::Require => Driver::Require,
                _ => Driver::Prefer,
            },
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth(),
        ),
    };
    Ok((driver_mode, MakeRustlsConnect::new(config)))
}

/// The CAs `verify-full` trusts: the PEM file's certificates only, or the system roots.
fn roots(ca_file: Option<&Path>) -> anyhow::Result<rustls::RootCertStore> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| {
                    anyhow::anyhow!("cannot read [storage] ca_file {}: {e}", path.display())
                })?
                .collect::<Result<_, _>>()
                .map_err(|e| {
                    anyhow::anyhow!("invalid PEM in [storage] ca_file {}: {e}", path.display())
                })?;
            if certs.is_empty() {
                anyhow::bail!(
                    "[storage] ca_file {} holds no PEM certificate",
                    path.display()
                );
            }
            for cert in certs {
                roots.add(cert)?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    Ok(roots)
}

/// A hint for a failed connection, from the driver's message: what is likely wrong with
/// the TLS settings, and the fix.
pub fn hint(mode: SslMode, error: &str) -> Option<&'static str> {
    if error.contains("no pg_hba.conf entry") && error.contains("no encryption") {
        return Some(
            "the server accepts only TLS connections: set [storage] sslmode = \"verify-full\" (with ca_file) or \"require\"",
        );
    }
    if error.contains("server does not support TLS") {
        return Some(
            "the server does not offer TLS: turn on ssl on the server, or set sslmode = \"disable\" on a trusted network",
        );
    }
    if mode == SslMode::VerifyFull
        && (error.contains("invalid peer certificate") || error.contains("certificate"))
    {
        return Some(
            "the server's certificate was not accepted: [storage] ca_file must hold the CA that signed it, and the \
             URL's host must be a name (or address) the certificate lists",
        );
    }
    None
}

/// Accepts any server certificate while still checking the handshake's signatures:
/// `prefer` and `require`, which encrypt without authenticating the server.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
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
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(sslmode: Option<SslMode>, ca: Option<&str>) -> PgTls {
        PgTls {
            sslmode,
            ca_file: ca.map(PathBuf::from),
        }
    }

    #[test]
    fn the_default_is_prefer_and_the_url_is_left_alone() {
        let p = plan("postgres://u@db/w", &PgTls::default()).unwrap();
        assert_eq!(p.mode, SslMode::Prefer);
        assert_eq!(p.url, "postgres://u@db/w");
        assert_eq!(p.ca_file, None);
    }

    #[test]
    fn the_url_names_the_mode_and_ca_and_loses_them() {
        let p = plan(
            "postgres://u@db/w?application_name=x&sslmode=verify-full&sslrootcert=/etc/ca.pem&connect_timeout=5",
            &PgTls::default(),
        )
        .unwrap();
        assert_eq!(p.mode, SslMode::VerifyFull);
        assert_eq!(p.ca_file, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(
            p.url,
            "postgres://u@db/w?application_name=x&connect_timeout=5"
        );
        let p = plan("postgres://u@db/w?sslmode=require", &PgTls::default()).unwrap();
        assert_eq!(
            (p.mode, p.url.as_str()),
            (SslMode::Require, "postgres://u@db/w")
        );
    }

    #[test]
    fn the_config_wins_over_the_url() {
        let p = plan(
            "postgres://u@db/w?sslmode=disable",
            &tls(Some(SslMode::VerifyFull), Some("/ca.pem")),
        )
        .unwrap();
        assert_eq!(p.mode, SslMode::VerifyFull);
        assert_eq!(p.ca_file, Some(PathBuf::from("/ca.pem")));
    }

    #[test]
    fn a_ca_file_without_verify_full_and_unsupported_modes_are_refused() {
        let err = plan(
            "postgres://db/w?sslmode=require",
            &tls(None, Some("/ca.pem")),
        )
        .unwrap_err();
        assert!(
            err.contains("only used with sslmode `verify-full`"),
            "{err}"
        );
        let err = plan("postgres://db/w?sslmode=verify-ca", &PgTls::default()).unwrap_err();
        assert!(err.contains("not supported"), "{err}");
    }

    #[test]
    fn failures_get_a_hint_that_names_the_fix() {
        let plain = "db error: FATAL: no pg_hba.conf entry for host \"127.0.0.1\", user \"postgres\", database \"postgres\", no encryption";
        assert!(hint(SslMode::Disable, plain).unwrap().contains("sslmode"));
        let ca = "error performing TLS handshake: invalid peer certificate: UnknownIssuer";
        assert!(hint(SslMode::VerifyFull, ca).unwrap().contains("ca_file"));
        let none = "error performing TLS handshake: server does not support TLS";
        assert!(
            hint(SslMode::Require, none)
                .unwrap()
                .contains("does not offer TLS")
        );
        assert_eq!(
            hint(SslMode::Prefer, "password authentication failed"),
            None
        );
    }

    #[test]
    fn every_mode_gets_a_connector() {
        for mode in [
            SslMode::Disable,
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyFull,
        ] {
            let plan = TlsPlan {
                url: "postgres://db/w".into(),
                mode,
                ca_file: None,
            };
            assert!(connector(&plan).is_ok(), "{mode:?}");
        }
        let missing = TlsPlan {
            url: "postgres://db/w".into(),
            mode: SslMode::VerifyFull,
            ca_file: Some(PathBuf::from("/nonexistent/ca.pem")),
        };
        let err = connector(&missing).err().unwrap().to_string();
        assert!(err.contains("cannot read [storage] ca_file"), "{err}");
    }
}
