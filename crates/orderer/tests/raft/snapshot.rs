//! Log compaction, and followers catching up through snapshots.

use crate::harness::{eventually, serial, Cluster};

const PAYLOAD: usize = 100;

fn payload(tag: &str, i: usize) -> Vec<u8> {
    let mut data = format!("{tag}-{i:04}-").into_bytes();
    data.resize(PAYLOAD, b'.');
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_follower_restores_from_a_snapshot() {
    let _serial = serial().await;
    let cluster = Cluster::start(&[1, 2, 3], |cfg| cfg.snapshot_interval_bytes = 4096);
    let leader = cluster.wait_leader(&[1, 2, 3]).await;
    let lagging = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    for i in 0..10 {
        cluster.propose(payload("warm", i)).await;
    }
    cluster
        .wait_applied(&[lagging], cluster.status(leader).applied)
        .await;

    cluster.net.isolate(lagging);
    let lagging_last = cluster.status(lagging).last_index;
    let mut last = 0;
    for i in 0..300 {
        last = cluster.propose(payload("gap", i)).await.1;
    }
    let leader = cluster
        .wait_leader(
            &cluster
                .ids()
                .into_iter()
                .filter(|id| *id != lagging)
                .collect::<Vec<_>>(),
        )
        .await;
    let leader_status = cluster.status(leader);
    assert!(
        leader_status.snapshot_index > lagging_last + 1,
        "the leader compacted past the lagging node's log ({} vs {lagging_last})",
        leader_status.snapshot_index
    );

    // The first two restore attempts fail; the loop retries.
    cluster.record(lagging).lock().unwrap().fail_restores = 2;
    cluster.net.heal();
    cluster.wait_applied(&[lagging], last).await;
    {
        let record = cluster.record(lagging);
        let record = record.lock().unwrap();
        assert!(
            record.restores.len() >= 3,
            "restores: {:?}",
            record.restores
        );
        assert_eq!(record.fail_restores, 0);
    }
    let status = cluster.status(lagging);
    assert!(!status.restore_pending);
    assert!(status.snapshot_index > lagging_last);

    // It keeps applying what comes after the snapshot.
    for i in 0..20 {
        last = cluster.propose(payload("after", i)).await.1;
    }
    cluster.wait_applied(&[1, 2, 3], last).await;
    cluster.assert_same_applied(&[1, 2, 3]);
    cluster.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_restore_survives_a_restart() {
    let _serial = serial().await;
    let mut cluster = Cluster::start(&[1, 2, 3], |cfg| cfg.snapshot_interval_bytes = 2048);
    let leader = cluster.wait_leader(&[1, 2, 3]).await;
    let lagging = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    cluster.net.isolate(lagging);
    let mut last = 0;
    for i in 0..100 {
        last = cluster.propose(payload("gap", i)).await.1;
    }

    // Restores keep failing: the snapshot is installed in raft storage but
    // the state machine is still behind when the node goes down.
    cluster.record(lagging).lock().unwrap().fail_restores = usize::MAX;
    cluster.net.heal();
    eventually("the snapshot to arrive", || {
        cluster.status(lagging).restore_pending
    })
    .await;
    cluster.stop_node(lagging).await;
    let attempts = cluster.record(lagging).lock().unwrap().restores.len();

    // After the restart the node knows a restore is still owed and retries.
    cluster.start_node(lagging, vec![1, 2, 3]);
    eventually("restore attempts after the restart", || {
        cluster.record(lagging).lock().unwrap().restores.len() > attempts + 1
    })
    .await;
    assert!(cluster.status(lagging).restore_pending);
    cluster.record(lagging).lock().unwrap().fail_restores = 0;
    cluster.wait_applied(&[lagging], last).await;
    for i in 0..10 {
        last = cluster.propose(payload("after", i)).await.1;
    }
    cluster.wait_applied(&[1, 2, 3], last).await;
    cluster.assert_same_applied(&[1, 2, 3]);
    cluster.assert_no_violations();
}
