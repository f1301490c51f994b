//! Image delivery beyond the stored original: the URLs clients get (`urls`), converted/resized
//! variants (made once, stored, deleted with their original), the retention sweeper, and export
//! to the customer's bucket.

pub mod export;
pub mod sweeper;
pub mod urls;
pub mod variants;
