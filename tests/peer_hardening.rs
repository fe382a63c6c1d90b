//! Malformed and hostile peer messages on real processes: each is refused with a clear
//! error (or left without effect) and the quorum carries on as before.
//!
//! - a term above i32::MAX (Kafka epochs are i32) in a Vote, a PreVote or an AppendEntries:
//!   400, the node's epoch and leader unchanged;
//! - an AppendEntries no leader sends (an uncommitted vote, entries with a gap, an entry or
//!   commit of a later leader than the vote): 400 naming what is wrong, nothing changed;
//! - a PreVote for a higher term to a follower that hears its leader: refused, and its term
//!   is not raised;
//! - a Vote or PreVote for a node outside the membership (a removed or passed-over
//!   controller), however long its log: 409, nothing changed;
//! - an AppendEntries that Raft refuses (a deposed leader's vote) with a huge commit index:
//!   the node does not take that commit as seen (it stays ready);
//! - a snapshot transfer over `max_snapshot_bytes`: 413 and its partial file removed;
//! - a snapshot whose metadata contradicts its own SnapshotHeaderRecord: refused, nothing
//!   installed, the node keeps following the leader;
//! - a snapshot no leader could send (an uncommitted vote, a last entry of a later leader
//!   than the sender, a last entry contradicting the follower's committed log): refused
//!   before openraft (which would stop the node) sees it; its epoch does not move.

mod common;

use common::*;
use kraftd::raft::peer::wire::{
    ChunkAnswer, NodeInfo, PeerRequest, SnapshotChunk, PATH_APPEND, PATH_CURRENT_SNAPSHOT,
    PATH_INFO, PATH_PRE_VOTE, PATH_SNAPSHOT, PATH_TRANSFER_LEADER, PATH_VOTE, POSTCARD,
};
use kraftd::raft::state_machine::parse_snapshot_id;
use kraftd::raft::{log_id, Batch, Entry, KVote, TypeConfig};
use kraftd::record::batch::{encode_batch, BatchSpec};
use openraft::error::RaftError;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, TransferLeaderRequest, VoteRequest, VoteResponse,
};
use openraft::EntryPayload;
use openraft::SnapshotMeta;
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

const MAX_SNAPSHOT: usize = 64 * 1024;
const TOO_BIG_TERM: u64 = i32::MAX as u64 + 1;

struct Peer {
    http: reqwest::Client,
    addr: String,
    info: NodeInfo,
}

impl Peer {
    async fn of(s: &Scenario, id: u64) -> Peer {
        let http = reqwest::Client::new();
        let addr = s.q.node(id).unwrap().peer_addr.to_string();
        let body = http
            .get(format!("http://{addr}{PATH_INFO}"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let info: NodeInfo = postcard::from_bytes(&body).unwrap();
        Peer { http, addr, info }
    }

    /// POSTs `body` and checks it is refused with `status` and a message saying `says`.
    async fn refused<T: Serialize>(&self, path: &str, body: T, status: u16, says: &str) {
        let (got, answer) = self.post(path, body).await;
        let answer = text(&answer);
        assert_eq!(got, status, "{path}: {answer}");
        assert!(answer.contains(says), "{path}: {answer}");
    }

    /// POSTs `body` in a correct envelope from node 99; the status and the body.
    async fn post<T: Serialize>(&self, path: &str, body: T) -> (u16, Vec<u8>) {
        self.post_from(99, path, body).await
    }

    /// POSTs `body` in a correct envelope from node `from`; the status and the body.
    async fn post_from<T: Serialize>(&self, from: u64, path: &str, body: T) -> (u16, Vec<u8>) {
        let env = PeerRequest {
            cluster_id: self.info.cluster_id.clone(),
            from,
            to: self.info.node_id,
            to_directory: self.info.directory_id,
            body,
        };
        let resp = self
            .http
            .post(format!("http://{}{path}", self.addr))
            .header(reqwest::header::CONTENT_TYPE, POSTCARD)
            .body(postcard::to_allocvec(&env).unwrap())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.bytes().await.unwrap().to_vec())
    }
}

/// One valid data batch (what the handler checks before Raft sees an entry).
fn data_batch() -> Vec<u8> {
    let mut out = bytes::BytesMut::new();
    let spec = BatchSpec {
        base_offset: 0,
        epoch: 0,
        timestamp: 0,
        control: false,
    };
    encode_batch(&mut out, spec, &[(None, bytes::Bytes::from_static(b"x"))]).unwrap();
    out.to_vec()
}

fn parts_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.ends_with(".part"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn malformed_peer_messages_are_refused_and_change_nothing() {
    run("malformed_peer_messages_are_refused", async {
        let max = MAX_SNAPSHOT.to_string();
        let mut s =
            Scenario::start(3, &[NO_NOOPS, ("KRAFTD_MAX_SNAPSHOT_BYTES", max.as_str())]).await;
        let leader = s.leader().await;
        let f = s.q.ids().into_iter().find(|&i| i != leader).unwrap();
        let ids = s.q.ids();
        write_config(&s.client(leader), "peer.k0", "v0").await;
        let before = s.status(f).await;
        let term = before.leader_epoch as u64;
        let peer = Peer::of(&s, f).await;
        eprintln!("  follower {f}, leader {leader}, epoch {term}");

        eprintln!("step 1: a term above i32::MAX is refused before Raft sees it");
        let vote = VoteRequest::<TypeConfig>::new(
            KVote::new(TOO_BIG_TERM, leader),
            Some(log_id(term, leader, 1_000_000)),
        );
        for path in [PATH_VOTE, PATH_PRE_VOTE] {
            peer.refused(path, &vote, 400, "above the largest Kafka epoch")
                .await;
        }
        eprintln!(
            "step 1b: a pre-vote for a higher term changes nothing on a node that hears its leader"
        );
        let other = ids
            .iter()
            .copied()
            .find(|&i| i != leader && i != f)
            .unwrap();
        let pre = VoteRequest::<TypeConfig>::new(
            KVote::new(term + 5, other),
            Some(log_id(term, leader, 1_000_000)),
        );
        let (status, body) = peer.post_from(other, PATH_PRE_VOTE, &pre).await;
        assert_eq!(status, 200, "{}", text(&body));
        let res: Result<VoteResponse<TypeConfig>, RaftError<TypeConfig>> =
            postcard::from_bytes(&body).unwrap();
        let res = res.unwrap();
        assert!(
            !res.vote_granted,
            "a follower that hears its leader refuses a pre-vote: {res:?}"
        );
        assert_eq!(
            res.vote.leader_id.term, term,
            "a pre-vote does not raise the receiver's term: {res:?}"
        );
        eprintln!(
            "step 1a: a Vote or PreVote for a node outside the membership is refused, whatever its log"
        );
        let stranger = VoteRequest::<TypeConfig>::new(
            KVote::new(term + 5, 99),
            Some(log_id(term + 4, 99, 1_000_000)),
        );
        for path in [PATH_VOTE, PATH_PRE_VOTE] {
            peer.refused(path, &stranger, 409, "not a member").await;
        }
        eprintln!("step 1a': a Vote or PreVote asked on behalf of another member is refused");
        for path in [PATH_VOTE, PATH_PRE_VOTE] {
            peer.refused(path, &pre, 409, "sent by node 99").await;
        }
        eprintln!(
            "step 1d: a TransferLeader from outside the membership, to a non-voter, with a term \
             no Kafka epoch holds, or sent by another node than the leader is refused; the \
             follower keeps its leader"
        );
        let transfer = |from: u64, t: u64, to: u64| {
            TransferLeaderRequest::<TypeConfig>::new(
                KVote::new_committed(t, from),
                to,
                Some(log_id(t, from, 1)),
            )
        };
        peer.refused(
            PATH_TRANSFER_LEADER,
            transfer(99, term, f),
            409,
            "must be a member",
        )
        .await;
        peer.refused(
            PATH_TRANSFER_LEADER,
            transfer(leader, term, 99),
            409,
            "a voter",
        )
        .await;
        peer.refused(
            PATH_TRANSFER_LEADER,
            transfer(leader, TOO_BIG_TERM, f),
            400,
            "above the largest Kafka epoch",
        )
        .await;
        // The test's envelopes come from node 99: a transfer of the real leader's leadership.
        peer.refused(
            PATH_TRANSFER_LEADER,
            transfer(leader, term, f),
            409,
            "on behalf of leader",
        )
        .await;
        let now = s.status(f).await;
        assert_eq!(
            (now.leader_id, now.leader_epoch),
            (Some(leader), term as i64),
            "a refused TransferLeader moved leadership"
        );
        let append = AppendEntriesRequest::<TypeConfig> {
            vote: KVote::new_committed(TOO_BIG_TERM, leader),
            prev_log_id: None,
            entries: vec![],
            leader_commit: None,
        };
        let (status, body) = peer.post(PATH_APPEND, append).await;
        assert_eq!(status, 400, "{}", text(&body));

        eprintln!(
            "step 1c: AppendEntries no leader sends (uncommitted vote, gaps, later leaders) are refused"
        );
        let entry = |t: u64, index: u64| Entry {
            log_id: log_id(t, leader, index),
            payload: EntryPayload::Normal(Batch {
                bytes: data_batch(),
            }),
        };
        let shaped = |vote: KVote, entries: Vec<Entry>, commit: Option<u64>| AppendEntriesRequest::<
            TypeConfig,
        > {
            vote,
            prev_log_id: Some(log_id(term, leader, 999_999)),
            entries,
            leader_commit: commit.map(|c| log_id(term + 1, leader, c)),
        };
        let leaders = KVote::new_committed(term, leader);
        for (what, req, says) in [
            (
                "an uncommitted vote",
                shaped(KVote::new(term, leader), vec![], None),
                "not a leader's",
            ),
            (
                "a gap between entries",
                shaped(
                    leaders,
                    vec![entry(term, 1_000_000), entry(term, 1_000_002)],
                    None,
                ),
                "not consecutive",
            ),
            (
                "an entry of a later leader than the vote",
                shaped(leaders, vec![entry(term + 1, 1_000_000)], None),
                "later leader",
            ),
            (
                "a commit of a later leader than the vote",
                shaped(leaders, vec![], Some(1_000_000)),
                "leader_commit",
            ),
        ] {
            eprintln!("    {what}");
            peer.refused(PATH_APPEND, req, 400, says).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        for &id in &ids {
            let st = s.status(id).await;
            assert_eq!(st.leader_epoch as u64, term, "node {id} kept its epoch");
            assert_eq!(st.leader_id, Some(leader), "node {id} kept its leader");
        }

        eprintln!("step 2: a refused AppendEntries does not count as a seen commit");
        let stale = AppendEntriesRequest::<TypeConfig> {
            vote: KVote::new_committed(term - 1, leader),
            prev_log_id: None,
            entries: vec![],
            leader_commit: Some(log_id(term - 1, leader, 1_000_000)),
        };
        let (status, body) = peer.post(PATH_APPEND, stale).await;
        assert_eq!(status, 200, "{}", text(&body));
        let res: Result<AppendEntriesResponse<TypeConfig>, RaftError<TypeConfig>> =
            postcard::from_bytes(&body).unwrap();
        assert!(
            matches!(res, Ok(AppendEntriesResponse::HigherVote(_))),
            "Raft refuses the deposed leader: {res:?}"
        );
        write_config(&s.client(leader), "peer.k1", "v1").await;
        let ready = eventually("the follower is ready", Duration::from_secs(10), || async {
            s.client(f).readyz().await.map_err(err_text)
        })
        .await;
        let _: () = ready;
        // Still ready a little later: nothing waits for commit 1,000,000.
        tokio::time::sleep(Duration::from_millis(300)).await;
        s.client(f).readyz().await.unwrap();

        eprintln!("step 3: a snapshot transfer above max_snapshot_bytes is refused");
        let ckpt_dir = s.q.node(f).unwrap().data_dir.join("__cluster_metadata-0");
        let vote = KVote::new_committed(term, leader);
        let meta = SnapshotMeta {
            last_log_id: Some(log_id(term, leader, 1_000)),
            last_membership: Default::default(),
        };
        let chunk = |offset: usize, len: usize, done: bool| SnapshotChunk {
            vote,
            checkpoint: format!("{:020}-{:020}", 5_000, term),
            meta: meta.clone(),
            offset: offset as u64,
            data: vec![0u8; len],
            done,
        };
        let half = MAX_SNAPSHOT * 5 / 8;
        let (status, body) = peer.post(PATH_SNAPSHOT, chunk(0, half, false)).await;
        assert_eq!(status, 200, "{}", text(&body));
        let res: Result<ChunkAnswer, RaftError<TypeConfig>> = postcard::from_bytes(&body).unwrap();
        assert!(
            matches!(res, Ok(ChunkAnswer::Accepted { .. })),
            "first chunk: {res:?}"
        );
        assert_eq!(
            parts_in(&ckpt_dir).len(),
            1,
            "the transfer's temporary file"
        );
        let (status, body) = peer.post(PATH_SNAPSHOT, chunk(half, half, false)).await;
        assert_eq!(status, 413, "{}", text(&body));
        assert!(
            text(&body).contains("max_snapshot_bytes"),
            "{}",
            text(&body)
        );
        assert!(parts_in(&ckpt_dir).is_empty(), "{:?}", parts_in(&ckpt_dir));

        eprintln!("step 4: a snapshot whose metadata contradicts its own header is refused");
        let snap = s.client(f).take_snapshot().await.unwrap();
        let resp = peer
            .http
            .get(format!("http://{}{PATH_CURRENT_SNAPSHOT}", peer.addr))
            .send()
            .await
            .unwrap();
        let name = resp
            .headers()
            .get(reqwest::header::CONTENT_DISPOSITION)
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches(".checkpoint")
            .to_string();
        let file = resp.bytes().await.unwrap().to_vec();
        assert!(file.len() < MAX_SNAPSHOT, "{} bytes", file.len());
        let id = parse_snapshot_id(&name).unwrap();
        assert_eq!(id.end_offset, snap.end_offset);
        let hw = s.status(f).await.high_watermark;
        // The file's own header says it ends at the entry it was taken at; the metadata
        // claims a much later one (which Raft would otherwise install over its log).
        let lie = SnapshotChunk {
            vote,
            checkpoint: name.clone(),
            meta: SnapshotMeta {
                last_log_id: Some(log_id(term, leader, 1_000_000)),
                last_membership: Default::default(),
            },
            offset: 0,
            data: file,
            done: true,
        };
        let real_file = lie.data.clone();
        let (status, body) = peer.post(PATH_SNAPSHOT, lie).await;
        assert_eq!(status, 200, "{}", text(&body));
        let res: Result<ChunkAnswer, RaftError<TypeConfig>> = postcard::from_bytes(&body).unwrap();
        assert!(
            matches!(&res, Ok(ChunkAnswer::Restart { reason }) if reason.contains("contradicts")),
            "a lying snapshot was installed: {res:?}"
        );
        assert!(parts_in(&ckpt_dir).is_empty(), "{:?}", parts_in(&ckpt_dir));
        assert_eq!(s.status(f).await.high_watermark, hw);

        eprintln!(
            "step 4b: snapshots no leader could send (openraft would stop the node on them) are refused"
        );
        let committed = s.status(f).await.high_watermark;
        assert!(committed > 2, "the follower has committed entries");
        let sent = |vote: KVote, last: kraftd::raft::LogId| SnapshotChunk {
            vote,
            checkpoint: name.clone(),
            meta: SnapshotMeta {
                last_log_id: Some(last),
                last_membership: Default::default(),
            },
            offset: 0,
            data: real_file.clone(),
            done: true,
        };
        for (what, chunk, says) in [
            (
                "a vote that is not a leader's",
                sent(KVote::new(term + 1, leader), log_id(term, leader, 5)),
                "not committed",
            ),
            (
                "a last entry of a later leader than the sender",
                sent(vote, log_id(term + 1, leader, 5)),
                "later leader",
            ),
            (
                "a last entry that contradicts the follower's committed log",
                sent(KVote::new_committed(term + 1, leader), log_id(term, 99, 1)),
                "contradicts",
            ),
        ] {
            let (status, body) = peer.post(PATH_SNAPSHOT, chunk).await;
            assert_eq!(status, 200, "{what}: {}", text(&body));
            let res: Result<ChunkAnswer, RaftError<TypeConfig>> =
                postcard::from_bytes(&body).unwrap();
            assert!(
                matches!(&res, Ok(ChunkAnswer::Restart { reason }) if reason.contains(says)),
                "{what}: {res:?}"
            );
            assert!(parts_in(&ckpt_dir).is_empty(), "{:?}", parts_in(&ckpt_dir));
            let st = s.status(f).await;
            assert_eq!(
                st.leader_epoch as u64, term,
                "{what}: the epoch did not move"
            );
            assert!(st.high_watermark >= hw, "{what}: {st:?}");
        }

        eprintln!("step 5: the quorum goes on; the follower follows the leader as before");
        let ack = write_config(&s.client(leader), "peer.k2", "v2").await;
        let hw = wait_same_high_watermark(&s, &ids, ack.offset + 1).await;
        wait_same_image(&s, &ids, hw).await;
        for &id in &ids {
            let st = s.status(id).await;
            assert_eq!(st.leader_epoch as u64, term, "node {id}");
        }
    });
}
