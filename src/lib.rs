//! visual_search: a PostgreSQL extension that makes a product catalogue visually searchable.
//!
//! `types` holds the vector types and distance kernels, `embed` the image → vector path on
//! libtorch, `guc` the settings. The SQL objects are declared by hand in
//! `sql/visual_search--0.1.0.sql` and the upgrade scripts after it (pulled in below), which binds the Rust functions by symbol.

use pgrx::prelude::*;

pub mod embed;
pub mod guc;
pub mod index;
pub mod train;
pub mod types;

::pgrx::pg_module_magic!(name, version);

// The install script of the current version is the first version's followed by every upgrade.
pgrx::extension_sql_file!("../sql/visual_search--0.1.0.sql", name = "install_script", bootstrap);
pgrx::extension_sql_file!("../sql/visual_search--0.1.0--0.2.0.sql", name = "upgrade_0_2_0", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    guc::init();
    index::am::init();
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
