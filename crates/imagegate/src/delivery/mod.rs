//! Image delivery beyond the stored original: converted/resized variants (made once, stored,
//! deleted with their original) and the retention sweeper.

pub mod sweeper;
pub mod variants;
