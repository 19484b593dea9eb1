//! The command line, parsed by hand (the service's only dependencies are the ABI and libc).

use std::time::Duration;

pub const USAGE: &str = "usage: visual_search_service --socket PATH --engine PATH [--threads N] [--batchers N] [--max-batch N] [--max-wait-us N] \
                         [--max-request-bytes N] [--parent PID]";

#[derive(Debug, PartialEq)]
pub struct Args {
    pub socket: String,
    pub engine: String,
    pub threads: u32,
    /// Threads that run batches at once, each with `threads / batchers` threads of its own
    /// (default: as many as threads, one each).
    pub batchers: u32,
    pub max_batch: u32,
    pub max_wait: Duration,
    pub max_request_bytes: u64,
    pub parent: Option<libc::pid_t>,
}

fn number<T: std::str::FromStr + PartialOrd + std::fmt::Display>(flag: &str, v: &str, min: T) -> Result<T, String> {
    match v.parse::<T>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(format!("{flag} wants a whole number of at least {min}, not \"{v}\"")),
    }
}

impl Args {
    pub fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
        let (mut socket, mut engine) = (None, None);
        let mut a = Args {
            socket: String::new(),
            engine: String::new(),
            threads: 1,
            batchers: 0,
            max_batch: 64,
            max_wait: Duration::from_micros(2000),
            max_request_bytes: 1 << 30,
            parent: None,
        };
        while let Some(flag) = it.next() {
            let Some(v) = it.next() else { return Err(format!("{flag} wants a value")) };
            match flag.as_str() {
                "--socket" => socket = Some(v),
                "--engine" => engine = Some(v),
                "--threads" => a.threads = number(&flag, &v, 1)?,
                "--batchers" => a.batchers = number(&flag, &v, 1)?,
                "--max-batch" => a.max_batch = number(&flag, &v, 1)?,
                "--max-wait-us" => a.max_wait = Duration::from_micros(number(&flag, &v, 0)?),
                "--max-request-bytes" => a.max_request_bytes = number(&flag, &v, 1)?,
                "--parent" => a.parent = Some(number(&flag, &v, 1)?),
                _ => return Err(format!("unknown argument \"{flag}\"")),
            }
        }
        a.socket = socket.filter(|s| !s.is_empty()).ok_or("--socket is required")?;
        a.engine = engine.filter(|s| !s.is_empty()).ok_or("--engine is required")?;
        a.batchers = if a.batchers == 0 { a.threads } else { a.batchers.min(a.threads) };
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Args, String> {
        Args::parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn defaults_and_every_flag() {
        let a = parse("--socket s --engine e").unwrap();
        assert_eq!((a.threads, a.max_batch, a.max_wait, a.max_request_bytes, a.parent), (1, 64, Duration::from_micros(2000), 1 << 30, None));
        assert_eq!(parse("--socket s --engine e --threads 3").unwrap().batchers, 3);
        assert_eq!(parse("--socket s --engine e --threads 4 --batchers 9").unwrap().batchers, 4);
        let a = parse("--engine e --socket s --threads 4 --batchers 2 --max-batch 8 --max-wait-us 0 --max-request-bytes 100 --parent 7").unwrap();
        assert_eq!(a.batchers, 2);
        assert_eq!((a.socket.as_str(), a.engine.as_str()), ("s", "e"));
        assert_eq!((a.threads, a.max_batch, a.max_wait, a.max_request_bytes, a.parent), (4, 8, Duration::ZERO, 100, Some(7)));
    }

    #[test]
    fn bad_arguments_are_refused() {
        assert!(parse("--socket s").unwrap_err().contains("--engine is required"));
        assert!(parse("--engine e").unwrap_err().contains("--socket is required"));
        assert!(parse("--socket s --engine e --threads 0").unwrap_err().contains("at least 1"));
        assert!(parse("--socket s --engine e --max-batch x").is_err());
        assert!(parse("--socket s --engine e --parent -3").is_err());
        assert!(parse("--socket s --engine e --bogus 1").unwrap_err().contains("unknown argument"));
        assert!(parse("--socket s --engine").unwrap_err().contains("wants a value"));
    }
}
