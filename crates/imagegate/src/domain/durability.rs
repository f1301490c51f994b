//! What a finished task survives (`[storage] durability`), a setting both seams that hold it
//! (the store's commits, the blob store's writes) obey; neither knows of the other.
//! - `process` (default): a task's row and its image are written before the client hears of
//!   them, so a crash, `kill -9` or restart of the gateway at any point loses nothing. On the
//!   embedded deployment (SQLite and a local folder) they reach the disk together at the next
//!   flush (`crate::flush`): first the images, then the database checkpoint. A power cut or
//!   kernel crash may lose the work of the last moments, as SQLite's `synchronous = NORMAL` does.
//! - `power`: every image is fsynced, and every commit too (`synchronous = FULL`), before the
//!   client is answered: also survives a power cut, for a device flush per request.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Survives any crash of the process; put on the disk every half second by the flush loop
    /// (`crate::flush`).
    #[default]
    Process,
    /// Also survives a power cut: fsync before every answer.
    Power,
}

impl Durability {
    pub fn parse(s: &str) -> Option<Durability> {
        match s {
            "process" => Some(Durability::Process),
            "power" => Some(Durability::Power),
            _ => None,
        }
    }
}
