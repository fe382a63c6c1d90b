//! The write pipeline: the one ordered path from a checked request to the Raft log.
//!
//! Jobs run against the leader's [`View`]: a job checks its request, emits records (the view
//! applies them at once, so the next job sees them) and names its answer. The pipeline puts
//! the records of the jobs that arrived together into one batch (group commit), keeps up to
//! [`IN_FLIGHT_BATCHES`] batches in Raft, and answers each job once its batch has committed.
//!
//! What it promises, and what `sim` checks after every step of thousands of seeded runs:
//! - Batches reach the log in exactly the order the view applied their records: the
//!   pipeline hands them to [`RaftLog::append`] one at a time, in order, and nothing else
//!   writes while it does (membership changes wait for an empty pipeline, see
//!   [`Pipeline::begin_exclusive`]).
//! - A job is atomic. Its records go in one batch; when they do not fit one, they go in a
//!   metadata transaction (KIP-868: BeginTransactionRecord ... EndTransactionRecord) that
//!   replay applies only at its end and drops if a new leader's entry comes first.
//! - Offsets are known, not guessed: every batch must land at the offset the view gave it, so
//!   a broker epoch (the offset of its RegisterBrokerRecord) is exact. A batch that lands
//!   elsewhere is an invariant violation: its jobs are answered with an error and the view is
//!   rebuilt from the committed image.
//! - A record the committed image refused is never acknowledged: the job that wrote it gets
//!   an error, the error names the offset, and the view is rebuilt.
//! - When the outcome of a batch is unknown (Raft stopped before answering), its jobs are
//!   told so ([`ControllerError::OutcomeUnknown`]), never that nothing happened.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::brokers;
use super::sessions::Sessions;
use super::{ControllerError, PartitionIndex, View, WriteAck};
use crate::image::MetadataImage;
use crate::raft::NodeId;
use crate::record::metadata::{
    AbortTransactionRecord, BeginTransactionRecord, MetadataRecord, VersionedRecord,
};

/// Batches in flight at once: one being made durable while the next fills up.
pub const IN_FLIGHT_BATCHES: usize = 2;
/// Records in one batch, at most (Kafka's limit is 10,000).
pub const MAX_BATCH_RECORDS: usize = 5_000;
/// Bytes of record values in one batch, at most (Kafka's limit is 8 MiB).
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// How long a job waits for this leader's view before it is answered NOT_CONTROLLER.
pub const VIEW_WAIT: Duration = Duration::from_secs(5);

/// What the pipeline needs from Raft. The real one is the node's openraft instance; the
/// simulation's is a seeded fake.
pub trait RaftLog {
    /// The leader now and, when it is this node, the term it leads.
    fn leadership(&self) -> (Option<NodeId>, Option<u64>);
    /// The epoch of the last applied (committed) entry.
    fn applied_epoch(&self) -> i32;
    /// A copy of the committed image and the offset after its last record.
    fn committed(&self) -> (MetadataImage, u64);
    /// The offset after the last appended record, when known.
    fn appended_end(&self) -> Option<u64>;
    /// Whether the committed log ends inside a metadata transaction.
    fn open_transaction(&self) -> bool;
    /// Hands one batch of record values to Raft, to be appended only while this node still
    /// leads `term`. Batches reach the log in the order of the calls; the outcome comes back
    /// through [`Pipeline::completed`] with `seq`.
    fn append(&mut self, seq: u64, term: u64, values: Vec<Bytes>);
}

/// A batch that committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The offset its first record took.
    pub base_offset: u64,
    /// The epoch it was written in.
    pub epoch: i32,
    /// Records the committed image refused (of a whole transaction when the batch ended
    /// one).
    pub rejected_offsets: Vec<u64>,
}

/// The outcome of a batch handed to [`RaftLog::append`]. An error of
/// [`ControllerError::NotController`] means nothing was written.
pub struct Done {
    /// The batch.
    pub seq: u64,
    /// What became of it.
    pub result: Result<Committed, ControllerError>,
}

/// Answers a job.
pub type Completion = Box<dyn FnOnce(Result<WriteAck, ControllerError>) + Send>;

/// What running a job left to do.
pub enum Outcome {
    /// The job answered already (a refusal).
    Answered,
    /// Answer once the job's records (or, with none, everything before it) are committed.
    Await(Completion),
}

/// A request, run against the view.
pub type Job = Box<dyn FnOnce(Result<&mut View, ControllerError>) -> Outcome + Send>;

/// A job's answer and the offsets of its records (`first > last`: it wrote none).
struct Reply {
    first: u64,
    last: u64,
    answer: Completion,
}

/// A batch being filled or waiting for a slot.
#[derive(Default)]
struct Open {
    values: Vec<Bytes>,
    bytes: usize,
    replies: Vec<Reply>,
    /// The offset its first record will take.
    base: u64,
}

impl Open {
    fn has_room(&self, records: usize, bytes: usize) -> bool {
        self.values.is_empty()
            || (self.values.len() + records <= MAX_BATCH_RECORDS
                && self.bytes + bytes <= MAX_BATCH_BYTES)
    }

    fn push(&mut self, offset: u64, value: Bytes) {
        if self.values.is_empty() {
            self.base = offset;
        }
        self.bytes += value.len();
        self.values.push(value);
    }

    fn last_offset(&self) -> u64 {
        self.base + self.values.len() as u64 - 1
    }
}

struct InFlight {
    seq: u64,
    /// The term of the view that made it.
    term: u64,
    submitted: Instant,
    replies: Vec<Reply>,
    base: u64,
    records: usize,
}

/// Where a membership change is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hold {
    /// Nothing held.
    None,
    /// A membership change waits for the batches in flight to commit.
    Draining,
    /// A membership change is appending its entries; batches wait.
    Changing,
}

/// Counts kept for tests and metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PipelineStats {
    /// Batches handed to Raft.
    pub batches: u64,
    /// Transactions written (jobs larger than one batch).
    pub transactions: u64,
    /// Invariant violations seen (refused records, batches at an unexpected offset).
    pub violations: u64,
    /// Views built.
    pub views: u64,
}

/// The write pipeline of the active controller.
pub struct Pipeline<L> {
    /// Raft.
    pub log: L,
    view: Option<View>,
    open: Open,
    ready: VecDeque<Open>,
    in_flight: VecDeque<InFlight>,
    deferred: VecDeque<(Instant, Job)>,
    seq: u64,
    hold: Hold,
    cluster_id: Arc<str>,
    session_timeout: Duration,
    stats: PipelineStats,
    /// Answers of jobs that wrote nothing, given during a membership change with nothing
    /// staged: the offset to report is known only once the change's entries are written.
    held: Vec<Completion>,
}

impl<L: RaftLog> Pipeline<L> {
    /// A pipeline with no view yet.
    pub fn new(log: L, cluster_id: Arc<str>, session_timeout: Duration) -> Self {
        Pipeline {
            log,
            view: None,
            open: Open::default(),
            ready: VecDeque::new(),
            in_flight: VecDeque::new(),
            deferred: VecDeque::new(),
            seq: 0,
            hold: Hold::None,
            cluster_id,
            session_timeout,
            stats: PipelineStats::default(),
            held: Vec::new(),
        }
    }

    /// Counts so far.
    pub fn stats(&self) -> PipelineStats {
        self.stats
    }

    /// The view, when this node leads and has built one.
    pub fn view(&self) -> Option<&View> {
        self.view.as_ref()
    }

    /// Whether new jobs may come in (no full batch is waiting for a slot).
    pub fn accepting(&self) -> bool {
        self.ready.is_empty()
    }

    /// Nothing staged and waiting, and no membership change under way.
    pub fn idle(&self) -> bool {
        self.open.values.is_empty() && self.ready.is_empty() && self.hold == Hold::None
    }

    /// Batches handed to Raft whose outcome is not known yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Runs a job now, defers it until this leader's view is ready, or refuses it.
    pub fn submit(&mut self, job: Job, now: Instant, random: u32) {
        match self.ensure_view(now) {
            Ok(true) => {
                self.retry_deferred(now, random);
                self.run_job(job, now, random);
            }
            Ok(false) => self.deferred.push_back((now, job)),
            Err(e) => refuse(job, e),
        }
    }

    /// The view belongs to the current leadership? Err: not the leader. Ok(false): the
    /// leader, but not ready (its first entry is not applied, batches of an earlier view are
    /// in flight, or a membership change is under way).
    fn ensure_view(&mut self, now: Instant) -> Result<bool, ControllerError> {
        let (leader, term) = self.log.leadership();
        let Some(term) = term else {
            if self.view.is_some() {
                self.drop_view(ControllerError::NotController { leader }, "leadership lost");
            }
            return Err(ControllerError::NotController { leader });
        };
        if self.view.as_ref().is_some_and(|v| v.term == term) {
            return Ok(true);
        }
        if self.view.is_some() {
            self.drop_view(
                ControllerError::NotController { leader },
                "a new term began",
            );
        }
        if self.hold != Hold::None || self.log.applied_epoch() as u64 != term {
            return Ok(false);
        }
        // This leader's own first entry is applied: every batch of an earlier term is
        // applied or gone by now. openraft may never answer one whose entry a snapshot
        // replaced, so they are settled here as unknown rather than waited for forever.
        let mut i = 0;
        while i < self.in_flight.len() {
            if self.in_flight[i].term < term {
                if let Some(b) = self.in_flight.remove(i) {
                    for r in b.replies {
                        (r.answer)(Err(ControllerError::OutcomeUnknown(
                            "the batch was handed to Raft in an earlier term and its outcome was never reported".into(),
                        )));
                    }
                }
            } else {
                i += 1;
            }
        }
        if !self.in_flight.is_empty() {
            return Ok(false);
        }
        let (image, applied_end) = self.log.committed();
        let next_offset = self
            .log
            .appended_end()
            .unwrap_or(applied_end)
            .max(applied_end);
        let sessions = Sessions::fresh(&image, now, self.session_timeout);
        let index = PartitionIndex::build(&image);
        tracing::info!(
            term,
            next_offset,
            brokers = image.broker_count(),
            "active controller: built the view from the committed image; every broker gets a fresh session"
        );
        self.stats.views += 1;
        self.view = Some(View {
            image,
            index,
            next_offset,
            term,
            staged: Vec::new(),
            sessions,
            now,
            cluster_id: self.cluster_id.clone(),
            random: 0,
        });
        // A transaction an earlier view of this term began and never ended (its tail was
        // dropped) would swallow every later record: end it first, as Kafka's controller
        // does when it becomes active.
        if self.log.open_transaction() {
            tracing::warn!("the committed log ends inside an unfinished transaction: aborting it");
            let abort = MetadataRecord::AbortTransaction(AbortTransactionRecord {
                reason: Some("the controller that began it did not finish it".into()),
            });
            let staged = self.view.as_mut().map(|v| {
                v.next_offset += 1;
                vec![VersionedRecord::new(abort)]
            });
            if let Some(staged) = staged {
                self.stage_marker(staged);
            }
        }
        Ok(true)
    }

    /// Stages records nobody waits for (transaction markers the pipeline writes itself).
    fn stage_marker(&mut self, records: Vec<VersionedRecord>) {
        self.stage(records, Box::new(|_| {}));
    }

    fn run_job(&mut self, job: Job, now: Instant, random: u32) {
        let Some(view) = self.view.as_mut() else {
            refuse(job, ControllerError::NotController { leader: None });
            return;
        };
        view.now = now;
        view.random = random;
        let before = view.next_offset;
        let outcome = job(Ok(view));
        let staged = std::mem::take(&mut view.staged);
        match outcome {
            Outcome::Answered if staged.is_empty() => {}
            Outcome::Answered => {
                // A job that emitted and then failed left the view ahead of what is written.
                self.violation(format!(
                    "a refused request had emitted {} records from offset {before}",
                    staged.len()
                ));
            }
            Outcome::Await(c) if staged.is_empty() => self.attach(c),
            Outcome::Await(c) => self.stage(staged, c),
        }
    }

    /// Adds a job's records to the open batch, or, when they do not fit one batch, writes
    /// them as a transaction over as many batches as they need.
    fn stage(&mut self, records: Vec<VersionedRecord>, c: Completion) {
        let Some(view) = self.view.as_mut() else {
            c(Err(ControllerError::NotController { leader: None }));
            return;
        };
        let n = records.len() as u64;
        let first = view.next_offset - n;
        let mut values = Vec::with_capacity(records.len());
        let mut bytes = 0;
        for r in &records {
            match r.to_bytes() {
                Ok(v) => {
                    bytes += v.len();
                    values.push(Bytes::from(v));
                }
                Err(e) => {
                    c(Err(ControllerError::Internal(format!(
                        "encoding a {}: {e}",
                        r.record.type_name()
                    ))));
                    self.violation(format!("the controller emitted an unencodable record: {e}"));
                    return;
                }
            }
        }
        if values.len() <= MAX_BATCH_RECORDS && bytes <= MAX_BATCH_BYTES {
            if !self.open.has_room(values.len(), bytes) {
                self.close_open();
            }
            for (i, v) in values.into_iter().enumerate() {
                self.open.push(first + i as u64, v);
            }
            self.open.replies.push(Reply {
                first,
                last: first + n - 1,
                answer: c,
            });
            return;
        }
        // A transaction: Begin takes the job's first offset, so its records move up by one;
        // only a RegisterBrokerRecord carries its own offset, and no job that registers a
        // broker comes near a batch's size.
        if records
            .iter()
            .any(|r| matches!(r.record, MetadataRecord::RegisterBroker(_)))
        {
            c(Err(ControllerError::Internal(
                "a broker registration cannot be written as a transaction".into(),
            )));
            self.violation("a job too large for one batch registered a broker".into());
            return;
        }
        let name = format!("{n} records");
        let markers = (
            VersionedRecord::new(MetadataRecord::BeginTransaction(BeginTransactionRecord {
                name: Some(name),
            }))
            .to_bytes(),
            VersionedRecord::new(MetadataRecord::EndTransaction).to_bytes(),
        );
        let (Ok(begin), Ok(end)) = markers else {
            c(Err(ControllerError::Internal(
                "encoding transaction markers".into(),
            )));
            self.violation("cannot encode transaction markers".into());
            return;
        };
        view.next_offset += 2;
        self.stats.transactions += 1;
        self.close_open();
        let all = std::iter::once(Bytes::from(begin))
            .chain(values)
            .chain(std::iter::once(Bytes::from(end)));
        let mut offset = first;
        for v in all {
            if !self.open.has_room(1, v.len()) {
                self.close_open();
            }
            self.open.push(offset, v);
            offset += 1;
        }
        self.open.replies.push(Reply {
            first,
            last: offset - 1,
            answer: c,
        });
        self.close_open();
        // All of a transaction goes to Raft at once: once its head is there, a dropped
        // view must not be able to throw its tail away. (During a membership change
        // nothing of it has gone yet, so all of it is held together.)
        if self.hold == Hold::None {
            while let Some(b) = self.ready.pop_front() {
                self.hand_to_raft(b);
            }
        }
    }

    /// Answers a job that emitted nothing once everything before it is committed.
    fn attach(&mut self, c: Completion) {
        let last = if !self.open.values.is_empty() {
            Some((self.open.last_offset(), &mut self.open.replies))
        } else if let Some(b) = self.ready.back_mut() {
            Some((b.last_offset(), &mut b.replies))
        } else if let Some(b) = self.in_flight.back_mut() {
            Some((b.base + b.records as u64 - 1, &mut b.replies))
        } else {
            None
        };
        match last {
            Some((last, replies)) => replies.push(Reply {
                first: last + 1,
                last,
                answer: c,
            }),
            None if self.hold != Hold::None => self.held.push(c),
            None => {
                let (offset, epoch) = match &self.view {
                    Some(v) => (v.next_offset.saturating_sub(1), v.epoch()),
                    None => (0, 0),
                };
                c(Ok(WriteAck { offset, epoch }));
            }
        }
    }

    fn close_open(&mut self) {
        if !self.open.values.is_empty() {
            let full = std::mem::take(&mut self.open);
            self.ready.push_back(full);
        }
    }

    /// Hands waiting batches to Raft while slots are free (and no membership change holds
    /// them).
    pub fn flush(&mut self) {
        if self.hold != Hold::None {
            return;
        }
        if self.ready.is_empty() {
            self.close_open();
        }
        while self.in_flight.len() < IN_FLIGHT_BATCHES {
            let Some(b) = self.ready.pop_front() else {
                break;
            };
            self.hand_to_raft(b);
        }
    }

    fn hand_to_raft(&mut self, b: Open) {
        let Some(term) = self.view.as_ref().map(|v| v.term) else {
            for r in b.replies {
                (r.answer)(Err(ControllerError::NotController { leader: None }));
            }
            return;
        };
        self.seq += 1;
        self.stats.batches += 1;
        self.in_flight.push_back(InFlight {
            seq: self.seq,
            term,
            submitted: Instant::now(),
            replies: b.replies,
            base: b.base,
            records: b.values.len(),
        });
        self.log.append(self.seq, term, b.values);
    }

    /// A batch's outcome.
    pub fn completed(&mut self, d: Done, now: Instant, random: u32) {
        let Some(pos) = self.in_flight.iter().position(|b| b.seq == d.seq) else {
            return;
        };
        let Some(b) = self.in_flight.remove(pos) else {
            return;
        };
        match d.result {
            Ok(c) if c.base_offset != b.base => {
                let msg = format!(
                    "a batch of {} records landed at offset {}, not at {} where the controller placed it",
                    b.records, c.base_offset, b.base
                );
                for r in b.replies {
                    (r.answer)(Err(ControllerError::Internal(msg.clone())));
                }
                self.violation(msg);
            }
            Ok(c) => {
                crate::telemetry::commit_latency(b.submitted.elapsed());
                let mut refused = None;
                for r in b.replies {
                    let bad = c
                        .rejected_offsets
                        .iter()
                        .find(|o| (r.first..=r.last).contains(*o));
                    match bad {
                        Some(o) => {
                            refused.get_or_insert(*o);
                            (r.answer)(Err(ControllerError::Internal(format!(
                                "the committed image refused the record at offset {o}; the request may be partly applied"
                            ))));
                        }
                        None => (r.answer)(Ok(WriteAck {
                            offset: r.last,
                            epoch: c.epoch,
                        })),
                    }
                }
                if let Some(o) = c.rejected_offsets.first() {
                    self.violation(format!(
                        "the committed image refused the record at offset {o} ({} refused in the batch at {})",
                        c.rejected_offsets.len(),
                        c.base_offset
                    ));
                }
            }
            Err(e) => {
                for r in b.replies {
                    (r.answer)(Err(e.clone()));
                }
                if self.view.is_some() {
                    tracing::warn!(error = %e, "a batch was not committed; dropping the controller's view");
                    let leader = match &e {
                        ControllerError::NotController { leader } => *leader,
                        _ => None,
                    };
                    self.drop_view(ControllerError::NotController { leader }, "a batch failed");
                }
            }
        }
        self.retry_deferred(now, random);
    }

    /// Something the view and the log disagree on: never acknowledged (the caller answered
    /// the jobs concerned), logged, and the view is rebuilt from the committed image.
    fn violation(&mut self, what: String) {
        self.stats.violations += 1;
        tracing::error!(
            "controller invariant violated: {what}; rebuilding the view from the committed image"
        );
        let leader = self.log.leadership().0;
        self.drop_view(
            ControllerError::NotController { leader },
            "invariant violated",
        );
    }

    /// Drops the view and answers every job whose records are not in Raft yet; nothing of
    /// theirs was written. The next view is built once the batches in flight are done.
    fn drop_view(&mut self, e: ControllerError, why: &str) {
        if self.view.take().is_some() {
            tracing::info!(why, "dropped the controller's view");
        }
        let open = std::mem::take(&mut self.open);
        for b in self.ready.drain(..).chain(std::iter::once(open)) {
            for r in b.replies {
                (r.answer)(Err(e.clone()));
            }
        }
        for c in self.held.drain(..) {
            c(Err(e.clone()));
        }
    }

    /// Runs the jobs that waited for a view, once there is one.
    pub fn retry_deferred(&mut self, now: Instant, random: u32) {
        if self.deferred.is_empty() {
            return;
        }
        match self.ensure_view(now) {
            Ok(true) => {
                while let Some((_, job)) = self.deferred.pop_front() {
                    self.run_job(job, now, random);
                }
            }
            Ok(false) => {}
            Err(e) => {
                for (_, job) in self.deferred.drain(..) {
                    refuse(job, e.clone());
                }
            }
        }
    }

    /// Gives up on jobs that waited too long for a view, and fences brokers whose sessions
    /// expired.
    /// `may_fence`: no heartbeat is waiting unread (the caller could not drain them all),
    /// so an expired session really went silent.
    pub fn tick(&mut self, now: Instant, random: u32, may_fence: bool) {
        while self
            .deferred
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > VIEW_WAIT)
        {
            if let Some((_, job)) = self.deferred.pop_front() {
                refuse(job, ControllerError::NotController { leader: None });
            }
        }
        self.retry_deferred(now, random);
        if !matches!(self.ensure_view(now), Ok(true)) {
            return;
        }
        if !may_fence {
            return;
        }
        let Some(view) = self.view.as_mut() else {
            return;
        };
        view.now = now;
        let expired = view.sessions.expired(now);
        if expired.is_empty() {
            return;
        }
        let result = brokers::fence_expired(view, &expired);
        let staged = std::mem::take(&mut view.staged);
        match result {
            Ok(()) if !staged.is_empty() => self.stage(staged, Box::new(|_| {})),
            Ok(()) => {}
            Err(e) => self.violation(format!("fencing expired brokers failed: {e}")),
        }
    }

    /// A membership change is about to append `entries` entries of its own. Everything staged
    /// so far goes to Raft now; what is staged from here on is placed after those entries
    /// and held until [`Pipeline::end_exclusive`]. The change may start once
    /// [`Pipeline::drained`] says so. Jobs keep running meanwhile, so heartbeats are heard.
    pub fn begin_exclusive(&mut self, entries: u64) {
        self.close_open();
        while let Some(b) = self.ready.pop_front() {
            self.hand_to_raft(b);
        }
        if let Some(v) = self.view.as_mut() {
            v.next_offset += entries;
        }
        self.hold = Hold::Draining;
    }

    /// Whether a membership change waiting in [`Pipeline::begin_exclusive`] may start now;
    /// if so, it is marked as started.
    pub fn drained(&mut self) -> bool {
        if self.hold == Hold::Draining && self.in_flight.is_empty() {
            self.hold = Hold::Changing;
            return true;
        }
        false
    }

    /// The membership change is over. The held batches go out only if they start where the
    /// log now ends; otherwise the change wrote another number of entries than it said, the
    /// held jobs are answered NOT_CONTROLLER (nothing of theirs was written) and the view is
    /// rebuilt. A change that never started (it gave up waiting for the pipeline to drain)
    /// wrote nothing, so what was placed after its entries is refused the same way.
    pub fn end_exclusive(&mut self) {
        self.end_hold();
        // Jobs that wrote nothing meanwhile are answered now, with the log end the change
        // left (or, if the view was dropped, NOT_CONTROLLER by drop_view already).
        for c in std::mem::take(&mut self.held) {
            self.attach(c);
        }
    }

    fn end_hold(&mut self) {
        let started = self.hold == Hold::Changing;
        self.hold = Hold::None;
        if !started {
            let leader = self.log.leadership().0;
            self.drop_view(
                ControllerError::NotController { leader },
                "a membership change gave up before it started",
            );
            return;
        }
        let Some(end) = self.log.appended_end() else {
            return;
        };
        let expected = self
            .ready
            .front()
            .map(|b| b.base)
            .or_else(|| (!self.open.values.is_empty()).then_some(self.open.base));
        match (expected, self.view.as_mut()) {
            (Some(base), Some(_)) if base != end => {
                tracing::warn!(
                    log_end = end,
                    placed_at = base,
                    "a membership change wrote another number of entries than expected; the jobs staged meanwhile are refused and the view rebuilt"
                );
                let leader = self.log.leadership().0;
                self.drop_view(
                    ControllerError::NotController { leader },
                    "membership change moved the log end",
                );
            }
            // Nothing was placed after the change, and nothing is in flight while it runs:
            // the log end is where the next record goes.
            (None, Some(v)) => v.next_offset = end,
            _ => {}
        }
    }
}

fn refuse(job: Job, e: ControllerError) {
    if let Outcome::Await(c) = job(Err(e.clone())) {
        c(Err(e));
    }
}

#[cfg(test)]
mod sim;
