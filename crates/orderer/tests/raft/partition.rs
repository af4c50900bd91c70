//! A leader cut off from the others.

use std::collections::HashMap;

use twill_orderer::raft::Role;

use crate::harness::{eventually, propose_anywhere, serial, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_leader_is_replaced_and_converges_after_heal() {
    let _serial = serial().await;
    let cluster = Cluster::start(&[1, 2, 3], |_| {});
    let old = cluster.wait_leader(&[1, 2, 3]).await;
    let old_term = cluster.status(old).term;
    for i in 0..50 {
        cluster.propose(format!("before-{i}").into_bytes()).await;
    }

    cluster.net.isolate(old);
    let rest: Vec<u64> = cluster.ids().into_iter().filter(|id| *id != old).collect();
    let new = cluster.wait_leader(&rest).await;
    assert_ne!(new, old);
    assert!(cluster.status(new).term > old_term);

    // Proposals continue on the majority side.
    let majority: HashMap<_, _> = rest.iter().map(|id| (*id, cluster.handle(*id))).collect();
    let mut last = 0;
    for i in 0..50 {
        last = propose_anywhere(&majority, format!("during-{i}").into_bytes())
            .await
            .1;
    }
    // check_quorum makes the isolated leader step down on its own.
    eventually("the old leader to step down", || {
        cluster.status(old).role != Role::Leader
    })
    .await;

    cluster.net.heal();
    eventually("the old leader to follow the new one", || {
        let s = cluster.status(old);
        s.role == Role::Follower && s.leader == Some(new)
    })
    .await;
    for i in 0..10 {
        last = cluster.propose(format!("after-{i}").into_bytes()).await.1;
    }
    cluster.wait_applied(&[1, 2, 3], last).await;
    cluster.assert_same_applied(&[1, 2, 3]);
    cluster.assert_no_violations();
    assert_eq!(cluster.applied(old).len(), 110);
}
