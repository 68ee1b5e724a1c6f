//! reqwest is built without a TLS crypto provider (`rustls-no-provider`, so that the binary
//! carries one, ring, chosen here) and panics on an https URL until one is installed.

/// Installs rustls' ring provider for the whole process. Every part that builds an HTTP client
/// calls it first; a second call finds it installed, which is fine.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
