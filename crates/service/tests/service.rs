//! The service as the server runs it: the real binary on a socket, the real engine library.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use vs_engine_api::wire::{self, EmbedReply, Message, ServiceStats, Wanted};

const BIN: &str = env!("CARGO_BIN_EXE_visual_search_service");

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn engine_library() -> String {
    let path = std::env::var("VS_ENGINE_LIBRARY").map(PathBuf::from).unwrap_or_else(|_| root().join("target/release/libvisual_search_engine.so"));
    assert!(path.exists(), "no engine library at {}: run `cargo build --release -p vs_engine` (or set VS_ENGINE_LIBRARY)", path.display());
    path.to_string_lossy().into_owned()
}

fn image(name: &str) -> Vec<u8> {
    std::fs::read(root().join("pg_test/data/images").join(name)).unwrap()
}

fn wanted(model: &str) -> Wanted {
    Wanted {
        model_dir: root().join("pg_test/data/models").to_string_lossy().into_owned(),
        model: model.into(),
        device: "cpu".into(),
        half_precision: false,
        max_image_bytes: 50 << 20,
        max_image_pixels: 40_000_000,
    }
}

/// A folder of its own per service, removed with it.
fn folder() -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!("vs_service_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

struct Service {
    child: Child,
    dir: PathBuf,
}

impl Service {
    fn start(extra: &[&str]) -> Service {
        Service::with_engine(&engine_library(), extra)
    }

    /// Run as the server runs it: in its folder, the socket's path relative, stderr a log.
    fn with_engine(engine: &str, extra: &[&str]) -> Service {
        let dir = folder();
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let child =
            Command::new(BIN).args(["--socket", "s.sock", "--engine", engine]).args(extra).current_dir(&dir).stdin(Stdio::null()).stderr(log).spawn().unwrap();
        Service { child, dir }
    }

    fn connect(&mut self) -> Client {
        Client::connect(&self.dir.join("s.sock"), Some(&mut self.child), &self.dir)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    fn stats(&mut self) -> ServiceStats {
        self.connect().stats()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Client {
    stream: UnixStream,
    id: u64,
}

impl Client {
    /// Waits for the socket (libtorch takes seconds to open), failing early if the service died.
    fn connect(socket: &Path, mut child: Option<&mut Child>, dir: &Path) -> Client {
        let t = Instant::now();
        loop {
            if let Ok(stream) = UnixStream::connect(socket) {
                stream.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
                return Client { stream, id: 0 };
            }
            if let Some(Some(status)) = child.as_mut().map(|c| c.try_wait().unwrap()) {
                panic!("the service exited ({status}): {}", std::fs::read_to_string(dir.join("log")).unwrap_or_default());
            }
            assert!(t.elapsed() < Duration::from_secs(60), "no service on {}", socket.display());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn send(&mut self, model: &str, images: &[&[u8]]) -> u64 {
        self.id += 1;
        self.stream.write_all(&wire::encode_embed(self.id, &wanted(model), images).unwrap()).unwrap();
        self.id
    }

    fn embed(&mut self, model: &str, images: &[&[u8]]) -> EmbedReply {
        let id = self.send(model, images);
        match wire::read(&mut self.stream, 1 << 30).unwrap() {
            Message::Embedded(r) if r.id == id => r,
            m => panic!("not the answer to request {id}: {m:?}"),
        }
    }

    fn stats(&mut self) -> ServiceStats {
        self.id += 1;
        wire::write(&mut self.stream, &Message::Stats { id: self.id }).unwrap();
        match wire::read(&mut self.stream, 1 << 30).unwrap() {
            Message::StatsReply { id, stats } if id == self.id => stats,
            m => panic!("not the statistics: {m:?}"),
        }
    }

    /// True once the service has closed this connection.
    fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.stream.read(&mut b), Ok(0) | Err(_))
    }
}

fn vectors(r: &EmbedReply) -> Vec<Vec<u32>> {
    assert_eq!(r.status, 0, "{}", r.message);
    r.vectors.chunks(r.dims as usize).map(|v| v.iter().map(|x| x.to_bits()).collect()).collect()
}

const NAMES: [&str; 5] = ["sneaker.png", "chelsea.png", "rocket.jpg", "small_baseline.jpg", "chelsea_progressive.jpg"];

/// Each image's vector, embedded alone.
fn alone(c: &mut Client, model: &str, images: &[Vec<u8>]) -> Vec<Vec<u32>> {
    images.iter().map(|i| vectors(&c.embed(model, &[i])).remove(0)).collect()
}

#[test]
fn many_clients_at_once_get_the_vectors_they_get_alone() {
    let mut s = Service::start(&["--max-wait-us", "50000", "--max-batch", "8"]);
    let images: Arc<Vec<Vec<u8>>> = Arc::new(NAMES.iter().map(|n| image(n)).collect());
    let expected = Arc::new(alone(&mut s.connect(), "tiny-vgg16", &images));
    let start = Arc::new(Barrier::new(8));
    let clients: Vec<_> = (0..8)
        .map(|t| {
            let (mut c, images, expected, start) = (s.connect(), images.clone(), expected.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                for k in 0..6 {
                    let i = (t + k) % images.len();
                    let r = c.embed("tiny-vgg16", &[&images[i]]);
                    assert!(vectors(&r) == [expected[i].clone()], "client {t}: {} differs in a batch of {}", NAMES[i], r.batch_images);
                }
            })
        })
        .collect();
    clients.into_iter().for_each(|c| c.join().unwrap());
    let st = s.stats();
    let n = images.len() as u64 + 48;
    assert_eq!((st.requests, st.images, st.dropped), (n, n, 0));
    assert!(st.batch_sizes.iter().any(|&(size, _)| size > 1), "no batch of more than one image: {:?}", st.batch_sizes);
    assert!(st.batch_sizes.iter().all(|&(size, _)| size <= 8), "{:?}", st.batch_sizes);
    assert_eq!(st.batch_sizes.iter().map(|(_, n)| n).sum::<u64>(), st.batches);
    assert_eq!(st.models, vec![("tiny-vgg16".to_string(), "cpu".to_string())]);
    assert!(st.images_per_s > 0.0 && st.info.starts_with("libtorch threads=1"), "{st:?}");
    assert!(s.log().contains("visual_search service: listening on \"s.sock\""), "{}", s.log());
    assert!(s.log().contains("loaded model \"tiny-vgg16\""), "{}", s.log());
}

#[test]
fn a_bad_image_fails_its_own_request_only() {
    let mut s = Service::start(&["--max-wait-us", "300000", "--max-batch", "16"]);
    let images: Arc<Vec<Vec<u8>>> = Arc::new(NAMES[..3].iter().map(|n| image(n)).collect());
    let expected = Arc::new(alone(&mut s.connect(), "tiny-vgg16", &images));
    let start = Arc::new(Barrier::new(4));
    let good: Vec<_> = (0..3)
        .map(|i| {
            let (mut c, images, expected, start) = (s.connect(), images.clone(), expected.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                let r = c.embed("tiny-vgg16", &[&images[i]]);
                assert!(vectors(&r) == [expected[i].clone()]);
                r.batch_images
            })
        })
        .collect();
    let mut bad = s.connect();
    start.wait();
    // After the good ones, so that its images are not the batch's first.
    std::thread::sleep(Duration::from_millis(30));
    let r = bad.embed("tiny-vgg16", &[&images[0], &images[1], b"not an image"]);
    assert_eq!((r.status, r.image), (12, 2), "{}", r.message);
    assert!(r.message.contains("format not recognised"), "{}", r.message);
    assert!(r.batch_images > 3, "the bad request did not share its batch: {r:?}");
    for g in good {
        assert!(g.join().unwrap() <= 3);
    }
    // The connection stays usable after an error.
    assert!(vectors(&bad.embed("tiny-vgg16", &[&images[2]])) == [expected[2].clone()]);
}

#[test]
fn a_client_that_leaves_does_not_disturb_the_others() {
    let mut s = Service::start(&["--max-batch", "64"]);
    let (chelsea, rocket, sneaker) = (image("chelsea.png"), image("rocket.jpg"), image("sneaker.png"));
    let expected = alone(&mut s.connect(), "tiny-vgg16", &[chelsea.clone(), rocket.clone()]);
    // A slow batch, for the leaver's request to queue behind.
    let mut big = s.connect();
    let slow = std::thread::spawn({
        let chelsea = chelsea.clone();
        move || {
            let r = big.embed("tiny-vgg16", &vec![&chelsea[..]; 128]);
            (r, Instant::now())
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    let mut leaver = s.connect();
    leaver.send("tiny-vgg16-224", &[&sneaker]);
    drop(leaver);
    let left = Instant::now();
    let mut other = s.connect();
    assert!(vectors(&other.embed("tiny-vgg16", &[&rocket])) == [expected[1].clone()]);
    let (r, done) = slow.join().unwrap();
    assert!(vectors(&r).iter().all(|v| *v == expected[0]));
    let st = s.stats();
    if done > left + Duration::from_millis(50) {
        assert_eq!(st.dropped, 1, "{st:?}");
        // Its model was never asked for.
        assert!(!st.models.iter().any(|(m, _)| m == "tiny-vgg16-224"), "{st:?}");
    } else {
        eprintln!("the slow batch ended before the leaver left; the race is not tested");
        assert!(st.dropped <= 1);
    }

    // A batch whose only client leaves while it runs is withdrawn (and stopped early).
    let (before, images_before) = (st.dropped, st.images);
    let mut quitter = s.connect();
    quitter.send("tiny-vgg16", &vec![&chelsea[..]; 128]);
    std::thread::sleep(Duration::from_millis(100));
    let mut b = [0u8; 1];
    let fd = std::os::fd::AsRawFd::as_raw_fd(&quitter.stream);
    let unanswered = unsafe { libc::recv(fd, b.as_mut_ptr().cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) } < 0;
    drop(quitter);
    assert!(vectors(&other.embed("tiny-vgg16", &[&rocket])) == [expected[1].clone()]);
    let st = s.stats();
    // Unanswered at the peek, the batch may still finish before the service sees the client go
    // (seen once in CI: all 128 embedded, nothing dropped); then it ran whole, for no one.
    if unanswered {
        assert!(st.dropped == before + 1 || st.images > images_before + 128, "{st:?}");
    }
    assert_eq!(st.requests, 7);
}

#[test]
fn without_an_engine_every_request_gets_a_clear_error() {
    let mut s = Service::with_engine("/nonexistent.so", &[]);
    let mut c = s.connect();
    for _ in 0..2 {
        let r = c.embed("tiny-vgg16", &[&image("sneaker.png")]);
        assert_eq!(r.status, 30, "{r:?}");
        assert!(r.message.starts_with("could not load the embedding engine \"/nonexistent.so\": "), "{}", r.message);
    }
    let st = c.stats();
    assert!(st.engine_error.as_deref().is_some_and(|e| e.contains("/nonexistent.so")), "{st:?}");
    assert_eq!((st.engine.as_str(), st.requests, st.batches), ("/nonexistent.so", 2, 0));
    assert!(s.log().contains("visual_search service: could not load the embedding engine"), "{}", s.log());
    assert!(s.child.try_wait().unwrap().is_none());

    // A file that is there but no library.
    let not_a_library = root().join("Cargo.toml").to_string_lossy().into_owned();
    let mut s = Service::with_engine(&not_a_library, &[]);
    let r = s.connect().embed("tiny-vgg16", &[&image("sneaker.png")]);
    assert_eq!(r.status, 31, "{r:?}");
    assert!(r.message.starts_with(&format!("could not load the embedding engine \"{not_a_library}\": ")), "{}", r.message);
}

#[test]
fn garbage_closes_its_connection_only() {
    let mut s = Service::start(&["--max-request-bytes", "100000"]);
    let mut good = s.connect();
    let sneaker = image("sneaker.png");
    let expected = vectors(&good.embed("tiny-vgg16", &[&sneaker]));

    let mut garbage = s.connect();
    garbage.stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(garbage.closed());
    // Over --max-request-bytes: refused at its header.
    let mut big = s.connect();
    let _ = big.stream.write_all(&wire::encode_embed(1, &wanted("tiny-vgg16"), &[&vec![0u8; 200_000]]).unwrap());
    assert!(big.closed());
    // A header of ours over a body that is not.
    let mut lie = s.connect();
    let mut frame = wire::encode_embed(1, &wanted("tiny-vgg16"), &[&sneaker]).unwrap();
    frame[20..].iter_mut().for_each(|b| *b = 0xff);
    lie.stream.write_all(&frame).unwrap();
    assert!(lie.closed());
    // An answer is not the client's to send.
    let mut backwards = s.connect();
    backwards.stream.write_all(&wire::encode(&Message::Embedded(EmbedReply::default()))).unwrap();
    assert!(backwards.closed());

    assert_eq!(vectors(&good.embed("tiny-vgg16", &[&sneaker])), expected);
    assert_eq!(s.stats().requests, 2);
}

fn running(pid: u32) -> bool {
    // A process killed whose reaper is slow is a zombie: gone all the same.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')))
}

#[test]
fn the_service_dies_with_its_parent() {
    let dir = folder();
    let line = format!("'{BIN}' --socket s.sock --engine '{}' --parent $$ 2>log & wait", engine_library());
    let mut parent = Command::new("sh").args(["-c", &line]).current_dir(&dir).spawn().unwrap();
    let pid = Client::connect(&dir.join("s.sock"), None, &dir).stats().pid;
    assert!(running(pid));
    parent.kill().unwrap();
    parent.wait().unwrap();
    let t = Instant::now();
    while running(pid) {
        assert!(t.elapsed() < Duration::from_secs(10), "the service {pid} outlived its parent");
        std::thread::sleep(Duration::from_millis(20));
    }

    // A parent that is not its parent (it died before the service could ask): exit at once.
    let status = Command::new(BIN).args(["--socket", "t.sock", "--engine", "/nonexistent.so", "--parent", "1"]).current_dir(&dir).status().unwrap();
    assert_eq!(status.code(), Some(1));
    assert!(!dir.join("t.sock").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_arguments_exit_with_2() {
    for args in [&["--socket", "s"][..], &["--socket", "s", "--engine", "e", "--max-batch", "0"], &["--what"]] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("usage: visual_search_service"));
    }
}

/// Every backend keeps a connection. Started with a soft limit of 64 descriptors (hard 4,096),
/// the service still serves 200 connections at once: it raises its own limit (at 1,024 a
/// service once stopped accepting at about 500 sessions).
#[test]
fn many_kept_connections_do_not_run_out_of_descriptors() {
    use std::os::unix::process::CommandExt;
    let dir = folder();
    let log = std::fs::File::create(dir.join("log")).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["--socket", "s.sock", "--engine", &engine_library()]).current_dir(&dir).stdin(Stdio::null()).stderr(log);
    unsafe {
        cmd.pre_exec(|| {
            let l = libc::rlimit { rlim_cur: 64, rlim_max: 4096 };
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
            Ok(())
        });
    }
    let mut svc = Service { child: cmd.spawn().unwrap(), dir };
    let mut kept: Vec<Client> = (0..200).map(|_| svc.connect()).collect();
    let png = image("sneaker.png");
    for c in kept.iter_mut().step_by(50) {
        assert_eq!(c.embed("tiny-vgg16", &[&png]).status, 0);
    }
    let last = kept.last_mut().unwrap();
    assert_eq!(last.embed("tiny-vgg16", &[&png]).status, 0, "{}", svc.log());
}
