//! Restarting nodes on the same directories.

use crate::harness::{serial, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_follower_and_cluster_recover_without_reapplying() {
    let _serial = serial().await;
    let mut cluster = Cluster::start(&[1, 2, 3], |_| {});
    let leader = cluster.wait_leader(&[1, 2, 3]).await;
    for i in 0..100 {
        cluster.propose(format!("a-{i}").into_bytes()).await;
    }
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();

    // A follower goes down; the other two keep committing.
    cluster.stop_node(follower).await;
    let mut last = 0;
    for i in 0..100 {
        last = cluster.propose(format!("b-{i}").into_bytes()).await.1;
    }
    let handle = cluster.start_node(follower, vec![1, 2, 3]);
    let restarted = handle.status();
    assert!(restarted.applied >= 100, "recovered its applied index");
    cluster.wait_applied(&[1, 2, 3], last).await;
    cluster.assert_same_applied(&[1, 2, 3]);
    cluster.assert_no_violations();

    // The whole cluster goes down and comes back.
    let before: Vec<_> = [1, 2, 3].iter().map(|id| cluster.status(*id)).collect();
    for id in [1, 2, 3] {
        cluster.stop_node(id).await;
    }
    for id in [1, 2, 3] {
        let status = cluster.start_node(id, vec![1, 2, 3]).status();
        let old = &before[usize::try_from(id - 1).unwrap()];
        // The log and hard state survived: no re-bootstrap.
        assert!(status.last_index >= old.last_index, "log preserved on {id}");
        assert!(status.term >= old.term, "term preserved on {id}");
        assert_eq!(
            status.applied, old.applied,
            "applied index honoured on {id}"
        );
        assert_eq!(status.voters, vec![1, 2, 3]);
    }
    cluster.wait_leader(&[1, 2, 3]).await;
    for i in 0..50 {
        last = cluster.propose(format!("c-{i}").into_bytes()).await.1;
    }
    cluster.wait_applied(&[1, 2, 3], last).await;
    cluster.assert_same_applied(&[1, 2, 3]);
    // Each state machine saw every entry exactly once across restarts.
    cluster.assert_no_violations();
    let mut distinct: Vec<Vec<u8>> = cluster.applied(1).into_iter().map(|(_, d)| d).collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 250);
    for id in [1, 2, 3] {
        assert_eq!(
            cluster.record(id).lock().unwrap().starts,
            if id == follower { 3 } else { 2 }
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_whose_raft_log_ends_in_a_torn_write_recovers() {
    use std::io::Write as _;

    let _serial = serial().await;
    let mut cluster = Cluster::start(&[1, 2, 3], |_| {});
    let leader = cluster.wait_leader(&[1, 2, 3]).await;
    for i in 0..50 {
        cluster.propose(format!("a-{i}").into_bytes()).await;
    }
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    cluster.stop_node(follower).await;
    let before = cluster.record(follower).lock().unwrap().applied_index;

    // What a crash in the middle of an unflushed write leaves: the start of
    // a record header and a zero-filled page.
    let log = cluster.raft_dir(follower).join("raft.log");
    let mut file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    file.write_all(&[0x40, 0x00, 0x00]).unwrap();
    file.write_all(&[0u8; 4096]).unwrap();
    drop(file);

    let mut last = 0;
    for i in 0..50 {
        last = cluster.propose(format!("b-{i}").into_bytes()).await.1;
    }
    let status = cluster.start_node(follower, vec![1, 2, 3]).status();
    assert_eq!(status.applied, before, "restarted from its applied index");
    cluster.wait_applied(&[1, 2, 3], last).await;
    cluster.assert_same_applied(&[1, 2, 3]);
    cluster.assert_no_violations();
}
