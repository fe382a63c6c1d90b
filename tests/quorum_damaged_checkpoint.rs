//! A damaged newest checkpoint on a restarting node: it is reported in the node's log and
//! never loaded. With the log still reaching back, an older checkpoint plus the log is used;
//! with the log purged past every older checkpoint, the node fetches a peer's checkpoint.
//! Either way the node converges to the same image with every acknowledged write.

mod common;

use common::*;
use kraftd::record::checkpoint::list_checkpoints;

/// Takes a checkpoint on `id`; returns its file name.
async fn snapshot_on(s: &Scenario, id: u64) -> String {
    let snap = s.client(id).take_snapshot().await.unwrap();
    eprintln!("  node {id} took snapshot {}", snap.file_name);
    snap.file_name
}

/// Flips one byte in the middle of the newest checkpoint of a stopped node; returns its name.
fn damage_newest_checkpoint(s: &Scenario, id: u64) -> String {
    let dir = s.q.node(id).unwrap().data_dir.join("__cluster_metadata-0");
    let list = list_checkpoints(&dir).unwrap();
    let (_, path) = list.first().expect("a checkpoint");
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x5a;
    std::fs::write(path, &bytes).unwrap();
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    eprintln!("  flipped byte {at} of node {id}'s newest checkpoint {name}");
    name
}

/// Runs the common steps: a follower takes two checkpoints with writes around them, is
/// stopped, its newest checkpoint is damaged, and it restarts.
async fn restart_follower_with_damaged_checkpoint(s: &mut Scenario) -> Damaged {
    let ids = s.q.ids();
    let leader = s.leader().await;
    let follower = *ids.iter().find(|&&i| i != leader).unwrap();
    let mut acked = write_n(s, &ids, "first", 40).await;
    snapshot_on(s, follower).await;
    acked.extend(write_n(s, &ids, "second", 40).await);
    let newest = snapshot_on(s, follower).await;
    // The peers take one too, so one of theirs reaches past the follower's log start.
    for &id in ids.iter().filter(|&&i| i != follower) {
        snapshot_on(s, id).await;
    }
    acked.extend(write_n(s, &ids, "third", 10).await);
    eprintln!("  stopping follower node {follower}");
    s.q.stop(follower).await.unwrap();
    let damaged = damage_newest_checkpoint(s, follower);
    assert_eq!(damaged, newest);
    acked.extend(write_n(s, &[leader], "while-away", 10).await);
    eprintln!("  restarting node {follower}");
    s.q.restart(follower).await.unwrap();
    s.q.wait_ready(follower, READY).await.unwrap();
    let last = acked.iter().map(|a| a.offset).max().unwrap();
    wait_same_image(s, &ids, last + 1).await;
    assert_acked_present(s, &ids, &acked).await;
    Damaged { follower, damaged }
}

/// The follower that restarted over a damaged checkpoint.
struct Damaged {
    /// Its node id.
    follower: u64,
    /// The file name of the checkpoint that was damaged.
    damaged: String,
}

#[test]
fn a_damaged_newest_checkpoint_is_reported_and_an_older_one_plus_the_log_is_used() {
    run("damaged_checkpoint_falls_back_to_an_older_one", async {
        // The default log tail (1000 entries) keeps the log reaching back to the older one.
        let mut s = Scenario::start(3, &[NO_NOOPS]).await;
        let Damaged { follower, damaged } = restart_follower_with_damaged_checkpoint(&mut s).await;
        let log = s.q.log_tail(follower, 400);
        assert!(
            log.contains(&format!("{damaged} is damaged")),
            "node {follower}'s log does not report the damaged checkpoint:\n{log}"
        );
        assert!(
            !log.contains("fetched a checkpoint from a peer"),
            "an older checkpoint was enough, yet the node fetched one:\n{log}"
        );
    });
}

#[test]
fn a_damaged_newest_checkpoint_past_the_log_start_is_replaced_by_a_peers() {
    run("damaged_checkpoint_replaced_from_a_peer", async {
        // No log tail: after its second checkpoint the follower's log starts past the first.
        let mut s = Scenario::start(3, &[NO_NOOPS, ("KRAFTD_LOG_TAIL_ENTRIES", "0")]).await;
        let Damaged { follower, damaged } = restart_follower_with_damaged_checkpoint(&mut s).await;
        let log = s.q.log_tail(follower, 400);
        assert!(
            log.contains(&format!("{damaged} is damaged")),
            "node {follower}'s log does not report the damaged checkpoint:\n{log}"
        );
        assert!(
            log.contains("fetched a checkpoint from a peer"),
            "node {follower} did not fetch a peer's checkpoint:\n{log}"
        );
    });
}
