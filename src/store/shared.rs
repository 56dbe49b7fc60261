//! The one bridge from async code to the store.
//!
//! SQLite calls block, and a `rusqlite::Connection` is `Send` but not `Sync`: holding one
//! across an `.await` makes the future `!Send` (rusqlite/rusqlite#1013). So a task never
//! touches the connection itself; it hands a closure to [`Shared::run`], which runs it on
//! tokio's blocking pool with the store behind a mutex, one call at a time.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use super::{Result, Store, StoreError};

/// A [`Store`] that async tasks share; clones share the same store.
#[derive(Clone)]
pub struct Shared(Arc<Mutex<Store>>);

impl Shared {
    /// Shares `store`.
    pub fn new(store: Store) -> Self {
        Self(Arc::new(Mutex::new(store)))
    }

    /// Runs `f` with the store on a blocking thread once no other call holds it, and returns
    /// what `f` returned.
    ///
    /// # Errors
    /// `f`'s own, or [`StoreError::Task`] when `f` panicked or the runtime is shutting down.
    pub async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Store) -> Result<T> + Send + 'static,
    {
        let store = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || {
            // A call that panicked left nothing half done: its transaction, if it had one, was
            // dropped and so rolled back. The store is as good as before.
            let mut store = store.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut store)
        })
        .await
        .map_err(StoreError::Task)?
    }
}

impl From<Store> for Shared {
    fn from(store: Store) -> Self {
        Self::new(store)
    }
}

/// For callers that also lock the store themselves, outside async code (tests, start-up).
impl From<Arc<Mutex<Store>>> for Shared {
    fn from(store: Arc<Mutex<Store>>) -> Self {
        Self(store)
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::mailbox_state;
    use crate::store::tests::temp_store;

    #[tokio::test]
    async fn a_panicking_call_is_an_error_and_the_store_stays_usable() {
        let (_d, store) = temp_store();
        let shared = Shared::new(store);
        let panicked = shared
            .run(|_| -> Result<()> { panic!("in the closure") })
            .await;
        assert!(matches!(panicked, Err(StoreError::Task(_))), "{panicked:?}");
        let state = shared
            .run(|s| mailbox_state(s.conn(), "u/INBOX"))
            .await
            .unwrap();
        assert_eq!((state.name.as_str(), state.last_uid), ("u/INBOX", 0));
    }
}
