//! The three servers (Debian's packages, loopback only), set up once per evaluation from
//! `scripts/servers/*.in` and started fresh for every measured run: natively (NPTL) or under
//! `flexsc run --backend B`, pinned with `taskset` to the server's CPUs.

use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::process::{self, Server, WorkDir};

/// Ports away from the usual ones and from those of `scripts/servers.sh` (18080, 13307,
/// 11311), which may run at the same time on a shared machine.
pub const APACHE_PORT: u16 = 18280;
/// MariaDB's TCP port (sysbench connects over TCP, as a remote client would).
pub const MARIADB_PORT: u16 = 13417;
/// memcached's port.
pub const MEMCACHED_PORT: u16 = 11511;

/// Which server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Apache httpd 2.4, worker MPM, one process (`-X`) of 256 worker threads.
    Apache,
    /// MariaDB 10.11, a thread per connection, durability off.
    Mariadb,
    /// memcached 1.6, 4 libevent worker threads.
    Memcached,
}

impl Kind {
    /// Whether libflexsc's statistics table can be asked for with SIGUSR2. Apache's `-X` main
    /// thread waits for every signal in `sigwait` (APR's signal thread) and drops SIGUSR2, so
    /// its table comes at exit only.
    pub fn reports_on_sigusr2(self) -> bool {
        self != Kind::Apache
    }

    /// The programs this server and its set-up need (sysbench prepares MariaDB's tables),
    /// each with the Debian package it comes from; the load generators are the workloads'.
    pub fn tools(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Kind::Apache => &[("apache2", "apache2")],
            Kind::Mariadb => &[
                ("mariadbd", "mariadb-server"),
                ("mariadb-install-db", "mariadb-server"),
                ("mariadb", "mariadb-client"),
                ("sysbench", "sysbench"),
            ],
            Kind::Memcached => &[("memcached", "memcached")],
        }
    }
}

/// What runs the server's threads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Variant {
    /// glibc's NPTL: the server as Debian ships it.
    Native,
    /// Under `flexsc run`, from a spec `BACKEND[/OPTION=VALUE...]`: `uring`, `threads`, or for
    /// example `threads/specialization=percore` or `uring/pages=1`, each option one of the
    /// launcher's (`--pages`, `--specialization`, `--syscall-cores`, `--order`, `--batch`,
    /// `--direct`, `--preempt`, `--map-cache`).
    Flexsc(String),
}

/// The `flexsc run` options a variant spec may set.
pub const VARIANT_OPTIONS: [&str; 8] = [
    "pages",
    "specialization",
    "syscall-cores",
    "order",
    "batch",
    "direct",
    "preempt",
    "map-cache",
];

/// Checks a variant spec (`BACKEND[/OPTION=VALUE...]`); the launcher checks the values.
pub fn check_spec(spec: &str) -> Result<(), String> {
    let mut parts = spec.split('/');
    let backend = parts.next().unwrap_or("");
    if !["uring", "threads", "kmod"].contains(&backend) {
        return Err(format!(
            "{spec:?}: backend {backend:?} is not uring, threads or kmod"
        ));
    }
    for p in parts {
        match p.split_once('=') {
            Some((k, v)) if VARIANT_OPTIONS.contains(&k) && !v.is_empty() => {}
            _ => {
                return Err(format!(
                    "{spec:?}: {p:?} is not OPTION=VALUE with OPTION one of {}",
                    VARIANT_OPTIONS.join(", ")
                ));
            }
        }
    }
    Ok(())
}

impl Variant {
    /// The name in the report: `NPTL` or `flexsc-BACKEND`.
    pub fn name(&self) -> String {
        match self {
            Variant::Native => "NPTL".into(),
            Variant::Flexsc(b) => format!("flexsc-{b}"),
        }
    }

    /// For a libflexsc variant that sets `pages=N`: its spec without that option (what the
    /// variants compared by their syscall pages share) and N.
    pub fn pages(&self) -> Option<(String, usize)> {
        let Variant::Flexsc(spec) = self else {
            return None;
        };
        let mut pages = None;
        let mut rest = Vec::new();
        for part in spec.split('/') {
            match part.strip_prefix("pages=") {
                Some(n) => pages = n.parse().ok(),
                None => rest.push(part),
            }
        }
        Some((rest.join("/"), pages?))
    }
}

/// Everything the servers share in one evaluation: the work directory, the templates, the
/// launcher, and the fixed data (Apache's document root, MariaDB's data directory).
pub struct Servers {
    work: WorkDir,
    templates: PathBuf,
    flexsc: PathBuf,
    www: (u32, u32),
    mariadb_ready: bool,
    apache_ready: bool,
    runs: usize,
}

/// One started server, with what the measurement needs to know about it.
pub struct Running {
    /// The process (stopped when dropped).
    pub server: Server,
    /// The libflexsc statistics file (`flexsc run --stats=FILE`); `None` natively.
    pub stats: Option<PathBuf>,
    /// Its stdout/stderr and, for Apache and MariaDB, their error logs: shown when it fails.
    pub logs: Vec<PathBuf>,
}

impl Servers {
    /// A new work directory; `flexsc` is the launcher, `templates` holds `apache2.conf.in` and
    /// `my.cnf.in`.
    pub fn new(flexsc: PathBuf, templates: PathBuf, keep: bool) -> Result<Self, String> {
        let work = WorkDir::new("flexsc-bench", keep).map_err(|e| format!("work dir: {e}"))?;
        let www = process::user_ids("www-data").ok_or(
            "no www-data user (Apache's workers run as www-data; apt-get install apache2)",
        )?;
        Ok(Servers {
            work,
            templates,
            flexsc,
            www,
            mariadb_ready: false,
            apache_ready: false,
            runs: 0,
        })
    }

    /// The work directory (logs, load generator output).
    pub fn dir(&self) -> &Path {
        self.work.path()
    }

    /// Sets up what `kind` needs once (document root; MariaDB's data directory and sysbench's
    /// tables, made natively).
    pub fn prepare(&mut self, kind: Kind) -> Result<(), String> {
        match kind {
            Kind::Apache if !self.apache_ready => {
                let htdocs = self.dir().join("htdocs");
                fs::create_dir_all(self.dir().join("apache")).map_err(|e| e.to_string())?;
                fs::create_dir_all(&htdocs).map_err(|e| e.to_string())?;
                // A 4 KiB body as in the notes' measurements; random so that it is not text.
                let mut body = vec![0u8; 4096];
                fs::File::open("/dev/urandom")
                    .and_then(|mut f| f.read_exact(&mut body))
                    .map_err(|e| e.to_string())?;
                fs::write(htdocs.join("4k.bin"), body).map_err(|e| e.to_string())?;
                self.apache_ready = true;
            }
            Kind::Mariadb if !self.mariadb_ready => {
                self.mariadb_install()?;
                self.mariadb_ready = true;
            }
            _ => {}
        }
        Ok(())
    }

    fn render(&self, template: &str, out: &Path, vars: &[(&str, String)]) -> Result<(), String> {
        let path = self.templates.join(template);
        let mut text =
            fs::read_to_string(&path).map_err(|e| format!("template {}: {e}", path.display()))?;
        for (k, v) in vars {
            text = text.replace(&format!("@{k}@"), v);
        }
        fs::write(out, text).map_err(|e| format!("{}: {e}", out.display()))
    }

    fn mycnf(&self) -> PathBuf {
        self.dir().join("mysql/my.cnf")
    }

    fn mysql_socket(&self) -> PathBuf {
        self.dir().join("mysql/mysqld.sock")
    }

    /// `mariadb-install-db`, then (natively) the sysbench user, database and tables.
    fn mariadb_install(&mut self) -> Result<(), String> {
        let my = self.dir().join("mysql");
        for d in ["data", "tmp"] {
            fs::create_dir_all(my.join(d)).map_err(|e| e.to_string())?;
        }
        let dir = self.dir().display().to_string();
        self.render(
            "my.cnf.in",
            &self.mycnf(),
            &[("DIR", dir), ("PORT", MARIADB_PORT.to_string())],
        )?;
        let mut cmd = Command::new("mariadb-install-db");
        cmd.arg(format!("--defaults-file={}", self.mycnf().display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"]);
        let f = process::run_bounded(&mut cmd, Duration::from_secs(120), &my.join("install.log"))
            .map_err(|e| e.to_string())?;
        if !f.success() {
            return Err(format!("mariadb-install-db: {}", f.why()));
        }
        let mut srv = self.start(Kind::Mariadb, &Variant::Native, &[], None)?;
        let sql = "CREATE DATABASE IF NOT EXISTS sbtest; \
            CREATE USER IF NOT EXISTS sbtest@'127.0.0.1' IDENTIFIED BY 'sbtest'; \
            GRANT ALL ON sbtest.* TO sbtest@'127.0.0.1';";
        let mut cmd = self.mariadb_root(sql);
        let f = process::run_bounded(&mut cmd, Duration::from_secs(60), &my.join("setup.log"))
            .map_err(|e| e.to_string())?;
        if !f.success() {
            return Err(format!("creating the sbtest user: {}", f.why()));
        }
        let mut cmd = sysbench();
        cmd.args(["oltp_read_write", "prepare"]);
        let f = process::run_bounded(&mut cmd, Duration::from_secs(180), &my.join("prepare.log"))
            .map_err(|e| e.to_string())?;
        if !f.success() {
            return Err(format!("sysbench prepare: {}", f.why()));
        }
        srv.server.stop();
        Ok(())
    }

    fn mariadb_root(&self, sql: &str) -> Command {
        let mut cmd = Command::new("mariadb");
        cmd.arg("--no-defaults")
            .arg("-S")
            .arg(self.mysql_socket())
            .args(["-u", "root", "-N", "-B", "-e", sql]);
        cmd
    }

    /// Starts `kind` as `variant` on `cpus` (all CPUs if empty) and waits until it answers.
    /// `carriers`: `flexsc run --cores` (the number of server CPUs).
    pub fn start(
        &mut self,
        kind: Kind,
        variant: &Variant,
        cpus: &[usize],
        carriers: Option<usize>,
    ) -> Result<Running, String> {
        self.runs += 1;
        // A variant's name may hold '/' and '=': not in file names.
        let name: String = variant
            .name()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let tag = format!("{}-{name}", self.runs);
        let dir = self.dir().to_path_buf();
        let out = dir.join(format!("{kind:?}-{tag}.out").to_lowercase());
        let mut logs = vec![out.clone()];
        let stats = match variant {
            Variant::Native => None,
            Variant::Flexsc(_) => {
                let p = dir.join(format!("stats-{tag}.txt"));
                // Apache's workers (www-data) write the tables.
                fs::write(&p, "").map_err(|e| e.to_string())?;
                std::os::unix::fs::chown(&p, Some(self.www.0), Some(self.www.1))
                    .map_err(|e| format!("chown {}: {e}", p.display()))?;
                Some(p)
            }
        };
        let (program, args, grace): (&str, Vec<String>, u64) = match kind {
            Kind::Apache => {
                let conf = dir.join(format!("apache/{tag}.conf"));
                let log = dir.join(format!("apache-{tag}-error.log"));
                self.render(
                    "apache2.conf.in",
                    &conf,
                    &[
                        ("DIR", dir.display().to_string()),
                        ("PORT", APACHE_PORT.to_string()),
                        ("USER", "www-data".into()),
                        ("LOG", log.display().to_string()),
                    ],
                )?;
                logs.push(log);
                // Else Apache warns that the last instance's PID file was overwritten.
                let _ = fs::remove_file(dir.join("apache/httpd.pid"));
                let args = vec!["-f".into(), conf.display().to_string(), "-X".into()];
                ("apache2", args, 15)
            }
            Kind::Mariadb => {
                let err = dir.join(format!("mariadb-{tag}.err"));
                logs.push(err.clone());
                let args = vec![
                    format!("--defaults-file={}", self.mycnf().display()),
                    format!("--log-error={}", err.display()),
                ];
                ("mariadbd", args, 90)
            }
            Kind::Memcached => {
                let args = [
                    "-u",
                    "root",
                    "-l",
                    "127.0.0.1",
                    "-p",
                    "PORT",
                    "-U",
                    "0",
                    "-t",
                    "4",
                    "-m",
                    "256",
                    "-c",
                    "4096",
                ]
                .iter()
                .map(|a| a.replace("PORT", &MEMCACHED_PORT.to_string()))
                .collect();
                ("memcached", args, 15)
            }
        };
        let mut cmd = if cpus.is_empty() {
            Command::new(program)
        } else {
            let mut c = Command::new("taskset");
            c.args(["-c", &process::cpulist(cpus), program]);
            c
        };
        if let (Variant::Flexsc(spec), Some(stats)) = (variant, &stats) {
            let mut c = if cpus.is_empty() {
                Command::new(&self.flexsc)
            } else {
                let mut c = Command::new("taskset");
                c.args(["-c", &process::cpulist(cpus)]).arg(&self.flexsc);
                c
            };
            let mut parts = spec.split('/');
            c.args(["run", "--backend", parts.next().unwrap_or("uring")]);
            if let Some(n) = carriers {
                c.args(["--cores", &n.to_string()]);
            }
            for p in parts {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                c.arg(format!("--{k}={v}"));
            }
            c.arg(format!("--stats={}", stats.display()))
                .arg("--")
                .arg(program);
            cmd = c;
        } else {
            // The native run must not inherit a preload from the harness's environment.
            cmd.env_remove("LD_PRELOAD");
        }
        cmd.args(&args);
        let server = Server::spawn(cmd, &out, Duration::from_secs(grace))
            .map_err(|e| format!("starting {program}: {e}"))?;
        let mut running = Running {
            server,
            stats,
            logs,
        };
        self.wait_ready(kind, &mut running)?;
        Ok(running)
    }

    /// Polls every 100 ms for up to 30 s until the server answers a real request.
    fn wait_ready(&self, kind: Kind, r: &mut Running) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = match kind {
                Kind::Apache => http_get_ok(APACHE_PORT, "/4k.bin").is_ok(),
                Kind::Memcached => memcached_version(MEMCACHED_PORT).is_ok(),
                Kind::Mariadb => {
                    let mut cmd = self.mariadb_root("SELECT 1");
                    process::run_bounded(
                        &mut cmd,
                        Duration::from_secs(5),
                        &self.dir().join("ready.log"),
                    )
                    .is_ok_and(|f| f.success())
                }
            };
            if ok {
                return Ok(());
            }
            if !r.server.running() {
                return Err(format!("{kind:?} exited while starting{}", tails(&r.logs)));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{kind:?} not answering within 30 s{}",
                    tails(&r.logs)
                ));
            }
            sleep(Duration::from_millis(100));
        }
    }
}

/// The last lines of each log, to explain a failure (the work directory is removed at the end).
pub fn tails(logs: &[PathBuf]) -> String {
    let mut s = String::new();
    for l in logs {
        let Ok(text) = fs::read_to_string(l) else {
            continue;
        };
        let lines: Vec<&str> = text.lines().collect();
        if lines.is_empty() {
            continue;
        }
        s.push_str(&format!("\n    --- last lines of {}:", l.display()));
        for line in &lines[lines.len().saturating_sub(8)..] {
            s.push_str("\n    | ");
            s.push_str(line);
        }
    }
    s
}

/// sysbench against the prepared tables (4 x 10,000 rows), over TCP.
pub fn sysbench() -> Command {
    let mut cmd = Command::new("sysbench");
    cmd.args([
        "--db-driver=mysql",
        "--mysql-host=127.0.0.1",
        &format!("--mysql-port={MARIADB_PORT}"),
        "--mysql-user=sbtest",
        "--mysql-password=sbtest",
        "--mysql-db=sbtest",
        "--tables=4",
        "--table-size=10000",
    ]);
    cmd
}

fn connect(port: u16) -> io::Result<TcpStream> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    Ok(s)
}

/// One HTTP/1.0 GET; succeeds on a 200 answer.
fn http_get_ok(port: u16, path: &str) -> io::Result<()> {
    let mut s = connect(port)?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head)?;
    if head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200") {
        Ok(())
    } else {
        Err(io::Error::other("not a 200 answer"))
    }
}

/// memcached's `version` command; succeeds on a `VERSION` line.
fn memcached_version(port: u16) -> io::Result<()> {
    let mut s = connect(port)?;
    s.write_all(b"version\r\n")?;
    let mut head = [0u8; 7];
    s.read_exact(&mut head)?;
    if &head == b"VERSION" {
        Ok(())
    } else {
        Err(io::Error::other("no VERSION answer"))
    }
}

/// Whether something already listens on `port` (another instance, or a packaged service).
pub fn port_in_use(port: u16) -> bool {
    connect(port).is_ok()
}
