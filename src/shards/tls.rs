//! TLS between nodes: forwarded requests carry the client's key and the member proof, Raft
//! traffic the shard map; on a network others share, they go over TLS.
//!
//! With `https://` member URLs every node serves TLS on its one port next to plain HTTP (the
//! first byte of a connection tells a TLS ClientHello, 0x16, from an HTTP request: clients,
//! probes and `onwapp drain` keep plain HTTP), and calls its members over TLS, checking their
//! certificates against `CLUSTER_TLS_CA` (not the public roots). A member proof or a
//! `/cluster/*` call is then believed only when it came over TLS. With
//! `CLUSTER_TLS_CLIENT_AUTH=true` a member must also present a certificate signed by the CA
//! (each node's certificate then needs both the `serverAuth` and `clientAuth` usages).
//!
//! rustls with ring, chosen explicitly (no process-wide provider is assumed).

use std::sync::Arc;

use rustls::{
    ClientConfig, RootCertStore, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::WebPkiClientVerifier,
};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::settings::TlsFiles;

/// Both ends of TLS between nodes, from the configured files.
#[derive(Clone)]
pub struct ClusterTls {
    pub acceptor: TlsAcceptor,
    pub connector: TlsConnector,
}

/// Marks a request that came over a TLS connection (an extension the TLS listener adds).
#[derive(Clone, Copy, Debug)]
pub struct ViaTls;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{var}: {reason}")]
    File { var: &'static str, reason: String },
    #[error("TLS between nodes: {0}")]
    Config(String),
}

fn file_err(var: &'static str) -> impl Fn(rustls::pki_types::pem::Error) -> TlsError {
    move |e| TlsError::File {
        var,
        reason: format!("cannot read PEM: {e}"),
    }
}

fn certs(
    var: &'static str,
    path: &std::path::Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let list = CertificateDer::pem_file_iter(path)
        .map_err(file_err(var))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(file_err(var))?;
    if list.is_empty() {
        return Err(TlsError::File {
            var,
            reason: "no certificate in the file".into(),
        });
    }
    Ok(list)
}

/// Loads the files into a server and a client configuration.
pub fn load(f: &TlsFiles) -> Result<ClusterTls, TlsError> {
    let config = |e: rustls::Error| TlsError::Config(e.to_string());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for c in certs("CLUSTER_TLS_CA", &f.ca)? {
        roots.add(c).map_err(|e| TlsError::File {
            var: "CLUSTER_TLS_CA",
            reason: e.to_string(),
        })?;
    }
    let roots = Arc::new(roots);
    let (Some(cert), Some(key)) = (&f.cert, &f.key) else {
        return Err(TlsError::Config(
            "CLUSTER_TLS_CERT and CLUSTER_TLS_KEY are required".into(),
        ));
    };
    let chain = certs("CLUSTER_TLS_CERT", cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(file_err("CLUSTER_TLS_KEY"))?;

    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(config)?;
    let server = if f.client_auth {
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        server.with_client_cert_verifier(verifier)
    } else {
        server.with_no_client_auth()
    };
    let mut server = server
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(config)?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    // The member client checks an idle connection by reading from it: nothing may arrive on
    // one, session tickets included.
    server.send_tls13_tickets = 0;

    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(config)?
        .with_root_certificates(roots);
    let mut client = if f.client_auth {
        client.with_client_auth_cert(chain, key).map_err(config)?
    } else {
        client.with_no_client_auth()
    };
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(ClusterTls {
        acceptor: TlsAcceptor::from(Arc::new(server)),
        connector: TlsConnector::from(Arc::new(client)),
    })
}
