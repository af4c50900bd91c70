//! Config updates through the chain, and joining a running channel late
//! with a config block.

use twill_orderer::chain::ChainHandle;
use twill_orderer::registrar::{Registrar, STATUS_ACTIVE, STATUS_ONBOARDING};
use twill_orderer::writer::{is_config_block, last_config_index};
use twill_protos::common::Status;

use crate::*;

/// Orders `envs` round-robin on `chains`, concurrently.
async fn order_all(chains: &[ChainHandle], envs: &[Vec<u8>]) {
    let mut calls = Vec::new();
    for (i, env) in envs.iter().enumerate() {
        let chain = chains[i % chains.len()].clone();
        let env = env.clone();
        calls.push(tokio::spawn(async move {
            retry(|| chain.order(env.clone())).await
        }));
    }
    for call in calls {
        call.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_update_switches_batch_size_everywhere() {
    let _serial = serial().await;
    let cluster = Cluster::new(opts());
    let chains = cluster.start_all();
    let leader = wait_leader(&chains).await;
    let mut sent: Vec<Vec<u8>> = (0..14).map(tx).collect();
    order_all(&chains, &sent).await;
    wait_converged(&chains, sent.len()).await;

    // Submitted on a follower: the CONFIG envelope is forwarded to the leader.
    let follower = chains.iter().find(|c| c.consenter_id() != leader).unwrap();
    let cfg = follower.config();
    assert_eq!(cfg.batch_size.max_message_count, 10);
    let update = config_update(&cluster.crypto, &cfg, &with_max_message_count(&cfg, 3));
    let config_env = config_envelope(follower, &update);
    follower.configure(config_env.clone()).await.unwrap();
    eventually("the new config on every chain", || {
        chains.iter().all(|c| c.status().config_sequence == 1)
    })
    .await;
    for chain in &chains {
        assert_eq!(chain.config().batch_size.max_message_count, 3);
        let store = chain.block_store();
        let last = store.block(store.height() - 1).unwrap().unwrap();
        assert!(is_config_block(&last), "the config block is the tip");
        assert_eq!(last.data.as_ref().unwrap().data, vec![config_env.clone()]);
        assert_eq!(
            last_config_index(&last).unwrap(),
            store.height() - 1,
            "a config block is its own last config"
        );
        assert_eq!(
            store.last_config_block().unwrap().unwrap().header,
            last.header
        );
    }
    let config_number = chains[0].status().height - 1;

    // The same config envelope again is stale: refused before ordering.
    let err = chains[0].configure(config_env).await.unwrap_err();
    assert_eq!(err.status, Status::BadRequest, "{err}");

    // Later blocks follow the new batch size.
    let more: Vec<Vec<u8>> = (100..111).map(tx).collect();
    order_all(&chains, &more).await;
    sent.extend(more);
    wait_converged(&chains, sent.len()).await;
    let blocks = blocks(&chains[0]);
    let after: Vec<usize> = blocks[(config_number + 1) as usize..]
        .iter()
        .map(|b| b.data.as_ref().unwrap().data.len())
        .collect();
    assert_eq!(after.iter().sum::<usize>(), 11);
    assert!(
        after.iter().all(|n| *n <= 3),
        "blocks after the update: {after:?}"
    );
    assert!(after.iter().filter(|n| **n == 3).count() >= 3, "{after:?}");
    for chain in &chains {
        assert_exactly_once(chain, &sent);
    }

    // Removing two consenters at once is refused.
    let cfg = chains[0].config();
    let update = config_update(&cluster.crypto, &cfg, &with_consenters(&cfg, 1));
    let err = chains[0]
        .configure(config_envelope(&chains[0], &update))
        .await
        .unwrap_err();
    assert_eq!(err.status, Status::BadRequest);
    assert!(err.info.contains("one consenter"), "{}", err.info);
    halt_all(&chains).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_consenter_joins_with_a_config_block() {
    let _serial = serial().await;
    let cluster = Cluster::new(opts());
    // Orderer 2 is a consenter of the genesis config but does not start.
    let chains = vec![cluster.start(0), cluster.start(1)];
    wait_leader(&chains).await;
    let mut sent: Vec<Vec<u8>> = (0..25).map(tx).collect();
    order_all(&chains, &sent).await;
    let cfg = chains[0].config();
    let update = config_update(&cluster.crypto, &cfg, &with_max_message_count(&cfg, 4));
    retry(|| chains[0].configure(config_envelope(&chains[0], &update)))
        .await
        .unwrap();
    let more: Vec<Vec<u8>> = (100..109).map(tx).collect();
    order_all(&chains, &more).await;
    sent.extend(more);
    wait_converged(&chains, sent.len()).await;
    let join_block = chains[0]
        .block_store()
        .last_config_block()
        .unwrap()
        .unwrap();
    assert!(join_block.header.as_ref().unwrap().number > 0);

    // Orderer 2 joins with the config block through its registrar.
    let (signer, cert) = cluster.crypto.orderer(2);
    let root = cluster.dir.path().join("late");
    let registrar = Registrar::open(&root, signer, cert, cluster.nodes[2].clone(), opts()).unwrap();
    let info = registrar.join(join_block.clone()).await.unwrap();
    assert_eq!(info.name, CHANNEL);
    assert_eq!(info.status, STATUS_ONBOARDING);
    eventually("onboarding done", || {
        registrar
            .info(CHANNEL)
            .is_some_and(|i| i.status == STATUS_ACTIVE)
    })
    .await;
    let late = registrar.get(CHANNEL).unwrap();
    cluster.nodes[2].register(&late);
    assert_eq!(late.consenter_id(), 3);
    assert_eq!(late.status().config_sequence, 1);

    let all = vec![chains[0].clone(), chains[1].clone(), late.clone()];
    let more: Vec<Vec<u8>> = (200..210).map(tx).collect();
    order_all(&all, &more).await;
    sent.extend(more);
    wait_converged(&all, sent.len()).await;
    for chain in &all {
        assert_exactly_once(chain, &sent);
    }
    eventually("the late node caught up with the raft log", || {
        !cluster.chain_dir_late(&root).join("onboarding").exists()
    })
    .await;
    registrar.shutdown().await;
    halt_all(&chains).await;
}

impl Cluster {
    fn chain_dir_late(&self, root: &std::path::Path) -> std::path::PathBuf {
        root.join("chains").join(CHANNEL)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consenter_is_added_then_another_removed() {
    let _serial = serial().await;
    let cluster = Cluster::new(opts());
    let chains = cluster.start_all();
    wait_leader(&chains).await;
    let mut sent: Vec<Vec<u8>> = (0..12).map(tx).collect();
    order_all(&chains, &sent).await;

    // Add orderer3 as a fourth consenter.
    let cfg = chains[0].config();
    let pem = cluster.crypto.orderer_tls_pem(3);
    let desired = edit_consenters(&cfg, |c| {
        c.push(twill_protos::etcdraft::Consenter {
            host: "127.0.0.1".into(),
            port: 10055,
            client_tls_cert: pem.clone(),
            server_tls_cert: pem.clone(),
        })
    });
    let update = config_update(&cluster.crypto, &cfg, &desired);
    retry(|| chains[1].configure(config_envelope(&chains[1], &update)))
        .await
        .unwrap();
    eventually("config 1 everywhere", || {
        chains.iter().all(|c| c.status().config_sequence == 1)
    })
    .await;
    let join_block = chains[0]
        .block_store()
        .last_config_block()
        .unwrap()
        .unwrap();
    let meta = raft_meta(&join_block);
    assert_eq!(meta.consenter_ids, vec![1, 2, 3, 4]);
    assert_eq!(meta.next_consenter_id, 5);
    eventually("raft voters 1..=4 on the leader", || {
        chains
            .iter()
            .any(|c| c.status().is_leader && c.raft().status().voters == vec![1, 2, 3, 4])
    })
    .await;

    // orderer3 joins with the config block that added it.
    let (signer, cert) = cluster.crypto.orderer(3);
    let node = cluster.net.add_node();
    let registrar = Registrar::open(
        &cluster.dir.path().join("orderer3"),
        signer,
        cert,
        node.clone(),
        opts(),
    )
    .unwrap();
    registrar.join(join_block).await.unwrap();
    eventually("orderer3 onboarded", || {
        registrar
            .info(CHANNEL)
            .is_some_and(|i| i.status == STATUS_ACTIVE)
    })
    .await;
    let newcomer = registrar.get(CHANNEL).unwrap();
    node.register(&newcomer);
    assert_eq!(newcomer.consenter_id(), 4);
    let four: Vec<_> = chains.iter().cloned().chain([newcomer.clone()]).collect();
    let more: Vec<Vec<u8>> = (100..112).map(tx).collect();
    order_all(&four, &more).await;
    sent.extend(more);
    wait_converged(&four, sent.len()).await;
    for chain in &four {
        assert_exactly_once(chain, &sent);
    }

    // Remove orderer2 (raft id 3): it halts itself, the others go on.
    let cfg = chains[0].config();
    let desired = edit_consenters(&cfg, |c| {
        c.remove(2);
    });
    let update = config_update(&cluster.crypto, &cfg, &desired);
    retry(|| newcomer.configure(config_envelope(&newcomer, &update)))
        .await
        .unwrap();
    let remaining = vec![chains[0].clone(), chains[1].clone(), newcomer.clone()];
    eventually("config 2 on the remaining consenters", || {
        remaining.iter().all(|c| c.status().config_sequence == 2)
    })
    .await;
    eventually("the removed consenter halts", || chains[2].is_halted()).await;
    eventually("raft voters 1, 2, 4", || {
        remaining
            .iter()
            .any(|c| c.status().is_leader && c.raft().status().voters == vec![1, 2, 4])
    })
    .await;
    let tip = remaining[0].block_store().height() - 1;
    let meta = raft_meta(&remaining[0].block_store().block(tip).unwrap().unwrap());
    assert_eq!(meta.consenter_ids, vec![1, 2, 4]);
    assert_eq!(meta.next_consenter_id, 5);
    let more: Vec<Vec<u8>> = (200..209).map(tx).collect();
    order_all(&remaining, &more).await;
    sent.extend(more);
    wait_converged(&remaining, sent.len()).await;
    registrar.shutdown().await;
    halt_all(&chains).await;
}
