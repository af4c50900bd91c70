//! Connections the gateway makes: to other peers' `protos.Endorser` and to
//! the orderers' `orderer.AtomicBroadcast`.
//!
//! Channels are lazy (they connect on first use and reconnect after a
//! failure) and cached by address and channel-config sequence, so a config
//! update with new TLS roots gets fresh connections. Peers are trusted
//! through the application orgs' TLS roots from the channel config,
//! orderers through the orderer orgs'; the peer's TLS client certificate
//! (`peer.tls.clientCert`), when configured, is presented to both.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tonic::transport::Channel as GrpcChannel;
use twill_comm::ClientTls;
use twill_configtx::channel::ChannelConfig;

use crate::deliverclient::{orderer_tls_roots, OrdererConnection};

/// Entries kept before a cache is emptied (stale config sequences pile up
/// only across config updates).
const CACHE_LIMIT: usize = 256;

/// Which side of the network a connection goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Another peer's Endorser.
    Peer,
    /// An orderer's Broadcast.
    Orderer,
}

/// Cached lazy gRPC channels; see the [module docs](self).
#[derive(Debug)]
pub struct Connections {
    settings: OrdererConnection,
    cache: Mutex<HashMap<(Kind, String, String, u64), GrpcChannel>>,
}

impl Connections {
    /// Connections made over TLS when `settings.tls`, presenting
    /// `settings.client_identity` if set.
    pub fn new(settings: OrdererConnection) -> Arc<Self> {
        Arc::new(Connections {
            settings,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// A channel to `address` (`host:port`) of `kind`, for channel
    /// `channel_id` under config `cfg`. The error is a message for the
    /// caller's error detail.
    pub fn get(
        &self,
        kind: Kind,
        channel_id: &str,
        cfg: &ChannelConfig,
        address: &str,
    ) -> Result<GrpcChannel, String> {
        let key = (
            kind,
            channel_id.to_owned(),
            address.to_owned(),
            cfg.config.sequence,
        );
        if let Some(c) = self.cache.lock().get(&key) {
            return Ok(c.clone());
        }
        let tls = if self.settings.tls {
            let roots = match kind {
                Kind::Peer => peer_tls_roots(cfg),
                Kind::Orderer => orderer_tls_roots(cfg),
            };
            if roots.is_empty() {
                return Err(format!(
                    "the channel config holds no TLS root certificates for the {}",
                    match kind {
                        Kind::Peer => "peer organizations",
                        Kind::Orderer => "orderer organizations",
                    }
                ));
            }
            let mut tls = ClientTls::new(roots);
            if let Some((cert, key)) = &self.settings.client_identity {
                tls = tls.with_identity(cert.clone(), key.clone());
            }
            Some(tls)
        } else {
            None
        };
        let channel = twill_comm::connect_lazy(address, tls.as_ref()).map_err(|e| e.to_string())?;
        let mut cache = self.cache.lock();
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        Ok(cache.entry(key).or_insert(channel).clone())
    }
}

/// PEM TLS root and intermediate certificates of every application org.
pub fn peer_tls_roots(cfg: &ChannelConfig) -> Vec<Vec<u8>> {
    let mut roots = Vec::new();
    for org in cfg.application_orgs.values() {
        if let Some(msp) = cfg.msps.get(&org.msp_id) {
            let c = msp.config();
            roots.extend(c.tls_root_certs.iter().cloned());
            roots.extend(c.tls_intermediate_certs.iter().cloned());
        }
    }
    roots
}
