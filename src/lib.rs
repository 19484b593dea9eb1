//! visual_search: a PostgreSQL extension that makes a product catalogue visually searchable.
//!
//! The PostgreSQL glue over the crates of crates/: `types` the vector types (over `vs_vector`),
//! `index` the vs_hnsw access method (over `vs_hnsw`), `embed` image_embed (through the
//! embedding service, or the engine library in the backend: this library links no libtorch),
//! `service` the embedding service's worker and client, `guc` the settings, `glue`
//! what they share (errors with SQLSTATEs, the thread pool). The SQL objects are declared by
//! hand in `sql/visual_search.sql` (pulled in below), which binds the Rust functions by symbol.

use pgrx::prelude::*;

pub mod embed;
pub mod glue;
pub mod guc;
pub mod index;
pub mod service;
pub mod types;

::pgrx::pg_module_magic!(name, version);

// The install script of the current version (Cargo.toml's). It is a file of its own, not the
// first version's followed by the upgrades: 0.1.0's script created Hamming distance in the
// extension's schema, where pgvector's is, so replaying it would fail beside pgvector. The
// upgrade scripts (`sql/visual_search--<from>--<to>.sql`, installed by scripts/install.sh) lead
// there from 0.1.0; pg_test/sql/upgrade.sql checks they give the same objects.
pgrx::extension_sql_file!("../sql/visual_search.sql", name = "install_script", bootstrap);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    guc::init();
    index::options::init();
    service::start::register_at_server_start();
}

#[cfg(any(test, feature = "pg_test"))]
mod pg_tests;

/// Required at the crate root by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
