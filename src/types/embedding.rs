//! `embedding`: float32 vectors. I/O, typmod, casts, operators and aggregates are defined by
//! `vector_sql_functions!`; the SQL that binds them is in `sql/visual_search--0.1.0.sql`.

crate::vector_sql_functions!(embedding, f32);

/// embedding → halfembedding; values beyond f16's range are an error, not infinity.
#[pg_extern(sql = false)]
fn embedding_to_halfembedding(v: VecRef<f32>, typmod: i32, _explicit: bool) -> Vector<half::f16> {
    use vs_vector::text::check_f64;
    ops::check_typmod::<half::f16>(v.dim(), typmod);
    let checked = v.data.iter().map(|&x| check_f64(x as f64, <half::f16 as crate::types::datum::SqlScalar>::MAX).unwrap_or_else(|e| ops::fail::<half::f16>(e)));
    ops::from_values(checked.collect::<Vec<_>>())
}
