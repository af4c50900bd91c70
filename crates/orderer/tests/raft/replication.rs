//! Election and in-order replication.

use std::sync::Arc;

use tokio::task::JoinSet;
use twill_orderer::raft::{RaftError, Role};

use crate::harness::{propose_anywhere, serial, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_one_leader_and_apply_the_same_sequence() {
    let _serial = serial().await;
    let cluster = Cluster::start(&[1, 2, 3], |_| {});
    let leader = cluster.wait_leader(&[1, 2, 3]).await;
    let leaders = cluster
        .ids()
        .iter()
        .filter(|id| cluster.status(**id).role == Role::Leader)
        .count();
    assert_eq!(leaders, 1);
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();

    // A follower refuses and names the leader.
    match cluster.handle(follower).propose(b"nope".to_vec()).await {
        Err(RaftError::NotLeader { leader: Some(l) }) => assert_eq!(l, leader),
        other => panic!("expected NotLeader, got {other:?}"),
    }
    assert!(matches!(
        cluster.handle(leader).propose(Vec::new()).await,
        Err(RaftError::EmptyProposal)
    ));

    // 1,000 proposals in waves of 100 concurrent ones; every fourth goes to a
    // follower first and is forwarded to the leader it names.
    let handles = Arc::new(cluster.handles());
    let mut results = Vec::new();
    for wave in 0..10 {
        let mut set = JoinSet::new();
        for i in 0..100u32 {
            let n = wave * 100 + i;
            let handles = handles.clone();
            set.spawn(async move {
                let data = format!("tx-{n:04}").into_bytes();
                if n % 4 == 0 {
                    match handles[&follower].propose(data.clone()).await {
                        Err(RaftError::NotLeader { leader: Some(l) }) => {
                            if let Ok(at) = handles[&l].propose(data.clone()).await {
                                return (data, at);
                            }
                        }
                        // Leadership moved to this node meanwhile.
                        Ok(at) => return (data, at),
                        Err(_) => {}
                    }
                }
                let at = propose_anywhere(&handles, data.clone()).await;
                (data, at)
            });
        }
        while let Some(done) = set.join_next().await {
            results.push(done.unwrap());
        }
    }
    assert_eq!(results.len(), 1000);
    let last = results.iter().map(|(_, (_, index))| *index).max().unwrap();
    cluster.wait_applied(&[1, 2, 3], last).await;

    cluster.assert_no_violations();
    cluster.assert_same_applied(&[1, 2, 3]);
    let applied = cluster.applied(leader);
    // Every acknowledged (term, index) holds exactly the proposed data.
    for (data, (_, index)) in &results {
        let at = applied
            .iter()
            .find(|(i, _)| i == index)
            .expect("index applied");
        assert_eq!(&at.1, data);
    }
    let mut distinct: Vec<&Vec<u8>> = applied.iter().map(|(_, d)| d).collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 1000, "every proposal committed");
    // Indexes increase strictly in the applied sequence.
    assert!(applied.windows(2).all(|w| w[0].0 < w[1].0));
}
