//! Latency histograms with logarithmic buckets: a fixed size whatever the
//! number of samples, with a relative error set by the sub-buckets per
//! power of two (8: about 9%, for one point of a chart; 32: about 3%, for
//! the run's quantiles and the histogram).

/// Powers of two of microseconds covered: 1 µs to about 12 days.
const OCTAVES: u32 = 40;

/// Counts of samples by bucket.
#[derive(Debug, Clone)]
pub struct LogHist {
    bits: u32,
    counts: Vec<u64>,
    n: u64,
    max_us: u64,
    min_us: u64,
}

impl LogHist {
    /// A histogram with 2^`bits` sub-buckets per power of two.
    pub fn new(bits: u32) -> Self {
        Self {
            bits,
            counts: vec![0; (OCTAVES << bits) as usize],
            n: 0,
            max_us: 0,
            min_us: u64::MAX,
        }
    }

    fn index(&self, us: u64) -> usize {
        let us = us.max(1);
        let log = 63 - us.leading_zeros();
        let frac = if log >= self.bits {
            (us >> (log - self.bits)) & ((1 << self.bits) - 1)
        } else {
            (us << (self.bits - log)) & ((1 << self.bits) - 1)
        };
        (((log.min(OCTAVES - 1)) << self.bits) as usize + frac as usize).min(self.counts.len() - 1)
    }

    /// The smallest value of bucket `i`, in microseconds.
    fn lower(&self, i: usize) -> u64 {
        let log = (i >> self.bits) as u32;
        let frac = (i & ((1 << self.bits) - 1)) as u64;
        if log >= self.bits {
            (1u64 << log) | (frac << (log - self.bits))
        } else {
            ((1u64 << self.bits) | frac) >> (self.bits - log)
        }
    }

    /// Adds one sample, in milliseconds (negative and NaN count as 0).
    pub fn add_ms(&mut self, ms: f64) {
        let us = if ms.is_finite() && ms > 0.0 {
            (ms * 1000.0).min(1e15) as u64
        } else {
            0
        };
        let i = self.index(us);
        self.counts[i] += 1;
        self.n += 1;
        self.max_us = self.max_us.max(us);
        self.min_us = self.min_us.min(us);
    }

    /// How many samples.
    pub fn count(&self) -> u64 {
        self.n
    }

    /// The q-quantile in milliseconds (within the bucket's width).
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        if self.n == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.n as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let v = self.lower(i).clamp(self.min_us, self.max_us);
                return Some(v as f64 / 1000.0);
            }
        }
        Some(self.max_us as f64 / 1000.0)
    }

    /// The largest sample, in milliseconds.
    pub fn max_ms(&self) -> f64 {
        self.max_us as f64 / 1000.0
    }

    /// The samples regrouped into `bins` bins equally wide on a log scale
    /// from the smallest to the largest: (lower edge ms, upper edge ms,
    /// count) each.
    pub fn log_bins(&self, bins: usize) -> Vec<(f64, f64, u64)> {
        if self.n == 0 || bins == 0 {
            return Vec::new();
        }
        let lo = (self.min_us.max(1) as f64).ln();
        let hi = (self.max_us.max(1) as f64).ln().max(lo + 1e-9);
        let width = (hi - lo) / bins as f64;
        let mut out: Vec<(f64, f64, u64)> = (0..bins)
            .map(|b| {
                let a = (lo + width * b as f64).exp() / 1000.0;
                let z = (lo + width * (b + 1) as f64).exp() / 1000.0;
                (a, z, 0)
            })
            .collect();
        for (i, &c) in self.counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let v = (self.lower(i).clamp(self.min_us.max(1), self.max_us.max(1)) as f64).ln();
            let b = (((v - lo) / width) as usize).min(bins - 1);
            out[b].2 += c;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_the_bucket_width() {
        let mut h = LogHist::new(5);
        for ms in 1..=1000 {
            h.add_ms(f64::from(ms));
        }
        let p50 = h.quantile_ms(0.5).expect("samples");
        let p99 = h.quantile_ms(0.99).expect("samples");
        assert!((480.0..=505.0).contains(&p50), "{p50}");
        assert!((960.0..=1000.0).contains(&p99), "{p99}");
        assert_eq!(h.max_ms(), 1000.0);
        let bins = h.log_bins(10);
        assert_eq!(bins.iter().map(|b| b.2).sum::<u64>(), 1000);
        // Log bins: the last one (from 501 ms to 1 s) holds about half.
        assert!((450..=550).contains(&bins[9].2), "{bins:?}");
        assert_eq!(LogHist::new(3).quantile_ms(0.5), None);
    }
}
