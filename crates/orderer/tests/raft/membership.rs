//! Adding a learner, promoting it, removing a voter.

use twill_orderer::raft::eraftpb::ConfChangeType;
use twill_orderer::raft::RaftError;

use crate::harness::{conf_change, eventually, serial, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learner_joins_is_promoted_and_a_voter_is_removed() {
    let _serial = serial().await;
    let mut cluster = Cluster::start(&[1, 2, 3], |_| {});
    let leader = cluster.wait_leader(&[1, 2, 3]).await;
    for i in 0..20 {
        cluster.propose(format!("one-{i}").into_bytes()).await;
    }

    // Refusals: on a follower, and for a change that does not fit.
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    let add4 = conf_change(&[(ConfChangeType::AddLearnerNode, 4)], false);
    assert!(matches!(
        cluster.handle(follower).propose_conf_change(add4.clone()).await,
        Err(RaftError::NotLeader { leader: Some(l) }) if l == leader
    ));
    assert!(matches!(
        cluster
            .handle(leader)
            .propose_conf_change(conf_change(
                &[
                    (ConfChangeType::RemoveNode, 1),
                    (ConfChangeType::RemoveNode, 2),
                    (ConfChangeType::RemoveNode, 3),
                ],
                false
            ))
            .await,
        Err(RaftError::ConfChangeRejected { .. })
    ));

    // Node 4 starts empty (no peers: it joins) and is added as a learner; it
    // catches up through a snapshot that carries the configuration.
    cluster.start_node(4, Vec::new());
    cluster
        .handle(leader)
        .propose_conf_change(add4)
        .await
        .unwrap();
    let last = cluster.propose(b"for-the-learner".to_vec()).await.1;
    cluster.wait_applied(&[1, 2, 3, 4], last).await;
    let s4 = cluster.status(4);
    assert_eq!(s4.voters, vec![1, 2, 3]);
    assert_eq!(s4.learners, vec![4]);
    assert!(!cluster.record(4).lock().unwrap().restores.is_empty());
    cluster.assert_same_applied(&[1, 2, 3, 4]);

    // Promote the learner.
    let leader = cluster.wait_leader(&[1, 2, 3]).await;
    cluster
        .handle(leader)
        .propose_conf_change(conf_change(&[(ConfChangeType::AddNode, 4)], false))
        .await
        .unwrap();
    eventually("node 4 to be a voter everywhere", || {
        [1, 2, 3, 4].iter().all(|id| {
            let s = cluster.status(*id);
            s.voters == [1, 2, 3, 4] && s.learners.is_empty()
        })
    })
    .await;
    let mut last = 0;
    for i in 0..20 {
        last = cluster.propose(format!("two-{i}").into_bytes()).await.1;
    }
    cluster.wait_applied(&[1, 2, 3, 4], last).await;
    cluster.assert_same_applied(&[1, 2, 3, 4]);

    // Remove a voter through an explicit joint configuration; the loop
    // leaves the joint state on its own.
    let leader = cluster.wait_leader(&[1, 2, 3, 4]).await;
    let victim = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap();
    cluster
        .handle(leader)
        .propose_conf_change(conf_change(&[(ConfChangeType::RemoveNode, victim)], true))
        .await
        .unwrap();
    let rest: Vec<u64> = [1, 2, 3, 4]
        .into_iter()
        .filter(|id| *id != victim)
        .collect();
    eventually("the joint configuration to be left", || {
        rest.iter().all(|id| {
            let s = cluster.status(*id);
            s.voters_outgoing.is_empty() && !s.voters.contains(&victim)
        })
    })
    .await;
    assert_eq!(cluster.status(leader).voters.len(), 3);
    cluster.stop_node(victim).await;
    for i in 0..20 {
        last = cluster.propose(format!("three-{i}").into_bytes()).await.1;
    }
    cluster.wait_applied(&rest, last).await;
    cluster.assert_same_applied(&rest);
    cluster.assert_no_violations();
}
