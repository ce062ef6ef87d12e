//! A prototype, not the product (subject `proto-thread-timer`): `Timer`'s
//! former data structures (B-tree by due time + map from job to due time)
//! with the driver on a dedicated thread that waits on a condvar until the
//! earliest due time in microseconds. It showed how much of the lateness
//! was tokio's millisecond timer; BENCHMARKS.md ("Problems found", 1)
//! discusses it, and the product's timer has since moved to a thread.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Condvar, Mutex},
    time::Duration,
};

use scheduler_service::domain::JobId;

use crate::{
    measure::{AddPhase, Added, Recorder},
    support::now_us,
};

/// A firing: the job, its key and its due time (µs).
type Firing = (JobId, i64, i64);

struct ProtoTimer {
    state: Mutex<ProtoState>,
    wake: Condvar,
}

#[derive(Default)]
struct ProtoState {
    queue: BTreeMap<(i64, JobId), i64>,
    due_of: HashMap<JobId, i64>,
}

impl ProtoTimer {
    fn start(fired: tokio::sync::mpsc::UnboundedSender<Firing>) -> Arc<Self> {
        let timer = Arc::new(ProtoTimer {
            state: Mutex::new(ProtoState::default()),
            wake: Condvar::new(),
        });
        let driver = timer.clone();
        std::thread::spawn(move || driver.drive(&fired));
        timer
    }

    fn arm(&self, id: JobId, due_us: i64, key: i64) {
        let earliest = {
            let mut s = self.state.lock().expect("lock");
            if let Some(old) = s.due_of.insert(id, due_us) {
                s.queue.remove(&(old, id));
            }
            s.queue.insert((due_us, id), key);
            s.queue.first_key_value().is_some_and(|(k, _)| k.1 == id)
        };
        if earliest {
            self.wake.notify_one();
        }
    }

    fn drive(&self, fired: &tokio::sync::mpsc::UnboundedSender<Firing>) {
        let mut batch = Vec::new();
        loop {
            self.wait_due(&mut batch);
            for firing in batch.drain(..) {
                if fired.send(firing).is_err() {
                    return;
                }
            }
        }
    }

    /// Waits until some jobs are due and moves them to `batch`.
    fn wait_due(&self, batch: &mut Vec<Firing>) {
        let mut s = self.state.lock().expect("lock");
        loop {
            let now = now_us();
            while let Some(entry) = s.queue.first_entry() {
                let (due, id) = *entry.key();
                if due > now {
                    break;
                }
                let key = entry.remove();
                s.due_of.remove(&id);
                batch.push((id, key, due));
            }
            if !batch.is_empty() {
                return;
            }
            s = match s.queue.first_key_value().map(|(k, _)| k.0) {
                Some(due) => {
                    let wait = Duration::from_micros((due - now).unsigned_abs());
                    self.wake.wait_timeout(s, wait).expect("lock").0
                }
                None => self.wake.wait(s).expect("lock"),
            };
        }
    }
}

/// The prototype's add phase; a task reads its firings.
pub fn add_proto_thread_timer(offsets: &[i64], lateness: Arc<Recorder>) -> Added {
    let (tx, mut firings) = tokio::sync::mpsc::unbounded_channel();
    let timer = ProtoTimer::start(tx);
    tokio::spawn(async move {
        while let Some((_, _, due_us)) = firings.recv().await {
            lateness.record(now_us() - due_us);
        }
    });
    let phase = AddPhase::begin();
    let t0_ms = phase.t0_ms;
    for (i, off) in offsets.iter().enumerate() {
        timer.arm(JobId::new(), (t0_ms + off) * 1000, i as i64);
    }
    phase.end(timer)
}
