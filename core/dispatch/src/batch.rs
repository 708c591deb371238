//! When to flush the batch pool (06 §5): when it holds at least `min_orders`, or when the
//! window timer fires with at least one order. The timer is armed when an order enters an
//! empty pool (at the oldest order's pooling time) and re-armed after a flush that left orders.
//! Leftovers alone do not re-trigger the count rule (they would flush on every tick while no
//! driver is free); new arrivals and the window do.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchTimer {
    pub window_ms: i64,
    pub min_orders: usize,
    armed_at: Option<i64>,
    left_after_flush: usize,
}

impl BatchTimer {
    pub fn new(window_ms: i64, min_orders: usize) -> Self {
        Self {
            window_ms,
            min_orders,
            armed_at: None,
            left_after_flush: 0,
        }
    }

    /// Given the pool's size and its oldest order's pooling time, whether to flush now.
    pub fn due(&mut self, pooled: usize, oldest: Option<i64>, now: i64) -> bool {
        if pooled == 0 {
            self.armed_at = None;
            self.left_after_flush = 0;
            return false;
        }
        let armed = *self.armed_at.get_or_insert(oldest.unwrap_or(now).min(now));
        let by_count = pooled >= self.min_orders && pooled > self.left_after_flush;
        by_count || now - armed >= self.window_ms
    }

    /// When the window fires if nothing else flushes first (None while disarmed). A simulator
    /// wakes the batch job then instead of polling.
    pub fn next_due(&self) -> Option<i64> {
        self.armed_at.map(|a| a + self.window_ms)
    }

    /// After a flush that left `left` orders pooled.
    pub fn flushed(&mut self, left: usize, now: i64) {
        self.left_after_flush = left;
        self.armed_at = (left > 0).then_some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_or_window() {
        let mut t = BatchTimer::new(5000, 3);
        assert!(!t.due(0, None, 0));
        assert!(!t.due(1, Some(100), 200));
        assert!(!t.due(2, Some(100), 5099));
        assert!(
            t.due(2, Some(100), 5100),
            "the window fires with fewer than min"
        );
        t.flushed(0, 5100);
        assert!(t.due(3, Some(6000), 6000), "three orders flush at once");
        // Two could not be matched: they wait for the window, not every tick.
        t.flushed(2, 6000);
        assert!(!t.due(2, Some(6000), 6001));
        assert!(
            t.due(3, Some(6000), 6002),
            "a new arrival re-triggers the count"
        );
        t.flushed(3, 6002);
        assert!(!t.due(3, Some(6000), 11_001));
        assert!(t.due(3, Some(6000), 11_002));
        // The pool empties: the timer disarms, the next order arms it again.
        assert!(!t.due(0, None, 12_000));
        assert!(!t.due(1, Some(12_500), 13_000));
        assert!(t.due(1, Some(12_500), 17_500));
        assert_eq!(t.next_due(), Some(17_500));
    }
}
