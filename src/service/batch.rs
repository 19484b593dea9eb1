//! One batch of the auto-embed drainer (`drain`): the claim, and for each table of it the read of
//! the rows' images, the embedding through the service and the write of the vectors.
//!
//! The rule that keeps vectors right: a vector is written only where the row's image is still
//! the one embedded (`IS NOT DISTINCT FROM` the bytes read), so a row updated meanwhile is left to
//! its newer entry and a deleted row is skipped. A key's entries in one claim are served at once
//! (the row's current image), and when a row is done its older failures go with it.
//!
//! The table is read and written as the role that set it up (`SET LOCAL ROLE`), with the search
//! path pinned: its triggers, policies and index expressions run with that role's privileges,
//! never the superuser's.

use crate::embed::engine::Failure;
use crate::glue::error::{engine_sqlstate, error, sqlstate_text};
use crate::glue::xact::Failed;
use crate::types::datum::vector_array;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::{self, quote_identifier};
use pgrx::PgSqlErrorCode::*;
use std::collections::HashMap;
use vs_engine_api::abi::Status;

/// An entry claimed by one attempt this often, the service lost each time, is the row's fault:
/// it is recorded as failed instead of being tried for ever (each retry runs it alone).
const MAX_ATTEMPTS: i32 = 3;

fn ok<T>(r: spi::Result<T>) -> T {
    r.unwrap_or_else(|e| error(ERRCODE_INTERNAL_ERROR, format!("auto-embed drainer: {e}")))
}

/// A queue entry this drainer now holds.
pub struct Claimed {
    id: i64,
    tbl: pg_sys::Oid,
    col: String,
    key: Vec<String>,
    attempts: i32,
}

/// What became of a row.
pub enum Outcome {
    /// Read, and to be embedded.
    Image(Vec<u8>),
    /// Its image is NULL: so is its vector.
    NoImage,
    Vector {
        image: Vec<u8>,
        vector: Vec<f32>,
    },
    Failed {
        image: Option<Vec<u8>>,
        sqlstate: String,
        message: String,
    },
    /// Deleted, or its key changed, before its turn: nothing to write.
    Gone,
}

/// One row of a claim, by key, with every entry of it that the claim holds.
pub struct Row {
    key: Vec<String>,
    ids: Vec<i64>,
    attempts: i32,
    pub outcome: Outcome,
}

impl Row {
    fn newest(&self) -> i64 {
        self.ids.iter().copied().max().unwrap_or_default()
    }

    fn image(&self) -> Option<&[u8]> {
        match &self.outcome {
            Outcome::Image(b) | Outcome::Vector { image: b, .. } => Some(b),
            Outcome::Failed { image, .. } => image.as_deref(),
            _ => None,
        }
    }

    fn fail(&mut self, sqlstate: String, message: String) {
        let image = self.image().map(<[u8]>::to_vec);
        self.outcome = Outcome::Failed { image, sqlstate, message };
    }
}

/// One table's share of a claim.
pub struct Group {
    pub tbl: pg_sys::Oid,
    col: String,
    pub rows: Vec<Row>,
}

impl Group {
    pub fn all_ids(&self) -> Vec<i64> {
        self.rows.iter().flat_map(|r| r.ids.iter().copied()).collect()
    }
}

/// How a table was set up, as the drainer reads and writes it.
pub struct Setup {
    table: String,
    image_col: String,
    model: String,
    key_cols: Vec<String>,
    key_types: Vec<String>,
    owner: pg_sys::Oid,
    role: String,
}

const CLAIM: &str = "
WITH c AS (
    SELECT q.id FROM visual_search.embedding_queue q
     WHERE q.failed_at IS NULL
       AND (q.claimed_by IS NULL OR NOT EXISTS (
            SELECT 1 FROM pg_stat_activity a
             WHERE a.pid = q.claimed_by AND a.backend_type = $2 AND a.backend_start <= q.claimed_at))
     ORDER BY q.id LIMIT $1
       FOR UPDATE SKIP LOCKED)
UPDATE visual_search.embedding_queue q
   SET claimed_by = pg_backend_pid(), claimed_at = now(), attempts = q.attempts + 1
  FROM c WHERE q.id = c.id
RETURNING q.id, q.tbl::oid, q.embedding_col::text, q.key, q.attempts";

/// Claims up to `limit` entries, oldest first: unclaimed ones and those of a drainer that is
/// gone (its pid not a drainer that started before the claim). `prune` also trims the rate log.
pub fn claim(limit: i64, prune: bool) -> Vec<Claimed> {
    ok(Spi::connect_mut(|c| {
        if prune {
            c.update("DELETE FROM visual_search.embedding_log WHERE at < now() - interval '2 minutes'", None, &[])?;
        }
        let t = c.update(CLAIM, None, &[limit.into(), super::drain_start::TYPE.into()])?;
        let mut out = Vec::with_capacity(t.len());
        for row in t {
            out.push(Claimed {
                id: row.get::<i64>(1)?.unwrap_or_default(),
                tbl: row.get::<pg_sys::Oid>(2)?.unwrap_or(pg_sys::InvalidOid),
                col: row.get::<String>(3)?.unwrap_or_default(),
                key: row.get::<Vec<Option<String>>>(4)?.unwrap_or_default().into_iter().map(Option::unwrap_or_default).collect(),
                attempts: row.get::<i32>(5)?.unwrap_or_default(),
            });
        }
        Ok(out)
    }))
}

/// Where a group is in the list, and where each of its keys is in the group.
type GroupIndex = (usize, HashMap<Vec<String>, usize>);

/// The claim by table and embedding column, each row once with all its entries.
pub fn by_table(claimed: Vec<Claimed>) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    let mut index: HashMap<(u32, String), GroupIndex> = HashMap::new();
    for c in claimed {
        let (g, rows) = index.entry((c.tbl.to_u32(), c.col.clone())).or_insert_with(|| {
            groups.push(Group { tbl: c.tbl, col: c.col.clone(), rows: Vec::new() });
            (groups.len() - 1, HashMap::new())
        });
        let group = &mut groups[*g];
        match rows.get(&c.key) {
            Some(&r) => {
                group.rows[r].ids.push(c.id);
                group.rows[r].attempts = group.rows[r].attempts.max(c.attempts);
            }
            None => {
                rows.insert(c.key.clone(), group.rows.len());
                group.rows.push(Row { key: c.key, ids: vec![c.id], attempts: c.attempts, outcome: Outcome::Gone });
            }
        }
    }
    groups
}

const SETUP: &str = "
SELECT a.tbl::text, a.image_col::text, a.model, a.key_cols::text[], a.owner::oid, r.rolname::text,
       (SELECT array_agg(format_type(t.atttypid, t.atttypmod) ORDER BY k.o)
          FROM unnest(a.key_cols) WITH ORDINALITY k(n, o)
          JOIN pg_attribute t ON t.attrelid = a.tbl AND t.attname = k.n AND NOT t.attisdropped)
  FROM visual_search.auto_embed_tables a LEFT JOIN pg_roles r ON r.oid = a.owner
 WHERE a.tbl = $1 AND a.embedding_col = $2";

fn strings(v: Option<Vec<Option<String>>>) -> Vec<String> {
    v.unwrap_or_default().into_iter().map(Option::unwrap_or_default).collect()
}

/// The key columns' values of `rows`, one text[] per column.
fn key_args<'a>(rows: &[&Row], n: usize) -> Vec<DatumWithOid<'a>> {
    (0..n).map(|i| rows.iter().map(|r| r.key.get(i).cloned().unwrap_or_default()).collect::<Vec<String>>().into()).collect()
}

/// `unnest($1::text[], …) WITH ORDINALITY AS x(k1, …, <extra>, ord)` and the join condition
/// of the table `t` on the key; the extra arrays follow the keys, typed by their arguments (the
/// pinned search path does not name the extension's types).
fn keyed(s: &Setup, extra: &[&str]) -> (String, String) {
    let n = s.key_cols.len();
    let mut params: Vec<String> = (1..=n).map(|i| format!("${i}::text[]")).collect();
    let mut names: Vec<String> = (1..=n).map(|i| format!("k{i}")).collect();
    for (i, name) in extra.iter().enumerate() {
        params.push(format!("${}", n + i + 1));
        names.push(name.to_string());
    }
    let on = s
        .key_cols
        .iter()
        .zip(&s.key_types)
        .enumerate()
        .map(|(i, (k, t))| format!("t.{} = x.k{}::{t}", quote_identifier(k), i + 1))
        .collect::<Vec<_>>()
        .join(" AND ");
    (format!("unnest({}) WITH ORDINALITY AS x({}, ord)", params.join(", "), names.join(", ")), on)
}

/// Reads the set-up and the rows' current images (in a transaction of the caller's). None when
/// the table is no longer set up (disable_auto_embed took its entries with it).
pub fn read(g: &mut Group) -> Option<Setup> {
    ok(Spi::connect_mut(|c| {
        let t = c.update(SETUP, None, &[g.tbl.into(), g.col.as_str().into()])?;
        if t.is_empty() {
            // Nothing else is claimed again for ever: entries of no set-up go.
            c.update("DELETE FROM visual_search.embedding_queue WHERE id = ANY($1)", None, &[g.all_ids().into()])?;
            return Ok(None);
        }
        let t = t.first();
        let s = Setup {
            table: t.get::<String>(1)?.unwrap_or_default(),
            image_col: t.get::<String>(2)?.unwrap_or_default(),
            model: t.get::<String>(3)?.unwrap_or_default(),
            key_cols: strings(t.get::<Vec<Option<String>>>(4)?),
            owner: t.get::<pg_sys::Oid>(5)?.unwrap_or(pg_sys::InvalidOid),
            role: t.get::<String>(6)?.unwrap_or_default(),
            key_types: strings(t.get::<Vec<Option<String>>>(7)?),
        };
        if s.role.is_empty() {
            error(ERRCODE_UNDEFINED_OBJECT, format!("the role that set up auto-embedding of {} no longer exists", s.table));
        }
        if s.key_types.len() != s.key_cols.len() {
            error(ERRCODE_UNDEFINED_COLUMN, format!("a key column of {} is gone (key {:?})", s.table, s.key_cols));
        }
        c.update(format!("SET LOCAL ROLE {}", quote_identifier(&s.role)).as_str(), None, &[])?;
        let (from, on) = keyed(&s, &[]);
        let q = format!("SELECT x.ord::int4, t.ctid IS NOT NULL, t.{} FROM {from} LEFT JOIN {} t ON {on}", quote_identifier(&s.image_col), s.table);
        let rows: Vec<&Row> = g.rows.iter().collect();
        let args = key_args(&rows, s.key_cols.len());
        let found = c.update(q.as_str(), None, &args)?;
        let mut outcomes = Vec::with_capacity(found.len());
        for r in found {
            let at = r.get::<i32>(1)?.unwrap_or_default() as usize;
            let outcome = match (r.get::<bool>(2)?.unwrap_or(false), r.get::<Vec<u8>>(3)?) {
                (false, _) => Outcome::Gone,
                (true, None) => Outcome::NoImage,
                (true, Some(b)) => Outcome::Image(b),
            };
            outcomes.push((at, outcome));
        }
        for (at, outcome) in outcomes {
            if let Some(row) = at.checked_sub(1).and_then(|i| g.rows.get_mut(i)) {
                row.outcome = outcome;
            }
        }
        Ok(Some(s))
    }))
}

/// Statuses that are no image's fault: the entries go back to the queue.
fn service_down(status: Status) -> bool {
    matches!(status, Status::ServiceLost | Status::ServiceUnavailable | Status::Cancelled)
}

fn failure_text(f: &Failure) -> (String, String) {
    let (code, note) = engine_sqlstate(f.status);
    (sqlstate_text(code), format!("{}{note}", f.message))
}

/// Embeds the images read, one request for the whole group (one at a time for rows tried
/// before, so that an image that kills the service is found). A bad image is recorded and the
/// others are sent again; Err when the service is down (nobody's row).
pub fn embed(s: &Setup, g: &mut Group) -> Result<(), Failure> {
    let call = crate::embed::sql::call(Some(&s.model));
    let todo: Vec<usize> = (0..g.rows.len()).filter(|&i| matches!(g.rows[i].outcome, Outcome::Image(_))).collect();
    let alone = g.rows.iter().any(|r| r.attempts > 1);
    let requests: Vec<Vec<usize>> = if alone { todo.into_iter().map(|i| vec![i]).collect() } else { vec![todo] };
    for mut left in requests {
        while !left.is_empty() {
            pg_sys::check_for_interrupts!();
            let images: Vec<&[u8]> = left.iter().map(|&i| g.rows[i].image().unwrap_or_default()).collect();
            match crate::service::client::embed(&call, &images) {
                Ok(e) => {
                    for (&i, vector) in left.iter().zip(e.vectors) {
                        if let Outcome::Image(image) = std::mem::replace(&mut g.rows[i].outcome, Outcome::Gone) {
                            g.rows[i].outcome = Outcome::Vector { image, vector };
                        }
                    }
                    left.clear();
                }
                Err(f) if service_down(f.status) => {
                    if left.len() == 1 && g.rows[left[0]].attempts >= MAX_ATTEMPTS && f.status == Status::ServiceLost {
                        let (code, message) = failure_text(&f);
                        g.rows[left[0]].fail(code, message);
                        left.clear();
                    } else {
                        return Err(f);
                    }
                }
                Err(f) => match f.image.filter(|&i| i < left.len()) {
                    Some(i) => {
                        let (code, message) = failure_text(&f);
                        g.rows[left.remove(i)].fail(code, message);
                    }
                    // The model or the engine, not an image: every row of the request says so.
                    None => {
                        let (code, message) = failure_text(&f);
                        for i in left.drain(..) {
                            g.rows[i].fail(code.clone(), message.clone());
                        }
                    }
                },
            }
        }
    }
    Ok(())
}

/// Every row of the group failed with `e` (a read or write that raised).
pub fn fail_all(g: &mut Group, e: &Failed, what: &str) {
    let code = sqlstate_text(e.code);
    for r in &mut g.rows {
        r.fail(code.clone(), format!("{what}: {}", e.message));
    }
}

/// Errors that are no row's fault: a lock held too long, a deadlock, a cancel, resources.
pub fn transient(e: &Failed) -> bool {
    let s = sqlstate_text(e.code);
    s.starts_with("40") || s.starts_with("53") || s == "55P03" || s == "57014"
}

/// The entries back to the queue, for another round.
pub fn release(ids: &[i64], blame: bool) {
    ok(Spi::connect_mut(|c| {
        c.update(
            "UPDATE visual_search.embedding_queue
                SET claimed_by = NULL, claimed_at = NULL, attempts = attempts - CASE WHEN $2 THEN 0 ELSE 1 END
              WHERE id = ANY($1) AND claimed_by = pg_backend_pid()",
            None,
            &[ids.to_vec().into(), blame.into()],
        )
        .map(|_| ())
    }))
}

/// The queue's side of a finished group: a failed row recorded on its newest entry, every other
/// entry of the claim deleted, and a finished row's older failures too (the row has moved on).
/// Older entries that are neither claimed nor failed are not looked for: claims take the oldest
/// first, so there are none but those another drainer is claiming, and embedding one of them
/// again later is only work.
fn settle(c: &mut spi::SpiClient<'_>, g: &Group) -> spi::Result<()> {
    let (mut failed, mut codes, mut messages) = (Vec::new(), Vec::new(), Vec::new());
    for r in &g.rows {
        if let Outcome::Failed { sqlstate, message, .. } = &r.outcome {
            failed.push(r.newest());
            codes.push(sqlstate.clone());
            messages.push(message.clone());
        }
    }
    let newest: Vec<i64> = g.rows.iter().map(Row::newest).collect();
    c.update(
        "DELETE FROM visual_search.embedding_queue o USING visual_search.embedding_queue n
          WHERE n.id = ANY($1) AND o.failed_at IS NOT NULL AND o.tbl = n.tbl AND o.embedding_col = n.embedding_col
            AND o.key = n.key AND o.id < n.id",
        None,
        &[newest.into()],
    )?;
    let done: Vec<i64> = g.all_ids().into_iter().filter(|id| !failed.contains(id)).collect();
    c.update("DELETE FROM visual_search.embedding_queue WHERE id = ANY($1)", None, &[done.into()])?;
    c.update(
        "UPDATE visual_search.embedding_queue q
            SET failed_at = now(), sqlstate = f.s, message = f.m, claimed_by = NULL, claimed_at = NULL
           FROM unnest($1::bigint[], $2::text[], $3::text[]) AS f(id, s, m) WHERE q.id = f.id",
        None,
        &[failed.into(), codes.into(), messages.into()],
    )?;
    Ok(())
}

/// Records the group's outcome in the queue without touching the table (its read or write
/// failed), in a transaction of its own.
pub fn finish_only(g: &Group) -> Result<(), Failed> {
    crate::glue::xact::run(|| ok(Spi::connect_mut(|c| settle(c, g))))
}

/// `embedding[]` of the rows' vectors (NULL where a row has none).
fn vectors_datum(rows: &[&Row], elem: pg_sys::Oid) -> pg_sys::Datum {
    let vectors = rows.iter().map(|r| match &r.outcome {
        Outcome::Vector { vector, .. } => Some(vector.clone()),
        _ => None,
    });
    vector_array(vectors, elem)
}

/// The types of `embedding` and `embedding[]`.
#[derive(Clone, Copy)]
pub struct VectorTypes {
    pub elem: pg_sys::Oid,
    pub array: pg_sys::Oid,
}

/// Writes the group's vectors (and NULL over the stale vector of a row whose new image failed)
/// where each row's image is still the one embedded, then settles the queue; in a transaction
/// of the caller's. Skips the group when the table was set up again or disabled meanwhile (the
/// set-up row's lock orders this against disable_auto_embed).
pub fn write(s: &Setup, g: &Group, types: VectorTypes) -> i64 {
    ok(Spi::connect_mut(|c| {
        c.update("SET LOCAL lock_timeout = '1s'", None, &[])?;
        let same = c.update(
            "SELECT 1 FROM visual_search.auto_embed_tables
              WHERE tbl = $1 AND embedding_col = $2 AND owner = $3 AND image_col = $4 AND model = $5 FOR KEY SHARE",
            None,
            &[g.tbl.into(), g.col.as_str().into(), unsafe { DatumWithOid::new(s.owner, pg_sys::OIDOID) }, s.image_col.as_str().into(), s.model.as_str().into()],
        )?;
        if same.is_empty() {
            c.update(
                "UPDATE visual_search.embedding_queue SET claimed_by = NULL, claimed_at = NULL WHERE id = ANY($1) AND claimed_by = pg_backend_pid()",
                None,
                &[g.all_ids().into()],
            )?;
            return Ok(0);
        }
        let rows: Vec<&Row> = g.rows.iter().filter(|r| !matches!(r.outcome, Outcome::Gone)).collect();
        let mut written = 0i64;
        if !rows.is_empty() {
            c.update(format!("SET LOCAL ROLE {}", quote_identifier(&s.role)).as_str(), None, &[])?;
            let (from, on) = keyed(s, &["img", "e"]);
            let emb = quote_identifier(&g.col);
            let q = format!(
                "UPDATE {} t SET {emb} = x.e FROM {from}
                  WHERE {on} AND t.{img} IS NOT DISTINCT FROM x.img AND (x.e IS NOT NULL OR t.{emb} IS NOT NULL)
                 RETURNING x.ord::int4",
                s.table,
                img = quote_identifier(&s.image_col),
            );
            let mut args = key_args(&rows, s.key_cols.len());
            let images: Vec<Option<&[u8]>> = rows.iter().map(|r| r.image()).collect();
            args.push(images.into());
            args.push(unsafe { DatumWithOid::new(vectors_datum(&rows, types.elem), types.array) });
            for r in c.update(q.as_str(), None, &args)? {
                let at = r.get::<i32>(1)?.unwrap_or_default() as usize;
                if at.checked_sub(1).and_then(|i| rows.get(i)).is_some_and(|r| matches!(r.outcome, Outcome::Vector { .. })) {
                    written += 1;
                }
            }
            c.update("RESET ROLE", None, &[])?;
        }
        settle(c, g)?;
        if written > 0 {
            let args = [g.tbl.into(), g.col.as_str().into(), written.into()];
            c.update("UPDATE visual_search.auto_embed_tables SET done = done + $3 WHERE tbl = $1 AND embedding_col = $2", None, &args)?;
            c.update("INSERT INTO visual_search.embedding_log (tbl, embedding_col, rows) VALUES ($1, $2, $3)", None, &args)?;
        }
        Ok(written)
    }))
}
