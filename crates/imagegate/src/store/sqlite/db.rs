//! SQLite connections, used in place on the calling thread.
//!
//! Why not sqlx here: sqlx runs every SQLite statement on a per-connection worker thread and
//! hands each one over through a channel, and those handoffs were measured at ~40 % of the CPU
//! of a sync request (bench/RESULTS.md). A statement on a warm page cache takes microseconds,
//! so it runs right where it is asked for instead:
//! - one writer connection behind a mutex (SQLite allows one writer anyway), each write a short
//!   `BEGIN IMMEDIATE … COMMIT`; WAL with `synchronous = NORMAL`, so a commit does not fsync and
//!   survives a process crash (not a power cut before the next checkpoint);
//! - a small stack of read-only connections (WAL readers never wait for the writer);
//! - checkpoints run on their own thread (PASSIVE, every `CHECKPOINT_EVERY`), never inside a
//!   request's commit.

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::store::StoreError;

const READERS_KEPT: usize = 8;
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Db {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    /// Ends the checkpoint thread when the store is dropped.
    alive: Arc<()>,
}

fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(64);
    conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;")?;
    Ok(())
}

impl Db {
    /// Opens (creating if needed) the database at `path`; `None` for a private in-memory one.
    pub fn open(path: Option<&Path>) -> Result<Db, StoreError> {
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
        writer
            .execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0;")?;
        let db = Db { path, writer: Mutex::new(writer), readers: Mutex::new(Vec::new()), alive: Arc::new(()) };
        db.start_checkpoints();
        Ok(db)
    }

    fn open_reader(&self) -> Result<Connection, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags)?;
        configure(&conn)?;
        Ok(conn)
    }

    /// Runs `f` in a write transaction (committed when `f` returns `Ok`, rolled back otherwise).
    pub fn write<R>(&self, f: impl FnOnce(&Connection) -> Result<R, StoreError>) -> Result<R, StoreError> {
        let mut conn = self.writer.lock().map_err(|_| StoreError::Unavailable("writer lock poisoned".into()))?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
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
        let mut conn = self.writer.lock().map_err(|_| StoreError::Unavailable("writer lock poisoned".into()))?;
        f(&mut conn)
    }

    fn start_checkpoints(&self) {
        if self.path.to_string_lossy().contains("mode=memory") {
            return;
        }
        let weak = Arc::downgrade(&self.alive);
        let path = self.path.clone();
        let spawned = std::thread::Builder::new().name("sqlite-checkpoint".into()).spawn(move || {
            let Ok(conn) = Connection::open(&path) else { return };
            let _ = conn.busy_timeout(Duration::from_millis(100));
            while weak.upgrade().is_some() {
                std::thread::sleep(CHECKPOINT_EVERY);
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::debug!(error = %e, "checkpoint skipped");
                }
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no checkpoint thread; the WAL will grow until restart");
        }
    }
}
