//! Independent runs spread over threads: each thread takes the next index from a shared counter
//! (so a slow run does not hold up the others), and results come back in index order whatever
//! the thread count. `sim sweep` and `sim plan` use it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// `f(0), f(1), ..., f(n - 1)` on up to `threads` threads, in index order; `done(k)` is called
/// after each run with the number finished so far (for a progress line).
pub fn map<T: Send>(
    n: usize,
    threads: usize,
    f: impl Fn(usize) -> T + Sync,
    done: impl Fn(usize) + Sync,
) -> Vec<T> {
    let next = AtomicUsize::new(0);
    let finished = AtomicUsize::new(0);
    let slots: Mutex<Vec<Option<T>>> = Mutex::new((0..n).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1).min(n.max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let out = f(i);
                slots.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(out);
                done(finished.fetch_add(1, Ordering::Relaxed) + 1);
            });
        }
    });
    slots
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|s| s.expect("every index was taken"))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn results_come_back_in_index_order_on_any_thread_count() {
        for threads in [1, 2, 7] {
            let out = super::map(50, threads, |i| i * i, |_| {});
            assert_eq!(out, (0..50).map(|i| i * i).collect::<Vec<_>>());
        }
        assert!(super::map(0, 4, |i| i, |_| {}).is_empty());
    }
}
