//! Shared quotas (request rates, upstream channels' call slots) in memory: one process serves
//! an SQLite database, so what it counts is the whole count.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::domain::rate::Gcra;
use crate::store::StoreError;

#[derive(Default)]
pub struct Quota {
    /// Bucket → TAT (µs).
    rates: Mutex<HashMap<String, i64>>,
    /// `(scope, slot)` → `(holder, lease end)`.
    slots: Mutex<HashMap<(String, u32), (String, i64)>>,
}

fn poisoned<T>(_: T) -> StoreError {
    StoreError::Unavailable("quota table poisoned".into())
}

impl Quota {
    pub fn take_rate(&self, bucket: &str, per_minute: u32, now_ms: i64) -> Result<Option<Duration>, StoreError> {
        let gcra = Gcra::per_minute(per_minute);
        let mut rates = self.rates.lock().map_err(poisoned)?;
        match gcra.take(rates.get(bucket).copied(), now_ms * 1000) {
            Ok(tat) => {
                rates.insert(bucket.to_string(), tat);
                Ok(None)
            }
            Err(wait_us) => Ok(Some(Duration::from_micros(wait_us.max(0) as u64))),
        }
    }

    pub fn take_slot(
        &self,
        scope: &str,
        max: u32,
        holder: &str,
        until_ms: i64,
        now_ms: i64,
    ) -> Result<Option<u32>, StoreError> {
        let mut slots = self.slots.lock().map_err(poisoned)?;
        for slot in 0..max {
            let key = (scope.to_string(), slot);
            if slots.get(&key).is_none_or(|(_, until)| *until < now_ms) {
                slots.insert(key, (holder.to_string(), until_ms));
                return Ok(Some(slot));
            }
        }
        Ok(None)
    }

    pub fn renew_slot(&self, scope: &str, slot: u32, holder: &str, until_ms: i64) -> Result<bool, StoreError> {
        let mut slots = self.slots.lock().map_err(poisoned)?;
        match slots.get_mut(&(scope.to_string(), slot)) {
            Some((h, until)) if h == holder => {
                *until = until_ms;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    pub fn release_slot(&self, scope: &str, slot: u32, holder: &str) -> Result<(), StoreError> {
        let mut slots = self.slots.lock().map_err(poisoned)?;
        let key = (scope.to_string(), slot);
        if slots.get(&key).is_some_and(|(h, _)| h == holder) {
            slots.remove(&key);
        }
        Ok(())
    }
}
