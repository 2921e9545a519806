//! A subscription's TLS client certificate, for receivers that require mutual TLS: the PEM
//! it is given (stored in the spec; the private key is a secret), checked once and turned
//! into the identity the outbound client presents.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The certificate chain and private key, as PEM text, as the spec stores them. `Debug`
/// never shows the key.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClientCertificate {
    /// The client certificate, then any intermediates, PEM.
    pub certificate: String,
    /// Its private key, PEM (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub private_key: String,
}

impl std::fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("certificate", &format!("{} bytes", self.certificate.len()))
            .field("private_key", &"***")
            .finish()
    }
}

/// A client certificate that cannot be used; each names the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientCertError {
    /// No `CERTIFICATE` block.
    #[error(
        "`client_certificate.certificate` holds no PEM certificate; give the client certificate (then any intermediates) as `-----BEGIN CERTIFICATE-----` blocks"
    )]
    NoCertificate,
    /// A block that does not decode.
    #[error("`client_certificate.certificate` is not valid PEM: {0}")]
    BadCertificatePem(String),
    /// No key block.
    #[error(
        "`client_certificate.private_key` holds no PEM private key; give the key as a `-----BEGIN PRIVATE KEY-----` (PKCS#8), `RSA PRIVATE KEY` or `EC PRIVATE KEY` block"
    )]
    NoKey,
    /// The certificate does not parse as X.509.
    #[error("`client_certificate.certificate` is not an X.509 certificate: {0}")]
    NotX509(String),
    /// A key type or curve rustls cannot sign with, or a key that does not belong to the
    /// certificate.
    #[error("{0}")]
    Key(String),
}

/// What reads show of a client certificate: enough to tell which one it is and when it
/// runs out, never the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// The leaf's subject, like `CN=wasmhook`.
    pub subject: String,
    /// The leaf's issuer.
    pub issuer: String,
    /// Valid from, Unix ms.
    pub not_before_ms: i64,
    /// Valid until, Unix ms.
    pub not_after_ms: i64,
    /// SHA-256 of the leaf certificate's DER, lowercase hex: the usual fingerprint.
    pub sha256: String,
}

/// A checked client certificate, ready for TLS. Two identities with the same `key_id`
/// present the same chain, so they can share connections.
pub struct ClientIdentity {
    certified: Arc<CertifiedKey>,
    key_id: [u8; 32],
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("certificates", &self.certified.cert.len())
            .finish_non_exhaustive()
    }
}

impl ClientIdentity {
    /// The chain and signing key, for a rustls client config.
    pub fn certified_key(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.certified)
    }

    /// SHA-256 over the whole chain: equal ids present the same identity.
    pub fn key_id(&self) -> [u8; 32] {
        self.key_id
    }
}

impl ClientCertificate {
    fn chain(&self) -> Result<Vec<CertificateDer<'static>>, ClientCertError> {
        let chain = CertificateDer::pem_slice_iter(self.certificate.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ClientCertError::BadCertificatePem(e.to_string()))?;
        if chain.is_empty() {
            return Err(ClientCertError::NoCertificate);
        }
        Ok(chain)
    }

    /// Checks the PEM and the key (a type rustls can sign with, and the one the leaf
    /// certificate names) and builds the identity.
    pub fn identity(&self) -> Result<ClientIdentity, ClientCertError> {
        let chain = self.chain()?;
        x509_parser::parse_x509_certificate(&chain[0])
            .map_err(|e| ClientCertError::NotX509(e.to_string()))?;
        let key =
            PrivateKeyDer::from_pem_slice(self.private_key.as_bytes()).map_err(|e| match e {
                rustls::pki_types::pem::Error::NoItemsFound => ClientCertError::NoKey,
                other => ClientCertError::Key(format!("the private key is not valid PEM: {other}")),
            })?;
        let mut hash = Sha256::new();
        for cert in &chain {
            hash.update(cert.as_ref());
        }
        let key_id = hash.finalize().into();
        let provider = rustls::crypto::ring::default_provider();
        let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| {
            ClientCertError::Key(match e {
                rustls::Error::InconsistentKeys(_) => {
                    "the private key does not belong to the certificate (the first one in `certificate` must be the client's own)".to_owned()
                }
                other => format!("the private key cannot be used: {other}"),
            })
        })?;
        Ok(ClientIdentity {
            certified: Arc::new(certified),
            key_id,
        })
    }

    /// The leaf certificate's subject, issuer, validity and fingerprint; `None` when the
    /// PEM does not parse (a stored spec is checked before it is stored).
    pub fn info(&self) -> Option<CertificateInfo> {
        let chain = self.chain().ok()?;
        let leaf = &chain[0];
        let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
        let validity = cert.validity();
        let sha256 = Sha256::digest(leaf.as_ref())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Some(CertificateInfo {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            not_before_ms: validity.not_before.timestamp().saturating_mul(1000),
            not_after_ms: validity.not_after.timestamp().saturating_mul(1000),
            sha256,
        })
    }
}

impl CertificateInfo {
    /// A warning when the certificate is not valid at `now_ms`: receivers will refuse it.
    pub fn validity_warning(&self, now_ms: i64) -> Option<String> {
        if now_ms > self.not_after_ms {
            Some(format!(
                "the client certificate `{}` expired at {}; receivers that check it will refuse the connection",
                self.subject,
                crate::clock::rfc3339(self.not_after_ms)
            ))
        } else if now_ms < self.not_before_ms {
            Some(format!(
                "the client certificate `{}` is not valid before {}; receivers that check it will refuse the connection until then",
                self.subject,
                crate::clock::rfc3339(self.not_before_ms)
            ))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh self-signed client certificate and its key, PEM.
    fn generated(name: &str) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(Vec::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("certificate");
        (cert.pem(), key.serialize_pem())
    }

    fn cert(certificate: &str, private_key: &str) -> ClientCertificate {
        ClientCertificate {
            certificate: certificate.to_owned(),
            private_key: private_key.to_owned(),
        }
    }

    #[test]
    fn a_matching_pair_builds_an_identity_and_describes_itself() {
        let (certificate, key) = generated("wasmhook test client");
        let pair = cert(&certificate, &key);
        let identity = pair.identity().expect("usable");
        assert_eq!(identity.certified_key().cert.len(), 1);
        assert_eq!(
            identity.key_id(),
            cert(&certificate, &key).identity().unwrap().key_id()
        );
        let info = pair.info().expect("parses");
        assert_eq!(info.subject, "CN=wasmhook test client");
        assert_eq!(info.sha256.len(), 64);
        assert!(info.not_before_ms < info.not_after_ms);
        assert!(info.validity_warning(info.not_before_ms + 1).is_none());
        let expired = info.validity_warning(info.not_after_ms + 1).expect("warns");
        assert!(expired.contains("expired"), "{expired}");
    }

    #[test]
    fn bad_pairs_are_refused_with_the_fix() {
        let (certificate, key) = generated("client");
        let (_, other_key) = generated("other");
        let err = |c: &str, k: &str| cert(c, k).identity().unwrap_err();
        assert_eq!(err("", &key), ClientCertError::NoCertificate);
        assert_eq!(err("not pem at all", &key), ClientCertError::NoCertificate);
        assert_eq!(err(&certificate, ""), ClientCertError::NoKey);
        assert_eq!(err(&certificate, &certificate), ClientCertError::NoKey);
        let mismatch = err(&certificate, &other_key).to_string();
        assert!(mismatch.contains("does not belong"), "{mismatch}");
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(err(garbage, &key), ClientCertError::NotX509(_)));
    }

    #[test]
    fn debug_never_shows_the_key() {
        let (certificate, key) = generated("client");
        let text = format!("{:?}", cert(&certificate, &key));
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        assert!(!text.contains(&key[40..80]), "{text}");
    }
}
