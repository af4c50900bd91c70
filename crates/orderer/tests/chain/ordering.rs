//! Ordering on three chains: leader election, forwarding, batching, the
//! batch timer, deduplication, restart from disk, catch-up by snapshot.

use std::time::Duration;

use twill_orderer::chain::{Chain, ChainOptions};
use twill_orderer::writer::is_config_block;
use twill_protos::common::Status;

use crate::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_chains_order_agree_dedupe_and_restart() {
    let _serial = serial().await;
    let cluster = Cluster::new(opts());
    let mut chains = cluster.start_all();
    let leader = wait_leader(&chains).await;
    for chain in &chains {
        let status = chain.status();
        assert_eq!(status.height, 1);
        assert_eq!(status.config_sequence, 0);
        assert_eq!(status.leader, Some(leader));
        assert_eq!(chain.channel_id(), CHANNEL);
    }
    assert_eq!(
        chains.iter().map(|c| c.consenter_id()).collect::<Vec<_>>(),
        vec![1, 2, 3],
        "genesis consenters get ids 1..=3 in config order"
    );

    // 500 envelopes on mixed nodes: followers forward to the leader.
    let sent: Vec<Vec<u8>> = (0..500).map(tx).collect();
    let mut calls = Vec::new();
    for (i, env) in sent.iter().enumerate() {
        let chain = chains[i % 3].clone();
        let env = env.clone();
        calls.push(tokio::spawn(async move { chain.order(env).await }));
    }
    for call in calls {
        call.await.unwrap().unwrap();
    }
    // The last partial batch is cut by the leader's batch timer.
    wait_converged(&chains, 500).await;
    for chain in &chains {
        assert_exactly_once(chain, &sent);
    }

    // Every block holds at most MaxMessageCount (10) envelopes and records
    // the consenter ids and a growing raft index.
    let blocks = blocks(&chains[0]);
    let mut last_index = 0;
    for block in &blocks[1..] {
        assert!(!is_config_block(block));
        assert!(block.data.as_ref().unwrap().data.len() <= 10);
        let meta = raft_meta(block);
        assert_eq!(meta.consenter_ids, vec![1, 2, 3]);
        assert_eq!(meta.next_consenter_id, 4);
        assert!(meta.raft_index >= last_index, "raft index goes backwards");
        last_index = meta.raft_index;
    }
    assert!(blocks.len() >= 51, "500 envelopes need at least 50 blocks");
    // Each orderer signs its own copy.
    assert_ne!(
        chains[0].block_store().block(1).unwrap().unwrap().metadata,
        chains[1].block_store().block(1).unwrap().unwrap().metadata
    );

    // Resubmitting ordered envelopes (a client retrying after an unknown
    // outcome) orders nothing twice.
    for env in &sent[..20] {
        chains[1].order(env.clone()).await.unwrap();
    }
    let extra = tx(10_000);
    chains[2].order(extra.clone()).await.unwrap();
    chains[0].order(extra.clone()).await.unwrap();
    let mut sent = sent;
    sent.push(extra);
    wait_converged(&chains, 501).await;
    for chain in &chains {
        assert_exactly_once(chain, &sent);
    }

    // Restart a follower from disk.
    let follower = chains.iter().position(|c| !c.status().is_leader).unwrap();
    let height = chains[follower].status().height;
    let old = chains.remove(follower);
    old.halt().await;
    assert!(old.is_halted());
    let refused = old.order(tx(20_000)).await.unwrap_err();
    assert_eq!(refused.status, Status::ServiceUnavailable);
    drop(old);

    // Ordering goes on with two of three.
    let more: Vec<Vec<u8>> = (20_001..20_016).map(tx).collect();
    for env in &more {
        retry(|| chains[0].order(env.clone())).await.unwrap();
    }

    let restarted = cluster.start(follower);
    assert!(restarted.status().height >= height);
    chains.insert(follower, restarted);
    let more2: Vec<Vec<u8>> = (30_000..30_025).map(tx).collect();
    for (i, env) in more2.iter().enumerate() {
        retry(|| chains[i % 3].order(env.clone())).await.unwrap();
    }
    sent.extend(more);
    sent.extend(more2);
    wait_converged(&chains, sent.len()).await;
    for chain in &chains {
        assert_exactly_once(chain, &sent);
    }

    // A chain restarted without a genesis block reopens the same ledger.
    let last = chains.pop().unwrap();
    let height = last.status().height;
    last.halt().await;
    drop(last);
    let (signer, cert) = cluster.crypto.orderer(2);
    let reopened = Chain::start(
        &cluster.chain_dir(2),
        None,
        signer,
        &cert,
        cluster.nodes[2].clone(),
        opts(),
    )
    .unwrap();
    cluster.nodes[2].register(&reopened);
    assert_eq!(reopened.status().height, height);
    chains.push(reopened);
    wait_leader(&chains).await;
    halt_all(&chains).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_leader_is_service_unavailable() {
    let _serial = serial().await;
    let cluster = Cluster::new(opts());
    // One chain of three cannot elect a leader.
    let lonely = cluster.start(0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let err = lonely.order(tx(1)).await.unwrap_err();
    assert_eq!(err.status, Status::ServiceUnavailable);
    assert!(
        err.info.contains("no Raft leader for channel mychannel"),
        "{}",
        err.info
    );
    let err = lonely
        .order_forwarded(vec![tx(2)], false)
        .await
        .unwrap_err();
    assert_eq!(err.status, Status::ServiceUnavailable);
    assert!(err.info.contains("not the leader"), "{}", err.info);
    lonely.halt().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_follower_catches_up_through_a_snapshot() {
    let _serial = serial().await;
    let cluster = Cluster::new(ChainOptions {
        snapshot_interval_bytes: Some(4 * 1024),
        ..opts()
    });
    let chains = cluster.start_all();
    let leader = wait_leader(&chains).await;
    let lagging = chains
        .iter()
        .find(|c| c.consenter_id() != leader)
        .unwrap()
        .clone();
    let others: Vec<_> = chains
        .iter()
        .filter(|c| c.consenter_id() != lagging.consenter_id())
        .cloned()
        .collect();
    cluster.net.isolate(Cluster::node_of(&lagging));

    let mut sent = Vec::new();
    for round in 0..6u64 {
        let batch: Vec<Vec<u8>> = (round * 50..round * 50 + 50).map(tx).collect();
        let mut calls = Vec::new();
        for (i, env) in batch.iter().enumerate() {
            let chain = others[i % 2].clone();
            let env = env.clone();
            calls.push(tokio::spawn(async move {
                retry(|| chain.order(env.clone())).await
            }));
        }
        for call in calls {
            call.await.unwrap().unwrap();
        }
        sent.extend(batch);
    }
    wait_converged(&others, sent.len()).await;
    eventually("the leader compacted its log", || {
        others.iter().all(|c| c.raft().status().snapshot_index > 10)
    })
    .await;
    assert_eq!(lagging.status().height, 1);

    cluster.net.heal();
    wait_converged(&chains, sent.len()).await;
    for chain in &chains {
        assert_exactly_once(chain, &sent);
    }
    assert!(
        lagging.raft().status().snapshot_index > 10,
        "the lagging node caught up through a snapshot"
    );

    // And it keeps up afterwards.
    let more: Vec<Vec<u8>> = (1000..1012).map(tx).collect();
    for env in &more {
        retry(|| lagging.order(env.clone())).await.unwrap();
    }
    sent.extend(more);
    wait_converged(&chains, sent.len()).await;
    halt_all(&chains).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_envelopes_survive_a_full_restart() {
    let _serial = serial().await;
    // A long batch timeout, so that envelopes stay pending across the restart.
    let cluster = Cluster::with_crypto(Crypto::with_batch_timeout("3s"), opts());
    let chains = cluster.start_all();
    let leader = wait_leader(&chains).await;
    let leader = chains
        .iter()
        .find(|c| c.consenter_id() == leader)
        .unwrap()
        .clone();
    // One entry of 13: a block of 10 is cut, 3 stay pending.
    let sent: Vec<Vec<u8>> = (0..13).map(tx).collect();
    leader.order_forwarded(sent.clone(), false).await.unwrap();
    eventually("the first block everywhere", || {
        chains.iter().all(|c| c.status().height == 2)
    })
    .await;
    halt_all(&chains).await;
    for chain in &chains {
        assert_eq!(
            chain.status().height,
            2,
            "the tail was cut before the restart"
        );
        assert_eq!(ordered_envelopes(chain).len(), 10);
    }
    drop((chains, leader));

    // Restart every node from disk: the entry that completed block 1 is
    // replayed and its tail is pending again; the batch timer cuts it.
    let chains: Vec<_> = (0..3)
        .map(|i| {
            let (signer, cert) = cluster.crypto.orderer(i);
            let chain = Chain::start(
                &cluster.chain_dir(i),
                None,
                signer,
                &cert,
                cluster.nodes[i].clone(),
                opts(),
            )
            .unwrap();
            cluster.nodes[i].register(&chain);
            chain
        })
        .collect();
    wait_converged(&chains, 13).await;
    for chain in &chains {
        assert_exactly_once(chain, &sent);
        assert_eq!(chain.status().height, 3);
    }
    halt_all(&chains).await;
}
