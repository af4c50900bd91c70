//! Proposals whose fate cannot be known fail with an error instead of
//! hanging.

use std::time::Duration;

use twill_orderer::raft::RaftError;

use crate::harness::{eventually, serial, Cluster, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposal_on_a_deposed_leader_reports_unknown_outcome() {
    let _serial = serial().await;
    let cluster = Cluster::start(&[1, 2, 3], |_| {});
    let old = cluster.wait_leader(&[1, 2, 3]).await;
    cluster.propose(b"first".to_vec()).await;

    // The leader is cut off right before it appends: it cannot commit, and
    // check_quorum deposes it after an election timeout.
    cluster.net.isolate(old);
    let outcome = tokio::time::timeout(WAIT, cluster.handle(old).propose(b"lost".to_vec()))
        .await
        .expect("the proposal must not hang");
    match outcome {
        Err(RaftError::UnknownOutcome { index, .. }) => assert!(index > 1),
        other => panic!("expected UnknownOutcome, got {other:?}"),
    }
    assert!(matches!(
        cluster.handle(old).propose(b"late".to_vec()).await,
        Err(RaftError::NotLeader { .. })
    ));

    // After healing, the lost entry was overwritten everywhere.
    let rest: Vec<u64> = cluster.ids().into_iter().filter(|id| *id != old).collect();
    cluster.wait_leader(&rest).await;
    cluster.net.heal();
    let last = cluster.propose(b"next".to_vec()).await.1;
    cluster.wait_applied(&[1, 2, 3], last).await;
    cluster.assert_same_applied(&[1, 2, 3]);
    assert!(cluster
        .applied(old)
        .iter()
        .all(|(_, data)| data.as_slice() != b"lost"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposal_times_out_with_manual_ticks() {
    let _serial = serial().await;
    // Time only moves when the test ticks; the proposal timeout (3 ticks)
    // is shorter than the election timeout (10), so the isolated leader is
    // still leading when the proposal expires.
    let cluster = Cluster::start(&[1, 2, 3], |cfg| {
        cfg.manual_ticks = true;
        cfg.tick_interval = Duration::from_millis(100);
        cfg.proposal_timeout = Duration::from_millis(300);
    });
    let node1 = cluster.handle(1);
    // Only node 1's clock runs, so node 1 campaigns and wins.
    eventually("node 1 to lead", || {
        node1.tick().unwrap();
        cluster.status(1).is_leader()
    })
    .await;
    let (term, index) = cluster.propose(b"ok".to_vec()).await;
    assert_eq!(term, cluster.status(1).term);

    cluster.net.isolate(1);
    let pending = tokio::spawn({
        let node1 = node1.clone();
        async move { node1.propose(b"stuck".to_vec()).await }
    });
    eventually("the proposal to be appended", || {
        cluster.status(1).last_index > index
    })
    .await;
    for _ in 0..3 {
        node1.tick().unwrap();
    }
    match tokio::time::timeout(WAIT, pending).await.unwrap().unwrap() {
        Err(err @ RaftError::Timeout { .. }) => assert!(err.is_unknown_outcome()),
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(
        cluster.status(1).is_leader(),
        "still leading: no step-down yet"
    );
}
