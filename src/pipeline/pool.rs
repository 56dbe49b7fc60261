//! The worker pool's half of a batch: parse, guard and classify every message ahead of the
//! single SQLite writer, and render the mail it decides on.
//!
//! Workers are the long-lived threads of one rayon pool per pipeline (one per core), so their
//! regex caches stay warm from one batch to the next. A [`Prepared`] batch hands its messages
//! out in order (an atomic cursor), so the writer, which consumes them in order, never waits
//! for a message no running job will take.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, mpsc};

use super::Incoming;
use super::jobs::{JobQueue, Results};
use crate::classify::{Classification, Classifier};
use crate::guard::{self, GuardPolicy, Verdict};
use crate::parse::{self, ParsedMessage};

/// The long-lived worker threads of one pipeline.
pub(super) struct Workers {
    pool: rayon::ThreadPool,
    analyser: Arc<Analyser>,
    /// Held by the batch whose writer runs; see [`Workers::run_batch`].
    batch_in_progress: Mutex<()>,
}

impl Workers {
    /// One worker per core (at most four), not one fewer: the writer spends much of a batch
    /// waiting (for an analysis, for fsync), and on two cores one worker left a core idle
    /// meanwhile.
    ///
    /// # Errors
    /// The threads could not be started.
    pub(super) fn start(analyser: Analyser) -> Result<Workers, rayon::ThreadPoolBuildError> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(cores.clamp(1, 4))
            .thread_name(|i| format!("supportd-worker-{i}"))
            .build()?;
        Ok(Workers {
            pool,
            analyser: Arc::new(analyser),
            batch_in_progress: Mutex::new(()),
        })
    }

    /// Starts analysing `batch` with `classifier` on every worker and returns at once.
    pub(super) fn prepare(&self, batch: Vec<Incoming>, classifier: Arc<Classifier>) -> Prepared {
        let prepared = Prepared {
            slots: batch.iter().map(|_| OnceLock::new()).collect(),
            batch: Arc::new(batch),
            next: Arc::new(AtomicUsize::new(0)),
            classifier,
        };
        for _ in 0..self.pool.current_num_threads() {
            let job = prepared.clone();
            let analyser = Arc::clone(&self.analyser);
            self.pool.spawn(move || job.analyse_all(&analyser));
        }
        prepared
    }

    /// Runs `writer` on this thread while every worker first finishes the analyses of
    /// `prepared`, then renders what the writer pushes on its queue with `render`. Returns what
    /// the writer returns, once every worker is done.
    pub(super) fn run_batch<J, R, T>(
        &self,
        prepared: &Prepared,
        render: impl Fn(&J) -> R + Sync,
        writer: impl for<'q> FnOnce(Results<'q, J, R>) -> T,
    ) -> T
    where
        J: Send,
        R: Send,
    {
        let renders: JobQueue<J> = JobQueue::default();
        let (rendered_tx, rendered) = mpsc::channel();
        // A batch's workers hold every pool thread until its writer finishes. Were two batches
        // let in at once, one writer could hold SQLite's write lock while waiting for analyses
        // that sit queued behind the other batch's workers, until the busy timeout. (Prepared
        // analyses never wait, so they need no turn.)
        let _one_batch = self
            .batch_in_progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.pool.in_place_scope(|scope| {
            for _ in 0..self.pool.current_num_threads() {
                let (analyser, render) = (&*self.analyser, &render);
                let (renders, rendered_tx) = (&renders, rendered_tx.clone());
                scope.spawn(move |_| {
                    // Analyses the prepare-time jobs have not reached yet come first: the
                    // writer needs them in order.
                    prepared.analyse_all(analyser);
                    while let Some((seq, job)) = renders.pop() {
                        if rendered_tx.send((seq, render(&job))).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(rendered_tx);
            // Whatever way the writer leaves (an error, a panic), the workers must be let go or
            // the scope would wait for them forever.
            let _release = renders.closer();
            writer(Results {
                queue: &renders,
                results: rendered,
            })
        })
    }
}

/// `f` over `items`, in order, on as many threads as there are cores (up to four) once there
/// are enough items to pay for the threads.
pub(super) fn map_parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    const PARALLEL_FROM: usize = 32;
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4);
    if items.len() < PARALLEL_FROM || threads < 2 {
        return items.iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(f).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// What analysing a message needs, shared with the worker pool's jobs.
pub(super) struct Analyser {
    pub(super) guard: GuardPolicy,
    /// `guard` without the own-Message-ID check, for requests of the HTTP intake: the message
    /// synthesised from one carries a Message-ID we signed, by construction.
    form_guard: GuardPolicy,
    pub(super) support_address: String,
}

impl Analyser {
    pub(super) fn new(guard: GuardPolicy, support_address: String) -> Analyser {
        let form_guard = GuardPolicy {
            own_domain: String::new(),
            ..guard.clone()
        };
        Analyser {
            guard,
            form_guard,
            support_address,
        }
    }
}

impl Analyser {
    /// Parse, guard and classify one message. A panic in any of them (a parser bug on some
    /// unforeseen input) is caught so the message is quarantined instead of the daemon dying.
    fn analyse(&self, incoming: &Incoming, classifier: &Classifier) -> Analysed {
        let work = || {
            let msg = parse_one(incoming);
            // Only the HTTP intake sets `form`: a header in the message proves nothing.
            let (policy, chosen) = match &incoming.form {
                Some(form) => (&self.form_guard, form.category.as_deref()),
                None => (&self.guard, None),
            };
            Analysed {
                verdict: guard::inspect(&msg, policy),
                classification: classifier.classify_message_as(&msg, &self.support_address, chosen),
                msg,
                failure: None,
            }
        };
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or_else(|_| {
            let sha = parse::sha256_hex(&incoming.raw);
            let msg = ParsedMessage {
                message_id: format!("{}@panic.supportd.invalid", &sha[..32]),
                message_id_synthesized: true,
                raw_sha256: sha,
                size: incoming.raw.len(),
                ..Default::default()
            };
            Analysed {
                verdict: Verdict::default(),
                classification: classifier.classify_message(&msg, &self.support_address),
                msg,
                failure: Some("the parser panicked on this message".into()),
            }
        })
    }
}

/// A batch whose analysis runs on the worker pool; see [`Pipeline::prepare`].
#[derive(Clone)]
pub struct Prepared {
    pub(super) batch: Arc<Vec<Incoming>>,
    pub(super) slots: Arc<[OnceLock<Analysed>]>,
    /// The next message to analyse: every job claims in order until none is left, so the
    /// writer never waits for one that no running job will take.
    pub(super) next: Arc<AtomicUsize>,
    /// The rules as they were when the batch was prepared; the writer uses the same.
    pub(super) classifier: Arc<Classifier>,
}

impl Prepared {
    fn analyse_all(&self, analyser: &Analyser) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(incoming) = self.batch.get(i) else {
                return;
            };
            let _ = self.slots[i].set(analyser.analyse(incoming, &self.classifier));
        }
    }

    /// How many messages the batch holds.
    pub fn len(&self) -> usize {
        self.batch.len()
    }

    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }
}

/// What can be known of a message without the database.
pub(super) struct Analysed {
    pub(super) msg: ParsedMessage,
    /// The guard's verdict: automated or human, an acknowledgement to withhold, and the person
    /// behind our own group's DMARC rewrite (`verdict.person`, the customer to record instead
    /// of From; not wired into the customer yet).
    pub(super) verdict: Verdict,
    /// Used only if the message turns out to open a ticket; cheap enough to compute for all,
    /// off the single database writer.
    pub(super) classification: Classification,
    /// Why the message could not be analysed; it is quarantined.
    pub(super) failure: Option<String>,
}

fn parse_one(incoming: &Incoming) -> ParsedMessage {
    let mut msg = parse::parse(&incoming.raw);
    if incoming.oversized {
        msg.warnings
            .push("over max_message_size: only the headers were kept".into());
    }
    msg
}
