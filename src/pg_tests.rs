//! Tests that run inside a real PostgreSQL backend (`cargo pgrx test`). The SQL-level behaviour of
//! every type, operator and error is covered by the pg_regress cases in `pg_test/`.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn libtorch_convolution_runs_inside_a_backend() {
        // A 4×4 ramp 0..15 convolved with a 3×3 kernel of ones (no padding) gives four sums of
        // 3×3 windows: 45, 54, 81, 90. Through the engine library, which `make pgrx-test`
        // installs beside the main library.
        let via_sql = Spi::get_one::<f64>("SELECT visual_search.torch_smoke()").unwrap().unwrap();
        assert_eq!(via_sql, 270.0);
    }

    #[pg_test]
    fn embedding_round_trips_through_sql() {
        let s = Spi::get_one::<String>("SELECT '[1, 2.5, -3]'::embedding(3)::text").unwrap().unwrap();
        assert_eq!(s, "[1,2.5,-3]");
        let d = Spi::get_one::<f64>("SELECT '[0,0]'::embedding <-> '[3,4]'").unwrap().unwrap();
        assert_eq!(d, 5.0);
    }

    #[pg_test(error = "expected 3 dimensions, not 2")]
    fn typmod_mismatch_is_an_error() {
        Spi::run("SELECT '[1,2]'::embedding(3)").unwrap();
    }
}
