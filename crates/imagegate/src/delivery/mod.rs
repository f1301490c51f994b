//! Image delivery beyond the stored original: the URLs clients get (`urls`), converted/resized
//! variants (made once, stored, deleted with their original), the retention sweeper, the sweep
//! of orphaned objects, and export to the customer's bucket.

pub mod export;
pub mod orphans;
pub mod sweeper;
pub mod urls;
pub mod variants;
