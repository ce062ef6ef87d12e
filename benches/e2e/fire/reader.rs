//! The consumer side of the fire part: a thread that reads every partition
//! of the run topic from the beginning and stamps each message with the wall
//! clock as it is polled, and what its arrivals say: how many jobs arrived,
//! duplicates, lateness and the drain time.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use chrono::DateTime;
use rdkafka::{
    ClientConfig, Message, Offset, Timestamp, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    message::Headers,
};
use scheduler_service::broker::JobEvent;
use test_support::{kafka_brokers, unique};

use crate::support::{
    now_us,
    stats::{Curve, Latencies, Percentiles},
};

/// One message read off the run topic.
pub struct Arrival {
    /// The message key: the job's id.
    pub key: String,
    /// The `firing-key` header: unique to one firing of the job.
    pub firing_key: String,
    /// When it was polled, Unix µs.
    pub received_us: i64,
    /// When the service handed it to its producer (the message's
    /// CreateTime, set by librdkafka), Unix µs at ms resolution.
    pub produced_us: Option<i64>,
    /// The event's `ScheduleTime`, Unix µs.
    pub schedule_us: Option<i64>,
    updated_us: Option<i64>,
    /// Recurring jobs: the event's `ScheduledKey`, unique to the occurrence.
    pub scheduled_key: Option<i64>,
    /// Recurring jobs: the occurrence it runs for, Unix µs.
    pub occurrence_us: Option<i64>,
}

/// The reader thread and what it has read so far.
pub struct Reader {
    stop: Arc<AtomicBool>,
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    thread: JoinHandle<()>,
}

impl Reader {
    /// Starts reading partitions `0..partitions` of `topic` from the
    /// beginning, with this `fetch.wait.max.ms`; room for `expected`.
    pub fn start(
        topic: &str,
        partitions: i32,
        fetch_wait_ms: u64,
        expected: usize,
    ) -> Result<Self, String> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", kafka_brokers())
            .set("group.id", format!("e2e-reader-{}", unique()))
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", fetch_wait_ms.to_string())
            .create()
            .map_err(|e| format!("consumer: {e}"))?;
        let mut assignment = TopicPartitionList::new();
        for partition in 0..partitions {
            assignment
                .add_partition_offset(topic, partition, Offset::Beginning)
                .map_err(|e| format!("partition {partition}: {e}"))?;
        }
        consumer
            .assign(&assignment)
            .map_err(|e| format!("assign: {e}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let arrivals = Arc::new(Mutex::new(Vec::with_capacity(expected)));
        let thread = {
            let (stop, arrivals) = (stop.clone(), arrivals.clone());
            std::thread::spawn(move || read(&consumer, &stop, &arrivals))
        };
        Ok(Reader {
            stop,
            arrivals,
            thread,
        })
    }

    /// How many distinct jobs arrived so far.
    pub fn jobs_seen(&self) -> usize {
        let arrivals = self.arrivals.lock().expect("arrivals");
        arrivals
            .iter()
            .map(|a| a.key.as_str())
            .collect::<HashSet<_>>()
            .len()
    }

    /// How many messages arrived so far.
    pub fn messages(&self) -> usize {
        self.arrivals.lock().expect("arrivals").len()
    }

    /// Stops the thread; what arrived, for jobs whose first due time was
    /// `first_due_ms`.
    pub fn finish(self, first_due_ms: i64) -> Arrived {
        Arrived::of(&self.stop_reading(), first_due_ms)
    }

    /// Stops the thread; every message that arrived, in order.
    pub fn stop_reading(self) -> Vec<Arrival> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        std::mem::take(&mut *self.arrivals.lock().expect("arrivals"))
    }
}

fn read(consumer: &BaseConsumer, stop: &AtomicBool, arrivals: &Mutex<Vec<Arrival>>) {
    let mut reported = false;
    while !stop.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(50)) {
            None => {}
            Some(Err(err)) if !reported => {
                eprintln!("fire: reader: {err} (the topic may still be propagating)");
                reported = true;
            }
            Some(Err(_)) => {}
            Some(Ok(message)) => {
                let arrival = arrival(&message, now_us());
                arrivals.lock().expect("arrivals").push(arrival);
            }
        }
    }
}

fn arrival(message: &impl Message, received_us: i64) -> Arrival {
    let key = String::from_utf8_lossy(message.key().unwrap_or_default());
    let firing_key = message
        .headers()
        .and_then(|h| {
            h.iter()
                .find(|h| h.key == "firing-key")
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        })
        .unwrap_or_default();
    let event: Option<JobEvent> =
        serde_json::from_slice(message.payload().unwrap_or_default()).ok();
    let micros = |t: &str| {
        DateTime::parse_from_rfc3339(t)
            .ok()
            .map(|t| t.timestamp_micros())
    };
    Arrival {
        key: key.into_owned(),
        firing_key,
        received_us,
        produced_us: match message.timestamp() {
            Timestamp::CreateTime(ms) => Some(ms * 1000),
            _ => None,
        },
        schedule_us: event.as_ref().and_then(|e| micros(&e.schedule_time)),
        updated_us: event.as_ref().and_then(|e| micros(&e.updated_at)),
        scheduled_key: event.as_ref().map(|e| e.fire_token),
        occurrence_us: event
            .as_ref()
            .and_then(|e| e.occurrence.as_deref())
            .and_then(micros),
    }
}

/// What the arrivals say, each job counted at its first arrival.
pub struct Arrived {
    /// Distinct jobs.
    pub jobs: usize,
    /// Messages whose firing key came before.
    pub duplicates: usize,
    /// Jobs that arrived before their due time.
    pub early: usize,
    /// Arrival − ScheduleTime.
    pub lateness: Option<Percentiles>,
    /// Its distribution, for the chart (`--plot`).
    pub lateness_curve: Curve,
    /// UpdatedAt − ScheduleTime: lateness when the claim started.
    pub claim_start: Option<Percentiles>,
    /// Last arrival − first due time.
    pub drain_ms: Option<f64>,
}

impl Arrived {
    fn of(arrivals: &[Arrival], first_due_ms: i64) -> Self {
        let mut first: HashMap<&str, &Arrival> = HashMap::new();
        let mut firings: HashSet<&str> = HashSet::new();
        let mut duplicates = 0;
        for a in arrivals {
            if !firings.insert(&a.firing_key) {
                duplicates += 1;
            }
            first.entry(a.key.as_str()).or_insert(a);
        }
        let lateness: Vec<i64> = first
            .values()
            .filter_map(|a| a.schedule_us.map(|s| a.received_us - s))
            .collect();
        let claim_start: Vec<i64> = first
            .values()
            .filter_map(|a| a.updated_us.zip(a.schedule_us).map(|(u, s)| u - s))
            .collect();
        let distribution = Latencies::of_us(lateness.iter().copied());
        Arrived {
            jobs: first.len(),
            duplicates,
            early: lateness.iter().filter(|&&l| l < 0).count(),
            lateness: distribution.as_ref().map(Latencies::percentiles),
            lateness_curve: distribution.map(|d| d.curve()).unwrap_or_default(),
            claim_start: Latencies::of_us(claim_start.iter().copied()).map(|l| l.percentiles()),
            drain_ms: first
                .values()
                .map(|a| a.received_us)
                .max()
                .map(|last| (last - first_due_ms * 1000) as f64 / 1000.0),
        }
    }
}
