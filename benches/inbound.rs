//! Inbound SMS throughput, end to end: `cargo bench --bench inbound` (see `benches/README.md`).
//!
//! This process is Twilio. It builds a fresh SQLite database (default file, WAL, synchronous
//! NORMAL, as `carebot serve` opens it), imports caregivers with consent through the roster
//! import, starts `weekly-pulse` for every one of them, then runs the real release binary
//! `carebot serve` as a separate process and posts signed inbound SMS to it over keep-alive
//! connections on 127.0.0.1. Every request answers "4" to the 1–5 question for a different
//! caregiver with a different `MessageSid`, so each one records the message, advances a real
//! conversation one step (answer stored, next question queued) in one transaction.
//!
//! Phase 1 drives as many requests as the server takes (closed loop, many connections) and
//! reports SMS/s. Phase 2 sends at half that rate, open loop, and reports latency. At the end
//! the server is killed (`SIGKILL`: a 200 must mean committed, so a crash may lose nothing) and
//! the database is checked: one stored message, one answer and one queued reply per 200.
//!
//! The HTTP client is a few lines over `TcpStream` with the requests pre-built: on a 2-core
//! machine every cycle the load generator spends is taken from the server it measures.
//!
//! Outbound replies are not part of the measurement: Twilio's URL points at a closed local
//! port and `CAREBOT_SMS_MPS` stays at its default of 1, so the dispatcher touches one row a
//! second instead of competing with the webhook for the CPU and the write lock.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use carebot::catalog::Catalog;
use carebot::config::RunnerSettings;
use carebot::model::Audience;
use carebot::runner::Runner;
use carebot::store::{AnyStore, Store};
use chrono::Utc;
use sqlx::Connection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const AUTH_TOKEN: &str = "bench-auth-token";
const ACCOUNT_SID: &str = "ACbench00000000000000000000000000";
const FROM: &str = "+13125550100";
const PATH: &str = "/webhooks/twilio/sms";

/// Knobs, from the environment so that `cargo bench --bench inbound` needs no arguments.
struct Settings {
    caregivers: usize,
    connections: usize,
    warmup: Duration,
    saturation: Duration,
    half_load: Duration,
}

impl Settings {
    fn from_env() -> Settings {
        fn var<T: std::str::FromStr>(name: &str, default: T) -> T {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        }
        Settings {
            caregivers: var("BENCH_CAREGIVERS", 200_000),
            connections: var("BENCH_CONNECTIONS", 128),
            warmup: Duration::from_secs_f64(var("BENCH_WARMUP_SECS", 1.0)),
            saturation: Duration::from_secs_f64(var("BENCH_SATURATION_SECS", 5.0)),
            half_load: Duration::from_secs_f64(var("BENCH_HALF_LOAD_SECS", 8.0)),
        }
    }
}

fn main() -> anyhow::Result<()> {
    // One thread: the load generator should take as little of the 2 cores as it can.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run(Settings::from_env()))
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    let started = Instant::now();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir()?;
    let db_path = dir.path().join("carebot.db");
    let db_url = format!("sqlite://{}", db_path.display());

    println!(
        "inbound bench: {} caregivers, {} connections",
        settings.caregivers, settings.connections
    );
    let phones = setup(root, &db_url, settings.caregivers).await?;
    println!(
        "  set-up: imported and started weekly-pulse for {} caregivers in {:.1}s",
        phones.len(),
        started.elapsed().as_secs_f64()
    );

    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let requests = Rc::new(build_requests(&base, port, &phones));
    let mut server = Server::start(root, dir.path(), &db_url, port)?;
    server.wait_healthy(&base).await?;

    let mut next = 0;
    let mut results = Vec::new();

    // Phase 1: saturation, closed loop. The warm-up's requests count for correctness only.
    let budget = requests.len() * 55 / 100;
    let warm = run_closed(
        &requests,
        next..budget,
        settings.connections,
        settings.warmup,
    )
    .await?;
    next += warm.sent;
    results.push(warm);
    let cpu = Cpu::now(server.child.id());
    let mut sat = run_closed(
        &requests,
        next..budget,
        settings.connections,
        settings.saturation,
    )
    .await?;
    sat.cpu = Cpu::now(server.child.id()).since(cpu, sat.elapsed, sat.ok);
    next += sat.sent;
    let sat_rate = sat.ok as f64 / sat.elapsed.as_secs_f64();
    sat.print("saturation", settings.connections);

    // Phase 2: half the saturation rate, open loop.
    let rate = sat_rate / 2.0;
    let cpu = Cpu::now(server.child.id());
    let mut half = run_open(
        &requests,
        next..requests.len(),
        settings.connections,
        rate,
        settings.half_load,
    )
    .await?;
    half.cpu = Cpu::now(server.child.id()).since(cpu, half.elapsed, half.ok);
    next += half.sent;
    half.print(
        &format!("half load ({rate:.0}/s offered)"),
        settings.connections,
    );
    results.push(sat.clone());
    results.push(half.clone());

    // A 200 means committed: kill the server without letting it tidy up, then count.
    server.kill();
    let sent = next;
    let oks: usize = results.iter().map(|r| r.ok).sum();
    let failures: usize = results.iter().map(|r| r.failed).sum();
    let check = verify(&db_url).await?;
    println!(
        "  correctness: {sent} sent, {oks} answered 200, {failures} not; database holds \
         {} inbound, {} answers ({} caregivers), {} replies queued, {} conversations advanced",
        check.inbound, check.answers, check.answered_caregivers, check.replies, check.advanced
    );
    let ok = failures == 0
        && oks == sent
        && check.inbound == sent
        && check.answers == sent
        && check.answered_caregivers == sent
        && check.replies == sent
        && check.advanced == sent;

    println!();
    println!("summary (target: >= 15000 SMS/s at saturation, p99 <= 5 ms at half load)");
    println!(
        "  saturation: {:>7.0} SMS/s   p50 {:>6.2} ms   p99 {:>6.2} ms   ({})",
        sat_rate,
        sat.percentile(0.50),
        sat.percentile(0.99),
        sat.cpu
    );
    println!(
        "  half load:  {:>7.0} SMS/s   p50 {:>6.2} ms   p99 {:>6.2} ms   p99.9 {:>6.2} ms",
        half.ok as f64 / half.elapsed.as_secs_f64(),
        half.percentile(0.50),
        half.percentile(0.99),
        half.percentile(0.999)
    );
    println!(
        "  correctness: {}   (total run {:.0}s)",
        if ok { "ok" } else { "FAILED" },
        started.elapsed().as_secs_f64()
    );
    if !ok {
        server.print_log_tail();
        anyhow::bail!("correctness check failed");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Set-up: the roster, the conversations, the requests

/// `+1 312 ABC-DDDD` for caregiver `i`: a valid NANP number, different for each.
fn phone(i: usize) -> String {
    format!("+1312{:03}{:04}", 200 + i / 10_000, i % 10_000)
}

/// Imports `n` caregivers with written consent and starts `weekly-pulse` for all of them, so
/// each waits on "How was your week, 1 to 5?". Returns their phone numbers.
async fn setup(root: &Path, db_url: &str, n: usize) -> anyhow::Result<Vec<String>> {
    let store = AnyStore::connect(db_url).await?;
    store.migrate().await?;
    let mut csv = String::from(
        "external_id,first_name,last_name,phone,language,timezone,branch,supervisor_id,groups,\
         consent_at\n",
    );
    let phones: Vec<String> = (0..n).map(phone).collect();
    for (i, p) in phones.iter().enumerate() {
        csv.push_str(&format!(
            "cg{i},Ana,Lopez,{p},en,America/Chicago,north,,bench,2024-01-15\n"
        ));
    }
    let summary = carebot::roster::import_caregivers(&store, csv.as_bytes(), false).await?;
    anyhow::ensure!(
        summary.added == n && summary.rejected.is_empty(),
        "import: {summary}"
    );
    let (catalog, _) = Catalog::load(&root.join("flows"), &root.join("templates"))
        .map_err(|r| anyhow::anyhow!("shipped flows do not load: {} error(s)", r.errors()))?;
    let runner = Runner::new(store, Arc::new(catalog), RunnerSettings::default()).await?;
    let report = runner
        .start("weekly-pulse", &Audience::All, BTreeMap::new(), Utc::now())
        .await?;
    anyhow::ensure!(report.started == n, "start: {report:?}");
    // The questions went out long before the answers come in: mark them sent, or the
    // dispatcher would spend the run working through a backlog of 100,000 program messages.
    let mut db = sqlx::SqliteConnection::connect(db_url).await?;
    sqlx::query(
        "UPDATE outbound_messages SET status = 'delivered', attempts = 1, \
         provider_id = 'SMbench' || id WHERE status = 'queued'",
    )
    .execute(&mut db)
    .await?;
    db.close().await?;
    Ok(phones)
}

/// Each caregiver's answer as Twilio would post it: the whole HTTP/1.1 request, signed.
fn build_requests(base: &str, port: u16, phones: &[String]) -> Vec<Vec<u8>> {
    let url = format!("{base}{PATH}");
    phones
        .iter()
        .enumerate()
        .map(|(i, from)| {
            let sid = format!("SM{i:032x}");
            let params: Vec<(String, String)> = [
                ("ToCountry", "US"),
                ("SmsMessageSid", &sid),
                ("NumMedia", "0"),
                ("SmsSid", &sid),
                ("SmsStatus", "received"),
                ("Body", "4"),
                ("To", FROM),
                ("NumSegments", "1"),
                ("MessageSid", &sid),
                ("AccountSid", ACCOUNT_SID),
                ("From", from),
                ("ApiVersion", "2010-04-01"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .to_vec();
            let signature = carebot::channel::twilio::signature::sign(AUTH_TOKEN, &url, &params);
            let body = serde_urlencoded::to_string(&params).expect("form encodes");
            format!(
                "POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\n\
                 X-Twilio-Signature: {signature}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        })
        .collect()
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

// ---------------------------------------------------------------------------------------------
// The server under test

struct Server {
    child: Child,
    log: PathBuf,
}

impl Server {
    fn start(root: &Path, dir: &Path, db_url: &str, port: u16) -> anyhow::Result<Server> {
        // BENCH_SERVER_LOG keeps the server's log where it says, past the run.
        let log = std::env::var_os("BENCH_SERVER_LOG")
            .map_or_else(|| dir.join("carebot.log"), PathBuf::from);
        let child = Command::new(env!("CARGO_BIN_EXE_carebot"))
            .arg("--flows")
            .arg(root.join("flows"))
            .arg("--templates")
            .arg(root.join("templates"))
            .arg("serve")
            .current_dir(dir)
            .env("DATABASE_URL", db_url)
            .env("PORT", port.to_string())
            .env("CAREBOT_PUBLIC_URL", format!("http://127.0.0.1:{port}"))
            .env("TWILIO_ACCOUNT_SID", ACCOUNT_SID)
            .env("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
            .env("TWILIO_FROM", FROM)
            // Nothing listens there: sends fail at once and are retried later, a row a second.
            .env("TWILIO_API_URL", "http://127.0.0.1:9")
            .env_remove("CAREBOT_SMS_MPS")
            .env(
                "RUST_LOG",
                std::env::var("BENCH_SERVER_RUST_LOG")
                    .unwrap_or_else(|_| "carebot=info,warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?;
        Ok(Server { child, log })
    }

    async fn wait_healthy(&mut self, base: &str) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        for _ in 0..400 {
            if let Some(status) = self.child.try_wait()? {
                self.print_log_tail();
                anyhow::bail!("carebot serve exited: {status}");
            }
            if let Ok(r) = client.get(format!("{base}/healthz")).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.print_log_tail();
        anyhow::bail!("carebot serve did not become healthy")
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn print_log_tail(&self) {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        eprintln!("--- last lines of carebot's log ---");
        for line in &lines[lines.len().saturating_sub(30)..] {
            eprintln!("{line}");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------------------------
// Load

/// CPU time in clock ticks (`/proc`, Linux): the whole machine's busy time, this process's,
/// and the server's; so a run on a machine busy with something else says so.
#[derive(Clone, Copy, Default)]
struct Cpu {
    machine: u64,
    load: u64,
    server: u64,
}

impl Cpu {
    fn now(server: u32) -> Cpu {
        fn process(pid: &str) -> u64 {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Fields after the parenthesized name: utime and stime are the 12th and 13th.
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.split_whitespace().collect())
                .unwrap_or_default();
            let get = |i: usize| {
                fields
                    .get(i)
                    .and_then(|f| f.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            get(11) + get(12)
        }
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let ticks: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal: all but idle and iowait are busy.
        let machine = ticks
            .iter()
            .take(8)
            .enumerate()
            .filter(|(i, _)| *i != 3 && *i != 4)
            .map(|(_, t)| t)
            .sum();
        Cpu {
            machine,
            load: process("self"),
            server: process(&server.to_string()),
        }
    }

    /// Cores used by the server, the load generator and everything else since `earlier`, and
    /// the server's CPU time per answered message: on a machine shared with other work the
    /// rate says how much CPU the server got, this says what it did with it.
    fn since(self, earlier: Cpu, elapsed: Duration, answered: usize) -> String {
        // Clock ticks are 1/100 s on Linux.
        let cores = |t: u64| t as f64 / 100.0 / elapsed.as_secs_f64();
        let server = self.server.saturating_sub(earlier.server);
        let load = self.load.saturating_sub(earlier.load);
        let machine = self.machine.saturating_sub(earlier.machine);
        format!(
            "cores busy: server {:.2}, load generator {:.2}, other processes {:.2}; \
             server CPU {:.0} us per message",
            cores(server),
            cores(load),
            cores(machine.saturating_sub(server + load)),
            server as f64 * 10_000.0 / answered.max(1) as f64
        )
    }
}

#[derive(Clone, Default)]
struct Phase {
    sent: usize,
    ok: usize,
    failed: usize,
    elapsed: Duration,
    /// Microseconds, one per answered request.
    latencies: Vec<u32>,
    /// Where the CPU went during the phase.
    cpu: String,
}

impl Phase {
    fn merge(&mut self, other: Phase) {
        self.sent += other.sent;
        self.ok += other.ok;
        self.failed += other.failed;
        self.latencies.extend(other.latencies);
    }

    fn percentile(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
        f64::from(sorted[i]) / 1000.0
    }

    fn print(&self, name: &str, connections: usize) {
        println!(
            "  {name}: {} requests in {:.2}s over {connections} connections: {:.0}/s, \
             p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms, {} failed",
            self.sent,
            self.elapsed.as_secs_f64(),
            self.ok as f64 / self.elapsed.as_secs_f64(),
            self.percentile(0.50),
            self.percentile(0.99),
            self.percentile(0.999),
            self.percentile(1.0),
            self.failed
        );
        println!("    {}", self.cpu);
    }
}

/// One keep-alive HTTP/1.1 connection that sends a pre-built request and reads the answer.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(port: u16) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(1024),
        })
    }

    /// Sends `request` and returns the response's status code.
    async fn send(&mut self, request: &[u8]) -> anyhow::Result<u16> {
        self.stream.write_all(request).await?;
        self.buf.clear();
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buf[..end])?;
                let status: u16 = head
                    .get(9..12)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| anyhow::anyhow!("bad status line: {head:?}"))?;
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                while self.buf.len() < end + 4 + length {
                    self.read().await?;
                }
                return Ok(status);
            }
            self.read().await?;
        }
    }

    async fn read(&mut self) -> anyhow::Result<()> {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "server closed the connection");
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn port_of(request: &[u8]) -> u16 {
    let text = std::str::from_utf8(&request[..request.len().min(200)]).unwrap_or_default();
    text.split("Host: 127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split("\r\n").next())
        .and_then(|p| p.parse().ok())
        .expect("requests carry the port")
}

/// Closed loop: each connection sends its next request as soon as the previous one is
/// answered, until `duration` is up or `range` is used up.
async fn run_closed(
    requests: &Rc<Vec<Vec<u8>>>,
    range: std::ops::Range<usize>,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<Phase> {
    let port = port_of(&requests[0]);
    let next = Rc::new(std::cell::Cell::new(range.start));
    let start = Instant::now();
    let deadline = start + duration;
    let local = tokio::task::LocalSet::new();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let requests = requests.clone();
        let next = next.clone();
        let end = range.end;
        tasks.push(local.spawn_local(async move {
            let mut conn = Conn::open(port).await?;
            let mut phase = Phase::default();
            while Instant::now() < deadline {
                let i = next.get();
                if i >= end {
                    break;
                }
                next.set(i + 1);
                let sent = Instant::now();
                let status = conn.send(&requests[i]).await?;
                phase.sent += 1;
                if status == 200 {
                    phase.ok += 1;
                    phase.latencies.push(sent.elapsed().as_micros() as u32);
                } else {
                    phase.failed += 1;
                }
            }
            anyhow::Ok(phase)
        }));
    }
    let mut total = Phase::default();
    local
        .run_until(async {
            for t in tasks {
                total.merge(t.await??);
            }
            anyhow::Ok(())
        })
        .await?;
    total.elapsed = start.elapsed();
    Ok(total)
}

/// Open loop: request `k` is due at `start + k / rate`, whether or not earlier ones were
/// answered. A request that waited for a free connection is timed from when it was due (so a
/// stall shows in the latencies instead of slowing the sender down); one sent on time is timed
/// from when it was written, so the client's 1 ms timer does not count against the server.
async fn run_open(
    requests: &Rc<Vec<Vec<u8>>>,
    range: std::ops::Range<usize>,
    connections: usize,
    rate: f64,
    duration: Duration,
) -> anyhow::Result<Phase> {
    let port = port_of(&requests[0]);
    let first = range.start;
    let count = (range.len()).min((rate * duration.as_secs_f64()) as usize);
    let next = Rc::new(std::cell::Cell::new(0usize));
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let local = tokio::task::LocalSet::new();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let requests = requests.clone();
        let next = next.clone();
        tasks.push(local.spawn_local(async move {
            let mut conn = Conn::open(port).await?;
            let mut phase = Phase::default();
            loop {
                let k = next.get();
                if k >= count {
                    break;
                }
                next.set(k + 1);
                let due = start + Duration::from_secs_f64(k as f64 / rate);
                let late = tokio::time::Instant::now() > due;
                if !late {
                    tokio::time::sleep_until(due).await;
                }
                let from = if late {
                    due
                } else {
                    tokio::time::Instant::now()
                };
                let status = conn.send(&requests[first + k]).await?;
                phase.sent += 1;
                if status == 200 {
                    phase.ok += 1;
                    phase.latencies.push(from.elapsed().as_micros() as u32);
                } else {
                    phase.failed += 1;
                }
            }
            anyhow::Ok(phase)
        }));
    }
    let mut total = Phase::default();
    local
        .run_until(async {
            for t in tasks {
                total.merge(t.await??);
            }
            anyhow::Ok(())
        })
        .await?;
    total.elapsed = start.elapsed();
    Ok(total)
}

// ---------------------------------------------------------------------------------------------
// Verification

struct Check {
    inbound: usize,
    answers: usize,
    answered_caregivers: usize,
    replies: usize,
    /// Conversations now waiting on the next question ("still with us in 6 months?").
    advanced: usize,
}

/// Counts what the killed server left in the database.
async fn verify(db_url: &str) -> anyhow::Result<Check> {
    let mut db = sqlx::SqliteConnection::connect(db_url).await?;
    let count =
        async |db: &mut sqlx::SqliteConnection, sql: &'static str| -> anyhow::Result<usize> {
            let (n,): (i64,) = sqlx::query_as(sql).fetch_one(db).await?;
            Ok(usize::try_from(n)?)
        };
    let check = Check {
        inbound: count(&mut db, "SELECT COUNT(*) FROM inbound_messages").await?,
        answers: count(
            &mut db,
            "SELECT COUNT(*) FROM answers WHERE flow_id = 'weekly-pulse' \
             AND step = 'week_score' AND value = '4'",
        )
        .await?,
        answered_caregivers: count(&mut db, "SELECT COUNT(DISTINCT caregiver_id) FROM answers")
            .await?,
        replies: count(
            &mut db,
            "SELECT COUNT(*) FROM outbound_messages WHERE kind = 'reply'",
        )
        .await?,
        advanced: count(
            &mut db,
            "SELECT COUNT(*) FROM conversations WHERE status = 'active' \
             AND state LIKE '%\"step\":\"stay\"%'",
        )
        .await?,
    };
    Ok(check)
}
