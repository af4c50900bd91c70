//! Helpers: chains of blocks with tx-carrying envelopes.

use std::path::{Path, PathBuf};

use prost::Message;
use twill_configtx::block::{block_header_hash, channel_header, envelope, new_block};
use twill_ledger::format;
use twill_ledger::BlockStore;
use twill_protos::common::{Block, HeaderType, SignatureHeader};

/// An envelope whose channel header carries `tx_id`, with `body` as data.
pub fn tx_envelope(tx_id: &str, body: Vec<u8>) -> Vec<u8> {
    let ch = channel_header(HeaderType::EndorserTransaction, 0, "testchannel", tx_id);
    let sh = SignatureHeader {
        creator: b"creator".to_vec(),
        nonce: tx_id.as_bytes().to_vec(),
    };
    envelope(&ch, &sh, body).encode_to_vec()
}

/// Builds blocks that chain onto each other.
pub struct Chain {
    pub next: u64,
    pub prev: Vec<u8>,
}

impl Chain {
    pub fn new() -> Chain {
        Chain {
            next: 0,
            prev: Vec::new(),
        }
    }

    /// Continues the chain held by `store`.
    pub fn following(store: &BlockStore) -> Chain {
        Chain {
            next: store.height(),
            prev: store
                .last_block_hash()
                .map(|h| h.to_vec())
                .unwrap_or_default(),
        }
    }

    /// The next block, holding `data`.
    pub fn block(&mut self, data: Vec<Vec<u8>>) -> Block {
        let block = new_block(self.next, self.prev.clone(), data);
        self.prev = block_header_hash(block.header.as_ref().unwrap()).to_vec();
        self.next += 1;
        block
    }

    /// The next block, holding one envelope per tx id `b<n>-t<i>`.
    pub fn block_with_txs(&mut self, txs: usize) -> Block {
        let n = self.next;
        let data = (0..txs)
            .map(|i| tx_envelope(&tx_id(n, i), vec![i as u8; 32]))
            .collect();
        self.block(data)
    }
}

pub fn tx_id(block: u64, i: usize) -> String {
    format!("b{block}-t{i}")
}

pub fn blocks_dir(dir: &Path) -> PathBuf {
    dir.join("blocks")
}

pub fn block_file(dir: &Path, n: u32) -> PathBuf {
    blocks_dir(dir).join(format::block_file_name(n))
}

/// Number of block files in the store's directory.
pub fn block_file_count(dir: &Path) -> usize {
    std::fs::read_dir(blocks_dir(dir))
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            format::parse_block_file_name(name.to_str().unwrap()).is_some()
        })
        .count()
}

/// A store in `dir` holding `count` blocks of `txs` transactions each.
pub fn filled_store(dir: &Path, count: u64, txs: usize) -> BlockStore {
    let store = BlockStore::open(dir).unwrap();
    let mut chain = Chain::new();
    for _ in 0..count {
        store.append(&chain.block_with_txs(txs)).unwrap();
    }
    store
}
