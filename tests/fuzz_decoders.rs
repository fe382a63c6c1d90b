//! Fuzzing the decoders with proptest (a bounded run; raise PROPTEST_CASES for a longer
//! one). Random bytes mostly die at the CRC, so the structure-aware cases mutate a real
//! checkpoint and then re-compute every batch CRC: that drives the mutations past the
//! checksum into the record, control-record and checkpoint-structure decoders.
//! A failure prints the minimal input and proptest's seed, and is saved under
//! tests/proptest-regressions/ so it replays first on the next run.

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::Config;

use kraftd::image::{load_checkpoint, MetadataImage};
use kraftd::record::batch::BatchIter;
use kraftd::record::checkpoint::{encode_checkpoint, CheckpointMeta, SnapshotId};
use kraftd::record::control::ControlRecord;
use kraftd::record::{LogRecord, VersionedRecord};

fn config(default_cases: u32) -> Config {
    let mut c = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = default_cases;
    }
    c
}

fn checkpoint_bytes() -> Vec<u8> {
    let image = MetadataImage::synthetic(3, 3, 4, 3);
    let mut out = Vec::new();
    let id = SnapshotId {
        end_offset: 99,
        epoch: 2,
    };
    encode_checkpoint(&mut out, id, &CheckpointMeta::default(), image.records()).unwrap();
    out
}

/// Re-computes the CRC of every batch whose length field still frames it.
fn fix_crcs(buf: &mut [u8]) {
    let mut pos = 0usize;
    while pos + 21 <= buf.len() {
        let len = i32::from_be_bytes(buf[pos + 8..pos + 12].try_into().unwrap());
        if len < 49 || pos + 12 + len as usize > buf.len() {
            return;
        }
        let end = pos + 12 + len as usize;
        let crc = crc32c::crc32c(&buf[pos + 21..end]);
        buf[pos + 17..pos + 21].copy_from_slice(&crc.to_be_bytes());
        pos = end;
    }
}

/// Decodes everything the way kraftd does; only panics matter here, errors are expected.
fn decode_all(buf: Vec<u8>) {
    let bytes = Bytes::from(buf);
    for batch in BatchIter::new(bytes.clone()).flatten() {
        for r in &batch.records {
            let _ = LogRecord::decode(batch.header.is_control(), r);
        }
    }
    if let Ok((image, _)) = load_checkpoint(bytes, None) {
        // Whatever loads must also write back out.
        for r in image.records() {
            r.to_bytes().expect("a loaded image re-encodes");
        }
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        1 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8)).prop_map(|(i, v)| Mutation::Insert(i, v)),
        1 => (any::<usize>(), 1usize..8).prop_map(|(i, n)| Mutation::Remove(i, n)),
    ]
}

fn apply(buf: &mut Vec<u8>, m: &Mutation) {
    if buf.is_empty() {
        return;
    }
    match m {
        Mutation::Set(i, b) => {
            let i = i % buf.len();
            buf[i] = *b;
        }
        Mutation::Truncate(i) => buf.truncate(i % buf.len()),
        Mutation::Insert(i, v) => {
            let i = i % buf.len();
            buf.splice(i..i, v.iter().copied());
        }
        Mutation::Remove(i, n) => {
            let i = i % buf.len();
            let end = (i + n).min(buf.len());
            buf.drain(i..end);
        }
    }
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn batch_and_checkpoint_decoders_never_panic_on_arbitrary_bytes(buf in proptest::collection::vec(any::<u8>(), 0..600)) {
        decode_all(buf);
    }

    #[test]
    fn decoders_never_panic_on_mutated_checkpoints_with_valid_crcs(
        muts in proptest::collection::vec(mutation(), 1..6),
        refix in any::<bool>(),
    ) {
        let mut buf = checkpoint_bytes();
        for m in &muts {
            apply(&mut buf, m);
        }
        if refix {
            fix_crcs(&mut buf);
        }
        decode_all(buf);
    }

    #[test]
    fn control_record_decoder_never_panics(ty in 0i16..8, value in proptest::collection::vec(any::<u8>(), 0..200)) {
        let t = ty.to_be_bytes();
        let _ = ControlRecord::decode(Some(&[0, 0, t[0], t[1]]), Some(&value));
    }

    #[test]
    fn metadata_record_decoder_never_panics_on_framed_garbage(
        api_key in prop_oneof![Just(0u8), Just(1), Just(2), Just(3), Just(4), Just(5), Just(9), Just(12), Just(15), Just(17), Just(20), any::<u8>()],
        version in 0u8..5,
        body in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut value = vec![1, api_key & 0x7f, version];
        value.extend_from_slice(&body);
        let _ = VersionedRecord::decode(&value);
    }
}

mod peer_messages {
    //! The peer listener decodes postcard bodies from other controllers: random and mutated
    //! bodies must give an error, never a panic or a huge allocation.
    use super::*;
    use kraftd::raft::peer::wire::{ChunkAnswer, NodeInfo, PeerRequest, SnapshotChunk};
    use kraftd::raft::{log_id, Batch, Entry, KVote, TypeConfig};
    use openraft::raft::{AppendEntriesRequest, VoteRequest, VoteResponse};
    use openraft::EntryPayload;

    fn append_body() -> Vec<u8> {
        let last = log_id(3, 1, 7);
        let req = AppendEntriesRequest::<TypeConfig> {
            vote: KVote::new_committed(3, 1),
            prev_log_id: Some(log_id(3, 1, 6)),
            entries: vec![Entry {
                log_id: last,
                payload: EntryPayload::Normal(Batch {
                    bytes: vec![1, 2, 3, 4, 5, 6, 7, 8],
                }),
            }],
            leader_commit: Some(last),
        };
        postcard::to_allocvec(&PeerRequest {
            cluster_id: "c".into(),
            from: 1,
            to: 2,
            to_directory: [7; 16],
            body: req,
        })
        .unwrap()
    }

    fn decode_all(b: &[u8]) {
        let _ = postcard::from_bytes::<PeerRequest<AppendEntriesRequest<TypeConfig>>>(b);
        let _ = postcard::from_bytes::<PeerRequest<VoteRequest<TypeConfig>>>(b);
        let _ = postcard::from_bytes::<PeerRequest<SnapshotChunk>>(b);
        let _ = postcard::from_bytes::<VoteResponse<TypeConfig>>(b);
        let _ = postcard::from_bytes::<ChunkAnswer>(b);
        let _ = postcard::from_bytes::<NodeInfo>(b);
    }

    proptest! {
        #![proptest_config(config(2_000))]

        #[test]
        fn random_peer_bodies_never_panic(b in proptest::collection::vec(any::<u8>(), 0..512)) {
            decode_all(&b);
        }

        #[test]
        fn mutated_append_entries_bodies_never_panic(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut b = append_body();
            for (i, v) in flips {
                let i = i.index(b.len());
                b[i] = v;
            }
            let n = cut.index(b.len() + 1);
            decode_all(&b[..n]);
        }
    }

    #[test]
    fn a_real_append_entries_body_round_trips() {
        let b = append_body();
        let back: PeerRequest<AppendEntriesRequest<TypeConfig>> = postcard::from_bytes(&b).unwrap();
        assert_eq!(back.to, 2);
        assert_eq!(back.body.entries.len(), 1);
    }
}
