//! What the SQL-facing modules share: errors raised with the SQLSTATE PostgreSQL would use, and
//! the backend's thread pool.

pub mod error;
pub mod pool;

pub use pool::pool;
