//! The registrar: join, list, get, info, remove, reopen.

use std::sync::Arc;

use twill_orderer::chain::ChainError;
use twill_orderer::registrar::{Registrar, STATUS_ACTIVE};

use crate::*;

fn open(cluster: &Cluster, i: usize) -> Arc<Registrar> {
    let (signer, cert) = cluster.crypto.orderer(i);
    let root = cluster.dir.path().join(format!("orderer{i}"));
    Registrar::open(&root, signer, cert, cluster.nodes[i].clone(), opts()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrar_lifecycle() {
    let _serial = serial().await;
    let cluster = Cluster::new(opts());
    let mut registrars: Vec<Arc<Registrar>> = (0..3).map(|i| open(&cluster, i)).collect();
    assert!(registrars[0].list().is_empty());
    assert!(registrars[0].get(CHANNEL).is_none());

    for (i, registrar) in registrars.iter().enumerate() {
        let info = registrar.join(cluster.genesis.clone()).await.unwrap();
        assert_eq!(info.name, CHANNEL);
        assert_eq!(info.url, "/participation/v1/channels/mychannel");
        assert_eq!(info.consensus_relation, "consenter");
        assert_eq!(info.status, STATUS_ACTIVE);
        assert_eq!(info.height, 1);
        cluster.nodes[i].register(&registrar.get(CHANNEL).unwrap());
    }
    let chains: Vec<_> = registrars.iter().map(|r| r.get(CHANNEL).unwrap()).collect();
    wait_leader(&chains).await;
    let mut sent: Vec<Vec<u8>> = (0..12).map(tx).collect();
    for (i, env) in sent.iter().enumerate() {
        retry(|| chains[i % 3].order(env.clone())).await.unwrap();
    }
    wait_converged(&chains, sent.len()).await;
    let list = registrars[1].list();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].height, chains[1].status().height);
    assert_eq!(registrars[1].info(CHANNEL), Some(list[0].clone()));

    // Join twice.
    let err = registrars[0]
        .join(cluster.genesis.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, ChainError::AlreadyExists { .. }), "{err}");
    assert_eq!(err.http_status(), 409);

    // Not a config block.
    let block1 = chains[0].block_store().block(1).unwrap().unwrap();
    let err = registrars[0].join(block1).await.unwrap_err();
    assert!(matches!(err, ChainError::InvalidBlock { .. }), "{err}");
    assert_eq!(err.http_status(), 400);

    // An orderer whose certificate is not among the consenters.
    let (signer, _) = cluster.crypto.orderer(0);
    let outsider = Registrar::open(
        &cluster.dir.path().join("outsider"),
        signer,
        cluster.crypto.peer_tls_cert(),
        cluster.net.add_node(),
        opts(),
    )
    .unwrap();
    let err = outsider.join(cluster.genesis.clone()).await.unwrap_err();
    assert!(matches!(err, ChainError::NotAConsenter { .. }), "{err}");
    assert!(outsider.list().is_empty());
    assert!(!cluster
        .dir
        .path()
        .join("outsider/chains")
        .join(CHANNEL)
        .exists());

    // Reopen orderer 0 from disk: the channel is back, at the same height.
    let height = chains[0].status().height;
    registrars[0].shutdown().await;
    assert!(chains[0].is_halted());
    drop(chains);
    registrars[0] = open(&cluster, 0);
    let info = registrars[0].info(CHANNEL).unwrap();
    assert_eq!(info.status, STATUS_ACTIVE);
    assert_eq!(info.height, height);
    cluster.nodes[0].register(&registrars[0].get(CHANNEL).unwrap());
    let chains: Vec<_> = registrars.iter().map(|r| r.get(CHANNEL).unwrap()).collect();
    let more: Vec<Vec<u8>> = (100..106).map(tx).collect();
    for (i, env) in more.iter().enumerate() {
        retry(|| chains[i % 3].order(env.clone())).await.unwrap();
    }
    sent.extend(more);
    wait_converged(&chains, sent.len()).await;

    // Remove the channel from orderer 2: halted, data gone.
    registrars[2].remove(CHANNEL).await.unwrap();
    assert!(chains[2].is_halted());
    assert!(registrars[2].get(CHANNEL).is_none());
    assert!(registrars[2].list().is_empty());
    let chains_dir = cluster.dir.path().join("orderer2/chains");
    assert!(!chains_dir.join(CHANNEL).exists());
    assert_eq!(std::fs::read_dir(&chains_dir).unwrap().count(), 0);
    let err = registrars[2].remove(CHANNEL).await.unwrap_err();
    assert!(matches!(err, ChainError::NotFound { .. }), "{err}");
    assert_eq!(err.http_status(), 404);

    // The others go on without it.
    let more: Vec<Vec<u8>> = (200..205).map(tx).collect();
    for env in &more {
        retry(|| chains[0].order(env.clone())).await.unwrap();
    }
    sent.extend(more);
    wait_converged(&chains[..2], sent.len()).await;

    // Reopening orderer 2 finds nothing.
    registrars[2].shutdown().await;
    registrars[2] = open(&cluster, 2);
    assert!(registrars[2].list().is_empty());

    for registrar in &registrars {
        registrar.shutdown().await;
    }
    outsider.shutdown().await;
}
