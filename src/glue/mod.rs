//! What the SQL-facing modules share: errors raised with the SQLSTATE PostgreSQL would use, the
//! backend's thread pool, PostgreSQL's folders.

pub mod error;
pub mod paths;
pub mod pool;
pub mod xact;

pub use pool::pool;
