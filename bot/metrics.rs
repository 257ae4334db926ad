//! Counters for `GET /metrics` (Prometheus text format): inbound messages, outbound results,
//! send latency, plus the outbox's status counts read from the store at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the send-latency histogram, in seconds.
const BUCKETS: [f64; 8] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0];

#[derive(Debug, Default)]
pub struct Metrics {
    inbound: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    outbound: Mutex<BTreeMap<&'static str, u64>>,
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
}

impl Metrics {
    /// `result` is processed, duplicate, rejected or error.
    pub fn count_inbound(&self, channel: &'static str, result: &'static str) {
        *self
            .inbound
            .lock()
            .expect("metrics")
            .entry((channel, result))
            .or_default() += 1;
    }

    pub fn count_outbound(&self, result: &'static str) {
        *self
            .outbound
            .lock()
            .expect("metrics")
            .entry(result)
            .or_default() += 1;
    }

    pub fn observe_send(&self, d: Duration) {
        let s = d.as_secs_f64();
        for (i, le) in BUCKETS.iter().enumerate() {
            if s <= *le {
                self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// Renders everything; `outbox` is `(status, count)` from the store.
    pub fn render(&self, outbox: &[(String, i64)]) -> String {
        let mut out = String::new();
        out.push_str("# HELP carebot_inbound_total Inbound messages by channel and result.\n# TYPE carebot_inbound_total counter\n");
        for ((channel, result), n) in self.inbound.lock().expect("metrics").iter() {
            let _ = writeln!(
                out,
                "carebot_inbound_total{{channel=\"{channel}\",result=\"{result}\"}} {n}"
            );
        }
        out.push_str("# HELP carebot_send_attempts_total Outbound send attempts by result since start.\n# TYPE carebot_send_attempts_total counter\n");
        for (result, n) in self.outbound.lock().expect("metrics").iter() {
            let _ = writeln!(
                out,
                "carebot_send_attempts_total{{result=\"{result}\"}} {n}"
            );
        }
        out.push_str("# HELP carebot_outbound_messages Outbound messages in the store by status.\n# TYPE carebot_outbound_messages gauge\n");
        let mut queued = 0;
        for (status, n) in outbox {
            if status == "queued" {
                queued = *n;
            }
            let _ = writeln!(out, "carebot_outbound_messages{{status=\"{status}\"}} {n}");
        }
        out.push_str("# HELP carebot_outbox_queue_depth Messages waiting in the outbox.\n# TYPE carebot_outbox_queue_depth gauge\n");
        let _ = writeln!(out, "carebot_outbox_queue_depth {queued}");
        out.push_str("# HELP carebot_send_latency_seconds Time for the provider to answer a send.\n# TYPE carebot_send_latency_seconds histogram\n");
        for (i, le) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "carebot_send_latency_seconds_bucket{{le=\"{le}\"}} {}",
                self.latency_buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "carebot_send_latency_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "carebot_send_latency_seconds_sum {}",
            self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "carebot_send_latency_seconds_count {count}");
        out
    }
}
