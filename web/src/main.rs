//! `visual_search_web`: one page to search the catalogue by photo, and the JSON API under
//! `/api/v1` that the page and integrations call. It holds no model and no vectors: every answer
//! is one SQL query (`image_embed` + `ORDER BY … LIMIT`) to the database.
mod access;
mod api;
mod catalogue;
mod failure;
mod routes;
mod serve;

use std::net::SocketAddr;
use std::process::ExitCode;

const USAGE: &str = "usage: visual_search_web --db CONNINFO [--listen 127.0.0.1:8088] [--table products]
                         [--max-upload-mb 10] [--pool 4] [--max-concurrent 16] [--max-connections 256]
                         [--model NAME=COLUMN ...]
                         [--token-file FILE] [--allow-remote]
The table needs columns id, name, category, image (bytea) and embedding (embedding or halfembedding),
the vectors of visual_search.default_model. Each --model adds a model whose vectors are in COLUMN:
the page then answers with each, side by side. With --token-file every request needs the header
`Authorization: Bearer <the file's first line>`; a --listen address other than loopback needs
--allow-remote and --token-file both.";

pub struct Options {
    db: String,
    listen: SocketAddr,
    table: String,
    max_upload: usize,
    pool: usize,
    /// Searches running or reading their photo at once; more wait for a slot.
    max_concurrent: usize,
    /// Open connections at once; more are closed as they arrive.
    max_connections: usize,
    token_file: Option<std::path::PathBuf>,
    allow_remote: bool,
    /// (model, column) beyond the default model's `embedding`.
    models: Vec<(String, String)>,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut o = Options {
        db: std::env::var("VS_WEB_DB").unwrap_or_default(),
        listen: ([127, 0, 0, 1], 8088).into(),
        table: "products".into(),
        max_upload: 10 << 20,
        pool: 4,
        max_concurrent: 16,
        max_connections: 256,
        token_file: None,
        allow_remote: false,
        models: Vec::new(),
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--db" => o.db = value()?,
            "--listen" => o.listen = value()?.parse().map_err(|e| format!("--listen: {e}"))?,
            "--table" => o.table = value()?,
            "--max-upload-mb" => {
                let mb: usize = value()?.parse().map_err(|e| format!("--max-upload-mb: {e}"))?;
                o.max_upload = mb.clamp(1, 1024) << 20;
            }
            "--pool" => o.pool = value()?.parse().map_err(|e| format!("--pool: {e}"))?,
            "--max-concurrent" => {
                let n: usize = value()?.parse().map_err(|e| format!("--max-concurrent: {e}"))?;
                o.max_concurrent = n.clamp(1, 1024);
            }
            "--max-connections" => {
                let n: usize = value()?.parse().map_err(|e| format!("--max-connections: {e}"))?;
                o.max_connections = n.clamp(1, 65536);
            }
            "--token-file" => o.token_file = Some(value()?.into()),
            "--allow-remote" => o.allow_remote = true,
            "--model" => {
                let v = value()?;
                let (name, column) = v.split_once('=').ok_or_else(|| format!("--model {v:?}: expected NAME=COLUMN"))?;
                o.models.push((name.to_string(), column.to_string()));
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if o.db.is_empty() {
        return Err("--db (or VS_WEB_DB) is required".into());
    }
    // Whoever reaches the server runs searches on the database: beyond the shop's own machine
    // only with a token, and only when asked for in so many words.
    if !o.listen.ip().is_loopback() && !o.allow_remote {
        return Err(format!("--listen {}: only loopback addresses are allowed without --allow-remote", o.listen));
    }
    if o.allow_remote && o.token_file.is_none() {
        return Err("--allow-remote needs --token-file: a server others can reach must ask for a token".into());
    }
    Ok(o)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let opts = match parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("visual_search_web: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let token = match opts.token_file.as_deref().map(access::Token::read).transpose() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("visual_search_web: {e}");
            return ExitCode::from(2);
        }
    };
    let catalogue = match catalogue::Catalogue::connect(&opts.db, &opts.table, opts.pool, &opts.models).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("visual_search_web: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(opts.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("visual_search_web: cannot listen on {}: {e}", opts.listen);
            return ExitCode::FAILURE;
        }
    };
    println!("visual_search_web: listening on http://{}/", listener.local_addr().map_or(opts.listen, |a| a));
    let app = routes::router(catalogue, opts.max_upload, opts.max_concurrent, token);
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    if let Err(e) = serve::serve(listener, app, opts.max_connections, shutdown).await {
        eprintln!("visual_search_web: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::parse;

    fn args(a: &[&str]) -> impl Iterator<Item = String> {
        a.iter().map(|s| s.to_string()).collect::<Vec<_>>().into_iter()
    }

    #[test]
    fn only_loopback_addresses() {
        assert!(parse(args(&["--db", "x", "--listen", "127.0.0.1:9000"])).is_ok());
        assert!(parse(args(&["--db", "x", "--listen", "[::1]:9000"])).is_ok());
        let e = parse(args(&["--db", "x", "--listen", "0.0.0.0:9000"])).err().unwrap();
        assert!(e.contains("only loopback"), "{e}");
        let e = parse(args(&["--db", "x", "--listen", "0.0.0.0:9000", "--allow-remote"])).err().unwrap();
        assert!(e.contains("needs --token-file"), "{e}");
        let e = parse(args(&["--db", "x", "--listen", "192.168.1.5:9000", "--token-file", "/t"])).err().unwrap();
        assert!(e.contains("only loopback"), "{e}");
        let o = parse(args(&["--db", "x", "--listen", "0.0.0.0:9000", "--allow-remote", "--token-file", "/t"])).ok().unwrap();
        assert!(o.allow_remote && o.token_file.is_some());
    }

    #[test]
    fn models_beside_the_default() {
        let o = parse(args(&["--db", "x", "--model", "efficientnet-lite0-imagenet=embedding_imagenet"])).ok().unwrap();
        assert_eq!(o.models, vec![("efficientnet-lite0-imagenet".to_string(), "embedding_imagenet".to_string())]);
        assert!(parse(args(&["--db", "x", "--model", "no-column"])).is_err());
    }

    #[test]
    fn upload_limit_in_megabytes() {
        let o = parse(args(&["--db", "x", "--max-upload-mb", "3"])).ok().unwrap();
        assert_eq!(o.max_upload, 3 << 20);
        assert!(parse(args(&["--db", "x", "--bogus"])).is_err());
    }
}
