//! Dynamic batching for one loaded version: requests wait in a bounded queue, are merged
//! into batches of up to `max_batch_size` rows (waiting at most `max_queue_delay` for
//! more once the first arrives), run on the blocking pool, and the outputs are split back
//! to their callers. A full queue answers RESOURCE_EXHAUSTED at once; a request whose
//! deadline passed while it waited is answered DEADLINE_EXCEEDED and never computed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use modelplane_kserve::{Output, TensorData};
use modelplane_onnx::ShapedTensor;
use modelplane_store::schema::BatchingOverride;
use ndarray::{Array2, Axis};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::Error;
use crate::stats::{InBatcher, Stats};

/// Batching settings of one version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchPolicy {
    /// Most rows merged into one batch; 0 or 1 turns batching off.
    pub max_batch_size: usize,
    /// How long the first request of a batch waits for more. Zero (the default) adds no
    /// latency: a batch takes what queued while the compute slots were busy.
    pub max_queue_delay: Duration,
    /// Requests that may wait; one more is refused with RESOURCE_EXHAUSTED.
    pub queue_capacity: usize,
    /// Batches computed at once (the compute pool's share for this version).
    pub concurrency: usize,
}

impl Default for BatchPolicy {
    fn default() -> Self {
        Self {
            max_batch_size: 64,
            max_queue_delay: Duration::ZERO,
            queue_capacity: 1024,
            concurrency: std::thread::available_parallelism().map(usize::from).unwrap_or(2),
        }
    }
}

impl BatchPolicy {
    /// Whether requests are merged at all.
    pub fn enabled(&self) -> bool {
        self.max_batch_size > 1
    }

    /// Whether a request waits for others to batch with (a queue delay is set). Then
    /// every request queues, however cheap or alone it is: that is what the delay asks.
    pub fn waits_for_company(&self) -> bool {
        self.enabled() && !self.max_queue_delay.is_zero()
    }

    /// Checks the settings before any port is bound.
    pub fn validate(&self) -> Result<(), String> {
        if self.concurrency == 0 {
            return Err("batch concurrency must be at least 1".into());
        }
        BatchingOverride {
            max_batch_size: None,
            max_queue_delay_us: Some(u64::try_from(self.max_queue_delay.as_micros()).unwrap_or(u64::MAX)),
            queue_capacity: Some(u32::try_from(self.queue_capacity).unwrap_or(u32::MAX)),
        }
        .validate()
    }

    /// These settings with a deployment's overrides applied.
    pub fn with_override(mut self, overrides: &BatchingOverride) -> Self {
        if let Some(rows) = overrides.max_batch_size {
            self.max_batch_size = rows as usize;
        }
        if let Some(micros) = overrides.max_queue_delay_us {
            self.max_queue_delay = Duration::from_micros(micros);
        }
        if let Some(requests) = overrides.queue_capacity {
            self.queue_capacity = requests as usize;
        }
        self
    }
}

/// What one request (or a merged batch) hands the model, batched along its first axis.
#[derive(Debug)]
pub enum BatchInput {
    /// Feature rows of a native model.
    Features(Array2<f32>),
    /// An ONNX graph's inputs, in signature order, all with the same first dimension.
    Tensors(Vec<ShapedTensor>),
}

impl BatchInput {
    /// Rows (batch items) it holds.
    pub fn rows(&self) -> usize {
        match self {
            BatchInput::Features(rows) => rows.nrows(),
            BatchInput::Tensors(tensors) => tensors.first().and_then(|(shape, _)| shape.first()).copied().unwrap_or(0),
        }
    }

    /// The requests' inputs as one batch: rows after rows, input by input.
    fn stack(parts: &[&BatchInput]) -> Result<BatchInput, Error> {
        let mismatch = |what: String| Error::Internal(format!("requests of one version do not stack: {what}"));
        match parts.first() {
            Some(BatchInput::Features(_)) => {
                let views = parts
                    .iter()
                    .map(|part| match part {
                        BatchInput::Features(rows) => Ok(rows.view()),
                        BatchInput::Tensors(_) => Err(mismatch("features and tensors".into())),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                ndarray::concatenate(Axis(0), &views).map(BatchInput::Features).map_err(|err| mismatch(err.to_string()))
            }
            Some(BatchInput::Tensors(first)) => {
                let mut stacked = Vec::with_capacity(first.len());
                for (index, (shape, _)) in first.iter().enumerate() {
                    let mut rows = 0;
                    let mut values = Vec::with_capacity(parts.len());
                    for part in parts {
                        let BatchInput::Tensors(tensors) = part else {
                            return Err(mismatch("features and tensors".into()));
                        };
                        let Some((part_shape, part_values)) = tensors.get(index) else {
                            return Err(mismatch(format!("input {index} missing")));
                        };
                        if part_shape.get(1..) != shape.get(1..) {
                            return Err(mismatch(format!("shapes {part_shape:?} and {shape:?}")));
                        }
                        rows += part_shape.first().copied().unwrap_or(0);
                        values.push(part_values);
                    }
                    let values = TensorData::concat(&values).ok_or_else(|| mismatch("datatypes differ".into()))?;
                    let mut shape = shape.clone();
                    if let Some(first) = shape.first_mut() {
                        *first = rows;
                    }
                    stacked.push((shape, values));
                }
                Ok(BatchInput::Tensors(stacked))
            }
            None => Err(mismatch("an empty batch".into())),
        }
    }
}

/// What a batch runs: the model's predict on the merged input.
pub type ComputeFn = Arc<dyn Fn(&BatchInput) -> Result<Vec<Output>, Error> + Send + Sync>;

struct Pending {
    input: BatchInput,
    deadline: Option<Instant>,
    enqueued: Instant,
    reply: oneshot::Sender<Result<Vec<Output>, Error>>,
    /// Keeps the request counted in the batcher's gauge until it is answered or dropped.
    _in_batcher: InBatcher,
}

/// The queue in front of one version's feature model.
pub struct Batcher {
    queue: mpsc::Sender<Pending>,
    policy: BatchPolicy,
    label: String,
    stats: Arc<Stats>,
    /// Requests queued, computing, or running alone (see [`Batcher::claim_idle`]).
    outstanding: Arc<AtomicUsize>,
}

/// Counts one request as outstanding on its batcher until dropped.
pub struct Outstanding(Arc<AtomicUsize>);

impl Drop for Outstanding {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Batcher {
    /// Starts the batching loop in front of `compute`; it ends when the batcher is dropped.
    pub fn start(compute: ComputeFn, policy: BatchPolicy, label: String, stats: Arc<Stats>) -> Self {
        let (queue, receiver) = mpsc::channel(policy.queue_capacity);
        tokio::spawn(run(receiver, compute, policy, stats.clone()));
        Self { queue, policy, label, stats, outstanding: Arc::new(AtomicUsize::new(0)) }
    }

    /// When nothing is queued or computing for this version, claims it for one request
    /// the caller runs itself: a lone request has nothing to be batched with, and the
    /// hand-off to the compute pool and back would only add two thread wake-ups. While
    /// the claim is held every other request queues, so under load batching still forms.
    /// Never with a queue delay: whoever set one asked every request to wait for company.
    pub fn claim_idle(&self) -> Option<Outstanding> {
        if self.policy.waits_for_company() {
            return None;
        }
        self.outstanding
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| Outstanding(self.outstanding.clone()))
    }

    /// The settings this batcher runs with.
    pub fn policy(&self) -> BatchPolicy {
        self.policy
    }

    /// Queues `input` and waits for its outputs.
    pub async fn infer(&self, input: BatchInput, deadline: Option<Instant>) -> Result<Vec<Output>, Error> {
        self.outstanding.fetch_add(1, Ordering::AcqRel);
        let _outstanding = Outstanding(self.outstanding.clone());
        let (reply, answer) = oneshot::channel();
        let pending =
            Pending { input, deadline, enqueued: Instant::now(), reply, _in_batcher: self.stats.entered_batcher() };
        self.queue.try_send(pending).map_err(|err| match err {
            mpsc::error::TrySendError::Full(_) => Error::ResourceExhausted(format!(
                "the queue of {} is full ({} requests waiting); retry later or add replicas",
                self.label, self.policy.queue_capacity
            )),
            mpsc::error::TrySendError::Closed(_) => Error::Unavailable(format!("{} is unloading", self.label)),
        })?;
        answer.await.map_err(|_| Error::Unavailable(format!("{} unloaded before answering", self.label)))?
    }
}

async fn run(mut receiver: mpsc::Receiver<Pending>, compute: ComputeFn, policy: BatchPolicy, stats: Arc<Stats>) {
    let slots = Arc::new(Semaphore::new(policy.concurrency));
    let mut carried: Option<Pending> = None;
    loop {
        // Wait for a compute slot first: while every slot is busy, requests pile up in
        // the queue and the next batch comes out larger.
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let first = match carried.take() {
            Some(pending) => pending,
            None => match receiver.recv().await {
                Some(pending) => pending,
                None => return,
            },
        };
        let mut batch = vec![first];
        let mut rows = batch[0].input.rows();
        let flush_at = tokio::time::Instant::now() + policy.max_queue_delay;
        while rows < policy.max_batch_size {
            let next = match receiver.try_recv() {
                Ok(pending) => pending,
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) if !policy.waits_for_company() => break,
                Err(mpsc::error::TryRecvError::Empty) => match tokio::time::timeout_at(flush_at, receiver.recv()).await
                {
                    Ok(Some(pending)) => pending,
                    Ok(None) | Err(_) => break,
                },
            };
            if rows + next.input.rows() > policy.max_batch_size {
                carried = Some(next);
                break;
            }
            rows += next.input.rows();
            batch.push(next);
        }
        let compute = compute.clone();
        let stats = stats.clone();
        tokio::task::spawn_blocking(move || {
            run_batch(&compute, batch, &stats);
            drop(slot);
        });
    }
}

/// Runs one batch and answers every request in it.
fn run_batch(compute: &ComputeFn, batch: Vec<Pending>, stats: &Stats) {
    let now = Instant::now();
    let mut live = Vec::with_capacity(batch.len());
    for pending in batch {
        stats.waited(now.duration_since(pending.enqueued));
        if pending.reply.is_closed() {
            // The caller cancelled (or the router gave up) while it waited: skip the work.
            continue;
        }
        if pending.deadline.is_some_and(|deadline| deadline <= now) {
            let _ = pending.reply.send(Err(Error::DeadlineExceeded(format!(
                "the deadline passed after {:?} in the queue; the request was not computed",
                now.duration_since(pending.enqueued)
            ))));
        } else {
            live.push(pending);
        }
    }
    if live.is_empty() {
        return;
    }
    let inputs: Vec<&BatchInput> = live.iter().map(|p| &p.input).collect();
    let result = match inputs.as_slice() {
        [alone] => compute(alone),
        // Requests of one version share the trailing shape (decoding checked it).
        many => BatchInput::stack(many).and_then(|batch| compute(&batch)),
    };
    let counts: Vec<usize> = inputs.iter().map(|input| input.rows()).collect();
    let total: usize = counts.iter().sum();
    // Splitting the answer back needs one output row per input row; a model that does
    // not answer that way must not hand callers each other's rows.
    let result = result.and_then(|outputs| match outputs.iter().find(|o| o.shape.first() != Some(&total)) {
        Some(output) => Err(Error::Internal(format!(
            "output {:?} has shape {:?} for a batch of {total} rows; batched outputs must have one row per input row",
            output.name, output.shape
        ))),
        None => Ok(outputs),
    });
    let rows = if result.is_ok() { total } else { 0 };
    stats.executed(rows, now.elapsed());
    match result {
        Ok(outputs) => {
            for (pending, outputs) in live.into_iter().zip(split_rows(outputs, &counts)) {
                let _ = pending.reply.send(Ok(outputs));
            }
        }
        Err(err) => {
            for pending in live {
                let _ = pending.reply.send(Err(err.clone()));
            }
        }
    }
}

/// Splits batch outputs (first dimension = rows) into one set per request.
fn split_rows(outputs: Vec<Output>, counts: &[usize]) -> Vec<Vec<Output>> {
    let mut parts: Vec<Vec<Output>> = counts.iter().map(|_| Vec::with_capacity(outputs.len())).collect();
    for output in outputs {
        let per_row: usize = output.shape.iter().skip(1).product();
        let mut offset = 0;
        for (part, &count) in parts.iter_mut().zip(counts) {
            let range = offset * per_row..(offset + count) * per_row;
            offset += count;
            let mut shape = output.shape.clone();
            if let Some(first) = shape.first_mut() {
                *first = count;
            }
            part.push(Output { name: output.name.clone(), shape, data: output.data.slice(range) });
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A compute function that reports each batch's row count and then blocks until the
    /// test releases it; its output echoes the rows, so callers can check they got their own.
    struct Gate {
        entered: Mutex<std::sync::mpsc::Receiver<usize>>,
        release: std::sync::mpsc::SyncSender<()>,
    }

    fn gated() -> (ComputeFn, Gate) {
        let (entered_tx, entered_rx) = std::sync::mpsc::sync_channel(64);
        let (release_tx, release_rx) = std::sync::mpsc::sync_channel::<()>(64);
        let release_rx = Mutex::new(release_rx);
        let compute: ComputeFn = Arc::new(move |input| {
            let BatchInput::Features(rows) = input else { panic!("feature rows expected") };
            let _ = entered_tx.send(rows.nrows());
            let _ = release_rx.lock().map(|r| r.recv());
            let values: Vec<f32> = rows.iter().copied().collect();
            Ok(vec![Output {
                name: "echo".into(),
                shape: vec![rows.nrows(), rows.ncols()],
                data: TensorData::F32(values),
            }])
        });
        (compute, Gate { entered: Mutex::new(entered_rx), release: release_tx })
    }

    impl Gate {
        /// Waits (off the runtime) until a batch entered compute; returns its rows.
        async fn next_batch(&self) -> usize {
            let entered = &self.entered;
            tokio::task::block_in_place(|| entered.lock().expect("lock").recv_timeout(PATIENCE))
                .expect("a batch entered compute")
        }
    }

    fn policy(max_batch_size: usize, queue_capacity: usize) -> BatchPolicy {
        BatchPolicy { max_batch_size, max_queue_delay: Duration::ZERO, queue_capacity, concurrency: 1 }
    }

    fn row(value: f32) -> BatchInput {
        BatchInput::Features(Array2::from_elem((1, 2), value))
    }

    /// Sends a one-row request in its own task.
    fn send(
        batcher: &Arc<Batcher>,
        value: f32,
        deadline: Option<Instant>,
    ) -> tokio::task::JoinHandle<Result<Vec<Output>, Error>> {
        let batcher = batcher.clone();
        tokio::spawn(async move { batcher.infer(row(value), deadline).await })
    }

    fn echoed(outputs: &[Output]) -> Vec<f32> {
        match &outputs[0].data {
            TensorData::F32(values) => values.clone(),
            _ => Vec::new(),
        }
    }

    /// Bounds a hang only: what a test waits for is a condition, never a time.
    const PATIENCE: Duration = Duration::from_secs(30);

    /// Awaits `future`, failing the test if it hangs.
    async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
        tokio::time::timeout(PATIENCE, future).await.unwrap_or_else(|_| panic!("{what} did not finish in {PATIENCE:?}"))
    }

    /// A spawned request's answer.
    async fn answer(task: tokio::task::JoinHandle<Result<Vec<Output>, Error>>) -> Result<Vec<Output>, Error> {
        within("a request", task).await.expect("task")
    }

    /// Waits until exactly `requests` wait in the queue (the one computing is not counted).
    async fn wait_queued(batcher: &Batcher, requests: usize) {
        let queued = || batcher.queue.max_capacity() - batcher.queue.capacity();
        within("the queue filling", async {
            while queued() < requests {
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert_eq!(queued(), requests, "requests in the queue");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_a_request_alone_on_an_idle_version_may_skip_the_queue() {
        let (compute, gate) = gated();
        let batcher = Arc::new(Batcher::start(compute, policy(64, 16), "m v1".into(), Arc::default()));
        let alone = batcher.claim_idle().expect("an idle version can be claimed");
        assert!(batcher.claim_idle().is_none(), "a second request while one runs alone must queue");
        drop(alone);
        let queued = send(&batcher, 1.0, None);
        assert_eq!(gate.next_batch().await, 1);
        assert!(batcher.claim_idle().is_none(), "a request computing in a batch makes the version busy");
        gate.release.send(()).expect("release");
        answer(queued).await.expect("answer");
        assert!(batcher.claim_idle().is_some(), "idle again once every request was answered");

        let waiting = BatchPolicy { max_queue_delay: Duration::from_millis(5), ..policy(64, 16) };
        let (compute, _gate) = gated();
        let batcher = Batcher::start(compute, waiting, "m v2".into(), Arc::default());
        assert!(batcher.claim_idle().is_none(), "with a queue delay every request waits for others");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_queued_behind_a_busy_batch_run_as_one_and_get_their_own_rows() {
        let (compute, gate) = gated();
        let batcher = Arc::new(Batcher::start(compute, policy(64, 16), "m v1".into(), Arc::default()));
        let first = send(&batcher, 0.0, None);
        assert_eq!(gate.next_batch().await, 1);
        let waiting: Vec<_> = (1..=3).map(|i| send(&batcher, i as f32, None)).collect();
        wait_queued(&batcher, 3).await;
        for _ in 0..2 {
            gate.release.send(()).expect("release");
        }
        assert_eq!(gate.next_batch().await, 3, "the three waiting requests form one batch");
        assert_eq!(echoed(&answer(first).await.expect("answer")), [0.0, 0.0]);
        for (i, task) in waiting.into_iter().enumerate() {
            let outputs = answer(task).await.expect("answer");
            assert_eq!(outputs[0].shape, [1, 2]);
            assert_eq!(echoed(&outputs), [(i + 1) as f32; 2], "request {} got its own row back", i + 1);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_never_exceed_the_row_limit() {
        let (compute, gate) = gated();
        let batcher = Arc::new(Batcher::start(compute, policy(2, 16), "m v1".into(), Arc::default()));
        let tasks: Vec<_> = (0..5).map(|i| send(&batcher, i as f32, None)).collect();
        let mut sizes = Vec::new();
        while sizes.iter().sum::<usize>() < 5 {
            sizes.push(gate.next_batch().await);
            gate.release.send(()).expect("release");
        }
        assert!(sizes.iter().all(|&n| n <= 2), "batch sizes {sizes:?}");
        for task in tasks {
            answer(task).await.expect("answer");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_is_refused_at_once_with_resource_exhausted() {
        let (compute, gate) = gated();
        let batcher = Arc::new(Batcher::start(compute, policy(64, 2), "churn v3".into(), Arc::default()));
        let busy = send(&batcher, 0.0, None);
        assert_eq!(gate.next_batch().await, 1);
        let queued: Vec<_> = (0..2).map(|_| send(&batcher, 1.0, None)).collect();
        wait_queued(&batcher, 2).await;
        match within("a refusal", batcher.infer(row(2.0), None)).await {
            Err(Error::ResourceExhausted(message)) => {
                assert!(message.contains("churn v3") && message.contains("2 requests"), "{message}")
            }
            other => panic!("expected RESOURCE_EXHAUSTED, got {:?}", other.map(|_| ())),
        }
        for _ in 0..2 {
            gate.release.send(()).expect("release");
        }
        answer(busy).await.expect("answer");
        for task in queued {
            answer(task).await.expect("queued requests are still answered");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_cancelled_in_the_queue_is_never_computed() {
        let (compute, gate) = gated();
        let batcher = Arc::new(Batcher::start(compute, policy(64, 16), "m v1".into(), Arc::default()));
        let busy = send(&batcher, 0.0, None);
        assert_eq!(gate.next_batch().await, 1);
        let cancelled = send(&batcher, 1.0, None);
        let kept = send(&batcher, 2.0, None);
        wait_queued(&batcher, 2).await;
        // Aborted while it waits in the queue: its task ends without an answer, which
        // drops the request's side of the reply channel.
        cancelled.abort();
        let aborted = within("the aborted request", cancelled).await;
        assert!(aborted.is_err_and(|err| err.is_cancelled()), "the request was cancelled, not answered");
        for _ in 0..2 {
            gate.release.send(()).expect("release");
        }
        answer(busy).await.expect("answer");
        assert_eq!(gate.next_batch().await, 1, "the cancelled request is left out of the batch");
        assert_eq!(echoed(&answer(kept).await.expect("answer")), [2.0, 2.0]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_whose_deadline_passed_in_the_queue_is_never_computed() {
        let (compute, gate) = gated();
        let batcher = Arc::new(Batcher::start(compute, policy(64, 16), "m v1".into(), Arc::default()));
        let busy = send(&batcher, 0.0, None);
        assert_eq!(gate.next_batch().await, 1);
        let deadline = Instant::now() + Duration::from_millis(10);
        let expiring = send(&batcher, 1.0, Some(deadline));
        let patient = send(&batcher, 2.0, None);
        wait_queued(&batcher, 2).await;
        // The deadline passes while both wait behind the busy batch.
        tokio::time::sleep_until(deadline.into()).await;
        for _ in 0..2 {
            gate.release.send(()).expect("release");
        }
        answer(busy).await.expect("answer");
        assert_eq!(gate.next_batch().await, 1, "only the request still within its deadline is computed");
        assert!(matches!(answer(expiring).await, Err(Error::DeadlineExceeded(_))));
        assert_eq!(echoed(&answer(patient).await.expect("answer")), [2.0, 2.0]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_model_that_does_not_answer_one_row_per_row_fails_the_batch_instead_of_mixing_rows() {
        let one_row: ComputeFn =
            Arc::new(|_| Ok(vec![Output { name: "sum".into(), shape: vec![1], data: TensorData::F32(vec![0.0]) }]));
        let batcher = Batcher::start(one_row, policy(64, 16), "m v1".into(), Arc::default());
        match within("the batch", batcher.infer(BatchInput::Features(Array2::zeros((2, 2))), None)).await {
            Err(Error::Internal(message)) => {
                assert!(message.contains("\"sum\" has shape [1] for a batch of 2 rows"), "{message}")
            }
            other => panic!("expected an internal error, got {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn a_deployments_override_replaces_only_the_settings_it_gives() {
        let worker = BatchPolicy { max_queue_delay: Duration::from_micros(250), ..policy(64, 1024) };
        let overrides = BatchingOverride { max_batch_size: Some(8), queue_capacity: Some(16), ..Default::default() };
        let merged = worker.with_override(&overrides);
        assert_eq!((merged.max_batch_size, merged.queue_capacity), (8, 16));
        assert_eq!(merged.max_queue_delay, Duration::from_micros(250), "unset: the worker's own");
        assert_eq!(worker.with_override(&BatchingOverride::default()), worker);
        let off = worker.with_override(&BatchingOverride { max_batch_size: Some(0), ..Default::default() });
        assert!(!off.enabled());
        assert!(BatchPolicy { queue_capacity: 0, ..worker }.validate().is_err());
    }

    #[test]
    fn tensor_inputs_stack_input_by_input_along_the_first_axis() {
        let request = |rows: usize, first: i64| {
            BatchInput::Tensors(vec![
                (vec![rows, 2], TensorData::I64((0..2 * rows as i64).map(|v| first + v).collect())),
                (vec![rows], TensorData::Bool(vec![rows == 1; rows])),
            ])
        };
        let (one, two) = (request(1, 10), request(2, 20));
        match BatchInput::stack(&[&one, &two]).expect("stacks") {
            BatchInput::Tensors(tensors) => {
                assert_eq!(tensors[0], (vec![3, 2], TensorData::I64(vec![10, 11, 20, 21, 22, 23])));
                assert_eq!(tensors[1], (vec![3], TensorData::Bool(vec![true, false, false])));
            }
            other => panic!("tensors expected, got {other:?}"),
        }
        assert_eq!(BatchInput::stack(&[&one, &two]).map(|b| b.rows()).ok(), Some(3));
        let wider = BatchInput::Tensors(vec![
            (vec![1, 3], TensorData::I64(vec![0; 3])),
            (vec![1], TensorData::Bool(vec![true])),
        ]);
        let err = BatchInput::stack(&[&one, &wider]).expect_err("trailing shapes differ");
        assert!(err.to_string().contains("shapes [1, 3] and [1, 2]"), "{err}");
        let err = BatchInput::stack(&[&one, &row(1.0)]).expect_err("kinds differ");
        assert!(err.to_string().contains("features and tensors"), "{err}");
    }

    #[test]
    fn outputs_split_back_by_row_counts() {
        let outputs = vec![
            Output { name: "probs".into(), shape: vec![3, 2], data: TensorData::F32(vec![1., 2., 3., 4., 5., 6.]) },
            Output {
                name: "label".into(),
                shape: vec![3],
                data: TensorData::Bytes(vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]),
            },
            Output { name: "class".into(), shape: vec![3], data: TensorData::I64(vec![7, 8, 9]) },
        ];
        let parts = split_rows(outputs, &[1, 2]);
        assert_eq!(parts[0][0].shape, [1, 2]);
        assert!(matches!(&parts[0][0].data, TensorData::F32(v) if v == &[1., 2.]));
        assert_eq!(parts[1][0].shape, [2, 2]);
        assert!(matches!(&parts[1][0].data, TensorData::F32(v) if v == &[3., 4., 5., 6.]));
        assert!(matches!(&parts[1][1].data, TensorData::Bytes(v) if v == &[b"b".to_vec(), b"c".to_vec()]));
        assert_eq!(parts[1][2].data, TensorData::I64(vec![8, 9]));
    }
}
