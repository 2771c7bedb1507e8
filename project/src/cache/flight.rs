//! Single flight inside one process: of many tasks that miss the same key at the same moment,
//! one computes and the others wait for it.
//!
//! It is one async mutex per key, made when a task first asks for the key and forgotten when the
//! last task that asked is done, so the map holds only the keys being computed right now. The
//! map itself is behind a `std::sync::Mutex` (not a Tokio one): it is held for a lookup only,
//! never across an `.await`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::OwnedMutexGuard;

/// The keys being computed, each with its turn lock and how many tasks hold or wait for it.
#[derive(Default)]
pub(super) struct Flights {
    keys: Mutex<HashMap<String, Slot>>,
}

struct Slot {
    turn: Arc<tokio::sync::Mutex<()>>,
    /// Tasks that hold or wait for `turn`; the slot is removed when it drops to zero.
    tasks: usize,
}

/// A task's turn on one key: while it lives, no other task of this process has the turn on that
/// key. Dropping it (also when the request is cancelled) hands the turn to the next waiter.
pub(super) struct Turn<'a> {
    flights: &'a Flights,
    key: String,
    _guard: Option<OwnedMutexGuard<()>>,
}

impl Flights {
    /// Waits until this task is the only one of the process working on `key`.
    pub(super) async fn turn(&self, key: &str) -> Turn<'_> {
        let lock = {
            let mut keys = self.keys();
            let slot = keys.entry(key.to_owned()).or_insert_with(|| Slot {
                turn: Arc::default(),
                tasks: 0,
            });
            slot.tasks += 1;
            slot.turn.clone()
        };
        // Made before waiting, so that a task cancelled while waiting still counts itself out.
        let mut turn = Turn {
            flights: self,
            key: key.to_owned(),
            _guard: None,
        };
        turn._guard = Some(lock.lock_owned().await);
        turn
    }

    /// How many keys are being computed (or waited for) right now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.keys().len()
    }

    fn keys(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        // Nothing can panic while the map is locked, but a poisoned map would still be consistent.
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut keys = self.flights.keys();
        if let Some(slot) = keys.get_mut(&self.key) {
            slot.tasks -= 1;
            if slot.tasks == 0 {
                keys.remove(&self.key);
            }
        }
        // `_guard` is dropped after this: the next waiter, if any, gets the turn.
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn one_task_at_a_time_per_key_and_nothing_left_behind() {
        let flights = Arc::new(Flights::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (flights, inside, most) = (flights.clone(), inside.clone(), most.clone());
                tokio::spawn(async move {
                    let _turn = flights.turn("k").await;
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    inside.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1);
        assert_eq!(flights.len(), 0);
    }

    #[tokio::test]
    async fn a_waiter_cancelled_while_waiting_leaves_nothing_behind() {
        let flights = Flights::default();
        let first = flights.turn("k").await;
        let waiting = tokio::time::timeout(Duration::from_millis(10), flights.turn("k")).await;
        assert!(waiting.is_err(), "the key was taken");
        drop(first);
        assert_eq!(flights.len(), 0);
    }

    #[tokio::test]
    async fn different_keys_do_not_wait_for_each_other() {
        let flights = Flights::default();
        let _a = flights.turn("a").await;
        let b = tokio::time::timeout(Duration::from_secs(5), flights.turn("b")).await;
        assert!(b.is_ok());
    }
}
