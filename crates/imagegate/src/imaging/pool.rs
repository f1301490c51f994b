//! The bounded pool every image conversion runs on (variants of stored images, and the
//! worker's `output_format` transcoding).
//!
//! A conversion holds full-size pixel buffers (50–150 MB for a 4K image), so how many run at
//! once bounds the gateway's memory, and anyone holding an image URL can ask for one. Three
//! rules keep that bound whatever clients do:
//! - a job's slot is held by the blocking work itself and given back when that work ends, not
//!   when the request that asked for it goes away (a dropped future cannot free a slot while a
//!   decode still runs);
//! - at most `queue` jobs wait for a slot; anonymous callers (`try_run`) are refused at once
//!   beyond that, and answer 503 with `Retry-After`;
//! - paid work (`run`: the worker's transcoding) waits its turn in the same queue instead.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// Every slot is taken and the wait queue is full: try again shortly.
    #[error("every conversion slot is busy")]
    Busy,
    /// The blocking work panicked or the runtime is shutting down.
    #[error("the conversion stopped: {0}")]
    Stopped(#[from] tokio::task::JoinError),
}

pub struct Pool {
    slots: Arc<Semaphore>,
    size: usize,
    max_queue: usize,
    /// Jobs admitted and not yet ended (waiting for a slot, or running).
    load: Arc<AtomicUsize>,
    /// Jobs running now, and the most that ever ran at once.
    running: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

/// A job's place in the pool, from admission until its work ends (or it is dropped unused).
/// Owned, so that it can be handed to a task that outlives the request that took it.
pub struct Ticket {
    load: Arc<AtomicUsize>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.load.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Pool {
    /// `size` jobs at once (0: one per core), at most `max_queue` waiting for anonymous callers.
    pub fn new(size: usize, max_queue: usize) -> Pool {
        let size = if size == 0 { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2) } else { size };
        Pool {
            slots: Arc::new(Semaphore::new(size)),
            size,
            max_queue,
            load: Arc::new(AtomicUsize::new(0)),
            running: Arc::new(AtomicUsize::new(0)),
            peak: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Jobs that may run at once.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The most jobs that ever ran at once in this pool.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Jobs running now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }

    /// A place in the queue, or `Busy` when no slot is free and the queue is full. Taking the
    /// place first lets a caller refuse a request before starting anything for it.
    pub fn reserve(&self) -> Result<Ticket, PoolError> {
        let (ticket, before) = self.ticket();
        if before >= self.size + self.max_queue {
            return Err(PoolError::Busy);
        }
        Ok(ticket)
    }

    /// A ticket counted in the load, and the load before it.
    fn ticket(&self) -> (Ticket, usize) {
        let before = self.load.fetch_add(1, Ordering::AcqRel);
        (Ticket { load: Arc::clone(&self.load) }, before)
    }

    /// Jobs admitted and waiting for a slot.
    pub fn waiting(&self) -> usize {
        self.load.load(Ordering::Acquire).saturating_sub(self.running())
    }

    /// Runs `f` on a slot once one is free (after `reserve`).
    pub async fn run_reserved<T: Send + 'static>(
        &self,
        ticket: Ticket,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PoolError> {
        let permit = match Arc::clone(&self.slots).acquire_owned().await {
            Ok(p) => p,
            Err(_) => return Err(PoolError::Busy),
        };
        self.spawn(permit, ticket, f).await
    }

    /// Runs `f` when a slot is free, refusing at once when the queue is full.
    pub async fn try_run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, PoolError> {
        let ticket = self.reserve()?;
        self.run_reserved(ticket, f).await
    }

    /// Runs `f` when a slot is free, however long that takes (paid work).
    pub async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, PoolError> {
        let (ticket, _) = self.ticket();
        self.run_reserved(ticket, f).await
    }

    /// The permit and ticket move into the blocking closure: they are released when the work
    /// ends, even if the awaiting future was dropped long before.
    async fn spawn<T: Send + 'static>(
        &self,
        permit: OwnedSemaphorePermit,
        ticket: Ticket,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PoolError> {
        let running = Arc::clone(&self.running);
        let peak = Arc::clone(&self.peak);
        let now = running.fetch_add(1, Ordering::AcqRel) + 1;
        peak.fetch_max(now, Ordering::AcqRel);
        let job = tokio::task::spawn_blocking(move || {
            let out = f();
            running.fetch_sub(1, Ordering::AcqRel);
            drop(permit);
            drop(ticket);
            out
        });
        Ok(job.await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_slot_is_held_until_the_work_ends_even_when_its_caller_gives_up() {
        let pool = Arc::new(Pool::new(1, 0));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let p = Arc::clone(&pool);
        let caller = tokio::spawn(async move { p.try_run(move || rx.recv_timeout(Duration::from_secs(5))).await });
        while pool.running() == 0 {
            tokio::task::yield_now().await;
        }
        caller.abort();
        let _ = caller.await;
        assert!(matches!(pool.try_run(|| ()).await, Err(PoolError::Busy)), "the abandoned work still holds the slot");
        tx.send(()).unwrap();
        while pool.running() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(pool.try_run(|| ()).await.is_ok(), "free once the work really ended");
        assert_eq!(pool.peak(), 1);
    }

    #[tokio::test]
    async fn the_queue_is_bounded_for_try_run_but_run_waits() {
        let pool = Arc::new(Pool::new(1, 1));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let p = Arc::clone(&pool);
        let first = tokio::spawn(async move { p.try_run(move || rx.recv_timeout(Duration::from_secs(5))).await });
        while pool.running() == 0 {
            tokio::task::yield_now().await;
        }
        let p = Arc::clone(&pool);
        let queued = tokio::spawn(async move { p.try_run(|| 2).await });
        while pool.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(pool.try_run(|| 3).await, Err(PoolError::Busy)), "one running, one waiting: full");
        let p = Arc::clone(&pool);
        let paid = tokio::spawn(async move { p.run(|| 4).await });
        tx.send(()).unwrap();
        assert!(first.await.unwrap().is_ok());
        assert_eq!(queued.await.unwrap().unwrap(), 2);
        assert_eq!(paid.await.unwrap().unwrap(), 4);
        assert_eq!(pool.peak(), 1);
    }
}
