//! The lease keeper: renews this hub's lease four times per lease, reporting its last known
//! load, and nothing else, so that a busy actor or a slow take-over never makes it miss one.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hive_store::{Renewal, StoreError};

use super::{Shared, blocking, lock};

pub(super) async fn keep(shared: Arc<Shared>, lease: Duration) {
    // Four beats per lease: a lease survives three missed ones. The first beat is at once.
    let mut beat = tokio::time::interval(lease / 4);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        beat.tick().await;
        let load = lock(&shared.load).clone();
        let store = shared.store.clone();
        match blocking(move || store.renew(&load)).await {
            Ok(Renewal::Renewed { others }) => shared.others.store(others, Ordering::Relaxed),
            Ok(Renewal::Lost) | Err(StoreError::LeaseLost) => {
                shared.lose("this hub lost its lease: another hub took its tasks over");
                return;
            }
            // The database is away: the lease runs out unless it returns in time, and the
            // fence keeps this hub's late writes out if it does not.
            Err(e) => tracing::warn!(error = %e, "could not renew this hub's lease"),
        }
    }
}
