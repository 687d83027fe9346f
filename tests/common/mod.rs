//! Helpers shared by the integration tests: loopback servers that misbehave
//! on purpose (every socket here is on 127.0.0.1), the daemon's command
//! line, the root check, and the poller every wait goes through.
#![allow(dead_code)]

pub mod browser;
pub mod cluster;
pub mod otlp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a [`Server`] does with each connection.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// Answer with this status and a body of this many bytes, after a delay.
    Respond {
        status: u16,
        body: usize,
        delay: Duration,
    },
    /// Read the request, then reset the connection (SO_LINGER 0).
    Reset,
    /// Read the request, then close without answering.
    Close,
    /// Answer a head promising 1000 bytes, send 10, then close (FIN) or,
    /// with `reset`, reset the connection.
    CutBody { reset: bool },
    /// Accept and never answer.
    Hang,
    /// Read the request, never answer, and count when the client closes.
    Watch(Arc<AtomicUsize>),
    /// Answer, keep the connection open, and count when the client closes.
    AnswerAndWatch(Arc<AtomicUsize>),
    /// Answer ok, naming a node in `x-tailprobe-node` that no one has named
    /// before (a long name, new on every response): a target minting series.
    NewNodeEveryTime,
    /// Answer ok, naming this node in `x-tailprobe-node`, as the echo does.
    Node(&'static str),
    /// A status line, then headers that never end, 4 KB at a time, counting
    /// the bytes written until the client goes away.
    EndlessHead(Arc<AtomicUsize>),
}

impl Behaviour {
    pub fn ok() -> Self {
        Self::respond(200, 2)
    }

    /// Answer at once with this status and a body of this many bytes.
    pub fn respond(status: u16, body: usize) -> Self {
        Behaviour::Respond {
            status,
            body,
            delay: Duration::ZERO,
        }
    }
}

/// A loopback HTTP server that counts the connections it accepts.
pub struct Server {
    pub addr: SocketAddr,
    pub accepts: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub async fn start(behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepts = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepts);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, behaviour.clone()));
            }
        });
        Self {
            addr,
            accepts,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_request(stream: &mut TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Reads the request and answers ok, naming `node` as the echo does.
async fn answer_naming(stream: &mut TcpStream, node: &str) {
    read_request(stream).await;
    let head = format!(
        "HTTP/1.1 200 OK\r\nx-tailprobe-node: {node}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
    );
    let _ = stream.write_all(head.as_bytes()).await;
}

async fn serve(mut stream: TcpStream, behaviour: Behaviour) {
    match behaviour {
        Behaviour::NewNodeEveryTime => {
            static N: AtomicUsize = AtomicUsize::new(0);
            let node = format!(
                "minted-{}-{}",
                N.fetch_add(1, Ordering::SeqCst),
                "x".repeat(200)
            );
            answer_naming(&mut stream, &node).await;
        }
        Behaviour::Node(node) => answer_naming(&mut stream, node).await,
        Behaviour::EndlessHead(written) => {
            read_request(&mut stream).await;
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\n").await;
            let line = format!("x-filler: {}\r\n", "a".repeat(4000));
            while stream.write_all(line.as_bytes()).await.is_ok() {
                written.fetch_add(line.len(), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        Behaviour::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Behaviour::AnswerAndWatch(closed) => {
            read_request(&mut stream).await;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
            let mut buf = [0u8; 64];
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
            closed.fetch_add(1, Ordering::SeqCst);
        }
        Behaviour::Watch(closed) => {
            read_request(&mut stream).await;
            let mut buf = [0u8; 64];
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
            closed.fetch_add(1, Ordering::SeqCst);
        }
        Behaviour::Close => {
            read_request(&mut stream).await;
        }
        Behaviour::Reset => {
            read_request(&mut stream).await;
            // Linger 0 turns close into a RST; with zero it never blocks.
            socket2::SockRef::from(&stream)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        }
        Behaviour::CutBody { reset } => {
            read_request(&mut stream).await;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n0123456789")
                .await;
            // Let the client read the head and the first bytes, so the cut
            // falls in the body rather than racing the head.
            tokio::time::sleep(Duration::from_millis(100)).await;
            if reset {
                socket2::SockRef::from(&stream)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
            } else {
                let _ = stream.shutdown().await;
            }
        }
        Behaviour::Respond {
            status,
            body,
            delay,
        } => {
            read_request(&mut stream).await;
            tokio::time::sleep(delay).await;
            let head = format!(
                "HTTP/1.1 {status} X\r\ncontent-length: {body}\r\nconnection: close\r\n\r\n"
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(&vec![b'x'; body]).await;
            let _ = stream.shutdown().await;
        }
    }
}

/// A listener whose accept queue is full, so the kernel drops every new SYN:
/// a connect to it stays in SYN_SENT and retransmits on the real schedule.
pub struct SynBlackhole {
    pub addr: SocketAddr,
    _listener: socket2::Socket,
    _filler: std::net::TcpStream,
}

impl SynBlackhole {
    pub fn new() -> Self {
        let listener =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        listener
            .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        // Backlog 0 queues one connection; the filler takes that place.
        listener.listen(0).unwrap();
        let addr = listener.local_addr().unwrap().as_socket().unwrap();
        let filler = std::net::TcpStream::connect(addr).unwrap();
        Self {
            addr,
            _listener: listener,
            _filler: filler,
        }
    }

    /// Starts accepting (and closing) connections: SYNs get through again.
    /// The backlog grows first (Linux takes a second listen() as a new
    /// backlog), so retransmitted SYNs arriving together all fit, however
    /// late the accepting thread is scheduled.
    pub fn repair(&self) {
        self._listener.listen(128).unwrap();
        let listener = self._listener.try_clone().unwrap();
        std::thread::spawn(move || {
            while let Ok((s, _)) = listener.accept() {
                drop(s);
            }
        });
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_tailprobe")
}

/// A unique temporary directory, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "tailprobe-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    pub fn file(&self, name: &str, text: &str) -> std::path::PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A raw HTTP/1.0 GET on loopback: (status, headers and body, lowercased
/// headers kept as sent). Tests use it to see exactly what a client sees.
pub async fn get(addr: &str, path: &str) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (status, head.to_string(), body.to_string())
}

pub type Lines = tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>;

/// `tailprobe run` with this configuration and environment, its log lines
/// readable; killed when dropped.
pub fn daemon(cfg: &std::path::Path, env: &[(&str, &str)]) -> (tokio::process::Child, Lines) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::from(run_command(None, cfg))
        .envs(env.iter().copied())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    (child, stderr)
}

/// The first log line containing `needle`, within `within`.
pub async fn wait_for_line(lines: &mut Lines, needle: &str, within: Duration) -> String {
    tokio::time::timeout(within, async {
        loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("the daemon keeps logging");
            if line.contains(needle) {
                return line;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no log line with {needle:?} within {within:?}"))
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// SIGTERM, as Kubernetes stops a pod.
pub fn terminate(pid: u32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
}

/// Fails the test, saying why, unless it runs as root: `what` names the
/// tests, which build network namespaces.
pub fn require_root(what: &str) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(
        uid.split_whitespace().nth(2),
        Some("0"),
        "{what} need root: they create network namespaces; run ./scripts/test as root"
    );
}

/// `tailprobe run --config cfg`, inside the network namespace `ns` when
/// given: the one place a test builds a daemon's command line.
pub fn run_command(ns: Option<&str>, cfg: &std::path::Path) -> std::process::Command {
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = std::process::Command::new("ip");
            c.args(["netns", "exec", ns, bin()]);
            c
        }
        None => std::process::Command::new(bin()),
    };
    cmd.arg("run").arg("--config").arg(cfg);
    cmd
}

/// A daemon for tests that do not read its log: `tailprobe run` inside a
/// network namespace, its log dropped, killed when dropped.
pub struct Daemon(std::process::Child);

impl Daemon {
    pub fn start_in(ns: &str, cfg: &std::path::Path) -> Self {
        Daemon(
            run_command(Some(ns), cfg)
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Calls `f` every `every` until it gives a value or `within` has passed:
/// the value, or None. With [`poll_async`], the one poller; the
/// `eventually` functions are it with a failure.
pub fn poll<T>(within: Duration, every: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// [`poll`] for async tests: the wait yields to the runtime, which keeps
/// serving the test's own servers meanwhile.
pub async fn poll_async<T, F: std::future::Future<Output = Option<T>>>(
    within: Duration,
    every: Duration,
    mut f: impl FnMut() -> F,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

/// Polls every 500 ms until `check` holds, or fails with what was last
/// seen.
pub fn eventually<T>(what: &str, within: Duration, check: impl FnMut() -> Result<T, String>) -> T {
    eventually_every(what, within, Duration::from_millis(500), check)
}

/// [`eventually`], polling every `every`.
pub fn eventually_every<T>(
    what: &str,
    within: Duration,
    every: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let mut seen = String::new();
    poll(within, every, || check().map_err(|e| seen = e).ok())
        .unwrap_or_else(|| panic!("{what}: not within {within:?}; last seen: {seen}"))
}

/// [`eventually_every`] for async tests.
pub async fn eventually_async<T, F: std::future::Future<Output = Result<T, String>>>(
    what: &str,
    within: Duration,
    every: Duration,
    mut check: impl FnMut() -> F,
) -> T {
    let seen = std::cell::RefCell::new(String::new());
    let last = &seen;
    let found = poll_async(within, every, || {
        let attempt = check();
        async move { attempt.await.map_err(|e| *last.borrow_mut() = e).ok() }
    })
    .await;
    found.unwrap_or_else(|| {
        panic!(
            "{what}: not within {within:?}; last seen: {}",
            seen.borrow()
        )
    })
}
