//! Delivery latencies in a few shared histograms (one per shard, so ten thousand readers do
//! not all wait on one lock, and not ten thousand histograms in memory).

use std::sync::Mutex;
use std::time::Instant;

use hdrhistogram::Histogram;

const SHARDS: usize = 16;
/// Highest latency recorded, in microseconds (larger values are clamped to it): 10 minutes.
const HIGHEST_US: u64 = 600_000_000;

/// An empty histogram of 1 µs to [`HIGHEST_US`] with 3 significant digits.
#[allow(clippy::expect_used)] // constant bounds that `new_with_bounds` accepts
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_US, 3).expect("valid histogram bounds")
}

/// Latencies in microseconds.
pub struct Latencies {
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

impl Latencies {
    pub fn new() -> Self {
        let shards = (0..SHARDS).map(|_| Mutex::new(histogram())).collect();
        Self { shards }
    }

    /// Records one latency (from reader `who`).
    pub fn record(&self, who: usize, micros: u64) {
        if let Ok(mut shard) = self.shards[who % SHARDS].lock() {
            let _ = shard.record(micros.clamp(1, HIGHEST_US));
        }
    }

    /// All shards merged.
    pub fn merged(&self) -> Histogram<u64> {
        let mut all = histogram();
        for shard in &self.shards {
            if let Ok(shard) = shard.lock() {
                let _ = all.add(&*shard);
            }
        }
        all
    }
}

/// A clock every task of one run shares: send times travel in the message as microseconds
/// since [`Clock::start`], so sender and receiver compare like with like.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
}

impl Clock {
    pub fn start() -> Self {
        Self {
            start: Instant::now(),
        }
    }

    pub fn micros(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }
}

/// Milliseconds at a quantile of a histogram of microseconds.
pub fn ms_at(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    if histogram.is_empty() {
        return 0.0;
    }
    histogram.value_at_quantile(quantile) as f64 / 1000.0
}
