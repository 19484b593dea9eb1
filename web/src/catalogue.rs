//! The catalogue as the page sees it: a few SQL statements over one table, run on a pool.
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use serde::Serialize;
use tokio_postgres::{NoTls, Row};

use crate::failure::{Failure, Kind};

#[derive(Serialize)]
pub struct Product {
    pub id: i64,
    /// NULL where the table allows it: an answer says null rather than failing.
    pub name: Option<String>,
    pub category: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distance: Option<f64>,
    /// Listings only: "ready", "pending" (queued for the drainer) or "failed" (see `problem`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vector: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// The table's background auto-embedding queue (visual_search.embedding_queues).
#[derive(Serialize, Default)]
pub struct Queue {
    pub pending: i64,
    pub failed: i64,
}

#[derive(Serialize)]
pub struct Category {
    pub name: String,
    pub products: i64,
}

/// A model the page answers with, and the column that holds its vectors of the products.
#[derive(Serialize, Clone)]
pub struct Model {
    pub name: String,
    pub column: String,
    /// The length of the model's vectors, as `visual_search.models()` gives it.
    pub dims: i32,
    #[serde(skip)]
    quoted: String,
}

/// What a search starts from: an uploaded photo or a product already in the catalogue.
pub enum Query<'a> {
    Photo(&'a [u8]),
    Product(i64),
}

pub struct Catalogue {
    pool: Pool,
    table: String,
    /// The default model's `embedding` first, then those of `--model`.
    models: Vec<Model>,
}

/// A plain lower-case identifier, as SQL writes it unquoted.
fn plain(p: &str) -> bool {
    !p.is_empty() && p.len() < 64 && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') && !p.starts_with(|c: char| c.is_ascii_digit())
}

/// `name` or `schema.name` of plain lower-case identifiers, quoted for SQL.
fn quote_table(table: &str) -> Result<String, String> {
    let parts: Vec<&str> = table.split('.').collect();
    if parts.len() > 2 || !parts.iter().all(|p| plain(p)) {
        return Err(format!("--table {table:?}: expected name or schema.name in lower case"));
    }
    Ok(parts.iter().map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join("."))
}

/// The database and its embedding service, as `GET /api/v1/health` reports them.
#[derive(Serialize)]
pub struct Health {
    pub server_version: String,
    pub extension_version: Option<String>,
    /// `service` (one embedding service per server) or `backend` (each connection embeds).
    pub embed_in: Option<String>,
    pub service: Service,
}

/// `visual_search.service_stats()`: a service that is not running starts on the first embedding
/// (or with the server, when preloaded), so "not running" alone is no failure.
#[derive(Serialize)]
pub struct Service {
    pub running: bool,
    pub pid: Option<i32>,
    pub engine_error: Option<String>,
    pub uptime_s: Option<f64>,
    pub images: Option<i64>,
    pub models_loaded: Option<Vec<String>>,
}

/// A model of `--model`: its name as image_embed takes it, its column a plain identifier.
fn model(name: &str, column: &str) -> Result<Model, String> {
    if !vs_engine_api::manifest::valid_name(name) || !plain(column) {
        return Err(format!("--model {name}={column}: expected a model name and a column name in lower case"));
    }
    Ok(Model { name: name.into(), column: column.into(), dims: 0, quoted: format!("\"{column}\"") })
}

impl Catalogue {
    pub async fn connect(conninfo: &str, table: &str, size: usize, extra: &[(String, String)]) -> Result<Self, String> {
        let mut config: tokio_postgres::Config = conninfo.parse().map_err(|e| format!("--db: {e}"))?;
        // Custom plans always: a generic plan cannot see the LIMIT and may sort the whole table
        // instead of asking the vs_hnsw index.
        config.options("-c plan_cache_mode=force_custom_plan -c statement_timeout=30s");
        config.application_name("visual_search_web");
        // A database that does not answer is reported as down, not waited for.
        config.connect_timeout(std::time::Duration::from_secs(5));
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        // A request waits for a connection as long as for a search slot, then hears the server is
        // busy, rather than waiting behind a lock someone holds on the table.
        let pool = Pool::builder(manager)
            .max_size(size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(std::time::Duration::from_secs(10)))
            .create_timeout(Some(std::time::Duration::from_secs(5)))
            .build()
            .map_err(|e| e.to_string())?;
        let mut catalogue = Catalogue { pool, table: quote_table(table)?, models: Vec::new() };
        // Fail at start, not on the first visitor, when the database, table or a column is not there.
        let client = catalogue.pool.get().await.map_err(|e| Failure::from(e).message)?;
        // A value of the extension's type loads its library, which defines its settings.
        let sql = "SELECT '[0]'::embedding IS NOT NULL";
        client.query_one(sql, &[]).await.map_err(|e| Failure::from(e).message)?;
        let sql = "SELECT current_setting('visual_search.default_model')";
        let default: String = client.query_one(sql, &[]).await.map_err(|e| Failure::from(e).message)?.get(0);
        catalogue.models.push(model(&default, "embedding").map_err(|_| format!("visual_search.default_model {default:?} is not a model name"))?);
        for (name, column) in extra {
            let m = model(name, column)?;
            if catalogue.models.iter().any(|o| o.name == m.name || o.column == m.column) {
                return Err(format!("--model {name}={column}: that model or column is on the page already"));
            }
            catalogue.models.push(m);
        }
        let sql = "SELECT dims FROM visual_search.models() WHERE name = $1";
        for m in &mut catalogue.models {
            let row = client.query_opt(sql, &[&m.name]).await.map_err(|e| Failure::from(e).message)?;
            m.dims =
                row.and_then(|r| r.get::<_, Option<i32>>(0)).ok_or_else(|| format!("model {:?} is not installed in the database's model folder", m.name))?;
        }
        let columns: Vec<&str> = catalogue.models.iter().map(|m| m.quoted.as_str()).collect();
        let sql = format!("SELECT id, name, category, image, {} FROM {} LIMIT 0", columns.join(", "), catalogue.table);
        client.query(&sql, &[]).await.map_err(|e| Failure::from(e).message)?;
        Ok(catalogue)
    }

    pub fn models(&self) -> &[Model] {
        &self.models
    }

    /// The model a search names, or the default.
    pub fn model(&self, name: Option<&str>) -> Result<&Model, Failure> {
        match name {
            None => Ok(&self.models[0]),
            Some(n) => self.models.iter().find(|m| m.name == n).ok_or_else(|| Failure::new(Kind::BadParameter, format!("this server has no model {n:?}"))),
        }
    }

    pub async fn categories(&self) -> Result<Vec<Category>, Failure> {
        // A product without a category is in no category a filter could name.
        let sql = format!("SELECT category, count(*) FROM {} WHERE category IS NOT NULL GROUP BY 1 ORDER BY 1", self.table);
        let rows = self.pool.get().await?.query(&sql, &[]).await?;
        Ok(rows.iter().map(|r| Category { name: r.get(0), products: r.get(1) }).collect())
    }

    /// Random products to click on, optionally of one category; or the newest (highest ids).
    pub async fn sample(&self, category: Option<&str>, n: i64, newest: bool) -> Result<Vec<Product>, Failure> {
        // A product without a vector is waiting in the queue, or recorded as failed with the
        // reason (a key of the queue is the primary key's values as text), or has no photo.
        let order = if newest { "id DESC" } else { "random()" };
        let sql = format!(
            "SELECT p.id::bigint, p.name, p.category, p.embedded, coalesce(f.message, p.no_image)
               FROM (SELECT id, name, category, embedding IS NOT NULL AS embedded,
                            CASE WHEN image IS NULL THEN 'no photo' END AS no_image FROM {t}
                      WHERE ($1::text IS NULL OR category = $1) ORDER BY {order} LIMIT $2) p
               LEFT JOIN LATERAL (SELECT f.message FROM visual_search.embedding_failures f
                                   WHERE NOT p.embedded AND f.tbl = $3::text::regclass AND f.embedding_col = 'embedding'
                                     AND f.key = ARRAY[p.id::text]
                                   LIMIT 1) f ON true
              ORDER BY {order}",
            t = self.table
        );
        let rows = self.pool.get().await?.query(&sql, &[&category, &n, &self.table]).await?;
        Ok(rows
            .iter()
            .map(|r| {
                let problem: Option<String> = r.get(4);
                let vector = if r.get::<_, bool>(3) {
                    "ready"
                } else if problem.is_some() {
                    "failed"
                } else {
                    "pending"
                };
                Product { id: r.get(0), name: r.get(1), category: r.get(2), distance: None, vector: Some(vector), problem }
            })
            .collect())
    }

    /// Rows waiting for their vector and rows that failed; zero where the table is not embedded
    /// in the background.
    pub async fn queue(&self) -> Result<Queue, Failure> {
        let sql = "SELECT (pending + in_progress)::bigint, failed::bigint FROM visual_search.embedding_queues
                   WHERE tbl = $1::text::regclass AND embedding_col = 'embedding'";
        let row = self.pool.get().await?.query_opt(sql, &[&self.table]).await?;
        Ok(row.map(|r| Queue { pending: r.get(0), failed: r.get(1) }).unwrap_or_default())
    }

    /// The `n` products nearest to the query by `model`'s vectors, nearest first. The query
    /// vector is a scalar subquery, evaluated once, and ORDER BY names the distance column so
    /// that the vs_hnsw index answers (a product never lists itself).
    pub async fn similar(&self, query: Query<'_>, category: Option<&str>, n: i64, model: Option<&str>) -> Result<Vec<Product>, Failure> {
        let m = self.model(model)?;
        let client = self.pool.get().await?;
        let filter = "($2::text IS NULL OR category = $2)";
        let (t, e) = (&self.table, &m.quoted);
        let rows = match query {
            Query::Photo(bytes) => {
                let sql = format!(
                    "SELECT id::bigint, name, category, {e} <-> (SELECT image_embed($1::bytea, $4::text)) AS distance
                     FROM {t} WHERE {filter} ORDER BY distance LIMIT $3"
                );
                client.query(&sql, &[&bytes, &category, &n, &m.name]).await?
            }
            Query::Product(id) => {
                let sql = format!("SELECT {e} IS NOT NULL FROM {t} WHERE id = $1::bigint");
                match client.query_opt(&sql, &[&id]).await? {
                    Some(r) if r.get::<_, bool>(0) => {}
                    Some(_) => return Err(Failure::new(Kind::NotFound, format!("product {id} has no {} vector yet", m.name))),
                    None => return Err(Failure::new(Kind::NotFound, format!("no product {id}"))),
                }
                let sql = format!(
                    "SELECT id::bigint, name, category,
                            {e} <-> (SELECT {e} FROM {t} WHERE id = $1::bigint) AS distance
                     FROM {t} WHERE {filter} AND id <> $1::bigint ORDER BY distance LIMIT $3"
                );
                client.query(&sql, &[&id, &category, &n]).await?
            }
        };
        Ok(rows.iter().map(product).collect())
    }

    pub async fn health(&self) -> Result<Health, Failure> {
        let client = self.pool.get().await?;
        // The function call loads the library, which defines the setting read next.
        let sql = "SELECT running, pid, engine_error, uptime_s, images, models FROM visual_search.service_stats()";
        let s = client.query_one(sql, &[]).await?;
        let service = Service { running: s.get(0), pid: s.get(1), engine_error: s.get(2), uptime_s: s.get(3), images: s.get(4), models_loaded: s.get(5) };
        let sql = "SELECT current_setting('server_version'), current_setting('visual_search.embed_in', true),
                          (SELECT extversion FROM pg_extension WHERE extname = 'visual_search')";
        let r = client.query_one(sql, &[]).await?;
        Ok(Health { server_version: r.get(0), embed_in: r.get(1), extension_version: r.get(2), service })
    }

    pub async fn photo(&self, id: i64) -> Result<Vec<u8>, Failure> {
        let sql = format!("SELECT image FROM {} WHERE id = $1::bigint", self.table);
        match self.pool.get().await?.query_opt(&sql, &[&id]).await? {
            Some(r) => r.get::<_, Option<Vec<u8>>>(0).ok_or_else(|| Failure::new(Kind::NotFound, format!("product {id} has no photo"))),
            None => Err(Failure::new(Kind::NotFound, format!("no product {id}"))),
        }
    }
}

fn product(r: &Row) -> Product {
    Product { id: r.get(0), name: r.get(1), category: r.get(2), distance: r.get(3), vector: None, problem: None }
}

#[cfg(test)]
mod tests {
    use super::{model, quote_table};

    #[test]
    fn table_names_are_plain_identifiers() {
        assert_eq!(quote_table("products").unwrap(), "\"products\"");
        assert_eq!(quote_table("shop.items_2").unwrap(), "\"shop\".\"items_2\"");
        for bad in ["", "a.b.c", "Products", "x; DROP TABLE y", "1abc", "a-b"] {
            assert!(quote_table(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn model_columns_are_plain_identifiers() {
        assert_eq!(model("efficientnet-lite0-imagenet", "embedding_imagenet").unwrap().quoted, "\"embedding_imagenet\"");
        for (name, column) in [("m", "Embedding"), ("m", "e; DROP TABLE x"), ("a b", "e"), ("", "e"), ("m", "")] {
            assert!(model(name, column).is_err(), "{name}={column}");
        }
    }
}
