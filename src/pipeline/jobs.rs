//! Handing work from the single SQLite writer to the worker threads and back, in order.
//!
//! The writer decides a batch's mail one message at a time; each decision is pushed here and
//! rendered by a worker while the writer goes on with the next message's SQL. At the end the
//! writer takes back the results in the order it pushed them, rendering itself whatever no
//! worker has started rather than waiting idle.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError, mpsc};

/// Jobs in push order, each with its sequence number.
pub(super) struct JobQueue<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

struct State<T> {
    jobs: VecDeque<(usize, T)>,
    pushed: usize,
    closed: bool,
}

impl<T> Default for JobQueue<T> {
    fn default() -> Self {
        JobQueue {
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                pushed: 0,
                closed: false,
            }),
            ready: Condvar::new(),
        }
    }
}

impl<T> JobQueue<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A queue and two counters are consistent after any panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a job; its sequence number is the count pushed before it.
    pub(super) fn push(&self, job: T) {
        let mut state = self.lock();
        let seq = state.pushed;
        state.jobs.push_back((seq, job));
        state.pushed += 1;
        self.ready.notify_one();
    }

    /// How many jobs were ever pushed.
    pub(super) fn pushed(&self) -> usize {
        self.lock().pushed
    }

    /// No more jobs: workers take what is queued, then [`Self::pop`] returns None.
    pub(super) fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    /// Closes the queue when dropped, so that whatever way the writer leaves (an error, a
    /// panic) the workers are let go and a scope waiting for them ends.
    pub(super) fn closer(&self) -> CloseOnDrop<'_, T> {
        CloseOnDrop(self)
    }

    /// The next job, waiting for one unless the queue is closed.
    pub(super) fn pop(&self) -> Option<(usize, T)> {
        let mut state = self.lock();
        loop {
            if let Some(job) = state.jobs.pop_front() {
                return Some(job);
            }
            if state.closed {
                return None;
            }
            state = self
                .ready
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn take_remaining(&self) -> Vec<(usize, T)> {
        self.lock().jobs.drain(..).collect()
    }
}

pub(super) struct CloseOnDrop<'q, T>(&'q JobQueue<T>);

impl<T> Drop for CloseOnDrop<'_, T> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// The writer's end: the queue and the channel the workers answer on.
pub(super) struct Results<'q, T, R> {
    pub(super) queue: &'q JobQueue<T>,
    pub(super) results: mpsc::Receiver<(usize, R)>,
}

impl<T, R> Results<'_, T, R> {
    /// The results of the first `count` jobs, in push order. Closes the queue, does the jobs
    /// no worker has started with `run`, and waits for the others; `lost` stands in for a job
    /// whose worker ended without answering (every worker gone), so the writer never hangs.
    pub(super) fn collect(
        self,
        count: usize,
        run: impl Fn(&T) -> R,
        lost: impl Fn() -> R,
    ) -> Vec<R> {
        self.queue.close();
        let mut slots: Vec<Option<R>> = (0..count).map(|_| None).collect();
        let mut missing = count;
        for (seq, job) in self.queue.take_remaining() {
            if let Some(slot @ None) = slots.get_mut(seq) {
                *slot = Some(run(&job));
                missing -= 1;
            }
        }
        while missing > 0 {
            // Err: every sender is gone, so nothing more can arrive.
            let Ok((seq, result)) = self.results.recv() else {
                break;
            };
            if let Some(slot @ None) = slots.get_mut(seq) {
                *slot = Some(result);
                missing -= 1;
            }
        }
        slots
            .into_iter()
            .map(|slot| slot.unwrap_or_else(&lost))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(queue: &JobQueue<u32>, answers: mpsc::Sender<(usize, u32)>) {
        while let Some((seq, job)) = queue.pop() {
            if answers.send((seq, job * 10)).is_err() {
                break;
            }
        }
    }

    #[test]
    fn results_come_back_in_push_order_whoever_did_them() {
        let queue = JobQueue::default();
        let (tx, rx) = mpsc::channel();
        let got = std::thread::scope(|s| {
            for _ in 0..3 {
                let (queue, tx) = (&queue, tx.clone());
                s.spawn(move || worker(queue, tx));
            }
            drop(tx);
            let _release = queue.closer();
            for job in 0..1000 {
                queue.push(job);
            }
            Results {
                queue: &queue,
                results: rx,
            }
            .collect(1000, |j| j * 10, || u32::MAX)
        });
        assert_eq!(got, (0..1000).map(|j| j * 10).collect::<Vec<_>>());
    }

    #[test]
    fn without_workers_the_writer_does_everything() {
        let queue = JobQueue::default();
        let (tx, rx) = mpsc::channel::<(usize, u32)>();
        drop(tx);
        for job in 0..5 {
            queue.push(job);
        }
        assert_eq!(queue.pushed(), 5);
        let got = Results {
            queue: &queue,
            results: rx,
        }
        .collect(5, |j| j + 1, || 0);
        assert_eq!(got, vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_job_nobody_answers_is_reported_lost_instead_of_hanging() {
        let queue = JobQueue::<u32>::default();
        queue.push(7);
        // A worker took the job and died without answering.
        let taken = queue.pop();
        assert_eq!(taken, Some((0, 7)));
        let (tx, rx) = mpsc::channel::<(usize, u32)>();
        drop(tx);
        let got = Results {
            queue: &queue,
            results: rx,
        }
        .collect(1, |j| *j, || 99);
        assert_eq!(got, vec![99]);
    }

    #[test]
    fn a_closed_queue_lets_waiting_workers_go() {
        let queue = JobQueue::<u32>::default();
        std::thread::scope(|s| {
            let waiting = s.spawn(|| queue.pop());
            std::thread::sleep(std::time::Duration::from_millis(20));
            drop(queue.closer());
            assert_eq!(waiting.join().ok().flatten(), None);
        });
    }
}
