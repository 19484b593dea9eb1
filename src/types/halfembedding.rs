//! `halfembedding`: the same vectors stored as f16 (half the space, for indexes and large
//! catalogues).

crate::vector_sql_functions!(halfembedding, half::f16);

#[pg_extern(sql = false)]
fn halfembedding_to_embedding(v: VecRef<half::f16>, typmod: i32, _explicit: bool) -> Vector<f32> {
    ops::check_typmod::<f32>(v.dim(), typmod);
    Vector(v.data.iter().map(|x| x.to_f32()).collect())
}
