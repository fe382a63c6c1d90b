//! openraft's own storage conformance suite (`openraft::testing::log::Suite`) against the
//! real RocksDB log store and the checkpoint-file state machine, each case in a fresh
//! directory.

use kraftd::raft::log_store::LogStore;
use kraftd::raft::state_machine::StateMachine;
use kraftd::raft::TypeConfig;
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::StorageError;
use tempfile::TempDir;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = TempDir::new().expect("temp dir");
        let log = LogStore::open(&dir.path().join("raft")).expect("open RocksDB");
        let (sm, _notes) =
            StateMachine::open(&dir.path().join("__cluster_metadata-0"), log.book(), 3)
                .expect("open state machine");
        Ok((dir, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_store_and_state_machine_pass_openraft_conformance_suite() {
    Suite::test_all(Builder)
        .await
        .expect("openraft storage conformance");
}
