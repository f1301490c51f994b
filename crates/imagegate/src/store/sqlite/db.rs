//! SQLite connections, used in place on the calling thread.
//!
//! Why not sqlx here: sqlx runs every SQLite statement on a per-connection worker thread and
//! hands each one over through a channel, and those handoffs were measured at ~40 % of the CPU
//! of a sync request (bench/RESULTS.md). A statement on a warm page cache takes microseconds,
//! so it runs right where it is asked for instead:
//! - one writer connection behind a mutex (SQLite allows one writer anyway), each write a short
//!   `BEGIN IMMEDIATE … COMMIT`; WAL with `synchronous = NORMAL` on `process` durability (a
//!   commit does not fsync and survives a process crash, not a power cut before the next
//!   checkpoint) or `FULL` on `power` durability (every commit fsyncs the log);
//! - a small stack of read-only connections (WAL readers never wait for the writer);
//! - checkpoints (PASSIVE) on their own connection, called by the flush loop
//!   (`crate::flush`) after the images it flushed, never inside a request's commit.
//!
//! A write can wait: for the writer mutex while another write runs, and for SQLite's lock
//! (up to the busy timeout) while another process writes (the CLI, a backup). Such a wait must
//! not hold a runtime worker thread (two would stall a 2-core runtime). So a write first tries
//! without waiting at all (the mutex free, SQLite's lock free: nearly always), right where it
//! is; only when it would wait does it move into `tokio::task::block_in_place`, which hands the
//! thread's other tasks to another worker first. (Every write in `block_in_place` cost ~16 % of
//! sync throughput; every batch on the blocking pool ~40 %: bench/RESULTS.md.) Reads stay in
//! place: WAL readers never wait for the writer.

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use crate::domain::durability::Durability;
use crate::store::StoreError;

const READERS_KEPT: usize = 8;

/// Why a write transaction did not happen.
enum Transact<F> {
    /// Another process holds SQLite's lock; `f` was not run and is handed back.
    Busy(F),
    Failed(StoreError),
}

impl<F> Transact<F> {
    fn into_error(self) -> StoreError {
        match self {
            Transact::Busy(_) => StoreError::Unavailable("the database stayed locked by another process".into()),
            Transact::Failed(e) => e,
        }
    }
}

/// `BEGIN IMMEDIATE`, `f`, `COMMIT` (rolled back when `f` fails).
fn transact<R, F: FnOnce(&Connection) -> Result<R, StoreError>>(conn: &mut Connection, f: F) -> Result<R, Transact<F>> {
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) if is_busy(&e) => return Err(Transact::Busy(f)),
        Err(e) => return Err(Transact::Failed(e.into())),
    };
    let out = f(&tx).map_err(Transact::Failed)?;
    tx.commit().map_err(|e| Transact::Failed(e.into()))?;
    Ok(out)
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
}

/// Runs blocking work so that it holds no runtime worker: on a multi-threaded runtime the
/// worker's other tasks move to another thread first; elsewhere (a current-thread runtime, a
/// plain thread) it just runs.
fn off_runtime<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Db {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    /// The checkpoints' own connection (opened at the first one).
    checkpointer: Mutex<Option<Connection>>,
}

fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(64);
    conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;")?;
    Ok(())
}

impl Db {
    /// Opens (creating if needed) the database at `path`; `None` for a private in-memory one.
    pub fn open(path: Option<&Path>, durability: Durability) -> Result<Db, StoreError> {
        let path = match path {
            Some(p) => p.to_path_buf(),
            // A uniquely named shared-cache memory database, so readers see the writer's data.
            None => PathBuf::from(format!("file:imagegate-mem-{}?mode=memory&cache=shared", ulid::Ulid::new())),
        };
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
            && !path.to_string_lossy().starts_with("file:")
        {
            let _ = std::fs::create_dir_all(dir);
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let writer = Connection::open_with_flags(&path, flags)?;
        configure(&writer)?;
        let synchronous = match durability {
            Durability::Process => "NORMAL",
            Durability::Power => "FULL",
        };
        writer.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; PRAGMA wal_autocheckpoint = 0;"
        ))?;
        // Writes wait (when they must) in `write`'s slow path, off the runtime's threads.
        writer.busy_timeout(Duration::ZERO)?;
        Ok(Db { path, writer: Mutex::new(writer), readers: Mutex::new(Vec::new()), checkpointer: Mutex::new(None) })
    }

    fn open_reader(&self) -> Result<Connection, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags)?;
        configure(&conn)?;
        Ok(conn)
    }

    /// Runs `f` in a write transaction (committed when `f` returns `Ok`, rolled back otherwise);
    /// any waiting happens off the runtime's worker threads.
    pub fn write<R>(&self, f: impl FnOnce(&Connection) -> Result<R, StoreError>) -> Result<R, StoreError> {
        // Without waiting: the writer connection has no busy timeout, so a lock held by another
        // process answers BUSY at once instead of blocking here; `f` has not run then.
        let f = match self.writer.try_lock() {
            Ok(mut conn) => match transact(&mut conn, f) {
                Err(Transact::Busy(f)) => f,
                done => return done.map_err(Transact::into_error),
            },
            Err(std::sync::TryLockError::WouldBlock) => f,
            Err(std::sync::TryLockError::Poisoned(_)) => {
                return Err(StoreError::Unavailable("writer lock poisoned".into()));
            }
        };
        off_runtime(|| {
            let mut conn = self.writer.lock().map_err(|_| StoreError::Unavailable("writer lock poisoned".into()))?;
            conn.busy_timeout(BUSY_TIMEOUT)?;
            let done = transact(&mut conn, f).map_err(Transact::into_error);
            conn.busy_timeout(Duration::ZERO)?;
            done
        })
    }

    /// Runs `f` on a read-only connection (a consistent snapshot for its duration when it reads
    /// in one statement; several statements see the latest commits).
    pub fn read<R>(&self, f: impl FnOnce(&Connection) -> Result<R, StoreError>) -> Result<R, StoreError> {
        let conn = match self.readers.lock().map_err(|_| StoreError::Unavailable("reader lock poisoned".into()))?.pop()
        {
            Some(c) => c,
            None => self.open_reader()?,
        };
        let out = f(&conn);
        if let Ok(mut pool) = self.readers.lock()
            && pool.len() < READERS_KEPT
        {
            pool.push(conn);
        }
        out
    }

    /// Runs `f` on the writer connection outside any transaction (migrations manage their own).
    pub fn with_writer<R>(&self, f: impl FnOnce(&mut Connection) -> Result<R, StoreError>) -> Result<R, StoreError> {
        off_runtime(|| {
            let mut conn = self.writer.lock().map_err(|_| StoreError::Unavailable("writer lock poisoned".into()))?;
            conn.busy_timeout(BUSY_TIMEOUT)?;
            let out = f(&mut conn);
            conn.busy_timeout(Duration::ZERO)?;
            out
        })
    }

    /// Copies the log's committed pages into the database file (PASSIVE: it never waits for
    /// readers or the writer, and leaves what it cannot copy for the next time).
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        if self.path.to_string_lossy().contains("mode=memory") {
            return Ok(());
        }
        let mut slot =
            self.checkpointer.lock().map_err(|_| StoreError::Unavailable("checkpoint lock poisoned".into()))?;
        let conn = match slot.take() {
            Some(c) => c,
            None => {
                let c = Connection::open(&self.path)?;
                c.busy_timeout(Duration::from_millis(100))?;
                c
            }
        };
        let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        *slot = Some(conn);
        Ok(done?)
    }
}
